"""A bundled REAL CPU-engine sweep (llama.cpp): held-out accuracy at the highest unsaturated load, and the
recommended draft length per load against the measured best.

    python bench/real_sweep.py [--sweep llamacpp_cpu_sweep] [--config default] [--draws N] [--tune N]
                               [--chains N] [--retries 2] [--seed 1] [--predict SWEEP]

Sweeps (folders of data/real/; SOURCES.md): ``llamacpp_cpu_sweep`` (7 configurations x 5 rates, runs of up to
40 requests), ``llamacpp_cpu_near_capacity`` (4 configurations x 7 rates, up to 100 requests, measured on a faster
machine of the same kind) and ``llamacpp_cpu_prompt256`` (the second's configurations, 256-token prompts instead of
64, 3 rates, the same machine).

1. `bayes-sd ingest` of the raw sweep folder (its manifest, GuideLLM reports and /metrics scrapes):
   runs, flagged runs with their reasons, acceptance per drafter (from the llama.cpp counters).
2. Per configuration (drafter, k), its highest load that is not flagged saturated is held out; the
   model is fitted on the rest (flagged runs included as the ingest marks them) and predicts the
   held-out runs: MAPE of the posterior-predictive median, central 90% interval coverage, CRPS; and
   both apart for the runs below and at capacity (offered rate >= 0.95 x the throughput the
   configuration's flagged runs reached).
3. Fitted on every run: the recommended k per load and drafter (candidates: the measured k) against
   the measured best (lowest mean latency among the measured k at that load; a flagged run counts as
   slower than any unflagged one), and the regret of the choice against it, by the default rule and by
   the expected score alone (``min_p_faster`` 0).
4. With ``--predict SWEEP``: every run of that sweep predicted by the fit of step 3 (a workload it never saw).
Data: REAL, measured on a 2-core CPU (see data/real/SOURCES.md); not GPU figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line  # noqa: E402

from bayes_sd.datasets import data_dir  # noqa: E402
from bayes_sd.evaluation.scoring import score_runs, scored_saturated, summarise_scores  # noqa: E402
from bayes_sd.evaluation.splits import configuration_label  # noqa: E402
from bayes_sd.model import ConvergenceWarning, LatencyModel  # noqa: E402
from bayes_sd.model.conditions import CONDITION_COLUMNS  # noqa: E402
from bayes_sd.model.fit_data import arrivals  # noqa: E402
from bayes_sd.model.sampling import sampled_attempts  # noqa: E402
from bayes_sd.recommend import MIN_P_FASTER, recommend_k  # noqa: E402
from bayes_sd.traces import ingest_paths  # noqa: E402

SWEEPS = ("llamacpp_cpu_sweep", "llamacpp_cpu_near_capacity", "llamacpp_cpu_prompt256")


#: a held-out run is "at capacity" where its offered rate is at least this share of the highest throughput
#: (achieved requests/s) that its configuration's flagged runs, which the fit sees, reached
AT_CAPACITY = 0.95


def flagged_throughput(runs: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
    """Per held-out run, the highest ``achieved_rps`` of its configuration's runs flagged saturated (requests/s;
    inf where none was flagged): the throughput the server reached past capacity."""
    flagged = runs[runs["saturated"]]
    if flagged.empty:
        return np.full(len(held), np.inf)
    top = flagged.groupby(configuration_label(flagged))["achieved_rps"].max()
    return configuration_label(held).map(top).fillna(np.inf).to_numpy(float)


def drafter_runs(runs: pd.DataFrame, drafter: str) -> pd.DataFrame:
    """The runs a recommendation for ``drafter`` chooses among: its own and those without speculation (k = 0)."""
    return runs[(runs["k"] == 0) | (runs["drafter"] == drafter)]


def measured_best(runs: pd.DataFrame, drafter: str) -> pd.Series:
    """Per rate: the measured k with the lowest mean latency among k = 0 and the drafter's runs
    (a run flagged saturated counts as slower than every unflagged one)."""
    mine = drafter_runs(runs, drafter).copy()
    mine["key"] = np.where(mine["saturated"], np.inf, mine["latency_mean_s"])
    mine["tiebreak"] = mine["latency_mean_s"]
    best = mine.sort_values(["rate_rps", "key", "tiebreak"]).groupby("rate_rps").first()
    return best["k"].astype(int)


def measured_latency(runs: pd.DataFrame, drafter: str, k: int, rate: float) -> float:
    """Measured mean latency (s) of ``drafter`` at draft length ``k`` (k = 0: no speculation) and ``rate``."""
    mine = drafter_runs(runs, drafter)
    return float(mine.loc[(mine["k"] == k) & (mine["rate_rps"] == rate), "latency_mean_s"].iloc[0])


def _sent_arrivals(model: LatencyModel, runs: pd.DataFrame) -> float | None:
    """The arrivals the sweep sent (GuideLLM constant: evenly spaced, 0), so recommendations answer for them,
    for a model that takes arrivals as recorded (``[model] arrivals``); None (Poisson) otherwise."""
    if arrivals(model.config) != "as_recorded":
        return None
    cv2 = runs.loc[runs["load_type"] == "rate", "arrival_cv2"].dropna().unique()
    return float(cv2[0]) if len(cv2) == 1 else None


def sampled_with(model: LatencyModel) -> str:
    """How the kept posterior was sampled (the better of the attempts), and how many attempts the fit made."""
    s, attempts = model.sampler_settings, json.loads(model.idata.attrs["fit_attempts"])
    sampled = len(sampled_attempts(attempts))
    return f"{s['chains']} x ({s['tune']} + {s['draws']}) at {s['target_accept']}, kept of {sampled} attempt(s)"


def fit(config: str, runs: pd.DataFrame, args) -> LatencyModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LatencyModel(config).fit(runs, draws=args.draws, tune=args.tune, chains=args.chains,
                                        random_seed=args.seed, retries=args.retries, progressbar=False)


def predict_other_sweep(model: LatencyModel, args) -> None:
    """Every run of the bundled sweep ``args.predict``, predicted by ``model``: per-run and summary scores."""
    other = ingest_paths([data_dir() / "real" / args.predict]).runs.reset_index(drop=True)
    draws = model.predict_draws(other[CONDITION_COLUMNS], max_draws=2000, seed=args.seed)
    scores = score_runs(draws.latency_pred, other["latency_mean_s"], saturated=scored_saturated(other))
    print(f"\n{args.predict}, never fitted: {len(other)} runs (prompt {sorted(other['prompt_len'].round().unique())} "
          f"tokens, dataset {sorted(other['dataset'].unique())})")
    print(pd.concat([other[["run_id", "rate_rps", "latency_mean_s"]], scores[["median_s", "ape_median",
                                                                               "covered_90"]]], axis=1)
          .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(summarise_scores(scores, configuration_label(other)).to_string(index=False,
                                                                         float_format=lambda v: f"{v:.3g}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", default=SWEEPS[0], choices=SWEEPS, help=f"bundled sweep (default: {SWEEPS[0]})")
    ap.add_argument("--config", default="default", help="model configuration (default: default)")
    ap.add_argument("--draws", type=int, help="draws per chain (default: the configuration's [sampling])")
    ap.add_argument("--tune", type=int, help="warm-up per chain (default: the configuration's)")
    ap.add_argument("--chains", type=int, help="chains (default: the configuration's)")
    ap.add_argument("--retries", type=int, default=2, help="samplings again when not converged (default 2, as "
                    "`bayes-sd fit`)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--predict", choices=SWEEPS, help="also predict every run of this bundled sweep (one the fit never "
                    "saw: another workload of the same server) from the fit of all runs of --sweep")
    args = ap.parse_args()
    print(machine_line("real_sweep"))
    runs = ingest_paths([data_dir() / "real" / args.sweep]).runs
    spec = runs[runs["k"] > 0]
    print(f"REAL llama.cpp CPU sweep {args.sweep}: {len(runs)} runs, k {sorted(runs['k'].unique())}, rates "
          f"{sorted(runs['rate_rps'].unique())} req/s; flagged {int(runs['saturated'].sum())}")
    for _, r in runs[runs["saturated"]].iterrows():
        print(f"  flagged {r['run_id']}: {r['saturation_reason']}")
    acc = spec.groupby(["drafter", "k"])["acceptance_length"].agg(["min", "max"])
    print("acceptance length (tokens per verify step) by drafter and k:\n" + acc.round(2).to_string())

    # 2. held out: each configuration's highest unsaturated load
    cfg = configuration_label(runs)
    ok = ~runs["saturated"]
    top = runs["rate_rps"] == runs[ok].groupby(cfg[ok])["rate_rps"].transform("max").reindex(runs.index)
    test = ok & top & (cfg.map(cfg[ok].value_counts()) >= 2)
    if not test.any():
        sys.exit(f"{args.sweep}: no configuration has two unflagged loads, so none is held out. Fix: use it with "
                 "--predict from another sweep")
    t0 = time.perf_counter()
    model = fit(args.config, runs[~test], args)
    print(f"\nfit on {int((~test).sum())} runs ({args.config}, {sampled_with(model)}) in "
          f"{time.perf_counter() - t0:.0f} s: {model.diagnostics_text()}")
    held = runs[test].reset_index(drop=True)
    draws = model.predict_draws(held[CONDITION_COLUMNS], max_draws=2000, seed=args.seed)
    scores = score_runs(draws.latency_pred, held["latency_mean_s"], saturated=scored_saturated(held))
    summary = summarise_scores(scores, configuration_label(held))
    print(f"held out: the highest unsaturated load of {len(held)} configurations")
    at_capacity = held["rate_rps"].to_numpy() >= AT_CAPACITY * flagged_throughput(runs, held)
    print(pd.concat([held[["run_id", "rate_rps", "latency_mean_s"]], scores[["median_s", "ape_median",
                                                                              "covered_90"]],
                     pd.Series(at_capacity, name="at_capacity")], axis=1)
          .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for label, mine in (("below capacity", ~at_capacity), ("at capacity", at_capacity)):
        if mine.any():
            print(f"  {label}: {int(mine.sum())} runs, MAPE of the median {scores['ape_median'][mine].mean():.1%}, "
                  f"{int(scores['covered_90'][mine].sum())} covered by their 90% interval")

    # 3. recommendations on all runs against the measured best
    model = fit(args.config, runs, args)
    print(f"\nfit on all {len(runs)} runs ({sampled_with(model)}): {model.diagnostics_text()}")
    prompt, output = float(runs["prompt_len"].mean()), float(runs["output_len"].mean())
    rates = sorted(runs["rate_rps"].unique())
    for rule, min_p_faster in (("default", MIN_P_FASTER), ("the expected score alone", 0.0)):
        rows = []
        for drafter in sorted(spec["drafter"].unique()):
            ks = sorted(runs.loc[runs["drafter"] == drafter, "k"].unique())
            recs = recommend_k(model, verifier=runs["verifier"].iloc[0], drafter=drafter,
                               hardware=runs["hardware"].iloc[0], dataset=runs["dataset"].iloc[0], prompt_len=prompt,
                               output_len=output, rates=rates, ks=ks, arrival_cv2=_sent_arrivals(model, runs),
                               min_p_faster=min_p_faster)
            best = measured_best(runs, drafter)
            for _, r in recs.iterrows():
                x, k = r["rate_rps"], int(r["best_k"])
                rows.append({"drafter": drafter, "rate_rps": x, "recommended_k": k, "p_best": r["p_best"],
                             "measured_best_k": int(best.loc[x]), "agree": k == int(best.loc[x]),
                             "regret": measured_latency(runs, drafter, k, x)
                             / measured_latency(runs, drafter, int(best.loc[x]), x) - 1})
        table = pd.DataFrame(rows)
        print(f"rule: {rule} (min_p_faster {min_p_faster:g})")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"recommended = measured best at {int(table['agree'].sum())} of {len(table)} (drafter, rate); mean "
              f"regret against it {table['regret'].mean():.1%} (a flagged run at its measured latency)")
    if args.predict:
        predict_other_sweep(model, args)


if __name__ == "__main__":
    main()
