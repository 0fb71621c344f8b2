"""Drafter-design what-if on a SYNTHETIC drafter family: predict drafters never measured.

    python bench/drafter_design.py [--draws 1000] [--tune 1000] [--chains 2] [--held-out draft-L12-0.8b,draft-L6-0.4b]

Data: bayes_sd.simulate.designs.drafter_family_runs (8 drafters of 1-24 layers and 0.25-2 B
parameters on one 8B-class verifier, simulated; depth drives draft cost, as Yan et al. found).
For each held-out drafter: fit on the other drafters, predict the held-out drafter's runs from
its layers and size alone (what_if_drafter with models/drafter_design.toml), and compare with
the default model, which knows nothing about the drafter but its population; each with the
acceptance unknown (the drafters' population) and given (as if measured offline: implied by the
held-out drafter's own acceptance lengths). Scores: MAPE of
the posterior median of mean latency and coverage of the 90% predictive interval. Then one
parity table: what the shallowest drafter needs to match the deepest at each load.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from _machine import machine_line

from bayes_sd import theory
from bayes_sd.model import ConvergenceWarning, LatencyModel
from bayes_sd.model.conditions import CONDITION_COLUMNS as COND
from bayes_sd.recommend.drafter import parity, what_if_drafter
from bayes_sd.simulate.designs import FAMILY_DRAFTERS, drafter_family_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--held-out", default="draft-L12-0.8b,draft-L6-0.4b")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(machine_line("drafter_design"), f" {args.chains} chains x ({args.tune}+{args.draws})")
    t0 = time.perf_counter()
    runs, models = drafter_family_runs(seed=args.seed)
    print(f"SYNTHETIC drafter family: {len(runs)} runs, {len(FAMILY_DRAFTERS)} drafters "
          f"({time.perf_counter() - t0:.0f} s)")
    rows, last = [], None
    for held in args.held_out.split(","):
        train, test = runs[runs["drafter"] != held], runs[(runs["drafter"] == held)]
        layers, params = FAMILY_DRAFTERS[held]
        y = test["latency_mean_s"].to_numpy()
        # acceptance "measured offline": implied by the held-out drafter's own acceptance lengths
        a_known = float(np.mean(theory.implied_acceptance(test["acceptance_length"], test["k"])))
        for config in ("default", "drafter_design"):
            t1 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                m = LatencyModel(config).fit(train, models=models[models["name"] != held], draws=args.draws,
                                             tune=args.tune, chains=args.chains, random_seed=1, progressbar=False)
            d = m.diagnostics()
            for acceptance in (None, a_known):
                if config == "drafter_design":
                    ds = what_if_drafter(m, layers=layers, params_b=params, verifier="family-8b", hardware="H100",
                                         dataset="chat", prompt_len=512, output_len=256, acceptance=acceptance,
                                         ks=sorted(test["k"].unique()), name=f"what-if-{held}",
                                         concurrencies=sorted(test["concurrency"].unique()))
                    pick = lambda v, ds=ds, test=test: np.array([  # noqa: E731
                        float(ds[v].sel(k=r.k, concurrency=r.concurrency)) for r in test.itertuples()])
                    med, lo, hi = pick("latency_q50_s"), pick("latency_pred_q05_s"), pick("latency_pred_q95_s")
                    last = m
                else:  # the default model sees an unknown drafter: one population draw of its costs
                    given = None if acceptance is None else np.full(len(test), acceptance)
                    t = m.predict_table(test[COND].assign(drafter=f"unseen-{held}"), acceptance=given)
                    med, lo, hi = (t[c].to_numpy() for c in ("latency_q50_s", "latency_pred_q05_s",
                                                             "latency_pred_q95_s"))
                rows.append({"held_out": held, "config": config,
                             "acceptance": "population" if acceptance is None else f"given {acceptance:.3f}",
                             "runs": len(test), "mape": np.mean(np.abs(med / y - 1)),
                             "cover90": np.mean((y >= lo) & (y <= hi)), "median_rel_width90": np.median((hi - lo) / y),
                             "max_rhat": d["max_rhat"], "min_ess_bulk": d["min_ess_bulk"],
                             "divergences": d["divergences"], "fit_s": time.perf_counter() - t1})
                print(pd.Series(rows[-1]).to_string(), flush=True)
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    table = parity(last, candidate="draft-L1-0.25b", reference="draft-L24-2b", verifier="family-8b",
                   hardware="H100", dataset="chat", prompt_len=512, output_len=256, concurrencies=[1, 8, 32])
    print("parity: what draft-L1-0.25b needs to match draft-L24-2b (each at its best k)")
    print(table.drop(columns=["candidate", "reference"]).T.to_string(float_format=lambda x: f"{x:.3g}"))
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
