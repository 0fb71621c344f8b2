"""Validation and cleaning of the canonical tables (see :mod:`bayes_sd.traces.schema`).

Each ``validate_*`` function takes a DataFrame and the name of the file (or table) it
came from, and returns a cleaned copy: canonical columns in canonical order (optional
columns that are absent are added, empty), dtypes coerced (``int`` columns are ``int64``,
or nullable ``Int64`` when some values are missing; ``float`` -> ``float64``; ``str`` ->
``str``; ``bool`` -> ``bool`` or nullable ``boolean``). Columns that are neither canonical
nor a likely misspelling of a missing canonical column are dropped. The caller's
DataFrame is never modified.

Anything bayes_sd cannot use raises :class:`~bayes_sd.traces.schema.TraceError`, whose
message names the file, the column and the fix: missing or misspelt columns, times in
milliseconds instead of seconds, negative or non-monotone request times, missing values
in required columns, duplicate keys, inconsistent ``k`` / ``drafter``, unknown
``load_type``, missing load level, values out of range.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from .schema import LOAD_TYPES, MODELS, NO_DRAFTER, REQUESTS, RUNS, TEXT_DEFAULTS, Column, TraceError

__all__ = ["validate_requests", "validate_runs", "validate_models", "empty_table", "unpin", "STAT_COLUMNS",
           "ACCEPTANCE_COLUMNS"]

#: Run columns computed from request rows by ``aggregate_runs``: with
#: ``require_stats=False`` they may be absent or empty (run-metadata tables).
STAT_COLUMNS = frozenset(
    {"achieved_rps", "prompt_len", "output_len", "output_len_sd", "n_requests", "latency_mean_s", "latency_sd_s",
     "latency_se_s", "latency_p50_s", "latency_p90_s", "latency_p99_s", "ttft_mean_s", "ttft_p50_s", "tpot_mean_s",
     "output_tps", "draft_tokens", "accepted_tokens", "num_drafts", "acceptance_length", "in_flight_seen"}
)
#: A request or run latency above this many seconds is taken as milliseconds given as seconds.
MAX_PLAUSIBLE_LATENCY_S = 600.0
#: A mean time per output token above this many seconds is taken as milliseconds.
MAX_PLAUSIBLE_TPOT_S = 1.0
_UNIT_SUFFIXES = {"_ms": ("_s", "times are in seconds: divide by 1000"),
                  "_us": ("_s", "times are in seconds: divide by 1e6"),
                  "_ns": ("_s", "times are in seconds: divide by 1e9")}
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


_DTYPES = {"str": "str", "int": "Int64", "float": "float64", "bool": "boolean"}


def empty_table(kind: str) -> pd.DataFrame:
    """A canonical table (``'requests'``, ``'runs'`` or ``'models'``) with no rows.

    Parameters
    ----------
    kind : {"requests", "runs", "models"}
        Which table.

    Returns
    -------
    pandas.DataFrame
        No rows; the canonical columns in canonical order, with their dtypes.

    Raises
    ------
    KeyError
        For any other ``kind``.

    Examples
    --------
    >>> list(empty_table("models").columns)
    ['name', 'params_b', 'layers', 'hidden_size', 'experts', 'experts_per_token']
    """
    spec = {"requests": REQUESTS, "runs": RUNS, "models": MODELS}[kind]
    return pd.DataFrame({c.name: pd.Series([], dtype=_DTYPES[c.kind]) for c in spec})


def _example(df: pd.DataFrame, mask, key: str | None) -> str:
    """Short description of the first offending row, e.g. "3 rows, e.g. run_id 'a'"."""
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    first = int(np.flatnonzero(mask)[0])
    where = f"{key} '{df[key].iloc[first]}'" if key and key in df.columns else f"row {first + 1}"
    return f"{n} row{'s' if n != 1 else ''} (e.g. {where})"


def _check_columns(df: pd.DataFrame, spec: tuple[Column, ...], source: str, required: set[str]) -> None:
    """Raise on misspelt, wrong-unit or missing columns.

    A non-canonical column raises when it is a unit variant of a canonical column that is
    absent (``latency_mean_ms`` for ``latency_mean_s``), differs from an absent canonical
    name only by case, or is close (difflib) to an absent *required* column. Any other
    extra column is dropped by the caller.
    """
    names = [c.name for c in spec]
    unit = {c.name: c.unit or "none" for c in spec}
    missing = [n for n in names if n not in df.columns]
    missing_req = [n for n in missing if n in required]
    for col in df.columns:
        if not isinstance(col, str) or col in names:
            continue
        low = col.strip().lower()
        for suffix, (repl, how) in _UNIT_SUFFIXES.items():
            cand = low[: -len(suffix)] + repl if low.endswith(suffix) else None
            if cand and (cand in missing or difflib.get_close_matches(cand, missing_req, n=1, cutoff=0.8)):
                best = cand if cand in missing else difflib.get_close_matches(cand, missing_req, n=1, cutoff=0.8)[0]
                raise TraceError(source, col, f"column '{col}' is not canonical (did you mean '{best}'? {how})",
                                 f"rename it to '{best}' and convert; {how}")
        close = [low] if low in missing else difflib.get_close_matches(low, missing_req, n=1, cutoff=0.8)
        if close:
            raise TraceError(source, col, f"column '{col}' is not canonical (did you mean '{close[0]}'?)",
                             f"rename it to '{close[0]}' (unit: {unit[close[0]]}) if that is what it holds")
    for name in missing_req:
        c = next(c for c in spec if c.name == name)
        raise TraceError(source, name, "required column is missing",
                         f"add column '{name}' ({c.description}; unit: {unit[name]})")


def _coerce(s: pd.Series, c: Column, source: str, df: pd.DataFrame, key: str | None) -> pd.Series:
    """Coerce one column to its canonical dtype; raise on unparseable values."""
    if c.kind == "str":  # missing cells stay missing (pandas < 3 turns None into 'None' with astype)
        out = (s if s.dtype == "str" else s.astype("str")).str.strip()
        return out.mask(s.isna().to_numpy() | (out == "").to_numpy())
    if c.kind == "bool":
        if pd.api.types.is_bool_dtype(s):
            return s.astype("boolean") if s.isna().any() else s.astype(bool)
        low = s.astype("str").str.strip().str.lower()
        out = pd.Series(pd.NA, index=s.index, dtype="boolean")
        out[low.isin(_TRUE)] = True
        out[low.isin(_FALSE)] = False
        bad = out.isna() & s.notna() & (low != "")
        if bad.any():
            raise TraceError(source, c.name, f"values are not true/false in {_example(df, bad, key)}",
                             "use true/false (or 1/0)")
        return out if out.isna().any() else out.astype(bool)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        num = s.astype("float64")
        bad = np.zeros(len(s), dtype=bool)
    else:
        num = pd.to_numeric(s, errors="coerce").astype("float64")
        bad = (num.isna() & s.notna()).to_numpy()
        if bad.any():  # blanks are missing values, anything else that is not a number is an error
            bad = bad & (s.astype("str").str.strip() != "").to_numpy()
    if bad.any():
        raise TraceError(source, c.name, f"values are not numbers in {_example(df, bad, key)}",
                         f"write plain numbers (unit: {c.unit or 'none'})")
    if np.isinf(num).any():
        raise TraceError(source, c.name, f"infinite values in {_example(df, np.isinf(num), key)}",
                         "replace them with finite numbers or leave them empty")
    if c.kind == "int":
        frac = num.notna() & (num != np.round(num))
        if frac.any():
            raise TraceError(source, c.name, f"non-integer values in {_example(df, frac, key)}",
                             "this column counts whole units: round it or check the column")
        return num.astype("Int64") if num.isna().any() else num.astype("int64")
    return num


def _clean(df: pd.DataFrame, spec: tuple[Column, ...], source: str, required: set[str],
           key: str | None) -> pd.DataFrame:
    """Column checks, coercion, canonical order; then missing values and ranges."""
    if not isinstance(df, pd.DataFrame):
        raise TraceError(source, None, f"expected a pandas DataFrame, got {type(df).__name__}",
                         "pass the table as a DataFrame")
    if df.columns.duplicated().any():
        dup = str(df.columns[df.columns.duplicated()][0])
        raise TraceError(source, dup, "column appears more than once", "keep one copy of the column")
    _check_columns(df, spec, source, required)
    if len(df) == 0:
        raise TraceError(source, None, "the table has no rows", "give at least one row")
    out = {}
    for c in spec:
        if c.name in df.columns:
            out[c.name] = _coerce(df[c.name].reset_index(drop=True), c, source, df, key)
        else:
            out[c.name] = pd.Series(np.nan, index=range(len(df)), dtype="float64").astype(_DTYPES[c.kind])
    clean = pd.DataFrame(out)
    if "drafter" in clean.columns and "k" in clean.columns:
        d = clean["drafter"]
        is_none = d.isna() | (d.str.lower() == NO_DRAFTER)
        k0 = clean["k"].fillna(-1).to_numpy() == 0
        clean["drafter"] = d.mask(is_none & k0, NO_DRAFTER)
        bad = (is_none & (clean["k"].fillna(0) > 0)).to_numpy(dtype=bool)
        if bad.any():
            raise TraceError(source, "drafter", f"k > 0 but no drafter in {_example(clean, bad, key)}",
                             "name the draft model (method name, e.g. 'mtp' or 'eagle3', if in-checkpoint)")
    for c in spec:
        col = clean[c.name]
        if c.name in required and col.isna().any():
            raise TraceError(source, c.name, f"missing values in {_example(clean, col.isna(), key)}",
                             "fill them in or drop those rows")
        if c.lo is not None or c.hi is not None:
            v = col.astype("float64")
            bad = (v < c.lo if c.lo is not None else False) | (v > c.hi if c.hi is not None else False)
            bad = bad.fillna(False).to_numpy(dtype=bool)
            if bad.any():
                rng = f"[{c.lo if c.lo is not None else '-inf'}, {c.hi if c.hi is not None else 'inf'}]"
                unit = f" {c.unit}" if c.unit else ""
                raise TraceError(source, c.name, f"values outside {rng}{unit} in {_example(clean, bad, key)}",
                                 f"check the unit ({c.unit or 'none'}) and the values")
    for name in TEXT_DEFAULTS:
        if name in clean.columns:
            clean[name] = clean[name].fillna("")
    if "acceptance_pinned" in clean.columns:
        clean["acceptance_pinned"] = clean["acceptance_pinned"].fillna(False).astype(bool)
    return clean


def _looks_like_ms(clean, col, source, key, thresh, what):
    """Raise if the median of ``col`` exceeds ``thresh`` seconds."""
    v = clean[col].astype("float64")
    if v.notna().any() and float(v.median()) > thresh:
        raise TraceError(source, col, f"median {what} {v.median():.4g} s is implausible: the values look "
                         "like milliseconds", "times are in seconds: divide by 1000")


def _not_above(clean, lo_col, hi_col, source, key, problem, fix, slack=1e-9, name=None):
    """Raise (naming ``name``, default ``lo_col``) where ``clean[lo_col] > clean[hi_col]``
    beyond a tiny relative slack."""
    a, b = clean[lo_col].astype("float64"), clean[hi_col].astype("float64")
    bad = (a > b + slack * np.maximum(1.0, b.abs())).fillna(False).to_numpy(dtype=bool)
    if bad.any():
        raise TraceError(source, name or lo_col, f"{problem} in {_example(clean, bad, key)}", fix)


def validate_requests(df: pd.DataFrame, source: str = "requests") -> pd.DataFrame:
    """Validate and clean a ``requests`` table (one row per request; times in seconds).

    Checks, besides the schema: ``(run_id, request_id)`` unique; ``0 <= start_s <=
    first_token_s <= end_s``; median latency ``end_s - start_s`` below 600 s (else the
    times are milliseconds); ``accepted_tokens <= draft_tokens``; ``acceptance_histogram`` holds
    counts, ``num_drafts`` of them where both are given (:func:`parse_histogram`).

    Parameters
    ----------
    df : pandas.DataFrame
        The table, one row per request (:data:`~bayes_sd.traces.schema.REQUESTS`: times in s, lengths in
        tokens); not modified.
    source : str, default "requests"
        Name of the file (or table) it came from, used in error messages.

    Returns
    -------
    pandas.DataFrame
        A cleaned copy in canonical column order.

    Raises
    ------
    TraceError
        When the table cannot be used; the message names ``source``, the column and the fix.
    """
    required = {c.name for c in REQUESTS if c.required}
    clean = _clean(df, REQUESTS, source, required, "request_id")
    dup = clean.duplicated(["run_id", "request_id"]).to_numpy()
    if dup.any():
        raise TraceError(source, "request_id",
                         f"duplicate (run_id, request_id) in {_example(clean, dup, 'request_id')}",
                         "give each request of a run its own request_id, or drop the repeated rows")
    neg = (clean["start_s"] < 0).to_numpy()
    if neg.any():
        raise TraceError(source, "start_s", f"negative times in {_example(clean, neg, 'request_id')}",
                         "use one clock per run with non-negative times (epoch or monotonic seconds)")
    _not_above(clean, "start_s", "first_token_s", source, "request_id",
               "first token arrives before the request was sent",
               "check first_token_s: need start_s <= first_token_s <= end_s",
               name="first_token_s")
    _not_above(clean, "first_token_s", "end_s", source, "request_id",
               "request ends before its first token", "check end_s: need start_s <= first_token_s <= end_s",
               name="end_s")
    lat = clean["end_s"] - clean["start_s"]
    if float(lat.median()) > MAX_PLAUSIBLE_LATENCY_S:
        raise TraceError(source, "end_s", f"median request latency (end_s - start_s) {lat.median():.4g} s is "
                         "implausible: the times look like milliseconds", "times are in seconds: divide start_s, "
                         "first_token_s and end_s by 1000")
    _not_above(clean, "accepted_tokens", "draft_tokens", source, "request_id",
               "more tokens accepted than drafted", "check accepted_tokens and draft_tokens")
    _check_histograms(clean, source)
    return clean


def validate_runs(df: pd.DataFrame, source: str = "runs", require_stats: bool = True,
                  check_units: bool = True) -> pd.DataFrame:
    """Validate and clean a ``runs`` table (one row per run; times in seconds, rates in requests/s).

    Checks, besides the schema: ``run_id`` unique;
    ``drafter`` is ``'none'`` exactly when ``k == 0`` (missing -> ``'none'`` for k = 0);
    ``load_type`` in :data:`LOAD_TYPES` with ``rate_rps`` given for ``'rate'`` and
    ``concurrency`` for ``'concurrency'``; plausible units (median latency < 600 s,
    TPOT < 1 s, TTFT <= latency); latency percentiles ordered; ``accepted_tokens <=
    draft_tokens``; ``acceptance_length <= k + 1``; ``per_position_acceptance`` holds ``k`` fractions
    that never rise (:func:`parse_per_position`). Cleaning: optional text columns (``saturation_reason``,
    ``tool``, ...) are '' when unknown, ``acceptance_pinned`` is false when not given, and pinned runs
    lose their acceptance evidence (:func:`unpin`).

    Parameters
    ----------
    df : pandas.DataFrame
        The table, one row per run (:data:`~bayes_sd.traces.schema.RUNS`); not modified.
    source : str, default "runs"
        Name of the file (or table) it came from, used in error messages.
    require_stats : bool, default True
        False accepts a run-metadata table whose latency statistics (:data:`STAT_COLUMNS`) are
        absent or empty, e.g. the table joined to request files, or batch-1 runs that report only TPOT.
    check_units : bool, default True
        False skips the millisecond heuristics (median latency > 600 s, any TPOT > 1 s), for tables
        computed from validated request times.

    Returns
    -------
    pandas.DataFrame
        A cleaned copy in canonical column order (absent optional columns added, empty).

    Raises
    ------
    TraceError
        When the table cannot be used; the message names ``source``, the column and the fix.
    """
    required = {c.name for c in RUNS if c.required and (require_stats or c.name not in STAT_COLUMNS)}
    clean = _clean(df, RUNS, source, required, "run_id")
    key = "run_id"
    dup = clean["run_id"].duplicated().to_numpy()
    if dup.any():
        raise TraceError(source, "run_id", f"duplicate run_id in {_example(clean, dup, key)}",
                         "give each run its own run_id, or drop the repeated rows")
    nod = (clean["drafter"] == NO_DRAFTER).to_numpy()
    if (bad := (clean["k"].to_numpy() == 0) & ~nod).any():
        raise TraceError(source, "drafter", f"k == 0 with a drafter in {_example(clean, bad, key)}",
                         f"set drafter to '{NO_DRAFTER}' for runs without speculation, or give the real k")
    lt = clean["load_type"].str.lower()
    clean["load_type"] = lt
    if (bad := ~lt.isin(LOAD_TYPES).to_numpy()).any():
        raise TraceError(source, "load_type", f"unknown load_type '{lt[bad].iloc[0]}' in {_example(clean, bad, key)}",
                         "use 'rate' (open loop, offered rate_rps) or 'concurrency' (closed loop, N streams)")
    for lt_name, col in (("rate", "rate_rps"), ("concurrency", "concurrency")):
        bad = ((lt == lt_name) & clean[col].isna()).to_numpy()
        if bad.any():
            raise TraceError(source, col, f"load_type '{lt_name}' without {col} in {_example(clean, bad, key)}",
                             "give the offered request rate (requests/s)" if col == "rate_rps"
                             else "give the number of concurrent streams")
    if check_units:
        for col in ("latency_mean_s", "latency_p50_s", "ttft_mean_s", "ttft_p50_s"):
            _looks_like_ms(clean, col, source, key, MAX_PLAUSIBLE_LATENCY_S, col.split("_")[0])
        bad = (clean["tpot_mean_s"] > MAX_PLAUSIBLE_TPOT_S).fillna(False).to_numpy(dtype=bool)
        if bad.any():
            raise TraceError(source, "tpot_mean_s", f"time per output token above {MAX_PLAUSIBLE_TPOT_S:g} s in "
                             f"{_example(clean, bad, key)}: the values look like milliseconds",
                             "times are in seconds: divide by 1000")
    for ttft, lat in (("ttft_mean_s", "latency_mean_s"), ("ttft_p50_s", "latency_p50_s")):
        _not_above(clean, ttft, lat, source, key, f"{ttft} exceeds {lat} (TTFT in milliseconds?)",
                   "times are in seconds: check the unit of both columns")
    for lo, hi in (("latency_p50_s", "latency_p90_s"), ("latency_p90_s", "latency_p99_s")):
        _not_above(clean, lo, hi, source, key, f"{lo} exceeds {hi}",
                   "check that the percentile columns are not swapped")
    _not_above(clean, "accepted_tokens", "draft_tokens", source, key,
               "more tokens accepted than drafted", "check accepted_tokens and draft_tokens")
    kp1 = clean["k"].astype("float64") + 1
    for col in ("acceptance_length", "pinned_acceptance_length"):
        _not_above(pd.DataFrame({col: clean[col], "kp1": kp1, "run_id": clean["run_id"]}), col, "kp1", source, key,
                   f"{col} exceeds k + 1", "the acceptance length is tokens per verify step (bonus token "
                   "included), at most k + 1: check the column and k")
    _check_per_position(clean, source)
    return unpin(clean)


def parse_per_position(text) -> np.ndarray:
    """The fractions of a ``per_position_acceptance`` cell (``'0.81;0.62;0.47'``), or an empty array
    for a missing cell; ValueError on a value that is not a number."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA or not str(text).strip():
        return np.empty(0)
    return np.array([float(v) for v in str(text).replace(",", ";").split(";") if v.strip()])


def format_per_position(values) -> str:
    """A ``per_position_acceptance`` cell from fractions ``s_1..s_k`` (six significant digits)."""
    return ";".join(f"{float(v):.6g}" for v in values)


def parse_histogram(text) -> np.ndarray:
    """The counts of an ``acceptance_histogram`` cell (``'3;10;25'``: verify steps that accepted exactly
    0, 1, 2 drafts), or an empty array for a missing cell; ValueError on an entry that is not a count."""
    counts = parse_per_position(text)
    if np.any((counts < 0) | (counts != np.round(counts))):
        raise ValueError(f"{text!r}: not counts")
    return counts


def format_histogram(counts) -> str:
    """An ``acceptance_histogram`` cell from counts ``h_0..h_m`` (verify steps accepting exactly j drafts)."""
    return ";".join(str(int(c)) for c in counts)


def _check_histograms(clean: pd.DataFrame, source: str) -> None:
    """Each ``acceptance_histogram`` holds counts, as many steps as ``num_drafts`` where both are given."""
    col = "acceptance_histogram"
    fix = ("give h_0;h_1;...;h_k, the verify steps that accepted exactly j drafts (vLLM's per-request "
           "acceptance_histogram), or leave the cell empty")
    given = clean[col].notna().to_numpy()
    for text, steps, rid in zip(clean[col][given], clean["num_drafts"][given], clean["request_id"][given]):
        try:
            counts = parse_histogram(text)
        except ValueError:
            raise TraceError(source, col, f"request {rid}: {text!r} is not a list of counts", fix) from None
        if counts.size and pd.notna(steps) and counts.sum() != float(steps):
            raise TraceError(source, col, f"request {rid}: {int(counts.sum())} steps in the histogram, "
                             f"{int(steps)} in num_drafts", "give both from the same record, or " + fix)


def _check_per_position(clean: pd.DataFrame, source: str) -> None:
    """Each ``per_position_acceptance`` has ``k`` fractions in [0, 1] that never rise (a draft's token
    at position j is accepted only if the ones before it were)."""
    col = "per_position_acceptance"
    fix = ("give s_1..s_k, the share of drafts whose first j tokens were all accepted (vLLM's "
           "spec_decode_per_position_acceptance_rates), separated by ';', or leave the cell empty")
    for text, k, rid in zip(clean[col], clean["k"], clean["run_id"]):
        try:
            s = parse_per_position(text)
        except ValueError:
            raise TraceError(source, col, f"run {rid}: {text!r} is not a list of numbers", fix) from None
        if not s.size:
            continue
        if s.size != int(k):
            raise TraceError(source, col, f"run {rid}: {s.size} positions for k = {int(k)}", fix)
        if np.any((s < 0) | (s > 1)):
            raise TraceError(source, col, f"run {rid}: values outside [0, 1] ({text}); percentages?",
                             "divide by 100: " + fix)
        if np.any(np.diff(s) > 1e-6):
            raise TraceError(source, col, f"run {rid}: the shares rise with position ({text}): conditional "
                             "acceptance per position, not the shares of drafts accepted up to it?",
                             "give the running products s_j = a_1 a_2 ... a_j, or " + fix)


#: Run columns that are acceptance evidence: left empty on runs whose acceptance was pinned.
ACCEPTANCE_COLUMNS = ("acceptance_length", "draft_tokens", "accepted_tokens", "num_drafts")


def unpin(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose acceptance the engine pinned (``acceptance_pinned``) carry no acceptance evidence.

    Their measured ``acceptance_length`` moves to ``pinned_acceptance_length`` (unless that is
    already given) and ``acceptance_length``, ``draft_tokens``, ``accepted_tokens``, ``num_drafts`` and
    ``per_position_acceptance`` are emptied, so that no model reads a pinned value as a measurement of
    the drafter. Other runs are unchanged. Idempotent; returns a copy only when something moves.
    """
    if "acceptance_pinned" not in runs.columns:
        return runs
    pinned = runs["acceptance_pinned"].fillna(False).astype(bool).to_numpy()
    if not pinned.any():
        return runs
    out = runs.copy()
    if "pinned_acceptance_length" not in out.columns:
        out["pinned_acceptance_length"] = np.nan
    if "acceptance_length" in out.columns:
        keep = out["pinned_acceptance_length"].astype("float64")
        out["pinned_acceptance_length"] = keep.where(~pinned | keep.notna(), out["acceptance_length"].astype("float64"))
    for col in ACCEPTANCE_COLUMNS:
        if col in out.columns:
            out[col] = out[col].astype("float64").where(~pinned)
    if "per_position_acceptance" in out.columns:
        out["per_position_acceptance"] = out["per_position_acceptance"].where(~pinned)
    return out


def validate_models(df: pd.DataFrame, source: str = "models") -> pd.DataFrame:
    """Validate and clean a ``models`` table (one row per verifier or drafter).

    Checks, besides the schema: ``name`` unique; ``params_b`` in billions (a median above
    10,000 is taken as a raw parameter count); ``experts_per_token <= experts``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table, one row per model (:data:`~bayes_sd.traces.schema.MODELS`); not modified.
    source : str, default "models"
        Name of the file (or table) it came from, used in error messages.

    Returns
    -------
    pandas.DataFrame
        A cleaned copy in canonical column order.

    Raises
    ------
    TraceError
        When the table cannot be used; the message names ``source``, the column and the fix.
    """
    required = {c.name for c in MODELS if c.required}
    clean = _clean(df, MODELS, source, required, "name")
    dup = clean["name"].duplicated().to_numpy()
    if dup.any():
        raise TraceError(source, "name", f"duplicate model name in {_example(clean, dup, 'name')}",
                         "list each model once")
    if float(clean["params_b"].median()) > 1e4:
        raise TraceError(source, "params_b", "values look like raw parameter counts, not billions",
                         "params_b is in billions of parameters: divide by 1e9")
    _not_above(clean, "experts_per_token", "experts", source, "name", "experts_per_token exceeds experts",
               "experts_per_token is the routed top-k, at most the number of experts")
    return clean
