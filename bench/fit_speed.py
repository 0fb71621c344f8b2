"""Fit speed and convergence of the default model on all bundled data.

    python bench/fit_speed.py [--draws 1000] [--tune 1000] [--chains 4] [--low-rank] [--data all|real|synthetic]

Reports wall time (compilation included, as a user sees it), R-hat, ESS (bulk and tail),
divergences and ESS per second. Also shows that fit cost does not grow with requests per run:
the model only sees run-level statistics (the number of requests enters as a standard error).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from bayes_sd import datasets
from bayes_sd.model import ConvergenceWarning, LatencyModel

from _machine import machine_line  # bench/ is on sys.path when a script runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--low-rank", action="store_true")
    ap.add_argument("--data", default="all", choices=["all", "real", "synthetic"])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    parts = {"real": [datasets.load_b200_runs()], "synthetic": [datasets.load_fleet_runs()]}
    runs = pd.concat(parts["real"] + parts["synthetic"] if args.data == "all" else parts[args.data], ignore_index=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel().fit(runs, draws=args.draws, tune=args.tune, chains=args.chains,
                                   random_seed=args.seed, progressbar=False, low_rank_mass_matrix=args.low_rank)
    wall = time.perf_counter() - t0
    d = model.diagnostics()
    print(machine_line("fit_speed"))
    print(f"data={args.data}: {len(runs)} runs, {model.fit_data.n_runs} fitted, {len(model.fit_data.excluded)} excluded; "
          f"requests behind them: {int(runs['n_requests'].sum())}")
    print(f"sampler: nutpie, {args.chains} chains x ({args.tune} tune + {args.draws} draws), low-rank={args.low_rank}")
    print(f"wall {wall:.1f} s (compile + sample); max R-hat {d['max_rhat']:.3f}; min ESS bulk {d['min_ess_bulk']:.0f}, "
          f"tail {d['min_ess_tail']:.0f}; divergences {d['divergences']}; min ESS bulk per second {d['min_ess_bulk'] / wall:.1f}; "
          f"converged={d['converged']}")


if __name__ == "__main__":
    main()
