"""``bayes-sd ingest``: benchmark outputs or canonical tables in, one validated run table out."""

from __future__ import annotations

import argparse
import warnings

from bayes_sd.cli.common import HelpFormatter, add_label_flags, labels, output_flags, say, show_progress, warn
from bayes_sd.traces.schema import schema_help

__all__ = ["add_parser", "run", "read_inputs"]

EPILOG = f"""\
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


def read_inputs(args: argparse.Namespace, files=None):
    """``ingest_paths`` of ``files`` (default ``args.files``) with the configuration flags; its
    warnings printed once each, as one line."""
    from bayes_sd.traces import ingest_paths
    from bayes_sd.traces.formats.base import TraceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        result = ingest_paths(args.files if files is None else files, labels=labels(args), sidecar=args.sidecar,
                              progress=show_progress(args))
    for line in result.warnings:
        warn(args.command, line)
    return result


def run(args: argparse.Namespace) -> int:
    from bayes_sd.traces import write_table

    result = read_inputs(args)
    out = write_table(result.runs, args.out, protect=args.files)
    print(f"wrote {len(result.runs)} runs to {out} ({int(result.runs['saturated'].sum())} flagged saturated)")
    if args.models_out and result.models is not None and len(result.models):
        write_table(result.models, args.models_out, protect=args.files)
        say(args, f"wrote {len(result.models)} model rows to {args.models_out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``ingest``; returns its parser."""
    p = subparsers.add_parser("ingest", parents=[output_flags()], help="turn trace files into a canonical run table",
                              description="Read trace files, validate them, aggregate requests into run "
                                          "statistics and write the canonical run table.",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("files", nargs="+", help="trace files (CSV, parquet, or bundled long-format real data)")
    p.add_argument("--out", required=True, help="output run table: .csv or .parquet")
    p.add_argument("--models-out", help="also write the models table found among the inputs here")
    add_label_flags(p)
    p.set_defaults(func=run)
    return p
