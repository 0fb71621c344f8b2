"""Canonical trace tables: schema, validation, reading / writing, aggregation, real data.

- :mod:`~bayes_sd.traces.schema`: the ``requests`` / ``runs`` / ``models`` column specs and
  :class:`TraceError` (every problem with a trace names the file, the column and the fix);
- :mod:`~bayes_sd.traces.validate`: ``validate_requests``, ``validate_runs``, ``validate_models``;
- :mod:`~bayes_sd.traces.io`: ``read_table`` (CSV / parquet, kind detected from the columns),
  ``write_table`` (atomic, never over an input);
- :mod:`~bayes_sd.traces.aggregate`: ``aggregate_runs`` (requests -> run statistics) and
  ``detect_saturation``;
- :mod:`~bayes_sd.traces.real`: ``read_real_long`` for the long-format real measurements;
- :mod:`~bayes_sd.traces.formats`: readers of GuideLLM, `vllm bench serve`, SGLang, AIPerf,
  ``/metrics`` scrapes (vLLM, llama.cpp, SGLang) and vLLM logs, detected from content;
- :mod:`~bayes_sd.traces.manifest`: the sweep manifest (which file holds which run);
- :mod:`~bayes_sd.traces.catalogue`: sizes of common verifiers and drafters (a models table);
- :mod:`~bayes_sd.traces.ingest`: ``ingest_paths``, what ``bayes-sd ingest`` runs (files, folders,
  manifests; saturation overrides).

Units everywhere: seconds, requests/s, tokens.
"""

from .aggregate import aggregate_runs, detect_saturation, fill_saturation
from .ingest import IngestResult, ingest_paths
from .io import read_table, write_table
from .real import read_real_long, real_long_to_runs
from .schema import (
    LOAD_TYPES,
    MODELS,
    NO_DRAFTER,
    REQUESTS,
    RUNS,
    TABLES,
    Column,
    TraceError,
    schema_help,
)
from .validate import empty_table, validate_models, validate_requests, validate_runs

__all__ = [
    "Column", "REQUESTS", "RUNS", "MODELS", "TABLES", "LOAD_TYPES", "NO_DRAFTER", "TraceError", "schema_help",
    "validate_requests", "validate_runs", "validate_models", "empty_table",
    "read_table", "write_table",
    "aggregate_runs", "detect_saturation", "fill_saturation",
    "read_real_long", "real_long_to_runs",
    "IngestResult", "ingest_paths",
]
