"""Recommendations as engine configuration: vLLM ``--speculative-config`` and its batch-size
schedule, TensorRT-LLM's ``draft_len_schedule`` and SGLang's launch arguments.

A schedule that changes k with the batch size is not free in vLLM: enabling it costs TPOT even
with k = 0 everywhere (:data:`VLLM_SCHEDULE_OVERHEAD`), so :func:`schedule_check` keeps a static k
unless the schedule's expected gain over the best static k pays for that cost.

Units: batch size in requests in flight (every scheduled request, prefills included, as vLLM
counts it; Little's law gives the same count); k in draft tokens per step.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bayes_sd.model.conditions import load_column

__all__ = ["speculative_config", "batch_size_policy", "vllm_config", "guess_method", "MAX_NUM_SEQS",
           "schedule_overhead", "schedule_check", "static_recommendations", "trtllm_config", "sglang_args",
           "VLLM_SCHEDULE_OVERHEAD"]

#: vLLM's default ``max_num_seqs``: the batch-size policy covers 1..MAX_NUM_SEQS.
MAX_NUM_SEQS = 256
#: TPOT added by enabling vLLM's per-batch-size schedule, k = 0 everywhere: (concurrent requests, fraction),
#: vLLM issue #49548; interpolated in log batch size between the two points and held beyond them
VLLM_SCHEDULE_OVERHEAD = ((2, 0.066), (189, 0.216))
#: bayes_sd's method names as TensorRT-LLM decoding types and SGLang speculative algorithms
TRTLLM_DECODING = {"eagle3": "Eagle3", "eagle": "Eagle", "mtp": "MTP", "ngram": "NGram", "draft_model": "DraftTarget"}
SGLANG_ALGORITHM = {"eagle3": "EAGLE3", "eagle": "EAGLE", "mtp": "EAGLE", "ngram": "NGRAM", "draft_model": "STANDALONE"}
#: drafter-name fragments that name a vLLM speculative method (checked in this order)
METHODS = ("eagle3", "eagle", "mtp", "ngram", "medusa", "dspark", "dflash", "suffix")


def guess_method(drafter: str) -> str:
    """vLLM ``method`` for a drafter name: the first of :data:`METHODS` found in it
    (case-insensitive), else ``draft_model``.

    Parameters
    ----------
    drafter : str
        Drafter name, e.g. ``"EAGLE3-LLaMA3.1-8B"``.

    Returns
    -------
    str
        One of :data:`METHODS`, or ``"draft_model"``.

    Examples
    --------
    >>> guess_method("EAGLE3-LLaMA3.1-8B")
    'eagle3'
    """
    low = drafter.lower()
    return next((m for m in METHODS if m in low), "draft_model")


# ---------------------------------------------------------------------- vLLM export
def speculative_config(method: str, model_name: str | None, k: int) -> dict | None:
    """vLLM ``--speculative-config`` JSON for a fixed k; ``None`` for k = 0 (do not enable).

    Parameters
    ----------
    method : str
        vLLM speculative method (``"eagle3"``, ``"mtp"``, ``"ngram"``, ``"draft_model"``, ...).
    model_name : str or None
        The drafter model; None (e.g. ``ngram``, or ``mtp`` using the verifier's heads) leaves
        ``model`` out.
    k : int
        Draft length, tokens per step (>= 0).

    Returns
    -------
    dict or None
        ``{"method": method, "model": model_name, "num_speculative_tokens": k}``; None for k = 0.

    Raises
    ------
    ValueError
        Unless ``k`` is an integer >= 0.

    Examples
    --------
    >>> speculative_config("ngram", None, 4)
    {'method': 'ngram', 'num_speculative_tokens': 4}
    """
    if int(k) != k or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k}")
    if k == 0:
        return None
    cfg = {"method": str(method)}
    if model_name:
        cfg["model"] = str(model_name)
    cfg["num_speculative_tokens"] = int(k)
    return cfg


def batch_size_policy(recs: pd.DataFrame, max_num_seqs: int = MAX_NUM_SEQS) -> dict:
    """Load-adaptive k: ``{"num_speculative_tokens_per_batch_size": [[start, end, k], ...]}``.

    vLLM's Dynamic SD schedule (docs/features/speculative_decoding/dynamic_speculative_decoding.md,
    validated by vllm/v1/spec_decode/dynamic/utils.py): inclusive batch-size ranges
    ``[start_bs, end_bs, K]``, sorted, non-overlapping, the first starting at 1. Here they
    cover 1..max_num_seqs contiguously. Each integer batch size takes the best_k of the load
    whose predicted batch size is nearest on a log scale; saturated loads count as ``max_num_seqs``.

    Parameters
    ----------
    recs : pandas.DataFrame
        :func:`recommend_k` rows, with columns ``best_k`` and ``batch_size`` (requests in flight,
        B = rate x latency).
    max_num_seqs : int, default MAX_NUM_SEQS
        Largest batch size covered (vLLM's ``--max-num-seqs``, requests).

    Returns
    -------
    dict
        ``{"num_speculative_tokens_per_batch_size": [[start_bs, end_bs, K], ...]}``.

    Raises
    ------
    ValueError
        When ``recs`` is empty or lacks ``batch_size``/``best_k``, or ``max_num_seqs`` is not an
        integer >= 1.
    """
    if len(recs) == 0 or not {"batch_size", "best_k"} <= set(recs.columns):
        raise ValueError("batch_size_policy needs recommend_k rows (columns batch_size, best_k)")
    if int(max_num_seqs) != max_num_seqs or max_num_seqs < 1:
        raise ValueError(f"max_num_seqs must be an integer >= 1, got {max_num_seqs}")
    b = recs["batch_size"].to_numpy(float)
    b = np.clip(np.where(np.isfinite(b), b, max_num_seqs), 1.0, max_num_seqs)
    ks = recs["best_k"].to_numpy(int)
    order = np.argsort(b, kind="stable")
    b, ks = b[order], ks[order]
    sizes = np.arange(1, int(max_num_seqs) + 1)
    k_of = ks[np.abs(np.log(sizes)[:, None] - np.log(b)[None, :]).argmin(axis=1)]
    ends = np.r_[np.flatnonzero(np.diff(k_of)), len(sizes) - 1]  # last index of each run of equal k
    starts = np.r_[0, ends[:-1] + 1]
    return {"num_speculative_tokens_per_batch_size": [[int(sizes[a]), int(sizes[z]), int(k_of[z])]
                                                      for a, z in zip(starts, ends)]}


def vllm_config(recs: pd.DataFrame, method: str, drafter_model: str | None,
                max_num_seqs: int = MAX_NUM_SEQS) -> dict:
    """vLLM serving settings from :func:`recommend_k` rows (write with ``json.dump``).

    Dynamic SD is documented as tested with EAGLE, EAGLE-3 and DFlash and is disabled by vLLM
    under data parallelism.

    Parameters
    ----------
    recs : pandas.DataFrame
        :func:`recommend_k` rows (columns ``best_k`` and ``batch_size``, requests in flight).
    method : str
        vLLM speculative method (:func:`guess_method` guesses it from a drafter name).
    drafter_model : str or None
        The drafter model for ``--speculative-config``; None to leave ``model`` out.
    max_num_seqs : int, default MAX_NUM_SEQS
        vLLM's ``--max-num-seqs`` (requests); the schedule covers batch sizes 1..max_num_seqs.

    Returns
    -------
    dict
        ``speculative_config``: None when k = 0 at every batch size (do not enable speculation);
        a fixed ``num_speculative_tokens`` when one k covers every batch size; otherwise it adds
        ``num_speculative_tokens_per_batch_size`` (vLLM Dynamic SD; ``num_speculative_tokens`` is
        the largest k, as vLLM requires every range's K <= it). ``max_num_seqs``; ``serve_args``: the
        matching ``vllm serve`` arguments; ``schedule``: the batch-size ranges as dicts
        (``min_batch_size``, ``max_batch_size``, ``num_speculative_tokens``); ``unmeasured_k``: the
        scheduled draft lengths the pair was never measured at (``k_measured`` False in ``recs``:
        the recommendation extrapolates in k there; empty when every k was measured);
        ``posterior_converged`` and, when False, ``warning`` (from ``recs.attrs["posterior"]``, which
        :func:`recommend_k` sets): a schedule from an unconverged posterior says so.

    Raises
    ------
    ValueError
        As :func:`batch_size_policy`.
    """
    policy = batch_size_policy(recs, max_num_seqs)
    ranges = policy["num_speculative_tokens_per_batch_size"]
    k_top = max(r[2] for r in ranges)
    spec = speculative_config(method, drafter_model, k_top)
    if spec is not None and len({r[2] for r in ranges}) > 1:
        spec.update(policy)
    args = ["--max-num-seqs", str(int(max_num_seqs))]
    if spec is not None:
        args += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    scheduled = {r[2] for r in ranges}
    unmeasured = (sorted(int(k) for k in recs.loc[~recs["k_measured"].astype(bool), "best_k"] if k in scheduled)
                  if "k_measured" in recs else [])
    out = {"speculative_config": spec, "max_num_seqs": int(max_num_seqs), "serve_args": args,
           "schedule": [{"min_batch_size": a, "max_batch_size": z, "num_speculative_tokens": k} for a, z, k in ranges],
           "unmeasured_k": sorted(set(unmeasured))}
    posterior = recs.attrs.get("posterior")
    if posterior is not None:
        out["posterior_converged"] = bool(posterior["converged"])
        if not posterior["converged"]:
            out["warning"] = (f"the posterior behind this schedule has NOT converged ({posterior['diagnostics']}). "
                              "Fix: refit with more tuning and draws (bayes-sd fit --help) before serving it")
    return out


# ---------------------------------------------------------------------- does a schedule pay?
def schedule_overhead(batch_size) -> np.ndarray:
    """Fraction of TPOT that enabling vLLM's per-batch-size schedule adds (:data:`VLLM_SCHEDULE_OVERHEAD`).

    Parameters
    ----------
    batch_size : float or array-like
        Requests in flight.

    Returns
    -------
    numpy.ndarray
        The fraction: 0.066 at 2 requests, 0.216 at 189, log-linear between, held beyond.
    """
    (b0, f0), (b1, f1) = VLLM_SCHEDULE_OVERHEAD
    x = np.clip(np.log(np.maximum(np.asarray(batch_size, float), 1.0)), np.log(b0), np.log(b1))
    return f0 + (f1 - f0) * (x - np.log(b0)) / (np.log(b1) - np.log(b0))


def schedule_check(table: pd.DataFrame) -> dict:
    """Whether a k that changes with load pays for what the schedule itself costs in vLLM.

    For every candidate static k, its mean relative loss over the loads against each load's chosen k
    (a k scoring better than the chosen one, within its Monte Carlo error, counts as a tie); the best
    static k is the one losing least, the smallest on ties. The schedule's gain is that loss; its cost
    is the TPOT overhead of :func:`schedule_overhead` at each load's batch size, charged on the whole
    latency (an upper bound: it applies to decode). Loads count equally.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`~bayes_sd.recommend.evaluate_k` rows of one pair (every k at every load; a latency
        objective, ``utility`` in s).

    Returns
    -------
    dict
        ``static_k`` (the best static k), ``schedule_gain`` and ``schedule_cost`` (mean fractions of
        latency), ``use_schedule`` (True only when the chosen k changes with load and the gain exceeds
        the cost), ``reason`` (one sentence) and, when ``static_k`` was never measured for the pair
        (``k_measured``), ``best_measured_static_k`` and its mean relative loss
        ``best_measured_static_loss``.

    Raises
    ------
    ValueError
        For a table without the columns of :func:`~bayes_sd.recommend.evaluate_k` or with an
        objective that is not a latency (its ``utility`` must be in s, lower is better).
    """
    need = {"k", "utility", "chosen", "objective", "batch_size"}
    if not need <= set(table.columns):
        raise ValueError(f"schedule_check needs evaluate_k's table (columns {sorted(need)})")
    if table["objective"].iloc[0] in ("slo", "goodput"):
        raise ValueError("schedule_check compares latencies: use a latency objective (mean, p90, cvar)")
    col = load_column(table)
    wide = table.pivot_table(index=col, columns="k", values="utility")
    chosen = table[table["chosen"]].set_index(col).loc[wide.index]
    at_chosen = chosen["utility"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = wide.to_numpy() / at_chosen[:, None] - 1.0  # (load, k): relative loss of a static k
    loss = np.maximum(loss, 0.0)  # a k scoring better than the chosen one within its Monte Carlo error: a tie
    mean_loss = np.where(np.isfinite(loss), loss, np.inf).mean(axis=0)
    static_k = int(wide.columns[int(np.argmin(mean_loss))])
    gain = float(max(mean_loss.min(), 0.0))
    cost = float(schedule_overhead(chosen["batch_size"].to_numpy(float)).mean())
    varies = chosen["k"].nunique() > 1
    use = bool(varies and np.isfinite(at_chosen).all() and gain > cost)
    measured = {int(k) for k in table.loc[table["k_measured"].astype(bool), "k"]} if "k_measured" in table else set()
    known = [j for j, k in enumerate(wide.columns) if int(k) in measured]
    alternative = {}
    if known and static_k not in measured:  # the best static k extrapolates: what the best measured one loses
        j = min(known, key=lambda j: mean_loss[j])
        alternative = {"best_measured_static_k": int(wide.columns[j]), "best_measured_static_loss": float(mean_loss[j])}
    if not varies:
        reason = f"one k (= {static_k}) is chosen at every load: no schedule needed"
    elif use:
        reason = (f"changing k with load gains {gain:.1%} over the best static k = {static_k}, more than the "
                  f"{cost:.1%} a schedule costs in TPOT")
    else:
        reason = (f"changing k with load would gain {gain:.1%} over the best static k = {static_k}, less than the "
                  f"{cost:.1%} a schedule costs in TPOT (vLLM issue #49548): serve k = {static_k} at every load")
    if alternative:
        reason += (f"; k = {static_k} was never measured for this pair, the best measured k = "
                   f"{alternative['best_measured_static_k']} loses {alternative['best_measured_static_loss']:.1%}")
    return {"static_k": static_k, "schedule_gain": gain, "schedule_cost": cost, "use_schedule": use,
            "reason": reason, **alternative}


def static_recommendations(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """:func:`~bayes_sd.recommend.recommend_k`-shaped rows serving one k at every load.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`~bayes_sd.recommend.evaluate_k`'s rows (every k at every load).
    k : int
        The static draft length.

    Returns
    -------
    pandas.DataFrame
        One row per load at ``k`` (``best_k``), with ``table``'s attrs.
    """
    rows = table[table["k"] == int(k)].drop(columns="chosen").rename(columns={"k": "best_k"}).reset_index(drop=True)
    rows.attrs = dict(table.attrs)
    return rows


# ---------------------------------------------------------------------- other engines
def _ranges(recs: pd.DataFrame, max_num_seqs: int) -> list[list[int]]:
    return batch_size_policy(recs, max_num_seqs)["num_speculative_tokens_per_batch_size"]


def trtllm_config(recs: pd.DataFrame, method: str, drafter_model: str | None,
                  max_num_seqs: int = MAX_NUM_SEQS) -> dict:
    """TensorRT-LLM ``speculative_config`` (the ``--extra_llm_api_options`` file; JSON is valid YAML).

    ``draft_len_schedule`` maps batch-size upper bounds to k (``{1: 4, 8: 2, 32: 1}``: 1 -> 4, 2-8 -> 2,
    9-32 -> 1, above 32 -> 0). TensorRT-LLM requires the key 1, ``schedule[1] == max_draft_len`` and no k
    above it: a k larger than the one at batch size 1 is clamped to it (``clamped`` lists the ranges).

    Parameters
    ----------
    recs : pandas.DataFrame
        :func:`~bayes_sd.recommend.recommend_k` rows (``best_k``, ``batch_size``).
    method : str
        bayes_sd/vLLM method name (``eagle3``, ``eagle``, ``mtp``, ``ngram``, ``draft_model``).
    drafter_model : str or None
        The drafter checkpoint (``speculative_model``); None leaves it out.
    max_num_seqs : int, default MAX_NUM_SEQS
        The engine's ``max_batch_size``; the schedule covers 1..max_num_seqs.

    Returns
    -------
    dict
        ``{"speculative_config": {...} or None, "max_batch_size": ..., "clamped": [...]}``; None when k = 0
        at every batch size; ``posterior_converged`` when ``recs.attrs["posterior"]`` says it.

    Raises
    ------
    ValueError
        For a method TensorRT-LLM has no decoding type for, or as :func:`batch_size_policy`.
    """
    if method not in TRTLLM_DECODING:
        raise ValueError(f"TensorRT-LLM has no decoding type for method '{method}'. Fix: one of "
                         f"{', '.join(TRTLLM_DECODING)}")
    ranges = _ranges(recs, max_num_seqs)
    k1 = ranges[0][2]
    out = {"speculative_config": None, "max_batch_size": int(max_num_seqs), "clamped": []}
    posterior = recs.attrs.get("posterior")
    if posterior is not None:
        out["posterior_converged"] = bool(posterior["converged"])
    if k1 == 0 and all(r[2] == 0 for r in ranges):
        return out
    if k1 == 0:  # TensorRT-LLM's schedule cannot start at k = 0: speculation off at batch size 1
        out["clamped"] = [r for r in ranges if r[2] > 0]
        return out
    out["clamped"] = [r for r in ranges if r[2] > k1]
    schedule = {1: k1}
    for _start, z, k in ranges:
        if z > 1:
            schedule[int(z)] = int(min(k, k1))
    while len(schedule) > 1 and list(schedule.values())[-1] == 0:  # past the largest key k is 0 anyway
        schedule.pop(list(schedule)[-1])
    spec = {"decoding_type": TRTLLM_DECODING[method], "max_draft_len": int(k1)}
    if drafter_model is not None:
        spec["speculative_model"] = drafter_model
    if len(set(schedule.values())) > 1 or max(schedule) < max_num_seqs:
        spec["draft_len_schedule"] = schedule
    out["speculative_config"] = spec
    return out


def sglang_args(k: int, method: str, drafter_model: str | None) -> list[str]:
    """``python -m sglang.launch_server`` arguments for a static chain of ``k`` draft steps (top-k 1).

    SGLang has no batch-size schedule (its adaptive mode picks among ``candidate_steps`` from the
    acceptance it sees, not from load): serve the static k of :func:`schedule_check`. SGLang counts the
    root token among the draft tokens, so ``--speculative-num-draft-tokens`` is k + 1.

    Parameters
    ----------
    k : int
        Draft length (0: no arguments, speculation off).
    method : str
        bayes_sd/vLLM method name (``eagle3``, ``eagle``, ``mtp``, ``ngram``, ``draft_model``).
    drafter_model : str or None
        The drafter checkpoint (``--speculative-draft-model-path``); None leaves it out (MTP heads).

    Returns
    -------
    list of str
        The arguments, empty for k = 0.

    Raises
    ------
    ValueError
        For a method SGLang has no algorithm for.
    """
    if method not in SGLANG_ALGORITHM:
        raise ValueError(f"SGLang has no speculative algorithm for method '{method}'. Fix: one of "
                         f"{', '.join(SGLANG_ALGORITHM)}")
    if int(k) == 0:
        return []
    args = ["--speculative-algorithm", SGLANG_ALGORITHM[method]]
    if drafter_model is not None:
        args += ["--speculative-draft-model-path", drafter_model]
    return args + ["--speculative-num-steps", str(int(k)), "--speculative-eagle-topk", "1",
                   "--speculative-num-draft-tokens", str(int(k) + 1)]
