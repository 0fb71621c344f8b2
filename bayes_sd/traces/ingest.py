"""Turn a set of trace files (or sweep folders) into one canonical runs table (and a models table).

:func:`ingest_paths` is what ``bayes-sd ingest FILE|DIR... --out runs.csv`` runs. Each file's
format is detected from its content (:func:`~bayes_sd.traces.formats.detect_format`):
benchmark outputs (GuideLLM reports, ``vllm bench serve`` results, SGLang ``bench_serving``
JSONL, AIPerf ``profile_export.jsonl``, ``/metrics`` scrapes of vLLM, llama.cpp and SGLang, vLLM
logs) go through :mod:`bayes_sd.traces.formats` (one run per benchmark, requests aggregated with
``aggregate_runs``, the speculative configuration from labels, flags or a sidecar YAML); a
sidecar YAML among the files is used as ``sidecar``. Canonical tables' kind is detected from
their columns (:func:`~bayes_sd.traces.io.read_table`):

- ``runs`` tables are validated; their rows either are runs with their own statistics,
  or are the run metadata (``require_stats=False``) of request files given alongside;
- ``requests`` tables are aggregated (:func:`~bayes_sd.traces.aggregate.aggregate_runs`)
  with the metadata rows of matching ``run_id``;
- ``real_long`` files (the bundled real measurements) go through
  :func:`~bayes_sd.traces.real.real_long_to_runs`;
- ``models`` tables are validated and returned separately.

A folder is ingested whole. With a ``manifest.json`` (:mod:`bayes_sd.traces.manifest`) its done
points are read: each point's report with the point's configuration as labels (its load checked
against the report's), its ``metrics_before`` / ``metrics_after`` scrapes giving the run's
acceptance (the delta; the report's own acceptance wins when it has one), its ``log`` (vLLM: engine
version, pinned acceptance, KV cache size), the tool and engine names and versions, the server command's
batch cap and KV cache size (``kv_cache_from_command``), the point's id as run id. A setting the
point's configuration, a sidecar or a flag gives wins over what the command, the scrapes and the log say.
Without a manifest every file in the folder is read (recursively, hidden files skipped; files of
no known format are skipped with a warning), the sidecar's ``files:`` patterns mapping files to
configurations, and scrapes are matched to runs by time.

Saturation is then detected for every run whose ``saturated`` is not given, over the
whole table (per configuration, :func:`~bayes_sd.traces.aggregate.detect_saturation`) and
with all request rows (latency trends), unless switched off; runs can be kept (never flagged)
or dropped by id, each reported. Runs whose acceptance the engine pinned keep it only in
``pinned_acceptance_length``. Without a models table among the inputs, one is built from the
bundled catalogue (:mod:`bayes_sd.traces.catalogue`) for the verifiers and drafters it knows.
Files are only read.
"""

from __future__ import annotations

import copy
import glob
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bayes_sd._progress import progress_bar

from .aggregate import aggregate_runs, check_run_ids, fill_saturation
from .aggregate import keep_runs as _unflag
from .catalogue import models_for
from .formats import detect_format, read_format
from .formats.assemble import assemble
from .formats.base import TraceWarning, read_text, warn
from .formats.labels import Sidecar, batch_cap_from_command, kv_cache_from_command, load_sidecar, normalize
from .formats.prometheus import delta, prefill_between, server_info, totals_to_acceptance
from .formats.vllm_logs import log_server_info
from .io import read_table
from .manifest import MANIFEST_NAME, read_manifest
from .real import real_long_to_runs
from .schema import TraceError
from .validate import empty_table, validate_models, validate_requests, validate_runs

__all__ = ["IngestResult", "ingest_paths", "expand_paths"]

#: Run columns that count as an observation for a run given without request rows.
_OBSERVED = ["latency_mean_s", "ttft_mean_s", "ttft_p50_s", "tpot_mean_s", "output_tps", "acceptance_length"]
_GLOB = re.compile(r"[*?\[]")
#: GuideLLM 0.7.4 bounded the requests that count toward token metrics to outside warm-up / cool-down.
_GUIDELLM_CHANGE = (0, 7, 4)


@dataclass
class IngestResult:
    """Result of :func:`ingest_paths`.

    Parameters
    ----------
    runs : pandas.DataFrame
        Validated canonical runs table (sorted by source, run_id), saturation filled.
    models : pandas.DataFrame
        Validated canonical models table: the one among the inputs, else the catalogue's rows for
        the verifiers and drafters it knows (no rows when none).
    warnings : list of str
        One-line messages (file, field, fix) about usable but doubtful input, runs dropped or kept
        by request, runs the light-load guard kept from being flagged, in order; each was also
        issued as a :class:`~bayes_sd.traces.formats.TraceWarning`.
    formats : dict of str to str
        The detected format of each input file (files of folders included).
    """

    runs: pd.DataFrame
    models: pd.DataFrame
    warnings: list = field(default_factory=list)
    formats: dict = field(default_factory=dict)


@dataclass
class _Inputs:
    files: list = field(default_factory=list)       # plain files, in order
    formats: dict = field(default_factory=dict)
    manifests: list = field(default_factory=list)   # manifest.json paths
    walked: set = field(default_factory=set)        # files found by walking a folder (lenient)


def _no_dup(df: pd.DataFrame, key: str, origin: pd.Series, what: str) -> None:
    dup = df[key].duplicated(keep=False)
    if dup.any():
        name = df.loc[dup, key].iloc[0]
        files = sorted(set(origin[dup & (df[key] == name)]))
        raise TraceError(", ".join(files), key, f"{what} '{name}' appears in more than one row or file",
                         f"give each {what} once across all inputs")


def _note(sink: list, msg: str) -> None:
    sink.append(msg)
    warnings.warn(msg, TraceWarning, stacklevel=3)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def expand_paths(paths) -> list[str]:
    """Input paths as files: folders walked recursively (hidden files and folders skipped, sorted),
    glob patterns expanded (shells do it for the command line), files kept. A folder with a
    ``manifest.json`` yields only the manifest."""
    out = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if (p / MANIFEST_NAME).is_file():
                out.append(str(p / MANIFEST_NAME))
                continue
            found = sorted(q for q in p.rglob("*") if q.is_file() and not _hidden(q, p))
            if not found:
                raise TraceError(str(p), None, "the folder holds no (visible) file", "give a folder of trace files")
            out += [str(q) for q in found]
        elif not p.exists() and _GLOB.search(str(raw)):
            hits = sorted(glob.glob(str(raw), recursive=True))
            if not hits:
                raise TraceError(str(raw), None, "the pattern matches no file", "check the pattern")
            out += expand_paths(hits)
        else:
            out.append(str(raw))
    return out


def _inputs(paths, sink: list) -> _Inputs:
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else paths)]
    if not paths:
        raise TraceError("ingest", None, "no input files", "give at least one trace file or folder")
    inp = _Inputs()
    walked = set()
    for raw in paths:
        if Path(raw).is_dir():
            walked |= set(expand_paths([raw]))
    skipped = []
    for p in dict.fromkeys(expand_paths(paths)):
        try:
            fmt = detect_format(p)
        except TraceError as e:
            if p in walked and ("cannot tell what this file is" in e.problem or "empty" in e.problem):
                skipped.append(p)
                continue
            raise
        if fmt == "manifest":
            inp.manifests.append(p)
        elif fmt == "aiperf_summary" and p in walked:
            continue  # read with the AIPerf JSONL beside it
        else:
            inp.files.append(p)
        inp.formats[p] = fmt
    if skipped:
        warn(sink, ", ".join(skipped), None, f"{len(skipped)} file(s) of no known format in the folder: skipped",
             "remove them, or give a trace file of a supported format (see bayes-sd ingest --help)")
    inp.walked = walked
    return inp


def _flags(labels):
    flags = {k: v for k, v in (labels or {}).items() if v is not None}
    attach = flags.pop("attach_to", None)
    return normalize(flags, "flags", "--verifier/--drafter/--k/--hardware/--dataset", strict=True), attach


def _sidecar(sidecar, inp: _Inputs) -> Sidecar | None:
    cars = ([str(sidecar)] if sidecar is not None else []) + [p for p in inp.files if inp.formats[p] == "sidecar"]
    if len(cars) > 1:
        raise TraceError(", ".join(cars), None, "more than one sidecar YAML", "merge them into one file")
    return load_sidecar(cars[0]) if cars else None


def _load_matches(run, load: dict) -> bool:
    value = float(load["value"])
    if run.load_type != load["type"]:
        return False
    have = run.rate_rps if run.load_type == "rate" else run.concurrency
    return math.isfinite(have) and abs(have - value) <= 0.01 * max(abs(value), 1e-9)


def _describe(run) -> str:
    if not run.load_type:
        return "no load"
    return f"rate {run.rate_rps:g} req/s" if run.load_type == "rate" else f"concurrency {run.concurrency:g}"


def _point_scrapes(point, source: str, sink: list) -> tuple[dict | None, dict]:
    """Acceptance from a point's metrics_before / metrics_after (None without both), and the engine."""
    before, after = point.files.get("metrics_before"), point.files.get("metrics_after")
    if not before and not after:
        return None, {}
    if not (before and after):
        warn(sink, source, "files.metrics_before" if not before else "files.metrics_after", f"point {point.id} "
             "has one /metrics scrape: no acceptance delta from it", "give both scrapes of the point")
        return None, {}
    for f in (before, after):
        if detect_format(f) != "prometheus":
            raise TraceError(f, None, f"point {point.id}: not a /metrics scrape",
                             "name the scrape file in the manifest")
    if int(point.configuration.get("k", 0)) == 0:  # no speculation: its prefill timing and what it says of the server
        after_text = read_text(after)
        return prefill_between(read_text(before), after_text, f"{before} -> {after}") or None, server_info(after_text)
    parsed = []
    for f in (before, after):
        parsed.append(read_format(f, "prometheus"))
        sink.extend(parsed[-1].warnings)
    src = f"{before} -> {after}"
    acc = totals_to_acceptance(delta(parsed[0].scrapes[-1][1], parsed[1].scrapes[-1][1], src), src, sink)
    return acc, dict(parsed[1].info)


def _manifest_parsed(path: str, sink: list, formats: dict) -> list:
    """One Parsed per done point of a manifest, holding the point's run with its id, configuration,
    load, acceptance and tool / engine information."""
    points = read_manifest(path)
    cache: dict = {}
    out, left = [], []
    for pt in points:
        if pt.status != "done":
            left.append(f"{pt.id} ({pt.status}{': ' + pt.error if pt.error else ''})")
            continue
        report = pt.files["report"]
        if report not in cache:
            fmt = detect_format(report)
            formats[report] = fmt
            if fmt in ("table", "sidecar", "manifest", "prometheus", "vllm_log", "aiperf_summary"):
                raise TraceError(report, None, f"point {pt.id}: the report is a {fmt} file, not a benchmark output",
                                 "name the load generator's output in files.report")
            cache[report] = read_format(report, fmt)
            sink.extend(cache[report].warnings)
        parsed = cache[report]
        hits = [r for r in parsed.runs if _load_matches(r, pt.load)]
        if not hits and len(parsed.runs) == 1 and not parsed.runs[0].load_type:
            hits = [parsed.runs[0]]
            hits[0].load_type = pt.load["type"]
            if pt.load["type"] == "rate":
                hits[0].rate_rps = float(pt.load["value"])
            else:
                hits[0].concurrency = float(pt.load["value"])
        if len(hits) != 1:
            found = ", ".join(_describe(r) for r in parsed.runs[:4])
            raise TraceError(report, "load", f"point {pt.id}: the manifest says {pt.load['type']} "
                             f"{pt.load['value']:g} but the report ran {found}",
                             f"correct the point's load or its report in {path}")
        run = copy.copy(hits[0])
        cfg = {k: v for k, v in pt.configuration.items() if k != "name"}
        for key, info in (("tool", pt.tool), ("engine", pt.engine)):
            if isinstance(info, dict) and info.get("name"):
                cfg[key] = str(info["name"])
                if info.get("version"):
                    cfg[f"{key}_version"] = str(info["version"])
        run.run_id, run.forced, run.info = pt.id, cfg, dict(run.info)
        server = (pt.commands or {}).get("server")  # what the files say: below the configuration, flags, sidecar
        for key, value in (("max_num_seqs", batch_cap_from_command(server)),
                           ("kv_cache_tokens", kv_cache_from_command(server))):
            if value is not None:
                run.info[key] = value
        acc, engine = _point_scrapes(pt, path, sink)
        if acc and not any(c in run.acceptance for c in ("acceptance_length", "num_drafts")):
            run.acceptance = {**acc, **({"k": run.acceptance["k"]} if "k" in run.acceptance else {})}
        elif acc and "prefill_ms_per_token" in acc:  # the report's own acceptance wins; the timing is the scrapes'
            run.acceptance = {**run.acceptance, "prefill_ms_per_token": acc["prefill_ms_per_token"]}
        for key, val in engine.items():
            run.info.setdefault(key, val)
        log = pt.files.get("log")
        if log and Path(log).is_file():
            try:
                is_vllm = detect_format(log) == "vllm_log"
            except TraceError:
                is_vllm = False
            if is_vllm:
                lp = read_format(log, "vllm_log")
                sink.extend(lp.warnings)
                for key, val in lp.info.items():
                    run.info.setdefault(key, val)
                if lp.acceptance and not run.acceptance:
                    run.acceptance = dict(lp.acceptance)
            else:  # a server without speculation logs no metric lines, but its start-up still says its cache
                try:
                    said = log_server_info(read_text(log))
                except TraceError:  # not a text log
                    said = {}
                for key, val in said.items():
                    run.info.setdefault(key, val)
        out.append(_with_run(parsed, run))
    if left:
        warn(sink, path, "points[].status", f"{len(left)} point(s) not done, not ingested: {', '.join(left[:8])}"
             + (" ..." if len(left) > 8 else ""), "rerun them (bayes-sd sweep) to measure those loads")
    return out


def _with_run(parsed, run):
    p = copy.copy(parsed)
    p.runs, p.warnings = [run], []
    return p


def _version(text: str) -> tuple | None:
    m = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    return tuple(int(x or 0) for x in m.groups()) if m else None


def _guidellm_versions(runs: pd.DataFrame, sink: list) -> None:
    """One warning when GuideLLM reports from before and from 0.7.4 on are pooled."""
    g = runs[(runs["tool"] == "guidellm") & (runs["tool_version"] != "")]
    if g.empty:
        return
    ver = g["tool_version"].map(_version)
    old = g[ver.map(lambda v: v is not None and v < _GUIDELLM_CHANGE)]
    new = g[ver.map(lambda v: v is not None and v >= _GUIDELLM_CHANGE)]
    if len(old) and len(new):
        def files(df):
            return ", ".join(f"{s} ({v})" for s, v in dict(zip(df["source"], df["tool_version"])).items())
        warn(sink, f"{files(old)} and {files(new)}", "tool_version", "GuideLLM reports from before 0.7.4 and from "
             "0.7.4 on are pooled: 0.7.4 changed which requests count toward the token metrics",
             "compare or fit them apart (e.g. one ingest per GuideLLM version)")


def ingest_paths(paths, *, labels: dict | None = None, sidecar=None, warmup_s: float | None = None,
                 cooldown_s: float | None = None, trim_frac: float = 0.1, progress: bool = False,
                 saturation_check: bool = True, keep_runs=(), drop_runs=(),
                 catalogue: bool = True) -> IngestResult:
    """Read, validate, aggregate and combine trace files and sweep folders.

    Parameters
    ----------
    paths : str, pathlib.Path or iterable of them
        Canonical tables (CSV or parquet), benchmark outputs (GuideLLM JSON / YAML / CSV, ``vllm
        bench serve`` JSON, SGLang JSONL, AIPerf ``profile_export.jsonl``, ``/metrics`` scrapes of
        vLLM, llama.cpp or SGLang, vLLM logs, a sidecar YAML), recognised from their content;
        folders (with a ``manifest.json``: its done points; else every file, recursively) and glob
        patterns. Only read.
    labels : dict, optional
        The speculative configuration from the command line, keys ``verifier``, ``drafter``, ``k``,
        ``hardware``, ``dataset`` (None values ignored) and optionally ``attach_to`` (the run
        that acceptance-only inputs belong to).
    sidecar : str or pathlib.Path, optional
        Path of a sidecar YAML (see :mod:`bayes_sd.traces.formats.labels`).
    warmup_s, cooldown_s : float, optional
        Seconds trimmed at the start and end of each run; passed to ``aggregate_runs`` for request
        rows (see :mod:`bayes_sd.traces.formats.assemble` for benchmark outputs).
    trim_frac : float, default 0.1
        Default warm-up and cool-down, as a fraction of each run's span.
    progress : bool, default False
        A progress bar over the files (when there are several).
    saturation_check : bool, default True
        False flags nothing (``bayes-sd ingest --no-saturation-check``): ``saturated`` values given
        in the inputs (tables, and the benchmarks that are capacity probes by design) are kept, the
        others are false.
    keep_runs : iterable of str, default ()
        Run ids never flagged saturated (``--keep-run``); each one that would have been is reported.
    drop_runs : iterable of str, default ()
        Run ids removed from the output (``--drop-run``); each is reported. An id that names no run
        is an error.
    catalogue : bool, default True
        Without a models table among the inputs, build one from the bundled catalogue for the
        verifiers and drafters it knows, and warn naming the verifiers it does not.

    Returns
    -------
    IngestResult
        ``runs`` (canonical runs table: seconds, requests/s, tokens), ``models``, ``warnings`` and
        ``formats``.

    Raises
    ------
    TraceError
        Naming the file and field on any problem; in particular no input file, more than one sidecar,
        a request file whose run_ids have no metadata row in a runs table among ``paths``, a runs row
        with neither statistics nor request rows, a run_id given twice, a benchmark output whose
        speculative configuration is given nowhere, a manifest point whose load differs from its
        report's, scrapes that bracket several runs, and a kept or dropped run id that names no run.

    Examples
    --------
    >>> runs = ingest_paths(["runs.csv", "requests.parquet"]).runs  # doctest: +SKIP
    >>> runs = ingest_paths("sweep/", drop_runs=["eagle-k4@rate-8"]).runs  # doctest: +SKIP
    """
    keep_ids = [str(k) for k in keep_runs]
    sink: list = []
    inp = _inputs(paths, sink)
    flags, attach = _flags(labels)
    side = _sidecar(sidecar, inp)
    attach = attach if attach is not None else (side.attach_to if side else None)
    metas, reqs, models, real, parsed = [], [], [], [], []
    for m in inp.manifests:
        parsed += _manifest_parsed(m, sink, inp.formats)
    files = [p for p in inp.files if inp.formats[p] != "sidecar"]
    for p in progress_bar(files, desc="reading", enabled=progress and len(files) > 1, unit="file"):
        fmt = inp.formats[p]
        if fmt != "table":
            parsed.append(read_format(p, fmt))
            sink.extend(parsed[-1].warnings)
            continue
        kind, df = read_table(p)
        if kind == "runs":
            metas.append(validate_runs(df, p, require_stats=False).assign(_file=p))
        elif kind == "requests":
            reqs.append((p, validate_requests(df, p)))
        elif kind == "models":
            models.append(validate_models(df, p).assign(_file=p))
        else:
            real.append(real_long_to_runs(df, p, saturation=False).assign(_file=p))
    if metas:
        meta = pd.concat(metas, ignore_index=True)
    else:
        meta = empty_table("runs").assign(_file=pd.Series([], dtype="str"))
    _no_dup(meta, "run_id", meta["_file"], "run_id")

    out, used = list(real), set()
    bench_req = None
    if parsed:
        bench, bench_req = assemble(parsed, flags=flags, sidecar=side or Sidecar(), attach_to=attach,
                                    warmup_s=warmup_s, cooldown_s=cooldown_s, trim_frac=trim_frac, sink=sink)
        if bench is not None:
            out.append(bench.assign(_file=bench["source"]))
    for p, req in reqs:
        ids = pd.unique(req["run_id"])
        missing = sorted(set(ids) - set(meta["run_id"]))
        if missing:
            raise TraceError(p, "run_id", f"no run metadata for {len(missing)} run_id(s): {missing[:8]}",
                             "add a runs table (run_id, source, hardware, verifier, drafter, dataset, k, load_type, "
                             "rate_rps or concurrency) with these run_ids to the input files")
        m = meta[meta["run_id"].isin(ids)]
        runs = aggregate_runs(req, m.drop(columns="_file"), warmup_s=warmup_s, cooldown_s=cooldown_s,
                              trim_frac=trim_frac, detect=False, validate=False, source=p,
                              meta_source=", ".join(sorted(set(m["_file"]))))
        out.append(runs.assign(_file=p))
        used.update(ids)
    rest = meta[~meta["run_id"].isin(used)]
    if len(rest):
        bare = rest[_OBSERVED].isna().all(axis=1).to_numpy()
        if bare.any():
            row = rest[bare].iloc[0]
            raise TraceError(row["_file"], "latency_mean_s",
                             f"run '{row['run_id']}' has no statistics and no request rows",
                             "give its latency statistics, or its request file among the inputs, or drop the row")
        for f, part in rest.groupby("_file", sort=False):  # stricter check where latency is claimed
            has_lat = part["latency_mean_s"].notna()
            if has_lat.any():
                validate_runs(part[has_lat].drop(columns="_file"), f, require_stats=True)
        out.append(rest)

    if out:
        runs = pd.concat(out, ignore_index=True)
        _no_dup(runs, "run_id", runs["_file"], "run_id")
        for f, part in runs.groupby("_file", sort=False):  # name the file in unit / consistency errors
            validate_runs(part.drop(columns="_file"), f, require_stats=False)
        runs = validate_runs(runs.drop(columns="_file"), "ingested runs", require_stats=False)
        runs = _drop(runs, drop_runs, sink)
        parts = [r for _, r in reqs] + ([bench_req[["run_id", "start_s", "end_s"]]] if bench_req is not None else [])
        all_req = pd.concat(parts, ignore_index=True) if parts else None
        notes: list = []
        if saturation_check:
            runs = fill_saturation(runs, all_req, keep=keep_ids, notes=notes)
        else:
            runs = runs.assign(saturated=runs["saturated"].astype("boolean").fillna(False).astype(bool))
            runs = _unflag(runs, keep_ids, notes)
        for n in notes:
            _note(sink, n)
        runs = runs.sort_values(["source", "run_id"], kind="stable").reset_index(drop=True)
        _guidellm_versions(runs, sink)
    else:
        runs = empty_table("runs")
        if drop_runs or keep_ids:
            _drop(runs, drop_runs, sink)
            _unflag(runs, keep_ids)
    if models:
        mod = pd.concat(models, ignore_index=True)
        _no_dup(mod, "name", mod["_file"], "model name")
        mod = validate_models(mod.drop(columns="_file"), "models")
    elif catalogue and len(runs):
        mod, unknown = models_for(list(runs["verifier"]) + list(runs.loc[runs["k"] > 0, "drafter"]))
        mod = validate_models(mod, "catalogue") if len(mod) else empty_table("models")
        names = [v for v in unknown if v in set(runs["verifier"])]
        if names:
            warn(sink, ", ".join(names), "verifier", f"no size for {', '.join(names)} in the bundled catalogue",
                 "give a models table (bayes-sd ingest --help) for the MoE and drafter-design variants")
    else:
        mod = empty_table("models")
    return IngestResult(runs=runs, models=mod, warnings=list(dict.fromkeys(sink)), formats=inp.formats)


def _drop(runs: pd.DataFrame, drop, sink: list) -> pd.DataFrame:
    drop = [str(d) for d in drop]
    if not drop:
        return runs
    ids = check_run_ids(runs, drop, "--drop-run")
    gone = ids.isin(drop)
    for rid, src in zip(ids[gone], runs.loc[gone, "source"]):
        _note(sink, f"run {rid} ({src}): dropped by --drop-run, not in the output")
    return runs[~gone].reset_index(drop=True)
