"""Speed of the step-level simulator (not part of the test suite).

    python bench/simulate_speed.py [--requests 10000] [--repeat 5]

Target: 10,000 requests in under 2 s on one core. Two runs of the
``llama3.1-8b+eagle3-small@H100`` preset (chat lengths, length cv 0.4, acceptance spread
0.3, step noise 0.03): open loop (Poisson) at 70 % of the theory's saturation rate, and
closed loop at 64 streams; k = 0 and k = 4. The first call in the process includes
loading the numba kernel from its cache; ``--cold`` points numba at an empty cache folder
so that the first call includes the full JIT compile. Prints a table and the machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _machine import machine_line  # bench/ is on sys.path when a script runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--preset", default="llama3.1-8b+eagle3-small@H100")
    ap.add_argument("--cold", action="store_true", help="empty numba cache: time the JIT compile")
    args = ap.parse_args()
    if args.cold:
        import tempfile

        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bayes_sd_numba_")
    from bayes_sd import simulate, theory
    from bayes_sd.simulate.presets import PRESETS, WORKLOADS

    pre = PRESETS[args.preset]
    w = WORKLOADS["chat"]
    opts = dict(prompt_len=w["prompt_len"], output_len=w["output_len"], length_cv=0.4,
                acceptance_spread=0.3, step_noise=0.03, n_requests=args.requests)
    rows = []
    first_call = True
    for k in (0, 4):
        a = pre.acceptance["chat"]
        tau = theory.tau_per_position(np.asarray(a[:k])) if k else 1.0
        c2 = theory.demand(pre.costs, k, tau, w["prompt_len"], w["output_len"]).c2
        for label, load in (("open 70% sat", dict(rate_rps=0.7 * theory.saturation_rate(c2))),
                            ("closed 64", dict(concurrency=64))):
            t0 = time.perf_counter()
            simulate.simulate_run(pre.costs, k=k, acceptance=a, seed=0, **load, **opts)
            cold = time.perf_counter() - t0
            warm = []
            for r in range(args.repeat):
                t0 = time.perf_counter()
                df = simulate.simulate_run(pre.costs, k=k, acceptance=a, seed=r + 1, **load, **opts)
                warm.append(time.perf_counter() - t0)
            best = min(warm)
            rows.append((label, k, cold, first_call, best, float(np.median(warm)), args.requests / best,
                         float((df.end_s - df.start_s).mean())))
            first_call = False
    print(machine_line("simulate_speed"))
    print(f"preset {args.preset}, {args.requests} requests per run, {args.repeat} repeats"
          f"{', cold numba cache' if args.cold else ''}")
    print(f"{'load':<14}{'k':>3}{'first call s':>14}{'best s':>9}{'median s':>10}{'requests/s':>12}{'mean lat s':>11}")
    for label, k, cold, was_first, best, med, rps, lat in rows:
        note = "*" if was_first else " "
        print(f"{label:<14}{k:>3}{cold:>13.3f}{note}{best:>9.3f}{med:>10.3f}{rps:>12,.0f}{lat:>11.3f}")
    print("* first call in the process: includes " + ("the JIT compile" if args.cold else
          "loading the kernel from the numba cache"))


if __name__ == "__main__":
    main()
