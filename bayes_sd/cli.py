"""The ``bayes-sd`` command line.

Every subcommand turns a user error (bad file, unknown name, bad option) into one clear
line on stderr and a non-zero exit, never a traceback. ``BAYES_SD_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bayes_sd.pipeline import MAIN_MODEL
from bayes_sd.traces.schema import TraceError, schema_help

INGEST_EPILOG = f"""\
Input files may be benchmark outputs as written: GuideLLM reports (JSON, YAML or CSV; every
schema generation), `vllm bench serve` results (with or without --save-detailed), SGLang
bench_serving JSONL, vLLM Prometheus /metrics scrapes (before and after a run) and vLLM
server logs (SpecDecoding metrics lines); or canonical tables (CSV or parquet), or the
long-format real measurement files bundled in data/real/. The format is recognised from the
content, not the file name. Benchmark files do not record the speculative configuration: it
is taken from their labels/metadata when present, else from --verifier/--drafter/--k/
--hardware/--dataset or a sidecar YAML (keys verifier, drafter, k, hardware, dataset).
A requests table is aggregated into run statistics (warm-up / cool-down trimmed) using the
run-metadata rows of a runs table given alongside it (same run_id). Saturated runs are
flagged (achieved rate well below offered, latency trending up over the run, or requests
waiting for admission). Input files are never modified; the output is written atomically.

{schema_help("requests")}

{schema_help("runs")}

{schema_help("models")}

Example:
  bayes-sd ingest requests.parquet runs_meta.csv --out runs.csv
  bayes-sd ingest data/real/speculators_qwen38_27b_b200.csv --out b200_runs.parquet
"""


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _labels(args) -> dict:
    return {"verifier": args.verifier, "drafter": args.drafter, "k": args.k, "hardware": args.hardware,
            "dataset": args.dataset, "attach_to": args.attach_to}


def _ingest(args):
    """ingest_paths with the speculative configuration flags; its warnings printed once each."""
    import warnings

    from bayes_sd.traces import ingest_paths
    from bayes_sd.traces.formats.base import TraceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        result = ingest_paths(args.files, labels=_labels(args), sidecar=args.sidecar)
    for line in result.warnings:
        print(f"bayes-sd ingest: warning: {line}", file=sys.stderr)
    return result


def _cmd_ingest(args) -> int:
    from bayes_sd.traces import write_table

    result = _ingest(args)
    out = write_table(result.runs, args.out, protect=args.files)
    print(f"wrote {len(result.runs)} runs to {out} ({int(result.runs['saturated'].sum())} flagged saturated)")
    if args.models_out and result.models is not None and len(result.models):
        write_table(result.models, args.models_out, protect=args.files)
        print(f"wrote {len(result.models)} model rows to {args.models_out}")
    return 0


def _cmd_summary(args) -> int:
    from bayes_sd.summary import runs_summary

    runs = _ingest(args).runs
    print(runs_summary(runs).to_string(index=False))
    return 0


def _cmd_demo(args) -> int:
    from bayes_sd.pipeline import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=not args.no_progress, nuts_sampler=args.sampler,
             model_config=args.model)
    return 0


def _cmd_fit(args) -> int:
    from bayes_sd.model import LatencyModel
    from bayes_sd.traces import ingest_paths

    runs = ingest_paths(args.runs).runs
    models = ingest_paths(args.models).models if args.models else None
    model = LatencyModel(args.config)
    model.fit(runs, models=models, draws=args.draws, tune=args.tune, chains=args.chains,
              nuts_sampler=args.sampler, random_seed=args.seed, progressbar=not args.no_progress)
    print(model.diagnostics_text())
    path = model.save(args.out)
    print(f"wrote posterior to {path}")
    return 0


def _cmd_predict(args) -> int:
    import pandas as pd

    from bayes_sd.model import LatencyModel

    model = LatencyModel.load(args.posterior)
    if args.conditions:
        from bayes_sd.traces import read_table, write_table

        _, cond = read_table(args.conditions)
        table = model.predict_table(cond)
        if args.out:
            write_table(table, args.out, protect=[args.conditions, args.posterior])
            print(f"wrote {len(table)} predictions to {args.out}")
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
        print(f"mean latency {row.latency_mean_s:.3f} s (90% interval {row.latency_q05_s:.3f}-{row.latency_q95_s:.3f} s); "
              f"per-request p90 {row.latency_p90_s:.3f} s, p99 {row.latency_p99_s:.3f} s; "
              f"speedup vs k=0 {row.speedup_vs_k0:.2f}x, P(slower than k=0) {row.p_slower_than_k0:.2f}; "
              f"saturation rate {row.saturation_rps:.2f} req/s")
    return 0


def _add_label_flags(p) -> None:
    g = p.add_argument_group("speculative configuration (when the files do not record it)")
    g.add_argument("--verifier", help="target model served")
    g.add_argument("--drafter", help="draft model or method ('none' without speculation)")
    g.add_argument("--k", type=int, help="draft length num_speculative_tokens (0 = none)")
    g.add_argument("--hardware", help="accelerator, e.g. H100")
    g.add_argument("--dataset", help="workload name")
    g.add_argument("--sidecar", help="YAML with verifier, drafter, k, hardware, dataset (and per-run overrides)")
    g.add_argument("--attach-to", help="run id that acceptance-only files (Prometheus, logs) belong to")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-sd",
        description="Bayesian models of speculative-decoding latency under load: ingest benchmark "
                    "traces, fit a hierarchical latency model, predict latency with uncertainty, "
                    "and choose the draft length.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="turn trace files into a canonical run table",
                       description="Read trace files, validate them, aggregate requests into run "
                                   "statistics and write the canonical run table.",
                       epilog=INGEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="trace files (CSV, parquet, or bundled long-format real data)")
    p.add_argument("--out", required=True, help="output run table: .csv or .parquet")
    p.add_argument("--models-out", help="also write the models table found among the inputs here")
    _add_label_flags(p)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("summary", help="print a per-configuration summary of run tables",
                       description="Runs per verifier/drafter/hardware, loads covered and saturated runs.")
    p.add_argument("files", nargs="+", help="run tables or trace files")
    _add_label_flags(p)
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("fit", help="fit the hierarchical latency model to a run table",
                       description="Fit the Bayesian latency model (NUTS; nutpie by default) to canonical "
                                   "runs and save the posterior, the training runs and the configuration "
                                   "to one netCDF file.")
    p.add_argument("runs", nargs="+", help="run tables (or any file `bayes-sd ingest` reads)")
    p.add_argument("--models", nargs="*", help="optional models table(s): sizes of verifiers and drafters")
    p.add_argument("--config", default="default", help="model configuration: a name in models/ or a .toml path")
    p.add_argument("--out", required=True, help="posterior file (.nc)")
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain (default 1000)")
    p.add_argument("--tune", type=int, default=1000, help="tuning steps per chain (default 1000)")
    p.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    p.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc"], help="NUTS implementation")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="predict latency for one condition or a table of conditions",
                       description="Posterior predictive latency: mean with a 90%% interval, per-request "
                                   "p90/p99, speedup versus k = 0 and P(speculation is slower).")
    p.add_argument("posterior", help="posterior file written by `bayes-sd fit`")
    p.add_argument("--verifier"), p.add_argument("--drafter", default="none"), p.add_argument("--hardware")
    p.add_argument("--dataset", default="unseen", help="workload (acceptance); an unseen one uses the population")
    p.add_argument("--k", type=int, default=0, help="draft length (0 = no speculation)")
    p.add_argument("--rate-rps", type=float, help="open-loop request rate (requests/s)")
    p.add_argument("--concurrency", type=float, help="closed-loop concurrent streams")
    p.add_argument("--prompt-len", type=float, help="mean prompt tokens")
    p.add_argument("--output-len", type=float, help="mean output tokens")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--conditions", help="table of conditions (canonical run columns): one prediction per row")
    p.add_argument("--out", help="with --conditions: write the predictions here (.csv/.parquet)")
    p.set_defaults(func=_cmd_predict)

    from bayes_sd import drafter_cli, recommend_cli, report_cli

    recommend_cli.add_parser(sub)
    drafter_cli.add_parser(sub)
    report_cli.add_parser(sub)

    p = sub.add_parser("demo", help="the main job: fit the bundled data, write the report and recommendations",
                       description="Fit the bundled real B200 runs and the synthetic fleet, and write "
                                   "DIR/posterior.nc, DIR/report.md, DIR/report.html and DIR/recommendations.csv.")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small sampling settings on the real runs and the synthetic llama3.1-8b "
                        "pairs on H100 (under 2 minutes on 2 cores; not for conclusions)")
    p.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc"], help="NUTS implementation")
    p.add_argument("--model", default=MAIN_MODEL,
                   help=f"model configuration: a name in models/ or a .toml path (default: {MAIN_MODEL}, the "
                        "roofline knee, per-sequence cost and MoE expert coverage; default is the dense base "
                        "model). A configuration's [sampling] table sets the draws it needs")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TraceError, CLIError, FileNotFoundError, ValueError, KeyError) as exc:
        if os.environ.get("BAYES_SD_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"bayes-sd {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
