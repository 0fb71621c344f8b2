"""Choose the draft length k by expected utility over posterior draws (MODEL.md section 3).

For a pair, a workload and each load, every k in ``0..k_max`` is scored over the posterior
draws of the latency model, never at the posterior mean: the decision is the k with the best
*expected* utility (or risk measure, :mod:`.utility`), unless a smaller k scores within the Monte
Carlo error of that (:func:`decide`); each answer carries P(k is best) over draws, the expected
regret of the choice with its Monte Carlo error, the speedup versus k = 0 with its interval and
P(speculation is slower). k = 0 (no speculation) is a legitimate answer.

Saturation: latency objectives score capped latencies (:func:`~.utility.cap_latency`), so a draw
past saturation costs the cap instead of making the score infinite. Among options still tied (every
option's median saturated), the one with the lower P(saturated) wins, then the one with the higher
saturation rate, then the smaller k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_sd._stats import quantile
from bayes_sd.model.conditions import condition_grid
from bayes_sd.model.fit_data import arrivals
from bayes_sd.recommend.training_runs import fitted_batch_cap, fitted_output_spread, fitted_setting, measured_ks
from bayes_sd.recommend.utility import Objective, cap_latency, expected, make_objective

__all__ = ["Decision", "decide", "RESOLUTION_SE", "candidate_ks", "evaluate_k", "recommend_k", "chosen_rows",
           "rank_drafters"]


# ---------------------------------------------------------------------- the decision
@dataclass
class Decision:
    """A choice among options (columns) from per-draw values ``(sample, option)``.

    Parameters
    ----------
    best : int
        Index of the chosen option.
    score : numpy.ndarray
        ``(option,)`` aggregated objective.
    p_best : numpy.ndarray
        ``(option,)`` fraction of draws where the option is the per-draw best.
    regret : numpy.ndarray
        ``(option,)`` expected regret of choosing it (objective units, >= 0).
    p_saturated : numpy.ndarray
        ``(option,)`` fraction of draws in which the option is saturated.
    score_gap_se : numpy.ndarray
        ``(option,)`` Monte Carlo standard error of the option's score minus the best score (objective
        units; 0 for the best option, NaN where a score is not finite).
    regret_se : numpy.ndarray
        ``(option,)`` Monte Carlo standard error of ``regret`` (objective units).
    """

    best: int
    score: np.ndarray
    p_best: np.ndarray
    regret: np.ndarray
    p_saturated: np.ndarray
    score_gap_se: np.ndarray
    regret_se: np.ndarray


#: a score within this many Monte Carlo standard errors of the best is not told apart from it
RESOLUTION_SE = 2.0
#: a k > 0 is chosen only where it is faster than k = 0 in at least this share of the draws: the model
#: errs toward speculation where k or load are extrapolated, and on development fleets 3-4 (synthetic,
#: out of family, not used to choose it) this took mean regret from 1.68% to 1.39% and slower speculation
#: from 10.1% to 7.2% of conditions (docs/decisions.md, the choice)
MIN_P_FASTER = 0.9


def _lexbest(*keys: np.ndarray) -> np.ndarray:
    """Index along the last axis minimising ``keys`` lexicographically (first on ties)."""
    mask = np.ones(np.shape(keys[0]), bool)
    for key in keys:
        k = np.where(mask, np.nan_to_num(np.asarray(key, float), nan=np.inf), np.inf)
        mask &= k == k.min(axis=-1, keepdims=True)
    return mask.argmax(axis=-1)


def _gap_se(values: np.ndarray, aggregate, best: int, n_boot: int = 200) -> np.ndarray:
    """Bootstrap standard error over draws of ``aggregate(option) - aggregate(best)`` per option.

    Draws are resampled as whole rows, so the options keep their common draws and the error is the
    one of the difference (much smaller than of either score when the options move together).
    """
    n = values.shape[0]
    rows = np.random.default_rng(0).integers(0, n, size=(n_boot, n))
    with np.errstate(invalid="ignore"):
        gaps = np.stack([np.asarray(aggregate(values[r]), float) for r in rows])
        gaps = gaps - gaps[:, [best]]
        return np.where(np.isfinite(gaps).all(axis=0), gaps.std(axis=0, ddof=1), np.nan)


def decide(values, *, aggregate=expected, maximize: bool = False, saturated=None,
           headroom=None, resolution: float = RESOLUTION_SE, eligible=None) -> Decision:
    """Choose among options by ``aggregate`` of per-draw ``values`` (sample, option).

    The option with the best score is the candidate; an option listed before it (a smaller k, or no
    speculation) whose score is within ``resolution`` Monte Carlo standard errors of the candidate's
    is chosen instead: the draws cannot tell the two apart, and the simpler option is the one whose
    choice does not flip with the seed. Ties (e.g. all options ``inf``) go to the lowest
    P(saturated), then the largest median ``headroom``, then the first option. P(best) and regret
    use the same tie rule per draw.

    Parameters
    ----------
    values : array-like of float
        Per-draw values ``(sample, option)``: losses when ``maximize`` is False (``inf`` = saturated).
        Options are ordered simplest first (k = 0, 1, 2, ...).
    aggregate : callable, default :func:`expected`
        Reduces draws (axis 0) to a score per option.
    maximize : bool, default False
        Whether higher values are better.
    saturated : array-like of bool, optional
        ``(sample, option)``: the draw is saturated (default: the value is not finite).
    headroom : array-like of float, optional
        ``(sample, option)``, e.g. the saturation rate (requests/s); breaks ties.
    resolution : float, default :data:`RESOLUTION_SE`
        How many standard errors of a score difference count as no difference (0: the best score
        wins however slight its lead). The errors treat the draws as independent.
    eligible : array-like of bool, optional
        ``(option,)``: the options that may be chosen (default all; the first always may). P(best) and
        the regrets are reported for every option.

    Returns
    -------
    Decision
        The chosen option, the scores, P(best), the expected regrets with their Monte Carlo errors,
        and P(saturated).

    Raises
    ------
    ValueError
        When ``values`` is not a non-empty 2-D ``(sample, option)`` array.

    Examples
    --------
    >>> decide([[1.0, 2.0], [3.0, 1.0], [2.0, 1.5]], resolution=0).best
    1
    """
    v = np.asarray(values, float)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError("values must be a (sample, option) array")
    sat = ~np.isfinite(v) if saturated is None else np.asarray(saturated, bool)
    room = np.zeros_like(v) if headroom is None else np.asarray(headroom, float)
    sign = -1.0 if maximize else 1.0
    key = sign * np.where(np.isnan(v), np.inf * sign, v)
    score = np.asarray(aggregate(v), float)
    p_sat = sat.mean(axis=0)
    ok = np.ones(v.shape[1], bool) if eligible is None else np.asarray(eligible, bool).copy()
    ok[0] = True
    candidate = int(_lexbest(np.where(ok, sign * score, np.inf), np.where(ok, p_sat, np.inf),
                             -np.median(room, axis=0)))
    gap_se = _gap_se(v, aggregate, candidate) if v.shape[0] > 1 else np.full(v.shape[1], np.nan)
    best = candidate
    if resolution > 0 and np.isfinite(score[candidate]):
        with np.errstate(invalid="ignore"):
            close = (sign * (score[:candidate] - score[candidate]) <= resolution * gap_se[:candidate]) & ok[:candidate]
        if close.any():
            best = int(np.flatnonzero(close)[0])
            gap_se = _gap_se(v, aggregate, best)  # the errors reported are the chosen option's
    per_draw = _lexbest(key, sat, -room)
    p_best = np.bincount(per_draw, minlength=v.shape[1]) / v.shape[0]
    kb = np.take_along_axis(key, per_draw[:, None], axis=1)
    with np.errstate(invalid="ignore"):
        reg = np.where(key == kb, 0.0, key - kb)  # inf - inf (both saturated) is no regret
        reg_se = reg.std(axis=0, ddof=1) / np.sqrt(v.shape[0]) if v.shape[0] > 1 else np.full(v.shape[1], np.nan)
    return Decision(best, score, p_best, reg.mean(axis=0), p_sat, gap_se, reg_se)


# ---------------------------------------------------------------------- model plumbing
_FIELDS = ("latency", "latency_p50", "latency_p90", "latency_p99", "batch_size", "saturation_rps",
           "acceptance_length")


def _draws(model, conditions: pd.DataFrame, shape: tuple, max_draws: int, seed: int) -> dict:
    """One ``predict_draws`` call (so draws align across conditions), reshaped to (sample, *shape)."""
    d = model.predict_draws(conditions, max_draws=max_draws, seed=seed)
    out = {f: np.asarray(getattr(d, f), float).reshape(-1, *shape) for f in _FIELDS}
    bad = ~np.isfinite(out["latency"])
    for f in ("latency", "latency_p50", "latency_p90", "latency_p99", "batch_size"):
        out[f] = np.where(bad, np.inf, out[f])  # past saturation every latency is unbounded
    return out


def _check(k_max, prompt_len, output_len) -> None:
    if int(k_max) != k_max or k_max < 1:
        raise ValueError(f"k_max must be an integer >= 1, got {k_max}")
    if not (prompt_len > 0 and output_len > 1):
        raise ValueError("prompt_len must be > 0 and output_len > 1 (tokens)")


def _q(x, q) -> float:
    """The ``q`` quantile over draws as a float (NaN draws ignored; inf-safe)."""
    return float(quantile(x, q, axis=None, skipna=True))


def _speedup(lat0, lat):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isinf(lat0) & np.isinf(lat), np.nan, lat0 / lat)


def candidate_ks(k_max: int = 8, ks=None) -> np.ndarray:
    """The draft lengths a decision compares: ``ks`` (sorted, unique, 0 added: no speculation is
    always a candidate) or ``0..k_max``. ValueError for a negative or non-integer k."""
    if ks is None:
        if int(k_max) != k_max or k_max < 1:
            raise ValueError(f"k_max must be an integer >= 1, got {k_max}")
        return np.arange(int(k_max) + 1)
    values = [float(k) for k in np.atleast_1d(ks)]
    if not values or any(k < 0 or k != int(k) for k in values):
        raise ValueError(f"ks: draft lengths must be integers >= 0, got {values}")
    return np.array(sorted({0, *(int(k) for k in values)}))


def evaluate_k(model, *, verifier: str, drafter: str, hardware: str, dataset: str, prompt_len: float,
               output_len: float, rates=None, concurrencies=None, k_max: int = 8, ks=None,
               objective: str | Objective = "mean", slo_s: float | None = None, cvar_alpha: float = 0.9,
               latency_cap_s: float | None = None, resolution: float = RESOLUTION_SE, max_draws: int = 1000,
               seed: int = 0, arrival_cv2: float | None = None, min_p_faster: float = MIN_P_FASTER,
               output_len_sd: float | None = None) -> pd.DataFrame:
    """Every (load, k): score, P(k is best), expected regret, latency and speedup summaries.

    All k of all loads come from one ``predict_draws`` call, so draws align across k.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    verifier : str
        The verifier model (levels never fitted, here and below, are drawn from their population).
    drafter : str
        The pair's drafter (rows with k = 0 have no drafter).
    hardware, dataset : str
        The accelerator and the workload.
    prompt_len : float
        Mean prompt length, tokens (> 0).
    output_len : float
        Mean output length, tokens (> 1).
    rates : array-like of float, optional
        Open-loop request rates, requests/s.
    concurrencies : array-like of float, optional
        Closed-loop streams in flight; give exactly one of ``rates`` and ``concurrencies``. The server's
        batch cap is the one the training runs of this verifier and hardware record (``max_num_seqs``,
        :func:`fitted_batch_cap`), none if they do not.
    k_max : int, default 8
        Largest draft length considered (k in ``0..k_max``) when ``ks`` is not given.
    ks : sequence of int, optional
        The draft lengths to compare instead (0 is always added), e.g. the ones an engine offers.
    objective : str or Objective, default "mean"
        ``mean | p90 | cvar | slo | goodput`` or an :class:`Objective` (:func:`make_objective`).
    slo_s : float, optional
        Latency objective, s (needed by ``slo`` and ``goodput``).
    cvar_alpha : float, default 0.9
        Level of the ``cvar`` objective.
    latency_cap_s : float, optional
        What a saturated draw costs the latency objectives, s (an SLO, or the benchmark's length);
        default ten times the best k's median latency at that load (:func:`~.utility.cap_latency`).
    resolution : float, default :data:`RESOLUTION_SE`
        A smaller k within this many Monte Carlo standard errors of the best score is chosen instead
        (:func:`decide`; 0: the best score wins however slight its lead).
    max_draws : int, default 1000
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.
    arrival_cv2 : float, optional
        With ``rates``: how regular the arrivals are, the squared coefficient of variation of the
        inter-arrival times (1 Poisson, the default and most production traffic; 0 evenly spaced, as
        GuideLLM's ``constant`` profile sends; ``theory.arrivals``); only for a model fitted with
        ``[model] arrivals = "as_recorded"``.
    min_p_faster : float, default :data:`MIN_P_FASTER` (0.9)
        A k > 0 may be chosen only where the draws put at least this probability on its latency being
        below k = 0's (0: the best expected objective decides alone).
    output_len_sd : float, optional
        Standard deviation of the output tokens, tokens: with a KV cache size among the training runs of
        the verifier and hardware it sets the batch the cache holds (:func:`bayes_sd.theory.kv_tokens_held`;
        0 for a fixed output length). None: the workload's training runs' spread relative to their mean
        (:func:`fitted_output_spread`), else outputs ended by EOS (sd = mean).

    Returns
    -------
    pandas.DataFrame
        One row per load and candidate k: the condition columns (``rate_rps`` in requests/s or
        ``concurrency``), ``k``, ``k_measured`` (whether the training runs measured this k for the pair
        on this hardware: False means the answer extrapolates in k), ``chosen`` (the recommended k per
        load; :func:`recommend_k` keeps those rows), ``objective``, ``utility`` (capped for the latency
        objectives) with ``utility_q05``/``utility_q95`` and ``utility_gap_se`` (Monte Carlo error of
        its difference from the chosen k's), ``p_best``, ``expected_regret`` with ``regret_se`` (its
        Monte Carlo error), ``latency_mean_s`` (uncapped: infinite if a draw saturates),
        ``latency_q05_s``/``latency_q50_s``/``latency_q95_s``,
        ``latency_p90_s`` (s), ``speedup_vs_k0`` with ``speedup_q05``/``speedup_q95``,
        ``p_slower_than_k0``, ``p_saturated``, ``p_saturated_k0``, ``batch_size``, ``saturation_rps``
        (requests/s) and ``acceptance_length`` (tokens per verify step); when the posterior has not
        converged and its chains split into groups that disagree (separate modes), ``k_by_chain_group``
        (the k each group alone would choose at that load, ``"2 | 3"``; empty otherwise) and
        ``chain_groups_agree`` (False where the choice depends on the mode the sampler found).

    Raises
    ------
    ValueError
        For ``k_max`` not an integer >= 1, lengths out of range, not exactly one of ``rates`` and
        ``concurrencies`` (or a load that is not positive), or an unknown objective or missing ``slo_s``.
    """
    ks = candidate_ks(k_max, ks)
    _check(max(int(ks[-1]), 1), prompt_len, output_len)
    if arrival_cv2 is not None and arrival_cv2 != 1.0 and arrivals(model.config) != "as_recorded":
        raise ValueError(f"arrival_cv2 = {arrival_cv2:g}, but {model.config['name']} takes every open loop as Poisson "
                         "([model] arrivals = 'poisson'). Fix: leave arrival_cv2 out, or fit a configuration with "
                         "arrivals = \"as_recorded\"")
    if not 0.0 <= min_p_faster < 1.0:
        raise ValueError(f"min_p_faster = {min_p_faster}: a probability in [0, 1)")
    obj = make_objective(objective, slo_s=slo_s, cvar_alpha=cvar_alpha)
    measured = measured_ks(model, verifier, drafter, hardware)
    grid, col, loads = condition_grid(verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset,
                                      ks=ks, prompt_len=prompt_len, output_len=output_len, rates=rates,
                                      concurrencies=concurrencies,
                                      max_num_seqs=fitted_batch_cap(model, verifier, hardware),
                                      kv_cache_tokens=fitted_setting(model, verifier, hardware, "kv_cache_tokens"),
                                      output_len_sd=(fitted_output_spread(model, dataset, output_len)
                                                     if output_len_sd is None else output_len_sd),
                                      arrival_cv2=arrival_cv2)
    lt = grid["load_type"].iloc[0]
    d = _draws(model, grid, (len(loads), len(ks)), max_draws, seed)
    vals = obj.values(d, loads, lt == "rate")
    if obj.capped:
        vals = cap_latency(vals, latency_cap_s)
    by_group = _chosen_by_chain_group(model, grid, (len(loads), len(ks)), loads, lt == "rate", obj, latency_cap_s,
                                      resolution, max_draws, seed, min_p_faster)
    out = []
    for i, x in enumerate(loads):
        dec = _decide_at(d, vals, i, obj, resolution, min_p_faster)
        lat, lat0 = d["latency"][:, i], d["latency"][:, i, 0]
        group_ks = None if by_group is None else [int(ks[b]) for b in by_group[:, i]]
        for j, k in enumerate(ks):
            sp = _speedup(lat0, lat[:, j])
            out.append({
                "verifier": verifier, "drafter": drafter, "hardware": hardware, "dataset": dataset,
                "prompt_len": float(prompt_len), "output_len": float(output_len), "load_type": lt, col: float(x),
                "k": int(k), "k_measured": int(k) in measured, "chosen": bool(j == dec.best),
                "objective": obj.name, "utility": float(dec.score[j]),
                "utility_q05": _q(vals[:, i, j], 0.05), "utility_q95": _q(vals[:, i, j], 0.95),
                "utility_gap_se": float(dec.score_gap_se[j]), "p_best": float(dec.p_best[j]),
                "expected_regret": float(dec.regret[j]), "regret_se": float(dec.regret_se[j]),
                "latency_mean_s": float(lat[:, j].mean()), "latency_q05_s": _q(lat[:, j], 0.05),
                "latency_q50_s": _q(lat[:, j], 0.5), "latency_q95_s": _q(lat[:, j], 0.95),
                "latency_p90_s": _q(d["latency_p90"][:, i, j], 0.5),
                "speedup_vs_k0": _q(sp, 0.5), "speedup_q05": _q(sp, 0.05), "speedup_q95": _q(sp, 0.95),
                "p_slower_than_k0": float((lat[:, j] > lat0).mean()), "p_saturated": float(dec.p_saturated[j]),
                "p_saturated_k0": float(dec.p_saturated[0]), "batch_size": _q(d["batch_size"][:, i, j], 0.5),
                "saturation_rps": _q(d["saturation_rps"][:, i, j], 0.5),
                "acceptance_length": _q(d["acceptance_length"][:, i, j], 0.5),
                "k_by_chain_group": "" if group_ks is None else " | ".join(map(str, group_ks)),
                "chain_groups_agree": group_ks is None or len(set(group_ks)) == 1,
            })
    return pd.DataFrame(out)


def _decide_at(d: dict, vals: np.ndarray, i: int, obj: Objective, resolution: float, min_p_faster: float):
    """:func:`decide` among the k at load ``i`` of :func:`_draws`' ``d`` and the objective's ``vals``, a k > 0
    eligible where its latency is below k = 0's in at least ``min_p_faster`` of the draws."""
    lat = d["latency"][:, i]
    return decide(vals[:, i], aggregate=obj.aggregate, maximize=obj.maximize,
                  saturated=~np.isfinite(lat), headroom=d["saturation_rps"][:, i], resolution=resolution,
                  eligible=(lat < lat[:, :1]).mean(axis=0) >= min_p_faster)


def _chosen_by_chain_group(model, grid: pd.DataFrame, shape: tuple, loads, is_open: bool, obj: Objective,
                           latency_cap_s, resolution: float, max_draws: int, seed: int,
                           min_p_faster: float) -> np.ndarray | None:
    """The index of the k each group of chains would choose at each load, (group, load), when the chains
    did not mix and split into groups (``LatencyModel.chain_agreement``); None otherwise. A choice
    that differs between groups depends on which mode of the posterior the sampler found."""
    if model.diagnostics()["converged"] or model.idata.posterior.sizes["chain"] < 2:
        return None
    groups = model.chain_agreement()["groups"]  # cached per posterior: one call per model, not per question
    if len(groups) < 2:
        return None
    chosen = []
    for chains in groups:
        d = _draws(model.with_chains(chains), grid, shape, max_draws, seed)
        vals = obj.values(d, loads, is_open)
        vals = cap_latency(vals, latency_cap_s) if obj.capped else vals
        chosen.append([_decide_at(d, vals, i, obj, resolution, min_p_faster).best for i in range(len(loads))])
    return np.array(chosen)


def recommend_k(model, *, verifier: str, drafter: str, hardware: str, dataset: str, prompt_len: float,
                output_len: float, rates=None, concurrencies=None, k_max: int = 8, ks=None,
                objective: str | Objective = "mean", slo_s: float | None = None, cvar_alpha: float = 0.9,
                latency_cap_s: float | None = None, resolution: float = RESOLUTION_SE, max_draws: int = 1000,
                seed: int = 0, arrival_cv2: float | None = None, min_p_faster: float = MIN_P_FASTER,
                output_len_sd: float | None = None) -> pd.DataFrame:
    """The recommended draft length per load: one row per rate (or concurrency).

    Parameters
    ----------
    model, verifier, drafter, hardware, dataset, prompt_len, output_len, rates, concurrencies, k_max, ks, \
objective, slo_s, cvar_alpha, latency_cap_s, resolution, max_draws, seed, arrival_cv2, min_p_faster, \
output_len_sd
        As :func:`evaluate_k`, which scores every k; this keeps the chosen one per load.

    Returns
    -------
    pandas.DataFrame
        One row per load; the columns of :func:`evaluate_k` at the chosen k, among them ``best_k``
        (0 = do not speculate), ``k_measured`` (False: best_k was never measured for the pair, the
        answer extrapolates in k), ``utility`` (the objective's score; capped latency for the latency
        objectives), ``latency_mean_s`` with its 90% interval ``latency_q05_s``/``latency_q95_s`` (mean
        request latency at best_k, s), ``p_best`` (P(best_k is the per-draw best)), ``expected_regret``
        (objective units) with ``regret_se``, ``speedup_vs_k0`` (median; ``speedup_q05``,
        ``speedup_q95``), ``p_slower_than_k0``, ``p_saturated`` and
        ``batch_size`` (median requests in flight at best_k: Little's law in open loop, the
        concurrency in closed loop). ``attrs["posterior"]``: whether the posterior converged and its
        diagnostics line (the exports carry it).

    Raises
    ------
    ValueError
        For ``k_max`` not an integer >= 1, lengths out of range, not exactly one of ``rates`` and
        ``concurrencies`` (or a load that is not positive), or an unknown objective or missing ``slo_s``.

    Examples
    --------
    >>> recommend_k(model, verifier="llama3.1-8b", drafter="eagle3-small", hardware="H100",
    ...             dataset="chat", prompt_len=512, output_len=256, rates=[5, 20, 40])  # doctest: +SKIP
    """
    table = evaluate_k(model, verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset,
                       prompt_len=prompt_len, output_len=output_len, rates=rates, concurrencies=concurrencies,
                       k_max=k_max, ks=ks, objective=objective, slo_s=slo_s, cvar_alpha=cvar_alpha,
                       latency_cap_s=latency_cap_s, resolution=resolution, max_draws=max_draws, seed=seed,
                       arrival_cv2=arrival_cv2, min_p_faster=min_p_faster, output_len_sd=output_len_sd)
    return chosen_rows(table, model)


def chosen_rows(table: pd.DataFrame, model) -> pd.DataFrame:
    """:func:`recommend_k`'s rows from :func:`evaluate_k`'s ``table``: the chosen k per load.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`evaluate_k`'s rows (every k at every load, ``chosen`` marking the recommendation).
    model : LatencyModel
        The fitted model the table came from (its convergence is attached).

    Returns
    -------
    pandas.DataFrame
        One row per load, ``k`` renamed ``best_k``, with ``attrs["posterior"]``: whether the posterior
        converged, and its diagnostics line.
    """
    recs = table[table["chosen"]].drop(columns="chosen").rename(columns={"k": "best_k"}).reset_index(drop=True)
    recs.attrs["posterior"] = {"converged": bool(model.diagnostics()["converged"]),
                               "diagnostics": model.diagnostics_text()}
    return recs


def rank_drafters(model, *, verifier: str, drafters: list, hardware: str, dataset: str, prompt_len: float,
                  output_len: float, load: float, load_type: str = "rate", k_max: int = 8,
                  objective: str | Objective = "mean", slo_s: float | None = None, cvar_alpha: float = 0.9,
                  latency_cap_s: float | None = None, resolution: float = RESOLUTION_SE, max_draws: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Rank candidate drafters at one load: each one's best k, utility (90% interval) and P(best).

    Options are k = 0 (row ``drafter = 'none'``) and every (drafter, k >= 1), all from one
    ``predict_draws`` call.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    verifier : str
        The verifier model.
    drafters : list of str
        Candidate drafters (duplicates dropped).
    hardware, dataset : str
        The accelerator and the workload.
    prompt_len : float
        Mean prompt length, tokens (> 0).
    output_len : float
        Mean output length, tokens (> 1).
    load : float
        The load: requests/s for ``load_type = "rate"``, streams for ``"concurrency"``.
    load_type : {"rate", "concurrency"}, default "rate"
        Open loop (offered rate) or closed loop (streams in flight).
    k_max : int, default 8
        Largest draft length considered.
    objective, slo_s, cvar_alpha, latency_cap_s, resolution, max_draws, seed
        As :func:`evaluate_k` (the resolution rule prefers no speculation, then the smaller k).

    Returns
    -------
    pandas.DataFrame
        One row per drafter and one for ``'none'``, best first: ``drafter``, ``best_k`` (the drafter's
        best k in 0..k_max by the objective; 0: it does not pay), ``objective``, ``utility`` with
        ``utility_q05``/``utility_q95``, ``p_best`` (fraction of draws in which that drafter, at any
        k >= 1, or no speculation, is the per-draw best option; it sums to 1 over the rows),
        ``latency_mean_s`` with ``latency_q05_s``/``latency_q95_s`` (s), ``p_saturated``,
        ``speedup_vs_k0``, ``load_type`` and ``rate_rps`` (requests/s) or ``concurrency``.

    Raises
    ------
    ValueError
        For a bad ``load_type`` or ``load``, no drafter, ``k_max`` not an integer >= 1, lengths out of
        range, or an unknown objective or missing ``slo_s``.
    """
    if load_type not in ("rate", "concurrency") or not (np.isfinite(load) and load > 0):
        raise ValueError("load_type must be 'rate' or 'concurrency' and load a positive number")
    drafters = list(dict.fromkeys(drafters))
    if not drafters:
        raise ValueError("drafters: give at least one candidate drafter")
    _check(k_max, prompt_len, output_len)
    obj = make_objective(objective, slo_s=slo_s, cvar_alpha=cvar_alpha)
    col = "rate_rps" if load_type == "rate" else "concurrency"
    opts = [("none", 0)] + [(dr, k) for dr in drafters for k in range(1, int(k_max) + 1)]
    rows = [{"verifier": verifier, "drafter": dr, "hardware": hardware, "dataset": dataset, "k": k,
             "prompt_len": float(prompt_len), "output_len": float(output_len), "load_type": load_type,
             col: float(load)} for dr, k in opts]
    d = _draws(model, pd.DataFrame(rows), (1, len(opts)), max_draws, seed)
    vals = obj.values(d, np.array([float(load)]), load_type == "rate")[:, 0]
    if obj.capped:
        vals = cap_latency(vals, latency_cap_s)
    sat, room = ~np.isfinite(d["latency"][:, 0]), d["saturation_rps"][:, 0]
    overall = decide(vals, aggregate=obj.aggregate, maximize=obj.maximize, saturated=sat, headroom=room)
    out = []
    for name in ["none"] + drafters:
        idx = [0] + ([j for j, (dr, _) in enumerate(opts) if dr == name] if name != "none" else [])
        own = decide(vals[:, idx], aggregate=obj.aggregate, maximize=obj.maximize, saturated=sat[:, idx],
                     headroom=room[:, idx], resolution=resolution)
        j = idx[own.best]
        lat = d["latency"][:, 0, j]
        out.append({"drafter": name, "best_k": opts[j][1], "objective": obj.name, "utility": float(own.score[own.best]),
                    "utility_q05": _q(vals[:, j], 0.05), "utility_q95": _q(vals[:, j], 0.95),
                    "p_best": float(sum(overall.p_best[i] for i in idx if name == "none" or i > 0)),
                    "latency_mean_s": float(lat.mean()), "latency_q05_s": _q(lat, 0.05),
                    "latency_q95_s": _q(lat, 0.95), "p_saturated": float(own.p_saturated[own.best]),
                    "speedup_vs_k0": _q(_speedup(d["latency"][:, 0, 0], lat), 0.5)})
    table = pd.DataFrame(out).sort_values("utility", ascending=not obj.maximize, kind="stable")
    return table.assign(load_type=load_type, **{col: float(load)}).reset_index(drop=True)
