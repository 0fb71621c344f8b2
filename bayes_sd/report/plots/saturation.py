"""Saturation rate per draft length: where the server stops keeping up."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd._stats import quantile
from bayes_sd.report.plots.common import figure_grid, group_title, interval_bounds, k_colors
from bayes_sd.report.plots.latency import load_groups
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["saturation_data", "plot_saturation"]

def saturation_data(model, *, hdi_prob: float = 0.9, max_panels: int = 12, max_draws: int = 500,
                    seed: int = 0) -> pd.DataFrame:
    """Posterior of the saturation rate 1/C2 (requests/s) per pair/hardware/dataset and k.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    max_panels : int, default 12
        Most panels (groups of :func:`load_groups`).
    max_draws : int, default 500
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    pandas.DataFrame
        One row per (group, k): ``panel``, ``group``, ``verifier``, ``drafter``, ``hardware``, ``dataset``,
        ``k``, ``median_rps``, ``lo_rps``, ``hi_rps`` (requests/s) and the draws (column ``draws``);
        ``attrs["hdi_prob"]``.

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    lo_q, hi_q = interval_bounds(hdi_prob)
    gs = pd.DataFrame(load_groups(model, max_panels)).drop_duplicates(["verifier", "drafter", "hardware", "dataset"])
    gs = gs.assign(panel=range(len(gs)), group=[group_title(g, g["synthetic"]) for g in gs.to_dict("records")])
    cond = gs.explode("ks").rename(columns={"ks": "k"}).reset_index(drop=True).assign(
        load_type="rate", rate_rps=0.0, concurrency=np.nan)  # 1/C2 does not depend on the load
    cond = cond.assign(k=cond.k.astype(int), drafter=cond.drafter.where(cond.k.astype(int) > 0, NO_DRAFTER))
    sat = model.predict_draws(cond, max_draws=max_draws, seed=seed).saturation_rps
    out = cond[["panel", "group", "verifier", "drafter", "hardware", "dataset", "k"]].assign(
        median_rps=quantile(sat, 0.5), lo_rps=quantile(sat, lo_q), hi_rps=quantile(sat, hi_q), draws=list(sat.T))
    out.attrs["hdi_prob"] = hdi_prob
    return out


def plot_saturation(model, *, hdi_prob: float = 0.9, max_panels: int = 12, figsize=None,
                    data: pd.DataFrame | None = None) -> Figure:
    """Violins of the saturation-rate posterior per k, one panel per pair/hardware/dataset.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    max_panels : int, default 12
        Most panels (groups of :func:`load_groups`).
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).
    data : pandas.DataFrame, optional
        The result of :func:`saturation_data`, reused instead of computed.

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    tab = saturation_data(model, hdi_prob=hdi_prob, max_panels=max_panels) if data is None else data
    hdi_prob = tab.attrs.get("hdi_prob", hdi_prob)
    panels = list(dict.fromkeys(tab.panel))
    fig, axes = figure_grid(len(panels), figsize)
    for p, ax in zip(panels, axes):
        t = tab[tab.panel == p]
        colors = k_colors(t.k)
        pos = np.arange(len(t))
        parts = ax.violinplot([d[np.isfinite(d)] for d in t.draws], positions=pos, showextrema=False)
        for body, k in zip(parts["bodies"], t.k):
            body.set_facecolor(colors[k])
            body.set_alpha(0.5)
        ax.errorbar(pos, t.median_rps, yerr=[t.median_rps - t.lo_rps, t.hi_rps - t.median_rps], fmt="o", color="k",
                    ms=3, elinewidth=1)
        ax.set_xticks(pos, [f"k={k}" for k in t.k], fontsize=7)
        ax.set_ylabel("saturation rate (requests/s)")
        ax.set_title(t.group.iloc[0], fontsize=8)
    fig.suptitle(f"Saturation rate 1/C2: posterior (violin), median and {hdi_prob:.0%} interval", fontsize=10)
    return fig
