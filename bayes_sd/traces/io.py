"""Reading and writing trace tables (CSV or parquet).

:func:`read_table` tells which table a file holds from its columns, never from its name:
``'requests'``, ``'runs'``, ``'models'`` (the canonical tables of
:mod:`bayes_sd.traces.schema`) or ``'real_long'`` (the tidy long format of the bundled
real measurements, one row per (run, metric): see :mod:`bayes_sd.traces.real`). It does
not validate: pass the table to the matching ``validate_*`` function.

:func:`write_table` writes atomically (a temporary file in the target folder, then
``os.replace``) and refuses to overwrite any path given in ``protect``. Input files are
only ever read.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pandas as pd

from bayes_sd._io import atomic_write

from .schema import TABLES, TraceError

__all__ = ["read_table", "write_table", "detect_kind", "REAL_LONG_COLUMNS", "KINDS"]

#: Columns that mark the tidy long format of the real measurement files.
REAL_LONG_COLUMNS = ("source_id", "config_label", "metric", "value", "unit")
#: Kinds :func:`read_table` can return.
KINDS = ("requests", "runs", "models", "real_long")
_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")
_PARQUET = (".parquet", ".pq")
# exact float round trip: pandas >= 3 parses exactly by default (and deprecates the option)
_CSV_KW = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def table_format(path: Path) -> str | None:
    """``"csv"`` or ``"parquet"`` from the file name's suffix (compressed CSV included), else None."""
    name = Path(path).name.lower()
    if name.endswith(_CSV):
        return "csv"
    if name.endswith(_PARQUET):
        return "parquet"
    return None


def _distinct() -> dict[str, set[str]]:
    """Per canonical table, the column names no other table has."""
    out = {}
    for kind, spec in TABLES.items():
        others = {c.name for k, s in TABLES.items() if k != kind for c in s}
        out[kind] = {c.name for c in spec} - others
    return out


def detect_kind(columns, source: str = "table") -> str:
    """Which table a set of column names belongs to (see :data:`KINDS`).

    Counts the columns that match (exactly, or nearly: a misspelling or an ``_ms`` unit
    variant) the names only one canonical table has. Raises TraceError when no table
    matches at least two such columns, or two tables tie.
    """
    cols = {str(c).strip().lower() for c in columns}
    if set(REAL_LONG_COLUMNS) <= cols:
        return "real_long"
    scores = {}
    for kind, names in _distinct().items():
        score = 0.0
        for c in cols:
            c_s = c[:-3] + "_s" if c.endswith(("_ms", "_us", "_ns")) else c
            if c in names or c_s in names:
                score += 1
            elif difflib.get_close_matches(c_s, names, n=1, cutoff=0.8):
                score += 0.5
        scores[kind] = score
    best = sorted(scores.items(), key=lambda kv: -kv[1])
    if best[0][1] < 2 or best[0][1] == best[1][1]:
        raise TraceError(source, None, f"cannot tell which table this is from its columns {sorted(cols)[:12]}",
                         "use the canonical column names (requests: run_id, request_id, start_s, first_token_s, "
                         "end_s, ...; runs: run_id, source, hardware, verifier, drafter, k, ...; models: name, "
                         "params_b, layers); see `bayes-sd ingest --help`")
    return best[0][0]


def read_table(path) -> tuple[str, pd.DataFrame]:
    """Read a CSV (optionally compressed) or parquet trace file.

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.csv`` (``.csv.gz``, ``.csv.bz2``, ``.csv.zst``, ``.tsv``) or ``.parquet`` file; only read.

    Returns
    -------
    kind : str
        One of :data:`KINDS`, detected from the columns.
    table : pandas.DataFrame
        As read (column names stripped of surrounding blanks), not validated.

    Raises
    ------
    TraceError
        Naming the file, when it is missing, unreadable, empty, of an unknown format, or of an
        unrecognisable kind.

    Examples
    --------
    >>> kind, df = read_table("requests.csv")  # doctest: +SKIP
    """
    path = Path(path)
    src = str(path)
    fmt = table_format(path)
    if fmt is None:
        raise TraceError(src, None, f"unknown file format '{path.suffix or path.name}'",
                         "give a .csv (or .csv.gz) or a .parquet file")
    if not path.is_file():
        raise TraceError(src, None, "file not found", "check the path")
    try:
        if fmt == "csv":
            sep = "\t" if path.name.lower().endswith(".tsv") else ","
            df = pd.read_csv(path, sep=sep, **_CSV_KW)
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise TraceError(src, None, "the file is empty", "write a header row and at least one data row") from None
    except Exception as e:  # parser, decoding, arrow errors: all mean "not a readable table"
        raise TraceError(src, None, f"cannot read it as {fmt}: {type(e).__name__}: {str(e)[:200]}",
                         f"check that it is a valid {fmt} file (not truncated, right extension)") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise TraceError(src, None, "the file has a header but no rows", "add the data rows")
    return detect_kind(df.columns, src), df


def write_table(df: pd.DataFrame, path, *, protect=()) -> Path:
    """Write ``df`` to ``path`` as CSV or parquet (chosen by the suffix), atomically.

    Written with :func:`bayes_sd._io.atomic_write`: a reader never sees a half-written file.
    Creates the parent folder if needed.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (written without its index).
    path : str or pathlib.Path
        Output file: ``.csv`` (``.csv.gz``, ``.csv.bz2``, ``.csv.zst`` compressed) or ``.parquet``.
    protect : str, pathlib.Path or iterable of them, default ()
        Paths never to overwrite (e.g. the input files).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TraceError
        If ``path`` is one of the ``protect`` paths or its format is unknown.
    """
    path = Path(path)
    fmt = table_format(path)
    if fmt is None or path.name.lower().endswith(".tsv"):
        raise TraceError(str(path), None, f"unknown output format '{path.suffix or path.name}'",
                         "name the output file .csv or .parquet")
    if isinstance(protect, (str, os.PathLike)):
        protect = [protect]
    target = path.resolve()
    if any(Path(p).resolve() == target for p in protect):
        raise TraceError(str(path), None, "refusing to overwrite an input file",
                         "choose another output path (inputs are never modified)")
    with atomic_write(path) as tmp:
        if fmt == "csv":
            comp = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}.get(path.suffix.lower())
            df.to_csv(tmp, index=False, compression=comp)
        else:
            df.to_parquet(tmp, index=False)
    return path
