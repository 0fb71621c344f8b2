"""How far the model can be trusted, on data it was not shaped on: out-of-family fleets (and, rarely,
the frozen test set), held-out splits, scores that cannot flatter, and the decisions it makes.

    python bench/calibration.py [--configs default,moe_roofline] [--fleets 1-5 | --frozen]
                                [--splits highest_loads,leave_one_pair_out,leave_one_k_out,one_k_measured,
                                          one_k_per_drafter]
                                [--max-splits 2] [--draws 500] [--tune 500] [--chains 2] [--start plausible]
                                [--sampling short|main] [--retries N]
                                [--batch-cap known|unknown] [--kv-cache known|unknown]
                                [--per-position kept|dropped]
                                [--run-se autocorrelation|independent]
                                [--decisions] [--decision-seeds 5] [--out DIR]

Data: SYNTHETIC fleets of bayes_sd.evaluation.fleets, a simulator written independently of the
model's closed form (roofline pass costs, FIFO admission, chunked prefill, MoE routing imbalance,
per-request acceptance decaying with position, EOS lengths, per-run systematic factors). The frozen
set (data/frozen, `--frozen`) is scored only when a change is ready: say so wherever its figures go.

Each server's batch cap (max_num_seqs, from the fleet's settings: a setting whoever ran the benchmark
knows) goes to the fits and predictions unless `--batch-cap unknown`, and its KV cache size
(kv_cache_tokens: vLLM logs it at start; the fleets' truth records it, the frozen set's does not) unless
`--kv-cache unknown`: requests the KV cache cannot hold wait, as for a slot. The fleets' runs carry
vLLM-style per-position acceptance (`per_position_acceptance`; the frozen set's do not) unless
`--per-position dropped`, and the standard error of their mean latency from their requests'
autocorrelation (`latency_se_s`; the frozen set's do not) unless `--run-se independent`
(`sd / sqrt(n)`). A closed loop flagged saturated
is scored on its finite latency, an open loop flagged saturated as infinite (scoring.scored_saturated).

Scores (bayes_sd.evaluation.scoring), per split kind, with 90% cluster-bootstrap intervals (cluster:
fleet x configuration): MAPE of the predictive median and of the predictive mean (and the share of
finite runs whose predictive mean is infinite), coverage of the 50/80/90/95% predictive intervals,
CRPS (saturated draws and runs capped at 10x the largest finite latency), Brier score of
P(saturated), PIT's distance from uniform, per-request p90/p99 error; for runs with speculation, the
acceptance length's error, 90% coverage and relative width (with the fit's run-to-run scatter; the
figures of the one-k splits). Each held-out run is predicted
twice: at the workload's training mean lengths and configured load, and at the run's own realised
lengths and the load its requests saw (`in_flight_seen`: a closed loop that drains at the end saw fewer
streams than configured).

`--decisions`: fitted on each whole fleet, `recommend_k` (mean latency, k in 0..7) per (pair, load)
of the fleet's ground truth, by two rules on the same fits (the default: capped latency, a smaller k
within two Monte Carlo errors preferred; and the uncapped best score): mean regret against the
simulated best k, the share of conditions where speculation was chosen while at least 5% slower than
k = 0, and the share where the chosen k is the same across `--decision-seeds` fits with different
sampling seeds. `--splits none` runs the decisions alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line  # noqa: E402

from bayes_sd._stats import convergence_text  # noqa: E402
from bayes_sd.demo import demo_sampling  # noqa: E402
from bayes_sd.evaluation.fleets import load_frozen, random_fleet  # noqa: E402
from bayes_sd.evaluation.scoring import (  # noqa: E402
    new_run_acceptance,
    score_runs,
    scored_saturated,
    summarise_scores,
)
from bayes_sd.evaluation.splits import SPLITS, configuration_label  # noqa: E402
from bayes_sd.model import ConvergenceWarning, LatencyModel  # noqa: E402
from bayes_sd.model.conditions import CONDITION_COLUMNS  # noqa: E402
from bayes_sd.model.fit_data import closed_loop_load, observed_acceptance  # noqa: E402
from bayes_sd.model.sampling import sampled_attempts  # noqa: E402
from bayes_sd.recommend import Objective, recommend_k  # noqa: E402
from bayes_sd.traces import write_table  # noqa: E402


def seeds(text: str) -> list[int]:
    """``1-5`` or ``1,3,7`` -> list of ints."""
    if "-" in text and "," not in text:
        a, b = (int(x) for x in text.split("-"))
        return list(range(a, b + 1))
    return [int(x) for x in text.split(",") if x.strip()]


def fit(config: str, runs: pd.DataFrame, models: pd.DataFrame, args, seed: int) -> LatencyModel:
    """One fit: ``--draws``, ``--tune``, ``--chains``, ``--start``, or with ``--sampling main`` the main job's
    settings for ``config`` (its ``[sampling]`` table, trees capped at depth 6, one retry); ``--retries``
    replaces the number of retries (``LatencyModel.fit``'s policy: more chains, pooled, where only ESS fell short)."""
    if args.sampling == "main":
        settings = demo_sampling(config)
    else:
        settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "start": args.start}
    if args.retries is not None:
        settings["retries"] = args.retries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LatencyModel(config).fit(runs, models=models, random_seed=seed, progressbar=False, **settings)


def training_lengths(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The test conditions at their workload's training mean lengths (the run's own where the
    workload was not trained on)."""
    means = train.groupby(["verifier", "dataset"])[["prompt_len", "output_len"]].mean()
    cond = test[CONDITION_COLUMNS].copy()
    key = pd.MultiIndex.from_frame(test[["verifier", "dataset"]])
    for col in ("prompt_len", "output_len"):
        cond[col] = means[col].reindex(key).to_numpy()
        cond[col] = cond[col].fillna(test[col])
    return cond


def with_batch_caps(runs: pd.DataFrame, truth: pd.DataFrame, kv_cache: bool = True) -> pd.DataFrame:
    """The runs with their server's batch cap (``max_num_seqs``) and, where the truth table records it and
    ``kv_cache``, its KV cache size (``kv_cache_tokens``), from the fleet's settings: settings the person who
    ran the benchmark knows (vLLM logs both at start), not outcomes."""
    recorded = "kv_cache_tokens" in truth and truth["kv_cache_tokens"].notna().all()
    settings = ["max_num_seqs", *(["kv_cache_tokens"] if kv_cache and recorded else [])]
    keys = ["source", "hardware", "verifier", "dataset"]
    caps = truth.drop_duplicates(keys)[keys + settings]
    out = runs.drop(columns=settings, errors="ignore").merge(caps, on=keys, how="left")
    if len(out) != len(runs) or out["max_num_seqs"].isna().any():
        raise ValueError("a run's server has no batch cap in the truth table")
    return out


def score_split(model: LatencyModel, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> pd.DataFrame:
    test = test.reset_index(drop=True)
    saturated = scored_saturated(test)
    out = []
    # realised: the run's own lengths and the load its requests saw (a drained closed loop saw fewer streams)
    realised = test[CONDITION_COLUMNS].assign(concurrency=closed_loop_load(test).fillna(test["concurrency"]))
    for lengths, cond in (("realised", realised), ("training", training_lengths(train, test))):
        d = model.predict_draws(cond.reset_index(drop=True), max_draws=1000, seed=seed)
        s = score_runs(d.latency_pred, test["latency_mean_s"], saturated=saturated,
                       p90_draws=d.latency_p90, p90_observed=test.get("latency_p90_s"),
                       p99_draws=d.latency_p99, p99_observed=test.get("latency_p99_s"),
                       tau_draws=new_run_acceptance(model.idata.posterior, d.acceptance_length, seed),
                       tau_observed=observed_acceptance(test)[0], seed=seed)
        out.append(s.assign(lengths=lengths, run_id=test["run_id"].to_numpy(),
                            cluster=(test["source"].astype(str) + "|" + configuration_label(test)).to_numpy()))
    return pd.concat(out, ignore_index=True)


#: decision rules compared on the same fits: the default, and the best expected uncapped mean latency
#: (infinite where a draw saturates) however slight its lead
RULES = {"default": {}, "best_expected": {"min_p_faster": 0.0}, "faster_p80": {"min_p_faster": 0.8},
         "uncapped_best_score": {"objective": Objective("mean_uncapped", lambda d, x, o: d["latency"]),
                                 "resolution": 0.0, "min_p_faster": 0.0}}


def decisions(config: str, runs, models, truth, args, fleet: int) -> pd.DataFrame:
    """Per (pair, load) of the truth table and decision rule: the recommended k of each fit, its true regret."""
    rows = []
    spec = truth[truth["drafter"] != "none"]
    for s in range(args.decision_seeds):
        t0 = time.perf_counter()
        model = fit(config, runs, models, args, seed=1000 * fleet + s)
        sampled = len(sampled_attempts(model.fit_attempts))
        print(f"  {config} decisions fit, seed {s}: {time.perf_counter() - t0:.0f} s, {sampled} attempt(s), "
              f"{convergence_text(model.diagnostics())}", flush=True)
        for (cond, verifier, drafter, hardware, dataset, lt), g in spec.groupby(
                ["condition", "verifier", "drafter", "hardware", "dataset", "load_type"], sort=False):
            mine = runs[(runs["verifier"] == verifier) & (runs["hardware"] == hardware) & (runs["dataset"] == dataset)]
            if mine.empty:
                continue
            col = "rate_rps" if lt == "rate" else "concurrency"
            loads = sorted(g[col].unique())
            for rule, options in RULES.items():
                recs = recommend_k(model, verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset,
                                   prompt_len=float(mine["prompt_len"].mean()),
                                   output_len=float(mine["output_len"].mean()), k_max=int(g["k"].max()),
                                   max_draws=500, seed=s, **options,
                                   **({"rates": loads} if lt == "rate" else {"concurrencies": loads}))
                for _, r in recs.iterrows():
                    t = g[g[col] == r[col]].set_index("k")["latency_mean_s"]
                    best = t.min()
                    if not np.isfinite(best):  # every k past capacity: no choice to score
                        continue
                    chosen = t.get(int(r["best_k"]), np.nan)
                    rows.append({"fleet": fleet, "seed": s, "rule": rule, "condition": f"{cond}|{drafter}|{r[col]:g}",
                                 "best_k": int(r["best_k"]), "true_best_k": int(t.idxmin()),
                                 "regret": chosen / best - 1, "regret_k0": t.loc[0] / best - 1,
                                 "p_slower_than_k0": float(r["p_slower_than_k0"]),
                                 "slower_speculation": bool(r["best_k"] > 0 and chosen >= 1.05 * t.loc[0]),
                                 "k0_best": bool(t.idxmin() == 0), "converged": bool(model.diagnostics()["converged"]),
                                 "chain_groups_agree": bool(r["chain_groups_agree"])})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="default,moe_roofline")
    ap.add_argument("--fleets", default="1-5", help="out-of-family fleet seeds: 1-5 or 1,4,9 (default 1-5)")
    ap.add_argument("--frozen", action="store_true", help="score the FROZEN test set instead (rarely)")
    ap.add_argument("--splits", default=",".join(SPLITS))
    ap.add_argument("--max-splits", type=int, default=2, help="splits of each kind per fleet (default 2)")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--sampling", choices=["short", "main"], default="short",
                    help="short: --draws, --tune, --chains, --start (default); main: the main job's settings for "
                         "each configuration (bayes_sd.demo.demo_sampling: its [sampling] table, depth <= 6, one "
                         "retry), the fits a user gets, several times longer")
    ap.add_argument("--retries", type=int,
                    help="sample an unconverged fit again up to this many times (default: none for short, the main "
                         "job's one for main; `bayes-sd fit` retries twice)")
    ap.add_argument("--start", choices=["jittered", "plausible"], default="jittered",
                    help="where chains start (LatencyModel.fit's start): nutpie's jittered prior centres (default) "
                         "or implausible starts replaced")
    ap.add_argument("--batch-cap", choices=["known", "unknown"], default="known",
                    help="give the fits and predictions each server's batch cap (max_num_seqs; default) or not")
    ap.add_argument("--kv-cache", choices=["known", "unknown"], default="known",
                    help="give them each server's KV cache size too (kv_cache_tokens, where the fleet's truth "
                         "records it; default) or not")
    ap.add_argument("--per-position", choices=["kept", "dropped"], default="kept",
                    help="keep the runs' per-position acceptance (default) or drop it (acceptance length only)")
    ap.add_argument("--run-se", choices=["autocorrelation", "independent"], default="autocorrelation",
                    help="each run mean's standard error from its requests' autocorrelation (default) or sd / sqrt(n)")
    ap.add_argument("--decisions", action="store_true", help="also the decision benchmark")
    ap.add_argument("--decision-seeds", type=int, default=5)
    ap.add_argument("--out", default="calibration_out", help="folder for the per-run and per-decision CSVs")
    ap.add_argument("--summary-out", help="also write the summary (config, kind, lengths, figure, estimate, low, "
                                          "high, runs, measured, commit) here, e.g. data/frozen/results.csv")
    args = ap.parse_args()
    print(machine_line("calibration"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.frozen:
        runs_all, models_all, truth_all = load_frozen()
        print("FROZEN TEST SET (data/frozen): scored only when a change is ready")
        fleets = {i: s for i, s in enumerate(sorted(runs_all["source"].unique()))}
    else:
        fleets = dict.fromkeys(seeds(args.fleets))
    rng = np.random.default_rng(0)
    per_run, per_decision, fits = [], [], []
    for fleet, source in fleets.items():
        t0 = time.perf_counter()
        if args.frozen:
            runs, truth = runs_all[runs_all["source"] == source], truth_all[truth_all["source"] == source]
            models = models_all
        else:
            runs, models, truth = random_fleet(fleet)
        print(f"fleet {fleet}: {len(runs)} runs ({time.perf_counter() - t0:.0f} s to make)", flush=True)
        runs = runs.reset_index(drop=True)
        runs = (with_batch_caps(runs, truth, kv_cache=args.kv_cache == "known") if args.batch_cap == "known"
                else runs.assign(max_num_seqs=np.nan))
        if args.run_se == "independent":
            runs = runs.drop(columns="latency_se_s", errors="ignore")
        if args.per_position == "dropped":
            runs = runs.drop(columns="per_position_acceptance", errors="ignore")
        chosen = {}  # the same splits for every configuration
        for kind in [k for k in args.splits.split(",") if k and k != "none"]:
            splits = SPLITS[kind](runs)
            if len(splits) > args.max_splits:
                splits = [splits[i] for i in sorted(rng.choice(len(splits), args.max_splits, replace=False))]
            chosen[kind] = splits
        for config in args.configs.split(","):
            for kind, splits in chosen.items():
                for sp in splits:
                    if sp.test.empty:
                        continue
                    t1 = time.perf_counter()
                    model = fit(config, sp.train, models, args, seed=fleet)
                    d = model.diagnostics()
                    seconds = time.perf_counter() - t1
                    if not d["converged"]:  # where the chains disagree, and whether the predictions care
                        a = model.chain_agreement()
                        d.update(chain_groups=len(a["groups"]), worst=a["parameter"],
                                 latency_spread_max=a["latency_spread_max"],
                                 latency_spread_median=a["latency_spread_median"])
                    fits.append({"config": config, "fleet": fleet, "kind": kind, "split": sp.label,
                                 "seconds": seconds, **d})
                    s = score_split(model, sp.train, sp.test, seed=fleet)
                    per_run.append(s.assign(config=config, fleet=fleet, kind=kind, split=sp.label))
                    print(f"  {config} {kind} [{sp.label}]: {len(sp.test)} runs held out, fit "
                          f"{time.perf_counter() - t1:.0f} s, R-hat {d['max_rhat']:.3f}", flush=True)
            if args.decisions:
                per_decision.append(decisions(config, runs, models, truth, args, fleet).assign(config=config))
    scores = pd.concat(per_run, ignore_index=True) if per_run else pd.DataFrame(
        columns=["config", "kind", "lengths", "cluster", "saturated"])
    scores.to_csv(out / "scores.csv", index=False)
    pd.DataFrame(fits).to_csv(out / "fits.csv", index=False)
    if fits:
        print(f"\nfits: {len(fits)}, converged {sum(f['converged'] for f in fits)}, max R-hat "
              f"{max(f['max_rhat'] for f in fits):.3f}, median {np.median([f['seconds'] for f in fits]):.0f} s each")
        split = [f for f in fits if not f["converged"]]
        if split:
            n_split = sum(f["chain_groups"] > 1 for f in split)
            print(f"unconverged fits: chains in separate groups (modes) in {n_split} of {len(split)}; "
                  "the fitted runs' mean latency differs between chains by a median "
                  f"{np.median([f['latency_spread_median'] for f in split]):.1%} per fit (largest "
                  f"{max(f['latency_spread_max'] for f in split):.1%})")
    summaries = []
    for (config, kind, lengths), g in scores.groupby(["config", "kind", "lengths"], sort=False):
        table = summarise_scores(g.reset_index(drop=True), g["cluster"].to_numpy())
        print(f"\n{config} | {kind} | {lengths} lengths | {len(g)} runs, {g['saturated'].sum()} measured saturated")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        summaries.append(table.assign(config=config, kind=kind, lengths=lengths))
    if args.summary_out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
        summary = pd.concat(summaries, ignore_index=True).assign(measured=f"{dt.date.today():%Y-%m-%d}", commit=commit)
        cols = ["config", "kind", "lengths", "figure", "estimate", "low", "high", "runs", "measured", "commit"]
        write_table(summary[cols], args.summary_out)
        print(f"summary -> {args.summary_out}")
    if per_decision:
        dec = pd.concat(per_decision, ignore_index=True)
        dec.to_csv(out / "decisions.csv", index=False)
        for (config, rule), g in dec.groupby(["config", "rule"], sort=False):
            stable = g.groupby(["fleet", "condition"])["best_k"].nunique().eq(1).mean()
            fin = g["regret"][np.isfinite(g["regret"])]
            fits_ok = g.drop_duplicates(["fleet", "seed"])["converged"]
            print(f"\ndecisions, {config}, rule {rule} ({int(fits_ok.sum())} of {len(fits_ok)} fits converged): "
                  f"{g['condition'].nunique()} conditions x {g['seed'].nunique()} seeds; "
                  f"no speculation truly best in {g.drop_duplicates(['fleet', 'condition'])['k0_best'].mean():.0%}; "
                  f"mean regret {fin.mean():.2%} over the choices that stay finite (max {fin.max():.1%}), a k past "
                  f"capacity chosen in {np.isinf(g['regret']).mean():.1%}; speculation chosen while "
                  f">= 5% slower in {g['slower_speculation'].mean():.1%}; same k across seeds in {stable:.0%}; "
                  f"the same k in every group of chains of its fit in {g['chain_groups_agree'].mean():.0%}")


if __name__ == "__main__":
    main()
