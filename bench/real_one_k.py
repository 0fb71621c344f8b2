"""A drafter measured at one draft length, on the bundled REAL CPU-engine sweep (llama.cpp,
data/real/llamacpp_cpu_sweep): its acceptance length at the draft lengths it was not measured at,
from its per-position counters or without them.

    python bench/real_one_k.py [--config moe_roofline_per_position] [--keep-k 2] [--draws 1000]
                               [--tune 1000] [--chains 2] [--seed 1]

1. `bayes-sd ingest` of the raw sweep folder: the llama-server scrapes give each run's acceptance
   length and its per-position acceptance (``llamacpp:spec_decode_num_accepted_tokens_per_pos_total``).
2. Training: every k = 0 run and each drafter's runs at ``--keep-k`` only; held out: the drafters' runs
   at the other k (every load). Fitted twice on the same runs: with ``per_position_acceptance`` and
   without it (then a drafter measured at one k takes the population's decay).
3. Per held-out run, the acceptance length a new run would measure (posterior predictive: the latent
   curve with the fit's run-to-run scatter ``sigma_tau_obs``): error of the median, 90% interval and
   whether it holds the measured value, interval width relative to the value.

Data: REAL, measured on a 2-core CPU (see data/real/SOURCES.md): two drafters of one verifier, so the
population of decays is two drafters wide; not GPU figures.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line  # noqa: E402

from bayes_sd.datasets import data_dir  # noqa: E402
from bayes_sd.evaluation.scoring import new_run_acceptance  # noqa: E402
from bayes_sd.model import ConvergenceWarning, LatencyModel  # noqa: E402
from bayes_sd.model.conditions import CONDITION_COLUMNS  # noqa: E402
from bayes_sd.traces import ingest_paths  # noqa: E402

SWEEP = "real/llamacpp_cpu_sweep"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="moe_roofline_per_position",
                    help="a configuration with decaying acceptance (default: the main job's)")
    ap.add_argument("--keep-k", type=int, default=2, help="the one draft length each drafter is trained at")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(machine_line("real_one_k"))
    runs = ingest_paths([data_dir() / SWEEP]).runs
    spec = runs["k"] > 0
    held = spec & (runs["k"] != args.keep_k)
    test = runs[held].reset_index(drop=True)
    print(f"REAL llama.cpp CPU sweep: {len(runs)} runs; trained on k = 0 and k = {args.keep_k} ({int((~held).sum())} "
          f"runs), {len(test)} runs at k = {sorted(test['k'].unique())} held out")
    rows = []
    for label, train in (("with per-position counters", runs[~held]),
                         ("without", runs[~held].assign(per_position_acceptance=None))):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LatencyModel(args.config).fit(train, draws=args.draws, tune=args.tune, chains=args.chains,
                                                  random_seed=args.seed, progressbar=False)
        decay = model.idata.posterior["accept_decay"]
        print(f"\n{label}: fit in {time.perf_counter() - t0:.0f} s: {model.diagnostics_text()}")
        for d in decay.coords["drafter"].values:
            q = np.quantile(decay.sel(drafter=d).values, [0.05, 0.5, 0.95])
            print(f"  decay of {d}: {q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}] logits per position")
        draws = model.predict_draws(test[CONDITION_COLUMNS].reset_index(drop=True), max_draws=2000, seed=args.seed)
        tau = new_run_acceptance(model.idata.posterior, draws.acceptance_length, args.seed)
        lo, mid, hi = np.quantile(tau, [0.05, 0.5, 0.95], axis=0)
        observed = test["acceptance_length"].to_numpy(float)
        rows.append(pd.DataFrame({"fit": label, "run_id": test["run_id"], "k": test["k"], "measured": observed,
                                  "median": mid, "low_90": lo, "high_90": hi, "error": np.abs(mid / observed - 1),
                                  "covered": (lo <= observed) & (observed <= hi), "width": (hi - lo) / observed}))
    out = pd.concat(rows, ignore_index=True)
    out["drafter"] = np.tile(test["drafter"].to_numpy(), 2)
    per_k = out.drop_duplicates(["fit", "drafter", "k", "measured"]).groupby(["fit", "drafter", "k"])[
        ["measured", "median", "low_90", "high_90"]].mean()
    print("\nper held-out k (distinct measurements; several loads repeat the same requests):\n"
          + per_k.to_string(float_format=lambda v: f"{v:.3f}"))
    summary = out.groupby("fit").agg(runs=("run_id", "size"), mean_error=("error", "mean"),
                                     max_error=("error", "max"), covered_90=("covered", "mean"),
                                     mean_width=("width", "mean"))
    print("\n" + summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
