"""Parsed benchmark outputs -> canonical runs.

For each run read from a tool's output: the run id is ``<file stem>:<run key>`` (made
unique across inputs), or the manifest point's id; the speculative configuration is resolved
(:mod:`.labels`), with the tool / engine names and versions and pinned acceptance. Acceptance-only
inputs (``/metrics`` scrapes, vLLM logs) are attached:

- to the run named by ``attach_to`` (flags or sidecar), or to the only run when there is one;
- else, for ``/metrics`` scrapes and several runs, by time: a pair of scrapes brackets a run when
  the earlier was taken at or before the run's first request and the later at or after its last
  response (runs need wall-clock times: GuideLLM and AIPerf record them, ``vllm bench serve`` and
  SGLang do not). A scrape's time is its samples' timestamp when the scrape has one, else the
  file's modification time (warning). Two runs between the same two scrapes (or a run inside
  another's pair) are ambiguous: an error that says how to disambiguate.

Request rows are aggregated with :func:`~bayes_sd.traces.aggregate.aggregate_runs`, so every
source gets the same run statistics. Window policy, per run:

- rows without send times: never trimmed;
- ``warmup_s`` / ``cooldown_s`` given by the caller: applied to every other run;
- else the tool's own measurement window when it records one (GuideLLM warm-up /
  cool-down): rows that start outside it are dropped, nothing more is trimmed;
- else ``aggregate_runs``' default (``trim_frac`` of the span at each end).

Rows without send times (vLLM 0.14 / SGLang details) keep exact latency statistics; their
rates come from the file's duration. Run-level acceptance (``spec_decode_*``, a scrape, a
log) fills the acceptance columns a run's requests leave empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..aggregate import aggregate_runs, started_inside
from ..schema import RUNS, TraceError
from ..validate import validate_runs
from .base import ACCEPT_COLS, SCRAPE_COLS, Parsed, warn
from .labels import Sidecar, resolve
from .prometheus import delta, totals_to_acceptance

__all__ = ["assemble"]

_RUN_COLS = [c.name for c in RUNS]
_INFO = ("tool", "tool_version", "engine", "engine_version")


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


def _give(run, acceptance: dict, info: dict, path: str, rid: str, sink: list) -> None:
    """Attach an acceptance record (and what its file says of the engine) to a run."""
    if run.acceptance and any(c in run.acceptance for c in ACCEPT_COLS):
        warn(sink, path, None, f"run {rid} already has acceptance from its own file: replaced by this file's",
             "give one acceptance source per run")
    run.acceptance = dict(acceptance)
    for key, val in info.items():
        run.info.setdefault(key, val)


def _attach(parsed: list, runs: list, target, sink: list) -> None:
    for p in parsed:
        if not p.acceptance:
            continue
        if not runs:
            raise TraceError(p.path, None, "acceptance data but no benchmark run among the inputs",
                             "give the benchmark's output (GuideLLM / vllm bench / SGLang / AIPerf) in the same ingest")
        if target is None:
            if len(runs) > 1:
                raise TraceError(p.path, "attach_to", f"acceptance data but {len(runs)} runs to attach it to "
                                 f"(e.g. {runs[0][1]}, {runs[1][1]})", "name the run: --attach-to RUN_ID "
                                 "or `attach_to: RUN_ID` in the sidecar (run id, benchmark index or strategy), or "
                                 "ingest the sweep folder with its manifest.json")
            hit = runs[0]
        else:
            hits = [r for r in runs if str(target) in [r[1], r[2].key] + [str(a) for a in r[2].aliases]]
            if len(hits) != 1:
                raise TraceError(p.path, "attach_to", f"attach_to {target!r} matches {len(hits)} runs",
                                 f"use one run id among: {', '.join(r[1] for r in runs[:6])}")
            hit = hits[0]
        _give(hit[2], p.acceptance, p.info, p.path, hit[1], sink)


_FIX_MATCH = ("give a manifest.json with each point's metrics_before / metrics_after (bayes-sd ingest DIR), or "
              "one run with its scrapes per ingest (--attach-to RUN_ID)")


def _scrape_points(proms: list, sink: list) -> list:
    """(time, totals, path) of every scrape, by time; a scrape without a timestamp takes its file's mtime."""
    points, by_mtime = [], []
    for p in proms:
        stamps = [t for t, _ in p.scrapes]
        if len(p.scrapes) == 1 and stamps[0] is None:
            by_mtime.append(p.path)
            stamps = [Path(p.path).stat().st_mtime]
        elif any(t is None for t in stamps):
            raise TraceError(p.path, "attach_to", f"{len(p.scrapes)} scrapes in one file without sample timestamps: "
                             "they cannot be matched to runs by time", _FIX_MATCH)
        points += [(t, tot, p.path) for t, (_, tot) in zip(stamps, p.scrapes)]
    if by_mtime:
        warn(sink, ", ".join(by_mtime), None, "the /metrics scrapes carry no timestamps: matched to the runs by "
             "the files' modification times", "keep the files' times when copying them (cp -p, rsync -t), or "
             "use a manifest.json that names each run's scrapes")
    return sorted(points, key=lambda x: x[0])


def _match_by_time(proms: list, runs: list, sink: list) -> None:
    """Attach to each run the delta of the scrapes that bracket it (see the module docstring)."""
    timeless = [rid for _, rid, run in runs if run.span is None]
    if timeless:
        raise TraceError(", ".join(sorted({p.path for p in proms})), "attach_to", f"/metrics scrapes for {len(runs)} "
                         f"runs, but run {timeless[0]} has no wall-clock times (vllm bench serve and SGLang record "
                         "none) to match them by", _FIX_MATCH)
    points = _scrape_points(proms, sink)
    times = [t for t, _, _ in points]
    chosen = {}
    for _, rid, run in runs:
        start, end = run.span
        before = max((i for i, t in enumerate(times) if t <= start), default=None)
        after = min((i for i, t in enumerate(times) if t >= end), default=None)
        if before is None or after is None:
            warn(sink, rid, None, "no /metrics scrape before and after this run: no acceptance from the scrapes",
                 "scrape /metrics right before and right after each run")
            continue
        chosen[rid] = (before, after)
    for _, rid, _run in runs:
        if rid not in chosen:
            continue
        b, a = chosen[rid]
        others = [r2 for _, r2, run2 in runs if r2 != rid and run2.span[0] < times[a] and run2.span[1] > times[b]]
        if others:
            raise TraceError(f"{points[b][2]} -> {points[a][2]}", "attach_to", f"the scrape pair brackets run "
                             f"{rid} and also run {others[0]}: the counters' delta cannot be split between them",
                             "scrape /metrics between the runs, or " + _FIX_MATCH)
    kv_of = {p.path: {"kv_cache_tokens": p.info["kv_cache_tokens"]} for p in proms if "kv_cache_tokens" in p.info}
    used = set()
    for _, rid, run in runs:
        if rid in chosen:
            b, a = chosen[rid]
            used |= {b, a}
            src = f"{points[b][2]} -> {points[a][2]}"
            acc = totals_to_acceptance(delta(points[b][1], points[a][1], src), src, sink)
            said = {**kv_of.get(points[a][2], {}), "engine": points[a][1].get("_engine", "vllm")}
            _give(run, acc, said, src, rid, sink)
    unused = sorted({points[i][2] for i in range(len(points)) if i not in used})
    if unused:
        warn(sink, ", ".join(unused), None, "this /metrics scrape brackets no run: not used",
             "check the scrape times against the runs' times")


_EXT = (".json", ".jsonl", ".yaml", ".yml", ".csv", ".txt", ".log", ".prom")


def _stem(path: str) -> str:
    name = Path(path).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    return next((name[: -len(e)] for e in _EXT if name.lower().endswith(e)), name)


def _run_ids(parsed: list) -> list:
    out, used = [], set()
    for p in parsed:
        for run in p.runs:
            rid = run.run_id or f"{_stem(p.path)}:{run.key}"
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
    runs = _run_ids([p for p in parsed if p.runs])
    extra = [p for p in parsed if not p.runs]
    proms = [p for p in extra if p.fmt.endswith("prometheus")]
    if attach_to is None and len(runs) > 1 and proms:
        _match_by_time(proms, runs, sink)
        extra = [p for p in extra if p not in proms]
    else:
        _pair_scrapes(parsed, sink)
    _attach(extra, runs, attach_to, sink)
    groups: dict = {}
    bare, trend = [], []
    for p, rid, run in runs:
        if not run.load_type:
            raise TraceError(p.path, "load", f"run {rid}: the file does not record its load (rate or concurrency)",
                             "keep the tool's summary file beside it (AIPerf: profile_export_aiperf.json), or ingest "
                             "the sweep folder with its manifest.json")
        spec = resolve(source=p.path, run_id=rid, names=[run.key] + [str(a) for a in run.aliases],
                       file_labels=p.labels, run_labels=run.labels, recorded=p.recorded, inferred=run.acceptance,
                       flags=flags, sidecar=sidecar, sink=sink, forced=run.forced, info={**p.info, **run.info})
        pinned = spec.pop("acceptance", "measured") == "pinned"
        info = {c: str(spec.pop(c)) for c in _INFO if c in spec}
        meta = {"run_id": rid, "source": p.path, **spec, "load_type": run.load_type, "rate_rps": run.rate_rps,
                "arrival_cv2": run.arrival_cv2 if run.load_type == "rate" else math.nan,
                "concurrency": run.concurrency, "n_errored": run.n_errored, "n_incomplete": run.n_incomplete,
                "saturated": run.saturated, "saturation_reason": run.saturation_reason, "acceptance_pinned": pinned,
                **info}
        if run.requests is None:
            bare.append({**meta, **run.stats, **{c: run.acceptance.get(c, math.nan) for c in SCRAPE_COLS}})
            continue
        req = run.requests
        if run.clockless:
            policy = (0.0, 0.0)
        elif warmup_s is not None or cooldown_s is not None:
            policy = (warmup_s, cooldown_s)
        elif run.window is not None:
            a, b = run.window
            inside = started_inside(req["start_s"], a, b)
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
            for col in SCRAPE_COLS:
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
