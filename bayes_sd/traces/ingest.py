"""Turn a set of trace files into one canonical runs table (and a models table).

:func:`ingest_paths` is what ``bayes-sd ingest FILE... --out runs.csv`` runs. Each file's
kind is detected from its columns (:func:`~bayes_sd.traces.io.read_table`):

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

from dataclasses import dataclass

import pandas as pd

from .aggregate import aggregate_runs, fill_saturation
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

    ``runs``: validated canonical runs table (sorted by source, run_id), saturation filled.
    ``models``: validated canonical models table (no rows when no models file was given).
    """

    runs: pd.DataFrame
    models: pd.DataFrame


def _no_dup(df: pd.DataFrame, key: str, origin: pd.Series, what: str) -> None:
    dup = df[key].duplicated(keep=False)
    if dup.any():
        name = df.loc[dup, key].iloc[0]
        files = sorted(set(origin[dup & (df[key] == name)]))
        raise TraceError(", ".join(files), key, f"{what} '{name}' appears in more than one row or file",
                         f"give each {what} once across all inputs")


def ingest_paths(paths, *, warmup_s: float | None = None, cooldown_s: float | None = None,
                 trim_frac: float = 0.1) -> IngestResult:
    """Read, validate, aggregate and combine trace files (CSV or parquet).

    ``warmup_s`` / ``cooldown_s`` / ``trim_frac`` are passed to ``aggregate_runs`` for
    request files. Raises TraceError naming the file and column on any problem; in
    particular a request file whose run_ids have no metadata row in a runs table among
    ``paths``, and a runs row with neither statistics nor request rows.
    """
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else paths)]
    if not paths:
        raise TraceError("ingest", None, "no input files", "give at least one trace file")
    metas, reqs, models, real = [], [], [], []
    for p in paths:
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
        runs = validate_runs(runs.drop(columns="_file"), "ingested runs", require_stats=False)
        all_req = pd.concat([r for _, r in reqs], ignore_index=True) if reqs else None
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
    return IngestResult(runs=runs, models=mod)
