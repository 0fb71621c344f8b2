"""The Bayesian model next to the baselines (least squares, batch-1 formulas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bayes_sd.evaluation.baselines import BASELINES, LABELS, error_table, in_sample_comparison
from bayes_sd.report.plots.common import figure_grid, k_colors

__all__ = ["plot_baselines"]

def plot_baselines(model=None, *, hdi_prob: float = 0.9, figsize=None, data: pd.DataFrame | None = None,
                   title: str | None = None) -> Figure:
    """Observed vs predicted mean latency (s), one panel per method (Bayes with its predictive interval).

    A method without any prediction shows 'n/a'.

    Parameters
    ----------
    model : LatencyModel, optional
        A fitted model; needed unless ``data`` is given.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).
    data : pandas.DataFrame, optional
        A :func:`bayes_sd.evaluation.baselines.predictions_table` (default: the model's
        :func:`~bayes_sd.evaluation.baselines.in_sample_comparison`).
    title : str, optional
        Figure title (default: says what the bars and the dashed line are).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    tab = in_sample_comparison(model, hdi_prob=hdi_prob) if data is None else data
    hdi_prob = tab.attrs.get("hdi_prob", hdi_prob)
    methods = [m for m in ("bayes",) + BASELINES if m in set(tab["method"]) | set(tab.attrs.get("not_fitted", []))]
    err = error_table(tab).set_index("method") if len(tab) else pd.DataFrame()
    fig, axes = figure_grid(max(1, len(methods)), figsize, ncols=4, panel=(3.2, 3.0))
    obs = tab["observed_s"].astype(float)
    lim = (0.8 * obs.min(), 1.25 * obs.max()) if len(obs) else (0.1, 10.0)
    colors = k_colors(tab["k"].astype(int)) if len(tab) else {}
    for m, ax in zip(methods, axes):
        g = tab[(tab["method"] == m) & np.isfinite(tab["predicted_s"].astype(float))]
        if m in err.index and err.loc[m, "scored"] > 0:
            n_inf = int(err.loc[m, "scored"] - len(g))
            ax.set_title(f"{LABELS[m]}: MAPE {err.loc[m, 'mape']:.1f}%\n{int(err.loc[m, 'scored'])} of "
                         f"{int(err.loc[m, 'runs'])} runs" + (f", {n_inf} predicted saturated" if n_inf else ""),
                         fontsize=8)
        else:
            ax.set_title(f"{LABELS[m]}: n/a", fontsize=8)
            ax.text(0.5, 0.5, "n/a: no prediction\n(no acceptance data or\nno k = 0 runs to calibrate)",
                    ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
        for k, gk in g.groupby(g["k"].astype(int)):
            y = gk["predicted_s"].astype(float)
            if gk["lo_s"].notna().any():
                hi = np.where(np.isfinite(gk["hi_s"].astype(float)), gk["hi_s"].astype(float), lim[1])
                yerr = np.clip([y - gk["lo_s"].astype(float), hi - y], 0, None)
                ax.errorbar(gk["observed_s"], y, yerr=yerr, fmt="none", ecolor=colors[k], alpha=0.5, lw=0.8)
            ax.scatter(gk["observed_s"], y, color=colors[k], s=14, zorder=3, label=f"k={k}")
        ax.plot(lim, lim, color="k", ls="--", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="observed mean latency (s)",
               ylabel="predicted mean latency (s)")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        if len(g):
            ax.legend(fontsize=6)
    fig.suptitle(title or f"Observed vs predicted latency; Bayes bars: {hdi_prob:.0%} predictive interval; "
                 "dashed: exact", fontsize=10)
    return fig
