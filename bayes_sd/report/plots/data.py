"""What was measured: runs per configuration and load."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from bayes_sd.report.plots.common import model_runs, short_name

__all__ = ["plot_data_overview"]

def plot_data_overview(model, *, figsize=None) -> Figure:
    """Runs per verifier/drafter pair x hardware: real vs synthetic, saturated runs marked.

    Parameters
    ----------
    model : LatencyModel
        A model with its runs (fitted, or built).
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).
    """
    runs = model_runs(model)
    runs["row"] = [f"{short_name(v)} / {d} @ {h}" for v, d, h in zip(runs.verifier, runs.drafter, runs.hardware)]
    counts = runs.groupby(["row", "kind", "saturated"]).size().unstack(["kind", "saturated"], fill_value=0)
    rows = sorted(counts.index, reverse=True)
    fig = Figure(figsize=figsize or (7.5, 1.6 + 0.26 * len(rows)), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(rows))
    styles = {("real", False): dict(color="C0", label="real"),
              ("real", True): dict(color="C0", alpha=0.4, hatch="xx", label="real, saturated (not fitted)"),
              ("synthetic", False): dict(color="C1", label="synthetic"),
              ("synthetic", True): dict(color="C1", alpha=0.4, hatch="xx", label="synthetic, saturated (not fitted)")}
    for key, style in styles.items():
        if key in counts:
            n = counts[key].reindex(rows).to_numpy(float)
            ax.barh(rows, n, left=left, edgecolor="white", **style)
            left += n
    n_sat = int(runs.saturated.sum())
    n_syn = int((runs.kind == "synthetic").sum())
    ax.set_xlabel("runs (one server configuration at one load)")
    ax.set_title(f"{len(runs)} runs: {len(runs) - n_syn} real, {n_syn} synthetic; {n_sat} saturated", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncol=2)
    ax.tick_params(axis="y", labelsize=7)
    return fig
