"""``vllm bench serve`` result JSON (``--save-result``), with or without ``--save-detailed``.

One JSON object per run; ``--append-result`` makes the file JSON Lines (one run a line).
The load setting: a finite ``request_rate`` (requests/s; Poisson or Gamma arrivals of shape
``burstiness``, recorded as ``arrival_cv2 = 1 / burstiness``) is an open-loop run
(``load_type='rate'``); ``request_rate`` ``"inf"`` with ``max_concurrency`` N is closed loop at N
streams; ``"inf"`` without a cap sends every request at t = 0 and is recorded as concurrency =
``num_prompts``, flagged saturated. Ramp-up runs are refused.

With ``--save-detailed`` the parallel per-request lists (seconds) become request rows:
``start_times`` are ``time.perf_counter()`` readings (monotonic, arbitrary origin: only
differences are used), first token = start + ``ttfts[i]``, end = start + ``latencies[i]``
(0.32+) or + ``ttfts[i] + sum(itls[i])``. Files without ``start_times`` (vLLM 0.14) give
rows without send times: their latency statistics are exact, their rates come from
``duration``. Failed requests (``errors[i] != ''``) are counted in ``n_errored``. Without
``--save-detailed`` the run-level aggregates (``*_ms``, milliseconds) are converted to
seconds. ``spec_decode_*`` keys (vLLM 0.14+: deltas of the server's counters over the
run) give the run's acceptance; ``spec_decode_acceptance_rate`` is a PERCENT and
``spec_decode_acceptance_length`` includes the bonus token. ``--metadata KEY=VALUE``
keys (top-level, not vLLM's own) are read as labels (e.g. ``hardware=H100``).

Per-request speculative-decoding metrics never reach these files: of the server's per-request
``metrics`` object ``vllm bench serve`` (0.33, ``vllm/benchmarks/serve.py``) keeps only
``server_queue_times`` and ``server_ttfts``, so acceptance comes from ``spec_decode_*`` (or a
scrape / log). The file records neither the client's nor the server's version: the tool is
recorded as ``vllm-bench`` without a version (give it in a sidecar or manifest).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from ..schema import TraceError
from ..validate import format_per_position
from .base import (
    Parsed,
    RunData,
    finish_requests,
    load_json_objects,
    num,
    rates_from_duration,
    read_text,
    warn,
)

__all__ = ["read_vllm_bench", "VLLM_KEYS"]

_LISTS = ("input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "queue_times",
          "generated_texts", "errors", "server_queue_times", "server_ttfts")
#: Keys vLLM itself writes (anything else at the top level came from ``--metadata``).
VLLM_KEYS = frozenset(_LISTS) | {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
    "burstiness", "max_concurrency", "ramp_up_strategy", "ramp_up_start_rps", "ramp_up_end_rps", "duration",
    "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
    "request_goodput:", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
    "max_concurrent_requests", "rtfx", "rps_change_events", "best_of", "use_beam_search", "tokenizer_mode",
    "spec_decode_acceptance_rate", "spec_decode_acceptance_length", "spec_decode_num_drafts",
    "spec_decode_draft_tokens", "spec_decode_accepted_tokens", "spec_decode_per_position_acceptance_rates"}
_NAMES = {"start_s": "start_times", "first_token_s": "ttfts", "end_s": "latencies", "prompt_tokens": "input_lens",
          "output_tokens": "output_lens", "request_id": "index"}


_AGG = re.compile(r"^(mean|median|std|p\d+(\.\d+)?)_.+_ms$")


def _is_meta(k: str) -> bool:
    return k not in VLLM_KEYS and not _AGG.match(k) and not k.startswith("diffusion_")


def _load_type(d: dict, source: str, run: str, sink: list):
    if d.get("ramp_up_strategy") not in (None, "", "none"):
        raise TraceError(source, "ramp_up_strategy", f"run {run} ramps its request rate "
                         f"({d['ramp_up_strategy']}): not one load level",
                         "benchmark fixed rates (no --ramp-up-strategy)")
    if "request_rate" not in d:
        raise TraceError(source, "request_rate", f"run {run} does not record its request rate",
                         "give the result file as vLLM wrote it")
    rate = num(d["request_rate"], source, "request_rate")
    mc = num(d.get("max_concurrency"), source, "max_concurrency")
    if math.isnan(rate) or rate <= 0:
        raise TraceError(source, "request_rate", f"run {run}: request_rate {d['request_rate']!r}",
                         "a positive number or \"inf\" is expected")
    if math.isfinite(rate):
        return f"rate@{rate:g}", "rate", rate, math.nan, None, ""
    if math.isfinite(mc) and mc >= 1:
        return f"concurrency@{mc:g}", "concurrency", math.nan, mc, None, ""
    n = num(d.get("num_prompts"), source, "num_prompts")
    return (f"burst@{n:g}", "concurrency", math.nan, n, True,
            "request_rate inf without max_concurrency: every request sent at once (not a steady-state load)")


def _arrival_cv2(d: dict, load_type: str, source: str) -> float:
    """An open loop's inter-arrival squared coefficient of variation: gamma arrivals of shape ``burstiness``
    (default 1, Poisson) have ``1 / burstiness``; NaN for a closed loop."""
    if load_type != "rate":
        return math.nan
    shape = num(d.get("burstiness", 1.0), source, "burstiness")
    if not (shape > 0):
        raise TraceError(source, "burstiness", f"burstiness {d.get('burstiness')!r}",
                         "give the result file as vLLM wrote it (a positive gamma shape; 1 = Poisson)")
    return 1.0 / shape


def _acceptance(d: dict, source: str, run: str, sink: list) -> dict:
    if not any(k.startswith("spec_decode_") for k in d):
        return {}
    acc = num(d.get("spec_decode_accepted_tokens"), source, "spec_decode_accepted_tokens")
    draft = num(d.get("spec_decode_draft_tokens"), source, "spec_decode_draft_tokens")
    drafts = num(d.get("spec_decode_num_drafts"), source, "spec_decode_num_drafts")
    tau = num(d.get("spec_decode_acceptance_length"), source, "spec_decode_acceptance_length")
    rate = num(d.get("spec_decode_acceptance_rate"), source, "spec_decode_acceptance_rate")
    if draft > 0 and math.isfinite(rate):
        frac = acc / draft
        if rate <= 1.0 and abs(rate - frac) < abs(rate - 100 * frac) and frac > 0.01:
            warn(sink, source, "spec_decode_acceptance_rate", f"run {run}: {rate:g} looks like a fraction "
                 f"(the counts give {100 * frac:.3g}%); vLLM writes a percent", "the token counts are used")
        elif abs(rate - 100 * frac) > 1.0:
            warn(sink, source, "spec_decode_acceptance_rate", f"run {run}: {rate:g}% disagrees with the counts "
                 f"({100 * frac:.3g}%)", "the token counts are used: check the edited values")
    if drafts > 0 and math.isfinite(acc):
        calc = 1.0 + acc / drafts
        if math.isfinite(tau) and abs(tau - calc) > 0.05 * calc:
            warn(sink, source, "spec_decode_acceptance_length", f"run {run}: {tau:g} disagrees with 1 + accepted/"
                 f"drafts = {calc:.4g}", "the counts are used (acceptance length includes the bonus token)")
        tau = calc
    out = {"draft_tokens": draft, "accepted_tokens": acc, "num_drafts": drafts, "acceptance_length": tau}
    pos = d.get("spec_decode_per_position_acceptance_rates")
    if isinstance(pos, list) and pos:
        out["k"] = len(pos)
        rates = [num(v, source, "spec_decode_per_position_acceptance_rates") for v in pos]
        if all(0.0 <= r <= 1.0 for r in rates):
            out["per_position_acceptance"] = format_per_position(rates)
        else:
            warn(sink, source, "spec_decode_per_position_acceptance_rates", f"run {run}: {pos} are not fractions "
                 "in [0, 1]", "left out: the acceptance length and the token counts are used")
    elif drafts > 0 and draft > 0 and abs(draft / drafts - round(draft / drafts)) < 1e-9:
        out["k"] = int(round(draft / drafts))
    return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


def summary_stats(d: dict, source: str, e2e: str = "e2el", sink: list | None = None) -> dict:
    """Run statistics (s, requests/s, tokens) from a benchmark result's aggregate fields in ms
    (``mean_{e2e}_ms``, ``p90_{e2e}_ms``, ``mean_ttft_ms`` ...); shared with the SGLang reader."""
    def ms(key):
        v = num(d.get(key), source, key) / 1e3
        if key in d and math.isnan(v):
            warn(sink, source, key, "the value is NaN (no successful request?): left empty",
                 "check the run's errors; rerun if it failed")
        return v

    done = num(d.get("completed"), source, "completed")
    return {"n_requests": done, "latency_mean_s": ms(f"mean_{e2e}_ms"), "latency_sd_s": ms(f"std_{e2e}_ms"),
            "latency_p50_s": ms(f"median_{e2e}_ms"), "latency_p90_s": ms(f"p90_{e2e}_ms"),
            "latency_p99_s": ms(f"p99_{e2e}_ms"), "ttft_mean_s": ms("mean_ttft_ms"), "ttft_p50_s": ms("median_ttft_ms"),
            "tpot_mean_s": ms("mean_tpot_ms"),
            "prompt_len": num(d.get("total_input_tokens"), source, "total_input_tokens") / done if done else math.nan,
            "output_len": num(d.get("total_output_tokens"), source, "total_output_tokens") / done if done else math.nan,
            "achieved_rps": num(d.get("request_throughput"), source, "request_throughput"),
            "output_tps": num(d.get("output_throughput"), source, "output_throughput")}


def _vec(d: dict, key: str, n: int, source: str, run: str) -> np.ndarray:
    v = d[key]
    if not isinstance(v, list) or len(v) != n:
        raise TraceError(source, key, f"run {run}: expected a list of {n} values (one per request, like ttfts), "
                         f"found {type(v).__name__}" + (f" of {len(v)}" if isinstance(v, list) else ""),
                         "the parallel per-request lists must have equal lengths: re-save with --save-detailed")
    return np.array([num(x, source, f"{key}[{i}]") for i, x in enumerate(v)], dtype="float64")


def request_rows(d: dict, source: str, run: str, sink: list, e2e: str = "e2el"):
    """The per-request lists of a ``--save-detailed`` result (``ttfts``, ``itls``, ``{e2e}s`` ...) as
    request rows; returns ``(requests, n_errored, clockless)``. Shared with the SGLang reader."""
    ttfts = d["ttfts"]
    n = len(ttfts) if isinstance(ttfts, list) else -1
    if n < 0:
        raise TraceError(source, "ttfts", f"run {run}: expected a list", "re-save with --save-detailed")
    ttft = _vec(d, "ttfts", n, source, run)
    errs = d.get("errors")
    ok = (np.array([not e for e in errs], dtype=bool) if isinstance(errs, list) and len(errs) == n
          else np.ones(n, dtype=bool))
    if "latencies" in d:
        lat = _vec(d, "latencies", n, source, run)
    elif isinstance(d.get("itls"), list) and len(d["itls"]) == n:
        lat = np.empty(n)
        for i, gaps in enumerate(d["itls"]):
            if not isinstance(gaps, list):
                raise TraceError(source, f"itls[{i}]", f"run {run}: expected a list of chunk gaps (s)",
                                 "re-save with --save-detailed")
            lat[i] = ttft[i] + sum(num(g, source, f"itls[{i}]") for g in gaps)
    else:
        raise TraceError(source, "itls", f"run {run}: neither latencies nor itls for {n} requests",
                         "re-save with --save-detailed (both lists are written)")
    out_len = _vec(d, "output_lens", n, source, run) if "output_lens" in d else np.full(n, np.nan)
    in_len = _vec(d, "input_lens", n, source, run) if "input_lens" in d else np.full(n, np.nan)
    ok &= out_len > 0
    for key, val, agg in (("ttfts", ttft, "mean_ttft_ms"), ("latencies", lat, f"mean_{e2e}_ms")):
        ref = num(d.get(agg), source, agg)
        m = float(np.nanmean(val[ok])) if ok.any() else math.nan
        if ref > 0 and m > 0 and not 0.01 < (1e3 * m / ref) < 100:
            raise TraceError(source, key, f"run {run}: mean {m:.4g} vs {agg} {ref:.4g} ms: the per-request values "
                             f"are not in seconds", "vLLM writes per-request times in seconds: divide them by 1000")
    clockless = "start_times" not in d
    start = np.zeros(n) if clockless else _vec(d, "start_times", n, source, run)
    if not clockless and n:
        start = start - np.nanmin(start)  # perf_counter: arbitrary origin, only differences matter
    req = pd.DataFrame({"request_id": [str(i) for i in range(n)], "start_s": start, "first_token_s": start + ttft,
                        "end_s": start + lat, "prompt_tokens": in_len, "output_tokens": out_len,
                        "draft_tokens": np.nan, "accepted_tokens": np.nan, "num_drafts": np.nan})
    rows, empty = finish_requests(req, ok, source, run, _NAMES, sink)
    return rows, int((~ok).sum()) + empty, clockless


def read_vllm_bench(path) -> Parsed:
    """Read a ``vllm bench serve`` result file (JSON or JSON Lines)."""
    source = str(path)
    objs = load_json_objects(read_text(path), source)
    out = Parsed(path=source, fmt="vllm bench serve", info={"tool": "vllm-bench"})
    for j, d in enumerate(objs):
        if not isinstance(d, dict):
            raise TraceError(source, None, f"object {j} is a {type(d).__name__}, not a result object",
                             "give the file --save-result wrote")
        label, load_type, rate, conc, sat, reason = _load_type(d, source, str(j), out.warnings)
        key = f"{j}:{label}" if len(objs) > 1 else label
        run = RunData(key=key, load_type=load_type, rate_rps=rate, concurrency=conc, aliases=[str(j), label],
                      saturated=sat, saturation_reason=reason, arrival_cv2=_arrival_cv2(d, load_type, source))
        run.labels = {k: v for k, v in d.items() if _is_meta(k) and isinstance(v, (str, int, float))}
        if isinstance(d.get("model_id"), str) and d["model_id"]:
            out.recorded.setdefault("verifier", d["model_id"])
        failed = num(d.get("failed"), source, "failed")
        if "ttfts" in d:
            run.requests, run.n_errored, run.clockless = request_rows(d, source, key, out.warnings)
            if math.isfinite(failed) and failed > run.n_errored:
                run.n_errored = int(failed)
            if run.clockless:
                run.stats = rates_from_duration(run.requests, num(d.get("duration"), source, "duration"))
            if len(run.requests) == 0:
                warn(out.warnings, source, "errors", f"run {key} has no successful request: skipped",
                     "check the server and the errors list")
                continue
        else:
            run.stats = summary_stats(d, source, sink=out.warnings)
            run.n_errored = int(failed) if math.isfinite(failed) else 0
            if not run.stats["n_requests"] >= 1:
                warn(out.warnings, source, "completed", f"run {key} completed no request: skipped",
                     "check the server and the benchmark's errors")
                continue
            if math.isnan(run.stats["latency_mean_s"]):
                warn(out.warnings, source, "mean_e2el_ms", f"run {key} has no end-to-end latency (not among "
                     "--percentile-metrics): latency statistics left empty, TTFT/TPOT kept",
                     "rerun with --percentile-metrics ttft,tpot,itl,e2el (or --save-detailed)")
        run.acceptance = _acceptance(d, source, key, out.warnings)
        out.runs.append(run)
    if not out.runs:
        raise TraceError(source, "completed", "no run with successful requests",
                         "give a result file whose runs completed requests")
    return out
