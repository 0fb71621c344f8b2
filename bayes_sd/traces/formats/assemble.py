"""Parsed benchmark outputs -> canonical runs.

For each run read from a tool's output: the run id is ``<file stem>:<run key>`` (made
unique across inputs); the speculative configuration is resolved (:mod:`.labels`);
acceptance-only inputs (Prometheus scrapes, vLLM logs) are attached to the run named by
``attach_to`` (flags or sidecar), or to the only run when there is one. Request rows are
aggregated with :func:`~bayes_sd.traces.aggregate.aggregate_runs`, so every source gets
the same run statistics. Window policy, per run:

- rows without send times: never trimmed;
- ``warmup_s`` / ``cooldown_s`` given by the caller: applied to every other run;
- else the tool's own measurement window when it records one (GuideLLM warm-up /
  cool-down): rows outside it are dropped, nothing more is trimmed;
- else ``aggregate_runs``' default (``trim_frac`` of the span at each end).

Rows without send times (vLLM 0.14 / SGLang details) keep exact latency statistics; their
rates come from the file's duration. Run-level acceptance (``spec_decode_*``, a scrape, a
log) fills the acceptance columns a run's requests leave empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..aggregate import aggregate_runs
from ..schema import RUNS, TraceError
from ..validate import validate_runs
from .base import ACCEPT_COLS, Parsed, warn
from .labels import Sidecar, resolve
from .prometheus import delta, totals_to_acceptance

__all__ = ["assemble"]

_RUN_COLS = [c.name for c in RUNS]


def _pair_scrapes(parsed: list, sink: list) -> None:
    """Single-scrape Prometheus files: two -> their delta (in the later file), one -> cumulative."""
    single = [p for p in parsed if p.acceptance and "_totals" in p.acceptance]
    if len(single) > 2:
        raise TraceError(", ".join(p.path for p in single), None, f"{len(single)} single-scrape /metrics files",
                         "give one before and one after scrape (or one file holding both) per ingest")
    if len(single) == 2:
        a, b = sorted(single, key=lambda p: (p.acceptance["_totals"].get("num_drafts", 0),
                                             p.acceptance["_totals"].get("draft_tokens", 0)))
        src = f"{a.path} -> {b.path}"
        b.acceptance = totals_to_acceptance(delta(a.acceptance["_totals"], b.acceptance["_totals"], src), src, sink)
        a.acceptance = None
    elif len(single) == 1:
        p = single[0]
        warn(sink, p.path, None, "one /metrics scrape: its counters are cumulative since the server started",
             "scrape before and after the run (two files, or both scrapes in one file) to get the run's delta")
        p.acceptance = totals_to_acceptance(p.acceptance["_totals"], p.path, sink)


def _attach(parsed: list, runs: list, target, sink: list) -> None:
    for p in parsed:
        if not p.acceptance:
            continue
        if not runs:
            raise TraceError(p.path, None, "acceptance data but no benchmark run among the inputs",
                             "give the benchmark's output (GuideLLM / vllm bench / SGLang) in the same ingest")
        if target is None:
            if len(runs) > 1:
                raise TraceError(p.path, "attach_to", f"acceptance data but {len(runs)} runs to attach it to "
                                 f"(e.g. {runs[0][1]}, {runs[1][1]})", "name the run: --label attach_to=RUN_ID "
                                 "or `attach_to: RUN_ID` in the sidecar (run id, benchmark index or strategy)")
            hit = runs[0]
        else:
            hits = [r for r in runs if str(target) in [r[1], r[2].key] + [str(a) for a in r[2].aliases]]
            if len(hits) != 1:
                raise TraceError(p.path, "attach_to", f"attach_to {target!r} matches {len(hits)} runs",
                                 f"use one run id among: {', '.join(r[1] for r in runs[:6])}")
            hit = hits[0]
        run = hit[2]
        if run.acceptance:
            warn(sink, p.path, None, f"run {hit[1]} already has acceptance from its own file: replaced by "
                 "this file's", "give one acceptance source per run")
        run.acceptance = dict(p.acceptance)


_EXT = (".json", ".jsonl", ".yaml", ".yml", ".csv", ".txt", ".log", ".prom")


def _stem(path: str) -> str:
    name = Path(path).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    return next((name[: -len(e)] for e in _EXT if name.lower().endswith(e)), name)


def _run_ids(parsed: list) -> list:
    out, used = [], set()
    for p in parsed:
        for run in p.runs:
            rid = f"{_stem(p.path)}:{run.key}"
            base, n = rid, 1
            while rid in used:
                n += 1
                rid = f"{base}~{n}"
            used.add(rid)
            out.append((p, rid, run))
    return out


def assemble(parsed: list[Parsed], *, flags: dict, sidecar: Sidecar | None, attach_to=None,
             warmup_s: float | None = None, cooldown_s: float | None = None, trim_frac: float = 0.1,
             sink: list | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Canonical runs of the parsed files, and the request rows usable for the
    latency-trend saturation check (None if there are none)."""
    sink = [] if sink is None else sink
    _pair_scrapes(parsed, sink)
    runs = _run_ids([p for p in parsed if p.runs])
    _attach([p for p in parsed if not p.runs], runs, attach_to, sink)
    groups: dict = {}
    bare, trend = [], []
    for p, rid, run in runs:
        spec = resolve(source=p.path, run_id=rid, names=[run.key] + [str(a) for a in run.aliases],
                       file_labels=p.labels, run_labels=run.labels, recorded=p.recorded, inferred=run.acceptance,
                       flags=flags, sidecar=sidecar, sink=sink)
        meta = {"run_id": rid, "source": p.path, **spec, "load_type": run.load_type, "rate_rps": run.rate_rps,
                "concurrency": run.concurrency, "n_errored": run.n_errored, "n_incomplete": run.n_incomplete,
                "saturated": run.saturated, "saturation_reason": run.saturation_reason}
        if run.requests is None:
            bare.append({**meta, **run.stats, **{c: run.acceptance.get(c, math.nan) for c in ACCEPT_COLS}})
            continue
        req = run.requests
        if run.clockless:
            policy = (0.0, 0.0)
        elif warmup_s is not None or cooldown_s is not None:
            policy = (warmup_s, cooldown_s)
        elif run.window is not None:
            a, b = run.window
            inside = (req["start_s"] >= a) & (req["end_s"] <= b)
            if inside.any():
                req = req[inside]
            else:
                warn(sink, p.path, "scheduler_metrics.measure_start_time", f"run {rid}: no request inside the "
                     "measurement window: kept them all", "check the warm-up / cool-down settings")
            policy = (0.0, 0.0)
        else:
            policy = (None, None)
        req = req.assign(run_id=rid)
        g = groups.setdefault((p.path, policy), {"req": [], "meta": [], "runs": []})
        g["req"].append(req)
        g["meta"].append(meta)
        g["runs"].append(run)
        if not run.clockless:
            trend.append(req)
    out = []
    for (path, (w, c)), g in groups.items():
        meta = pd.DataFrame(g["meta"])
        meta["saturated"] = meta["saturated"].astype("object")
        req = pd.concat(g["req"], ignore_index=True) if len(g["req"]) > 1 else g["req"][0]
        agg = aggregate_runs(req, meta, warmup_s=w, cooldown_s=c, trim_frac=trim_frac, detect=False,
                             validate=True, source=path, meta_source=f"{path} (run settings)")
        agg = agg.set_index("run_id")
        for m, run in zip(g["meta"], g["runs"]):
            rid = m["run_id"]
            for col, val in run.stats.items():  # clockless rows: rates from the file's duration
                agg.loc[rid, col] = val
            for col in ACCEPT_COLS:
                if col in run.acceptance and pd.isna(agg.loc[rid, col]):
                    agg.loc[rid, col] = run.acceptance[col]
        out.append(agg.reset_index()[_RUN_COLS])
    if bare:
        df = pd.DataFrame(bare)
        df["saturated"] = df["saturated"].astype("object")
        out.append(validate_runs(df, ", ".join(sorted(set(df["source"]))), require_stats=False))
    runs_df = pd.concat(out, ignore_index=True) if out else None
    trend_df = pd.concat(trend, ignore_index=True) if trend else None
    if runs_df is not None:
        runs_df["saturated"] = runs_df["saturated"].astype("boolean")
    return runs_df, trend_df
