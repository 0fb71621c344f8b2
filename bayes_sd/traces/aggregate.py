"""Reduce request rows to run-level statistics, and flag saturated runs.

:func:`aggregate_runs` turns a ``requests`` table plus run metadata into the canonical
``runs`` table the models fit (sufficient statistics per run, so fit cost grows with
runs, not requests). :func:`detect_saturation` flags runs that are past the server's
capacity: they are not steady state and must not be fitted as such.

All computations are vectorised over requests (``groupby`` / ``bincount`` on integer run
codes): a million request rows aggregate in about a second.
"""

from __future__ import annotations

import logging
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from .schema import RUNS, TraceError
from .validate import (
    STAT_COLUMNS,
    format_per_position,
    parse_histogram,
    validate_requests,
    validate_runs,
)

log = logging.getLogger(__name__)

__all__ = ["aggregate_runs", "started_inside", "detect_saturation", "fill_saturation", "keep_runs", "check_run_ids",
           "configurations"]

_RUN_COLS = [c.name for c in RUNS]


def _per_run(codes: np.ndarray, n_runs: int, values, mask=None) -> np.ndarray:
    """Sum of ``values`` (where ``mask``) per run code."""
    v = np.asarray(values, dtype="float64")
    if mask is not None:
        v = np.where(mask, v, 0.0)
    return np.bincount(codes, weights=v, minlength=n_runs)


def started_inside(start, window_start, window_end) -> np.ndarray:
    """Which requests a run's statistics keep: those sent inside its measurement window, however late
    they end, as GuideLLM's window selects them. Keeping only those that also end inside would drop the
    slow requests of the window's last stretch and keep its fast ones, a bias that grows with the
    latency's share of the run.

    Parameters
    ----------
    start : array_like
        The requests' send times, s.
    window_start, window_end : float or array_like
        The window's ends, s (broadcast against ``start``).

    Returns
    -------
    numpy.ndarray of bool
        True for the requests sent inside the window, its ends included.
    """
    start = np.asarray(start, dtype="float64")
    return (start >= window_start) & (start <= window_end)


def aggregate_runs(requests: pd.DataFrame, runs_meta: pd.DataFrame, *, warmup_s: float | None = None,
                   cooldown_s: float | None = None, trim_frac: float = 0.1, min_keep: int = 20,
                   detect: bool = True, validate: bool = True, source: str = "requests",
                   meta_source: str = "runs metadata") -> pd.DataFrame:
    """Aggregate request rows into canonical run rows.

    Per run (times in seconds): the run spans ``[t0, t1]`` = [first start, last end].
    Warm-up and cool-down are trimmed by start time (:func:`started_inside`): the requests sent inside
    the window ``[t0 + warmup_s, t1 - cooldown_s]`` are kept, however late they end. If fewer than
    ``min(min_keep, n)`` requests remain, the run is kept untrimmed.

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
        ``latency_mean_s``, ``latency_sd_s``, ``latency_p50_s``, ... (s), ``latency_se_s`` (the
        mean's standard error, from the requests' autocorrelation in sending order, s); TTFT
        (``first_token_s - start_s``) mean and median (s); ``tpot_mean_s`` = mean over requests with more than one
        output token of ``(end_s - first_token_s) / (output_tokens - 1)`` (s); mean prompt and
        output tokens; sums of draft/accepted tokens and drafts, ``acceptance_length = 1 +
        accepted / num_drafts``; ``per_position_acceptance`` from the requests' summed
        ``acceptance_histogram`` where they carry one (else the metadata's). Rates over the measured
        window ``[t0 + warmup, t1 - cooldown]``:
        ``achieved_rps`` = requests completing in it / its length (requests/s), ``output_tps``
        = their output tokens / its length (tokens/s).
        ``in_flight_seen`` (requests): the requests in flight that the kept requests saw over their
        lives, output-token weighted (a closed loop that drains at the end sees fewer than its streams).

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
    keep = started_inside(start, a[codes], b[codes])
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

    kept = pd.DataFrame({"code": codes, "start": start, "lat": end - start, "ttft": first - start, "tpot": tpot,
                      "prompt": req["prompt_tokens"].to_numpy("float64"), "out": out_tok})
    for c in ("draft_tokens", "accepted_tokens", "num_drafts"):
        kept[c] = req[c].astype("float64").to_numpy()
    if "acceptance_histogram" in req:
        kept["histogram"] = req["acceptance_histogram"].to_numpy(object)
    kept = kept[keep]
    g = kept.groupby("code", sort=True)
    stats = g.agg(n_requests=("lat", "size"), latency_mean_s=("lat", "mean"), latency_sd_s=("lat", "std"),
                  ttft_mean_s=("ttft", "mean"), ttft_p50_s=("ttft", "median"), tpot_mean_s=("tpot", "mean"),
                  prompt_len=("prompt", "mean"), output_len=("out", "mean"),
                  output_len_sd=("out", "std"))
    stats["latency_se_s"] = _mean_se(kept)
    stats["in_flight_seen"] = _in_flight_seen(codes, start, end, out_tok, keep, n_runs)[stats.index]
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
    if "histogram" in kept:  # per-position shares from the requests' histograms, else the metadata's
        shares = _per_position(kept, runs["k"].to_numpy(), run_ids)
        runs["per_position_acceptance"] = shares.reindex(runs.index).fillna(runs["per_position_acceptance"])
    runs = runs.reset_index()[_RUN_COLS]
    runs = validate_runs(runs, f"{source} (aggregated)", check_units=False)
    if detect:
        runs = fill_saturation(runs, req)
    return runs


def _in_flight_seen(codes: np.ndarray, start: np.ndarray, end: np.ndarray, output_tokens: np.ndarray,
                    keep: np.ndarray, n_runs: int) -> np.ndarray:
    """Per run code, the requests in flight (itself included) that the run's kept requests saw: each
    request's time average of the run's requests in flight over its own life, averaged over the kept
    requests weighted by their output tokens (a request's load cost grows with its steps, so a long
    request's view counts for more). Every request of the run counts as in flight, the trimmed ones too.
    A closed loop of N streams sees N in steady state, fewer where it drains at the end (the last
    requests finish alone); NaN for a run whose kept requests all take no time."""
    t = np.concatenate([start, end])
    step = np.concatenate([np.ones(start.size), -np.ones(end.size)])
    run = np.concatenate([codes, codes])
    order = np.lexsort((t, run))
    t, step, run = t[order], step[order], run[order]
    in_flight = np.cumsum(step)  # after each event; each run's starts and ends cancel, so runs do not mix
    dt = np.diff(t, prepend=t[:1])
    dt[np.flatnonzero(np.diff(run, prepend=run[:1]))] = 0.0  # no time passes between two runs' events
    area = np.cumsum(np.concatenate([[0.0], in_flight[:-1]]) * dt)  # integral of requests in flight
    at = np.empty_like(area)
    at[order] = area
    life = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        seen = (at[start.size:] - at[:start.size]) / life
    ok = keep & (life > 0) & np.isfinite(seen)
    weight = np.where(ok, np.maximum(output_tokens, 1.0), 0.0)
    total = np.bincount(codes, weights=weight, minlength=n_runs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, _per_run(codes, n_runs, np.where(ok, seen, 0.0) * weight) / total, np.nan)


def _mean_se(kept: pd.DataFrame) -> pd.Series:
    """Per run code, the standard error of the mean latency (s): ``sd / sqrt(ESS)``, with the effective
    sample size of the latencies in the order the requests were sent (ArviZ's autocorrelation-based
    ``ess(method="mean")``, Geyer's initial monotone sequence), at most the request count. Requests that
    queue together share their wait, so near capacity hundreds of requests can be worth a dozen
    independent ones, and ``sd / sqrt(n)`` would overstate what the run's mean knows."""
    out = {}
    for code, g in kept.groupby("code", sort=True):
        lat = g.sort_values("start", kind="stable")["lat"].to_numpy()
        n = lat.size
        sd = float(lat.std(ddof=1)) if n > 1 else np.nan
        ess = float(az.ess(lat[None, :], method="mean")) if n >= 8 and sd > 0 else float(n)
        out[code] = sd / np.sqrt(np.clip(ess if np.isfinite(ess) else n, 1.0, n))
    return pd.Series(out)


def _survival_from_histogram(counts, k: int) -> np.ndarray:
    """``s_1..s_k``, the share of verify steps whose first j drafts were all accepted, from the steps that
    accepted exactly j drafts (``counts``, j = 0..m, m <= k; longer: ValueError); empty without steps."""
    counts = np.asarray(counts, float)
    if counts.size > k + 1:
        raise ValueError(f"{counts.size - 1} positions for k = {k}")
    if counts.sum() <= 0:
        return np.empty(0)
    dense = np.zeros(k + 1)
    dense[:counts.size] = counts
    return np.cumsum(dense[::-1])[::-1][1:] / dense.sum()


def _per_position(kept: pd.DataFrame, k: np.ndarray, run_ids) -> pd.Series:
    """Per run id, the ``per_position_acceptance`` cell of its kept requests' summed acceptance
    histograms (``k[code]`` the run's draft length); none where no request has one, or where one has
    more positions than k (logged)."""
    out = {}
    given = kept["histogram"].notna()
    for code, cells in kept.loc[given, ["code", "histogram"]].groupby("code")["histogram"]:
        counts = [parse_histogram(c) for c in cells]
        total = np.zeros(max(c.size for c in counts))
        for c in counts:
            total[:c.size] += c
        try:
            shares = _survival_from_histogram(total, int(k[code]))
        except ValueError as e:
            log.warning(f"run {run_ids[code]}: its requests' acceptance histograms do not fit its draft length "
                        f"({e}): its per-position shares are left empty")
            continue
        if shares.size:
            out[run_ids[code]] = format_per_position(shares)
    return pd.Series(out, dtype=object)


def _ranks(codes: np.ndarray, values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Ordinal ranks (1..n, ties by position) of ``values`` within each run code."""
    order = np.argsort(values, kind="stable")
    order = order[np.argsort(codes[order], kind="stable")]  # stable radix sort on small ints: fast
    offsets = np.cumsum(n) - n
    ranks = np.empty(len(values), dtype="float64")
    ranks[order] = np.arange(len(values)) - offsets[codes[order]] + 1
    return ranks


def _spearman(codes: np.ndarray, m: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run code: rank correlation of ``y`` with ``x``, the ranks of ``x`` and the counts."""
    n = np.bincount(codes, minlength=m).astype("float64")
    rx, ry = _ranks(codes, x, n), _ranks(codes, y, n)
    sx, sy = _per_run(codes, m, rx), _per_run(codes, m, ry)
    sxy, sxx, syy = _per_run(codes, m, rx * ry), _per_run(codes, m, rx * rx), _per_run(codes, m, ry * ry)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sxy / n - sx * sy / n**2
        rho = cov / np.sqrt((sxx / n - (sx / n) ** 2) * (syy / n - (sy / n) ** 2))
    return rho, rx, n


def _run_trend(requests: pd.DataFrame, run_ids, min_n: int, ratio: float, corr: float) -> dict:
    """Per run_id, a reason string when latency trends up over the run and is still rising at its end."""
    r = requests[requests["run_id"].isin(set(run_ids))]
    if len(r) == 0:
        return {}
    codes, ids = pd.factorize(r["run_id"])
    m = len(ids)
    lat = (r["end_s"] - r["start_s"]).to_numpy("float64")
    start = r["start_s"].to_numpy("float64")
    rho, x, n = _spearman(codes, m, start, lat)
    late = x > n[codes] / 2  # requests sent in the second half of the run
    rho_late, _, _ = _spearman(codes[late], m, start[late], lat[late])
    with np.errstate(divide="ignore", invalid="ignore"):
        third = np.floor(3 * (x - 1) / n[codes])
        first = _per_run(codes, m, lat, third == 0) / np.bincount(codes, weights=third == 0, minlength=m)
        last = _per_run(codes, m, lat, third == 2) / np.bincount(codes, weights=third == 2, minlength=m)
        hit = (n >= min_n) & (last > ratio * first) & (rho > corr) & (rho_late > corr)
    return {ids[i]: (f"latency trend: last third {last[i]:.3g} s = {_x(last[i] / first[i])}x the first third "
                     f"{first[i]:.3g} s (rank correlation with start time {rho[i]:.2f}, still rising over the last "
                     f"half: {rho_late[i]:.2f})")
            for i in np.flatnonzero(hit)}


#: Source names that are files (their folder, not the file, is the sweep: one file per rate is common).
_FILE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".csv", ".tsv", ".parquet", ".pq", ".prom", ".txt", ".log",
                  ".gz", ".bz2", ".zst")
#: Run columns that make a configuration, with the sweep.
_CONFIG = ("hardware", "verifier", "drafter", "k", "dataset", "load_type")


def _x(v: float) -> str:
    """A growth factor as printed in reasons: 240, 12, 4.0."""
    return f"{v:.0f}" if v >= 9.95 else f"{v:.1f}"


def _sweep(source) -> str:
    s = str(source)
    if "/" in s or "\\" in s or s.lower().endswith(_FILE_SUFFIXES):
        return str(Path(s).parent)
    return s


def configurations(runs: pd.DataFrame) -> pd.Series:
    """The configuration of each run, as judged by :func:`detect_saturation`: same sweep (the ``source``,
    or its folder when it is a file), hardware, verifier, drafter, k, dataset and load type. Returns
    integer codes aligned with ``runs``."""
    parts = [runs["source"].map(_sweep) if "source" in runs.columns else pd.Series("", index=runs.index)]
    for c in _CONFIG:
        if c in runs.columns:
            parts.append(runs[c].astype("str").fillna(""))
    key = pd.Series(["\x1f".join(v) for v in zip(*parts)], index=runs.index)
    return pd.Series(pd.factorize(key)[0], index=runs.index)


def detect_saturation(runs: pd.DataFrame, requests: pd.DataFrame | None = None, *, rate_frac: float = 0.9,
                      trend_ratio: float = 1.5, trend_corr: float = 0.5, min_trend_requests: int = 20,
                      rps_gain: float = 1.02, light_frac: float = 1 / 3, queue_margin: float = 3.0,
                      ttft_spread: float = 5.0, material_frac: float = 0.1,
                      notes: list | None = None) -> tuple[pd.Series, pd.Series]:
    """Flag runs past the server's capacity, judging each configuration against its own light load.

    A configuration is the runs of one sweep (same ``source``, or the same folder for file sources, so
    that one file per rate is judged together), hardware, verifier, drafter, k, dataset and load type.
    Its capacity ``C`` is the highest throughput any of its runs achieved (``achieved_rps``), a run's
    load fraction ``rho = achieved_rps / C``, and its light-load reference is the run with the lowest
    load (offered rate or concurrency). Rules (any one flags the run; each names itself and its numbers
    in the reason):

    - **rate shortfall** (open loop): ``achieved_rps < rate_frac * rate_rps``: the server did not keep
      up with the offered rate;
    - **latency trend** (with ``requests``): the mean latency of the last third of the run's requests by
      start time exceeds ``trend_ratio`` x the first third's, the rank (Spearman) correlation of latency
      with start time exceeds ``trend_corr``, and it still exceeds ``trend_corr`` over the requests sent
      in the second half: a queue that keeps growing. A step up that levels off (a change in conditions
      during the run, not overload) is not a trend (runs of at least ``min_trend_requests`` requests);
    - **queueing** and **admission wait** (relative): mean latency, or median TTFT, over the light-load
      run's exceeds ``queue_margin / (1 - rho)``. In an M/G/1 processor-sharing queue the mean sojourn
      time grows as ``1 / (1 - rho)`` of its no-load value whatever the service-time distribution, and
      a first-come-first-served queue with less variable service than exponential grows more slowly;
      a batching server grows more slowly still while batches have room. ``C`` is at most the true
      capacity, so ``rho`` is overestimated and the allowance is generous. The margin (3) covers what
      a batching server adds to processor sharing: prefill chunks slowing every decode step, batch
      composition varying with the load (the simulator's prefill-heavy server at 85 % of capacity,
      prompts of 4000 tokens, runs at 14x its light-load latency where ``1 / (1 - rho)`` says 6.7x;
      a margin of 2 would flag that steady run). The run with the highest throughput has
      ``rho = 1`` and an unlimited allowance. TTFT counts only when the extra wait is material: more
      than ``material_frac`` of the run's mean latency;
    - **admission wait** (relative, without ``rho``): TTFT grew more than ``ttft_spread`` times faster
      than TPOT from the light-load run (and the excess wait is material, as above). Under batching,
      first-token and per-token times scale together with the step time; TTFT running ahead of TPOT
      means requests wait before they are admitted. For a first-come-first-served prefill queue a
      factor of 5 needs the admission path more than 80 % busy (M/M/1) or 89 % (M/D/1). This is the
      rule that catches the highest-throughput run of a closed-loop sweep, where ``rho = 1``;
    - **throughput plateau** (closed loop): ``achieved_rps <= rps_gain`` x the achieved rate at the
      next lower concurrency of the configuration: more streams no longer buy throughput.

    Guards: a run at ``light_frac`` (a third) of its configuration's capacity or less is never flagged
    (load fraction ``max(achieved, offered) / C`` in open loop, ``achieved / C`` in closed loop), not
    even by the rate-shortfall or trend rules: at that load the server cannot be saturated, and a rule
    that fires there measures something else (a short or disturbed run); each such case is reported in
    ``notes``. A configuration with a single run has no capacity estimate and no reference: only the
    rate-shortfall and trend rules can flag it. Why not "TTFT above a share of the latency": with long
    prompts, short outputs or speculative decoding (which shortens decode) prefill is a large share of
    every request even on an idle server.

    Parameters
    ----------
    runs : pandas.DataFrame
        Canonical runs table (``load_type``, ``rate_rps`` and ``achieved_rps`` in requests/s,
        ``concurrency``, ``latency_mean_s``, ``ttft_p50_s`` / ``ttft_mean_s``, ``tpot_mean_s`` in s).
    requests : pandas.DataFrame, optional
        Their REQUESTS rows, for the latency-trend rule.
    rate_frac : float, default 0.9
        Rate shortfall: flagged below this fraction of the offered rate.
    trend_ratio, trend_corr : float, default 1.5 and 0.5
        Latency trend: last third's over first third's mean latency; rank correlation with start time.
    min_trend_requests : int, default 20
        Latency trend: fewest requests a run needs.
    rps_gain : float, default 1.02
        Throughput plateau: flagged when throughput is at most this factor above the next lower concurrency's.
    light_frac : float, default 1/3
        Guard: runs at this fraction of their configuration's capacity or less are never flagged.
    queue_margin : float, default 3.0
        Queueing: latency / TTFT may grow up to ``queue_margin / (1 - rho)`` over the light-load run.
    ttft_spread : float, default 5.0
        Admission wait: TTFT may grow up to this factor faster than TPOT.
    material_frac : float, default 0.1
        TTFT rules: the extra wait must exceed this fraction of the run's mean latency.
    notes : list, optional
        Receives one line per rule suppressed by the light-load guard.

    Returns
    -------
    saturated : pandas.Series of bool
        Aligned with ``runs.index``.
    reason : pandas.Series of str
        Aligned with ``runs.index``; '' when not saturated, reasons joined by '; '.
    """
    idx = runs.index
    n = len(runs)

    def col(name):
        return (runs[name].astype("float64") if name in runs.columns else pd.Series(np.nan, index=idx)).to_numpy()

    lt = (runs["load_type"].astype("str") if "load_type" in runs.columns else pd.Series("", index=idx)).to_numpy()
    ids = runs["run_id"].astype("str").to_numpy() if "run_id" in runs.columns else np.array([str(i) for i in idx])
    rps, rate, lat, conc = col("achieved_rps"), col("rate_rps"), col("latency_mean_s"), col("concurrency")
    p50, mean_ttft, tpot = col("ttft_p50_s"), col("ttft_mean_s"), col("tpot_mean_s")
    ttft = np.where(np.isnan(p50), mean_ttft, p50)
    ttft_name = np.where(np.isnan(p50), "mean", "median")
    absolute: list[list[str]] = [[] for _ in range(n)]
    relative: list[list[str]] = [[] for _ in range(n)]
    is_open = lt == "rate"

    with np.errstate(invalid="ignore"):
        short = is_open & (rps < rate_frac * rate)
    for i in np.flatnonzero(short):
        absolute[i].append(f"rate shortfall: achieved {rps[i]:.3g} req/s < {rate_frac:g} x offered {rate[i]:.3g} req/s")
    if requests is not None and "run_id" in runs.columns:
        trend = _run_trend(requests, runs["run_id"], min_trend_requests, trend_ratio, trend_corr)
        for i in np.flatnonzero(runs["run_id"].isin(list(trend)).to_numpy()):
            absolute[i].append(trend[runs["run_id"].iloc[i]])

    codes = configurations(runs).to_numpy()
    load = np.where(is_open, np.where(np.isnan(rate), rps, rate), conc)
    cap = pd.Series(rps).groupby(codes).transform("max").to_numpy()
    count = pd.Series(~np.isnan(rps)).groupby(codes).transform("sum").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(count >= 2, rps / cap, np.nan)
        fraction = np.where(is_open, np.fmax(rps, rate), rps) / cap
        fraction = np.where(count >= 2, fraction, np.nan)
    guard = fraction <= light_frac  # NaN compares False: no estimate, no guard
    ref = np.full(n, -1)
    order = np.lexsort((np.nan_to_num(rps, nan=np.inf), np.nan_to_num(load, nan=np.inf), codes))
    first_of = {}
    for j in order:
        if np.isfinite(load[j]) and codes[j] not in first_of:
            first_of[codes[j]] = j
    for i in range(n):
        ref[i] = first_of.get(codes[i], -1)

    for i in np.flatnonzero((count >= 2) & (ref >= 0) & (ref != np.arange(n))):
        r = ref[i]
        allow = queue_margin / (1.0 - rho[i]) if rho[i] < 1.0 else np.inf
        where = f"at the lightest load (rho {rho[i]:.2f}); queueing allows at most {_x(allow)}x"
        if lat[r] > 0 and lat[i] > allow * lat[r]:
            relative[i].append(f"queueing: mean latency {lat[i]:.3g} s = {_x(lat[i] / lat[r])}x the {lat[r]:.3g} s "
                               + where)
        if not (ttft[r] > 0 and np.isfinite(ttft[i])):
            continue
        grow = ttft[i] / ttft[r]
        if grow > allow and ttft[i] - ttft[r] > material_frac * lat[i]:
            relative[i].append(f"admission wait: {ttft_name[i]} TTFT {ttft[i]:.3g} s = {_x(grow)}x the {ttft[r]:.3g} s "
                               + where)
            continue
        step = tpot[i] / tpot[r] if tpot[r] > 0 and np.isfinite(tpot[i]) else np.nan
        if np.isfinite(step):
            base = max(step, 1.0)
            if grow > ttft_spread * base and ttft[i] - ttft[r] * base > material_frac * lat[i]:
                relative[i].append(f"admission wait: {ttft_name[i]} TTFT {ttft[i]:.3g} s = {_x(grow)}x the "
                                   f"{ttft[r]:.3g} s at the lightest load while TPOT grew {_x(step)}x (TTFT may "
                                   f"grow at most {ttft_spread:g}x faster than TPOT)")

    closed = np.flatnonzero((lt == "concurrency") & ~np.isnan(conc) & ~np.isnan(rps))
    if len(closed):
        cl = pd.DataFrame({"g": codes[closed], "c": conc[closed], "r": rps[closed], "i": closed})
        cl = cl.sort_values(["g", "c"], kind="stable")
        prev_c, prev_r = cl.groupby("g")["c"].shift(1), cl.groupby("g")["r"].shift(1)
        hit = (cl["c"] > prev_c) & (cl["r"] <= rps_gain * prev_r)
        for j in np.flatnonzero(hit.to_numpy()):
            i = int(cl["i"].iloc[j])
            relative[i].append(f"throughput plateau: {rps[i]:.3g} req/s at concurrency {conc[i]:g} not above "
                               f"{rps_gain:g} x {prev_r.iloc[j]:.3g} req/s at concurrency {prev_c.iloc[j]:g}")

    out = []
    for i in range(n):
        found = absolute[i] + relative[i]
        if guard[i] and found:
            if notes is not None:
                notes.append(f"run {ids[i]}: not flagged saturated at {fraction[i]:.0%} of its configuration's "
                             f"capacity (light-load guard), although: {'; '.join(found)}. Fix: check the run "
                             "(too short, disturbed?), or drop it with --drop-run")
            found = []
        out.append("; ".join(found))
    reason = pd.Series(out, index=idx, dtype="str")
    return (reason != "").astype(bool), reason


def fill_saturation(runs: pd.DataFrame, requests: pd.DataFrame | None = None, *, keep=(),
                    notes: list | None = None, **kw) -> pd.DataFrame:
    """Copy of ``runs`` with ``saturated`` / ``saturation_reason`` filled where ``saturated``
    is missing (values already given are kept), using :func:`detect_saturation`.

    Parameters
    ----------
    runs : pandas.DataFrame
        Canonical runs table; not modified.
    requests : pandas.DataFrame, optional
        Their REQUESTS rows, for the latency-trend rule.
    keep : iterable of str, default ()
        Run ids never flagged (``bayes-sd ingest --keep-run``): ``saturated`` false whatever the rules
        or the input say; a run so unflagged is reported in ``notes`` with the reason it loses.
    notes : list, optional
        Receives one line per run the light-load guard or ``keep`` kept from being flagged.
    **kw
        Thresholds of :func:`detect_saturation` (``rate_frac``, ``queue_margin``, ...).

    Returns
    -------
    pandas.DataFrame
        The copy, with ``saturated`` (bool) and ``saturation_reason`` (str).
    """
    out = runs.copy()
    sat, reason = detect_saturation(out, requests, notes=notes, **kw)
    given = out["saturated"] if "saturated" in out.columns else pd.Series(pd.NA, index=out.index, dtype="boolean")
    todo = given.isna()
    out["saturated"] = given.astype("boolean").mask(todo, sat).astype(bool)
    old = out["saturation_reason"] if "saturation_reason" in out.columns else pd.Series("", index=out.index)
    out["saturation_reason"] = old.astype("str").fillna("").mask(todo, reason)
    return keep_runs(out, keep, notes)


def check_run_ids(runs: pd.DataFrame, named: list[str], option: str) -> pd.Series:
    """``runs.run_id`` as strings; TraceError naming ``option`` when a name in ``named`` is no run's id."""
    ids = runs["run_id"].astype("str")
    unknown = [n for n in named if n not in set(ids)]
    if unknown:
        raise TraceError(option, "run_id", f"no run {unknown[0]!r} among the inputs",
                         f"use a run id of the output table (e.g. {', '.join(ids.head(3))})")
    return ids


def keep_runs(runs: pd.DataFrame, keep=(), notes: list | None = None) -> pd.DataFrame:
    """``runs`` with the runs named in ``keep`` unflagged (``saturated`` false, reason ''); each that
    was flagged is reported in ``notes``. Raises TraceError for an id that names no run."""
    keep = [str(k) for k in keep]
    if not keep:
        return runs
    ids = check_run_ids(runs, keep, "--keep-run")
    out = runs.copy()
    hit = ids.isin(keep).to_numpy()
    was = out["saturated"].fillna(False).astype(bool).to_numpy() & hit
    if notes is not None:
        for rid, why in zip(ids[was], out.loc[was, "saturation_reason"]):
            notes.append(f"run {rid}: kept as steady state by --keep-run, although flagged: {why}")
    out.loc[hit, "saturated"] = False
    out.loc[hit, "saturation_reason"] = ""
    out["saturated"] = out["saturated"].astype(bool)
    return out
