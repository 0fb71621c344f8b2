"""GuideLLM benchmark reports: JSON and YAML of every schema generation, and the CSV.

Schema generations (see ``shared/design/TRACE_FORMATS.md`` section 1):

========== ======================== ==============================================
generation GuideLLM                 marker
========== ======================== ==============================================
legacy     0.1 - 0.3                no ``metadata``; benchmark ``args`` / ``run_stats``
0.4        0.4.x                    no ``metadata``; top-level ``args``
v1         0.5 - 0.6                ``metadata.version == 1``
v2         0.7 - 0.8                ``metadata.version == 2`` (top-level ``config``)
========== ======================== ==============================================

Each benchmark is one run. The rate setting is the strategy GuideLLM actually ran
(``benchmarks[i].config.strategy``, legacy ``args.strategy``):

- ``constant`` / ``poisson`` (``async``): open loop, ``load_type='rate'``, ``rate_rps`` = rate,
  ``arrival_cv2`` 0 (evenly spaced) / 1 (Poisson);
- ``concurrent``: closed loop, ``concurrency`` = streams; ``synchronous``: concurrency 1;
- ``throughput`` (everything sent at once, at most ``max_concurrency`` in flight):
  recorded as closed loop with ``concurrency`` = the peak number of requests actually
  in flight (at most ``max_concurrency``), and flagged ``saturated`` (the server is
  driven at capacity by design: a capacity probe, not a steady-state load level);
- ``trace`` (replay): open loop at the request rate observed over the run (warning).

Request times: ``info.timings`` (epoch seconds; ``first_token_iteration``,
``last_token_iteration``), legacy flat ``start_time`` / ``first_token_time`` /
``last_token_time``; when timings are absent, ``request_start_time`` +
``time_to_first_token_ms`` / 1000 and ``request_latency`` (s). Per-request speculative
counts come from ``response_metrics.speculative_decoding`` (GuideLLM 0.8 passing
vLLM's per-request metrics through; vLLM >= 0.29 ``--per-request-spec-decode-metrics``, with a list
histogram) or ``response_metrics.speculative_decoding_stats`` (the per-choice shape of vLLM PR 48915,
with a dict histogram ``{"0": 39, ...}``); both carry ``num_spec_steps``,
``num_accepted_draft_tokens`` and ``num_draft_tokens``, and when the counts are missing the
histogram gives the steps and the accepted tokens (and ``num_spec_tokens`` x steps the drafted
ones). Errored and incomplete requests are counted, never used in latency statistics.
``metadata.guidellm_version`` (0.5 on) is recorded as the run's ``tool_version``.
The tool's own warm-up / cool-down window (``scheduler_metrics.measure_start_time`` /
``measure_end_time``) is kept when the report sets one. The CSV (:mod:`.guidellm_csv`) has run-level rows only.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import TraceError
from ._guidellm_json import BATCH_KEY, FIELDS, HISTOGRAM, records_to_columns, stream_report
from .base import Parsed, RunData, finish_requests, get, num, read_text, warn

__all__ = ["read_guidellm", "strategy_load", "strategy_arrival_cv2"]

#: squared coefficient of variation of the inter-arrival times of GuideLLM's open-loop strategies
_ARRIVAL_CV2 = {"constant": 0.0, "poisson": 1.0}

_VERSIONS = {1: "v1 (GuideLLM 0.5-0.6)", 2: "v2 (GuideLLM 0.7-0.8)"}
_NAMES = {"start_s": "info.timings.request_start", "first_token_s": "info.timings.first_token_iteration",
          "end_s": "info.timings.last_token_iteration", "prompt_tokens": "prompt_tokens",
          "output_tokens": "output_tokens", "request_id": "request_id"}
_LEGACY_NAMES = {"start_s": "start_time", "first_token_s": "first_token_time", "end_s": "last_token_time",
                 "prompt_tokens": "prompt_tokens", "output_tokens": "output_tokens", "request_id": "request_id"}


def _load(path, fmt: str, source: str):
    if fmt == "guidellm_yaml":
        import yaml

        try:
            tree = yaml.safe_load(read_text(path))
        except yaml.YAMLError as e:
            raise TraceError(source, None, f"not valid YAML ({str(e).splitlines()[0]})",
                             "re-copy the complete report; it must be GuideLLM's YAML output unchanged") from None
        return tree, []
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            return stream_report(fh, source)
    except (OSError, EOFError) as e:
        raise TraceError(source, None, f"cannot read the file ({e})", "re-copy the complete report") from None


def _generation(tree, source: str) -> str:
    if not isinstance(tree, dict) or not isinstance(tree.get("benchmarks"), list):
        raise TraceError(source, "benchmarks", "no 'benchmarks' list at the top level",
                         "give a GuideLLM report (benchmarks.json / .yaml) as GuideLLM wrote it")
    meta = tree.get("metadata")
    if isinstance(meta, dict) and "version" in meta:
        v = meta["version"]
        if v not in _VERSIONS:
            raise TraceError(source, "metadata.version", f"unknown GuideLLM report schema version {v!r} "
                             f"(this reader knows legacy <= 0.3, 0.4, v1 = 0.5-0.6, v2 = 0.7-0.8)",
                             "export the report with a supported GuideLLM (e.g. `guidellm export` from 0.8), "
                             "or report the new version to bayes_sd")
        return f"v{v}"
    bench = tree["benchmarks"]
    if isinstance(tree.get("args"), dict):
        return "0.4"
    if bench and isinstance(bench[0], dict) and ("run_stats" in bench[0] or "args" in bench[0]):
        return "legacy"
    return "0.4"


def strategy_arrival_cv2(kind) -> float:
    """Squared coefficient of variation of the inter-arrival times of a GuideLLM strategy type: 0 for
    ``constant`` (evenly spaced), 1 for ``poisson``, NaN for the others (closed loops, trace replay)."""
    return _ARRIVAL_CV2.get(str(kind), math.nan)


def strategy_load(strategy, source: str, where: str, sink: list) -> tuple[str, str, float, float, bool]:
    """(label, load_type, rate_rps, concurrency, throughput) of a GuideLLM strategy dict."""
    if not isinstance(strategy, dict):
        raise TraceError(source, where, "the benchmark has no strategy (rate setting)",
                         "give the report as GuideLLM wrote it: each benchmark records its strategy")
    kind = strategy.get("type_", strategy.get("kind"))
    if kind == "synchronous":
        return "synchronous", "concurrency", math.nan, 1.0, False
    if kind == "concurrent":
        streams = num(strategy.get("streams"), source, f"{where}.streams")
        if not (streams >= 1 and math.isfinite(streams)):
            raise TraceError(source, f"{where}.streams", f"concurrent strategy with streams {streams}",
                             "restore the number of streams (a positive integer)")
        return f"concurrent@{streams:g}", "concurrency", math.nan, streams, False
    if kind == "throughput":
        return "throughput", "concurrency", math.nan, num(strategy.get("max_concurrency"), source, where), True
    if kind in ("constant", "poisson", "async"):
        rate = num(strategy.get("rate"), source, f"{where}.rate")
        if not (rate > 0 and math.isfinite(rate)):
            raise TraceError(source, f"{where}.rate", f"{kind} strategy with rate {rate}",
                             "restore the request rate (requests/s, positive and finite)")
        return f"{kind}@{rate:.4g}", "rate", rate, math.nan, False
    if kind == "trace":
        return "trace", "rate", math.nan, math.nan, False
    raise TraceError(source, f"{where}.type_", f"unknown strategy type {kind!r}", "supported: synchronous, "
                     "concurrent, throughput, constant, poisson, async, trace")


def _first_valid(*arrays):
    out = np.array(arrays[0], dtype="float64", copy=True)
    for a in arrays[1:]:
        miss = np.isnan(out)
        if not miss.any():
            break
        out[miss] = np.asarray(a, dtype="float64")[miss]
    return out


def _columns(lst, batches, source, where):
    """Concatenated flat columns of one request list (batch markers and/or dicts)."""
    if lst is None:
        return None
    if not isinstance(lst, list):
        raise TraceError(source, where, f"expected a list of request records, found {type(lst).__name__}",
                         "restore the report as GuideLLM wrote it")
    parts, pending = [], []
    for r in lst:
        if isinstance(r, dict) and BATCH_KEY in r and len(r) == 1:
            if pending:
                parts.append(records_to_columns(pending, source))
                pending = []
            parts.append(batches[r[BATCH_KEY]])
        else:
            pending.append(r)
    if pending:
        parts.append(records_to_columns(pending, source))
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in (*FIELDS, HISTOGRAM)}


def _partial(cols, primary: str, source: str, run: str, sink) -> None:
    """Warn when some records lack a field that the others have (a fallback is used)."""
    miss = np.isnan(cols[primary])
    if sink is not None and miss.any() and not miss.all():
        warn(sink, source, ".".join(FIELDS[primary]), f"run {run}: {int(miss.sum())} of {len(miss)} requests lack it "
             "(NaN or missing): derived from the other time fields", "check those records (edited or corrupt?)")


def _canonical(cols, source: str = "", run: str = "", sink=None) -> pd.DataFrame:
    for primary in ("t_request_start", "t_first_token", "t_last_token"):
        _partial(cols, primary, source, run, sink)
    start = _first_valid(cols["request_start_time"], cols["t_request_start"], cols["t_resolve_start"],
                         cols["start_time"])
    first = _first_valid(cols["t_first_token"], cols["first_token_time"], start + cols["time_to_first_token_ms"] / 1e3)
    end = _first_valid(cols["t_last_token"], cols["last_token_time"], cols["t_request_end"],
                       cols["request_end_time"], cols["end_time"], start + cols["request_latency"])
    n = len(start)
    rid = cols["request_id"]
    miss = pd.isna(rid)
    if miss.any():
        rid = rid.copy()
        rid[miss] = [f"#{i}" for i in np.flatnonzero(miss)]
    return pd.DataFrame({"request_id": rid.astype(str) if n else np.array([], dtype=str), "start_s": start,
                         "first_token_s": first, "end_s": end, "prompt_tokens": cols["prompt_tokens"],
                         "output_tokens": cols["output_tokens"], "draft_tokens": cols["sd_draft_tokens"],
                         "accepted_tokens": cols["sd_accepted_tokens"], "num_drafts": cols["sd_num_drafts"],
                         "acceptance_histogram": cols.get(HISTOGRAM, np.full(n, None, dtype=object))})


def _unit_checks(cols, req: pd.DataFrame, source: str, run: str):
    s = req["start_s"].to_numpy()
    if len(s) and np.nanmedian(s) > 1e11:
        raise TraceError(source, "request_start_time", f"run {run}: timestamps look like epoch milliseconds "
                         f"(median {np.nanmedian(s):.4g})", "GuideLLM writes epoch seconds: divide the times by 1000")
    used_ttft = np.isnan(cols["t_first_token"]) & np.isnan(cols["first_token_time"])
    if used_ttft.any():
        ttft = cols["time_to_first_token_ms"][used_ttft] / 1e3
        lat = (req["end_s"] - req["start_s"]).to_numpy()[used_ttft]
        if np.nanmedian(ttft) > np.nanmedian(lat) > 0:
            raise TraceError(source, "time_to_first_token_ms", f"run {run}: TTFT exceeds the request latency "
                             "(milliseconds vs seconds mix-up?)", "time_to_first_token_ms is in ms, request_latency "
                             "in s: fix the edited values")


def _peak_in_flight(req: pd.DataFrame) -> float:
    if len(req) == 0:
        return math.nan
    t = np.concatenate([req["start_s"].to_numpy(), req["end_s"].to_numpy()])
    step = np.concatenate([np.ones(len(req)), -np.ones(len(req))])
    order = np.lexsort((step, t))  # ends before starts at equal times
    return float(np.cumsum(step[order]).max())


def _benchmark(b, i: int, gen: str, batches, source: str, sink: list) -> RunData | None:
    where = f"benchmarks[{i}]"
    if not isinstance(b, dict):
        raise TraceError(source, where, f"expected a benchmark object, found {type(b).__name__}",
                         "restore the report as GuideLLM wrote it")
    strat = get(b, "args", "strategy") if gen == "legacy" else get(b, "config", "strategy")
    label, load_type, rate, conc, thru = strategy_load(strat, source, f"{where}.config.strategy", sink)
    reqs = b.get("requests")
    if not isinstance(reqs, dict):
        raise TraceError(source, f"{where}.requests", "the benchmark has no request records",
                         "give the JSON/YAML report with its requests (the CSV has run-level rows only)")
    cols = {st: _columns(reqs.get(st), batches, source, f"{where}.requests.{st}")
            for st in ("successful", "errored", "incomplete")}
    key = f"{i}:{label}"
    names = _LEGACY_NAMES if gen == "legacy" else _NAMES
    ok_cols = cols["successful"]
    req = _canonical(ok_cols, source, key, sink) if ok_cols is not None else pd.DataFrame(columns=list(_canonical(
        {k: np.array([], dtype=object if k in ("request_id", "status") else "float64") for k in FIELDS})))
    if len(req):
        _unit_checks(ok_cols, req, source, key)
    req, empty = finish_requests(req, np.ones(len(req), dtype=bool), source, key, names, sink)
    counts = {st: (len(c["request_id"]) if c is not None else 0) for st, c in cols.items()}
    total = {st: math.nan for st in counts}  # requests made (the lists may be a sample): largest count recorded
    for made in (get(b, "scheduler_metrics", "requests_made"), get(b, "run_stats", "requests_made"),
                 get(b, "request_totals")):
        for st in counts:
            v = num(get(made, st), source, f"{where}.requests_made.{st}")
            total[st] = v if math.isnan(total[st]) or v > total[st] else total[st]
    if math.isfinite(total["successful"]) and total["successful"] > counts["successful"] > 0:
        warn(sink, source, f"{where}.requests.successful", f"run {key} keeps {counts['successful']} of "
             f"{int(total['successful'])} successful requests (sampled report): statistics use the sample",
             "rerun without --sample-requests / metrics sample_size to keep every request")
    n_err = max(counts["errored"], int(total["errored"]) if math.isfinite(total["errored"]) else 0) + empty
    n_inc = max(counts["incomplete"], int(total["incomplete"]) if math.isfinite(total["incomplete"]) else 0)
    if len(req) == 0:
        warn(sink, source, f"{where}.requests.successful", f"run {key} has no successful request "
             f"({n_err} errored, {n_inc} incomplete): skipped", "check the server and the benchmark's errors")
        return None
    sat, reason = None, ""
    if thru:
        peak = _peak_in_flight(req)
        conc = min(conc, peak) if math.isfinite(conc) else peak
        sat, reason = True, ("GuideLLM throughput strategy: all requests released at once (capacity probe, "
                             f"not a steady-state load); peak {peak:g} in flight")
    if load_type == "rate" and not math.isfinite(rate):
        span = float(req["start_s"].max() - req["start_s"].min())
        rate = (len(req) - 1) / span if span > 0 else math.nan
        if not math.isfinite(rate):
            raise TraceError(source, f"{where}.config.strategy", f"trace replay run {key} with too few "
                             "requests to estimate its rate", "give the rate in a sidecar override or drop the run")
        warn(sink, source, f"{where}.config.strategy", f"run {key} replays a trace: recorded as open loop at the "
             f"observed {rate:.4g} requests/s", "check that a fixed-rate model fits a replayed trace")
    window = None
    ms, me = get(b, "scheduler_metrics", "measure_start_time"), get(b, "scheduler_metrics", "measure_end_time")
    rs, re_ = get(b, "scheduler_metrics", "request_start_time"), get(b, "scheduler_metrics", "request_end_time")
    wd = num(b.get("warmup_duration"), source, f"{where}.warmup_duration")
    cd = num(b.get("cooldown_duration"), source, f"{where}.cooldown_duration")
    if ms is not None and me is not None:
        ms_, me_ = num(ms, source, "measure_start_time"), num(me, source, "measure_end_time")
        rs_ = num(rs, source, "request_start_time") if rs is not None else ms_
        re2 = num(re_, source, "request_end_time") if re_ is not None else me_
        if (wd > 0 or cd > 0 or ms_ > rs_ + 1e-6 or me_ < re2 - 1e-6) and me_ > ms_:
            window = (ms_, me_)
    return RunData(key=key, load_type=load_type, rate_rps=rate, concurrency=conc,
                   arrival_cv2=strategy_arrival_cv2(strat.get("type_", strat.get("kind"))),
                   aliases=[str(i), label, str(strat.get("type_", "")), str(get(b, "config", "id_") or b.get("id_"))],
                   requests=req, window=window, n_errored=n_err, n_incomplete=n_inc, saturated=sat,
                   saturation_reason=reason,
                   span=(float(req["start_s"].min()), float(req["end_s"].max())))  # epoch seconds


def _recorded(tree, gen: str) -> dict:
    b0 = tree["benchmarks"][0] if tree["benchmarks"] and isinstance(tree["benchmarks"][0], dict) else {}
    model = (get(b0, "config", "backend", "model") or get(tree, "config", "spec", "backend", "model")
             or get(tree, "args", "model") or get(b0, "worker", "backend_model"))
    data = get(tree, "config", "spec", "data") or get(tree, "args", "data") or get(b0, "request_loader", "data")
    if isinstance(data, list):
        data = data[0] if data else None
    if isinstance(data, dict):
        data = data.get("path") or data.get("kind")
    out = {}
    if isinstance(model, str) and model:
        out["verifier"] = model
    if isinstance(data, str) and data:
        out["dataset"] = Path(data).stem if ("/" in data or "." in data) and "=" not in data else data
    return out


def read_guidellm(path, fmt: str = "guidellm_json") -> Parsed:
    """Read a GuideLLM JSON (``fmt='guidellm_json'``) or YAML (``'guidellm_yaml'``) report."""
    source = str(path)
    tree, batches = _load(path, fmt, source)
    gen = _generation(tree, source)
    out = Parsed(path=source, fmt=f"guidellm {gen}", info={"tool": "guidellm"})
    version = get(tree, "metadata", "guidellm_version")
    if isinstance(version, str) and version.strip():
        out.info["tool_version"] = version.strip()
    labels = get(tree, "config", "metadata", "labels")
    if isinstance(labels, dict):
        out.labels = {str(k): v for k, v in labels.items()}
    out.recorded = _recorded(tree, gen)
    for i, b in enumerate(tree["benchmarks"]):
        run = _benchmark(b, i, gen, batches, source, out.warnings)
        if run is not None:
            out.runs.append(run)
    if not out.runs:
        raise TraceError(source, "benchmarks", "no benchmark with successful requests",
                         "give a report whose benchmarks completed requests")
    return out
