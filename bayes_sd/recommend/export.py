"""Recommendations as engine configuration: vLLM ``--speculative-config`` and its batch-size schedule.

Units: batch size in requests in flight; k in draft tokens per step.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

__all__ = ["speculative_config", "batch_size_policy", "vllm_config", "guess_method", "MAX_NUM_SEQS"]

#: vLLM's default ``max_num_seqs``: the batch-size policy covers 1..MAX_NUM_SEQS.
MAX_NUM_SEQS = 256
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
