"""Plots of acceptance length versus draft length (constant versus decaying acceptance).

Functions return a :class:`matplotlib.figure.Figure` the caller owns (not registered with
pyplot, nothing shown). Units are in the axis labels; the data kind (REAL or SYNTHETIC,
from the ``source`` column) is in the title.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd._stats import interval_bounds
from bayes_sd.model.acceptance_curve import posterior_draws, predict_tau
from bayes_sd.theory.acceptance import per_position_from_sweep, position_acceptance
from bayes_sd.traces.summary import data_kind

__all__ = ["plot_acceptance_curve", "plot_tpot_vs_k"]

_STYLE = {"constant": dict(color="tab:orange", ls="--"), "decaying": dict(color="tab:blue", ls="-")}


def plot_acceptance_curve(fits: dict, table: pd.DataFrame, holdout_k: int | None = None, k_grid=None,
                          hdi_prob: float = 0.9, positions: bool = True, figsize=None) -> Figure:
    """Observed acceptance length versus k per drafter, with posterior bands of each form.

    Bands: central ``hdi_prob`` interval of the posterior of tau (no measurement noise); lines:
    posterior mean.

    Parameters
    ----------
    fits : dict of str to arviz.InferenceData
        Form name -> InferenceData from :func:`~bayes_sd.model.acceptance_curve.fit_acceptance_curve`
        (e.g. the fits on ``k < holdout_k`` from ``holdout_eval``).
    table : pandas.DataFrame
        Every observation (output of :func:`~bayes_sd.model.acceptance_curve.acceptance_table`:
        ``drafter``, ``k``, ``tau`` in tokens per verify step).
    holdout_k : int, optional
        The rows at ``holdout_k`` are drawn as open markers labelled "held out".
    k_grid : iterable of int, optional
        Draft lengths of the bands (default ``1..max k + 1``).
    hdi_prob : float, default 0.9
        Mass of the central interval, in (0, 1).
    positions : bool, default True
        Add a second row: per-position acceptance ``a_j`` of each form and the empirical
        ``a_j = s_j / s_{j-1}`` from successive differences of the measured sweep.
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``fits`` is empty or ``hdi_prob`` is not in (0, 1).
    """
    if not fits:
        raise ValueError("fits is empty. Fix: pass {'constant': idata, 'decaying': idata}")
    lo, hi = interval_bounds(hdi_prob)
    drafters = sorted(table["drafter"].unique())
    k_max = int(table["k"].max())
    ks = np.arange(1, k_max + 2) if k_grid is None else np.asarray(list(k_grid), float)
    kinds = set(data_kind(table["source"])) if "source" in table else {"real"}
    label = "SYNTHETIC" if kinds == {"synthetic"} else "REAL data" if kinds == {"real"} else "REAL + SYNTHETIC"
    nrows = 2 if positions else 1
    fig = Figure(figsize=figsize or (4.6 * len(drafters), 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, len(drafters), squeeze=False)
    for c, d in enumerate(drafters):
        obs = table[table["drafter"] == d].sort_values("k")
        ax = axes[0, c]
        for form, idata in fits.items():
            if d not in idata.posterior["drafter"].values:
                continue
            draws = predict_tau(idata, d, ks)
            st = _STYLE.get(form, {})
            ax.fill_between(ks, np.quantile(draws, lo, axis=0), np.quantile(draws, hi, axis=0),
                            color=st.get("color"), alpha=0.2, lw=0)
            ax.plot(ks, draws.mean(0), label=f"{form} ({hdi_prob:.0%} band)", **st)
        held = obs["k"] == holdout_k if holdout_k is not None else np.zeros(len(obs), bool)
        ax.plot(obs.loc[~held, "k"], obs.loc[~held, "tau"], "ko", ms=5, label="measured (fitted)")
        if held.any():
            ax.plot(obs.loc[held, "k"], obs.loc[held, "tau"], "o", mfc="white", mec="red", mew=2, ms=8,
                    label=f"measured k={holdout_k} (held out)")
            ax.axvline(holdout_k, color="red", lw=0.6, alpha=0.5)
        ax.set(title=f"{d}  [{label}]", xlabel="draft length k (tokens)",
               ylabel="acceptance length tau (tokens / step)")
        ax.grid(alpha=0.3)
        if c == 0:
            ax.legend(fontsize=7, loc="upper left")
        if positions:
            _positions_panel(axes[1, c], fits, d, obs, int(ks.max()), lo, hi)
    return fig


def _positions_panel(ax, fits, drafter, obs, k_max, lo, hi) -> None:
    j = np.arange(1, k_max + 1)
    for form, idata in fits.items():
        if drafter not in idata.posterior["drafter"].values:
            continue
        a1 = posterior_draws(idata, "a1").sel(drafter=drafter).to_numpy()
        decay = (posterior_draws(idata, "decay").sel(drafter=drafter).to_numpy()
                 if "decay" in idata.posterior else 0.0 * a1)
        a = position_acceptance(a1, decay, k_max)  # (draws, k_max)
        st = _STYLE.get(form, {})
        ax.fill_between(j, np.quantile(a, lo, axis=0), np.quantile(a, hi, axis=0), color=st.get("color"),
                        alpha=0.2, lw=0)
        ax.plot(j, a.mean(0), label=form, **st)
    ks, tau = obs["k"].to_numpy(float), obs["tau"].to_numpy(float)
    if len(ks) >= 3 and np.all(np.diff(ks) == 1):
        kk, _, a_emp = per_position_from_sweep(ks, tau)
        ax.plot(kk, a_emp, "ks", ms=4, label="s_j / s_(j-1) from the sweep (noisy)")
    ax.set(xlabel="draft position j", ylabel="acceptance a_j (given 1..j-1 accepted)", ylim=(0, 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


def plot_tpot_vs_k(sim: pd.DataFrame, measured: pd.DataFrame | None = None, figsize=None) -> Figure:
    """Batch-1 time per output token versus draft length, one panel per (scenario, drafter).

    The best k of each form (lowest TPOT) is marked with a triangle; TPOT is drawn in ms / token.

    Parameters
    ----------
    sim : pandas.DataFrame
        Columns ``drafter, form, k, tpot_s`` (s / token) and optionally ``scenario`` (one row of
        panels per scenario), e.g. from ``bayes_sd.simulate.simulate_run`` (SYNTHETIC: the titles
        say so).
    measured : pandas.DataFrame, optional
        REAL rows ``drafter, k, tpot_s`` (s / token) drawn as black points.
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``sim`` lacks a column.
    """
    need = {"drafter", "form", "k", "tpot_s"}
    if not need <= set(sim.columns):
        raise ValueError(f"sim lacks column(s) {sorted(need - set(sim.columns))}. Fix: one row per (drafter, form, k)")
    sim = sim.assign(scenario=sim["scenario"] if "scenario" in sim else "")
    scenarios, drafters = list(dict.fromkeys(sim["scenario"])), sorted(sim["drafter"].unique())
    fig = Figure(figsize=figsize or (4.6 * len(drafters), 3.2 * len(scenarios)), layout="constrained")
    axes = fig.subplots(len(scenarios), len(drafters), squeeze=False)
    for r, sc in enumerate(scenarios):
        for c, d in enumerate(drafters):
            ax = axes[r, c]
            for form, g in sim[(sim["scenario"] == sc) & (sim["drafter"] == d)].groupby("form", sort=False):
                g = g.sort_values("k")
                st = _STYLE.get(form, {})
                ax.plot(g["k"], g["tpot_s"] * 1e3, marker=".", label=f"{form} (simulated)", **st)
                best = g.loc[g["tpot_s"].idxmin()]
                ax.plot(best["k"], best["tpot_s"] * 1e3, "v", color=st.get("color"), ms=10)
            if measured is not None and sc == scenarios[0]:
                m = measured[measured["drafter"] == d]
                ax.plot(m["k"], m["tpot_s"] * 1e3, "ko", ms=5, label="measured (REAL)")
            ax.set_title(f"{d}  [SYNTHETIC]" + (f"\n{sc}" if sc else ""), fontsize=9)
            ax.set(xlabel="draft length k (tokens)", ylabel="TPOT at batch 1 (ms / token)")
            ax.grid(alpha=0.3)
            if c == 0:
                ax.legend(fontsize=7)
    return fig
