"""The main job (``bayes-sd demo``): bundled data -> summary -> fit -> report -> recommendations.

Each stage writes its outputs atomically into the output folder, so an interrupted run
never leaves a half-written file behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_sd import datasets, theory
from bayes_sd.summary import runs_summary
from bayes_sd.traces import write_table

__all__ = ["run_demo", "bundled_runs", "closed_form_curves"]

log = logging.getLogger(__name__)


def bundled_runs() -> pd.DataFrame:
    """The package's default data: real B200 runs plus the synthetic fleet (labelled by source)."""
    return pd.concat([datasets.load_b200_runs(), datasets.load_fleet_runs()], ignore_index=True)


def closed_form_curves(preset_names=None, ks=(0, 2, 4, 7), n_points=40) -> pd.DataFrame:
    """Closed-form open-loop latency (s) versus rate (requests/s) for ILLUSTRATIVE presets.

    Uses :mod:`bayes_sd.theory` with the synthetic cost presets of :mod:`bayes_sd.presets`;
    these are not measurements.
    """
    from bayes_sd.presets import PRESETS

    names = list(preset_names or [n for n in PRESETS if n.endswith("@H100")][:3])
    rows = []
    for name in names:
        p = PRESETS[name]
        dataset = sorted(p.acceptance)[0]
        a = np.asarray(p.acceptance[dataset])
        base = theory.demand(p.costs, 0, 1.0, 512.0, 256.0)
        rates = np.linspace(0.0, 0.98 * theory.saturation_rate(base.c2), n_points)
        for k in ks:
            tau = theory.tau_per_position(a[:k]) if k else 1.0
            dem = theory.demand(p.costs, k, tau, 512.0, 256.0)
            lat = theory.latency_open(dem.c1, dem.c2, rates)
            rows.append(pd.DataFrame({"preset": name, "dataset": dataset, "k": k, "rate_rps": rates,
                                      "latency_s": lat, "saturation_rps": theory.saturation_rate(dem.c2)}))
    return pd.concat(rows, ignore_index=True)


def run_demo(out: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Path]:
    """Run the main job on the bundled data and return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    runs = bundled_runs()
    written: dict[str, Path] = {}
    summary = runs_summary(runs)
    written["summary"] = write_table(summary, out / "data_summary.csv")
    print(f"bundled data: {len(runs)} runs ({int((summary['data'] == 'real').sum())} real configurations, "
          f"{int((summary['data'] == 'synthetic').sum())} synthetic); summary -> {written['summary']}")
    written["curves"] = write_table(closed_form_curves(), out / "closed_form_curves_synthetic.csv")
    print(f"closed-form latency curves (illustrative synthetic presets) -> {written['curves']}")
    return written
