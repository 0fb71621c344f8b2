"""How a model's predicted latency bends with the draft length, against a fleet's ground truth.

    python bench/k_shape.py [--configs moe_roofline_per_position,moe_roofline_speculation] [--fleets 1,2]
                            [--draws 400] [--tune 400] [--start plausible]

Data: SYNTHETIC out-of-family development fleets (``bayes_sd.evaluation.fleets``), batch caps known.
Each configuration is fitted on the whole of each fleet (every run: validation, not evidence), then
predicts, at every load of the fleet's truth table, the mean latency of each speculating configuration
at every draft length k = 0..7; the truth is the fleet's simulator at the same load. Printed per
configuration and k (measured for that configuration or not): the median and mean absolute error of
the predictive median against the truth. A cost law that misses how speculation's cost depends on k
shows as an error that trends with k (the measured k pin the fit; the others follow the law).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine_line  # noqa: E402
from calibration import fit, seeds, with_batch_caps  # noqa: E402

from bayes_sd.evaluation.fleets import random_fleet  # noqa: E402

K_MAX = 7


def k_errors(model, runs: pd.DataFrame, models: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per (truth condition, load, k): predicted median and true mean latency (s), whether k was measured."""
    rows = []
    spec = truth[truth["drafter"] != "none"]
    for (_, v, d, hw, ds, lt), g in spec.groupby(["condition", "verifier", "drafter", "hardware", "dataset",
                                                     "load_type"], sort=False):
        mine = runs[(runs["verifier"] == v) & (runs["hardware"] == hw) & (runs["dataset"] == ds)]
        col = "rate_rps" if lt == "rate" else "concurrency"
        loads = sorted(g[col].unique())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = model.predict_grid(verifier=v, drafter=d, hardware=hw, dataset=ds, ks=range(K_MAX + 1),
                                      prompt_len=float(mine["prompt_len"].mean()),
                                      output_len=float(mine["output_len"].mean()), max_draws=300, models=models,
                                      **({"rates": loads} if lt == "rate" else {"concurrencies": loads}))
        median = pred["latency_q50_s"].to_pandas()  # k x load
        for r in g.itertuples():
            rows.append({"k": r.k, "measured": r.measured, "true_s": r.latency_mean_s,
                         "predicted_s": median.loc[r.k, getattr(r, col)]})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="moe_roofline_per_position,moe_roofline_speculation")
    ap.add_argument("--fleets", default="1,2")
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--start", choices=("jittered", "plausible"), default="plausible")
    args = ap.parse_args()
    print(machine_line("k_shape"))
    fleets = {f: random_fleet(f) for f in seeds(args.fleets)}
    for config in args.configs.split(","):
        parts = []
        for f, (runs, models, truth) in fleets.items():
            runs = with_batch_caps(runs.reset_index(drop=True), truth)
            model = fit(config, runs, models, args, seed=1000 * f)
            print(f"{config}, fleet {f}: {model.diagnostics_text()}", flush=True)
            parts.append(k_errors(model, runs, models, truth))
        e = pd.concat(parts, ignore_index=True)
        e = e[np.isfinite(e["true_s"]) & np.isfinite(e["predicted_s"])]
        e["error"] = e["predicted_s"] / e["true_s"] - 1.0
        table = e.groupby(["k", "measured"])["error"].agg(
            conditions="size", median_error="median", mean_abs_error=lambda x: x.abs().mean())
        print(f"\n{config}: predictive median against the truth, per k (finite both)\n{table.round(3).to_string()}\n")


if __name__ == "__main__":
    main()
