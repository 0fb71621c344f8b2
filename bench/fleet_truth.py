"""How far the closed form with the TRUE costs is from the simulated fleet runs, per load level.

    python bench/fleet_truth.py

For every open-loop run of the SYNTHETIC fleet (data/synthetic/), the theory's mean latency at the
run's offered rate with the preset's true costs and acceptance (``theory.latency_moe_open``: MoE
coverage and roofline knee included) against the run's measured mean latency. The spread at each
load level is how far finite runs scatter around the steady state: near saturation a steady-state
model with the true costs misses them by this much. Saturated runs (flagged by the aggregation) are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _machine import machine_line  # bench/ is on sys.path when a script runs

from bayes_sd import datasets, theory
from bayes_sd.simulate.presets import PRESETS, preset_name
from bayes_sd.traces.schema import NO_DRAFTER


def main() -> None:
    runs = datasets.load_fleet_runs()
    runs = runs[(runs["load_type"] == "rate") & ~runs["saturated"].fillna(False).astype(bool)]
    any_drafter = {p.verifier: p.drafter for p in PRESETS.values()}  # k = 0 uses no drafter cost
    rows = []
    for r in runs.itertuples():
        k = int(r.k)
        drafter = r.drafter if k > 0 and r.drafter != NO_DRAFTER else any_drafter[r.verifier]
        pre = PRESETS[preset_name(r.verifier, drafter, r.hardware)]
        tau = theory.tau_per_position(np.asarray(pre.acceptance[r.dataset][:k])) if k else 1.0
        lat = float(theory.latency_moe_open(pre.costs, k, tau, r.prompt_len, r.output_len, r.rate_rps))
        level = r.run_id.rsplit("-r", 1)[-1]
        rows.append({"load (share of saturation)": level, "error_pct": 100 * (lat / r.latency_mean_s - 1)})
    table = pd.DataFrame(rows).groupby("load (share of saturation)")["error_pct"].describe()
    print(machine_line("fleet_truth"))
    print("closed form with the true costs vs simulated open-loop fleet runs, error in %:")
    print(table[["count", "mean", "50%", "std", "min", "max"]].round(1).to_string())


if __name__ == "__main__":
    main()
