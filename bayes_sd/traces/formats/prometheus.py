"""Prometheus text exposition (``curl host:port/metrics``) scraped around a run: the speculative-
decoding metrics of vLLM, llama.cpp and SGLang.

vLLM (V1 engine; 0.10 - 0.33) counters: ``vllm:spec_decode_num_drafts_total``,
``vllm:spec_decode_num_draft_tokens_total``, ``vllm:spec_decode_num_accepted_tokens_total`` and
``vllm:spec_decode_num_accepted_tokens_per_pos_total{position="j"}``; samples are summed over the
other labels (``engine`` for data-parallel servers, ``model_name``); ``*_created`` samples are
skipped. The legacy V0 engine exports no ``num_drafts`` and no k: its counters are refused (its
log lines carry k and are read instead).

llama.cpp (``llama-server --metrics``; ``tools/server``) counters, no labels:
``llamacpp:spec_decode_num_draft_tokens_total`` (draft tokens generated),
``llamacpp:spec_decode_num_accepted_tokens_total`` (accepted by the target) and
``llamacpp:spec_decode_num_drafts_total`` (verification steps), in newer builds also
``llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="j"}``. Acceptance length =
1 + accepted / drafts; k = round(draft tokens / drafts) when there are drafts. llama.cpp can
draft fewer than ``--draft-max`` tokens per step (``--draft-p-min``), so a non-integral ratio is
reported and k should then be given (``--k``). llama-server prints values with the default
six significant digits, so counters past 10^6 are rounded (``1.23457e+06``): their deltas are
approximate (warning).

SGLang (``sglang/srt/metrics/collector.py``) exports no speculative counters, only gauges:
``sglang:spec_accept_length`` (mean tokens per verify step, bonus token included, over the
scheduler's last decode-logging interval, ``--decode-log-interval`` batches, default 40) and
``sglang:spec_accept_rate`` (accepted / drafted tokens over the same interval). A gauge has no
delta: the acceptance length is read from the later scrape, and it describes the end of the run,
not its mean (warning); k and the counts are unknown.

A file holding two scrapes (the same series twice, e.g. ``curl`` before and after the run
appended to one file) gives the delta; with more, first to last. Two single-scrape files
are paired by the ingest (:func:`delta`, the smaller counters being "before"), or matched to
runs by time. A single scrape alone is cumulative since the server started (warning). Sample
timestamps (the optional third field of a sample line, milliseconds) give the scrape's time.

vLLM's ``vllm:cache_config_info`` gauge carries the cache configuration as labels; its
``num_gpu_blocks`` x ``block_size`` is the KV cache size in tokens (``Parsed.info['kv_cache_tokens']``;
per engine, the smallest when a data-parallel server's engines differ). For a model with sliding-window or
hybrid layers it counts blocks, not the context a request can use: vLLM's start-up log line (``GPU KV
cache size: N tokens``, :mod:`.vllm_logs`) is the better source there, and a sidecar or flag wins over both.

Result (``Parsed.acceptance``): ``draft_tokens``, ``accepted_tokens``, ``num_drafts``,
``acceptance_length`` (= 1 + accepted / drafts, bonus token included), ``k`` (number of
positions) and ``per_position_acceptance`` (the share of drafts accepted up to each position, a
runs-table cell). ``Parsed.info['engine']``
names the engine; ``Parsed.scrapes`` holds ``(time, totals)`` per scrape.

llama.cpp also times its prompt processing: ``llamacpp:prompt_seconds_total`` over
``llamacpp:prompt_tokens_total`` (cached prompt tokens excluded) between the scrapes is the run's
``prefill_ms_per_token`` (:func:`prefill_timing`; for a server without speculation
:func:`prefill_between`), which pins the prefill cost a sweep of one prompt length cannot split from
the per-request overhead. vLLM's ``vllm:request_prefill_time_seconds`` histogram is not read yet.
"""

from __future__ import annotations

import math
import re

from ..schema import TraceError
from ..validate import format_per_position
from .base import Parsed, read_text, warn

__all__ = ["read_prometheus", "server_info", "delta", "totals_to_acceptance", "prefill_timing", "prefill_between",
           "ENGINES"]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(\S+))?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
#: metric-name prefix -> engine name
ENGINES = {"vllm:": "vllm", "llamacpp:": "llama.cpp", "sglang:": "sglang"}
_COUNTERS = "spec_decode_num_"
_KEYS = {"drafts": "num_drafts", "draft_tokens": "draft_tokens", "accepted_tokens": "accepted_tokens",
         "emitted_tokens": "emitted_tokens", "accepted_tokens_per_pos": "per_pos"}
_GAUGES = {"sglang:spec_accept_length": "accept_length_gauge", "sglang:spec_accept_rate": "accept_rate_gauge"}
#: llama.cpp's timing of prompt processing: seconds and prompt tokens (cached tokens excluded) since start
_PREFILL = {"llamacpp:prompt_seconds_total": "prompt_seconds", "llamacpp:prompt_tokens_total": "prompt_tokens"}
_PREFIX = {v: k for k, v in ENGINES.items()}


def _metric(name: str):
    """(engine, key) of a speculative-decoding or prefill-timing sample name, else None."""
    if name in _GAUGES:
        return "sglang", _GAUGES[name]
    if name in _PREFILL:
        return "llama.cpp", _PREFILL[name]
    for prefix, engine in ENGINES.items():
        if name.startswith(prefix + _COUNTERS) and engine != "sglang" and not name.endswith("_created"):
            short = name[len(prefix) + len(_COUNTERS):]
            short = short[:-6] if short.endswith("_total") else short
            key = _KEYS.get(short)
            return (engine, key) if key else None
    return None


def _engine_of(text: str) -> str | None:
    for prefix, engine in ENGINES.items():
        if re.search(rf"^(# (HELP|TYPE) )?{re.escape(prefix)}", text, re.M):
            return engine
    return None


def server_info(text: str) -> dict:
    """What a scrape says of its server: ``engine`` (when its metric names say) and ``kv_cache_tokens``
    (vLLM's ``vllm:cache_config_info``: ``num_gpu_blocks`` x ``block_size``, the smallest over engines; absent
    when the gauge is, or its blocks are not yet known, ``None``)."""
    out: dict = {}
    engine = _engine_of(text)
    if engine:
        out["engine"] = engine
    sizes = []
    for line in text.splitlines():
        if not line.startswith("vllm:cache_config_info{"):
            continue
        m = _LINE.match(line.strip())
        labels = dict(_LABEL.findall(m.group(2) or "")) if m else {}
        try:
            blocks, size = float(labels.get("num_gpu_blocks", "")), float(labels.get("block_size", ""))
        except ValueError:  # 'None' before the engine has profiled its memory
            continue
        if math.isfinite(blocks * size) and blocks >= 1 and size >= 1:
            sizes.append(blocks * size)
    if sizes:
        out["kv_cache_tokens"] = min(sizes)
    return out


def _parse(text: str, source: str) -> tuple[str, list[dict], list]:
    """Engine, totals per scrape ([{'num_drafts': x, ..., 'per_pos': {pos: x}}, ...]) and scrape times."""
    seen: dict = {}  # series -> list of (value, timestamp) in file order
    engines, rounded = set(), False
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or not ("spec_" in line or line.startswith(tuple(_PREFILL))):
            continue
        m = _LINE.match(line)
        if not m:
            raise TraceError(source, None, f"line {n} is not a Prometheus sample: {line[:60]!r}",
                             "give the /metrics text exposition as scraped (curl HOST/metrics)")
        hit = _metric(m.group(1))
        if hit is None:
            continue
        engine, key = hit
        engines.add(engine)
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
            stamp = float(m.group(4)) / 1e3 if m.group(4) else None
        except ValueError:
            raise TraceError(source, m.group(1), f"line {n}: value {m.group(3)!r} is not a number",
                             "give the /metrics text exposition unchanged") from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(source, m.group(1), f"line {n}: {'gauge' if 'gauge' in key else 'counter'} value {value}",
                             "speculative-decoding metrics are finite and non-negative: give the scrape unchanged")
        rounded |= engine == "llama.cpp" and key not in _PREFILL.values() and "e+" in m.group(3).lower()
        series = (key, labels.get("position") if key == "per_pos" else None, tuple(sorted(labels.items())))
        seen.setdefault(series, []).append((value, stamp))
    if len(engines) > 1:
        raise TraceError(source, None, "speculative-decoding metrics of several engines "
                         f"({', '.join(sorted(engines))})", "give one server's scrape per file")
    if not any(key not in _PREFILL.values() for key, _, _ in seen):
        engine = _engine_of(text) or "vllm"
        if engine == "sglang":
            raise TraceError(source, "sglang:spec_accept_length", "no sglang:spec_accept_length gauge in the file",
                             "scrape /metrics of an SGLang server started with --enable-metrics and a speculative "
                             "algorithm")
        prefix = _PREFIX[engine]
        raise TraceError(source, f"{prefix}spec_decode_num_drafts_total", f"no {prefix}spec_decode_* counters in "
                         f"the file (speculative decoding off, or not a {engine} /metrics scrape)",
                         "scrape /metrics of a server started with speculative decoding (vLLM --speculative-config, "
                         "llama-server --metrics with a draft model)")
    engine = engines.pop()
    n_scrapes = max(len(v) for v in seen.values())
    scrapes, times = [], []
    for s in range(n_scrapes):
        tot: dict = {"per_pos": {}, "_engine": engine, "_rounded": rounded}
        stamps = []
        for (key, pos, _), vals in seen.items():
            # a series seen fewer times than the scrape count appeared later: zero before
            j = s - (n_scrapes - len(vals))
            v, stamp = vals[j] if j >= 0 else (0.0, None)
            if stamp is not None:
                stamps.append(stamp)
            if key == "per_pos":
                tot["per_pos"][pos] = tot["per_pos"].get(pos, 0.0) + v
            elif key.endswith("_gauge"):
                tot[key] = v  # a gauge: one value (the last series wins; SGLang exports one per model)
            else:
                tot[key] = tot.get(key, 0.0) + v
        scrapes.append(tot)
        times.append(max(stamps) if stamps else None)
    return engine, scrapes, times


def _k(draft: float, drafts: float, engine: str, source: str, sink: list) -> int | None:
    """k from draft tokens per draft: exact for vLLM, rounded (with a warning when not whole) for llama.cpp."""
    if not (drafts > 0 and draft > 0):
        return None
    ratio = draft / drafts
    if abs(ratio - round(ratio)) < 1e-9:
        return int(round(ratio))
    if engine == "llama.cpp":
        warn(sink, source, "llamacpp:spec_decode_num_draft_tokens_total", f"{ratio:.3g} draft tokens per draft: "
             f"the drafts vary in length (--draft-p-min); k is taken as {round(ratio)}",
             "give k (the server's --draft-max) with --k or in a sidecar if it differs")
        return int(round(ratio))
    return None


def totals_to_acceptance(tot: dict, source: str, sink: list) -> dict:
    """Acceptance record from counter totals (or deltas), or from the SGLang gauge."""
    engine = tot.get("_engine", "vllm")
    acc, draft = tot.get("accepted_tokens", math.nan), tot.get("draft_tokens", math.nan)
    drafts = tot.get("num_drafts", math.nan)
    if math.isnan(drafts) and "emitted_tokens" in tot:
        raise TraceError(source, "vllm:spec_decode_num_emitted_tokens_total", "legacy V0 engine counters: the "
                         "number of drafts (verify steps) is not exported", "use the server log's 'Speculative "
                         "metrics' lines (they print k), or a V1-engine vLLM")
    if engine == "sglang":
        tau = tot.get("accept_length_gauge", math.nan)
        if not tau >= 1:
            warn(sink, source, "sglang:spec_accept_length", f"the gauge is {tau:g}: no speculative step in the "
                 "server's last logging interval: no acceptance recorded", "scrape right after the run, while "
                 "its last decode batches are the server's latest")
            return {}
        warn(sink, source, "sglang:spec_accept_length", f"SGLang exports the acceptance length ({tau:.4g}) only as "
             "a gauge over its last decode-logging interval: it is the end of the run, not its mean",
             "for the run's mean, use per-request acceptance or a run long enough for its end to represent it")
        return {"acceptance_length": float(tau)}
    if tot.get("_rounded"):
        warn(sink, source, "llamacpp:spec_decode_num_drafts_total", "llama-server prints counters with six "
             "significant digits: counters past 10^6 are rounded and their delta is approximate",
             "restart the server between sweeps to keep the counters small")
    out = {"draft_tokens": draft, "accepted_tokens": acc, "num_drafts": drafts, **prefill_timing(tot)}
    prefix = _PREFIX.get(engine, "vllm:")
    if drafts > 0 and acc >= 0:
        out["acceptance_length"] = 1.0 + acc / drafts
    else:
        warn(sink, source, f"{prefix}spec_decode_num_drafts_total", "no speculative step between the scrapes "
             "(0 drafts): no acceptance recorded", "scrape before and after the run, with traffic in between")
    pos = {p: v for p, v in tot.get("per_pos", {}).items() if p is not None}
    if pos:
        keys = sorted(pos, key=lambda p: int(p) if str(p).isdigit() else 0)
        out["k"] = len(keys)
        if drafts > 0:
            out["per_position_acceptance"] = format_per_position([pos[p] / drafts for p in keys])
    else:
        k = _k(draft, drafts, engine, source, sink)
        if k is not None:
            out["k"] = k
    return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


def prefill_timing(tot: dict) -> dict:
    """``{'prefill_ms_per_token': ms}`` from llama.cpp's prompt counters (totals or deltas): time spent
    processing prompts per prompt token processed; empty without both counters or without prompt tokens."""
    seconds, tokens = tot.get("prompt_seconds", math.nan), tot.get("prompt_tokens", math.nan)
    return {"prefill_ms_per_token": 1000.0 * seconds / tokens} if tokens > 0 and seconds > 0 else {}


def prefill_between(before: str, after: str, source: str) -> dict:
    """:func:`prefill_timing` between two scrapes' texts, for a server without speculation (whose
    scrape may carry no speculative counter for :func:`read_prometheus` to read); :func:`delta`
    subtracts and refuses a counter that went down."""
    return prefill_timing(delta(_prefill_totals(before, source), _prefill_totals(after, source), source))


def _prefill_totals(text: str, source: str) -> dict:
    """llama.cpp's prompt counters in one scrape (``{'prompt_seconds': s, 'prompt_tokens': n}``, those present)."""
    found: dict = {"_engine": "llama.cpp"}
    for line in text.splitlines():
        m = _LINE.match(line.strip()) if line.startswith(tuple(_PREFILL)) else None
        if m and m.group(1) in _PREFILL:
            try:
                found[_PREFILL[m.group(1)]] = float(m.group(3))
            except ValueError:
                raise TraceError(source, m.group(1), f"value {m.group(3)!r} is not a number",
                                 "give the /metrics text exposition unchanged") from None
    return found


def delta(before: dict, after: dict, source: str) -> dict:
    """Counter totals after - before (gauges: the after value); TraceError on a counter that went down."""
    engine = after.get("_engine", before.get("_engine", "vllm"))
    if before.get("_engine", engine) != engine:
        raise TraceError(source, None, f"scrapes of two engines ({before.get('_engine')}, {engine})",
                         "pair the before and after scrapes of one server")
    out: dict = {"per_pos": {}, "_engine": engine, "_rounded": bool(before.get("_rounded") or after.get("_rounded"))}
    for key in set(before) | set(after):
        if key.startswith("_"):
            continue
        if key == "per_pos":
            for p in set(before.get("per_pos", {})) | set(after.get("per_pos", {})):
                out["per_pos"][p] = after.get("per_pos", {}).get(p, 0.0) - before.get("per_pos", {}).get(p, 0.0)
            continue
        if key.endswith("_gauge"):
            if key in after:
                out[key] = after[key]
            continue
        out[key] = after.get(key, 0.0) - before.get(key, 0.0)
    prefix = _PREFIX.get(engine, "vllm:")
    exported = {**{v: f"{prefix}{_COUNTERS}{k}_total" for k, v in _KEYS.items()}, **{v: k for k, v in _PREFILL.items()}}
    neg = [exported[k] for k in sorted(out) if k in exported and k != "per_pos" and out[k] < 0]
    neg += [exported["per_pos"] for p, v in out["per_pos"].items() if v < 0]
    if neg:
        raise TraceError(source, neg[0], "a counter went down between the scrapes "
                         "(server restarted?)", "scrape the same server process before and after the run")
    return out


def read_prometheus(path) -> Parsed:
    """Read a Prometheus text scrape; ``Parsed.acceptance`` holds the run's acceptance
    (two scrapes in the file) or, for one scrape, the totals under ``'_totals'``."""
    source = str(path)
    text = read_text(path)
    engine, scrapes, times = _parse(text, source)
    out = Parsed(path=source, fmt=f"{engine} prometheus", info={**server_info(text), "engine": engine})
    out.scrapes = list(zip(times, scrapes))
    if len(scrapes) == 1:
        out.acceptance = {"_totals": scrapes[0]}
        return out
    if len(scrapes) > 2:
        warn(out.warnings, source, None, f"{len(scrapes)} scrapes in the file: using the first and the last",
             "keep one scrape before and one after the run")
    out.acceptance = totals_to_acceptance(delta(scrapes[0], scrapes[-1], source), source, out.warnings)
    return out
