"""Baselines side by side with the Bayesian model: fit them on the same runs, predict, score.

Three baselines: a least-squares fit of the same closed form (:mod:`.least_squares`, no
pooling, no uncertainty) and the batch-1 formulas of Leviathan et al. and Yan et al.
(:mod:`.batch1`). :func:`fit_baselines` fits any of them on the same training runs;
:func:`predictions_table` puts their predictions next to the Bayesian model's (posterior mean
and predictive interval) and :func:`error_table` scores them, each method on the runs it can
predict and all on the common subset. Used by ``bench/accuracy.py``, the report's baselines
section and notebook 06.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_sd._stats import quantile
from bayes_sd.evaluation.batch1 import fit_leviathan, fit_yan
from bayes_sd.evaluation.least_squares import LeastSquaresFit, fit_least_squares
from bayes_sd.model.conditions import CONDITION_COLUMNS as COND
from bayes_sd.model.fit_data import arrival_rate

__all__ = ["LeastSquaresFit", "fit_least_squares", "BASELINES", "LABELS", "fit_baselines", "predictions_table",
           "at_arrival_rate", "error_table", "in_sample_comparison", "COND"]

#: the baseline methods, in display order
BASELINES = ("least_squares", "leviathan", "yan")
#: display names of every method
LABELS = {"bayes": "Bayes (posterior mean)", "least_squares": "least squares", "leviathan": "Leviathan et al.",
          "yan": "Yan et al."}


# ---------------------------------------------------------------------------- side by side
def fit_baselines(train: pd.DataFrame, methods=BASELINES, *, errors: str = "raise") -> dict:
    """Fit each baseline in ``methods`` (names in :data:`BASELINES`) on ``train``; name -> predictor.

    Parameters
    ----------
    train : pandas.DataFrame
        Canonical runs table (latencies in s, rates in requests/s, lengths in tokens).
    methods : iterable of str, default BASELINES
        Baselines to fit: ``"least_squares"``, ``"leviathan"``, ``"yan"``.
    errors : {"raise", "skip"}, default "raise"
        ``"skip"`` leaves out a method whose fit raises (the report uses it: a baseline that
        cannot be fitted shows as n/a instead of sinking the section).

    Returns
    -------
    dict
        Method name -> predictor; every predictor has ``.predict(conditions) -> mean latency (s)``
        (NaN where it cannot predict).

    Raises
    ------
    ValueError
        For an unknown method or ``errors`` value; with ``errors="raise"``, whatever a fit raises.
    """
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

    Parameters
    ----------
    test : pandas.DataFrame
        Runs to predict (canonical runs columns); they need ``latency_mean_s`` (s); saturated ones are
        dropped.
    model : LatencyModel, optional
        A fitted model; adds method ``bayes``: the posterior mean of mean latency (infinite when any
        draw puts the run past saturation) and the central ``hdi_prob`` predictive interval of a run's
        mean (``lo_s``, ``hi_s``; model discrepancy included).
    baselines : dict, optional
        Name -> predictor, from :func:`fit_baselines`. Baselines get NaN intervals.
    hdi_prob : float, default 0.9
        Mass of the central predictive interval of ``bayes``.
    max_draws : int or None, default 1000
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id``, the condition columns, ``observed_s``, ``load`` (requests/s or streams),
        ``method``, ``predicted_s``, ``lo_s``, ``hi_s`` (s); ``attrs["hdi_prob"]``.

    Raises
    ------
    ValueError
        When ``test`` lacks ``latency_mean_s``, or neither ``model`` nor ``baselines`` is given.
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
        q = quantile(dr.latency_pred, [lo_q, hi_q])
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

    Parameters
    ----------
    pred : pandas.DataFrame
        A :func:`predictions_table`.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``runs``; ``scored``: runs the method could predict (not NaN; an infinite
        prediction counts and makes its MAPE infinite); ``mape``: mean absolute percentage error (%) on
        those; ``mape_common`` on the runs every method could predict; ``median_ape`` (%);
        ``median_bias`` (%, median of predicted/observed - 1: negative = under-predicts latency);
        ``cover`` share of observed values inside the interval (methods with an interval only).
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
    arrival rate, ``fit_data.arrival_rate``, as in the fit); the rows kept are the speculative runs above the lowest
    load of their (verifier, drafter, hardware, dataset, k, load type) group: the batch-1 formulas are
    calibrated near batch 1, so these are the loads they extrapolate to. Bayes and least squares
    are in-sample there.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    hdi_prob : float, default 0.9
        Mass of the central predictive interval of ``bayes``.
    max_draws : int or None, default 400
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    pandas.DataFrame
        A :func:`predictions_table` (``observed_s``, ``predicted_s``, ``lo_s``, ``hi_s`` in s, per run and
        method). Methods that could not be fitted are listed in ``attrs['not_fitted']``.
    """
    runs = model.fit_data.runs
    runs = runs[~runs["censored"]] if "censored" in runs else runs  # saturated runs have no steady latency
    runs = at_arrival_rate(runs, model.open_loop_rate)
    base = fit_baselines(runs, errors="skip")
    load = pd.Series(np.where(runs["load_type"] == "rate", runs["rate_rps"], runs["concurrency"]), index=runs.index)
    key = [runs[c].astype(str) for c in ("verifier", "drafter", "hardware", "dataset", "k", "load_type")]
    above = (runs["k"] > 0) & (load > load.groupby(key).transform("min") * (1 + 1e-9))
    out = predictions_table(runs[above], model, base, hdi_prob=hdi_prob, max_draws=max_draws, seed=seed)
    out.attrs["not_fitted"] = [m for m in BASELINES if m not in base]
    return out
