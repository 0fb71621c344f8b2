"""``bayes-sd recommend``: choose the draft length per load and export a vLLM config."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_sd.cli.common import (
    HelpFormatter,
    add_workload_flags,
    floats,
    output_flags,
    say,
    warn,
    warn_if_unconverged,
    workload_loads,
)

__all__ = ["add_parser", "run"]

EPILOG = """\
For every load, each k in 0..k_max is scored over posterior draws (never at the posterior
mean) and the best is reported with its latency (90% interval), P(k is best), the expected
regret of the choice (regret_se: its Monte Carlo error), the speedup versus k = 0 and
P(speculation is slower). best_k = 0 means: do not enable speculation at that load. A smaller
k whose score is within two Monte Carlo standard errors of the best is chosen instead: the
draws cannot tell them apart, and the choice should not flip with the seed.

Objectives: mean (E[mean latency]), p90 (E[per-request p90]), cvar (CVaR over draws of the
mean latency, risk-averse; --cvar-alpha), slo (E[fraction of requests within --slo-s]),
goodput (E[requests/s within --slo-s]). The latency objectives cap each draw at
--latency-cap-s (default: ten times the best k's median latency at that load), so a draw
past saturation costs the cap instead of making every score infinite.

--vllm-config writes {"speculative_config": ..., "max_num_seqs": ..., "serve_args": [...]}:
a fixed num_speculative_tokens, or vLLM's num_speculative_tokens_per_batch_size ranges
[start_bs, end_bs, k] covering batch sizes 1..--max-num-seqs when k changes with load
(batch size = predicted requests in flight); speculative_config is null when k = 0 everywhere.
A schedule costs TPOT by itself in vLLM (+6.6% at 2 requests, +21.6% at 189, k = 0
everywhere): when changing k with load gains less than that over the best static k, every
export serves that static k, and "schedule_check" says why.
--trtllm-config writes TensorRT-LLM's speculative_config with draft_len_schedule (keys are
batch-size upper bounds); --sglang-config the launch arguments of a static chain
(SGLang has no batch-size schedule).

Example:
  bayes-sd recommend posterior.nc --verifier llama3.1-8b --drafter eagle3-small --hardware H100 \\
      --dataset chat --prompt-len 512 --output-len 256 --rate-rps 5,20,40,60 \\
      --out recs.csv --vllm-config vllm.json --method eagle3 --drafter-model org/eagle3-head
"""

def run(args: argparse.Namespace) -> int:
    from bayes_sd._io import write_json
    from bayes_sd.model import LatencyModel
    from bayes_sd.recommend import (
        MAX_NUM_SEQS,
        chosen_rows,
        evaluate_k,
        fitted_batch_cap,
        guess_method,
        schedule_check,
        sglang_args,
        static_recommendations,
        trtllm_config,
        vllm_config,
    )
    from bayes_sd.traces import write_table

    rates, concs = workload_loads(args)
    if args.objective in ("slo", "goodput") and args.slo_s is None:
        raise ValueError(f"--objective {args.objective} needs --slo-s SECONDS")
    inputs = [Path(args.posterior).resolve()]
    outs = [o for o in (args.out, args.vllm_config, args.trtllm_config, args.sglang_config) if o]
    for out in outs:
        if Path(out).resolve() in inputs:
            raise ValueError(f"refusing to overwrite an input file: {out}")
    if len({Path(o).resolve() for o in outs}) < len(outs):
        raise ValueError("--out, --vllm-config, --trtllm-config and --sglang-config must name different files")
    model = LatencyModel.load(args.posterior)
    warn_if_unconverged(args.command, model)
    table = evaluate_k(model, verifier=args.verifier, drafter=args.drafter, hardware=args.hardware,
                       dataset=args.dataset, prompt_len=args.prompt_len, output_len=args.output_len,
                       rates=rates, concurrencies=concs, k_max=args.k_max,
                       ks=None if args.ks is None else floats(args.ks, "--ks"), objective=args.objective,
                       slo_s=args.slo_s, cvar_alpha=args.cvar_alpha, latency_cap_s=args.latency_cap_s,
                       max_draws=args.max_draws, seed=args.seed, arrival_cv2=args.arrival_cv2,
                       min_p_faster=args.min_p_faster, output_len_sd=args.output_len_sd)
    recs = chosen_rows(table, model)
    load_col = "rate_rps" if rates is not None else "concurrency"
    show = [load_col, "best_k", "k_measured", "utility", "latency_mean_s", "latency_q05_s", "latency_q95_s", "p_best",
            "expected_regret", "regret_se", "speedup_vs_k0", "speedup_q05", "speedup_q95", "p_slower_than_k0",
            "p_saturated", "batch_size"]
    print(f"objective: {recs['objective'].iloc[0]}; {args.verifier} + {args.drafter} on {args.hardware}, "
          f"dataset {args.dataset}, prompt {args.prompt_len:g} / output {args.output_len:g} tokens")
    if recs["k_by_chain_group"].astype(bool).any():  # an unconverged posterior whose chains found separate modes
        show.append("k_by_chain_group")
    print(recs[show].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for _, r in recs[~recs["chain_groups_agree"]].iterrows():
        warn(args.command, f"at {load_col} {r[load_col]:g} the posterior's groups of chains (modes the sampler did not "
                           f"move between) would choose k = {r['k_by_chain_group']}: the answer depends on the mode; "
                           "refit with more chains, or measure the loads and k that separate the modes")
    for _, r in recs[~recs["k_measured"]].iterrows():
        warn(args.command, f"k = {int(r['best_k'])} at {load_col} {r[load_col]:g} was never measured for this pair "
                           "on this hardware: the answer extrapolates in k (pass --ks to compare only measured k)")
    if args.out:
        write_table(recs, args.out, protect=[args.posterior])
        say(args, f"wrote {len(recs)} recommendations to {args.out}")
    engines = args.vllm_config or args.trtllm_config or args.sglang_config
    if engines:
        fitted_cap = fitted_batch_cap(model, args.verifier, args.hardware)
        max_num_seqs = args.max_num_seqs or (int(fitted_cap) if fitted_cap else MAX_NUM_SEQS)
        method = args.method or guess_method(args.drafter)
        drafter_model = args.drafter_model if args.drafter_model is not None else (
            None if method in ("ngram", "mtp", "suffix") else args.drafter)
        check = schedule_check(table) if args.objective not in ("slo", "goodput") else None
        served = recs if check is None or check["use_schedule"] else static_recommendations(table, check["static_k"])
        served.attrs = dict(recs.attrs)
        if check is not None:
            say(args, f"schedule check: {check['reason']}")
    if args.vllm_config:
        cfg = vllm_config(served, method, drafter_model, max_num_seqs=max_num_seqs)
        if check is not None:
            cfg["schedule_check"] = check
        write_json(cfg, args.vllm_config)
        what = "no speculation" if cfg["speculative_config"] is None else f"method {method}"
        say(args, f"wrote vLLM config ({what}, {len(cfg['schedule'])} batch-size range(s)) to {args.vllm_config}")
    if args.trtllm_config:
        cfg = trtllm_config(served, method, drafter_model, max_num_seqs=max_num_seqs)
        write_json(cfg, args.trtllm_config)
        say(args, f"wrote TensorRT-LLM speculative_config to {args.trtllm_config}")
    if args.sglang_config:
        k = int(check["static_k"]) if check is not None else int(served["best_k"].mode().iloc[0])
        measured = bool(table.loc[table["k"] == k, "k_measured"].iloc[0]) or k == 0
        write_json({"k": k, "launch_args": sglang_args(k, method, drafter_model),
                    "unmeasured_k": [] if measured else [k],
                    "posterior_converged": bool(recs.attrs["posterior"]["converged"])}, args.sglang_config)
        say(args, f"wrote SGLang launch arguments (k = {k}) to {args.sglang_config}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``recommend``; returns its parser."""
    from bayes_sd.recommend.draft_length import MIN_P_FASTER
    from bayes_sd.recommend.export import MAX_NUM_SEQS
    from bayes_sd.recommend.utility import OBJECTIVES

    p = subparsers.add_parser(
        "recommend", parents=[output_flags()], help="choose the draft length k per load and export a vLLM config",
        description="Recommend the draft length k in 0..k_max for each load by expected utility over "
                    "the posterior, with intervals, P(k is best) and expected regret.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("posterior", help="posterior file written by `bayes-sd fit`")
    p.add_argument("--verifier", required=True)
    p.add_argument("--drafter", required=True, help="drafter used for k >= 1")
    p.add_argument("--hardware", required=True)
    add_workload_flags(p)
    p.add_argument("--output-len-sd", type=float, metavar="TOKENS",
                   help="standard deviation of the output tokens: with the KV cache size the training runs record, "
                        "it sets the batch the cache holds (long requests hold it longer); default: the dataset's "
                        "training runs' spread relative to their mean, else outputs ended by EOS (sd = mean); 0 for a "
                        "benchmark that fixes the output length")
    p.add_argument("--arrival-cv2", type=float, metavar="CV2",
                   help="with --rate-rps: how regular the arrivals are, the squared coefficient of variation of the "
                        "times between them (default 1: Poisson, as most production traffic; 0: evenly spaced, as "
                        "GuideLLM's constant rate sends). Regular arrivals meet fewer others below saturation")
    p.add_argument("--min-p-faster", type=float, default=MIN_P_FASTER, metavar="P",
                   help="speculate only where the chosen k is faster than k = 0 in at least this share of the "
                        f"posterior draws (default {MIN_P_FASTER:g}; 0: the best expected objective decides alone)")
    p.add_argument("--k-max", type=int, default=8, help="largest draft length considered (default 8)")
    p.add_argument("--ks", help="the draft lengths to compare instead of 0..k-max, comma-separated (e.g. the "
                                "ones measured: 0,2,4,6); 0 is always included")
    p.add_argument("--objective", default="mean", choices=OBJECTIVES, help="what to optimise (default mean)")
    p.add_argument("--slo-s", type=float, help="latency SLO in seconds (objectives slo, goodput)")
    p.add_argument("--cvar-alpha", type=float, default=0.9, help="CVaR level for --objective cvar (default 0.9)")
    p.add_argument("--latency-cap-s", type=float, help="what a saturated draw costs the latency objectives, s "
                   "(e.g. your SLO or benchmark length; default ten times the best k's median latency per load)")
    p.add_argument("--max-draws", type=int, default=1000, help="posterior draws used (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for draw subsampling and unseen levels")
    p.add_argument("--out", help="write the recommendations table here (.csv or .parquet)")
    p.add_argument("--vllm-config", help="write vLLM serving settings here (.json)")
    p.add_argument("--trtllm-config", help="write TensorRT-LLM's speculative_config here (.json, valid YAML for "
                                           "--extra_llm_api_options)")
    p.add_argument("--sglang-config", help="write SGLang launch arguments for the static k here (.json)")
    p.add_argument("--method", help="vLLM speculative method (default: guessed from --drafter, else draft_model)")
    p.add_argument("--drafter-model", help="drafter model name/path for vLLM (default: --drafter; "
                                           "none for ngram/mtp/suffix)")
    p.add_argument("--max-num-seqs", type=int,
                   help="the server's max_num_seqs: the batch-size map covers 1..this (default: the batch cap the "
                        f"training runs of this verifier and hardware record, else {MAX_NUM_SEQS})")
    p.set_defaults(func=run)
    return p
