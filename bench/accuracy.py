"""Held-out accuracy of the Bayesian model versus three baselines, side by side.

    python bench/accuracy.py [--draws 4000] [--tune 1000] [--chains 2] [--splits real,load,pair]
                             [--methods bayes,least_squares,leviathan,yan] [--worst 10]

Splits (each fits on the training part, predicts the held-out runs; saturated runs are never scored):
  real : bundled real B200 runs, fit on concurrency <= 16, predict 32 and 64;
  load : synthetic fleet, hold out the highest load level of every configuration;
  pair : synthetic fleet, hold out one whole verifier/drafter pair (its verifier and drafter
         are measured with other partners).
Methods, all fitted on the same training runs (bayes_sd.evaluation.baselines, bayes_sd.evaluation.batch1):
  bayes         : the hierarchical LatencyModel (posterior mean of mean latency);
  least_squares : deterministic least-squares fit of the same closed form;
  leviathan     : Leviathan et al. batch-1 speedup applied to the k = 0 latency at the load;
  yan           : Yan et al. batch-1 throughput (no load term at all).
One row per (split, method). ``scored``: runs the method could predict (the batch-1 formulas
cannot without acceptance data for the pair); MAPE on those and on the subset every method
could predict (``mape_common``); CRPS (s) from predictive draws for bayes, the absolute error
for point predictors (also on the common subset); coverage of the 50% and 90% predictive
intervals, the posterior-median MAPE, the share of draws past saturation and, where the runs
have them, the error of the predicted per-request p90/p99 (bayes only). ``--worst N`` also lists,
per split, the N held-out runs the Bayesian posterior median misses most, with their share of
draws past saturation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
import warnings

import numpy as np
import pandas as pd

from bayes_sd import datasets
from bayes_sd.evaluation.baselines import BASELINES, COND, at_arrival_rate, fit_baselines, predictions_table
from bayes_sd.model import ConvergenceWarning, LatencyModel

HELD_OUT_PAIR = ("llama3.3-70b", "draft-1b")
METHODS = ("bayes",) + BASELINES


def crps_draws(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of an ensemble (sample, n) against observations y (n): E|X-y| - E|X-X'|/2.

    Draws past saturation (infinite latency) are left out: with mass at infinity the CRPS is
    infinite. The share of such draws is reported separately (``draws_saturated``).
    """
    out = np.empty(len(y))
    for j in range(len(y)):
        x = np.sort(draws[np.isfinite(draws[:, j]), j])
        m = len(x)
        w = (2 * np.arange(1, m + 1) - m - 1) / (m * m)  # E|X-X'| = 2/m^2 * sum (2i-m-1) x_(i)
        out[j] = np.mean(np.abs(x - y[j])) - np.sum(w * x)
    return out


def splits(which: list[str]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    out = {}
    if "real" in which:
        b = datasets.load_b200_runs()
        out["real B200: fit c<=16, predict c=32,64"] = (b[b["concurrency"] <= 16], b[b["concurrency"].isin([32, 64])])
    fleet = datasets.load_fleet_runs()
    if "load" in which:
        key = ["verifier", "drafter", "hardware", "dataset", "k", "load_type"]
        load = fleet["rate_rps"].fillna(fleet["concurrency"])
        top = load == load.groupby([fleet[c] for c in key]).transform("max")
        out["synthetic fleet: hold out highest load"] = (fleet[~top], fleet[top])
    if "pair" in which:
        held = (fleet["verifier"] == HELD_OUT_PAIR[0]) & (fleet["drafter"] == HELD_OUT_PAIR[1])
        out[f"synthetic fleet: hold out pair {HELD_OUT_PAIR[0]} / {HELD_OUT_PAIR[1]}"] = (fleet[~held], fleet[held])
    return out


def _bayes_extras(model: LatencyModel, test: pd.DataFrame, common: np.ndarray) -> dict:
    """Bayes-only scores: CRPS over predictive draws, interval coverage, median MAPE, tails; under
    ``"per_run"`` a table of each held-out run's posterior median, its error and saturated draws."""
    y = test["latency_mean_s"].to_numpy()
    dr = model.predict_draws(test[COND], max_draws=1000, seed=0)
    pred = dr.latency_pred
    q = {p: np.quantile(pred, p, axis=0, method="inverted_cdf") for p in (0.05, 0.25, 0.5, 0.75, 0.95)}
    crps = crps_draws(pred, y)
    res = {"crps": np.mean(crps), "crps_common": np.mean(crps[common]) if common.any() else np.nan,
           "mape_median": 100 * np.mean(np.abs(q[0.5] / y - 1)),
           "cover50": np.mean((y >= q[0.25]) & (y <= q[0.75])), "cover90": np.mean((y >= q[0.05]) & (y <= q[0.95])),
           "draws_saturated": float(np.mean(~np.isfinite(pred))),
           "per_run": pd.DataFrame({"run_id": test["run_id"], "observed_s": y, "median_s": q[0.5],
                                    "ape_median": 100 * np.abs(q[0.5] / y - 1),
                                    "draws_saturated": np.mean(~np.isfinite(pred), axis=0)})}
    for col, arr in (("latency_p90_s", dr.latency_p90), ("latency_p99_s", dr.latency_p99)):
        if col in test and test[col].notna().any():
            ok = test[col].notna().to_numpy()
            p = np.quantile(arr[:, ok], 0.5, axis=0, method="inverted_cdf")
            res[f"{col[8:11]}_mape"] = 100 * np.mean(np.abs(p / test.loc[ok, col].to_numpy() - 1))
    return res


def score(model: LatencyModel | None, baselines: dict, test: pd.DataFrame) -> list[dict]:
    """One dict per method (bayes first when ``model`` is given) with the scores of the module doc.

    MAPE and median APE in %; CRPS in s. ``runs``: steady-state held-out runs with a mean latency.
    """
    test = test[~test["saturated"].fillna(False).astype(bool) & test["latency_mean_s"].notna()].reset_index(drop=True)
    test = test.assign(run_id=test["run_id"] if "run_id" in test else np.arange(len(test)).astype(str))
    pred = predictions_table(test, model, baselines)
    wide = pred.pivot(index="run_id", columns="method", values="predicted_s").loc[test["run_id"]]
    common = wide.notna().all(axis=1).to_numpy()
    y = test["latency_mean_s"].to_numpy()
    rows = []
    for m in wide.columns if model is None else ["bayes"] + [c for c in wide.columns if c != "bayes"]:
        p = wide[m].to_numpy(float)
        ok = ~np.isnan(p)
        ape, err = np.abs(p / y - 1) * 100, np.abs(p - y)
        with np.errstate(invalid="ignore"):
            r = {"method": m, "runs": len(y), "scored": int(ok.sum()),
                 "mape": np.mean(ape[ok]) if ok.any() else np.nan,
                 "mape_common": np.mean(ape[common]) if common.any() else np.nan,
                 "median_ape": np.median(ape[ok]) if ok.any() else np.nan,
                 "crps": np.mean(err[ok]) if ok.any() else np.nan,
                 "crps_common": np.mean(err[common]) if common.any() else np.nan}
        if m == "bayes":
            r.update(_bayes_extras(model, test, common))
        rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=4000)  # at the offered rate 3000 left the load split at R-hat 1.018
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--splits", default="real,load,pair")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default="default",
                    help="model configuration of the Bayesian method (a name in models/, e.g. moe_per_position)")
    ap.add_argument("--worst", type=int, default=0, help="list the N held-out runs the posterior median misses most")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    print(f"accuracy  {dt.date.today()}  nproc={os.cpu_count()}  {args.chains} chains x ({args.tune}+{args.draws})"
          f"  methods={','.join(methods)}  config={args.config}")
    rate_source = LatencyModel(args.config).open_loop_rate  # the baselines take the model's rate
    rows = []
    for name, (train, test) in splits(args.splits.split(",")).items():
        t0 = time.perf_counter()
        model, diag = None, {}
        if "bayes" in methods:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LatencyModel(args.config).fit(train, models=datasets.load_fleet_models(), draws=args.draws,
                                                      tune=args.tune, chains=args.chains, random_seed=args.seed,
                                                      progressbar=False)
            d = model.diagnostics()
            diag = {"max_rhat": d["max_rhat"], "divergences": d["divergences"]}
        fit_s = time.perf_counter() - t0
        baselines = fit_baselines(at_arrival_rate(train, rate_source), [m for m in methods if m != "bayes"])
        for r in score(model, baselines, test):
            per_run = r.pop("per_run", None)
            rows.append({"split": name, **r, **(diag if r["method"] == "bayes" else {}),
                         **({"fit_s": fit_s} if r["method"] == "bayes" else {})})
            print(pd.Series(rows[-1]).to_string(), flush=True)
            if per_run is not None and args.worst:
                print(f"worst {args.worst} held-out runs (posterior median):\n"
                      + per_run.nlargest(args.worst, "ape_median").round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
