"""Where the time of a fit goes: compilation, warm-up, draws, and the cost of one gradient.

    python bench/fit_profile.py [--draws 3000] [--tune 700] [--target-accept 0.9] [--eigval-cutoff 2]
                                [--config moe_roofline_generative] [--seed 1]

The defaults are the main job's model (``bayes_sd.demo.MAIN_MODEL``) and its settings for ``--config``
(``bayes_sd.demo.demo_sampling``) on all bundled data. Reports:

- build (PyMC graph) and compile (nutpie: PyTensor rewrites and the numba log density) wall times;
- the time of one log-density-and-gradient evaluation (the compiled function, called in a loop);
- leapfrog steps spent in warm-up and in the draws (all chains), their mean tree size, and the
  sampling wall time per step (the main job's chains, one per core); the warm-up's steps and
  deepest tree per 100 draws (``--max-tree-depth`` caps it);
- the lowest bulk and tail ESS and what they cost in steps.

``fit_speed.py`` measures the fit as a user sees it; this script says which part to attack.
``--eigval-cutoff`` is nutpie's ``mass_matrix_eigval_cutoff``: its low-rank mass matrix ignores
eigenvalues between 1/cutoff and cutoff. nutpie 0.16.8 uses 2 when it is not given (its docstring
says 100); with 100 the trees grow six times longer and the ESS per step stays the same.
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np
from _machine import fill_sampling_defaults, machine_line  # bench/ is on sys.path when a script runs

from bayes_sd.demo import MAIN_MODEL, bundled_models, bundled_runs, demo_sampling
from bayes_sd.model import LatencyModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, help="default: the main job's for --config (bayes_sd.demo.demo_sampling)")
    ap.add_argument("--tune", type=int)
    ap.add_argument("--target-accept", type=float)
    ap.add_argument("--max-tree-depth", type=int)
    ap.add_argument("--eigval-cutoff", type=float, default=None, help="default: nutpie's own (2)")
    ap.add_argument("--config", default=MAIN_MODEL, help="default: the main job's model")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--evals", type=int, default=3000, help="gradient evaluations to time")
    args = ap.parse_args()
    full = demo_sampling(args.config)
    fill_sampling_defaults(args, full)
    import nutpie

    runs = bundled_runs()
    chains = full["chains"]
    t0 = time.perf_counter()
    latency_model = LatencyModel(args.config)
    model = latency_model.build(runs, models=bundled_models())
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, var_names=[v.name for v in model.free_RVs])
    t_compile = time.perf_counter() - t0

    logp = compiled.logp_func.vm.jit_fn  # the numba function nutpie's callback wraps
    point = np.zeros(compiled.n_dim)
    logp(point)
    t0 = time.perf_counter()
    for _ in range(args.evals):
        logp(point)
    grad_us = (time.perf_counter() - t0) / args.evals * 1e6

    t0 = time.perf_counter()
    cutoff = {} if args.eigval_cutoff is None else {"mass_matrix_eigval_cutoff": args.eigval_cutoff}
    idata = nutpie.sample(compiled, draws=args.draws, tune=args.tune, chains=chains, cores=chains, seed=args.seed,
                          target_accept=args.target_accept, progress_bar=False, low_rank_modified_mass_matrix=True,
                          maxdepth=args.max_tree_depth, **cutoff)
    t_sample = time.perf_counter() - t0
    warm = int(idata.warmup_sample_stats["n_steps"].sum())
    warm_steps = idata.warmup_sample_stats["n_steps"].values  # (chain, warm-up draw)
    warm_depth = idata.warmup_sample_stats["depth"].values
    windows = range(0, args.tune, 100)
    steps = int(idata.sample_stats["n_steps"].sum())
    summ = az.summary(idata, kind="diagnostics")
    ess_bulk, ess_tail = float(summ["ess_bulk"].min()), float(summ["ess_tail"].min())

    print(machine_line("fit_profile"))
    print(f"config={args.config}: {len(runs)} runs, {latency_model.fit_data.n_runs} fitted; "
          f"{compiled.n_dim} unconstrained parameters; {chains} chains x ({args.tune} + {args.draws}), "
          f"target_accept={args.target_accept}, max tree depth {args.max_tree_depth}, "
          f"eigval cutoff {args.eigval_cutoff or 'nutpie default'}")
    print(f"build {t_build:.1f} s; compile {t_compile:.1f} s; one log density + gradient {grad_us:.0f} us")
    print(f"sample {t_sample:.1f} s: warm-up {warm} steps ({warm / (chains * args.tune):.1f} per draw), "
          f"draws {steps} steps ({steps / (chains * args.draws):.1f} per draw); "
          f"{t_sample / (warm + steps) * chains * 1e6:.0f} us per step per chain")
    print("warm-up by 100 draws (all chains): steps " + ", ".join(
        f"{int(warm_steps[:, i:i + 100].sum())}" for i in windows) + "; deepest tree " + ", ".join(
        f"{int(warm_depth[:, i:i + 100].max())}" for i in windows)
          + f"; posterior draws' deepest tree {int(idata.sample_stats['depth'].max())}")
    print(f"lowest ESS bulk {ess_bulk:.0f}, tail {ess_tail:.0f}: {ess_bulk / steps * 1000:.2f} bulk ESS per 1000 "
          f"draw steps; max R-hat {float(summ['r_hat'].max()):.3f}; "
          f"divergences {int(idata.sample_stats['diverging'].sum())}")
    worst = summ.sort_values("ess_bulk").head(3)
    print("lowest ESS bulk:\n" + worst[["ess_bulk", "ess_tail", "r_hat"]].to_string())


if __name__ == "__main__":
    main()
