"""Simulation-based calibration of a model configuration on its own generative model.

    python bench/sbc.py [--config moe_roofline_generative] [--reps 200] [--draws 200] [--tune 1000] [--chains 2]
                        [--thin-to 99] [--seed 0] [--out sbc_ranks.csv]

Each replication draws the parameters from the prior, simulates the observations of the SYNTHETIC
recovery design (bayes_sd.simulate.designs; its open-loop rates x 0.2, and closed loop only for a
roofline form that counts open-loop tokens at the measured batch: bayes_sd.evaluation.sbc.sbc_design)
from the likelihood, fits the model (compiled once) and ranks every true value among the thinned
posterior draws (bayes_sd.evaluation.sbc). Prints, per parameter, the rank histogram (5 bins), a
chi-square p-value against uniform and the mean rank fraction (0.5 unbiased); replications skipped (a
design run past saturation in the prior draw, or non-finite simulated data); fits that did not converge.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line  # noqa: E402

from bayes_sd._progress import progress_bar  # noqa: E402
from bayes_sd.demo import MAIN_MODEL  # noqa: E402
from bayes_sd.evaluation.sbc import rank_uniformity, run_sbc  # noqa: E402
from bayes_sd.model.config import load_config  # noqa: E402
from bayes_sd.model.fit_data import KNEE_FORMS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=MAIN_MODEL, help="default: the main job's model")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--thin-to", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="sbc_ranks.csv")
    args = ap.parse_args()
    print(machine_line("sbc"))
    params = ["mu_log_cost", "sigma_latency", "mu_accept"]
    opts = load_config(args.config).get("model", {})
    if opts.get("verifier_form", "dense") in KNEE_FORMS:
        params += ["knee_tokens", "knee_compute_share", "sequence_cost_ms"]
    if opts.get("acceptance_form", "constant") == "decaying":
        params += ["accept_decay"]
    if opts.get("speculation_cost", False):
        params += ["speculation_step_ms", "speculation_sequence_ms"]
    t0 = time.perf_counter()
    ranks = run_sbc(args.config, n_reps=args.reps, draws=args.draws, tune=args.tune, chains=args.chains,
                    thin_to=args.thin_to, seed=args.seed, params=tuple(params),
                    progress=lambda it: progress_bar(it, desc="sbc", enabled=True, unit="fit"))
    ranks.to_csv(args.out, index=False)
    fits = ranks.drop_duplicates("rep")
    print(f"SYNTHETIC recovery design, config {args.config}: {len(fits)} replications fitted, "
          f"{ranks.attrs['skipped']} skipped (a design run past saturation, or non-finite simulated data), "
          f"{time.perf_counter() - t0:.0f} s; "
          f"fits with R-hat > 1.01: {int((fits['max_rhat'] > 1.01).sum())}, with divergences: "
          f"{int((fits['divergences'] > 0).sum())}")
    print(rank_uniformity(ranks).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
