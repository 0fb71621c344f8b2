"""Shared pieces of the benchmark-output readers: the parsed-file containers, tolerant
JSON / text loading, defensive field access and the request-time checks.

Every reader turns one file into a :class:`Parsed`: a list of :class:`RunData` (one per
benchmark run, with canonical request rows when the tool wrote them, else run-level
statistics), the speculative configuration the file records (labels / metadata), and,
for acceptance-only sources (Prometheus scrapes, vLLM logs), an acceptance record to
attach to a run. Nothing here knows about a particular tool.
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import TraceError
from ..validate import format_histogram, parse_histogram

__all__ = ["TraceWarning", "RunData", "Parsed", "get", "num", "warn", "read_bytes", "read_text",
           "load_json_objects", "finish_requests", "histogram_vector", "histogram_cell", "REQ_COLS", "ACCEPT_COLS",
           "SCRAPE_COLS"]

#: Canonical request columns a reader fills (``run_id`` is added by the ingest).
REQ_COLS = ["request_id", "start_s", "first_token_s", "end_s", "prompt_tokens", "output_tokens",
            "draft_tokens", "accepted_tokens", "num_drafts", "acceptance_histogram"]
#: Run-level acceptance columns (canonical runs columns).
ACCEPT_COLS = ["draft_tokens", "accepted_tokens", "num_drafts", "acceptance_length", "per_position_acceptance"]
#: Columns a run takes from its /metrics scrapes: the acceptance counts and the engine's prefill timing.
SCRAPE_COLS = [*ACCEPT_COLS, "prefill_ms_per_token"]


class TraceWarning(UserWarning):
    """Something in a trace file that is usable but worth knowing (one line: file, field, fix)."""


@dataclass
class RunData:
    """One benchmark run read from a tool's output.

    ``key``: name of the run within its file (``run_id`` = ``<file stem>:<key>``);
    ``aliases``: other names a sidecar may use for it (benchmark index, strategy label).
    ``requests``: canonical request rows (successful requests only, :data:`REQ_COLS`) or
    None when the file has only run-level statistics (then ``stats`` holds them, canonical
    run column names, seconds). ``window``: the tool's own measurement window (start, end)
    on the request clock, or None. ``clockless``: request rows have no send times (all
    ``start_s`` = 0): their statistics are kept but rates come from ``stats`` and they
    are left out of the latency-trend check. ``labels``: speculative configuration
    recorded for this run only. ``acceptance``: run-level acceptance counts. ``span``: the
    run's first send and last token as epoch seconds, when the tool's clock is the wall clock
    (used to match ``/metrics`` scrapes by time), else None. ``run_id``: the run id to use
    (a manifest point's id) instead of ``<file stem>:<key>``. ``forced``: configuration that
    overrides every other layer (a manifest point's). ``info``: what the file records about the
    run beyond the configuration (``tool``, ``tool_version``, ``engine``, ``engine_version``,
    ``acceptance``: 'pinned' when the engine fixed it). ``arrival_cv2``: an open loop's squared coefficient of
    variation of the inter-arrival times when the file says how it sent them (0 evenly spaced, 1 Poisson).
    """

    key: str
    load_type: str
    rate_rps: float = math.nan
    concurrency: float = math.nan
    arrival_cv2: float = math.nan
    aliases: list = field(default_factory=list)
    requests: pd.DataFrame | None = None
    stats: dict = field(default_factory=dict)
    window: tuple | None = None
    clockless: bool = False
    n_errored: int = 0
    n_incomplete: int = 0
    saturated: bool | None = None
    saturation_reason: str = ""
    labels: dict = field(default_factory=dict)
    acceptance: dict = field(default_factory=dict)
    span: tuple | None = None
    run_id: str | None = None
    forced: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


@dataclass
class Parsed:
    """One file read by a format reader.

    ``info``: tool / engine name and version and pinned acceptance the file records for all its
    runs (see :class:`RunData`). ``scrapes``: for ``/metrics`` files, one ``(time, totals)`` per
    scrape in the file (time in epoch seconds from the samples' timestamps, or None).
    """

    path: str
    fmt: str
    runs: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)      # from the file's own labels / metadata
    recorded: dict = field(default_factory=dict)    # fallbacks the file records (model name, data set)
    acceptance: dict | None = None                  # acceptance-only sources
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    scrapes: list = field(default_factory=list)


def warn(sink: list | None, source: str, fld: str | None, problem: str, fix: str) -> str:
    """Emit a one-line :class:`TraceWarning` (and append it to ``sink``)."""
    where = source + (f", field '{fld}'" if fld else "")
    msg = f"{where}: {problem}. Fix: {fix}"
    if sink is not None:
        sink.append(msg)
    warnings.warn(msg, TraceWarning, stacklevel=3)
    return msg


def get(d, *path):
    """``d[p0][p1]...`` or None when a level is missing or not a dict."""
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def num(v, source: str, fld: str) -> float:
    """A JSON value as float: None -> NaN; numbers and numeric strings ('inf' too) accepted."""
    if v is None:
        return math.nan
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            pass
    raise TraceError(source, fld, f"expected a number, found {type(v).__name__} {str(v)[:40]!r}",
                     "the file was edited or is not this tool's output: restore the numeric value")


def rates_from_duration(requests: pd.DataFrame, duration: float) -> dict:
    """Run-level rates from a benchmark's wall ``duration`` (s): completed requests/s and output tokens/s."""
    ok = duration > 0
    return {"achieved_rps": len(requests) / duration if ok else math.nan,
            "output_tps": float(requests["output_tokens"].sum()) / duration if ok else math.nan}


def read_bytes(path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(str(path), None, "file not found", "check the path")
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise TraceError(str(path), None, f"truncated or corrupt gzip data ({e})",
                             "re-copy or re-compress the file") from None
    return data


def read_text(path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceError(str(path), None, f"not UTF-8 text (byte {e.start})",
                         "give the tool's text output (JSON, YAML, CSV or log), not a binary file") from None


def load_json_objects(text: str, source: str) -> list:
    """Parse one JSON value, or JSON Lines (one object per line, as ``--append-result`` and
    SGLang write). Accepts ``NaN`` / ``Infinity`` (Python's json does). Raises TraceError
    with the position on malformed or truncated text."""
    text = text.strip()
    if not text:
        raise TraceError(source, None, "the file is empty", "give the benchmark's result file")
    dec = json.JSONDecoder()
    out, pos = [], 0
    while pos < len(text):
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            trunc = e.pos >= len(text) - 1 or "Unterminated" in e.msg or "Expecting" in e.msg and e.pos > len(text) - 64
            line = text.count("\n", 0, e.pos) + 1
            raise TraceError(source, None, f"not valid JSON at line {line}, char {e.pos}: {e.msg}"
                             + (" (the file looks truncated)" if trunc else ""),
                             "re-copy the complete file; it must be the tool's JSON output unchanged") from None
        out.append(obj)
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
    return out


def histogram_vector(hist, source: str, field: str = "acceptance_histogram") -> np.ndarray:
    """The counts ``h_0..h_m`` of a per-request acceptance histogram as vLLM reports it: a list (index j
    = verify steps that accepted exactly j drafts) or a dict with the same meaning keyed by j
    (``{"1": 15, "2": 23}``, missing j = 0); ``field`` names it in errors."""
    items = enumerate(hist) if isinstance(hist, list) else hist.items() if isinstance(hist, dict) else None
    if items is None:
        raise TraceError(source, field, f"expected a list or an object, found {type(hist).__name__}",
                         "restore the server's acceptance histogram unchanged")
    counts: dict[int, float] = {}
    for key, value in items:
        try:
            j, c = int(key), float(value)
        except (TypeError, ValueError):
            j, c = -1, np.nan
        if j < 0 or not (np.isfinite(c) and c >= 0 and c == round(c)):
            raise TraceError(source, field, f"entry {key!r}: {value!r} is not a count of verify steps",
                             "restore the server's acceptance histogram unchanged")
        counts[j] = c
    dense = np.zeros(max(counts, default=-1) + 1)
    for j, c in counts.items():
        dense[j] = c
    return dense


def histogram_cell(hist, source: str, field: str = "acceptance_histogram") -> str:
    """The requests table's ``acceptance_histogram`` cell (``'h_0;h_1;...'``) of a list or dict histogram
    (:func:`histogram_vector`)."""
    return format_histogram(histogram_vector(hist, source, field))


def finish_requests(df: pd.DataFrame, ok: np.ndarray, source: str, run: str, names: dict,
                    sink: list) -> tuple[pd.DataFrame, int]:
    """Checks on a run's request rows (native field names in messages), then the rows of
    successful requests. ``ok`` marks successful requests. Returns (rows, n_dropped): rows
    dropped as unusable (no output token) are counted, so the caller adds them to errors.

    NaN, infinite or negative times and out-of-order times (first token before send, end
    before first token) raise TraceError naming the field in ``names`` (canonical ->
    native). Repeated request ids keep the first record, with a warning.
    """
    d = df[ok].reset_index(drop=True)
    for col in ("start_s", "first_token_s", "end_s", "prompt_tokens", "output_tokens"):
        v = d[col].to_numpy("float64")
        bad = ~np.isfinite(v)
        if bad.any():
            rid = d["request_id"].iloc[int(np.flatnonzero(bad)[0])]
            raise TraceError(source, names.get(col, col), f"{int(bad.sum())} successful request(s) of run {run} "
                             f"have no finite value (e.g. request {rid})",
                             "the record is incomplete or corrupt: restore it or delete that request")
        neg = v < 0
        if neg.any():
            rid = d["request_id"].iloc[int(np.flatnonzero(neg)[0])]
            raise TraceError(source, names.get(col, col), f"negative value in run {run} (request {rid})",
                             "times and counts are non-negative: restore the original value")
    s, f, e = (d[c].to_numpy("float64") for c in ("start_s", "first_token_s", "end_s"))
    tol = 1e-6
    for bad, col, what in ((f < s - tol, "first_token_s", "first token before the request was sent"),
                           (e < f - tol, "end_s", "last token before the first token")):
        if bad.any():
            rid = d["request_id"].iloc[int(np.flatnonzero(bad)[0])]
            raise TraceError(source, names.get(col, col), f"{what} in run {run} ({int(bad.sum())} request(s), "
                             f"e.g. {rid})", "times are out of order: the record is corrupt or was edited")
    d["first_token_s"] = np.maximum(f, s)
    d["end_s"] = np.maximum(e, d["first_token_s"].to_numpy())
    dup = d["request_id"].duplicated().to_numpy()
    if dup.any():
        warn(sink, source, names.get("request_id", "request_id"),
             f"{int(dup.sum())} repeated request id(s) in run {run} (e.g. {d['request_id'][dup].iloc[0]}): "
             "kept the first record of each", "remove the duplicated records (merged or concatenated files?)")
        d = d[~dup].reset_index(drop=True)
    if "acceptance_histogram" in d:
        _drop_disagreeing_histograms(d, source, run, names, sink)
    empty = d["output_tokens"].to_numpy("float64") < 1
    if empty.any():
        warn(sink, source, names.get("output_tokens", "output_tokens"),
             f"{int(empty.sum())} successful request(s) of run {run} produced no output token: counted as "
             "errored", "check the server (empty completions) or the token counting")
        d = d[~empty].reset_index(drop=True)
    return d, int(empty.sum())


def _drop_disagreeing_histograms(d: pd.DataFrame, source: str, run: str, names: dict, sink: list) -> None:
    """Empty the histogram cells whose steps differ from the record's own step count (a placeholder or
    an edited record): the counts are kept, the per-position shares come from the other requests."""
    given = np.flatnonzero(d["acceptance_histogram"].notna().to_numpy())
    steps = np.full(len(d), np.nan)
    steps[given] = [parse_histogram(c).sum() for c in d["acceptance_histogram"].to_numpy()[given]]
    drafts = d["num_drafts"].to_numpy("float64")
    bad = np.isfinite(steps) & np.isfinite(drafts) & (steps != drafts)
    if bad.any():
        rid = d["request_id"].iloc[int(np.flatnonzero(bad)[0])]
        warn(sink, source, names.get("acceptance_histogram", "acceptance_histogram"),
             f"run {run}: {int(bad.sum())} request(s) have an acceptance histogram whose steps differ from their "
             f"verify-step count (e.g. {rid}): those histograms are left out of the per-position shares",
             "give the histogram and the counts of the same record, as the server reported them")
        d.loc[bad, "acceptance_histogram"] = None
