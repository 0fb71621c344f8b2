"""Scores of held-out predictions that cannot flatter: every run counts, saturation included.

Inputs are predictive draws of a run's mean latency (seconds; ``inf`` where a draw puts the run
past its saturation rate) and what was measured (seconds; ``inf`` for a run measured saturated:
its latency had no steady state). Nothing is dropped:

- **MAPE of the median and of the mean.** A run measured finite whose predictive mean is infinite
  (some draw saturated) is an error of infinite size, reported as a count next to the MAPE over
  the others, never silently left out.
- **Coverage** of central 50/80/90/95% predictive intervals, with a cluster bootstrap interval
  (clusters: configurations, which share their costs, so runs are not independent units). An
  interval whose upper end is infinite covers a finite run only if its lower end is below it.
- **PIT** (probability integral transform), randomised on ties, with an atom at infinity: a run
  measured saturated has PIT uniform on [P(finite draw), 1].
- **CRPS** with saturated draws and saturated runs capped at ``cap`` seconds (not dropped).
- **Brier score** of P(saturated) against the measured saturation flags.

Which runs count as measured saturated (:func:`scored_saturated`): open-loop runs flagged so. A closed
loop flagged saturated still has a finite, steady mean latency (its streams queue for slots: ``N``
over the server's throughput), and it is scored on it.

Units: seconds for latencies and CRPS, fractions for coverage, PIT and probabilities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_sd._stats import interval_bounds, quantile

__all__ = ["LEVELS", "pit", "crps", "coverage", "cluster_bootstrap", "score_runs", "summarise_scores",
           "scored_saturated", "new_run_acceptance"]

#: nominal masses of the central predictive intervals scored
LEVELS = (0.5, 0.8, 0.9, 0.95)


def scored_saturated(runs: pd.DataFrame) -> np.ndarray:
    """Per run, whether it is scored as saturated (infinite latency): open-loop runs (``load_type``
    ``rate``) whose ``saturated`` flag is set. A closed loop past capacity keeps a finite mean latency
    (its streams wait for slots), so its flag says the throughput stopped growing, not that the
    latency had no steady state."""
    flag = runs["saturated"].astype("boolean").fillna(False).to_numpy(bool) if "saturated" in runs else \
        np.zeros(len(runs), bool)
    return flag & (runs["load_type"] == "rate").to_numpy()


def _draws(draws) -> np.ndarray:
    d = np.asarray(draws, float)
    if d.ndim != 2:
        raise ValueError("draws must be (sample, run): predictive draws of each held-out run's mean latency")
    if np.isnan(d).any() or (d < 0).any():
        raise ValueError("draws contain NaN or negative latencies: a prediction failed; fix it rather than "
                         "score around it")
    return d


def pit(draws, observed, rng: np.random.Generator | None = None) -> np.ndarray:
    """Randomised PIT of each observed value under its predictive draws.

    Parameters
    ----------
    draws : array (sample, run)
        Predictive draws (``inf``: saturated).
    observed : array (run,)
        Measured values (``inf``: measured saturated).
    rng : numpy.random.Generator, optional
        For the randomisation on ties (default seed 0).

    Returns
    -------
    numpy.ndarray (run,)
        ``P(draw < y) + U * P(draw == y)``, U uniform on [0, 1]: uniform on [0, 1] for a calibrated
        forecast. A saturated run (y = inf) gets ``P(finite draw) + U * P(inf draw)``.
    """
    d, y = _draws(draws), np.asarray(observed, float)
    rng = rng or np.random.default_rng(0)
    below = (d < y[None, :]).mean(axis=0)
    ties = (d == y[None, :]).mean(axis=0)
    return below + rng.uniform(size=y.shape) * ties


def crps(draws, observed, cap: float | np.ndarray) -> np.ndarray:
    """Sample CRPS of each run, draws and observations capped at ``cap`` (seconds).

    Parameters
    ----------
    draws : array (sample, run)
        Predictive draws, seconds (``inf`` allowed).
    observed : array (run,)
        Measured values, seconds (``inf`` allowed).
    cap : float or array (run,)
        Where saturated draws and runs are put (e.g. the benchmark's horizon: a request cannot
        take longer than the run lasted). Must be finite and positive.

    Returns
    -------
    numpy.ndarray (run,)
        ``E|X - y| - E|X - X'| / 2`` in seconds (lower is better), exact for the empirical
        distribution of the draws (sorted-sample formula).
    """
    cap = np.broadcast_to(np.asarray(cap, float), np.shape(observed))
    if not np.all(np.isfinite(cap) & (cap > 0)):
        raise ValueError("cap must be finite and positive (seconds)")
    d = np.minimum(_draws(draws), cap[None, :])
    y = np.minimum(np.asarray(observed, float), cap)
    n = d.shape[0]
    first = np.abs(d - y[None, :]).mean(axis=0)
    s = np.sort(d, axis=0)
    weights = (2.0 * np.arange(1, n + 1) - n - 1.0)[:, None]
    spread = (weights * s).sum(axis=0) / (n * n)  # E|X - X'| / 2 for the empirical distribution
    return first - spread


def coverage(draws, observed, level: float) -> np.ndarray:
    """Whether each observed value lies in the central ``level`` predictive interval (bool per run).

    The interval's ends are quantiles without interpolation (``bayes_sd._stats.quantile``), so an
    end that falls on a saturated draw is ``inf``; a measured-saturated run (``inf``) is covered
    only when the upper end is ``inf``.
    """
    lo_q, hi_q = interval_bounds(level)
    d, y = _draws(draws), np.asarray(observed, float)
    lo, hi = quantile(d, lo_q), quantile(d, hi_q)
    return (lo <= y) & (y <= hi)


def cluster_bootstrap(values, clusters, stat=np.mean, n_boot: int = 2000, prob: float = 0.9,
                      seed: int = 0) -> tuple[float, float, float]:
    """``stat`` of ``values`` with a cluster-bootstrap interval (clusters resampled with replacement).

    Parameters
    ----------
    values : array (run,)
        Per-run scores (e.g. covered as 0/1).
    clusters : array (run,)
        Cluster label of each run (its configuration).
    stat : callable
        Reduces an array of values to a number (default the mean).
    n_boot : int, default 2000
        Bootstrap replicates.
    prob : float, default 0.9
        Mass of the interval.
    seed : int, default 0

    Returns
    -------
    (estimate, low, high) : tuple of float
        NaN for all three when there are no values.
    """
    v = np.asarray(values, float)
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    labels, codes = np.unique(np.asarray(clusters, str), return_inverse=True)
    groups = [v[codes == i] for i in range(len(labels))]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    reps = np.array([stat(np.concatenate([groups[j] for j in row])) for row in picks])
    lo, hi = interval_bounds(prob)
    return float(stat(v)), float(np.quantile(reps, lo)), float(np.quantile(reps, hi))


def score_runs(draws, observed, *, saturated=None, cap=None, p90_draws=None, p90_observed=None,
               p99_draws=None, p99_observed=None, tau_draws=None, tau_observed=None, seed: int = 0) -> pd.DataFrame:
    """Per-run scores of held-out predictions.

    Parameters
    ----------
    draws : array (sample, run)
        Predictive draws of each run's mean latency, seconds (``inf``: saturated).
    observed : array (run,)
        Measured mean latency, seconds; NaN or ``inf`` for a run measured saturated.
    saturated : array of bool (run,), optional
        Measured saturation flags (default: observed not finite). A saturated run's observed
        value is taken as ``inf``.
    cap : float or array (run,), optional
        CRPS cap, seconds (default: 10 x the largest finite observed value).
    p90_draws, p99_draws : array (sample, run), optional
        Draws of the per-request p90 / p99 latency, seconds.
    p90_observed, p99_observed : array (run,), optional
        Measured per-request p90 / p99, seconds.
    tau_draws, tau_observed : array (sample, run) and (run,), optional
        Predictive draws and measured values of the acceptance length (tokens per verify step;
        NaN where a run has none, as without speculation).
    seed : int, default 0
        For the PIT randomisation.

    Returns
    -------
    pandas.DataFrame
        One row per run: ``observed_s``, ``saturated``, ``median_s``, ``mean_s`` (may be inf),
        ``ape_median``, ``ape_mean`` (inf where the mean is infinite but the run finite; NaN for
        saturated runs), ``covered_50`` ... ``covered_95``, ``pit``, ``crps_s``, ``p_saturated``,
        ``brier``, and ``ape_p90`` / ``ape_p99`` when given; with ``tau_draws``, ``ape_tau``,
        ``covered_tau_90`` and ``width_tau_90`` (the 90% interval's width over the measured value).
    """
    d = _draws(draws)
    y = np.asarray(observed, float)
    sat = ~np.isfinite(y) if saturated is None else np.asarray(saturated, bool)
    y = np.where(sat, np.inf, y)
    finite = np.isfinite(y)
    if cap is None:
        cap = 10.0 * (np.max(y[finite]) if finite.any() else np.max(d[np.isfinite(d)]))
    median = quantile(d, 0.5)
    with np.errstate(invalid="ignore"):
        mean = d.mean(axis=0)
        ape_median = np.where(finite, np.abs(median - y) / y, np.nan)
        ape_mean = np.where(finite, np.abs(mean - y) / y, np.nan)
    p_sat = (~np.isfinite(d)).mean(axis=0)
    out = pd.DataFrame({"observed_s": y, "saturated": sat, "median_s": median, "mean_s": mean,
                        "ape_median": ape_median, "ape_mean": ape_mean})
    for level in LEVELS:
        out[f"covered_{round(100 * level)}"] = coverage(d, y, level)
    out["pit"] = pit(d, y, np.random.default_rng(seed))
    out["crps_s"] = crps(d, y, cap)
    out["p_saturated"] = p_sat
    out["brier"] = (p_sat - sat) ** 2
    for name, dd, yy in (("p90", p90_draws, p90_observed), ("p99", p99_draws, p99_observed)):
        if dd is not None and yy is not None:
            m = quantile(_draws(dd), 0.5)
            yy = np.asarray(yy, float)
            with np.errstate(invalid="ignore"):
                out[f"ape_{name}"] = np.where(finite & np.isfinite(yy), np.abs(m - yy) / yy, np.nan)
    if tau_draws is not None and tau_observed is not None:
        t, ty = _draws(tau_draws), np.asarray(tau_observed, float)
        lo, mid, hi = (quantile(t, q) for q in (0.05, 0.5, 0.95))
        has = np.isfinite(ty)
        with np.errstate(invalid="ignore"):
            out["ape_tau"] = np.where(has, np.abs(mid - ty) / ty, np.nan)
            out["covered_tau_90"] = np.where(has, (lo <= ty) & (ty <= hi), np.nan)
            out["width_tau_90"] = np.where(has, (hi - lo) / ty, np.nan)
    return out


def summarise_scores(scores: pd.DataFrame, clusters, *, prob: float = 0.9, n_boot: int = 2000,
                     seed: int = 0) -> pd.DataFrame:
    """One row per figure: estimate and cluster-bootstrap interval, over the runs of ``scores``.

    Parameters
    ----------
    scores : pandas.DataFrame
        From :func:`score_runs`.
    clusters : array (run,)
        Configuration of each run (the bootstrap's clusters).
    prob : float, default 0.9
        Mass of the bootstrap intervals.
    n_boot : int, default 2000
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``figure``, ``estimate``, ``low``, ``high``, ``runs``. Figures: ``mape_median`` and
        ``mape_mean`` (finite runs; ``mape_mean`` over runs with a finite mean),
        ``infinite_mean_share`` (finite runs whose predictive mean is infinite), ``coverage_50`` ...
        ``coverage_95`` (all runs), ``crps_s``, ``brier``, ``pit_ks`` (Kolmogorov-Smirnov distance
        of the PIT from uniform; no interval), ``mape_p90`` / ``mape_p99`` when scored, and
        ``mape_tau``, ``coverage_tau_90``, ``width_tau_90`` over the runs with an acceptance length.
    """
    clusters = np.asarray(clusters, str)
    rows = []
    fin = ~scores["saturated"].to_numpy()

    def add(name, values, mask=None, interval=True):
        m = np.ones(len(values), bool) if mask is None else mask
        v = np.asarray(values, float)[m]
        est, lo, hi = cluster_bootstrap(v, clusters[m], n_boot=n_boot, prob=prob, seed=seed) if interval else (
            float(np.mean(v)) if v.size else np.nan, np.nan, np.nan)
        rows.append({"figure": name, "estimate": est, "low": lo, "high": hi, "runs": int(m.sum())})

    add("mape_median", scores["ape_median"], fin)
    finite_mean = fin & np.isfinite(scores["mean_s"].to_numpy())
    add("mape_mean", scores["ape_mean"], finite_mean)
    add("infinite_mean_share", (~np.isfinite(scores["mean_s"])).astype(float), fin)
    for level in LEVELS:
        add(f"coverage_{round(100 * level)}", scores[f"covered_{round(100 * level)}"].astype(float))
    add("crps_s", scores["crps_s"])
    add("brier", scores["brier"])
    u = np.sort(scores["pit"].to_numpy())
    n = u.size
    ks = float(np.max(np.maximum(np.arange(1, n + 1) / n - u, u - np.arange(n) / n))) if n else np.nan
    rows.append({"figure": "pit_ks", "estimate": ks, "low": np.nan, "high": np.nan, "runs": n})
    for name in ("p90", "p99"):
        col = f"ape_{name}"
        if col in scores:
            add(f"mape_{name}", scores[col], fin & scores[col].notna().to_numpy())
    if "ape_tau" in scores and scores["ape_tau"].notna().any():
        has = scores["ape_tau"].notna().to_numpy()
        for figure, col in (("mape_tau", "ape_tau"), ("coverage_tau_90", "covered_tau_90"),
                            ("width_tau_90", "width_tau_90")):
            add(figure, scores[col], has)
    return pd.DataFrame(rows)


def new_run_acceptance(posterior, acceptance_length: np.ndarray, seed: int = 0) -> np.ndarray:
    """Draws of the acceptance length a new run would measure: the predicted curve times one plus the
    fit's relative run-to-run scatter (``sigma_tau_obs``, one posterior draw taken at random per
    predictive draw); the curve alone where the fit has no such scatter.

    Parameters
    ----------
    posterior : xarray.Dataset
        The fit's posterior (``LatencyModel.idata.posterior``).
    acceptance_length : numpy.ndarray
        (draw, condition) predicted acceptance length, tokens per verify step
        (``LatencyModel.predict_draws(...).acceptance_length``).
    seed : int, default 0
        Seed of the scatter's draws.

    Returns
    -------
    numpy.ndarray
        (draw, condition) tokens per verify step.
    """
    if "sigma_tau_obs" not in posterior:
        return acceptance_length
    rng = np.random.default_rng(seed)
    sigma = rng.choice(posterior["sigma_tau_obs"].values.ravel(), size=(acceptance_length.shape[0], 1))
    return acceptance_length * (1.0 + sigma * rng.standard_normal(acceptance_length.shape))
