"""Sampler diagnostics: R-hat and effective sample size of every parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd.report.plots.common import figure_grid

__all__ = ["diagnostics_data", "plot_diagnostics"]

def diagnostics_data(model) -> pd.DataFrame:
    """R-hat and bulk/tail ESS of every posterior parameter element (one row each).

    Parameters
    ----------
    model : LatencyModel
        A fitted model.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter`` (e.g. ``"mu_log_cost[v0]"``), ``rhat``, ``ess_bulk``, ``ess_tail`` (draws);
        elements without an R-hat (fixed at 0) are left out.

    Raises
    ------
    ValueError
        When the model is not fitted.
    """
    post = model.idata.posterior
    stats = model.convergence_stats()
    rows = []
    for name in post.data_vars:
        da = stats["rhat"][name]
        idx = da.to_series().index if da.ndim else [()]
        labels = [name + (f"[{', '.join(map(str, i if isinstance(i, tuple) else (i,)))}]" if da.ndim else "")
                  for i in idx]
        rows.append(pd.DataFrame({"parameter": labels, **{s: np.ravel(stats[s][name].values) for s in stats}}))
    out = pd.concat(rows, ignore_index=True)
    return out[np.isfinite(out["rhat"])].reset_index(drop=True)


def plot_diagnostics(model, *, figsize=None, data: pd.DataFrame | None = None) -> Figure:
    """Distributions of R-hat and ESS across parameters; divergences and verdict in the title.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).
    data : pandas.DataFrame, optional
        The result of :func:`diagnostics_data`, reused instead of computed.

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When the model is not fitted.
    """
    d = model.diagnostics()
    tab = diagnostics_data(model) if data is None else data
    fig, (a1, a2) = figure_grid(2, figsize, ncols=2, panel=(4.0, 3.0))
    worst = tab.loc[tab["rhat"].idxmax()]
    a1.hist(tab["rhat"], bins=30, color="C0")
    a1.axvline(1.01, color="C3", ls="--", label="target R-hat <= 1.01")
    a1.set(xlabel="R-hat (1 = chains agree)", ylabel="parameters (elements)")
    a1.set_title(f"worst: {worst.parameter[:40]} ({worst.rhat:.3f})", fontsize=8)
    ess = tab[["ess_bulk", "ess_tail"]]
    bins = np.geomspace(max(1.0, ess.min().min()), ess.max().max() * 1.01, 30)
    a2.hist([ess.ess_bulk, ess.ess_tail], bins=bins, histtype="step", lw=1.5, label=["bulk ESS", "tail ESS"])
    a2.axvline(400, color="C3", ls="--", label="target ESS >= 400")
    a2.set(xscale="log", xlabel="effective sample size (draws)")
    for ax in (a1, a2):
        ax.legend(fontsize=7)
    verdict = "converged" if d["converged"] else "NOT converged"
    fig.suptitle(f"{verdict}: {d['divergences']} divergences, {d['chains']} chains x {d['draws']} draws, "
                 f"{len(tab)} parameters", fontsize=10)
    return fig
