"""Readers for practitioners' benchmark outputs, turned into canonical runs.

- :mod:`.detect`: :func:`detect_format` (content-based, never the file name);
- :mod:`.guidellm` / :mod:`.guidellm_csv`: GuideLLM reports (JSON / YAML of every schema
  generation; CSV run-level rows);
- :mod:`.vllm_bench`: ``vllm bench serve`` result JSON / JSONL;
- :mod:`.sglang`: SGLang ``bench_serving`` JSONL;
- :mod:`.aiperf`: NVIDIA AIPerf ``profile_export.jsonl`` (per-request records);
- :mod:`.prometheus`: ``/metrics`` scrapes of vLLM, llama.cpp and SGLang (speculative decoding);
- :mod:`.vllm_logs`: vLLM server logs (``SpecDecoding metrics:`` lines);
- :mod:`.labels`: the speculative configuration from labels, flags and a sidecar YAML;
- :mod:`.assemble`: parsed files -> canonical runs (requests aggregated with
  :func:`~bayes_sd.traces.aggregate.aggregate_runs`).

:func:`read_format` is the single entry point of the readers: whatever goes wrong inside
a reader surfaces as :class:`~bayes_sd.traces.schema.TraceError` naming the file.
"""

from __future__ import annotations

import json

from ..schema import TraceError
from .base import Parsed, RunData, TraceWarning
from .detect import FORMATS, detect_format

__all__ = ["read_format", "detect_format", "FORMATS", "Parsed", "RunData", "TraceWarning"]


def _reader(fmt: str):
    if fmt in ("guidellm_json", "guidellm_yaml"):
        from .guidellm import read_guidellm

        return lambda p: read_guidellm(p, fmt)
    if fmt == "guidellm_csv":
        from .guidellm_csv import read_guidellm_csv

        return read_guidellm_csv
    if fmt == "vllm_bench":
        from .vllm_bench import read_vllm_bench

        return read_vllm_bench
    if fmt == "sglang":
        from .sglang import read_sglang

        return read_sglang
    if fmt == "aiperf":
        from .aiperf import read_aiperf

        return read_aiperf
    if fmt == "aiperf_summary":
        def refuse(p):
            raise TraceError(str(p), None, "this is AIPerf's aggregate file (profile_export_aiperf.json): it has no "
                             "per-request records", "give profile_export.jsonl (the aggregate file beside it is "
                             "read with it for the load setting)")

        return refuse
    if fmt == "prometheus":
        from .prometheus import read_prometheus

        return read_prometheus
    if fmt == "vllm_log":
        from .vllm_logs import read_vllm_log

        return read_vllm_log
    raise ValueError(f"no reader for format {fmt!r}")


def read_format(path, fmt: str | None = None) -> Parsed:
    """Read one benchmark output file (format detected from its content unless given)."""
    fmt = fmt or detect_format(path)
    read = _reader(fmt)
    try:
        return read(path)
    except TraceError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, ZeroDivisionError,
            RecursionError, json.JSONDecodeError) as e:  # a structure the reader did not anticipate
        raise TraceError(str(path), None, f"unexpected content for a {fmt} file ({type(e).__name__}: "
                         f"{str(e)[:120]})", "give the tool's output file unchanged; if it is, report this "
                         "file to bayes_sd") from None
