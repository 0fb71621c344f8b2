"""Recommended draft length per load."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd.model.conditions import load_column
from bayes_sd.report.plots.common import group_title, load_label, log2_axis, model_runs

__all__ = ["plot_recommendations"]

def plot_recommendations(model, recommendations: pd.DataFrame, *, max_panels: int = 6, figsize=None) -> Figure:
    """Policy plot per group: best k vs load (colour = P(best)), and the chosen k's latency interval below.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    recommendations : pandas.DataFrame
        :func:`bayes_sd.recommend.recommend_k` rows (``best_k``, ``p_best``, ``latency_mean_s`` with
        ``latency_q05_s``/``latency_q95_s`` in s, ``rate_rps`` or ``concurrency``; grouped by
        verifier/drafter/hardware/dataset when given).
    max_panels : int, default 6
        Most groups shown.
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).
    """
    rec, runs = recommendations, model_runs(model)
    keys = [c for c in ("verifier", "drafter", "hardware", "dataset") if c in rec]
    groups = (list(rec.groupby(keys, sort=False)) if keys else [((), rec)])[:max_panels]
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=figsize or (3.8 * ncols, 4.6 * nrows), layout="constrained")
    axes = fig.subplots(2 * nrows, ncols, squeeze=False, gridspec_kw={"height_ratios": [1, 1.3] * nrows})
    for j in range(len(groups), nrows * ncols):
        axes[2 * (j // ncols), j % ncols].set_visible(False)
        axes[2 * (j // ncols) + 1, j % ncols].set_visible(False)
    for j, (key, g) in enumerate(groups):
        top, bot = axes[2 * (j // ncols), j % ncols], axes[2 * (j // ncols) + 1, j % ncols]
        bot.sharex(top)
        col = load_column(g)
        g = g.sort_values(col)
        x = g[col].to_numpy(float)
        top.step(x, g.best_k, where="mid", color="0.6", lw=0.9)
        sc = top.scatter(x, g.best_k, c=g["p_best"] if "p_best" in g else np.ones(len(g)), cmap="viridis", vmin=0,
                         vmax=1, s=30, zorder=3)
        top.set_ylabel("best k (draft tokens)")
        top.yaxis.get_major_locator().set_params(integer=True)
        info = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        syn = bool(info) and bool(((runs[list(info)] == pd.Series(info)).all(axis=1)
                                   & (runs.kind == "synthetic")).any())
        top.set_title(group_title({**dict.fromkeys(("verifier", "drafter", "hardware", "dataset"), "?"), **info}, syn),
                      fontsize=8)
        bot.plot(x, g.latency_mean_s, color="C0", lw=1.4, label="mean latency of chosen k")
        if {"latency_q05_s", "latency_q95_s"} <= set(g):
            bot.fill_between(x, g.latency_q05_s, g.latency_q95_s, color="C0", alpha=0.2, lw=0, label="90% interval")
        bot.set(xlabel=load_label("rate" if col == "rate_rps" else "concurrency"), ylabel="latency (s)")
        if col == "concurrency":
            log2_axis(bot)
        bot.legend(fontsize=6)
    fig.colorbar(sc, ax=axes.ravel().tolist(), label="P(k is best)", shrink=0.6)
    fig.suptitle("Draft-length policy: best k per load and its latency", fontsize=10)
    return fig
