"""Posterior plots of a fitted :class:`~bayes_sd.model.LatencyModel`.

Every ``plot_*`` function takes the model first, then options (``hdi_prob``: mass of the
central interval, ``figsize``), and returns a :class:`matplotlib.figure.Figure` that the
caller owns (it is not registered with pyplot; nothing is shown). The numbers behind a plot
come from a public ``*_data`` function; pass its result as ``data=`` to reuse it (the report
does, so each figure and its reading sentence share one computation). Units are in the axis
labels; synthetic data are labelled "synthetic".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bayes_sd import theory
from bayes_sd.baselines import BASELINES, LABELS, error_table, in_sample_comparison
from bayes_sd.summary import data_kind
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["plot_data_overview", "plot_diagnostics", "plot_ppc", "plot_latency_vs_load", "plot_speedup",
           "plot_saturation", "plot_shrinkage", "plot_recommendations", "diagnostics_data", "ppc_data",
           "load_groups", "load_curves_data", "saturation_data", "shrinkage_data", "group_title", "plot_baselines"]

BASE = ["verifier", "hardware", "dataset", "load_type"]


# ---------------------------------------------------------------------------- helpers
def _fig(n_panels: int, figsize=None, ncols: int = 3, panel=(3.6, 2.8), **kw):
    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=figsize or (panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _bounds(hdi_prob: float) -> tuple[float, float]:
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must be in (0, 1), got {hdi_prob}")
    return (1 - hdi_prob) / 2, (1 + hdi_prob) / 2


def _q(x: np.ndarray, q: float) -> np.ndarray:
    return np.quantile(x, q, axis=0, method="inverted_cdf")  # inf-safe (saturated draws)


def _k_colors(ks) -> dict:
    spec = sorted(k for k in set(ks) if k > 0)
    cmap = colormaps["viridis"]
    out = {k: cmap(0.15 + 0.7 * i / (len(spec) - 1) if len(spec) > 1 else 0.45) for i, k in enumerate(spec)}
    out[0] = "0.25"
    return out


def _runs(model) -> pd.DataFrame:
    """All runs given to the model, with ``kind`` (real/synthetic) and k = 0 runs' drafter as 'none'."""
    runs = model.runs.copy()
    runs["kind"] = data_kind(runs["source"])
    runs["drafter"] = runs["drafter"].fillna(NO_DRAFTER).where(runs["k"] > 0, NO_DRAFTER)
    runs["saturated"] = runs["saturated"].fillna(False).astype(bool) if "saturated" in runs else False
    return runs


def _short(name) -> str:
    return str(name).split("/")[-1]


def group_title(g: dict, synthetic: bool = False) -> str:
    """'verifier / drafter @ hardware, dataset' (+ ' (synthetic)')."""
    txt = f"{_short(g['verifier'])} / {g['drafter']} @ {g['hardware']}, {g['dataset']}"
    return txt + (" (synthetic)" if synthetic else "")


def _load_col(load_type: str) -> str:
    return "rate_rps" if load_type == "rate" else "concurrency"


def _log2(ax) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _load_label(load_type: str) -> str:
    return "offered rate (requests/s)" if load_type == "rate" else "concurrency (requests in flight)"


# ---------------------------------------------------------------------------- data overview
def plot_data_overview(model, *, figsize=None) -> Figure:
    """Runs per verifier/drafter pair x hardware: real vs synthetic, saturated runs marked."""
    runs = _runs(model)
    runs["row"] = [f"{_short(v)} / {d} @ {h}" for v, d, h in zip(runs.verifier, runs.drafter, runs.hardware)]
    counts = runs.groupby(["row", "kind", "saturated"]).size().unstack(["kind", "saturated"], fill_value=0)
    rows = sorted(counts.index, reverse=True)
    fig = Figure(figsize=figsize or (7.5, 1.6 + 0.26 * len(rows)), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(rows))
    styles = {("real", False): dict(color="C0", label="real"),
              ("real", True): dict(color="C0", alpha=0.4, hatch="xx", label="real, saturated (not fitted)"),
              ("synthetic", False): dict(color="C1", label="synthetic"),
              ("synthetic", True): dict(color="C1", alpha=0.4, hatch="xx", label="synthetic, saturated (not fitted)")}
    for key, style in styles.items():
        if key in counts:
            n = counts[key].reindex(rows).to_numpy(float)
            ax.barh(rows, n, left=left, edgecolor="white", **style)
            left += n
    n_sat = int(runs.saturated.sum())
    n_syn = int((runs.kind == "synthetic").sum())
    ax.set_xlabel("runs (one server configuration at one load)")
    ax.set_title(f"{len(runs)} runs: {len(runs) - n_syn} real, {n_syn} synthetic; {n_sat} saturated", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncol=2)
    ax.tick_params(axis="y", labelsize=7)
    return fig


# ---------------------------------------------------------------------------- diagnostics
def diagnostics_data(model) -> pd.DataFrame:
    """R-hat and bulk/tail ESS of every posterior parameter element (one row each)."""
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
    """Distributions of R-hat and ESS across parameters; divergences and verdict in the title."""
    d = model.diagnostics()
    tab = diagnostics_data(model) if data is None else data
    fig, (a1, a2) = _fig(2, figsize, ncols=2, panel=(4.0, 3.0))
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


# ---------------------------------------------------------------------------- PPC
def ppc_data(model, *, hdi_prob: float = 0.9, pp=None, random_seed: int = 0) -> pd.DataFrame:
    """Observed run mean latency (s) vs its posterior predictive interval, one row per fitted run.

    ``pp``: an InferenceData with ``posterior_predictive.latency_obs`` (log s); default: drawn
    now with :meth:`LatencyModel.sample_posterior_predictive` (not stored on the model).
    """
    lo_q, hi_q = _bounds(hdi_prob)
    if pp is None:
        pp = model.sample_posterior_predictive(random_seed=random_seed, extend_idata=False)
    sim = np.exp(pp.posterior_predictive["latency_obs"].stack(sample=("chain", "draw")).transpose("sample", ...).values)
    obs = np.exp(pp.observed_data["latency_obs"].values)
    ids = [str(r) for r in pp.observed_data["latency_run"].values]
    kind = _runs(model).drop_duplicates("run_id").set_index("run_id").loc[ids, "kind"].to_numpy()
    out = pd.DataFrame({"run_id": ids, "kind": kind, "observed_s": obs, "median_s": np.median(sim, axis=0),
                        "lo_s": np.quantile(sim, lo_q, axis=0), "hi_s": np.quantile(sim, hi_q, axis=0)})
    out["inside"] = (out.observed_s >= out.lo_s) & (out.observed_s <= out.hi_s)
    out.attrs["hdi_prob"] = hdi_prob
    return out


def plot_ppc(model, *, hdi_prob: float = 0.9, figsize=None, data: pd.DataFrame | None = None) -> Figure:
    """Posterior predictive check: observed mean latency vs the predictive interval (log-log)."""
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


# ---------------------------------------------------------------------------- load curves
def load_groups(model, max_panels: int = 12) -> list[dict]:
    """The (verifier, drafter, hardware, dataset, load_type) groups of the fitted runs, in plot order.

    Speculative groups first (real before synthetic, then alternating hardware/verifier so a
    capped list stays varied), then groups measured only without speculation. Each dict also
    holds ``ks`` (0 plus the measured draft lengths), ``synthetic`` and median prompt/output lengths.
    """
    fit = model.fit_data.runs.assign(kind=data_kind(model.fit_data.runs["source"]))
    groups = []
    for key, base in fit.groupby(BASE, sort=True):
        for d in sorted(base.loc[base.k > 0, "drafter"].unique()) or [NO_DRAFTER]:
            mine = base[(base.k == 0) | (base.drafter == d)]
            groups.append({**dict(zip(BASE, key)), "drafter": d, "ks": sorted({0, *mine.k[mine.k > 0].astype(int)}),
                           "synthetic": bool((mine.kind == "synthetic").all()),
                           "prompt_len": float(mine.prompt_len.median()), "output_len": float(mine.output_len.median())})
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

    Columns: panel, load_type, load, k, latency_mean_s/lo_s/hi_s, speedup_med/lo/hi, p_slower, p_saturated.
    """
    lo_q, hi_q = _bounds(hdi_prob)
    runs, groups, conds = _runs(model), load_groups(model, max_panels), []
    for i, g in enumerate(groups):
        col = _load_col(g["load_type"])
        same = _panel_runs(runs, g)[col].dropna()
        lo, hi = float(same.min()), float(same.max())
        grid = np.geomspace(lo, hi, n_points) if col == "concurrency" else np.linspace(0.5 * lo, 1.05 * hi, n_points)
        for k in g["ks"]:
            conds.append(pd.DataFrame({"panel": i, "verifier": g["verifier"], "drafter": g["drafter"] if k else NO_DRAFTER,
                                       "hardware": g["hardware"], "dataset": g["dataset"], "k": k,
                                       "prompt_len": g["prompt_len"], "output_len": g["output_len"],
                                       "load_type": g["load_type"], "rate_rps": grid if col == "rate_rps" else np.nan,
                                       "concurrency": grid if col == "concurrency" else np.nan, "load": grid}))
    cond = pd.concat(conds, ignore_index=True)
    dr = model.predict_draws(cond, max_draws=max_draws, seed=seed)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lat, sp = dr.latency, dr.latency_k0 / dr.latency
        out = cond[["panel", "verifier", "drafter", "hardware", "dataset", "load_type", "load", "k"]].assign(
            latency_mean_s=lat.mean(0), latency_lo_s=_q(lat, lo_q), latency_hi_s=_q(lat, hi_q),
            speedup_med=_q(sp, 0.5), speedup_lo=_q(sp, lo_q), speedup_hi=_q(sp, hi_q),
            p_slower=(lat > dr.latency_k0).mean(0), p_saturated=(~np.isfinite(lat)).mean(0))
    out.attrs.update(hdi_prob=hdi_prob, groups=groups)
    return out


def _panel_runs(runs: pd.DataFrame, g: dict) -> pd.DataFrame:
    """All runs (saturated too) of group ``g``, its k = 0 baseline included, with a ``load`` column."""
    r = runs[(runs[BASE] == pd.Series({c: g[c] for c in BASE})).all(axis=1)]
    r = r[(r.k == 0) | (r.drafter == g["drafter"])]
    return r.assign(load=r[_load_col(g["load_type"])])


def plot_latency_vs_load(model, *, hdi_prob: float = 0.9, max_panels: int = 12, figsize=None,
                         data: pd.DataFrame | None = None) -> Figure:
    """Per group: posterior mean latency with interval vs load, one colour per k, observed runs overlaid."""
    cur = load_curves_data(model, hdi_prob=hdi_prob, max_panels=max_panels) if data is None else data
    hdi_prob = cur.attrs.get("hdi_prob", hdi_prob)
    groups, runs = cur.attrs.get("groups") or load_groups(model, max_panels), _runs(model)
    fig, axes = _fig(len(groups), figsize)
    for i, (g, ax) in enumerate(zip(groups, axes)):
        colors, obs = _k_colors(g["ks"]), _panel_runs(runs, g)
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
            _log2(ax)
        ax.set(xlabel=_load_label(g["load_type"]), ylabel="mean latency (s)")
        ax.set_title(group_title(g, g["synthetic"]), fontsize=8)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"Posterior mean latency, {hdi_prob:.0%} interval; dots: observed runs, x: saturated (not fitted)",
                 fontsize=10)
    return fig


def plot_speedup(model, *, hdi_prob: float = 0.9, max_panels: int = 12, figsize=None,
                 data: pd.DataFrame | None = None) -> Figure:
    """Per speculative group: speedup vs k = 0 with interval vs load; P(slower) at the highest load annotated."""
    cur = load_curves_data(model, hdi_prob=hdi_prob, max_panels=max_panels) if data is None else data
    hdi_prob = cur.attrs.get("hdi_prob", hdi_prob)
    groups, runs = cur.attrs.get("groups") or load_groups(model, max_panels), _runs(model)
    panels = [(i, g) for i, g in enumerate(groups) if g["drafter"] != NO_DRAFTER]
    fig, axes = _fig(max(1, len(panels)), figsize)
    for (i, g), ax in zip(panels, axes):
        colors, obs = _k_colors(g["ks"]), _panel_runs(runs, g)
        base = obs[(obs.k == 0) & ~obs.saturated].groupby("load").latency_mean_s.mean()
        for k in g["ks"][1:]:
            c = cur[(cur.panel == i) & (cur.k == k)]
            ax.plot(c.load, c.speedup_med, color=colors[k], lw=1.4,
                    label=f"k={k}: P(slower)={c.p_slower.iloc[-1]:.2f} at {c.load.iloc[-1]:.3g}")
            ax.fill_between(c.load, c.speedup_lo, c.speedup_hi, color=colors[k], alpha=0.18, lw=0)
            o = obs[(obs.k == k) & ~obs.saturated]
            o = o[o.load.isin(base.index)]
            ax.scatter(o.load, base.loc[o.load].to_numpy() / o.latency_mean_s.to_numpy(), color=colors[k], s=14, zorder=3)
        ax.axhline(1.0, color="k", ls="--", lw=0.9)
        if g["load_type"] == "concurrency":
            _log2(ax)
        ax.set(xlabel=_load_label(g["load_type"]), ylabel="speedup vs k=0 (x)")
        ax.set_title(group_title(g, g["synthetic"]), fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(f"Speedup over no speculation (median, {hdi_prob:.0%} interval); dots: observed ratio; "
                 "below 1 = slower", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- saturation
def saturation_data(model, *, hdi_prob: float = 0.9, max_panels: int = 12, max_draws: int = 500,
                    seed: int = 0) -> pd.DataFrame:
    """Posterior of the saturation rate 1/C2 (requests/s) per pair/hardware/dataset and k.

    One row per (group, k) with median, interval and the draws (column ``draws``).
    """
    lo_q, hi_q = _bounds(hdi_prob)
    gs = pd.DataFrame(load_groups(model, max_panels)).drop_duplicates(["verifier", "drafter", "hardware", "dataset"])
    gs = gs.assign(panel=range(len(gs)), group=[group_title(g, g["synthetic"]) for g in gs.to_dict("records")])
    cond = gs.explode("ks").rename(columns={"ks": "k"}).reset_index(drop=True).assign(
        load_type="rate", rate_rps=0.0, concurrency=np.nan)  # 1/C2 does not depend on the load
    cond = cond.assign(k=cond.k.astype(int), drafter=cond.drafter.where(cond.k.astype(int) > 0, NO_DRAFTER))
    sat = model.predict_draws(cond, max_draws=max_draws, seed=seed).saturation_rps
    out = cond[["panel", "group", "verifier", "drafter", "hardware", "dataset", "k"]].assign(
        median_rps=_q(sat, 0.5), lo_rps=_q(sat, lo_q), hi_rps=_q(sat, hi_q), draws=list(sat.T))
    out.attrs["hdi_prob"] = hdi_prob
    return out


def plot_saturation(model, *, hdi_prob: float = 0.9, max_panels: int = 12, figsize=None,
                    data: pd.DataFrame | None = None) -> Figure:
    """Violins of the saturation-rate posterior per k, one panel per pair/hardware/dataset."""
    tab = saturation_data(model, hdi_prob=hdi_prob, max_panels=max_panels) if data is None else data
    hdi_prob = tab.attrs.get("hdi_prob", hdi_prob)
    panels = list(dict.fromkeys(tab.panel))
    fig, axes = _fig(len(panels), figsize)
    for p, ax in zip(panels, axes):
        t = tab[tab.panel == p]
        colors = _k_colors(t.k)
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


# ---------------------------------------------------------------------------- partial pooling
def shrinkage_data(model, *, hdi_prob: float = 0.9) -> pd.DataFrame:
    """Acceptance per (pair, dataset): no-pooling estimate vs partially pooled posterior.

    ``raw``: the constant per-position acceptance implied by the level's own runs (mean of
    :func:`bayes_sd.theory.implied_acceptance` over its runs' observed acceptance length);
    ``post_mean``/``post_lo``/``post_hi``: the posterior of ``acceptance``; ``pop_mean``: the
    population mean sigmoid(mu_accept).
    """
    lo_q, hi_q = _bounds(hdi_prob)
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
    """Per-level acceptance: own-runs estimate (open circle) -> pooled posterior (dot, interval), arrows."""
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
    names = [f"{_short(lv.split(' / ')[0])} / {lv.split(' / ', 1)[-1]}{' (synthetic)' if s else ''}"
             for lv, s in zip(tab.level, tab.synthetic)]
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("per-position acceptance probability a (constant over positions)")
    ax.set_title("Acceptance per pair | dataset: shrinkage toward the population", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncol=4)
    return fig


# ---------------------------------------------------------------------------- baselines
def plot_baselines(model=None, *, hdi_prob: float = 0.9, figsize=None, data: pd.DataFrame | None = None,
                   title: str | None = None) -> Figure:
    """Observed vs predicted mean latency (s), one panel per method (Bayes with its predictive interval).

    ``data``: a :func:`bayes_sd.baselines.predictions_table` (default: the model's
    :func:`~bayes_sd.baselines.in_sample_comparison`). A method without any prediction shows 'n/a'.
    """
    tab = in_sample_comparison(model, hdi_prob=hdi_prob) if data is None else data
    hdi_prob = tab.attrs.get("hdi_prob", hdi_prob)
    methods = [m for m in ("bayes",) + BASELINES if m in set(tab["method"]) | set(tab.attrs.get("not_fitted", []))]
    err = error_table(tab).set_index("method") if len(tab) else pd.DataFrame()
    fig, axes = _fig(max(1, len(methods)), figsize, ncols=4, panel=(3.2, 3.0))
    obs = tab["observed_s"].astype(float)
    lim = (0.8 * obs.min(), 1.25 * obs.max()) if len(obs) else (0.1, 10.0)
    colors = _k_colors(tab["k"].astype(int)) if len(tab) else {}
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


# ---------------------------------------------------------------------------- recommendations
def plot_recommendations(model, recommendations: pd.DataFrame, *, max_panels: int = 6, figsize=None) -> Figure:
    """Policy plot per group: best k vs load (colour = P(best)), and the chosen k's latency interval below."""
    rec, runs = recommendations, _runs(model)
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
        col = "rate_rps" if "rate_rps" in g and g["rate_rps"].notna().any() else "concurrency"
        g = g.sort_values(col)
        x = g[col].to_numpy(float)
        top.step(x, g.best_k, where="mid", color="0.6", lw=0.9)
        sc = top.scatter(x, g.best_k, c=g["p_best"] if "p_best" in g else np.ones(len(g)), cmap="viridis", vmin=0,
                         vmax=1, s=30, zorder=3)
        top.set_ylabel("best k (draft tokens)")
        top.yaxis.get_major_locator().set_params(integer=True)
        info = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        syn = bool(info) and bool(((runs[list(info)] == pd.Series(info)).all(axis=1) & (runs.kind == "synthetic")).any())
        top.set_title(group_title({**dict.fromkeys(("verifier", "drafter", "hardware", "dataset"), "?"), **info}, syn),
                      fontsize=8)
        bot.plot(x, g.latency_mean_s, color="C0", lw=1.4, label="mean latency of chosen k")
        if {"latency_q05_s", "latency_q95_s"} <= set(g):
            bot.fill_between(x, g.latency_q05_s, g.latency_q95_s, color="C0", alpha=0.2, lw=0, label="90% interval")
        bot.set(xlabel=_load_label("rate" if col == "rate_rps" else "concurrency"), ylabel="latency (s)")
        if col == "concurrency":
            _log2(bot)
        bot.legend(fontsize=6)
    fig.colorbar(sc, ax=axes.ravel().tolist(), label="P(k is best)", shrink=0.6)
    fig.suptitle("Draft-length policy: best k per load and its latency", fontsize=10)
    return fig
