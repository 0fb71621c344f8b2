"""NVIDIA AIPerf per-request export (``profile_export.jsonl``): one JSON record per request.

A record (``MetricRecordInfo`` in ai-dynamo/aiperf ``src/aiperf/common/models/record_models.py``;
``docs/tutorials/working-with-profile-exports.md``) holds:

- ``metadata``: ``x_request_id``, ``session_num``, ``request_start_ns``, ``request_end_ns`` (wall
  clock, ``time.time_ns()``), ``benchmark_phase`` (``warmup`` or ``profiling``), ``was_cancelled``,
  ``worker_id``, ``record_processor_id``, ...; files of older AIPerf have ``timestamp_ns`` and
  ``credit_phase`` instead of ``request_start_ns`` and ``benchmark_phase``;
- ``metrics``: ``{tag: {"value": v, "unit": u}}``, among them ``time_to_first_token`` (older:
  ``ttft``), ``request_latency``, ``input_sequence_length`` and ``output_sequence_length`` (all
  generated tokens, reasoning included; else ``output_token_count``); times in the unit given
  (``ms`` as written by AIPerf; ``ns``, ``us``, ``s`` also read);
- ``error``: null, or ``{code, type, message}`` for a failed (or cancelled) request;
- ``spec_decode_acceptance`` (``--export-level records``, when the server reports per-request
  speculative decoding, e.g. vLLM ``--per-request-spec-decode-metrics``): ``engine``,
  ``num_spec_steps``, ``num_accepted_draft_tokens``, ``num_draft_tokens``, ``num_spec_tokens``,
  ``acceptance_histogram``, ``mean_acceptance_length``, ...

Request rows: send = ``request_start_ns``; first token = send + TTFT; end = send +
``request_latency`` (else ``request_end_ns``); tokens from the sequence lengths; per-request
draft / accepted tokens, verify steps and the acceptance histogram (whose summed counts give the
run's per-position shares) from ``spec_decode_acceptance``. Warm-up records are left
out, failed ones counted in ``n_errored``. TTFT is measured only for streaming runs: a file without
it is refused.

The JSONL does not record the load: it is read from the aggregate file AIPerf writes beside it
(``<stem>_aiperf.json``, ``profile_export_aiperf.json``): ``input_config.loadgen.request_rate``
(open loop) or ``concurrency`` (closed loop), and the model from
``input_config.endpoint.model_names``. Without that file the load must come from a manifest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import TraceError
from .base import Parsed, RunData, finish_requests, get, histogram_cell, load_json_objects, num, read_text

__all__ = ["read_aiperf", "summary_load"]

_TIME = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "seconds": 1.0}
_NAMES = {"start_s": "metadata.request_start_ns", "first_token_s": "metrics.time_to_first_token",
          "end_s": "metrics.request_latency", "prompt_tokens": "metrics.input_sequence_length",
          "output_tokens": "metrics.output_sequence_length", "request_id": "metadata.x_request_id"}


def _metric(rec: dict, tags: tuple, source: str, line: int, time: bool) -> float:
    for tag in tags:
        m = get(rec, "metrics", tag)
        if m is None:
            continue
        v = num(m.get("value") if isinstance(m, dict) else m, source, f"metrics.{tag}")
        if not time:
            return v
        unit = str(m.get("unit", "ms")).strip().lower() if isinstance(m, dict) else "ms"
        if unit not in _TIME:
            raise TraceError(source, f"metrics.{tag}", f"line {line}: unknown time unit {unit!r}",
                             "give the file as AIPerf wrote it (units ms, ns, us or s)")
        return v * _TIME[unit]
    return math.nan


def summary_load(path: Path, source: str) -> tuple[str, float, float, dict]:
    """(load_type, rate_rps, concurrency, recorded) from an AIPerf aggregate JSON ('' when unknown)."""
    try:
        tree = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise TraceError(str(path), None, f"not valid JSON ({e.msg})",
                         "give AIPerf's aggregate JSON unchanged") from None
    loadgen = get(tree, "input_config", "loadgen") or {}
    rate = num(loadgen.get("request_rate"), str(path), "input_config.loadgen.request_rate")
    conc = num(loadgen.get("concurrency"), str(path), "input_config.loadgen.concurrency")
    recorded = {}
    names = get(tree, "input_config", "endpoint", "model_names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        recorded["verifier"] = names[0]
    if rate > 0 and math.isfinite(rate):
        return "rate", rate, math.nan, recorded
    if conc >= 1:
        return "concurrency", math.nan, conc, recorded
    return "", math.nan, math.nan, recorded


def _summary_file(path: Path) -> Path | None:
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    for name in (f"{stem}_aiperf.json", "profile_export_aiperf.json"):
        if (path.parent / name).is_file():
            return path.parent / name
    return None


def read_aiperf(path) -> Parsed:
    """Read an AIPerf ``profile_export.jsonl`` (load from the aggregate JSON beside it when present)."""
    source = str(path)
    out = Parsed(path=source, fmt="aiperf profile export", info={"tool": "aiperf"})
    recs = load_json_objects(read_text(path), source)
    rows, errored, warmup, k_seen, engines = [], 0, 0, set(), set()
    for line, rec in enumerate(recs, 1):
        if not isinstance(rec, dict) or not isinstance(rec.get("metadata"), dict):
            raise TraceError(source, "metadata", f"line {line} is not an AIPerf record (no 'metadata' object)",
                             "give profile_export.jsonl as AIPerf wrote it")
        md = rec["metadata"]
        phase = str(md.get("benchmark_phase", md.get("credit_phase", "profiling"))).lower()
        if phase == "warmup":
            warmup += 1
            continue
        if rec.get("error") is not None:
            errored += 1
            continue
        start_ns = num(md.get("request_start_ns", md.get("timestamp_ns")), source, "metadata.request_start_ns")
        if math.isnan(start_ns):
            start_ns = _metric(rec, ("min_request_timestamp",), source, line, False)
        start = start_ns * 1e-9
        ttft = _metric(rec, ("time_to_first_token", "ttft"), source, line, True)
        lat = _metric(rec, ("request_latency",), source, line, True)
        end = start + lat
        if math.isnan(end):
            end = num(md.get("request_end_ns"), source, "metadata.request_end_ns") * 1e-9
        out_tok = _metric(rec, ("output_sequence_length", "output_token_count"), source, line, False)
        sd = rec.get("spec_decode_acceptance")
        sd = sd if isinstance(sd, dict) else {}
        if sd.get("num_spec_tokens") is not None:
            k_seen.add(num(sd["num_spec_tokens"], source, "spec_decode_acceptance.num_spec_tokens"))
        if isinstance(sd.get("engine"), str):
            engines.add(sd["engine"])
        rows.append({"request_id": str(md.get("x_request_id") or md.get("session_num") or f"#{line}"),
                     "start_s": start, "first_token_s": start + ttft, "end_s": end,
                     "prompt_tokens": _metric(rec, ("input_sequence_length",), source, line, False),
                     "output_tokens": out_tok,
                     "draft_tokens": num(sd.get("num_draft_tokens"), source, "spec_decode_acceptance.num_draft_tokens"),
                     "accepted_tokens": num(sd.get("num_accepted_draft_tokens"), source,
                                            "spec_decode_acceptance.num_accepted_draft_tokens"),
                     "num_drafts": num(sd.get("num_spec_steps"), source, "spec_decode_acceptance.num_spec_steps"),
                     "acceptance_histogram": None if sd.get("acceptance_histogram") is None else histogram_cell(
                         sd["acceptance_histogram"], source, "spec_decode_acceptance.acceptance_histogram")})
    if not rows:
        raise TraceError(source, "error", f"no successful profiling request ({errored} failed, {warmup} warm-up)",
                         "check the server and AIPerf's error summary")
    req = pd.DataFrame(rows)
    if req["first_token_s"].isna().all():
        raise TraceError(source, "metrics.time_to_first_token", "no request has a time to first token",
                         "run AIPerf with --streaming: TTFT is measured only on streamed responses")
    if float(np.nanmedian(req["start_s"])) < 1e8:
        raise TraceError(source, "metadata.request_start_ns", "send times are not epoch nanoseconds",
                         "give the file as AIPerf wrote it (request_start_ns = time.time_ns())")
    req, empty = finish_requests(req, np.ones(len(req), dtype=bool), source, "0", _NAMES, out.warnings)
    summary = _summary_file(Path(path))
    load_type, rate, conc = "", math.nan, math.nan
    if summary is not None:
        load_type, rate, conc, out.recorded = summary_load(summary, source)
    label = f"rate@{rate:g}" if load_type == "rate" else f"concurrency@{conc:g}" if load_type else "run"
    run = RunData(key=label, load_type=load_type, rate_rps=rate, concurrency=conc, aliases=["0", label],
                  requests=req, n_errored=errored + empty,
                  span=(float(req["start_s"].min()), float(req["end_s"].max())))
    if len(k_seen) == 1 and next(iter(k_seen)) > 0:
        run.acceptance = {"k": int(next(iter(k_seen)))}
    if len(engines) == 1:
        out.info["engine"] = next(iter(engines))
    out.runs.append(run)
    return out
