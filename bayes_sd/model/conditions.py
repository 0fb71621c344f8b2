"""Conditions to predict: the columns that describe one, and grids of them over k and load.

A condition is one verifier/drafter pair on one hardware type, a workload (dataset, mean prompt
and output tokens), a draft length ``k`` and a load: an open-loop request rate (``rate_rps``,
requests/s) or a closed-loop number of streams (``concurrency``). Every function that takes
"rates or concurrencies" checks them with :func:`load_axis`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CONDITION_COLUMNS", "load_axis", "condition_grid", "validate_conditions", "load_column"]

#: the canonical run columns that describe a condition to predict (``max_num_seqs``: the server's batch
#: cap, requests in service at most; ``kv_cache_tokens``: the tokens its KV cache holds, which caps the batch
#: too; NaN: unknown, not capped; ``output_len_sd``: the spread of the output tokens, which sets the KV
#: cache's batch (NaN: outputs ended by EOS, sd = mean); ``arrival_cv2``: an open loop's squared coefficient
#: of variation of the inter-arrival times, 1 Poisson, 0 evenly spaced; NaN: Poisson; ``n_requests``: the
#: requests of the run whose mean is predicted, which adds their mean's sampling error; NaN: the server's
#: long-run mean)
CONDITION_COLUMNS = ["verifier", "drafter", "hardware", "dataset", "k", "prompt_len", "output_len", "load_type",
                     "rate_rps", "concurrency", "max_num_seqs", "kv_cache_tokens", "output_len_sd", "arrival_cv2",
                     "n_requests"]


def load_axis(rates=None, concurrencies=None) -> tuple[str, str, np.ndarray]:
    """The load axis from exactly one of ``rates`` (requests/s) or ``concurrencies`` (streams).

    Returns ``(column, load_type, loads)``: ``("rate_rps", "rate", ...)`` or
    ``("concurrency", "concurrency", ...)`` and the loads as a float array. Raises ValueError
    unless exactly one is given and every load is a positive finite number.
    """
    if (rates is None) == (concurrencies is None):
        raise ValueError("give exactly one of rates= (requests/s, open loop) or concurrencies= (streams, closed loop)")
    col, load_type, raw = ("rate_rps", "rate", rates) if rates is not None else ("concurrency", "concurrency",
                                                                                  concurrencies)
    loads = np.atleast_1d(np.asarray(raw, float)).ravel()
    if loads.size == 0 or not np.all(np.isfinite(loads) & (loads > 0)):
        raise ValueError(f"{col}: loads must be positive finite numbers, got {list(loads)}")
    return col, load_type, loads


def condition_grid(*, verifier: str, drafter: str, hardware: str, dataset: str, ks, prompt_len: float,
                   output_len: float, rates=None, concurrencies=None,
                   max_num_seqs: float | None = None,
                   kv_cache_tokens: float | None = None,
                   output_len_sd: float | None = None,
                   arrival_cv2: float | None = None) -> tuple[pd.DataFrame, str, np.ndarray]:
    """Every (load, k) condition for one pair and workload, load-major (k varies fastest).

    ``drafter`` is the pair's drafter; rows with ``k = 0`` get ``drafter = 'none'``. Lengths in
    tokens; ``max_num_seqs``: the server's batch cap (requests), ``kv_cache_tokens``: its KV cache size
    (tokens), each None if unknown; ``output_len_sd``: the standard deviation of the output tokens
    (None: outputs ended by EOS, sd = mean; 0 for a fixed output length); ``arrival_cv2``: how regular an
    open loop's arrivals are (1 Poisson, the default; 0 evenly spaced). Returns
    ``(conditions, load column, loads)``; the conditions have :data:`CONDITION_COLUMNS`.
    """
    col, load_type, loads = load_axis(rates, concurrencies)
    rows = [{"verifier": verifier, "drafter": drafter if int(k) > 0 else "none", "hardware": hardware,
             "dataset": dataset, "k": int(k), "prompt_len": float(prompt_len), "output_len": float(output_len),
             "load_type": load_type, "rate_rps": np.nan, "concurrency": np.nan, col: float(x),
             "max_num_seqs": np.nan if max_num_seqs is None else float(max_num_seqs),
             "kv_cache_tokens": np.nan if kv_cache_tokens is None else float(kv_cache_tokens),
             "output_len_sd": np.nan if output_len_sd is None else float(output_len_sd),
             "arrival_cv2": np.nan if arrival_cv2 is None or load_type != "rate" else float(arrival_cv2),
             "n_requests": np.nan}
            for x in loads for k in ks]
    return pd.DataFrame(rows, columns=CONDITION_COLUMNS), col, loads


def validate_conditions(conditions: pd.DataFrame) -> pd.DataFrame:
    """A conditions table with :data:`CONDITION_COLUMNS` (defaults: drafter 'none', dataset
    'unseen'); raises ValueError naming the column and the fix when one cannot be used."""
    need = ["verifier", "hardware", "k", "prompt_len", "output_len", "load_type"]
    missing = [c for c in need if c not in conditions]
    if missing:
        raise ValueError(f"conditions: missing columns {missing}. Fix: give canonical run columns "
                         "(verifier, drafter, hardware, dataset, k, prompt_len, output_len, load_type, rate_rps or "
                         "concurrency)")
    cond = conditions.copy()
    for col, default in (("drafter", "none"), ("dataset", "unseen"), ("rate_rps", np.nan), ("concurrency", np.nan),
                         ("max_num_seqs", np.nan), ("kv_cache_tokens", np.nan), ("output_len_sd", np.nan),
                         ("arrival_cv2", np.nan),
                         ("n_requests", np.nan)):
        if col not in cond:
            cond[col] = default
    for col, fix in (("max_num_seqs", "the batch cap must be a number of requests >= 1. Fix: give the server's "
                                      "max_num_seqs, or leave it empty when unknown"),
                     ("kv_cache_tokens", "the KV cache must hold a number of tokens >= 1. Fix: give the server's KV "
                                         "cache size (vLLM logs 'GPU KV cache size: N tokens'), or leave it empty"),
                     ("n_requests", "the run's request count must be a number >= 1. Fix: give the requests of "
                                    "the run to predict, or leave it empty for the server's long-run mean")):
        value = pd.to_numeric(cond[col], errors="coerce")
        if (value.notna() & ~(value >= 1)).any() or (value.isna() & cond[col].notna()).any():
            raise ValueError(f"conditions, column '{col}': {fix}")
        cond[col] = value.astype(float)
    cv2 = pd.to_numeric(cond["arrival_cv2"], errors="coerce")
    if (cv2.notna() & ~((cv2 >= 0) & (cv2 <= 100))).any() or (cv2.isna() & cond["arrival_cv2"].notna()).any():
        raise ValueError("conditions, column 'arrival_cv2': the inter-arrival times' squared coefficient of variation "
                         "must be a number in [0, 100]. Fix: 1 for Poisson arrivals, 0 for evenly spaced ones, "
                         "1 / burstiness for vllm bench serve --burstiness, or leave it empty (Poisson)")
    cond["arrival_cv2"] = cv2.astype(float)
    sd = pd.to_numeric(cond["output_len_sd"], errors="coerce")
    if (sd.notna() & ~(sd >= 0)).any() or (sd.isna() & cond["output_len_sd"].notna()).any():
        raise ValueError("conditions, column 'output_len_sd': the output tokens' standard deviation must be a number "
                         ">= 0. Fix: 0 for a benchmark that fixes the output length, the spread of your requests' "
                         "output tokens, or leave it empty (outputs ended by EOS)")
    cond["output_len_sd"] = sd.astype(float)
    bad = ~cond["load_type"].isin(["rate", "concurrency"])
    if bad.any():
        raise ValueError("conditions, column 'load_type': must be 'rate' or 'concurrency'")
    no_load = ((cond["load_type"] == "rate") & cond["rate_rps"].isna()) | (
        (cond["load_type"] == "concurrency") & cond["concurrency"].isna())
    if no_load.any():
        raise ValueError("conditions: rate_rps (for load_type 'rate') or concurrency (for 'concurrency') is missing")
    return cond[CONDITION_COLUMNS].reset_index(drop=True)


def load_column(table) -> str:
    """The load column of a table of one load type: ``rate_rps`` where it has values, else ``concurrency``."""
    return "rate_rps" if "rate_rps" in table and table["rate_rps"].notna().any() else "concurrency"
