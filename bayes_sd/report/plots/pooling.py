"""Partial pooling: each level's own estimate against its pooled posterior."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd import theory
from bayes_sd.report.plots.common import interval_bounds, short_name
from bayes_sd.traces.summary import data_kind

__all__ = ["shrinkage_data", "plot_shrinkage"]

def shrinkage_data(model, *, hdi_prob: float = 0.9) -> pd.DataFrame:
    """Acceptance per (pair, dataset): no-pooling estimate vs partially pooled posterior.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per (pair, dataset) level: ``level``, ``runs``, ``runs_with_tau``; ``raw``: the constant
        per-position acceptance implied by the level's own runs (mean of
        :func:`bayes_sd.theory.implied_acceptance` over its runs' observed acceptance length);
        ``post_mean``/``post_lo``/``post_hi``: the posterior of ``acceptance``; ``pop_mean``: the
        population mean sigmoid(mu_accept); ``synthetic``. No rows when the model has no such levels.

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1).
    """
    lo_q, hi_q = interval_bounds(hdi_prob)
    post, levels = model.idata.posterior, list(model.fit_data.coords.get("pair_dataset", []))
    cols = ["level", "runs", "runs_with_tau", "raw", "post_mean", "post_lo", "post_hi", "pop_mean", "synthetic"]
    if not levels:
        return pd.DataFrame(columns=cols)
    fit = model.fit_data.runs
    fit = fit[fit.k > 0]
    tau = fit["acceptance_length"] if "acceptance_length" in fit else pd.Series(np.nan, index=fit.index)
    fit = fit.assign(level=[f"{v} / {d} | {s}" for v, d, s in zip(fit.verifier, fit.drafter, fit.dataset)],
                     raw=theory.implied_acceptance(tau.to_numpy(float), fit.k.to_numpy(float)),
                     synthetic=data_kind(fit.source) == "synthetic")
    agg = fit.groupby("level").agg(runs=("k", "size"), runs_with_tau=("raw", "count"), raw=("raw", "mean"),
                                   synthetic=("synthetic", "all"))
    d = post["acceptance"].stack(sample=("chain", "draw")).transpose("pair_dataset", "sample").values
    out = agg.reindex(levels).rename_axis("level").reset_index().assign(
        post_mean=d.mean(1), post_lo=np.quantile(d, lo_q, axis=1), post_hi=np.quantile(d, hi_q, axis=1),
        pop_mean=float((1 / (1 + np.exp(-post["mu_accept"]))).mean()) if "mu_accept" in post else np.nan)[cols]
    out.attrs["hdi_prob"] = hdi_prob
    return out


def plot_shrinkage(model, *, hdi_prob: float = 0.9, figsize=None, data: pd.DataFrame | None = None) -> Figure:
    """Per-level acceptance: own-runs estimate (open circle) -> pooled posterior (dot, interval), arrows.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).
    data : pandas.DataFrame, optional
        The result of :func:`shrinkage_data`, reused instead of computed.

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1).
    """
    tab = shrinkage_data(model, hdi_prob=hdi_prob) if data is None else data
    hdi_prob = tab.attrs.get("hdi_prob", hdi_prob)
    fig = Figure(figsize=figsize or (7.0, 1.4 + 0.3 * max(1, len(tab))), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(tab))[::-1]
    ax.hlines(y, tab.post_lo, tab.post_hi, color="C0", lw=2, label=f"posterior {hdi_prob:.0%} interval")
    ax.plot(tab.post_mean, y, "o", color="C0", ms=5, label="posterior mean (partial pooling)")
    ax.plot(tab.raw, y, "o", mfc="none", color="C3", ms=6, label="own runs only (no pooling)")
    for yi, r, p in zip(y, tab.raw, tab.post_mean):
        if np.isfinite(r) and abs(p - r) > 1e-3:
            ax.annotate("", xy=(p, yi), xytext=(r, yi), arrowprops=dict(arrowstyle="->", color="0.4", lw=0.8))
    if len(tab) and np.isfinite(tab.pop_mean.iloc[0]):
        ax.axvline(tab.pop_mean.iloc[0], color="0.5", ls="--", lw=0.9, label="population mean")
    names = [f"{short_name(lv.split(' / ')[0])} / {lv.split(' / ', 1)[-1]}{' (synthetic)' if s else ''}"
             for lv, s in zip(tab.level, tab.synthetic)]
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("per-position acceptance probability a (constant over positions)")
    ax.set_title("Acceptance per pair | dataset: shrinkage toward the population", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncol=4)
    return fig
