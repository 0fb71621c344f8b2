"""Decision quality of ``bayes_sd.recommend`` on simulator scenarios with a known best k.

    python bench/decisions.py [--draws 1000] [--tune 1000] [--chains 2] [--posterior PATH] [--refit]

Target (issue): on simulator scenarios (several pairs, light to heavy load) the recommended
k's TRUE mean latency is within 2 % of the true best on average, and the recommender never
picks speculation where it is 5 % or more slower than k = 0.

1. Training design (SYNTHETIC, fresh): for each pair below, ``chat`` open loop at 10, 30,
   50, 70, 85 % of each configuration's own theoretical saturation rate
   (``theory.saturation_rate_at``: the presets' roofline knee included), and ``code``
   closed loop at 1, 4, 16, 48, 96 streams; k in {0, 2, 4, 7} (k = 0 once per verifier);
   simulator options as the bundled fleet (length cv 0.4, acceptance spread 0.3, step
   noise 0.03, Poisson arrivals). Fitted with ``LatencyModel().fit(draws, tune, chains)``;
   the posterior is cached under /tmp/bayes_sd_bench/ by a hash of the design and settings.
2. Scenarios: the same pairs, ``chat`` open loop at 5, 30, 60, 80, 90 % of the k = 0
   saturation rate (loads not in the training design), and ``code`` closed loop at 2, 24,
   128 and 256 streams; k in 0..7 (1, 3, 5, 6 never trained).
3. Ground truth: SIMULATED, not theory. For every scenario and every k in 0..7, ``--reps``
   runs of ``--requests`` requests (default 5 x 4000) with common random numbers across k
   (run r uses seed r for every k), aggregated by ``aggregate_runs`` (10 % trimmed at both
   ends); the true mean latency is the mean over the runs.
4. Recommendation: ``recommend_k(objective="mean", k_max=7)`` per pair and load type, all
   loads in one call. Per scenario: true best k, recommended k, true latency of the
   recommendation / true best - 1 (regret), and whether it chose k > 0 where k = 0 was at
   least 5 % faster. A baseline "static k" (the true best k at the lightest load, kept at
   every load) shows what load adaptivity is worth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import machine_line  # bench/ is on sys.path when a script runs

from bayes_sd import theory
from bayes_sd.recommend import recommend_k
from bayes_sd.simulate import simulate_run, simulate_runs
from bayes_sd.simulate.presets import PRESETS, WORKLOADS, preset_name
from bayes_sd.traces.aggregate import aggregate_runs

PAIRS = [("llama3.1-8b", "eagle3-small"), ("llama3.3-70b", "draft-1b"), ("llama3.1-8b", "ngram"),
         ("qwen3-30b-a3b", "eagle3-small"), ("llama3.3-70b", "eagle3-small")]
HW = "H100"
TRAIN_K = (0, 2, 4, 7)
TRAIN_RATE_FRACTIONS = (0.10, 0.30, 0.50, 0.70, 0.85)
TRAIN_CONCURRENCY = (1, 4, 16, 48, 96)
TEST_RATE_FRACTIONS = (0.05, 0.30, 0.60, 0.80, 0.90)  # of the k = 0 saturation rate
TEST_CONCURRENCY = (2, 24, 128, 256)
K_MAX = 7
SIM = dict(length_cv=0.4, acceptance_spread=0.3, step_noise=0.03)
SEED = 20241122
CACHE = Path("/tmp/bayes_sd_bench")


def _sat(preset, dataset: str, k: int) -> float:
    w = WORKLOADS[dataset]
    tau = theory.tau_per_position(np.asarray(preset.acceptance[dataset][:k])) if k else 1.0
    return theory.saturation_rate_at(preset.costs, k, tau, w["prompt_len"], w["output_len"])  # knee included


def training_configs() -> pd.DataFrame:
    rows, seen = [], set()
    for v, d in PAIRS:
        pre = PRESETS[preset_name(v, d, HW)]
        for k in TRAIN_K:
            key = (v, "none" if k == 0 else d, k)
            if key in seen:
                continue
            seen.add(key)
            for ds, lt in (("chat", "rate"), ("code", "concurrency")):
                w = WORKLOADS[ds]
                loads = ([f * _sat(pre, ds, k) for f in TRAIN_RATE_FRACTIONS] if lt == "rate"
                         else list(TRAIN_CONCURRENCY))
                for j, x in enumerate(loads):
                    rows.append({"run_id": f"dec-{v}+{key[1]}-{ds}-k{k}-{lt}{j}", "preset": preset_name(v, d, HW),
                                 "dataset": ds, "k": k, "load_type": lt, "rate_rps": x if lt == "rate" else np.nan,
                                 "concurrency": x if lt == "concurrency" else np.nan,
                                 "n_requests": 1000 if lt == "rate" else int(np.clip(10 * x, 150, 1000)),
                                 "arrivals": "poisson", **w, **SIM})
    return pd.DataFrame(rows)


def fitted_model(args, configs: pd.DataFrame):
    from bayes_sd.model import ConvergenceWarning, LatencyModel

    if args.posterior and not args.refit and Path(args.posterior).is_file():
        return LatencyModel.load(args.posterior), args.posterior, "loaded"
    key = hashlib.sha256((configs.to_csv(index=False) + json.dumps(
        [args.draws, args.tune, args.chains, SEED])).encode()).hexdigest()[:12]
    path = Path(args.posterior) if args.posterior else CACHE / f"decisions_{key}.nc"
    if path.is_file() and not args.refit:
        return LatencyModel.load(path), path, "cached"
    _, runs = simulate_runs(configs, PRESETS, seed=SEED)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel().fit(runs, draws=args.draws, tune=args.tune, chains=args.chains,
                                   random_seed=SEED, progressbar=False)
    print(f"fitted {len(runs)} training runs in {time.perf_counter() - t0:.0f} s: {model.diagnostics_text()}")
    model.save(path)
    return model, path, "fitted"


def scenarios() -> list[dict]:
    out = []
    for v, d in PAIRS:
        pre = PRESETS[preset_name(v, d, HW)]
        sat0 = _sat(pre, "chat", 0)
        out += [{"verifier": v, "drafter": d, "dataset": "chat", "load_type": "rate", "load": f * sat0,
                 "load_label": f"{f:.0%} of k=0 sat"} for f in TEST_RATE_FRACTIONS]
        out += [{"verifier": v, "drafter": d, "dataset": "code", "load_type": "concurrency", "load": float(c),
                 "load_label": f"{c} streams"} for c in TEST_CONCURRENCY]
    return out


def true_latency(sc: dict, reps: int, n: int) -> np.ndarray:
    """Simulated mean latency (s) for k = 0..K_MAX, averaged over ``reps`` runs (CRN over k)."""
    pre = PRESETS[preset_name(sc["verifier"], sc["drafter"], HW)]
    w = WORKLOADS[sc["dataset"]]
    reqs, meta = [], []
    for k in range(K_MAX + 1):
        for r in range(reps):
            rid = f"k{k}-r{r}"
            load = {"rate_rps": sc["load"]} if sc["load_type"] == "rate" else {"concurrency": int(sc["load"])}
            reqs.append(simulate_run(pre.costs, k=k, acceptance=pre.acceptance[sc["dataset"]], n_requests=n,
                                     prompt_len=w["prompt_len"], output_len=w["output_len"], seed=r, run_id=rid,
                                     **load, **SIM))
            meta.append({"run_id": rid, "source": "synthetic:bayes_sd.simulate", "hardware": HW,
                         "verifier": sc["verifier"], "drafter": sc["drafter"] if k else "none",
                         "dataset": sc["dataset"], "k": k, "load_type": sc["load_type"],
                         "rate_rps": load.get("rate_rps", np.nan), "concurrency": load.get("concurrency", np.nan)})
    runs = aggregate_runs(pd.concat(reqs, ignore_index=True), pd.DataFrame(meta), detect=False)
    runs["kk"] = runs["k"].astype(int)
    return runs.groupby("kk")["latency_mean_s"].mean().reindex(range(K_MAX + 1)).to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--posterior", help="posterior file to load (or to write when fitting)")
    ap.add_argument("--refit", action="store_true", help="fit even if a cached posterior exists")
    ap.add_argument("--reps", type=int, default=5, help="simulated runs per scenario and k (truth)")
    ap.add_argument("--requests", type=int, default=4000, help="requests per truth run")
    ap.add_argument("--max-draws", type=int, default=1000)
    args = ap.parse_args()
    configs = training_configs()
    model, path, how = fitted_model(args, configs)
    print(f"posterior {how}: {path} ({len(configs)} training runs)")

    t0 = time.perf_counter()
    scs = scenarios()
    truth = [true_latency(sc, args.reps, args.requests) for sc in scs]
    t_truth = time.perf_counter() - t0
    recs = {}
    for (v, d, ds, lt), grp in pd.DataFrame(scs).groupby(["verifier", "drafter", "dataset", "load_type"], sort=False):
        w = WORKLOADS[ds]
        loads = grp["load"].tolist()
        r = recommend_k(model, verifier=v, drafter=d, hardware=HW, dataset=ds, prompt_len=w["prompt_len"],
                        output_len=w["output_len"], k_max=K_MAX, max_draws=args.max_draws,
                        **({"rates": loads} if lt == "rate" else {"concurrencies": loads}))
        for x, row in zip(loads, r.to_dict("records")):
            recs[(v, d, ds, lt, x)] = row
    static = {}
    for sc, lat in zip(scs, truth):  # static baseline: best k at the pair's lightest load
        static.setdefault((sc["verifier"], sc["drafter"], sc["dataset"]), int(np.argmin(lat)))
    rows = []
    for sc, lat in zip(scs, truth):
        rec = recs[(sc["verifier"], sc["drafter"], sc["dataset"], sc["load_type"], sc["load"])]
        kb, kr = int(np.argmin(lat)), int(rec["best_k"])
        ks = static[(sc["verifier"], sc["drafter"], sc["dataset"])]
        rows.append({"pair": f"{sc['verifier']}+{sc['drafter']}", "dataset": sc["dataset"], "load": sc["load_label"],
                     "true_best_k": kb, "rec_k": kr, "p_best": rec["p_best"],
                     "regret_pct": 100 * (lat[kr] / lat[kb] - 1), "k0_vs_best_pct": 100 * (lat[0] / lat[kb] - 1),
                     "bad_spec": bool(kr > 0 and lat[kr] >= 1.05 * lat[0]),
                     "static_k": ks, "static_regret_pct": 100 * (lat[ks] / lat[kb] - 1),
                     "true_lat_best_s": lat[kb], "pred_lat_rec_s": rec["latency_mean_s"]})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(machine_line("decisions"))
    print(f"truth: simulated, {args.reps} x {args.requests} requests per scenario and k ({t_truth:.0f} s)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    n_spec_bad = int(table["bad_spec"].sum())
    ok = table["regret_pct"].mean() <= 2.0 and n_spec_bad == 0
    print(f"SUMMARY: {len(table)} scenarios; mean regret {table['regret_pct'].mean():.2f}% "
          f"(max {table['regret_pct'].max():.2f}%, median {table['regret_pct'].median():.2f}%); "
          f"exact best k {np.mean(table['rec_k'] == table['true_best_k']):.0%}; "
          f"speculation chosen where k=0 >=5% faster: {n_spec_bad}; "
          f"static-k baseline mean regret {table['static_regret_pct'].mean():.2f}%; target met: {ok}")


if __name__ == "__main__":
    main()
