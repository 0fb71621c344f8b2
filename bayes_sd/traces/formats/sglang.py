"""SGLang ``bench_serving`` output (``python -m sglang.bench_serving`` /
``sglang.benchmark.serving``): JSON Lines, one object per run, appended.

``request_rate`` may be the non-standard JSON token ``Infinity`` (accepted here). A finite
rate is an open-loop run; ``Infinity`` with ``max_concurrency`` N is closed loop at N;
``Infinity`` without a cap sends everything at once (concurrency = completed requests,
flagged saturated). With ``--output-details`` the per-request lists (seconds; no send
times) give request rows whose latency is ``ttfts[i] + sum(itls[i])``; otherwise the
aggregates (``*_ms``; note ``e2e_latency``, not vLLM's ``e2el``) are used.

``accept_length`` is read from the server's ``/get_server_info``: it is cumulative since
the server started, not limited to this run, so it is recorded with a warning.
``server_info`` gives the verifier (``model_path``) and the speculative configuration
(``speculative_algorithm``, ``speculative_draft_model_path``, ``speculative_num_steps``), and its
``version`` the engine version (tool ``sglang-bench``, engine ``sglang``). A server started with
``SGLANG_SIMULATE_ACC_LEN`` (pinned acceptance) does not say so in ``server_info``: mark such runs
``acceptance: pinned`` in a sidecar or the manifest.
"""

from __future__ import annotations

import math

from ..schema import TraceError
from .base import (
    Parsed,
    RunData,
    get,
    load_json_objects,
    num,
    rates_from_duration,
    read_text,
    warn,
)
from .vllm_bench import request_rows, summary_stats

__all__ = ["read_sglang"]


def _server_labels(info) -> dict:
    if not isinstance(info, dict):
        return {}
    out = {}
    algo = info.get("speculative_algorithm")
    if "speculative_algorithm" in info and algo in (None, "", "NONE", "None"):
        out.update(k=0, drafter="none")
    elif isinstance(algo, str):
        draft = info.get("speculative_draft_model_path")
        out["drafter"] = draft if isinstance(draft, str) and draft else algo.lower()
        steps = info.get("speculative_num_steps")
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
            out["k"] = steps
    return out


def read_sglang(path) -> Parsed:
    """Read an SGLang ``bench_serving`` JSONL file."""
    source = str(path)
    out = Parsed(path=source, fmt="sglang bench_serving", info={"tool": "sglang-bench", "engine": "sglang"})
    objs = load_json_objects(read_text(path), source)
    for j, d in enumerate(objs):
        if not isinstance(d, dict):
            raise TraceError(source, None, f"line {j + 1} is a {type(d).__name__}, not a result object",
                             "give the JSONL file bench_serving wrote")
        rate = num(d.get("request_rate"), source, "request_rate") if d.get("request_rate") != "trace" else None
        if rate is None or math.isnan(rate) or rate <= 0:
            raise TraceError(source, "request_rate", f"run {j}: request_rate {d.get('request_rate')!r} is not a "
                             "fixed rate", "benchmark fixed rates (a positive number or inf)")
        mc = num(d.get("max_concurrency"), source, "max_concurrency")
        sat, reason = None, ""
        if math.isfinite(rate):
            label, load_type, conc = f"rate@{rate:g}", "rate", math.nan
        elif math.isfinite(mc) and mc >= 1:
            label, load_type, conc, rate = f"concurrency@{mc:g}", "concurrency", mc, math.nan
        else:
            conc = num(d.get("completed"), source, "completed")
            label, load_type, rate = f"burst@{conc:g}", "concurrency", math.nan
            sat, reason = True, "request_rate inf without max_concurrency: every request sent at once"
        key = f"{j}:{label}" if len(objs) > 1 else label
        run = RunData(key=key, load_type=load_type, rate_rps=rate, concurrency=conc, aliases=[str(j), label],
                      saturated=sat, saturation_reason=reason)
        info = d.get("server_info")
        model = get(info, "model_path")
        if isinstance(model, str) and model:
            out.recorded.setdefault("verifier", model)
        if isinstance(d.get("dataset_name"), str) and d["dataset_name"]:
            out.recorded.setdefault("dataset", d["dataset_name"])
        run.labels = _server_labels(info)
        version = get(info, "version")
        if isinstance(version, str) and version.strip():
            run.info["engine_version"] = version.strip()
        if "ttfts" in d:
            run.requests, run.n_errored, run.clockless = request_rows(d, source, key, out.warnings, e2e="e2e_latency")
            run.stats = rates_from_duration(run.requests, num(d.get("duration"), source, "duration"))
            if len(run.requests) == 0:
                warn(out.warnings, source, "errors", f"run {key} has no successful request: skipped",
                     "check the server and the errors list")
                continue
        else:
            run.stats = summary_stats(d, source, e2e="e2e_latency", sink=out.warnings)
            if not run.stats["n_requests"] >= 1:
                warn(out.warnings, source, "completed", f"run {key} completed no request: skipped",
                     "check the server and the benchmark's errors")
                continue
        tau = num(d.get("accept_length"), source, "accept_length")
        if tau > 0:
            warn(out.warnings, source, "accept_length", f"run {key}: accept_length {tau:g} is the server's "
                 "average since it started, not this run's alone", "restart the server before each run (or "
                 "scrape sglang:spec_accept_length per run) for a per-run value")
            run.acceptance = {"acceptance_length": tau}
        out.runs.append(run)
    if not out.runs:
        raise TraceError(source, "completed", "no run with successful requests",
                         "give a result file whose runs completed requests")
    return out
