"""What the plots share: figure grids, colours per k, the model's runs, labels and axes."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bayes_sd._stats import interval_bounds
from bayes_sd.traces.schema import NO_DRAFTER
from bayes_sd.traces.summary import data_kind

__all__ = ["BASE", "figure_grid", "interval_bounds", "k_colors", "model_runs", "short_name", "group_title",
           "load_column", "log2_axis", "load_label"]

#: the columns that make one panel of a load plot (with the drafter)
BASE = ["verifier", "hardware", "dataset", "load_type"]


def figure_grid(n_panels: int, figsize=None, ncols: int = 3, panel=(3.6, 2.8), **kw):
    """A figure with ``n_panels`` axes in a grid of ``ncols`` columns (panel size in inches); returns
    ``(figure, flat axes)`` with the unused axes hidden."""
    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=figsize or (panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def k_colors(ks) -> dict:
    """Colour per draft length: viridis for k >= 1, dark grey for k = 0."""
    spec = sorted(k for k in set(ks) if k > 0)
    cmap = colormaps["viridis"]
    out = {k: cmap(0.15 + 0.7 * i / (len(spec) - 1) if len(spec) > 1 else 0.45) for i, k in enumerate(spec)}
    out[0] = "0.25"
    return out


def model_runs(model) -> pd.DataFrame:
    """All runs given to the model, with ``kind`` (real/synthetic) and k = 0 runs' drafter as 'none'."""
    runs = model.runs.copy()
    runs["kind"] = data_kind(runs["source"])
    runs["drafter"] = runs["drafter"].fillna(NO_DRAFTER).where(runs["k"] > 0, NO_DRAFTER)
    runs["saturated"] = runs["saturated"].fillna(False).astype(bool) if "saturated" in runs else False
    return runs


def short_name(name) -> str:
    """A model name without its organisation (``Qwen/Qwen3.8-27B`` -> ``Qwen3.8-27B``)."""
    return str(name).split("/")[-1]


def group_title(g: dict, synthetic: bool = False) -> str:
    """'verifier / drafter @ hardware, dataset' (+ ' (synthetic)').

    Parameters
    ----------
    g : dict
        A group, with keys ``verifier``, ``drafter``, ``hardware``, ``dataset``
        (:func:`~bayes_sd.report.plots.latency.load_groups`).
    synthetic : bool, default False
        Append ``" (synthetic)"``.

    Returns
    -------
    str
        The title; the verifier without its organisation.

    Examples
    --------
    >>> group_title({"verifier": "Qwen/Qwen3.8-27B", "drafter": "mtp", "hardware": "B200", "dataset": "HumanEval"})
    'Qwen3.8-27B / mtp @ B200, HumanEval'
    """
    txt = f"{short_name(g['verifier'])} / {g['drafter']} @ {g['hardware']}, {g['dataset']}"
    return txt + (" (synthetic)" if synthetic else "")


def load_column(load_type: str) -> str:
    """The run column holding the load of ``load_type``."""
    return "rate_rps" if load_type == "rate" else "concurrency"


def log2_axis(ax) -> None:
    """A log2 x axis with plain-number tick labels."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def load_label(load_type: str) -> str:
    """The axis label of ``load_type``, with its unit."""
    return "offered rate (requests/s)" if load_type == "rate" else "concurrency (requests in flight)"
