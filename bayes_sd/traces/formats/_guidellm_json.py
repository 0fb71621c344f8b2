"""Reading GuideLLM JSON reports fast, without holding the request records as Python objects.

GuideLLM writes its report with ``json.dumps`` on one line, so a request record always
starts with the bytes ``{"type_": "generative_request_stats"`` (quotes cannot appear
unescaped inside a JSON string, so the marker never occurs inside a value) and two
records of one list are separated by ``, ``. :func:`stream_report` reads the file in
chunks, cuts out runs of records and parses each run in one pyarrow call (explicit
schema of the few fields used; any surprise falls back to Python's json for that run).
What is left (the report "spine": metadata, configuration, aggregates) is parsed with
json, with each cut run replaced by ``{"__bayes_sd_batch__": n}``. Files written some
other way (indented, re-ordered keys, legacy schema) simply have no cut runs: their
records stay in the spine and go through the same Python field extraction. Both paths
return the same flat columns (:data:`FIELDS`).
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..schema import TraceError
from ..validate import format_histogram
from .base import get, histogram_vector

__all__ = ["FIELDS", "HISTOGRAM", "BATCH_KEY", "stream_report", "records_to_columns", "parse_batch"]

MARK = b'{"type_": "generative_request_stats"'
BATCH_KEY = "__bayes_sd_batch__"
#: vLLM's per-request speculative-decoding object as GuideLLM 0.8 keeps it (``response_metrics`` is the
#: response's ``metrics``): the response-level ``speculative_decoding`` (vLLM >= 0.29, list histogram),
#: or the per-choice ``speculative_decoding_stats`` (vLLM PR 48915 shape, dict histogram ``{"0": 39}``)
#: should a client keep it there. The counts have the same names in both.
_SD = ("response_metrics", "speculative_decoding")
_SD_CHOICE = ("response_metrics", "speculative_decoding_stats")
_HIST = "acceptance_histogram"
#: the flat column of each record's histogram cell (``'h_0;h_1;...'``, None without one), beside :data:`FIELDS`
HISTOGRAM = "histogram"
#: flat column name -> path in a request record (v1/v2 and legacy fields; absent -> NaN).
FIELDS = {
    "request_id": ("request_id",),
    "status": ("info", "status"),
    "t_request_start": ("info", "timings", "request_start"),
    "t_first_token": ("info", "timings", "first_token_iteration"),
    "t_last_token": ("info", "timings", "last_token_iteration"),
    "t_request_end": ("info", "timings", "request_end"),
    "t_resolve_start": ("info", "timings", "resolve_start"),
    "request_start_time": ("request_start_time",),
    "request_end_time": ("request_end_time",),
    "request_latency": ("request_latency",),
    "time_to_first_token_ms": ("time_to_first_token_ms",),
    "prompt_tokens": ("prompt_tokens",),
    "output_tokens": ("output_tokens",),
    "start_time": ("start_time",),
    "end_time": ("end_time",),
    "first_token_time": ("first_token_time",),
    "last_token_time": ("last_token_time",),
    "sd_draft_tokens": _SD + ("num_draft_tokens",),
    "sd_accepted_tokens": _SD + ("num_accepted_draft_tokens",),
    "sd_num_drafts": _SD + ("num_spec_steps",),
    "sdc_draft_tokens": _SD_CHOICE + ("num_draft_tokens",),
    "sdc_accepted_tokens": _SD_CHOICE + ("num_accepted_draft_tokens",),
    "sdc_num_drafts": _SD_CHOICE + ("num_spec_steps",),
}
_SD_COLS = {"sd_draft_tokens": "sdc_draft_tokens", "sd_accepted_tokens": "sdc_accepted_tokens",
            "sd_num_drafts": "sdc_num_drafts"}
_STR = {"request_id", "status"}


def _schema():
    import pyarrow as pa

    tree: dict = {}
    for name, path in FIELDS.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = pa.string() if name in _STR else pa.float64()

    def build(node):
        return [pa.field(k, pa.struct(build(v)) if isinstance(v, dict) else v) for k, v in node.items()]

    return pa.schema(build(tree))


def _num(v, source, name):
    if v is None:
        return np.nan
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise TraceError(source, ".".join(FIELDS[name]), f"expected a number, found {type(v).__name__} {str(v)[:40]!r}",
                     "the report was edited or is not GuideLLM output: restore the numeric value")


def _histogram_of(r: dict, source: str):
    """``(speculative object, counts h_0..h_m)`` of a record's acceptance histogram, from the
    response-level object, else the per-choice one; None without one."""
    for path in (_SD, _SD_CHOICE):
        sd = get(r, *path)
        if isinstance(sd, dict) and sd.get(_HIST) is not None:
            return sd, histogram_vector(sd[_HIST], source, _HIST)
    return None


def _from_histogram(sd: dict, counts, cols: dict, source: str) -> None:
    """Fill a record's missing step / accepted counts from its histogram's ``counts`` (index j = verify
    steps that accepted exactly j drafts)."""
    if sd.get("num_spec_steps") is not None:
        return
    steps = float(counts.sum())
    cols["sd_num_drafts"][-1] = steps
    cols["sd_accepted_tokens"][-1] = float(np.arange(counts.size) @ counts)
    k = _num(sd.get("num_spec_tokens"), source, "sd_draft_tokens")
    if np.isnan(cols["sd_draft_tokens"][-1]) and k > 0:
        cols["sd_draft_tokens"][-1] = k * steps  # at most k per step: the configured budget


def _merge_shapes(cols: dict) -> dict:
    """One set of speculative columns: the response-level object, else the per-choice one."""
    for main, alt in _SD_COLS.items():
        miss = np.isnan(cols[main])
        if miss.any():
            cols[main] = np.where(miss, cols[alt], cols[main])
    return cols


def records_to_columns(records: list, source: str, offset: int = 0) -> dict:
    """Flat columns (:data:`FIELDS`) of request records given as Python dicts."""
    cols = {k: [] for k in FIELDS}
    histograms = []
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise TraceError(source, "requests", f"request record {offset + i} is a {type(r).__name__}, not an object",
                             "the report was edited or is corrupt: restore the record or delete it")
        for name, path in FIELDS.items():
            v = r.get(path[0]) if len(path) == 1 else get(r, *path)
            if name in _STR:
                cols[name].append(None if v is None else str(v))
            else:
                cols[name].append(_num(v, source, name))
        hist = _histogram_of(r, source)
        if hist is not None and np.isnan(cols["sd_num_drafts"][-1]) and np.isnan(cols["sdc_num_drafts"][-1]):
            _from_histogram(*hist, cols, source)
        histograms.append(None if hist is None else format_histogram(hist[1]))
    out = _merge_shapes({k: np.array(v, dtype=object if k in _STR else "float64") for k, v in cols.items()})
    out[HISTOGRAM] = np.array(histograms, dtype=object)
    return out


def _split(data: bytes) -> list:
    """Record texts of a run joined by newlines (see :func:`parse_batch`)."""
    starts = []
    i = data.find(MARK)
    while i >= 0:
        starts.append(i)
        i = data.find(MARK, i + 1)
    return [data[a:b].rstrip(b"\n") for a, b in zip(starts, starts[1:] + [len(data)])]


def parse_batch(data: bytes, n: int, source: str, strict: bool = False) -> dict | None:
    """Columns of ``n`` request records given as newline-delimited JSON text: one pyarrow
    call; on any surprise Python's json (or None with ``strict``)."""
    try:
        if _HIST.encode() in data:
            raise ValueError("histograms")  # read them (and counts missing beside them) in Python
        import pyarrow as pa
        import pyarrow.json as pj

        opts = pj.ParseOptions(explicit_schema=_schema(), unexpected_field_behavior="ignore",
                               newlines_in_values=False)
        block = max(1 << 20, min(len(data) // 4 + 1, 16 << 20))
        table = pj.read_json(io.BytesIO(data), parse_options=opts, read_options=pj.ReadOptions(block_size=block))
        if table.num_rows != n:
            raise ValueError("row count")
        flat = table
        while any(pa.types.is_struct(f.type) for f in flat.schema):
            flat = flat.flatten()
        out = {}
        for name, path in FIELDS.items():
            col = flat.column(".".join(path))
            out[name] = col.to_numpy(zero_copy_only=False)
            out[name] = out[name].astype(object) if name in _STR else out[name].astype("float64")
        out = _merge_shapes(out)
        out[HISTOGRAM] = np.full(n, None, dtype=object)
        return out
    except Exception:  # any arrow complaint: redo this run of records with Python's json
        if strict:
            return None
    parsed = []
    for r in _split(data):
        try:
            parsed.append(json.loads(r))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TraceError(source, "requests", f"a request record is not valid JSON ({e})",
                             "the file is corrupt or truncated: re-copy the complete report") from None
    return records_to_columns(parsed, source)


def _record_end(buf: bytes, pos: int, limit: int):
    """Byte offset just past the JSON object starting at ``pos`` (None if incomplete)."""
    txt = buf[pos:limit].decode("utf-8", errors="surrogateescape")
    try:
        _, end = json.JSONDecoder().raw_decode(txt)
    except json.JSONDecodeError:
        return None
    if len(txt) == limit - pos:  # ASCII: char offsets are byte offsets
        return pos + end
    return pos + len(txt[:end].encode("utf-8", errors="surrogateescape"))


class _Irregular(Exception):
    """The file does not have GuideLLM's one-line layout: read it with plain json."""


def stream_report(fh, source: str, chunk: int = 32 << 20):
    """Read a GuideLLM JSON report from binary file ``fh``. Returns ``(tree, batches)``:
    the parsed report with cut record runs replaced by ``{BATCH_KEY: n}``, and the list
    of column dicts of those runs (index n)."""
    pool = ThreadPoolExecutor(max_workers=1)  # pyarrow parses (GIL released) while we read on
    try:
        return _stream(fh, source, chunk, pool)
    except _Irregular:
        fh.seek(0)
        return _parse_spine(fh.read(), source), []
    finally:
        pool.shutdown(cancel_futures=True)


_SEP = b"}, " + MARK
_NEXT = b"[" + MARK


def _stream(fh, source, chunk, pool):
    spine, batches = [], []
    buf, pos, eof, in_run, first = b"", 0, False, False, True

    def more():
        nonlocal buf, pos, eof
        data = fh.read(chunk)
        eof = not data
        buf, pos = buf[pos:] + data, 0

    def parse(data, n):
        out = parse_batch(data, n, source, strict=True)
        if out is None:  # arrow refused: find out whether the layout is irregular, else Python json
            if data.count(b"}\n" + MARK) != n - 1:
                raise _Irregular
            out = parse_batch(data, n, source)
        return out

    def emit(a, b):
        nonlocal first
        data = buf[a:b]
        n = data.count(MARK)
        if len(batches) >= 2 and not batches[-2].done():
            batches[-2].result()  # at most two batches in flight: bounded memory
        batches.append(pool.submit(parse, data.replace(_SEP, b"}\n" + MARK), n))
        spine.append((b"" if first else b", ") + b'{"%s": %d}' % (BATCH_KEY.encode(), len(batches) - 1))
        first = False

    more()
    while True:
        if not in_run:
            i = buf.find(MARK, pos)
            if i < 0:
                if eof:
                    spine.append(buf[pos:])
                    break
                keep = max(pos, len(buf) - len(MARK))  # a marker found later has its '[' in the buffer
                spine.append(buf[pos:keep])
                pos = keep
                more()
                continue
            if buf[i - 1:i] != b"[":
                raise _Irregular
            spine.append(buf[pos:i])
            pos, in_run, first = i, True, True
        nxt = buf.find(_NEXT, pos + 1)
        limit = nxt if nxt >= 0 else len(buf)
        last = buf.rfind(MARK, pos, limit)
        if nxt < 0 and not eof:  # the run may go on past the buffer: emit its complete records
            if last > pos and buf[last - 3:last] == b"}, ":
                emit(pos, last - 2)
                pos = last
            more()
            continue
        end = _record_end(buf, last, limit)
        if end is None:
            if nxt >= 0:
                raise TraceError(source, "requests", "a request record is not valid JSON (corrupt or edited)",
                                 "re-copy the report as GuideLLM wrote it")
            if eof:
                raise TraceError(source, "requests", "the last request record is cut off (the file is "
                                 "truncated)", "re-copy the complete report")
            more()
            continue
        emit(pos, end)
        pos, in_run = end, False
    batches = [f.result() for f in batches]
    return _parse_spine(b"".join(spine), source), batches


def _parse_spine(raw: bytes, source: str):
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        trunc = e.pos >= len(text) - 2
        raise TraceError(source, None, f"not valid JSON at char {e.pos}: {e.msg}"
                         + (" (the file looks truncated)" if trunc else ""),
                         "re-copy the complete report; it must be GuideLLM's JSON output unchanged") from None
