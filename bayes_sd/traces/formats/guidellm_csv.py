"""GuideLLM's CSV export (``benchmarks.csv``): run-level rows only.

Three header rows (group, name, unit/statistic), then one row per benchmark; the
``Percentiles`` cell is a string ``[min, p001, p01, p05, p10, p25, p75, p90, p95, p99,
max]`` (no p50: the ``Median`` column is used). The rate comes from the strategy display
name (``constant@18.08``: rounded as GuideLLM prints it; the JSON report has the exact
value). ``tpot_mean_s`` is GuideLLM's inter-token latency (per token after the first),
not its ``Time per Output Token`` (which includes the TTFT).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from ..schema import TraceError
from .base import Parsed, RunData, get, read_text, warn
from .guidellm import strategy_arrival_cv2, strategy_load

__all__ = ["read_guidellm_csv"]

_PCT = re.compile(r"[-+0-9.eEinfaINF]+")


def read_guidellm_csv(path) -> Parsed:
    """Read GuideLLM's CSV (3 header rows, one row per benchmark): run-level statistics."""
    source = str(path)
    rows = list(csv.reader(io.StringIO(read_text(path))))
    if len(rows) < 4 or len({len(r) for r in rows[:3]}) != 1:
        raise TraceError(source, None, "a GuideLLM CSV needs 3 header rows and one row per benchmark",
                         "give the CSV as GuideLLM wrote it (or the JSON report, which has per-request data)")
    head = [(a.strip(), b.strip(), c.strip()) for a, b, c in zip(*rows[:3])]
    out = Parsed(path=source, fmt="guidellm csv", info={"tool": "guidellm"})

    def cell(row, group, name, stat=""):
        for j, h in enumerate(head):
            if h == (group, name, stat) and j < len(row):
                return row[j].strip()
        return ""

    def f(row, group, name, stat="", scale=1.0):
        v = cell(row, group, name, stat)
        if v == "":
            return math.nan
        try:
            return float(v) * scale
        except ValueError:
            raise TraceError(source, f"{group} / {name} / {stat}".rstrip(" /"), f"not a number: {v[:40]!r}",
                             "give the CSV as GuideLLM wrote it") from None

    for n, row in enumerate(rows[3:]):
        if not any(c.strip() for c in row):
            continue
        strat = cell(row, "Benchmark", "Strategy")
        kind, _, val = strat.partition("@")
        d = {"type_": kind}
        if kind == "concurrent":
            d["streams"] = val
        elif kind in ("constant", "poisson", "async"):
            d["rate"] = val
        elif kind == "throughput":
            d["max_concurrency"] = val or None
        label, load_type, rate, conc, thru = strategy_load(d, source, f"row {n + 4}: Benchmark / Strategy",
                                                           out.warnings)
        idx = cell(row, "Run Info", "Run Index") or str(n)
        ok = f(row, "Request Counts", "Successful")
        dur = f(row, "Timings", "Duration", "Sec")
        pct = cell(row, "Request Latency", "Successful Sec", "Percentiles")
        pv = [float(x) for x in _PCT.findall(pct)] if pct else []
        stats = {"n_requests": ok, "latency_mean_s": f(row, "Request Latency", "Successful Sec", "Mean"),
                 "latency_p50_s": f(row, "Request Latency", "Successful Sec", "Median"),
                 "latency_sd_s": f(row, "Request Latency", "Successful Sec", "Std Dev"),
                 "latency_p90_s": pv[7] if len(pv) == 11 else math.nan,
                 "latency_p99_s": pv[9] if len(pv) == 11 else math.nan,
                 "ttft_mean_s": f(row, "Time to First Token", "Successful ms", "Mean", 1e-3),
                 "ttft_p50_s": f(row, "Time to First Token", "Successful ms", "Median", 1e-3),
                 "tpot_mean_s": f(row, "Inter Token Latency", "Successful ms", "Mean", 1e-3),
                 "prompt_len": f(row, "Token Metrics", "Successful Input Tokens", "Mean"),
                 "output_len": f(row, "Token Metrics", "Successful Output Tokens", "Mean"),
                 "output_len_sd": f(row, "Token Metrics", "Successful Output Tokens", "Std Dev")}
        if not ok >= 1:
            warn(out.warnings, source, "Request Counts / Successful", f"row {n + 4} ({strat}) has no successful "
                 "request: skipped", "check the server and the benchmark's errors")
            continue
        if dur > 0:
            stats["achieved_rps"] = ok / dur
            stats["output_tps"] = ok * stats["output_len"] / dur
        sat, reason = (True, "GuideLLM throughput strategy (capacity probe, not a steady-state load)") if thru \
            else (None, "")
        if thru:  # peak in flight = the max (last value) of the concurrency distribution
            cp = cell(row, "Server Throughput", "Successful Concurrency", "Percentiles")
            peak = float(_PCT.findall(cp)[-1]) if cp and _PCT.findall(cp) else math.nan
            conc = min(conc, peak) if math.isfinite(conc) and peak >= 1 else (peak if peak >= 1 else ok)
        out.runs.append(RunData(key=f"{idx}:{label}", load_type=load_type, rate_rps=rate, concurrency=conc,
                                arrival_cv2=strategy_arrival_cv2(kind), aliases=[idx, label, kind], stats=stats,
                                n_errored=int(f(row, "Request Counts", "Errored") or 0),
                                n_incomplete=int(f(row, "Request Counts", "Incomplete") or 0),
                                saturated=sat, saturation_reason=reason))
        try:
            args = json.loads(cell(row, "Runtime Info", "Arguments") or "{}")
            backend = json.loads(cell(row, "Run Info", "Backend") or "{}")
        except json.JSONDecodeError:
            args, backend = {}, {}
        labels = get(args, "metadata", "labels")
        data = get(args, "spec", "data")
        data = data[0] if isinstance(data, list) and data else None
        if isinstance(get(data, "path"), str) and data["path"]:
            out.recorded["dataset"] = Path(data["path"]).stem
        if isinstance(labels, dict):
            out.labels.update({str(k): v for k, v in labels.items()})
        if isinstance(backend, dict) and isinstance(backend.get("model"), str) and backend["model"]:
            out.recorded["verifier"] = backend["model"]
    if not out.runs:
        raise TraceError(source, "Request Counts / Successful", "no benchmark row with successful requests",
                         "give a GuideLLM CSV whose benchmarks completed requests")
    return out
