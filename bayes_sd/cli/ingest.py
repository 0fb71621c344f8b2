"""``bayes-sd ingest``: benchmark outputs or canonical tables in, one validated run table out."""

from __future__ import annotations

import argparse

from bayes_sd.cli.common import (
    HelpFormatter,
    add_label_flags,
    labels,
    output_flags,
    read_traces,
    saturation_options,
    say,
    show_progress,
)
from bayes_sd.traces.schema import schema_help

__all__ = ["add_parser", "run", "read_inputs"]

EPILOG = f"""\
Inputs (files, folders, globs), recognised from their content, not their names:
  GuideLLM reports            JSON, YAML (every schema generation) or CSV
  vllm bench serve results    JSON / JSONL, with or without --save-detailed
  SGLang bench_serving        JSONL
  AIPerf                      profile_export.jsonl (load read from profile_export_aiperf.json beside it)
  /metrics scrapes            vLLM and llama.cpp speculative-decoding counters, SGLang's acceptance gauge,
                              taken before and after a run (acceptance = the delta)
  vLLM server logs            SpecDecoding metrics lines; a synthetic rejection_sample_method marks the
                              run's acceptance as pinned
  canonical tables            runs / requests / models, CSV or parquet; the long-format data/real/ files
  sidecar YAML                verifier, drafter, k, hardware, dataset (acceptance, tool, engine and
                              their versions), per-run overrides (runs:) and per-file ones (files:,
                              names or glob patterns)

A folder is read whole. With a manifest.json (written by a sweep driver) its done points are
ingested: each point's report with the point's configuration (load checked against the report),
its metrics_before / metrics_after scrapes giving the run's acceptance, the tool and engine
versions, the point's id as run id. Without one, every file in the folder (hidden ones skipped),
configured by the sidecar's files: section; scrapes are matched to runs by time (--attach-to or
a manifest when ambiguous). Benchmark files do not record the speculative configuration: it is
taken from their labels/metadata when present, else from --verifier/--drafter/--k/--hardware/
--dataset or the sidecar. Runs whose acceptance the engine pinned (acceptance: pinned, or a vLLM
synthetic rejection sampler) keep it only in pinned_acceptance_length: cost-only data.

Saturated runs are flagged and kept out of the steady-state fit, each configuration judged
against its own light load: rate shortfall (achieved < 0.9 x offered), a latency trend still
rising at the end of the run, latency or TTFT growing past 3 / (1 - rho) of the lightest run's
(rho = throughput / the configuration's highest), TTFT growing 5x faster than TPOT, or (closed
loop) no throughput gained from more streams. A run at a third of its configuration's capacity
or less is never flagged. Overrides: --no-saturation-check, --keep-run ID, --drop-run ID
(docs/ingest.md). Without a models table among the inputs one is built from the bundled
catalogue for the verifiers and drafters it knows (--models-out writes it). Input files are
never modified; the output is written atomically.

{schema_help("requests")}

{schema_help("runs")}

{schema_help("models")}

Examples:
  bayes-sd ingest sweep.json --out runs.csv                          # GuideLLM with --label's
  bayes-sd ingest rate_*.json --sidecar spec.yaml --out runs.csv     # vllm bench, one file per rate
  bayes-sd ingest sweep_dir/ --out runs.csv --models-out models.csv  # a folder, with or without manifest
  bayes-sd ingest sweep_dir/ --drop-run eagle-k4@rate-16 --keep-run eagle-k4@rate-8 --out runs.csv
  bayes-sd ingest requests.parquet runs_meta.csv --out runs.csv
  bayes-sd ingest data/real/speculators_qwen38_27b_b200.csv --out b200_runs.parquet
"""


def read_inputs(args: argparse.Namespace, files=None):
    """``ingest_paths`` of ``files`` (default ``args.files``) with the configuration flags; its
    warnings printed once each, as one line."""
    return read_traces(args.command, args.files if files is None else files, labels=labels(args),
                       sidecar=args.sidecar, progress=show_progress(args), **saturation_options(args))


def run(args: argparse.Namespace) -> int:
    from bayes_sd.traces import write_table

    result = read_inputs(args)
    inputs = list(args.files) + list(result.formats)  # files inside input folders too
    out = write_table(result.runs, args.out, protect=inputs)
    print(f"wrote {len(result.runs)} runs to {out} ({int(result.runs['saturated'].sum())} flagged saturated)")
    if args.models_out and result.models is not None and len(result.models):
        write_table(result.models, args.models_out, protect=inputs)
        say(args, f"wrote {len(result.models)} model rows to {args.models_out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``ingest``; returns its parser."""
    p = subparsers.add_parser("ingest", parents=[output_flags()], help="turn trace files into a canonical run table",
                              description="Read trace files, validate them, aggregate requests into run "
                                          "statistics and write the canonical run table.",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("files", nargs="+", help="trace files or folders (benchmark outputs, scrapes, logs, tables, "
                   "a sidecar; a sweep folder with or without manifest.json)")
    p.add_argument("--out", required=True, help="output run table: .csv or .parquet")
    p.add_argument("--models-out", help="also write the models table (given among the inputs, else from the "
                   "bundled catalogue) here")
    add_label_flags(p)
    p.set_defaults(func=run)
    return p
