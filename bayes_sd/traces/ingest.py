"""Turn a set of trace files into one canonical runs table (and a models table).

:func:`ingest_paths` is what ``bayes-sd ingest FILE... --out runs.csv`` runs. Each file's
format is detected from its content (:func:`~bayes_sd.traces.formats.detect_format`):
benchmark outputs (GuideLLM reports, ``vllm bench serve`` results, SGLang
``bench_serving`` JSONL, vLLM ``/metrics`` scrapes and logs) go through
:mod:`bayes_sd.traces.formats` (one run per benchmark, requests aggregated with
``aggregate_runs``, the speculative configuration from labels, flags or a sidecar YAML);
a sidecar YAML among the files is used as ``sidecar``. Canonical tables' kind is
detected from their columns (:func:`~bayes_sd.traces.io.read_table`):

- ``runs`` tables are validated; their rows either are runs with their own statistics,
  or are the run metadata (``require_stats=False``) of request files given alongside;
- ``requests`` tables are aggregated (:func:`~bayes_sd.traces.aggregate.aggregate_runs`)
  with the metadata rows of matching ``run_id``;
- ``real_long`` files (the bundled real measurements) go through
  :func:`~bayes_sd.traces.real.real_long_to_runs`;
- ``models`` tables are validated and returned separately.

Saturation is then detected for every run whose ``saturated`` is not given, over the
whole table (closed-loop throughput across concurrencies) and with all request rows
(latency trends). Files are only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bayes_sd._progress import progress_bar

from .aggregate import aggregate_runs, fill_saturation
from .formats import detect_format, read_format
from .formats.assemble import assemble
from .formats.labels import Sidecar, load_sidecar, normalize
from .io import read_table
from .real import real_long_to_runs
from .schema import TraceError
from .validate import empty_table, validate_models, validate_requests, validate_runs

__all__ = ["IngestResult", "ingest_paths"]

#: Run columns that count as an observation for a run given without request rows.
_OBSERVED = ["latency_mean_s", "ttft_mean_s", "ttft_p50_s", "tpot_mean_s", "output_tps", "acceptance_length"]


@dataclass
class IngestResult:
    """Result of :func:`ingest_paths`.

    Parameters
    ----------
    runs : pandas.DataFrame
        Validated canonical runs table (sorted by source, run_id), saturation filled.
    models : pandas.DataFrame
        Validated canonical models table (no rows when no models file was given).
    warnings : list of str
        One-line messages (file, field, fix) about usable but doubtful input, in
        order; each was also issued as a :class:`~bayes_sd.traces.formats.TraceWarning`.
    formats : dict of str to str
        The detected format of each input path.
    """

    runs: pd.DataFrame
    models: pd.DataFrame
    warnings: list = field(default_factory=list)
    formats: dict = field(default_factory=dict)


def _no_dup(df: pd.DataFrame, key: str, origin: pd.Series, what: str) -> None:
    dup = df[key].duplicated(keep=False)
    if dup.any():
        name = df.loc[dup, key].iloc[0]
        files = sorted(set(origin[dup & (df[key] == name)]))
        raise TraceError(", ".join(files), key, f"{what} '{name}' appears in more than one row or file",
                         f"give each {what} once across all inputs")


def _inputs(paths, labels, sidecar):
    """Paths as strings, the flags' configuration, the sidecar (argument or among paths)."""
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else paths)]
    if not paths:
        raise TraceError("ingest", None, "no input files", "give at least one trace file")
    flags = {k: v for k, v in (labels or {}).items() if v is not None}
    attach = flags.pop("attach_to", None)
    flags = normalize(flags, "flags", "--verifier/--drafter/--k/--hardware/--dataset", strict=True)
    formats = {p: detect_format(p) for p in paths}
    cars = ([str(sidecar)] if sidecar is not None else []) + [p for p in paths if formats[p] == "sidecar"]
    if len(cars) > 1:
        raise TraceError(", ".join(cars), None, "more than one sidecar YAML", "merge them into one file")
    side = load_sidecar(cars[0]) if cars else None
    return paths, formats, flags, side, attach if attach is not None else (side.attach_to if side else None)


def ingest_paths(paths, *, labels: dict | None = None, sidecar=None, warmup_s: float | None = None,
                 cooldown_s: float | None = None, trim_frac: float = 0.1, progress: bool = False) -> IngestResult:
    """Read, validate, aggregate and combine trace files.

    Parameters
    ----------
    paths : str, pathlib.Path or iterable of them
        Canonical tables (CSV or parquet) and/or benchmark outputs (GuideLLM JSON /
        YAML / CSV, ``vllm bench serve`` JSON, SGLang JSONL, vLLM ``/metrics`` scrapes and
        logs, a sidecar YAML), recognised from their content; only read.
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
        with neither statistics nor request rows, a run_id given twice, and a benchmark output whose
        speculative configuration is given nowhere.

    Examples
    --------
    >>> runs = ingest_paths(["runs.csv", "requests.parquet"]).runs  # doctest: +SKIP
    """
    paths, formats, flags, side, attach = _inputs(paths, labels, sidecar)
    sink: list = []
    metas, reqs, models, real, parsed = [], [], [], [], []
    for p in progress_bar(paths, desc="reading", enabled=progress and len(paths) > 1, unit="file"):
        fmt = formats[p]
        if fmt == "sidecar":
            continue
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
        parts = [r for _, r in reqs] + ([bench_req[["run_id", "start_s", "end_s"]]] if bench_req is not None else [])
        all_req = pd.concat(parts, ignore_index=True) if parts else None
        runs = fill_saturation(runs, all_req)
        runs = runs.sort_values(["source", "run_id"], kind="stable").reset_index(drop=True)
    else:
        runs = empty_table("runs")
    if models:
        mod = pd.concat(models, ignore_index=True)
        _no_dup(mod, "name", mod["_file"], "model name")
        mod = validate_models(mod.drop(columns="_file"), "models")
    else:
        mod = empty_table("models")
    return IngestResult(runs=runs, models=mod, warnings=list(dict.fromkeys(sink)), formats=formats)
