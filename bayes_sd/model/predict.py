"""Posterior prediction for arbitrary conditions, in numpy, from posterior draws.

A condition is one row with canonical run columns: ``verifier, drafter, hardware, dataset,
k, prompt_len, output_len`` and a load (``load_type`` with ``rate_rps`` or ``concurrency``).
Service costs are composed from the posterior effects exactly as the PyMC model composes
them (table ``EFFECTS``); a level never seen in training (a new pair, a new hardware, a new
dataset) gets a fresh draw from its population, one draw per unseen level shared by every
condition that names it, so curves over k and load stay coherent. Latency then comes from
:mod:`bayes_sd.theory` (the same functions the model used), here with the exact open-loop
form (infinite past saturation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd import theory
from bayes_sd.model.build import z_quantile
from bayes_sd.model.fit_data import (
    COEFS,
    DRAFTER_COEFS,
    EFFECTS,
    VERIFIER_COEFS,
    fixed_scale,
    level_label,
    pair_label,
)
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["Draws", "condition_draws", "summarise", "stack_posterior"]


def stack_posterior(posterior: xr.Dataset, max_draws: int | None = None, seed: int = 0) -> dict[str, xr.DataArray]:
    """Posterior variables with (chain, draw) stacked into a leading ``sample`` axis."""
    stacked = posterior.stack(sample=("chain", "draw"))
    n = stacked.sizes["sample"]
    if max_draws is not None and n > max_draws:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_draws, replace=False))
        stacked = stacked.isel(sample=keep)
    return {name: da.transpose("sample", ...) for name, da in stacked.data_vars.items()}


def _labels(cond: pd.DataFrame) -> dict[str, list[str]]:
    v, d, h, s = (cond[c].astype(str).tolist() for c in ("verifier", "drafter", "hardware", "dataset"))
    pair = [pair_label(a, b) for a, b in zip(v, d)]
    return {
        "verifier": v, "hardware": h, "drafter": d, "dataset": s, "pair": pair, "spec_pair": pair,
        "verifier_hw": [level_label(a, b) for a, b in zip(v, h)],
        "drafter_hw": [level_label(a, b) for a, b in zip(d, h)],
        "pair_dataset": [f"{p} | {x}" for p, x in zip(pair, s)],
    }


class _EffectSampler:
    """Effect values (sample, condition[, coef]) for known or unseen levels."""

    def __init__(self, post: dict, cfg: dict, fit_coords: dict, labels: dict, rng: np.random.Generator):
        self.post, self.cfg, self.fit_coords, self.labels, self.rng = post, cfg, fit_coords, labels, rng
        self.n_samples = next(iter(post.values())).shape[0]

    def _scale(self, prior: str, prior_dims: str | None, coefs) -> np.ndarray:
        if prior in self.post:
            s = self.post[prior].values
            if s.ndim == 1:  # a scalar scale: one column
                s = s[:, None]
            if prior_dims == "coef" and coefs is not None:
                s = s[:, [COEFS.index(c) for c in coefs]]
            return s
        width = 1 if coefs is None else len(coefs)
        return np.full((self.n_samples, width), fixed_scale(self.cfg, prior))

    def __call__(self, name: str) -> np.ndarray:
        group, prior, prior_dims, coefs = EFFECTS[name]
        width = 1 if coefs is None else len(coefs)
        query = self.labels[group]
        out = np.zeros((self.n_samples, len(query), width))
        da = self.post.get(f"effect_{name}")
        known = list(da.coords[group].values) if da is not None else []
        values = None if da is None else da.values.reshape(self.n_samples, len(known), width)
        scale = None
        fresh: dict[str, np.ndarray] = {}
        for j, label in enumerate(query):
            if label in known:
                out[:, j] = values[:, known.index(label)]
            elif da is None and label in self.fit_coords.get(group, []):
                continue  # an effect the data could not separate: it is part of the grand mean
            else:
                if label not in fresh:
                    scale = self._scale(prior, prior_dims, coefs) if scale is None else scale
                    fresh[label] = scale * self.rng.standard_normal((self.n_samples, width))
                out[:, j] = fresh[label]
        return out if coefs is not None else out[..., 0]


@dataclass
class Draws:
    """Posterior draws (sample, condition) of everything predicted for a set of conditions."""

    latency: np.ndarray  # mean request latency, s
    latency_pred: np.ndarray  # a new run's observed mean latency (adds model discrepancy), s
    latency_p50: np.ndarray  # per-request latency quantiles, s
    latency_p90: np.ndarray
    latency_p99: np.ndarray
    ttft: np.ndarray  # s
    tpot: np.ndarray  # s/token
    latency_k0: np.ndarray  # same condition without speculation, s
    saturation_rps: np.ndarray  # requests/s
    batch_size: np.ndarray  # requests in flight (Little's law for open loop)
    acceptance_length: np.ndarray  # tokens per verify step


def _costs(eff: _EffectSampler, post: dict) -> np.ndarray:
    """log service costs in ms, (sample, condition, coef) in ``COEFS`` order."""
    mu = post["mu_log_cost"].values[:, None, :]
    log_c = mu + eff("hardware")
    vcols = [COEFS.index(c) for c in VERIFIER_COEFS]
    dcols = [COEFS.index(c) for c in DRAFTER_COEFS]
    log_c[..., vcols] += eff("verifier") + eff("verifier_hw")
    log_c[..., dcols] += eff("drafter") + eff("drafter_hw") + eff("spec_pair")
    return log_c


def condition_draws(post: dict, cfg: dict, fit_coords: dict, conditions: pd.DataFrame, *, seed: int = 0) -> Draws:
    """Posterior draws of latency and friends for each condition row.

    ``post``: stacked posterior (:func:`stack_posterior`); ``cfg``: the model configuration;
    ``fit_coords``: the training coords (levels seen in the fit).
    """
    cond = conditions.reset_index(drop=True).copy()
    cond["drafter"] = cond["drafter"].fillna(NO_DRAFTER).astype(str).where(cond["k"] > 0, NO_DRAFTER)
    cond["dataset"] = cond.get("dataset", pd.Series("unseen", index=cond.index)).fillna("unseen")
    rng = np.random.default_rng(seed)
    labels = _labels(cond)
    eff = _EffectSampler(post, cfg, fit_coords, labels, rng)
    cost = np.exp(_costs(eff, post)) / 1000.0  # seconds
    c = {name: cost[..., COEFS.index(name)] for name in COEFS}
    k = cond["k"].to_numpy(float)
    logit_a = post["mu_accept"].values[:, None] + eff("accept_drafter") + eff("accept_dataset") + eff("accept_pair")
    a = 1.0 / (1.0 + np.exp(-logit_a))
    tau = np.where(k > 0, theory.tau_constant(a, k), 1.0)
    P, D = cond["prompt_len"].to_numpy(float), cond["output_len"].to_numpy(float)
    is_open = (cond["load_type"] == "rate").to_numpy()
    rate = np.nan_to_num(cond["rate_rps"].to_numpy(float)) if "rate_rps" in cond else np.zeros(len(cond))
    conc = np.nan_to_num(cond["concurrency"].to_numpy(float), nan=1.0) if "concurrency" in cond else np.ones(len(cond))

    def latency_for(kk, tt):
        costs = theory.ServiceCosts(**{n: (c[n] if n[0] != "d" else c[n] * (kk > 0)) for n in COEFS})
        dem = theory.demand(costs, kk, tt, P, D)
        with np.errstate(divide="ignore", invalid="ignore"):
            lat = np.where(is_open, theory.latency_open(dem.c1, dem.c2, rate), theory.latency_closed(dem.c1, dem.c2, conc))
        others = np.where(is_open, rate * lat, conc - 1.0)
        return costs, dem, lat, others

    costs, dem, lat, others = latency_for(k, tau)
    _, _, lat0, _ = latency_for(np.zeros_like(k), np.ones_like(tau))
    with np.errstate(over="ignore", invalid="ignore"):  # past saturation: infinite latency, by design
        ttft = theory.ttft(costs, k, tau, P, D, np.where(np.isfinite(others), others, np.nan))
        shape = np.exp(post["mu_tail"].values[:, None] + eff("tail_pair")
                       + post["tail_load_slope"].values[:, None] * np.log1p(np.maximum(others, 0.0)))
        quant = {q: np.where(np.isfinite(lat), lat * np.exp(-0.5 * shape**2 + z_quantile(q) * shape), np.inf)
                 for q in (0.5, 0.9, 0.99)}  # saturated draws: every percentile is infinite too
    nu = float(cfg.get("model", {}).get("student_t_nu", 4.0))
    noise = post["sigma_latency"].values[:, None] * rng.standard_t(nu, size=lat.shape)
    return Draws(
        latency=lat, latency_pred=lat * np.exp(noise), latency_p50=quant[0.5], latency_p90=quant[0.9],
        latency_p99=quant[0.99], ttft=ttft, tpot=theory.tpot(lat, ttft, D), latency_k0=lat0,
        saturation_rps=theory.saturation_rate(dem.c2), batch_size=np.where(is_open, rate * lat, conc),
        acceptance_length=np.broadcast_to(tau, lat.shape),
    )


def _q(x: np.ndarray, q: float) -> np.ndarray:
    # inverted_cdf: no interpolation, so draws past saturation (inf) give inf, never NaN
    return np.quantile(x, q, axis=0, method="inverted_cdf")


def summarise(draws: Draws, conditions: pd.DataFrame) -> xr.Dataset:
    """Posterior summaries per condition as an ``xr.Dataset`` with dim ``condition``.

    Intervals are 90% (5% and 95% quantiles). ``latency_*`` are posterior summaries of the
    mean latency; ``latency_pred_q05_s``/``latency_pred_q95_s`` also include model discrepancy
    (what a new benchmark run's mean would show); ``latency_p90_s``/``latency_p99_s`` are
    per-request percentiles (posterior mean).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        speedup = draws.latency_k0 / draws.latency
        out = {
            "latency_mean_s": draws.latency.mean(0),
            "latency_q05_s": _q(draws.latency, 0.05),
            "latency_q50_s": _q(draws.latency, 0.5),
            "latency_q95_s": _q(draws.latency, 0.95),
            "latency_pred_q05_s": _q(draws.latency_pred, 0.05),
            "latency_pred_q25_s": _q(draws.latency_pred, 0.25),
            "latency_pred_q75_s": _q(draws.latency_pred, 0.75),
            "latency_pred_q95_s": _q(draws.latency_pred, 0.95),
            "latency_p50_s": _q(draws.latency_p50, 0.5),
            "latency_p90_s": _q(draws.latency_p90, 0.5),
            "latency_p99_s": _q(draws.latency_p99, 0.5),
            "ttft_s": _q(draws.ttft, 0.5),
            "tpot_s": _q(draws.tpot, 0.5),
            "speedup_vs_k0": _q(speedup, 0.5),
            "speedup_q05": _q(speedup, 0.05),
            "speedup_q95": _q(speedup, 0.95),
            "p_slower_than_k0": (draws.latency > draws.latency_k0).mean(0),
            "saturation_rps": _q(draws.saturation_rps, 0.5),
            "saturation_q05_rps": _q(draws.saturation_rps, 0.05),
            "saturation_q95_rps": _q(draws.saturation_rps, 0.95),
            "p_saturated": (~np.isfinite(draws.latency)).mean(0),
            "batch_size": _q(draws.batch_size, 0.5),
            "acceptance_length": _q(draws.acceptance_length, 0.5),
        }
    ds = xr.Dataset({name: ("condition", np.asarray(v, float)) for name, v in out.items()})
    cond = conditions.reset_index(drop=True)
    for col in cond.columns:
        vals = cond[col]
        ds = ds.assign_coords({col: ("condition", vals.astype(object).to_numpy() if vals.dtype == object or
                                      str(vals.dtype).startswith("str") else vals.to_numpy())})
    return ds
