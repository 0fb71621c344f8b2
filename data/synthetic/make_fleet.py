"""Write the SYNTHETIC fleet of benchmark runs in data/synthetic/ (fixed seed).

    python data/synthetic/make_fleet.py            # writes the two CSVs beside this file

Every run is simulated by :func:`bayes_sd.simulate.simulate_runs` from the ILLUSTRATIVE
presets in :mod:`bayes_sd.simulate.presets` (not measurements). Outputs:

- ``fleet_runs_synthetic.csv``: canonical RUNS table, ``source`` = 'synthetic:bayes_sd.simulate';
- ``fleet_models_synthetic.csv``: canonical MODELS table of every verifier and drafter.

Design: 3 verifiers (one MoE) x 3 drafters = 9 pairs, 2 hardware types, 2 workloads.
k = 1..7 for two pairs, k in {2, 4, 7} for the rest, plus k = 0 baselines per verifier;
5 load levels per configuration: open loop at 10-88 % of the theory's saturation rate
(``theory.saturation_rate_at``: ``1 / C2``, or lower where the roofline knee bites; Poisson
arrivals), or closed loop at 1, 4, 16, 48, 96 streams. Runs that come out saturated are kept
and flagged by the aggregation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_sd import theory
from bayes_sd.simulate.presets import PRESETS, WORKLOADS, models_table, preset_name

SEED = 20240917
HERE = Path(__file__).resolve().parent
RATE_FRACTIONS = (0.10, 0.30, 0.50, 0.70, 0.88)
CONCURRENCIES = (1, 4, 16, 48, 96)
FULL_K = tuple(range(1, 8))
SPARSE_K = (2, 4, 7)
#: (verifier, drafter) -> (hardware list, k values)
PAIRS = {
    ("llama3.1-8b", "eagle3-small"): (("H100", "A100"), FULL_K),
    ("qwen3-30b-a3b", "eagle3-small"): (("H100", "A100"), FULL_K),
    ("llama3.3-70b", "eagle3-small"): (("H100",), SPARSE_K),
    ("llama3.1-8b", "draft-1b"): (("H100",), SPARSE_K),
    ("llama3.3-70b", "draft-1b"): (("H100", "A100"), SPARSE_K),
    ("qwen3-30b-a3b", "draft-1b"): (("H100",), SPARSE_K),
    ("llama3.1-8b", "ngram"): (("H100", "A100"), SPARSE_K),
    ("llama3.3-70b", "ngram"): (("H100",), SPARSE_K),
    ("qwen3-30b-a3b", "ngram"): (("H100",), SPARSE_K),
}
#: Load type of speculative configurations by (hardware, workload); k = 0 baselines get both.
LOAD_TYPE = {("H100", "chat"): "rate", ("H100", "code"): "concurrency",
             ("A100", "chat"): "concurrency", ("A100", "code"): "rate"}
SIM_OPTIONS = dict(length_cv=0.4, acceptance_spread=0.3, step_noise=0.03, arrivals="poisson")


def _loads(preset, dataset: str, k: int, load_type: str):
    """(load level, rate_rps, concurrency, n_requests) rows for one configuration."""
    if load_type == "concurrency":  # about 10 requests per stream: warm-up is a small part
        return [(b, np.nan, b, int(np.clip(10 * b, 150, 1000))) for b in CONCURRENCIES]
    w = WORKLOADS[dataset]
    P, D = w["prompt_len"], w["output_len"]
    tau = theory.tau_per_position(np.asarray(preset.acceptance[dataset][:k])) if k else 1.0
    sat = theory.saturation_rate_at(preset.costs, k, tau, P, D)  # the knee may bring it below 1 / C2
    rows = []
    for f in RATE_FRACTIONS:
        rate = float(f * sat)
        # a run must last about 10 latencies for the trimmed window to be steady state:
        # n >= 10 x requests in flight (Little), within [500, 1500]; 500 keeps the Poisson
        # noise of the achieved rate (about 1/sqrt(0.8 n)) well inside the 10 % saturation rule
        lat = float(theory.latency_moe_open(preset.costs, k, tau, P, D, rate))
        n = 1500 if not np.isfinite(lat) else int(np.clip(np.ceil(10 * rate * lat), 500, 1500))
        rows.append((f, rate, np.nan, n))
    return rows


def build_configs() -> pd.DataFrame:
    """One row per run: run metadata, preset name, load, lengths and simulator options."""
    configs = []  # (verifier, drafter, hardware, dataset, k, load_type)
    verifiers = sorted({v for v, _ in PAIRS})
    for v in verifiers:  # k = 0 baselines: any preset of the verifier (drafter unused)
        drafter = next(d for vv, d in PAIRS if vv == v)
        for hw in ("H100", "A100"):
            for ds in WORKLOADS:
                for lt in ("rate", "concurrency"):
                    configs.append((v, drafter, hw, ds, 0, lt))
    for (v, d), (hws, ks) in PAIRS.items():
        for hw in hws:
            for ds in WORKLOADS:
                for k in ks:
                    configs.append((v, d, hw, ds, k, LOAD_TYPE[(hw, ds)]))
    rows = []
    for v, d, hw, ds, k, lt in configs:
        name = preset_name(v, d, hw)
        pair = f"{v}+{d if k else 'none'}"
        for level, rate, conc, n in _loads(PRESETS[name], ds, k, lt):
            tag = f"r{level:.2f}" if lt == "rate" else f"c{int(conc)}"
            rows.append({
                "run_id": f"syn-{pair}-{hw}-{ds}-k{k}-{tag}", "preset": name, "dataset": ds,
                "k": k, "load_type": lt, "rate_rps": rate, "concurrency": conc, "n_requests": n,
                **WORKLOADS[ds], **SIM_OPTIONS,
            })
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    from bayes_sd.simulate import simulate_runs
    from bayes_sd.traces.validate import validate_models, validate_runs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    configs = build_configs()
    _, runs = simulate_runs(configs, PRESETS, seed=SEED)
    runs = validate_runs(runs, "fleet_runs_synthetic")
    models = validate_models(models_table(), "fleet_models_synthetic")
    assert runs["source"].str.startswith("synthetic:").all()
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "fleet_runs_synthetic.csv", index=False, float_format="%.6g")
    models.to_csv(args.out / "fleet_models_synthetic.csv", index=False)
    n_sat = int(runs["saturated"].fillna(False).astype(bool).sum()) if "saturated" in runs else 0
    print(f"{len(runs)} runs ({n_sat} flagged saturated), {runs['n_requests'].sum()} requests "
          f"after trimming, {len(models)} models -> {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
