"""Latency and speedup versus load, with posterior intervals, per pair and draft length."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd._stats import quantile
from bayes_sd.report.plots.common import (
    BASE,
    figure_grid,
    group_title,
    interval_bounds,
    k_colors,
    load_column,
    load_label,
    log2_axis,
    model_runs,
)
from bayes_sd.traces.schema import NO_DRAFTER
from bayes_sd.traces.summary import data_kind

__all__ = ["load_groups", "load_curves_data", "plot_latency_vs_load", "plot_speedup"]

def load_groups(model, max_panels: int = 12) -> list[dict]:
    """The (verifier, drafter, hardware, dataset, load_type) groups of the fitted runs, in plot order.

    Speculative groups first (real before synthetic, then alternating hardware/verifier so a
    capped list stays varied), then groups measured only without speculation.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    max_panels : int, default 12
        Most groups returned.

    Returns
    -------
    list of dict
        Keys ``verifier``, ``drafter``, ``hardware``, ``dataset``, ``load_type``, ``ks`` (0 plus the
        measured draft lengths), ``synthetic`` and median ``prompt_len``/``output_len`` (tokens).
    """
    fit = model.fit_data.runs.assign(kind=data_kind(model.fit_data.runs["source"]))
    groups = []
    for key, base in fit.groupby(BASE, sort=True):
        for d in sorted(base.loc[base.k > 0, "drafter"].unique()) or [NO_DRAFTER]:
            mine = base[(base.k == 0) | (base.drafter == d)]
            groups.append({**dict(zip(BASE, key)), "drafter": d, "ks": sorted({0, *mine.k[mine.k > 0].astype(int)}),
                           "synthetic": bool((mine.kind == "synthetic").all()),
                           "prompt_len": float(mine.prompt_len.median()),
                           "output_len": float(mine.output_len.median())})
    turns: dict[tuple, int] = {}
    order = []
    for g in groups:  # round-robin over (hardware, verifier) within (speculative?, synthetic?)
        key = (g["drafter"] == NO_DRAFTER, g["synthetic"], g["hardware"], g["verifier"])
        turns[key] = turns.get(key, -1) + 1
        order.append((key[0], key[1], turns[key]))
    return [g for _, g in sorted(zip(order, groups), key=lambda t: t[0])][:max_panels]


def load_curves_data(model, *, hdi_prob: float = 0.9, max_panels: int = 12, n_points: int = 30,
                     max_draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """Predicted mean latency and speedup vs k = 0 over each group's load range (one row per panel, k, load).

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    max_panels : int, default 12
        Most panels (groups of :func:`load_groups`).
    n_points : int, default 30
        Loads per curve.
    max_draws : int, default 500
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    pandas.DataFrame
        Columns: ``panel``, ``verifier``, ``drafter``, ``hardware``, ``dataset``, ``load_type``, ``load``
        (requests/s or streams), ``k``, ``latency_mean_s``/``latency_lo_s``/``latency_hi_s`` (s),
        ``speedup_med``/``speedup_lo``/``speedup_hi``, ``p_slower``, ``p_saturated``;
        ``attrs["hdi_prob"]`` and ``attrs["groups"]``.

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    lo_q, hi_q = interval_bounds(hdi_prob)
    runs, groups, conds = model_runs(model), load_groups(model, max_panels), []
    for i, g in enumerate(groups):
        col = load_column(g["load_type"])
        same = _panel_runs(runs, g)[col].dropna()
        lo, hi = float(same.min()), float(same.max())
        grid = np.geomspace(lo, hi, n_points) if col == "concurrency" else np.linspace(0.5 * lo, 1.05 * hi, n_points)
        for k in g["ks"]:
            conds.append(pd.DataFrame({"panel": i, "verifier": g["verifier"],
                                       "drafter": g["drafter"] if k else NO_DRAFTER,
                                       "hardware": g["hardware"], "dataset": g["dataset"], "k": k,
                                       "prompt_len": g["prompt_len"], "output_len": g["output_len"],
                                       "load_type": g["load_type"], "rate_rps": grid if col == "rate_rps" else np.nan,
                                       "concurrency": grid if col == "concurrency" else np.nan, "load": grid}))
    cond = pd.concat(conds, ignore_index=True)
    dr = model.predict_draws(cond, max_draws=max_draws, seed=seed)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lat, sp = dr.latency, dr.latency_k0 / dr.latency
        out = cond[["panel", "verifier", "drafter", "hardware", "dataset", "load_type", "load", "k"]].assign(
            latency_mean_s=lat.mean(0), latency_lo_s=quantile(lat, lo_q), latency_hi_s=quantile(lat, hi_q),
            speedup_med=quantile(sp, 0.5), speedup_lo=quantile(sp, lo_q), speedup_hi=quantile(sp, hi_q),
            p_slower=(lat > dr.latency_k0).mean(0), p_saturated=(~np.isfinite(lat)).mean(0))
    out.attrs.update(hdi_prob=hdi_prob, groups=groups)
    return out


def _panel_runs(runs: pd.DataFrame, g: dict) -> pd.DataFrame:
    """All runs (saturated too) of group ``g``, its k = 0 baseline included, with a ``load`` column."""
    r = runs[(runs[BASE] == pd.Series({c: g[c] for c in BASE})).all(axis=1)]
    r = r[(r.k == 0) | (r.drafter == g["drafter"])]
    return r.assign(load=r[load_column(g["load_type"])])


def plot_latency_vs_load(model, *, hdi_prob: float = 0.9, max_panels: int = 12, figsize=None,
                         data: pd.DataFrame | None = None) -> Figure:
    """Per group: posterior mean latency with interval vs load, one colour per k, observed runs overlaid.

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
        The result of :func:`load_curves_data`, reused instead of computed.

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    cur = load_curves_data(model, hdi_prob=hdi_prob, max_panels=max_panels) if data is None else data
    hdi_prob = cur.attrs.get("hdi_prob", hdi_prob)
    groups, runs = cur.attrs.get("groups") or load_groups(model, max_panels), model_runs(model)
    fig, axes = figure_grid(len(groups), figsize)
    for i, (g, ax) in enumerate(zip(groups, axes)):
        colors, obs = k_colors(g["ks"]), _panel_runs(runs, g)
        for k in g["ks"]:
            c = cur[(cur.panel == i) & (cur.k == k)]
            ok = np.isfinite(c.latency_mean_s)
            ax.plot(c.load[ok], c.latency_mean_s[ok], color=colors[k], lw=1.4, label=f"k={k}")
            ax.fill_between(c.load, c.latency_lo_s, np.where(np.isfinite(c.latency_hi_s), c.latency_hi_s, np.nan),
                            color=colors[k], alpha=0.18, lw=0)
            o = obs[obs.k == k]
            ax.scatter(o.load[~o.saturated], o.latency_mean_s[~o.saturated], color=colors[k], s=14, zorder=3)
            ax.scatter(o.load[o.saturated], o.latency_mean_s[o.saturated], color=colors[k], marker="x", s=22, zorder=3)
        if obs.latency_mean_s.notna().any():
            ax.set_ylim(0, 1.3 * obs.latency_mean_s.max())
        if g["load_type"] == "concurrency":
            log2_axis(ax)
        ax.set(xlabel=load_label(g["load_type"]), ylabel="mean latency (s)")
        ax.set_title(group_title(g, g["synthetic"]), fontsize=8)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"Posterior mean latency, {hdi_prob:.0%} interval; dots: observed runs, x: saturated (not fitted)",
                 fontsize=10)
    return fig


def plot_speedup(model, *, hdi_prob: float = 0.9, max_panels: int = 12, figsize=None,
                 data: pd.DataFrame | None = None) -> Figure:
    """Per speculative group: speedup vs k = 0 with interval vs load; P(slower) at the highest load annotated.

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
        The result of :func:`load_curves_data`, reused instead of computed.

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    cur = load_curves_data(model, hdi_prob=hdi_prob, max_panels=max_panels) if data is None else data
    hdi_prob = cur.attrs.get("hdi_prob", hdi_prob)
    groups, runs = cur.attrs.get("groups") or load_groups(model, max_panels), model_runs(model)
    panels = [(i, g) for i, g in enumerate(groups) if g["drafter"] != NO_DRAFTER]
    fig, axes = figure_grid(max(1, len(panels)), figsize)
    for (i, g), ax in zip(panels, axes):
        colors, obs = k_colors(g["ks"]), _panel_runs(runs, g)
        base = obs[(obs.k == 0) & ~obs.saturated].groupby("load").latency_mean_s.mean()
        for k in g["ks"][1:]:
            c = cur[(cur.panel == i) & (cur.k == k)]
            ax.plot(c.load, c.speedup_med, color=colors[k], lw=1.4,
                    label=f"k={k}: P(slower)={c.p_slower.iloc[-1]:.2f} at {c.load.iloc[-1]:.3g}")
            ax.fill_between(c.load, c.speedup_lo, c.speedup_hi, color=colors[k], alpha=0.18, lw=0)
            o = obs[(obs.k == k) & ~obs.saturated]
            o = o[o.load.isin(base.index)]
            ax.scatter(o.load, base.loc[o.load].to_numpy() / o.latency_mean_s.to_numpy(), color=colors[k], s=14,
                       zorder=3)
        ax.axhline(1.0, color="k", ls="--", lw=0.9)
        if g["load_type"] == "concurrency":
            log2_axis(ax)
        ax.set(xlabel=load_label(g["load_type"]), ylabel="speedup vs k=0 (x)")
        ax.set_title(group_title(g, g["synthetic"]), fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(f"Speedup over no speculation (median, {hdi_prob:.0%} interval); dots: observed ratio; "
                 "below 1 = slower", fontsize=10)
    return fig
