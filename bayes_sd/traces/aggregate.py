"""Reduce request rows to run-level statistics, and flag saturated runs.

:func:`aggregate_runs` turns a ``requests`` table plus run metadata into the canonical
``runs`` table the models fit (sufficient statistics per run, so fit cost grows with
runs, not requests). :func:`detect_saturation` flags runs that are past the server's
capacity: they are not steady state and must not be fitted as such.

All computations are vectorised over requests (``groupby`` / ``bincount`` on integer run
codes): a million request rows aggregate in about a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import RUNS, TraceError
from .validate import STAT_COLUMNS, validate_requests, validate_runs

__all__ = ["aggregate_runs", "detect_saturation", "fill_saturation"]

_RUN_COLS = [c.name for c in RUNS]
_GROUP = ["source", "hardware", "verifier", "drafter", "k", "dataset"]


def _per_run(codes: np.ndarray, n_runs: int, values, mask=None) -> np.ndarray:
    """Sum of ``values`` (where ``mask``) per run code."""
    v = np.asarray(values, dtype="float64")
    if mask is not None:
        v = np.where(mask, v, 0.0)
    return np.bincount(codes, weights=v, minlength=n_runs)


def aggregate_runs(requests: pd.DataFrame, runs_meta: pd.DataFrame, *, warmup_s: float | None = None,
                   cooldown_s: float | None = None, trim_frac: float = 0.1, min_keep: int = 20,
                   detect: bool = True, validate: bool = True, source: str = "requests",
                   meta_source: str = "runs metadata") -> pd.DataFrame:
    """Aggregate request rows into canonical run rows.

    Per run (times in seconds): the run spans ``[t0, t1]`` = [first start, last end].
    Warm-up and cool-down are trimmed: requests that start before ``t0 + warmup_s`` or end
    after ``t1 - cooldown_s`` are dropped. If fewer than ``min(min_keep, n)`` requests remain,
    the run is kept untrimmed.

    Parameters
    ----------
    requests : pandas.DataFrame
        Canonical REQUESTS table (times in s, lengths in tokens).
    runs_meta : pandas.DataFrame
        The other run columns, one row per run (validated with ``require_stats=False``);
        statistics it carries are replaced. Every request run_id needs a metadata row; metadata rows
        without requests are left out.
    warmup_s, cooldown_s : float, optional
        Seconds trimmed at the start and the end of each run (each defaults to ``trim_frac`` of the span).
    trim_frac : float, default 0.1
        Default warm-up and cool-down, as a fraction of the run's span.
    min_keep : int, default 20
        Fewest requests a trimmed run keeps; below ``min(min_keep, n)`` it is kept untrimmed.
    detect : bool, default True
        Fill the ``saturated`` / ``saturation_reason`` columns where the metadata leaves them empty
        (:func:`detect_saturation`, with the requests).
    validate : bool, default True
        False skips re-validating a requests table that :func:`validate_requests` already returned.
    source, meta_source : str
        Names of the two tables in errors (default ``"requests"``, ``"runs metadata"``).

    Returns
    -------
    pandas.DataFrame
        Validated canonical runs table. Statistics of the kept requests: ``n_requests``; latency
        (``end_s - start_s``) mean, sd (ddof 1), p50/p90/p99 (linear interpolation, as numpy):
        ``latency_mean_s``, ``latency_sd_s``, ``latency_p50_s``, ... (s); TTFT (``first_token_s -
        start_s``) mean and median (s); ``tpot_mean_s`` = mean over requests with more than one
        output token of ``(end_s - first_token_s) / (output_tokens - 1)`` (s); mean prompt and
        output tokens; sums of draft/accepted tokens and drafts, ``acceptance_length = 1 +
        accepted / num_drafts``. Rates over the measured window ``[t0 + warmup, t1 - cooldown]``:
        ``achieved_rps`` = requests completing in it / its length (requests/s), ``output_tps``
        = their output tokens / its length (tokens/s).

    Raises
    ------
    TraceError
        When a table fails validation, or a request's run_id has no metadata row.
    """
    req = validate_requests(requests, source) if validate else requests
    meta = validate_runs(runs_meta, meta_source, require_stats=False)
    codes, run_ids = pd.factorize(req["run_id"])
    missing = sorted(set(run_ids) - set(meta["run_id"]))
    if missing:
        raise TraceError(source, "run_id", f"no run metadata for {len(missing)} run_id(s): {missing[:8]}",
                         "give a runs table with a row (run_id, source, hardware, verifier, drafter, dataset, k, "
                         "load_type, rate_rps or concurrency) for each of these runs")
    n_runs = len(run_ids)
    start = req["start_s"].to_numpy("float64")
    first = req["first_token_s"].to_numpy("float64")
    end = req["end_s"].to_numpy("float64")
    out_tok = req["output_tokens"].to_numpy("float64")
    t0 = pd.Series(start).groupby(codes).min().to_numpy()
    t1 = pd.Series(end).groupby(codes).max().to_numpy()
    span = t1 - t0
    warm = np.full(n_runs, warmup_s, dtype="float64") if warmup_s is not None else trim_frac * span
    cool = np.full(n_runs, cooldown_s, dtype="float64") if cooldown_s is not None else trim_frac * span
    a, b = t0 + warm, t1 - cool
    keep = (start >= a[codes]) & (end <= b[codes])
    n_all = np.bincount(codes, minlength=n_runs)
    n_keep = np.bincount(codes, weights=keep, minlength=n_runs)
    untrim = (n_keep < np.minimum(min_keep, n_all)) | (b <= a)
    a, b = np.where(untrim, t0, a), np.where(untrim, t1, b)
    keep |= untrim[codes]
    done = (end >= a[codes]) & (end <= b[codes])
    window = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        achieved = np.where(window > 0, _per_run(codes, n_runs, 1.0 * done) / window, np.nan)
        out_tps = np.where(window > 0, _per_run(codes, n_runs, out_tok, done) / window, np.nan)
        tpot = np.where(out_tok > 1, (end - first) / (out_tok - 1), np.nan)

    kept = pd.DataFrame({"code": codes, "lat": end - start, "ttft": first - start, "tpot": tpot,
                      "prompt": req["prompt_tokens"].to_numpy("float64"), "out": out_tok})
    for c in ("draft_tokens", "accepted_tokens", "num_drafts"):
        kept[c] = req[c].astype("float64").to_numpy()
    kept = kept[keep]
    g = kept.groupby("code", sort=True)
    stats = g.agg(n_requests=("lat", "size"), latency_mean_s=("lat", "mean"), latency_sd_s=("lat", "std"),
                  ttft_mean_s=("ttft", "mean"), ttft_p50_s=("ttft", "median"), tpot_mean_s=("tpot", "mean"),
                  prompt_len=("prompt", "mean"), output_len=("out", "mean"))
    q = g["lat"].quantile([0.5, 0.9, 0.99]).unstack()
    stats["latency_p50_s"], stats["latency_p90_s"], stats["latency_p99_s"] = q[0.5], q[0.9], q[0.99]
    for c in ("draft_tokens", "accepted_tokens", "num_drafts"):
        stats[c] = g[c].sum(min_count=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats["acceptance_length"] = np.where(stats["num_drafts"] > 0,
                                              1.0 + stats["accepted_tokens"] / stats["num_drafts"], np.nan)
    stats["achieved_rps"] = achieved[stats.index]
    stats["output_tps"] = out_tps[stats.index]
    stats.index = run_ids[stats.index]

    runs = meta.set_index("run_id").loc[list(run_ids)]
    for c in STAT_COLUMNS:
        runs[c] = stats[c].reindex(runs.index)
    runs = runs.reset_index()[_RUN_COLS]
    runs = validate_runs(runs, f"{source} (aggregated)", check_units=False)
    if detect:
        runs = fill_saturation(runs, req)
    return runs


def _ranks(codes: np.ndarray, values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Ordinal ranks (1..n, ties by position) of ``values`` within each run code."""
    order = np.argsort(values, kind="stable")
    order = order[np.argsort(codes[order], kind="stable")]  # stable radix sort on small ints: fast
    offsets = np.cumsum(n) - n
    ranks = np.empty(len(values), dtype="float64")
    ranks[order] = np.arange(len(values)) - offsets[codes[order]] + 1
    return ranks


def _run_trend(requests: pd.DataFrame, run_ids, min_n: int, ratio: float, corr: float) -> dict:
    """Per run_id, a reason string when latency trends up over the run (start order)."""
    r = requests[requests["run_id"].isin(set(run_ids))]
    if len(r) == 0:
        return {}
    codes, ids = pd.factorize(r["run_id"])
    m = len(ids)
    lat = (r["end_s"] - r["start_s"]).to_numpy("float64")
    n = np.bincount(codes, minlength=m).astype("float64")
    x = _ranks(codes, r["start_s"].to_numpy("float64"), n)
    y = _ranks(codes, lat, n)
    sx, sy = _per_run(codes, m, x), _per_run(codes, m, y)
    sxy, sxx, syy = _per_run(codes, m, x * y), _per_run(codes, m, x * x), _per_run(codes, m, y * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sxy / n - sx * sy / n**2
        rho = cov / np.sqrt((sxx / n - (sx / n) ** 2) * (syy / n - (sy / n) ** 2))
        third = np.floor(3 * (x - 1) / n[codes])
        first = _per_run(codes, m, lat, third == 0) / np.bincount(codes, weights=third == 0, minlength=m)
        last = _per_run(codes, m, lat, third == 2) / np.bincount(codes, weights=third == 2, minlength=m)
        hit = (n >= min_n) & (last > ratio * first) & (rho > corr)
    return {ids[i]: (f"latency grows over the run (last third {last[i]:.3g} s vs first third "
                     f"{first[i]:.3g} s, rank correlation with start time {rho[i]:.2f})")
            for i in np.flatnonzero(hit)}


def detect_saturation(runs: pd.DataFrame, requests: pd.DataFrame | None = None, *, rate_frac: float = 0.9,
                      ttft_frac: float = 0.2, rps_gain: float = 1.02, trend_ratio: float = 1.5,
                      trend_corr: float = 0.5, min_trend_requests: int = 20) -> tuple[pd.Series, pd.Series]:
    """Flag runs past the server's capacity.

    Rules (any one flags the run):

    - open loop (``load_type == 'rate'``): ``achieved_rps < rate_frac * rate_rps``;
    - with ``requests`` (any load type): latency trends up over the run: the mean latency
      of the last third of its requests by start time exceeds ``trend_ratio`` x the first
      third's, and the rank (Spearman) correlation of latency with start time exceeds
      ``trend_corr`` (runs with at least ``min_trend_requests`` requests);
    - median TTFT (``ttft_p50_s``, else ``ttft_mean_s``) above ``ttft_frac`` x
      ``latency_mean_s``: requests wait for admission. Caveat: long prompts with very short
      outputs can trip this legitimately; raise ``ttft_frac`` for such workloads;
    - closed loop: ``achieved_rps <= rps_gain`` x the achieved rate at the next lower
      concurrency of the same (source, hardware, verifier, drafter, k, dataset): more
      streams no longer buy throughput.

    Parameters
    ----------
    runs : pandas.DataFrame
        Canonical runs table (``load_type``, ``rate_rps`` and ``achieved_rps`` in requests/s,
        ``concurrency``, ``latency_mean_s``/``ttft_p50_s``/``ttft_mean_s`` in s).
    requests : pandas.DataFrame, optional
        Their REQUESTS rows, for the latency-trend rule.
    rate_frac : float, default 0.9
        Open loop: flagged when the achieved rate is below this fraction of the offered rate.
    ttft_frac : float, default 0.2
        Flagged when median TTFT exceeds this fraction of mean latency.
    rps_gain : float, default 1.02
        Closed loop: flagged when throughput is at most this factor above the next lower concurrency's.
    trend_ratio : float, default 1.5
        Trend rule: last third's over first third's mean latency.
    trend_corr : float, default 0.5
        Trend rule: rank correlation of latency with start time.
    min_trend_requests : int, default 20
        Trend rule: fewest requests a run needs.

    Returns
    -------
    saturated : pandas.Series of bool
        Aligned with ``runs.index``.
    reason : pandas.Series of str
        Aligned with ``runs.index``; '' when not saturated, reasons joined by '; '.
    """
    idx = runs.index

    def col(name):
        return runs[name].astype("float64") if name in runs.columns else pd.Series(np.nan, index=idx)

    reasons = [[] for _ in range(len(runs))]

    def add(mask, text):
        for i in np.flatnonzero(np.asarray(mask.fillna(False), dtype=bool)):
            reasons[i].append(text(i))

    lt = runs["load_type"].astype("str") if "load_type" in runs.columns else pd.Series("", index=idx)
    rps, rate, lat = col("achieved_rps"), col("rate_rps"), col("latency_mean_s")
    add((lt == "rate") & (rps < rate_frac * rate),
        lambda i: f"achieved {rps.iloc[i]:.3g} req/s < {rate_frac:g} x offered {rate.iloc[i]:.3g} req/s")
    if requests is not None and "run_id" in runs.columns:
        trend = _run_trend(requests, runs["run_id"], min_trend_requests, trend_ratio, trend_corr)
        add(runs["run_id"].isin(list(trend)), lambda i: trend[runs["run_id"].iloc[i]])
    ttft = col("ttft_p50_s").fillna(col("ttft_mean_s"))
    add(ttft > ttft_frac * lat, lambda i: f"median TTFT {ttft.iloc[i]:.3g} s > {ttft_frac:g} x mean latency "
        f"{lat.iloc[i]:.3g} s (requests wait for admission)")
    conc = col("concurrency")
    closed = (lt == "concurrency") & conc.notna() & rps.notna()
    if closed.any() and all(c in runs.columns for c in _GROUP):
        cl = runs.loc[closed, _GROUP].astype("str").assign(_c=conc[closed], _r=rps[closed], _i=np.flatnonzero(closed))
        cl = cl.sort_values(_GROUP + ["_c"], kind="stable")
        grp = cl.groupby(_GROUP, sort=False, dropna=False)
        prev_c, prev_r = grp["_c"].shift(1), grp["_r"].shift(1)
        hit = (cl["_c"] > prev_c) & (cl["_r"] <= rps_gain * prev_r)
        for j in np.flatnonzero(hit.to_numpy()):
            i = int(cl["_i"].iloc[j])
            reasons[i].append(f"throughput {rps.iloc[i]:.3g} req/s at concurrency {conc.iloc[i]:g} not above "
                              f"{rps_gain:g} x {prev_r.iloc[j]:.3g} req/s at concurrency {prev_c.iloc[j]:g}")
    reason = pd.Series(["; ".join(r) for r in reasons], index=idx, dtype="str")
    return (reason != "").astype(bool), reason


def fill_saturation(runs: pd.DataFrame, requests: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    """Copy of ``runs`` with ``saturated`` / ``saturation_reason`` filled where ``saturated``
    is missing (values already given are kept), using :func:`detect_saturation`.

    Parameters
    ----------
    runs : pandas.DataFrame
        Canonical runs table; not modified.
    requests : pandas.DataFrame, optional
        Their REQUESTS rows, for the latency-trend rule.
    **kw
        Thresholds of :func:`detect_saturation` (``rate_frac``, ``ttft_frac``, ...).

    Returns
    -------
    pandas.DataFrame
        The copy, with ``saturated`` (bool) and ``saturation_reason`` (str).
    """
    out = runs.copy()
    sat, reason = detect_saturation(out, requests, **kw)
    given = out["saturated"] if "saturated" in out.columns else pd.Series(pd.NA, index=out.index, dtype="boolean")
    todo = given.isna()
    out["saturated"] = given.astype("boolean").mask(todo, sat).astype(bool)
    old = out["saturation_reason"] if "saturation_reason" in out.columns else pd.Series("", index=out.index)
    out["saturation_reason"] = old.astype("str").fillna("").mask(todo, reason)
    return out
