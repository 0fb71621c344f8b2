"""Parameter recovery on SYNTHETIC runs with known service costs (bayes_sd.evaluation.recovery).

    python bench/recovery.py [--seeds 0,1,2] [--draws 500] [--tune 500] [--chains 2] [--config default]

For each seed: simulate the design, fit, and check whether each true cost coefficient and
the true acceptance lie inside their 90% posterior interval. Prints the per-seed table and
the overall coverage (nominal 90%). With a roofline configuration (``--config moe_roofline``, the
main job's) the truth has a per-sequence cost and a knee, and their intervals are scored too.
"""

import argparse
import datetime as dt
import os
import time

import pandas as pd

from bayes_sd.evaluation.recovery import run_recovery


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--config", default="default", help="model configuration (a name in models/ or a .toml path)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    table = run_recovery(seeds, draws=args.draws, tune=args.tune, chains=args.chains, config=args.config)
    pd.set_option("display.width", 200)
    print(f"recovery  {dt.date.today()}  nproc={os.cpu_count()}  config={args.config}  seeds={seeds}  "
          f"{args.chains} chains x ({args.tune}+{args.draws})")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"coverage of 90% intervals: {table['covered'].mean():.0%} ({int(table['covered'].sum())}/{len(table)}); "
          f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
