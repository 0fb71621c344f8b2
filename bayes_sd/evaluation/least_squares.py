"""The least-squares baseline: the model's closed form fitted by ``scipy.optimize.least_squares``.

No pooling and no uncertainty. Free parameters: log service costs per verifier x hardware
(v0 v1 p0 p1 c1) and per drafter x hardware (d0 d1), and logit acceptance per (pair,
dataset). Residuals: log latency (and log TTFT, and acceptance length, when observed). A
level never seen in training falls back to the mean of the fitted levels of the same kind,
which is what a point-estimate workflow would do. Units: seconds, requests/s, tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

from bayes_sd import theory
from bayes_sd.model.fit_data import (
    DRAFTER_COEFS,
    VERIFIER_COEFS,
    FitData,
    draft_share,
    level_label,
    pair_label,
    prepare_fit_data,
)
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["LeastSquaresFit", "fit_least_squares"]

# starting point (log ms): the centres of the default priors
_START = {"v0": 2.3, "v1": -2.5, "p0": 3.0, "p1": -4.0, "c1": -10.4, "d0": -0.5, "d1": -4.6}


def _latency(log_v, log_d, logit_a, k, P, D, is_open, rate, conc, share):
    v, d = np.exp(log_v) / 1000.0, np.exp(log_d) / 1000.0
    a = 1.0 / (1.0 + np.exp(-logit_a))
    tau, tau_sq = np.where(k > 0, theory.tau_constant(a, k), 1.0), theory.tau_sq_constant(a, k)
    costs = theory.ServiceCosts(**{c: v[:, i] for i, c in enumerate(VERIFIER_COEFS)},
                                **{c: d[:, i] * (k > 0) for i, c in enumerate(DRAFTER_COEFS)})
    k_step, tau_step, tau_sq_step = theory.per_decode_step(k, tau, tau_sq, share)
    dem = theory.demand(costs, k_step, tau_step, P, D, tau_sq=tau_sq_step)
    with np.errstate(divide="ignore", invalid="ignore"):
        lat = np.where(is_open, theory.latency_open(dem.c1, dem.c2, rate), theory.latency_closed(dem.c1, dem.c2, conc))
    others = np.where(is_open, rate * lat, conc - 1.0)
    with np.errstate(invalid="ignore"):  # past saturation (others = inf) TTFT is undefined: NaN
        ttft = theory.ttft(costs, k_step, tau_step, P, D, others, tau_sq=tau_sq_step,
                           p_busy=theory.busy_probability(others, is_open))
    return lat, ttft, tau


@dataclass
class LeastSquaresFit:
    """Point estimates per level, and prediction for new conditions (mean latency, s)."""

    coords: dict
    log_v: np.ndarray  # (verifier_hw, vcoef)
    log_d: np.ndarray  # (drafter_hw, dcoef)
    logit_a: np.ndarray  # (pair_dataset,)
    success: bool
    runs: pd.DataFrame  # the fitted runs (their drafters' share of decode steps that carry drafts)

    def _lookup(self, labels, levels, values):
        fallback = values.mean(axis=0) if len(values) else None
        return np.stack([values[levels.index(x)] if x in levels else fallback for x in labels])

    def predict(self, conditions: pd.DataFrame) -> np.ndarray:
        c = conditions.reset_index(drop=True)
        k = c["k"].to_numpy(float)
        drafter = c["drafter"].fillna(NO_DRAFTER).astype(str).where(k > 0, NO_DRAFTER)
        vh = [level_label(v, h) for v, h in zip(c["verifier"], c["hardware"])]
        dh = [level_label(d, h) for d, h in zip(drafter, c["hardware"])]
        pd_ = [f"{pair_label(v, d)} | {s}" for v, d, s in zip(c["verifier"], drafter, c["dataset"])]
        log_v = self._lookup(vh, self.coords["verifier_hw"], self.log_v)
        log_d = (self._lookup(dh, self.coords["drafter_hw"], self.log_d) if len(self.log_d)
                 else np.zeros((len(c), 2)))
        logit_a = self._lookup(pd_, self.coords["pair_dataset"], self.logit_a[:, None])[:, 0] if len(self.logit_a) \
            else np.zeros(len(c))
        is_open = (c["load_type"] == "rate").to_numpy()
        rate = np.nan_to_num(c["rate_rps"].to_numpy(float))
        conc = np.nan_to_num(c["concurrency"].to_numpy(float), nan=1.0)
        lat, _, _ = _latency(log_v, log_d, logit_a, k, c["prompt_len"].to_numpy(float),
                             c["output_len"].to_numpy(float), is_open, rate, conc,
                             draft_share(c.assign(drafter=drafter), self.runs))
        return lat


def fit_least_squares(runs: pd.DataFrame) -> LeastSquaresFit:
    """Least-squares fit of the closed form to the steady-state runs of ``runs``."""
    fd: FitData = prepare_fit_data(runs)
    n_vh, n_dh, n_pd = (len(fd.coords[n]) for n in ("verifier_hw", "drafter_hw", "pair_dataset"))
    nv, nd = len(VERIFIER_COEFS), len(DRAFTER_COEFS)
    x0 = np.concatenate([np.tile([_START[c] for c in VERIFIER_COEFS], n_vh),
                         np.tile([_START[c] for c in DRAFTER_COEFS], n_dh), np.full(n_pd, 0.5)])
    x = fd.x
    lat_rows, lat_obs = fd.obs["latency"]
    ttft_rows, ttft_obs = fd.obs.get("ttft", (np.array([], int), np.array([])))
    tau_rows, tau_obs = fd.obs.get("tau", (np.array([], int), np.array([])))

    def unpack(theta):
        log_v = theta[: n_vh * nv].reshape(n_vh, nv)
        log_d = theta[n_vh * nv: n_vh * nv + n_dh * nd].reshape(n_dh, nd) if n_dh else np.zeros((1, nd))
        logit_a = theta[n_vh * nv + n_dh * nd:] if n_pd else np.zeros(1)
        return log_v, log_d, logit_a

    def residuals(theta):
        log_v, log_d, logit_a = unpack(theta)
        lat, ttft, tau = _latency(log_v[fd.idx["run_vh"]], log_d[fd.idx["run_dh"]], logit_a[fd.idx["run_pd"]],
                                  x["k"], x["prompt_len"], x["output_len"], x["is_open"] > 0, x["rate"],
                                  x["concurrency"], x["draft_share"])
        lat = np.where(np.isfinite(lat) & (lat > 0), lat, 1e3)  # past saturation: a large, finite miss
        ttft = np.where(np.isfinite(ttft) & (ttft > 0), ttft, 1e3)
        parts = [np.log(lat[lat_rows] / lat_obs), 0.3 * np.log(ttft[ttft_rows] / ttft_obs),
                 (tau[tau_rows] - tau_obs) / tau_obs]
        # a weak pull to the prior centre keeps unidentified coefficients finite (ridge)
        parts.append(0.01 * (theta - x0))
        return np.concatenate(parts)

    # the Jacobian is small (runs x levels): multi-threaded BLAS only adds contention, and on a
    # busy 2-core machine its SVDs took 0.45 s each instead of milliseconds (13.6 s vs 0.4 s per fit)
    with threadpool_limits(limits=1, user_api="blas"):
        sol = least_squares(residuals, x0, method="trf", max_nfev=2000)
    log_v, log_d, logit_a = unpack(sol.x)
    return LeastSquaresFit(coords=fd.coords, log_v=log_v, log_d=log_d if n_dh else np.zeros((0, nd)),
                           logit_a=logit_a if n_pd else np.zeros(0),
                           success=bool(sol.success), runs=fd.runs)
