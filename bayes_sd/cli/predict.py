"""``bayes-sd predict``: posterior predictive latency for one condition or a table of them."""

from __future__ import annotations

import argparse
import json

from bayes_sd.cli.common import CLIError, HelpFormatter, output_flags, say, warn_if_unconverged

__all__ = ["add_parser", "run"]

EPILOG = """\
One condition from the flags (exactly one of --rate-rps / --concurrency), or one per row of
--conditions FILE (canonical run columns: verifier, drafter, hardware, dataset, k, prompt_len,
output_len, load_type and rate_rps or concurrency; optionally max_num_seqs, the server's batch cap,
kv_cache_tokens, the tokens its KV cache holds, output_len_sd, the spread of the output tokens, which
sets the batch that cache holds (empty: outputs ended by EOS; 0: a fixed output length), arrival_cv2,
how regular an open loop's arrivals are (1 Poisson, 0 evenly spaced; used by a model fitted with
[model] arrivals = "as_recorded"), and
n_requests, the requests of the run to predict: its mean's sampling error, larger near capacity, then
widens the new-run interval latency_pred_*, and in open loop near capacity that interval is the run's,
which ends before the steady state's backlog builds up).
A verifier, drafter, hardware type or dataset the model never saw is predicted from its population,
with wider intervals.

Example:
  bayes-sd predict posterior.nc --verifier Qwen/Qwen3.8-27B --drafter dspark --hardware B200 \\
      --dataset HumanEval --k 7 --concurrency 32 --prompt-len 190 --output-len 760
  bayes-sd predict posterior.nc --conditions conditions.csv --out predictions.csv
"""


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from bayes_sd.model import LatencyModel

    model = LatencyModel.load(args.posterior)
    warn_if_unconverged(args.command, model)
    if args.conditions:
        from bayes_sd.traces import read_table, write_table

        _, cond = read_table(args.conditions)
        table = model.predict_table(cond)
        if args.out:
            write_table(table, args.out, protect=[args.conditions, args.posterior])
            say(args, f"wrote {len(table)} predictions to {args.out}")
        else:
            print(table.to_string(index=False))
        return 0
    missing = [n for n in ("verifier", "hardware", "prompt_len", "output_len") if getattr(args, n) is None]
    if missing or (args.rate_rps is None) == (args.concurrency is None):
        raise CLIError("predict needs --verifier --hardware --prompt-len --output-len and exactly one of "
                       "--rate-rps / --concurrency (or --conditions FILE)")
    cond = pd.DataFrame([{
        "verifier": args.verifier, "drafter": args.drafter or "none", "hardware": args.hardware,
        "dataset": args.dataset, "k": args.k, "prompt_len": args.prompt_len, "output_len": args.output_len,
        "load_type": "rate" if args.rate_rps is not None else "concurrency",
        "rate_rps": args.rate_rps, "concurrency": args.concurrency,
    }])
    row = model.predict_table(cond).iloc[0]
    if args.json:
        print(json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}, indent=2))
    else:
        print(f"mean latency {row.latency_mean_s:.3f} s "
              f"(90% interval {row.latency_q05_s:.3f}-{row.latency_q95_s:.3f} s); "
              f"per-request p90 {row.latency_p90_s:.3f} s, p99 {row.latency_p99_s:.3f} s; "
              f"speedup vs k=0 {row.speedup_vs_k0:.2f}x, P(slower than k=0) {row.p_slower_than_k0:.2f}; "
              f"saturation rate {row.saturation_rps:.2f} req/s")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``predict``; returns its parser."""
    p = subparsers.add_parser("predict", parents=[output_flags()],
                              help="predict latency for one condition or a table of conditions",
                              description="Posterior predictive latency: mean with a 90%% interval, per-request "
                                          "p90/p99, speedup versus k = 0 and P(speculation is slower).",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("posterior", help="posterior file written by `bayes-sd fit`")
    g = p.add_argument_group("one condition")
    g.add_argument("--verifier", help="target model")
    g.add_argument("--drafter", default="none", help="drafter (default none)")
    g.add_argument("--hardware", help="accelerator, e.g. B200")
    g.add_argument("--dataset", default="unseen", help="workload (acceptance); an unseen one uses the population")
    g.add_argument("--k", type=int, default=0, help="draft length (0 = no speculation)")
    g.add_argument("--rate-rps", type=float, help="open-loop request rate (requests/s)")
    g.add_argument("--concurrency", type=float, help="closed-loop concurrent streams")
    g.add_argument("--prompt-len", type=float, help="mean prompt tokens")
    g.add_argument("--output-len", type=float, help="mean output tokens")
    g.add_argument("--json", action="store_true", help="print JSON")
    g = p.add_argument_group("a table of conditions")
    g.add_argument("--conditions", help="table of conditions (canonical run columns): one prediction per row")
    g.add_argument("--out", help="with --conditions: write the predictions here (.csv/.parquet)")
    p.set_defaults(func=run)
    return p
