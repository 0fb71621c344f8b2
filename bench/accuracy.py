"""Held-out accuracy of the Bayesian model versus a least-squares fit of the same closed form.

    python bench/accuracy.py [--draws 500] [--tune 500] [--chains 2] [--splits real,load,pair]

Splits (each fits on the training part, predicts the held-out runs; saturated runs are never scored):
  real : bundled real B200 runs, fit on concurrency <= 16, predict 32 and 64;
  load : synthetic fleet, hold out the highest load level of every configuration;
  pair : synthetic fleet, hold out one whole verifier/drafter pair (its verifier and drafter
         are measured with other partners).
Scores: MAPE of the posterior mean (infinite when any draw puts the run past saturation) and
of the posterior median of mean latency, coverage of the 50% and 90%
predictive intervals of a run's mean latency, CRPS (s) from predictive draws, and, where the
runs have them, the error of the predicted per-request p90/p99 against the observed ones.
The least-squares fit gives a point prediction: its CRPS is its absolute error.
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
from bayes_sd.baselines import fit_least_squares
from bayes_sd.model import ConvergenceWarning, LatencyModel

COND = ["verifier", "drafter", "hardware", "dataset", "k", "prompt_len", "output_len", "load_type", "rate_rps",
        "concurrency"]
HELD_OUT_PAIR = ("llama3.3-70b", "draft-1b")


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


def score(model: LatencyModel, ls, test: pd.DataFrame) -> dict:
    test = test[~test["saturated"].fillna(False).astype(bool) & test["latency_mean_s"].notna()].reset_index(drop=True)
    y = test["latency_mean_s"].to_numpy()
    dr = model.predict_draws(test[COND], max_draws=1000, seed=0)
    pred = dr.latency_pred
    finite = np.isfinite(pred)
    mean = np.where(finite.all(0), np.where(finite, dr.latency, 0).sum(0) / finite.sum(0), np.inf)
    med = np.quantile(pred, 0.5, axis=0, method="inverted_cdf")
    q = {p: np.quantile(pred, p, axis=0, method="inverted_cdf") for p in (0.05, 0.25, 0.75, 0.95)}
    ls_pred = ls.predict(test[COND])
    res = {
        "runs": len(test),
        "bayes_mape_mean": np.mean(np.abs(mean / y - 1)),
        "bayes_mape_median": np.mean(np.abs(med / y - 1)),
        "cover50": np.mean((y >= q[0.25]) & (y <= q[0.75])),
        "cover90": np.mean((y >= q[0.05]) & (y <= q[0.95])),
        "bayes_crps": np.mean(crps_draws(pred, y)),
        "ls_mape": np.mean(np.abs(ls_pred / y - 1)),
        "ls_crps": np.mean(np.abs(ls_pred - y)),
        "draws_saturated": float(np.mean(~finite)),
    }
    for col, arr in (("latency_p90_s", dr.latency_p90), ("latency_p99_s", dr.latency_p99)):
        if col in test and test[col].notna().any():
            ok = test[col].notna().to_numpy()
            p = np.quantile(arr[:, ok], 0.5, axis=0, method="inverted_cdf")
            res[f"{col[8:11]}_mape"] = np.mean(np.abs(p / test.loc[ok, col].to_numpy() - 1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--splits", default="real,load,pair")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"accuracy  {dt.date.today()}  nproc={os.cpu_count()}  {args.chains} chains x ({args.tune}+{args.draws})")
    rows = []
    for name, (train, test) in splits(args.splits.split(",")).items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LatencyModel().fit(train, draws=args.draws, tune=args.tune, chains=args.chains,
                                       random_seed=args.seed, progressbar=False)
        ls = fit_least_squares(train)
        r = {"split": name, **score(model, ls, test), "fit_s": time.perf_counter() - t0,
             "max_rhat": model.diagnostics()["max_rhat"], "divergences": model.diagnostics()["divergences"]}
        rows.append(r)
        print(pd.Series(r).to_string(), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
