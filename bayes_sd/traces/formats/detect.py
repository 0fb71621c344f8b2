"""Tell what a trace file is from its content, never from its name.

:func:`detect_format` returns one of :data:`FORMATS`:

- ``'table'``: a canonical CSV / parquet table (or the bundled long-format real data),
  read by :func:`bayes_sd.traces.io.read_table`;
- ``'guidellm_json'``, ``'guidellm_yaml'``, ``'guidellm_csv'``: GuideLLM reports;
- ``'vllm_bench'``: ``vllm bench serve`` result JSON / JSONL;
- ``'sglang'``: SGLang ``bench_serving`` JSONL;
- ``'aiperf'``: NVIDIA AIPerf ``profile_export.jsonl`` (one record per request);
  ``'aiperf_summary'``: its ``profile_export_aiperf.json`` (aggregates and the load settings, read
  with the JSONL beside it);
- ``'manifest'``: a sweep's ``manifest.json`` (:mod:`bayes_sd.traces.manifest`);
- ``'prometheus'``: a ``/metrics`` text scrape of vLLM, llama.cpp or SGLang;
- ``'vllm_log'``: a vLLM server log with speculative-decoding metric lines;
- ``'sidecar'``: a small YAML with the speculative configuration (verifier, drafter, k,
  hardware, dataset, optional per-run / per-file overrides).

Only the start of the file is read (64 KiB; a log is scanned line by line for its
metric lines). Gzip-compressed files are recognised by their magic bytes.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from ..io import table_format
from ..schema import TraceError
from .vllm_logs import LOG_MARKERS

__all__ = ["detect_format", "FORMATS"]

FORMATS = ("table", "guidellm_json", "guidellm_yaml", "guidellm_csv", "vllm_bench", "sglang", "aiperf",
           "aiperf_summary", "manifest", "prometheus", "vllm_log", "sidecar")
_HEAD = 1 << 16
_SIDECAR_KEYS = {"verifier", "drafter", "k", "hardware", "dataset", "runs", "files", "attach_to",
                 "speculative_config", "acceptance", "tool", "tool_version", "engine", "engine_version"}
_YAML_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.M)
_PROM = re.compile(r"^(# (HELP|TYPE) (vllm|llamacpp|sglang):|(vllm|llamacpp|sglang):[a-zA-Z_:]+(\{|\s))", re.M)
_SGLANG = (b'"server_info"', b'"accept_length"', b'_e2e_latency_ms"', b'"sharegpt_output_len"',
           b'"random_range_ratio"')
_VLLM = (b'"endpoint_type"', b'"tokenizer_id"', b'"burstiness"', b'_e2el_ms"', b'"request_goodput')


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _head(path: Path) -> bytes:
    try:
        with _open(path) as fh:
            return fh.read(_HEAD)
    except (OSError, EOFError) as e:
        raise TraceError(str(path), None, f"cannot read the file ({e})", "re-copy the complete file") from None


def _log_lines(path: Path) -> bool:
    try:
        with _open(path) as fh:
            for raw in fh:
                if any(m.encode() in raw for m in LOG_MARKERS):
                    return True
    except (OSError, EOFError):
        return False
    return False


def _unknown(src: str, what: str) -> TraceError:
    return TraceError(src, None, f"cannot tell what this file is from its content ({what})",
                      "give a GuideLLM report (JSON/YAML/CSV), a `vllm bench serve` result JSON, an SGLang "
                      "bench_serving JSONL, an AIPerf profile_export.jsonl, a /metrics scrape (vLLM, llama.cpp, "
                      "SGLang), a vLLM log, a sidecar YAML, a sweep manifest.json, or a canonical CSV/parquet table "
                      "(see `bayes-sd ingest --help`)")


def detect_format(path) -> str:
    """The format of ``path`` (one of :data:`FORMATS`), from its first bytes."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise TraceError(src, None, "file not found", "check the path")
    head = _head(path)
    if not head.strip():
        raise TraceError(src, None, "the file is empty", "give the benchmark's output file")
    if head[:4] == b"PAR1":
        return "table"
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body[:1] in (b"{", b"["):
        if b'"bayes_sd_manifest"' in head:
            return "manifest"
        if b'"record_processor_id"' in head or (b'"metadata"' in head and b'"request_start_ns"' in head):
            return "aiperf"
        if b'"input_config"' in head and b'"records"' in head:
            return "aiperf_summary"
        if b'"benchmarks"' in head:
            return "guidellm_json"
        if any(m in head for m in _SGLANG):
            return "sglang"
        if any(m in head for m in _VLLM) or (b'"request_rate"' in head and b'"completed"' in head):
            return "vllm_bench"
        raise _unknown(src, "JSON without the keys of a GuideLLM report, a vLLM or an SGLang result")
    text = head.decode("utf-8", errors="replace")
    first = text.splitlines()[0] if text.splitlines() else ""
    if _PROM.search(text):
        return "prometheus"
    if any(m in text for m in LOG_MARKERS):
        return "vllm_log"
    if first.startswith(("Run Info,", '"Run Info",')) or ("Benchmark" in first and first.count(",") > 10
                                                         and "Request Latency" in first):
        return "guidellm_csv"
    keys = set(_YAML_KEY.findall(text))
    if "benchmarks" in keys and ("metadata" in keys or "args" in keys or "config" in keys or "type_" in text):
        return "guidellm_yaml"
    if "," not in first and "benchmarks" not in keys and (keys & (_SIDECAR_KEYS - {"runs", "files", "attach_to"})
                                                          or (keys and keys <= _SIDECAR_KEYS)):
        return "sidecar"
    if "\x00" not in text and ("," in first or "\t" in first):
        return "table"
    if "\x00" not in text and _log_lines(path):
        return "vllm_log"
    if table_format(path) is not None:  # let the table reader say what is wrong with it
        return "table"
    raise _unknown(src, "not JSON, YAML, CSV, parquet, a Prometheus scrape or a vLLM log")
