"""vLLM Prometheus text exposition (``curl host:8000/metrics``) scraped around a run.

Counters (V1 engine; vLLM 0.10 - 0.33): ``vllm:spec_decode_num_drafts_total``,
``vllm:spec_decode_num_draft_tokens_total``, ``vllm:spec_decode_num_accepted_tokens_total``
and ``vllm:spec_decode_num_accepted_tokens_per_pos_total{position="j"}``; samples are
summed over the other labels (``engine`` for data-parallel servers, ``model_name``);
``*_created`` samples are skipped. The legacy V0 engine exports no ``num_drafts`` and
no k: its counters are refused (its log lines carry k and are read instead).

A file holding two scrapes (the same series twice, e.g. ``curl`` before and after the run
appended to one file) gives the delta; with more, first to last. Two single-scrape files
are paired by the ingest (:func:`delta`, the smaller counters being "before"). A single
scrape alone is cumulative since the server started (warning).

Result (``Parsed.acceptance``): ``draft_tokens``, ``accepted_tokens``, ``num_drafts``,
``acceptance_length`` (= 1 + accepted / drafts, bonus token included), ``k`` (number of
positions) and ``per_position`` (acceptance rate by position, fraction).
"""

from __future__ import annotations

import math
import re

from ..schema import TraceError
from .base import Parsed, read_text, warn

__all__ = ["read_prometheus", "delta", "totals_to_acceptance"]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_BASE = "vllm:spec_decode_num_"
_KEYS = {"drafts": "num_drafts", "draft_tokens": "draft_tokens", "accepted_tokens": "accepted_tokens",
         "emitted_tokens": "emitted_tokens", "accepted_tokens_per_pos": "per_pos"}


def _metric(name: str):
    if not name.startswith(_BASE) or name.endswith("_created"):
        return None
    short = name[len(_BASE):]
    short = short[:-6] if short.endswith("_total") else short
    return _KEYS.get(short)


def _parse(text: str, source: str) -> list[dict]:
    """Totals per scrape: [{'num_drafts': x, ..., 'per_pos': {pos: x}}, ...]."""
    seen: dict = {}  # series -> list of values in file order
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or not line.startswith("vllm:spec_decode"):
            continue
        m = _LINE.match(line)
        if not m:
            raise TraceError(source, None, f"line {n} is not a Prometheus sample: {line[:60]!r}",
                             "give the /metrics text exposition as scraped (curl HOST/metrics)")
        key = _metric(m.group(1))
        if key is None:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            raise TraceError(source, m.group(1), f"line {n}: value {m.group(3)!r} is not a number",
                             "give the /metrics text exposition unchanged") from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(source, m.group(1), f"line {n}: counter value {value}",
                             "counters are finite and non-negative: give the scrape unchanged")
        series = (key, labels.get("position") if key == "per_pos" else None, tuple(sorted(labels.items())))
        seen.setdefault(series, []).append(value)
    if not seen:
        raise TraceError(source, "vllm:spec_decode_num_drafts_total", "no vllm:spec_decode_* counters in the "
                         "file (speculative decoding off, or not a vLLM /metrics scrape)",
                         "scrape /metrics of a vLLM server started with --speculative-config")
    n_scrapes = max(len(v) for v in seen.values())
    scrapes = []
    for s in range(n_scrapes):
        tot: dict = {"per_pos": {}}
        for (key, pos, _), vals in seen.items():
            # a series seen fewer times than the scrape count appeared later: zero before
            v = vals[s - (n_scrapes - len(vals))] if s >= n_scrapes - len(vals) else 0.0
            if key == "per_pos":
                tot["per_pos"][pos] = tot["per_pos"].get(pos, 0.0) + v
            else:
                tot[key] = tot.get(key, 0.0) + v
        scrapes.append(tot)
    return scrapes


def totals_to_acceptance(tot: dict, source: str, sink: list) -> dict:
    """Acceptance record from counter totals (or deltas)."""
    acc, draft = tot.get("accepted_tokens", math.nan), tot.get("draft_tokens", math.nan)
    drafts = tot.get("num_drafts", math.nan)
    if math.isnan(drafts) and "emitted_tokens" in tot:
        raise TraceError(source, "vllm:spec_decode_num_emitted_tokens_total", "legacy V0 engine counters: the "
                         "number of drafts (verify steps) is not exported", "use the server log's 'Speculative "
                         "metrics' lines (they print k), or a V1-engine vLLM")
    out = {"draft_tokens": draft, "accepted_tokens": acc, "num_drafts": drafts}
    if drafts > 0 and acc >= 0:
        out["acceptance_length"] = 1.0 + acc / drafts
    else:
        warn(sink, source, "vllm:spec_decode_num_drafts_total", "no speculative step between the scrapes "
             "(0 drafts): no acceptance recorded", "scrape before and after the run, with traffic in between")
    pos = {p: v for p, v in tot.get("per_pos", {}).items() if p is not None}
    if pos:
        keys = sorted(pos, key=lambda p: int(p) if str(p).isdigit() else 0)
        out["k"] = len(keys)
        if drafts > 0:
            out["per_position"] = [pos[p] / drafts for p in keys]
    elif drafts > 0 and draft > 0 and abs(draft / drafts - round(draft / drafts)) < 1e-9:
        out["k"] = int(round(draft / drafts))
    return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


def delta(before: dict, after: dict, source: str) -> dict:
    """Counter totals after - before; TraceError on a counter that went down (restart)."""
    out: dict = {"per_pos": {}}
    for key in set(before) | set(after):
        if key == "per_pos":
            for p in set(before["per_pos"]) | set(after.get("per_pos", {})):
                out["per_pos"][p] = after.get("per_pos", {}).get(p, 0.0) - before["per_pos"].get(p, 0.0)
            continue
        out[key] = after.get(key, 0.0) - before.get(key, 0.0)
    exported = {v: f"{_BASE}{k}_total" for k, v in _KEYS.items()}
    neg = [exported[k] for k in sorted(out) if k != "per_pos" and out[k] < 0]
    neg += [exported["per_pos"] for p, v in out["per_pos"].items() if v < 0]
    if neg:
        raise TraceError(source, neg[0], "a counter went down between the scrapes "
                         "(server restarted?)", "scrape the same server process before and after the run")
    return out


def read_prometheus(path) -> Parsed:
    """Read a Prometheus text scrape; ``Parsed.acceptance`` holds the run's acceptance
    (two scrapes in the file) or, for one scrape, the totals under ``'_totals'``."""
    source = str(path)
    out = Parsed(path=source, fmt="vllm prometheus")
    scrapes = _parse(read_text(path), source)
    if len(scrapes) == 1:
        out.acceptance = {"_totals": scrapes[0]}
        return out
    if len(scrapes) > 2:
        warn(out.warnings, source, None, f"{len(scrapes)} scrapes in the file: using the first and the last",
             "keep one scrape before and one after the run")
    out.acceptance = totals_to_acceptance(delta(scrapes[0], scrapes[-1], source), source, out.warnings)
    return out
