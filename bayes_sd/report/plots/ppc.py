"""Posterior predictive check: replicated run latencies against the observed ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bayes_sd.report.plots.common import interval_bounds, model_runs

__all__ = ["ppc_data", "plot_ppc"]

def ppc_data(model, *, hdi_prob: float = 0.9, pp=None, random_seed: int = 0) -> pd.DataFrame:
    """Observed run mean latency (s) vs its posterior predictive interval, one row per fitted run.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    pp : arviz.InferenceData, optional
        With ``posterior_predictive.latency_obs`` (log s); default: drawn now with
        :meth:`LatencyModel.sample_posterior_predictive` (not stored on the model).
    random_seed : int, default 0
        Seed of those draws.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id``, ``kind`` (real/synthetic), ``observed_s``, ``median_s``, ``lo_s``, ``hi_s`` (s)
        and ``inside`` (the observation is inside the interval); ``attrs["hdi_prob"]``.

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    lo_q, hi_q = interval_bounds(hdi_prob)
    if pp is None:
        pp = model.sample_posterior_predictive(random_seed=random_seed, extend_idata=False)
    sim = np.exp(pp.posterior_predictive["latency_obs"].stack(sample=("chain", "draw")).transpose("sample", ...).values)
    obs = np.exp(pp.observed_data["latency_obs"].values)
    ids = [str(r) for r in pp.observed_data["latency_run"].values]
    kind = model_runs(model).drop_duplicates("run_id").set_index("run_id").loc[ids, "kind"].to_numpy()
    out = pd.DataFrame({"run_id": ids, "kind": kind, "observed_s": obs, "median_s": np.median(sim, axis=0),
                        "lo_s": np.quantile(sim, lo_q, axis=0), "hi_s": np.quantile(sim, hi_q, axis=0)})
    out["inside"] = (out.observed_s >= out.lo_s) & (out.observed_s <= out.hi_s)
    out.attrs["hdi_prob"] = hdi_prob
    return out


def plot_ppc(model, *, hdi_prob: float = 0.9, figsize=None, data: pd.DataFrame | None = None) -> Figure:
    """Posterior predictive check: observed mean latency vs the predictive interval (log-log).

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central posterior interval, in (0, 1).
    figsize : tuple of float, optional
        Figure size, inches (default: sized to the content).
    data : pandas.DataFrame, optional
        The result of :func:`ppc_data`, reused instead of computed.

    Returns
    -------
    matplotlib.figure.Figure
        Owned by the caller (not registered with pyplot; nothing is shown).

    Raises
    ------
    ValueError
        When ``hdi_prob`` is not in (0, 1) or the model is not fitted.
    """
    tab = ppc_data(model, hdi_prob=hdi_prob) if data is None else data
    hdi_prob = tab.attrs.get("hdi_prob", hdi_prob)
    fig = Figure(figsize=figsize or (5.0, 4.6), layout="constrained")
    ax = fig.subplots()
    # axis range from finite values; an interval reaching past saturation (inf) is drawn to the edge
    vals = np.concatenate([tab.observed_s, tab.lo_s, tab.median_s])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    lims = [vals.min() * 0.8, vals.max() * 1.25]
    tab = tab.assign(**{c: tab[c].clip(upper=lims[1]) for c in ("lo_s", "median_s", "hi_s")})
    for kind, marker in (("real", "o"), ("synthetic", "^")):
        for inside, color in ((True, "C0"), (False, "C3")):
            t = tab[(tab.kind == kind) & (tab.inside == inside)]
            if len(t):
                ax.errorbar(t.observed_s, t.median_s, yerr=[t.median_s - t.lo_s, t.hi_s - t.median_s], fmt=marker,
                            ms=3.5, color=color, elinewidth=0.8, alpha=0.75,
                            label=f"{kind}, {'inside' if inside else 'outside'} ({len(t)})")
    ax.plot(lims, lims, "k--", lw=0.8, label="predicted = observed")
    ax.set(xscale="log", yscale="log", xlim=lims, ylim=lims, xlabel="observed run mean latency (s)",
           ylabel=f"posterior predictive median, {hdi_prob:.0%} interval (s)")
    ax.set_title(f"PPC: {int(tab.inside.sum())} of {len(tab)} runs inside their {hdi_prob:.0%} interval", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig
