"""PyramidSD cascade: closed form against the step simulator, and parameter recovery (SYNTHETIC).

    python bench/pyramid.py [--seeds 0,1,2] [--draws 500] [--tune 500] [--chains 2] [--skip-recovery]

1. Simulator vs theory: mean latency of ``simulate_pyramid_run`` (exact lengths, 3 % step
   noise) against ``pyramid_latency`` for plain and cascade configurations of the
   ``bayes_sd.cascade.simulate.scenario()`` trio, closed loop at 1 / 16 / 64 streams and open loop
   (Poisson) at 10 % / 50 % of each configuration's saturation rate.
2. Recovery: per seed, simulate ``scenario_configs()`` (14 runs), fit ``fit_pyramid`` and check
   whether each true quantity (q0, q1, a_dq, a_qv, a_dv) lies in its 90 % posterior interval.
"""

import argparse
import time

import numpy as np
import pandas as pd
from _machine import machine_line  # bench/ is on sys.path when a script runs

from bayes_sd.cascade import theory as pyr
from bayes_sd.cascade.simulate import (
    scenario,
    scenario_configs,
    simulate_pyramid_run,
    simulate_pyramid_runs,
    summarise_run,
)

CONFIGS = [("plain k=3", True, 3, 0), ("cascade (1,1)", False, 1, 1), ("cascade (2,2)", False, 2, 2),
           ("cascade (3,2)", False, 3, 2), ("cascade (1,3)", False, 1, 3)]


def sim_vs_theory() -> pd.DataFrame:
    sc = scenario()
    c, P, D = sc["costs"], sc["prompt_len"], sc["output_len"]
    rows = []
    for name, plain, kd, kq in CONFIGS:
        q = pyr.drafter_as_qualifier(c) if plain else sc["qcosts"]
        kd_s, kq_s, a_dq, a_qv = (0, kd, 0.0, sc["a_dv"]) if plain else (kd, kq, sc["a_dq"], sc["a_qv"])
        sat = 1.0 / pyr.pyramid_demand(c, q, kd_s, kq_s, a_dq, a_qv, P, D).c2
        loads = [("concurrency", 1), ("concurrency", 16), ("concurrency", 64), ("rate", 0.1 * sat), ("rate", 0.5 * sat)]
        for i, (kind, x) in enumerate(loads):
            kw = {"concurrency": int(x)} if kind == "concurrency" else {"rate_rps": x}
            n = 3000 if kind == "rate" else max(300, 40 * int(x))
            df = simulate_pyramid_run(c, q, k_draft=kd_s, k_qual=kq_s, a_dq=a_dq, a_qv=a_qv, n_requests=n,
                                      prompt_len=P, output_len=D, seed=100 + i, **kw)
            load_kw = {"concurrency": x} if kind == "concurrency" else {"rate": x}
            th = float(pyr.pyramid_latency(c, q, kd_s, kq_s, a_dq, a_qv, P, D, **load_kw))
            sim = summarise_run(df)["latency_mean_s"]
            load = f"c={int(x)}" if kind == "concurrency" else f"{x / sat:.0%} of sat ({x:.2f} req/s)"
            rows.append({"config": name, "load": load, "theory_s": th, "simulated_s": sim, "rel_error": sim / th - 1})
    return pd.DataFrame(rows)


def recovery(seeds, draws, tune, chains) -> pd.DataFrame:
    from bayes_sd.cascade.model import diagnostics, fit_pyramid

    sc = scenario()
    truth = {("qual_cost_ms", "qcoef", "q0"): sc["qcosts"].q0 * 1e3,
             ("qual_cost_ms", "qcoef", "q1"): sc["qcosts"].q1 * 1e3, ("acceptance", "stage", "dq"): sc["a_dq"],
             ("acceptance", "stage", "qv"): sc["a_qv"], ("acceptance", "stage", "dv"): sc["a_dv"]}
    rows = []
    for seed in seeds:
        _, runs = simulate_pyramid_runs(scenario_configs(), sc["costs"], sc["qcosts"], a_dq=sc["a_dq"], a_qv=sc["a_qv"],
                                        a_dv=sc["a_dv"], seed=seed)
        t0 = time.perf_counter()
        idata = fit_pyramid(runs, sc["costs"], draws=draws, tune=tune, chains=chains, random_seed=seed)
        wall = time.perf_counter() - t0
        d = diagnostics(idata)
        for (var, dim, coord), value in truth.items():
            x = idata.posterior[var].sel({dim: coord}).values.ravel()
            lo, hi = np.quantile(x, [0.05, 0.95])
            rows.append({"seed": seed, "quantity": coord, "truth": value, "mean": x.mean(), "lo90": lo, "hi90": hi,
                         "covered": bool(lo <= value <= hi), "max_rhat": d["max_rhat"], "divergences": d["divergences"],
                         "fit_s": wall})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--skip-recovery", action="store_true")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    fmt = lambda x: f"{x:.4g}"  # noqa: E731
    print(machine_line("pyramid"))
    t0 = time.perf_counter()
    err = sim_vs_theory()
    print("\nSYNTHETIC: simulator vs closed form (pyramid_latency), exact lengths")
    print(err.to_string(index=False, float_format=fmt))
    low = err[err["load"].str.startswith(("c=1", "10%"))]
    print(f"|error| at low load (c=1, 10% of sat): max {low['rel_error'].abs().max():.1%}; "
          f"over all rows: median {err['rel_error'].abs().median():.1%}, max {err['rel_error'].abs().max():.1%} "
          f"({time.perf_counter() - t0:.0f} s)")
    if args.skip_recovery:
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    rec = recovery(seeds, args.draws, args.tune, args.chains)
    print(f"\nSYNTHETIC: recovery, seeds={seeds}, {args.chains} chains x ({args.tune}+{args.draws})")
    print(rec.to_string(index=False, float_format=fmt))
    print(f"coverage of 90% intervals: {rec['covered'].mean():.0%} ({int(rec['covered'].sum())}/{len(rec)}); "
          f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
