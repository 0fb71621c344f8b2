"""Fit speed and convergence of a model configuration on all bundled data (the main job's,
bayes_sd.demo.MAIN_MODEL, unless --config).

    python bench/fit_speed.py [--draws 3000] [--tune 700] [--chains 2] [--target-accept 0.9] [--max-tree-depth 6]
                              [--diagonal] [--data all|real|synthetic] [--config moe_roofline_generative] [--seed 1]
                              [--start plausible]

The defaults are the settings of the main job for ``--config`` (``bayes-sd demo --model``,
``bayes_sd.demo.demo_sampling``): 2 chains (one per core) x (700 tune + 3500 draws), target acceptance
0.9, trees capped at depth 6, nutpie's jittered starts; a configuration's ``[sampling]`` table changes
them (``moe_roofline``: 3000 draws; the main job's ``moe_roofline_generative``, as
``moe_roofline_speculation``: 1000 tune + 2000 draws, chains started where the data are plausible).
nutpie with its low-rank mass matrix (``--diagonal``: without it).

Reports wall time (compilation included, as a user sees it), R-hat, ESS (bulk and tail),
divergences and ESS per second. Also shows that fit cost does not grow with requests per run:
the model only sees run-level statistics (the number of requests enters as a standard error).
"""

from __future__ import annotations

import argparse
import time
import warnings

from _machine import fill_sampling_defaults, machine_line  # bench/ is on sys.path when a script runs

from bayes_sd import datasets
from bayes_sd.demo import MAIN_MODEL, bundled_models, bundled_runs, demo_sampling
from bayes_sd.model import ConvergenceWarning, LatencyModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, help="default: the main job's for --config (bayes_sd.demo.demo_sampling)")
    ap.add_argument("--tune", type=int)
    ap.add_argument("--chains", type=int)
    ap.add_argument("--target-accept", type=float)
    ap.add_argument("--max-tree-depth", type=int, help="NUTS tree depth cap")
    ap.add_argument("--diagonal", action="store_true",
                    help="diagonal mass matrix (nutpie's default) instead of low-rank")
    ap.add_argument("--data", default="all", choices=["all", "real", "synthetic"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", choices=["jittered", "plausible"],
                    help="where chains start (LatencyModel.fit's start; default: the main job's for --config)")
    ap.add_argument("--config", default=MAIN_MODEL,
                    help="model configuration (a name in models/ or a .toml path; default: the main job's)")
    args = ap.parse_args()
    fill_sampling_defaults(args, demo_sampling(args.config))
    load = {"all": bundled_runs, "real": datasets.load_b200_runs, "synthetic": datasets.load_fleet_runs}
    runs = load[args.data]()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel(args.config).fit(runs, models=bundled_models(), draws=args.draws, tune=args.tune,
                                   chains=args.chains,
                                   random_seed=args.seed, progressbar=False, low_rank_mass_matrix=not args.diagonal,
                                   start=args.start,
                                   target_accept=args.target_accept, max_tree_depth=args.max_tree_depth)
    wall = time.perf_counter() - t0
    d = model.diagnostics()
    print(machine_line("fit_speed"))
    print(f"data={args.data}: {len(runs)} runs, {model.fit_data.n_runs} fitted, "
          f"{len(model.fit_data.excluded)} excluded; "
          f"requests behind them: {int(runs['n_requests'].sum())}")
    print(f"config={args.config}; sampler: nutpie, {args.chains} chains x ({args.tune} tune + {args.draws} draws), "
          f"low-rank={not args.diagonal}, target_accept={args.target_accept}, max tree depth {args.max_tree_depth}, "
          f"start={args.start}")
    print(f"wall {wall:.1f} s (compile + sample); max R-hat {d['max_rhat']:.3f}; min ESS bulk {d['min_ess_bulk']:.0f}, "
          f"tail {d['min_ess_tail']:.0f}; divergences {d['divergences']}; "
          f"min ESS bulk per second {d['min_ess_bulk'] / wall:.1f}; "
          f"converged={d['converged']}")
    summ = model.summary()
    worst = summ.loc[summ[["ess_bulk", "ess_tail"]].min(axis=1).sort_values().index[:5]]
    print("lowest ESS (bulk or tail):\n" + worst[["ess_bulk", "ess_tail", "r_hat"]].to_string())
    print("highest R-hat:\n"
          + summ.sort_values("r_hat", ascending=False).head(3)[["ess_bulk", "ess_tail", "r_hat"]].to_string())


if __name__ == "__main__":
    main()
