"""What a run of N requests measures near capacity: bayes_sd.theory.finite_run against the out-of-family
fleet simulator (SYNTHETIC, bayes_sd.evaluation.fleets: a server written independently of the model's closed
form), without speculation.

    python bench/finite_run.py [--fleet 7] [--bases 3] [--runs 300,3000] [--reps 4]

Per base (verifier, device, workload) of the fleet: the law the theory needs, the latency of a request with
n others in service, is measured by closed-loop runs of the simulator at 1 ... max_num_seqs streams, and the
capacity by its full-batch throughput (as the fleet's truth measures it). Then open-loop Poisson runs of N
requests at 30-97% of capacity, `--reps` seeds each, against: the steady state (the fluid's fixed point
n = rate L(n) plus the wait for a slot, theory.queue_wait) and the finite run (theory.finite_run_latency).
The steady state here is built from the closed-loop law, not fitted to open-loop runs, so compare the
finite run's shape across N and load with the simulator's, and its distance from the steady state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line  # noqa: E402

from bayes_sd import theory  # noqa: E402
from bayes_sd.evaluation.fleets import fleet as fleet_module  # noqa: E402
from bayes_sd.evaluation.fleets.server import request_stream, simulate_arrays  # noqa: E402
from bayes_sd.evaluation.fleets.workloads import AcceptanceProfile  # noqa: E402

LOADS = (0.3, 0.6, 0.8, 0.9, 0.97)


def _law(streams: np.ndarray, closed: np.ndarray, cap: int):
    """The latency (s) of a request with ``others`` others in service, from closed-loop means at ``streams``."""
    return lambda others: np.interp(np.minimum(others + 1.0, cap), streams, closed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fleet", type=int, default=7, help="fleet seed (default 7)")
    ap.add_argument("--bases", type=int, default=3, help="bases of the fleet to measure (default 3)")
    ap.add_argument("--runs", default="300,3000", help="requests per open-loop run (default 300,3000)")
    ap.add_argument("--reps", type=int, default=4, help="runs per (N, load), different seeds (default 4)")
    args = ap.parse_args()
    print(machine_line("finite_run"))
    rng = np.random.default_rng(args.fleet)
    bases, _ = fleet_module._draw_fleet(rng, 18, 7)
    neutral = AcceptanceProfile(first_mean=0.5)
    errors = {"steady": [], "finite run": []}
    for b in bases[: args.bases]:
        cost = fleet_module._cost(b.verifier, b, fleet_module._routing(rng, b, per_run=False))
        cap = b.settings.max_num_seqs
        capacity = fleet_module._capacity(b, None, 0, neutral, 11, cost)
        streams = np.unique(np.round(np.geomspace(1, cap, 10)).astype(int))
        closed = []
        for s in streams:
            stream = request_stream(np.random.default_rng(5), max(300, 6 * int(s)), b.workload, neutral, None)
            out = simulate_arrays(cost, None, 0, neutral, b.settings, stream, concurrency=int(s), seed=5)
            closed.append(float((out[2] - out[0]).mean()))

        law = _law(streams, np.array(closed), cap)

        print(f"\n{b.verifier.name} on {b.device.name}, {b.workload.name}: batch cap {cap}, capacity {capacity:.3g} "
              f"req/s, latency alone {closed[0]:.3g} s, at the cap {closed[-1]:.3g} s")
        print("    N  load  simulated (range)          steady   finite run")
        for n in (int(x) for x in args.runs.split(",")):
            for load in LOADS:
                rate = load * capacity
                sims = []
                for r in range(args.reps):
                    stream = request_stream(np.random.default_rng(100 + r), n, b.workload, neutral, rate)
                    out = simulate_arrays(cost, None, 0, neutral, b.settings, stream, concurrency=0, seed=100 + r)
                    sims.append(float((out[2] - out[0]).mean()))
                held = np.linspace(0.0, cap - 1.0, 4000)
                below = held > rate * law(held)  # past the fluid's fixed point
                wait = float(theory.queue_wait(rate, cap, law(cap - 1.0), True)) if below.any() else np.inf
                steady = float(law(held[np.argmax(below)])) + wait if below.any() else np.inf
                fluid = theory.fluid_run_latency(np.array([rate]), np.array([float(n)]), np.array([float(cap)]),
                                                 law(theory.RUN_GRID * n)[None, :])
                finite = float(theory.finite_run_latency(np.array([steady]), np.array([wait]), fluid,
                                                         theory.fluctuation_wait(n, capacity), load, rate, n)[0])
                sim = float(np.mean(sims))
                errors["steady"].append((n, steady / sim - 1))
                errors["finite run"].append((n, finite / sim - 1))
                print(f"{n:5d}  {load:4.2f}  {sim:7.3g} s ({min(sims):.3g}-{max(sims):.3g})  {steady:7.3g} s  "
                      f"{finite:7.3g} s")
    for name, errs in errors.items():
        for n in sorted({e[0] for e in errs}):
            e = np.array([v for m, v in errs if m == n])
            print(f"{name}, runs of {n}: error against the simulated run mean {np.mean(e):+.0%} on average "
                  f"({np.min(e):+.0%} to {np.max(e):+.0%})")


if __name__ == "__main__":
    main()
