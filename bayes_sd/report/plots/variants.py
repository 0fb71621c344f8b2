"""Plots for the model variants: MoE versus dense verifiers, drafter what-if, and parity.

Each function returns a :class:`matplotlib.figure.Figure` owned by the caller (nothing is
shown). Units are in the axis labels; pass ``synthetic=True`` to label synthetic data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from bayes_sd.model.conditions import CONDITION_COLUMNS as COND

__all__ = ["plot_variant_fits", "plot_what_if_drafter", "plot_parity"]


def plot_variant_fits(models: dict, runs: pd.DataFrame, *, held_out: pd.DataFrame | None = None,
                      synthetic: bool = False, figsize=None) -> Figure:
    """Observed vs predicted mean latency (s) for each fitted configuration in ``models``.

    One panel per configuration: the posterior median with its 90% predictive interval of a
    new run's mean against the observed run mean, training runs grey, ``held_out`` runs red.

    Parameters
    ----------
    models : dict of str to LatencyModel
        Fitted models by configuration name.
    runs : pandas.DataFrame
        The training runs (canonical runs table; saturated runs and runs without latency are left out).
    held_out : pandas.DataFrame, optional
        Runs kept out of the fits, drawn in red.
    synthetic : bool, default False
        Label the data synthetic in the titles.
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).
    """
    fig = Figure(figsize=figsize or (4.2 * len(models), 3.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False).ravel()
    parts = [("training", runs, "0.45")] + ([("held out", held_out, "tab:red")] if held_out is not None else [])
    for ax, (name, m) in zip(axes, models.items()):
        for label, df, color in parts:
            df = df[~df["saturated"].fillna(False).astype(bool) & df["latency_mean_s"].notna()]
            t = m.predict_table(df[COND], max_draws=400)
            y = df["latency_mean_s"].to_numpy()
            med = t["latency_q50_s"].to_numpy()
            err = np.vstack([med - t["latency_pred_q05_s"], t["latency_pred_q95_s"] - med])
            ape = np.mean(np.abs(med / y - 1))
            ax.errorbar(y, med, yerr=np.clip(err, 0, None), fmt="o", ms=3, color=color, alpha=0.6, lw=0.8,
                        label=f"{label} (MAPE {ape:.1%})")
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="observed mean latency (s)", ylabel="predicted (s), 90% interval",
               title=f"{name}" + (" (SYNTHETIC data)" if synthetic else ""))
        ax.legend(fontsize=8)
    return fig


def plot_what_if_drafter(ds: xr.Dataset, *, observed: pd.DataFrame | None = None, synthetic: bool = False,
                         figsize=None) -> Figure:
    """Predicted mean latency (s) vs load per k for a what-if drafter (``what_if_drafter`` output),
    with 90% predictive bands; ``observed`` runs of that drafter (if any) as points.

    Parameters
    ----------
    ds : xarray.Dataset
        :func:`bayes_sd.recommend.what_if_drafter` output (dims ``k`` and ``rate_rps`` or ``concurrency``).
    observed : pandas.DataFrame, optional
        Measured runs of that drafter (``k``, the load column, ``latency_mean_s`` in s).
    synthetic : bool, default False
        Label the data synthetic in the title.
    figsize : tuple of float, optional
        Figure size, inches (default (5.2, 3.8)).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).
    """
    load = "concurrency" if "concurrency" in ds.dims else "rate_rps"
    fig = Figure(figsize=figsize or (5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    x = ds[load].values
    for i, k in enumerate(ds["k"].values):
        color = "0.3" if k == 0 else f"C{i}"
        sel = ds.sel(k=k)
        ax.plot(x, sel["latency_q50_s"], color=color, label=f"k={k}")
        ax.fill_between(x, sel["latency_pred_q05_s"], sel["latency_pred_q95_s"], color=color, alpha=0.15)
        if observed is not None:
            o = observed[observed["k"] == k]
            ax.plot(o[load], o["latency_mean_s"], "o", color=color, ms=5, mfc="none")
    name = ds.attrs.get("drafter", "what-if drafter")
    ax.set(xscale="log", xlabel="concurrency (streams)" if load == "concurrency" else "request rate (requests/s)",
           ylabel="mean request latency (s)",
           title=f"{name}: {ds.attrs.get('layers', '?')} layers, {ds.attrs.get('params_b', '?')} B params"
           + ("\n(SYNTHETIC data)" if synthetic else ""))
    ax.legend(fontsize=8, title="line: prediction, o: measured" if observed is not None else None, title_fontsize=7)
    return fig


def plot_parity(table: pd.DataFrame, *, figsize=None) -> Figure:
    """What a candidate drafter needs to match a reference, per load (``parity`` output):
    extra per-position acceptance (left) and the factor on its draft cost (right), 90% intervals.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`bayes_sd.recommend.parity` output.
    figsize : tuple of float, optional
        Figure size, inches (default (8.4, 3.4)).

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).
    """
    load = "concurrency" if "concurrency" in table else "rate_rps"
    fig = Figure(figsize=figsize or (8.4, 3.4), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    x = table[load].to_numpy(float)
    a1.errorbar(x, table["extra_acceptance"], yerr=np.clip(np.vstack([
        table["extra_acceptance"] - table["extra_acceptance_q05"],
        table["extra_acceptance_q95"] - table["extra_acceptance"]]), 0, None), fmt="o-", capsize=3)
    a1.axhline(0, color="k", lw=0.8)
    a1.set(xscale="log", xlabel=load, ylabel="extra per-position acceptance needed",
           title="> 0: needs more acceptance")
    a2.errorbar(x, table["draft_cost_factor"], yerr=np.clip(np.vstack([
        table["draft_cost_factor"] - table["draft_cost_factor_q05"],
        table["draft_cost_factor_q95"] - table["draft_cost_factor"]]), 0, None), fmt="o-", capsize=3, color="C1")
    a2.axhline(1, color="k", lw=0.8)
    a2.set(xscale="log", yscale="log", xlabel=load, ylabel="draft cost factor at parity",
           title="< 1: must draft that much faster")
    fig.suptitle(f"{table['candidate'].iloc[0]} vs {table['reference'].iloc[0]} (each at its best k)")
    return fig
