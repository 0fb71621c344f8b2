"""vLLM server logs: the speculative-decoding lines of every engine generation.

======================= ===================================================================
engine / vLLM           line (after the logger prefix)
======================= ===================================================================
V0 (about 0.5 - 0.7)    ``Speculative metrics: Draft acceptance rate: 0.642, System efficiency:
                        0.598, Number of speculative tokens: 3, Number of accepted tokens: 8547,
                        Number of draft tokens: 13311, Number of emitted tokens: 10616.``
                        (rate a FRACTION; counts cumulative since the server started)
V1 early (0.8)          ``SpecDecoding metrics: Draft acceptance rate: nan%, Accepted: 0 tokens,
                        Drafted: 0 tokens``
V1 (0.9 - 0.10)         ``SpecDecoding metrics: Draft acceptance rate: 38.8%, Mean acceptance
                        length: 2.16, Accepted: 150 tokens, Drafted: 387 tokens, Per-position
                        acceptance rate: 0.543, 0.357, 0.264``
V1 (0.14 - 0.33)        ``SpecDecoding metrics: Mean acceptance length: 3.49, Accepted throughput:
                        ..., Accepted: 92 tokens, Drafted: 259 tokens, Per-position acceptance
                        rate: 0.757, 0.622, 0.432, Avg Draft acceptance rate: 35.5%``
======================= ===================================================================

V1 lines cover one logging interval each (default 10 s), so the run's counts are sums over
lines (and over engines of a data-parallel server). The number of drafts is not printed:
it is recovered per line as ``Accepted / (mean acceptance length - 1)`` (the mean length
includes the bonus token; rounding of its 2 decimals applies), or ``Drafted / k`` when
nothing was accepted. V0 lines are cumulative: the last one is used; drafts = draft tokens /
k, and since V0's "accepted" also counts matching tokens after a rejection, the accepted
prefix is emitted - drafts (each step emits its accepted prefix + 1 token). The last
interval before a shutdown is usually never logged.

The startup lines say more: ``LLM engine (v0.11.0)`` gives the engine version, and a
``rejection_sample_method`` of ``synthetic`` in the logged arguments or configuration (vLLM's
synthetic acceptance for testing, ``synthetic_acceptance_rates`` / ``synthetic_acceptance_length``)
marks the run's acceptance as pinned: cost-only data, never acceptance evidence; ``GPU KV cache
size: 1,234,560 tokens`` gives the server's KV cache size (``kv_cache_tokens``; the last such line, so
a log of restarts gives the latest server's). :func:`log_server_info` reads these from any vLLM log,
one of a server without speculation too.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..schema import TraceError
from ..validate import format_per_position
from .base import Parsed, read_text, warn

__all__ = ["read_vllm_log", "log_server_info", "LOG_MARKERS"]

LOG_MARKERS = ("SpecDecoding metrics:", "Speculative metrics:")
_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
_V1 = {"mal": re.compile(r"Mean acceptance length:\s*" + _NUM),
       "acc": re.compile(r"Accepted:\s*(\d+) tokens"),
       "draft": re.compile(r"Drafted:\s*(\d+) tokens"),
       "pos": re.compile(r"Per-position acceptance rate:\s*((?:[\d.]+|nan)(?:\s*,\s*(?:[\d.]+|nan))*)")}
_VERSION = re.compile(r"LLM engine \(v(\d[\w.+-]*)\)")
_KV_CACHE = re.compile(r"GPU KV cache size:\s*(\d[\d,]*) tokens")
_SYNTHETIC = re.compile(r"rejection_sample_method['\"]?\s*[:=]\s*['\"]?synthetic", re.I)
_V0 = {"k": re.compile(r"Number of speculative tokens:\s*(\d+)"),
       "acc": re.compile(r"Number of accepted tokens:\s*(\d+)"),
       "draft": re.compile(r"Number of draft tokens:\s*(\d+)"),
       "emit": re.compile(r"Number of emitted tokens:\s*(\d+)")}


def _v1(lines, source, sink) -> dict:
    acc = draft = drafts = 0.0
    k, unknown = None, 0
    at_pos, pos_drafts = None, 0.0  # accepted tokens per position, over the lines that print them
    for n, line in lines:
        m = {key: rx.search(line) for key, rx in _V1.items()}
        if not (m["acc"] and m["draft"]):
            raise TraceError(source, "SpecDecoding metrics", f"line {n}: no 'Accepted: N tokens, Drafted: N tokens'",
                             "give the vLLM log unchanged (the line may be cut)")
        a, d = float(m["acc"].group(1)), float(m["draft"].group(1))
        if m["pos"]:
            kk = len(m["pos"].group(1).split(","))
            if k is not None and kk != k:
                raise TraceError(source, "Per-position acceptance rate", f"line {n}: {kk} positions after {k} on "
                                 "earlier lines (several servers in one log?)", "give one server's log per run")
            k = kk
        mal = float(m["mal"].group(1)) if m["mal"] else math.nan
        if a > d:
            raise TraceError(source, "Accepted", f"line {n}: {a:g} accepted > {d:g} drafted tokens",
                             "give the vLLM log unchanged")
        if a > 0 and mal > 1:
            nd = round(a / (mal - 1.0))
        elif d > 0 and k:
            nd = d / k
        elif d == 0:
            nd = 0
        else:
            unknown += 1
            continue
        acc, draft, drafts = acc + a, draft + d, drafts + nd
        rates = [float(v) for v in m["pos"].group(1).split(",")] if m["pos"] else []
        if nd > 0 and rates and all(math.isfinite(r) for r in rates):
            at_pos = nd * np.array(rates) + (0.0 if at_pos is None else at_pos)
            pos_drafts += nd
    if unknown:
        warn(sink, source, "Mean acceptance length", f"{unknown} interval line(s) without the mean acceptance "
             "length: their drafts are unknown and they are left out", "use a vLLM >= 0.9 log (prints it)")
    out = {"draft_tokens": draft, "accepted_tokens": acc, "num_drafts": float(drafts)}
    if drafts > 0:
        out["acceptance_length"] = 1.0 + acc / drafts
    if k:
        out["k"] = k
    if at_pos is not None and pos_drafts > 0:
        out["per_position_acceptance"] = format_per_position(np.minimum.accumulate(at_pos / pos_drafts))
    return out


def log_server_info(text: str) -> dict:
    """What a vLLM log's start-up lines say of its server: ``engine_version``, ``acceptance`` (``'pinned'``
    under synthetic rejection sampling) and ``kv_cache_tokens`` (the last ``GPU KV cache size`` line), each
    only when the log says it."""
    out: dict = {}
    for line in text.splitlines():
        if "engine_version" not in out and (m := _VERSION.search(line)):
            out["engine_version"] = m.group(1)
        if "rejection_sample_method" in line and _SYNTHETIC.search(line):
            out["acceptance"] = "pinned"
        if m := _KV_CACHE.search(line):
            out["kv_cache_tokens"] = float(m.group(1).replace(",", ""))
    return out


def read_vllm_log(path) -> Parsed:
    """Read a vLLM server log; ``Parsed.acceptance`` holds the summed acceptance."""
    source = str(path)
    text = read_text(path)
    out = Parsed(path=source, fmt="vllm log", info={"engine": "vllm", **log_server_info(text)})
    v0, v1 = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if "SpecDecoding metrics:" in line:
            v1.append((n, line))
        elif "Speculative metrics:" in line:
            v0.append((n, line))
    if not v0 and not v1:
        raise TraceError(source, "SpecDecoding metrics", "no speculative-decoding metric line in the log",
                         "log the server with speculative decoding on and stats logging enabled "
                         "(not --disable-log-stats)")
    if v1 and v0:
        raise TraceError(source, None, "both V0 ('Speculative metrics') and V1 ('SpecDecoding metrics') lines",
                         "give one server's log per run")
    if v1:
        out.acceptance = _v1(v1, source, out.warnings)
        if out.acceptance["num_drafts"] == 0:
            warn(out.warnings, source, "SpecDecoding metrics", "no drafted token in the logged intervals",
                 "check that the log covers the run")
        return out
    n, line = v0[-1]
    m = {key: rx.search(line) for key, rx in _V0.items()}
    if not all(m.values()):
        raise TraceError(source, "Speculative metrics", f"line {n}: missing one of the token counts",
                         "give the vLLM log unchanged (the line may be cut)")
    a, d, e = (float(m[key].group(1)) for key in ("acc", "draft", "emit"))
    k = int(m["k"].group(1))
    drafts = d / k if k > 0 else math.nan
    if not (drafts > 0 and drafts <= e <= d + drafts and a <= d):
        raise TraceError(source, "Speculative metrics", f"line {n}: inconsistent counts (draft {d:g}, accepted "
                         f"{a:g}, emitted {e:g}, k {k})", "give the vLLM log unchanged")
    # V0 'accepted' counts every matching draft token, also after a rejection; the tokens a
    # step emits are its accepted prefix + 1, so the canonical accepted count is emitted - drafts
    out.acceptance = {"draft_tokens": d, "accepted_tokens": e - drafts, "num_drafts": drafts, "k": k,
                      "acceptance_length": e / drafts}
    warn(out.warnings, source, "Speculative metrics", "V0 engine counts are cumulative since the server "
         "started: the last line is used", "restart the server before the run for per-run acceptance")
    return out
