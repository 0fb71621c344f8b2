"""Plots of the PyramidSD cascade: the fit to runs, and cascade against plain SD over load.

Each function returns a :class:`matplotlib.figure.Figure` owned by the caller (not
registered with pyplot; nothing is shown). ``label`` goes into the title: pass
``"SYNTHETIC"`` for simulated data, the data's provenance otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd.cascade.recommend import PAYS, qualifier_stops_paying

__all__ = ["plot_pyramid_fit", "plot_cascade_vs_plain"]


def plot_pyramid_fit(fitted: pd.DataFrame, *, label: str = "", figsize=(6.2, 4.2)) -> Figure:
    """Observed against predicted mean latency per run (s), with the posterior interval.

    ``fitted``: :func:`bayes_sd.cascade.model.fitted_runs`. Points on the diagonal are runs the
    closed form reproduces; colour separates cascade from plain runs.
    """
    need = {"observed_s", "predicted_s", "lo_s", "hi_s", "mode"}
    if not need <= set(fitted.columns):
        raise ValueError(f"fitted lacks {sorted(need - set(fitted.columns))}. Fix: pass pyramid_fit.fitted_runs(idata)")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    for mode, colour in (("cascade", "C3"), ("plain", "C0")):
        f = fitted[fitted["mode"] == mode]
        if f.empty:
            continue
        err = np.clip([f["predicted_s"] - f["lo_s"], f["hi_s"] - f["predicted_s"]], 0.0, None)  # rounding at k = 0
        ax.errorbar(f["observed_s"], f["predicted_s"], yerr=err,
                    fmt="o", ms=4, color=colour, capsize=2, label=f"{mode} runs")
    lim = [0.9 * fitted[["observed_s", "lo_s"]].min().min(), 1.1 * fitted[["observed_s", "hi_s"]].max().max()]
    ax.plot(lim, lim, color="0.5", lw=0.8, ls="--", label="observed = predicted")
    ax.set(xlim=lim, ylim=lim, xlabel="observed mean latency (s)",
           ylabel="posterior latency (s), 90% interval", title=f"Cascade fit per run {label}".strip())
    ax.legend(fontsize=8)
    return fig


def plot_cascade_vs_plain(table: pd.DataFrame, *, label: str = "", figsize=(7.0, 4.4)) -> Figure:
    """Expected mean latency (s) against load of the best plain SD and the best cascade.

    ``table``: :func:`bayes_sd.cascade.recommend.compare_pyramid`. Bands are the posterior
    intervals of each chosen configuration's latency; the chosen ``k`` / ``(k_draft, k_qual)``
    are written along the curves; a vertical line marks where the qualifier stops paying.
    """
    load_col = "rate_rps" if "rate_rps" in table.columns else "concurrency"
    t = table.sort_values(load_col)
    x = t[load_col].to_numpy(float)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    for pre, colour, name in (("plain", "C0", "best plain SD"), ("cascade", "C3", "best cascade")):
        mean = t[f"{pre}_latency_mean_s"].to_numpy(float)
        lo, hi = t[f"{pre}_latency_lo_s"].to_numpy(float), t[f"{pre}_latency_hi_s"].to_numpy(float)
        ok = np.isfinite(mean)
        ax.plot(x[ok], mean[ok], "o-", ms=3, color=colour, label=name)
        band = ok & np.isfinite(hi)
        ax.fill_between(x[band], lo[band], hi[band], color=colour, alpha=0.2, lw=0)
    for _, row in t.iterrows():
        if np.isfinite(row["plain_latency_mean_s"]):
            ax.annotate(f"k={row['best_plain_k']}", (row[load_col], row["plain_latency_mean_s"]), fontsize=7,
                        color="C0", xytext=(0, 6), textcoords="offset points", ha="center")
        if np.isfinite(row["cascade_latency_mean_s"]):
            ax.annotate(f"({row['best_k_draft']},{row['best_k_qual']})", (row[load_col], row["cascade_latency_mean_s"]),
                        fontsize=7, color="C3", xytext=(0, -11), textcoords="offset points", ha="center")
    stop = qualifier_stops_paying(t)
    if stop is not None and (t["verdict"] == PAYS).any():
        ax.axvline(stop, color="0.3", ls=":", lw=1)
        ax.text(stop, 0.93, "qualifier stops paying ", fontsize=8, va="center", ha="right", color="0.3",
                transform=ax.get_xaxis_transform())
    unit = "requests/s" if load_col == "rate_rps" else "streams"
    ax.set(yscale="log", xlabel=f"load: {load_col} ({unit})", ylabel="expected mean latency (s)",
           title=f"Plain SD best k vs cascade best (k_draft, k_qual) {label}".strip())
    ax.legend(fontsize=8, loc="upper left")
    return fig
