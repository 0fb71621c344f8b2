"""Baselines the Bayesian model is compared against, and the side-by-side scoring.

Deterministic baseline: a least-squares fit of the same closed form (no pooling, no uncertainty).

Free parameters: log service costs per verifier x hardware (v0 v1 p0 p1 c1) and per
drafter x hardware (d0 d1), and logit acceptance per (pair, dataset). Residuals: log
latency (and log TTFT, and acceptance length, when observed), fitted with
``scipy.optimize.least_squares``. A level never seen in training falls back to the mean of
the fitted levels of the same kind, which is what a point-estimate workflow would do.

The batch-1 formulas of Leviathan et al. and Yan et al. live in :mod:`bayes_sd.baselines_batch1`.
:func:`fit_baselines` fits any of the three on the same training runs; :func:`predictions_table`
puts their predictions next to the Bayesian model's (posterior mean and predictive interval) and
:func:`error_table` scores them, each method on the runs it can predict and all on the common
subset. Used by ``bench/accuracy.py``, the report's baselines section and notebook 06.
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
    arrival_rate,
    level_label,
    pair_label,
    prepare_fit_data,
)
from bayes_sd.model.latency_model import CONDITION_COLUMNS as COND
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["LeastSquaresFit", "fit_least_squares", "BASELINES", "LABELS", "fit_baselines", "predictions_table",
           "at_arrival_rate",
           "error_table", "in_sample_comparison", "COND"]

#: the baseline methods, in display order
BASELINES = ("least_squares", "leviathan", "yan")
#: display names of every method
LABELS = {"bayes": "Bayes (posterior mean)", "least_squares": "least squares", "leviathan": "Leviathan et al.",
          "yan": "Yan et al."}

# starting point (log ms): the centres of the default priors
_START = {"v0": 2.3, "v1": -2.5, "p0": 3.0, "p1": -4.0, "c1": -10.4, "d0": -0.5, "d1": -4.6}


def _latency(log_v, log_d, logit_a, k, P, D, is_open, rate, conc):
    v, d = np.exp(log_v) / 1000.0, np.exp(log_d) / 1000.0
    a = 1.0 / (1.0 + np.exp(-logit_a))
    tau, tau_sq = np.where(k > 0, theory.tau_constant(a, k), 1.0), theory.tau_sq_constant(a, k)
    costs = theory.ServiceCosts(v0=v[:, 0], v1=v[:, 1], p0=v[:, 2], p1=v[:, 3], c1=v[:, 4],
                                d0=d[:, 0] * (k > 0), d1=d[:, 1] * (k > 0))
    dem = theory.demand(costs, k, tau, P, D, tau_sq=tau_sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        lat = np.where(is_open, theory.latency_open(dem.c1, dem.c2, rate), theory.latency_closed(dem.c1, dem.c2, conc))
    others = np.where(is_open, rate * lat, conc - 1.0)
    with np.errstate(invalid="ignore"):  # past saturation (others = inf) TTFT is undefined: NaN
        ttft = theory.ttft(costs, k, tau, P, D, others, tau_sq=tau_sq, p_busy=theory.busy_probability(others, is_open))
    return lat, ttft, tau


@dataclass
class LeastSquaresFit:
    """Point estimates per level, and prediction for new conditions (mean latency, s)."""

    coords: dict
    log_v: np.ndarray  # (verifier_hw, vcoef)
    log_d: np.ndarray  # (drafter_hw, dcoef)
    logit_a: np.ndarray  # (pair_dataset,)
    success: bool

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
                             c["output_len"].to_numpy(float), is_open, rate, conc)
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
                                  x["k"], x["prompt_len"], x["output_len"], x["is_open"] > 0, x["rate"], x["concurrency"])
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
                           success=bool(sol.success))


# ---------------------------------------------------------------------------- side by side
def fit_baselines(train: pd.DataFrame, methods=BASELINES, *, errors: str = "raise") -> dict:
    """Fit each baseline in ``methods`` (names in :data:`BASELINES`) on ``train``; name -> predictor.

    Every predictor has ``.predict(conditions) -> mean latency (s)`` (NaN where it cannot predict).
    ``errors="skip"`` leaves out a method whose fit raises (the report uses it: a baseline that
    cannot be fitted shows as n/a instead of sinking the section).
    """
    from bayes_sd.baselines_batch1 import fit_leviathan, fit_yan

    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}. Fix: choose from {list(BASELINES)}")
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    makers = {"least_squares": lambda: fit_least_squares(train),
              "leviathan": lambda: fit_leviathan(train, ls=out.get("least_squares")),
              "yan": lambda: fit_yan(train)}
    out = {}
    for m in (m for m in BASELINES if m in methods):
        try:
            out[m] = makers[m]()
        except Exception:  # noqa: BLE001 - 'skip' is for reports that must survive odd data
            if errors == "raise":
                raise
    return out


def predictions_table(test: pd.DataFrame, model=None, baselines: dict | None = None, *, hdi_prob: float = 0.9,
                      max_draws: int | None = 1000, seed: int = 0) -> pd.DataFrame:
    """Long table, one row per (run of ``test``, method): ``observed_s``, ``predicted_s`` (mean latency, s).

    ``model`` (a fitted LatencyModel, optional) adds method ``bayes``: the posterior mean of mean
    latency (infinite when any draw puts the run past saturation) and the central ``hdi_prob``
    predictive interval of a run's mean (``lo_s``, ``hi_s``; model discrepancy included).
    Baselines get NaN intervals. Test runs need ``latency_mean_s``; saturated ones are dropped.
    """
    if "latency_mean_s" not in test:
        raise ValueError("test runs: missing column 'latency_mean_s'. Fix: score on runs with a measured mean latency")
    sat = test["saturated"].fillna(False).astype(bool) if "saturated" in test else False
    t = test[~sat & test["latency_mean_s"].notna()].reset_index(drop=True)
    for col in ("rate_rps", "concurrency", "run_id"):
        if col not in t:
            t[col] = np.arange(len(t)).astype(str) if col == "run_id" else np.nan
    cols = ["run_id"] + COND + ["observed_s", "load", "method", "predicted_s", "lo_s", "hi_s"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    base = t[["run_id"] + COND].assign(observed_s=t["latency_mean_s"].astype(float),
                                        load=np.where(t["load_type"] == "rate", t["rate_rps"], t["concurrency"]))
    parts = []
    if model is not None:
        lo_q, hi_q = (1 - hdi_prob) / 2, (1 + hdi_prob) / 2
        dr = model.predict_draws(t[COND], max_draws=max_draws, seed=seed)
        fin = np.isfinite(dr.latency)
        mean = np.where(fin.all(0), np.where(fin, dr.latency, 0).sum(0) / np.maximum(fin.sum(0), 1), np.inf)
        q = np.quantile(dr.latency_pred, [lo_q, hi_q], axis=0, method="inverted_cdf")
        parts.append(base.assign(method="bayes", predicted_s=mean, lo_s=q[0], hi_s=q[1]))
    for name, fit in (baselines or {}).items():
        parts.append(base.assign(method=name, predicted_s=np.asarray(fit.predict(t[COND]), float),
                                 lo_s=np.nan, hi_s=np.nan))
    if not parts:
        raise ValueError("predictions_table: nothing to predict with. Fix: pass model= and/or baselines=")
    out = pd.concat(parts, ignore_index=True)
    out.attrs["hdi_prob"] = hdi_prob
    return out


def error_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Errors per method of a :func:`predictions_table`: one row each.

    ``scored``: runs the method could predict (not NaN; an infinite prediction counts and makes
    its MAPE infinite); ``mape``: mean absolute percentage error (%) on those; ``mape_common``
    on the runs every method could predict; ``median_ape`` (%); ``median_bias`` (%, median of
    predicted/observed - 1: negative = under-predicts latency); ``cover`` share of observed
    values inside the interval (methods with an interval only).
    """
    ape = (pred["predicted_s"] / pred["observed_s"] - 1.0).abs() * 100
    pred = pred.assign(ape=ape, signed=(pred["predicted_s"] / pred["observed_s"] - 1.0) * 100)
    ok = pred["predicted_s"].notna()
    common = ok.groupby(pred["run_id"]).transform("all")
    rows = []
    for m, g in pred.groupby("method", sort=False):
        s, c = g[ok[g.index]], g[common[g.index]]
        inside = (g["observed_s"] >= g["lo_s"]) & (g["observed_s"] <= g["hi_s"])
        with np.errstate(invalid="ignore"):
            rows.append({"method": m, "runs": len(g), "scored": len(s),
                         "mape": s["ape"].mean() if len(s) else np.nan,
                         "mape_common": c["ape"].mean() if len(c) else np.nan,
                         "median_ape": s["ape"].median() if len(s) else np.nan,
                         "median_bias": s["signed"].median() if len(s) else np.nan,
                         "cover": inside[g["lo_s"].notna()].mean() if g["lo_s"].notna().any() else np.nan})
    return pd.DataFrame(rows)


def at_arrival_rate(runs: pd.DataFrame, source: str) -> pd.DataFrame:
    """``runs`` with the open-loop ``rate_rps`` set to the arrival rate ``source`` picks
    (``fit_data.arrival_rate``) and ``achieved_rps`` dropped, so every method fitted on them takes that same rate."""
    open_loop = (runs["load_type"] == "rate").to_numpy()
    runs = runs.assign(rate_rps=np.where(open_loop, arrival_rate(runs, source), runs["rate_rps"]))
    return runs.drop(columns="achieved_rps", errors="ignore").reset_index(drop=True)


def in_sample_comparison(model, *, hdi_prob: float = 0.9, max_draws: int | None = 400, seed: int = 0) -> pd.DataFrame:
    """Every method on a fitted model's own training runs (a :func:`predictions_table`).

    The baselines are fitted on the runs the model was fitted on (open-loop runs at their
    arrival rate, ``fit_data.arrival_rate``, as in the fit); the rows kept are the speculative runs above the lowest load
    of their (verifier, drafter, hardware, dataset, k, load type) group: the batch-1 formulas are
    calibrated near batch 1, so these are the loads they extrapolate to. Bayes and least squares
    are in-sample there. Methods that could not be fitted are listed in ``attrs['not_fitted']``.
    """
    runs = model.fit_data.runs
    runs = at_arrival_rate(runs, model.open_loop_rate)
    base = fit_baselines(runs, errors="skip")
    load = pd.Series(np.where(runs["load_type"] == "rate", runs["rate_rps"], runs["concurrency"]), index=runs.index)
    key = [runs[c].astype(str) for c in ("verifier", "drafter", "hardware", "dataset", "k", "load_type")]
    above = (runs["k"] > 0) & (load > load.groupby(key).transform("min") * (1 + 1e-9))
    out = predictions_table(runs[above], model, base, hdi_prob=hdi_prob, max_draws=max_draws, seed=seed)
    out.attrs["not_fitted"] = [m for m in BASELINES if m not in base]
    return out
