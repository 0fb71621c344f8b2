"""Choose the draft length k by expected utility over posterior draws (MODEL.md section 3).

For a pair, a workload and each load, every k in ``0..k_max`` is scored over the posterior
draws of the latency model, never at the posterior mean: the decision is the k with the best
*expected* utility (or risk measure), and each answer carries P(k is best) over draws, the
expected regret of the choice, the speedup versus k = 0 with its interval and P(speculation
is slower). k = 0 (no speculation) is a legitimate answer.

Utilities are small numpy functions over a ``(sample, option)`` array, reducing axis 0
(pymc-marketing style): :func:`expected`, :func:`posterior_quantile`, :func:`cvar`,
:func:`prob_at_most`. An :class:`Objective` pairs the per-draw values it scores (mean
latency, per-request p90, fraction of requests within an SLO, goodput) with one of them.

Saturation: past its saturation rate an open-loop server has infinite mean latency, so a
draw can be ``inf``. Then means, quantiles and CVaR become ``inf`` as they should; among
options tied on the objective (for example all ``inf``), the one with the lower
P(saturated) wins, then the one with the higher saturation rate, then the smaller k.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = [
    "expected", "posterior_quantile", "cvar", "prob_at_most", "fraction_within_slo",
    "Objective", "make_objective", "OBJECTIVES", "Decision", "decide",
    "evaluate_k", "recommend_k", "rank_drafters",
    "speculative_config", "batch_size_policy", "vllm_config", "MAX_NUM_SEQS",
]

#: vLLM's default ``max_num_seqs``: the batch-size policy covers 1..MAX_NUM_SEQS.
MAX_NUM_SEQS = 256
OBJECTIVES = ("mean", "p90", "cvar", "slo", "goodput")
_Z90 = float(norm.ppf(0.9))


# ---------------------------------------------------------------------- utilities
def expected(values: np.ndarray) -> np.ndarray:
    """Posterior expectation over draws (axis 0); any ``inf`` draw makes it ``inf``."""
    return np.asarray(values, float).mean(axis=0)


def posterior_quantile(q: float) -> Callable[[np.ndarray], np.ndarray]:
    """Factory: the ``q`` quantile over draws (no interpolation, so ``inf`` stays ``inf``)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")

    def _quantile(values):
        return np.quantile(np.asarray(values, float), q, axis=0, method="inverted_cdf")
    return _quantile


def cvar(alpha: float = 0.9) -> Callable[[np.ndarray], np.ndarray]:
    """Factory: CVaR_alpha of a loss over draws, the mean of its worst ``1 - alpha`` share.

    With ``n`` draws it averages the ``ceil(n (1 - alpha))`` largest values (risk-averse:
    CVaR >= mean; ``inf`` when a saturated draw is among them).
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"cvar_alpha must be in [0, 1), got {alpha}")

    def _cvar(values):
        x = np.sort(np.asarray(values, float), axis=0)
        m = max(1, int(np.ceil(x.shape[0] * (1.0 - alpha) - 1e-9)))
        return x[-m:].mean(axis=0)
    return _cvar


def prob_at_most(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """Factory: P(value <= threshold) over draws, e.g. P(mean latency <= SLO)."""
    def _prob(values):
        return (np.asarray(values, float) <= threshold).mean(axis=0)
    return _prob


def fraction_within_slo(p50: np.ndarray, p90: np.ndarray, slo_s: float) -> np.ndarray:
    """Per draw, the fraction of requests with latency <= ``slo_s`` (lognormal tail).

    Per-request latency is lognormal in the model; its median ``p50`` and shape
    ``ln(p90 / p50) / z_0.9`` give ``Phi((ln slo - ln p50) / shape)``; 0 where saturated.
    """
    p50, p90 = np.asarray(p50, float), np.asarray(p90, float)
    ok = np.isfinite(p50) & np.isfinite(p90) & (p50 > 0)
    p50s, p90s = np.where(ok, p50, 1.0), np.where(ok, p90, 1.0)
    shape = np.maximum(np.log(np.maximum(p90s, p50s) / p50s) / _Z90, 1e-12)
    frac = norm.cdf((np.log(slo_s) - np.log(p50s)) / shape)
    return np.where(ok, frac, 0.0)


# ---------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class Objective:
    """What a decision optimises.

    ``values(draws, loads, is_open)`` maps a dict of draw arrays ``(sample, load, k)``
    (``latency``, ``latency_p50``, ``latency_p90``, ...), the loads ``(load,)`` and the
    load type to per-draw values ``(sample, load, k)``; ``aggregate`` reduces draws
    (axis 0) to the score; ``maximize`` says whether higher is better.
    """

    name: str
    values: Callable[[dict, np.ndarray, bool], np.ndarray]
    aggregate: Callable[[np.ndarray], np.ndarray] = expected
    maximize: bool = False
    unit: str = "s"


def make_objective(objective: str | Objective = "mean", *, slo_s: float | None = None,
                   cvar_alpha: float = 0.9) -> Objective:
    """An :class:`Objective` by name (``OBJECTIVES``), or ``objective`` itself.

    - ``mean``: minimise E[mean latency];
    - ``p90``: minimise E[per-request p90 latency];
    - ``cvar``: minimise CVaR_alpha over draws of the mean latency (risk-averse);
    - ``slo``: maximise E[fraction of requests with latency <= slo_s];
    - ``goodput``: maximise E[requests/s meeting the SLO] = throughput x that fraction
      (throughput = rate in open loop, 0 when saturated; concurrency / latency in closed loop).
    """
    if isinstance(objective, Objective):
        return objective
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective '{objective}'. Fix: use one of {', '.join(OBJECTIVES)}")
    if objective in ("slo", "goodput") and not (slo_s is not None and np.isfinite(slo_s) and slo_s > 0):
        raise ValueError(f"objective '{objective}' needs a positive slo_s (seconds). Fix: pass slo_s / --slo-s")
    if objective == "mean":
        return Objective("mean", lambda d, x, o: d["latency"])
    if objective == "p90":
        return Objective("p90", lambda d, x, o: d["latency_p90"])
    if objective == "cvar":
        return Objective(f"cvar{cvar_alpha:g}", lambda d, x, o: d["latency"], aggregate=cvar(cvar_alpha))

    def _within(d, x, o):
        return fraction_within_slo(d["latency_p50"], d["latency_p90"], slo_s)

    if objective == "slo":
        return Objective("slo", _within, maximize=True, unit="fraction")

    def _goodput(d, x, o):
        lat = d["latency"]
        with np.errstate(divide="ignore", invalid="ignore"):
            thr = np.where(o, x[None, :, None], x[None, :, None] / lat)
        return np.where(np.isfinite(lat), thr, 0.0) * _within(d, x, o)

    return Objective("goodput", _goodput, maximize=True, unit="req/s")


# ---------------------------------------------------------------------- the decision
@dataclass
class Decision:
    """A choice among options (columns) from per-draw values ``(sample, option)``."""

    best: int  # index of the chosen option
    score: np.ndarray  # (option,) aggregated objective
    p_best: np.ndarray  # (option,) fraction of draws where the option is the per-draw best
    regret: np.ndarray  # (option,) expected regret of choosing it (objective units, >= 0)
    p_saturated: np.ndarray  # (option,)


def _lexbest(*keys: np.ndarray) -> np.ndarray:
    """Index along the last axis minimising ``keys`` lexicographically (first on ties)."""
    mask = np.ones(np.shape(keys[0]), bool)
    for key in keys:
        k = np.where(mask, np.nan_to_num(np.asarray(key, float), nan=np.inf), np.inf)
        mask &= k == k.min(axis=-1, keepdims=True)
    return mask.argmax(axis=-1)


def decide(values, *, aggregate=expected, maximize: bool = False, saturated=None,
           headroom=None) -> Decision:
    """Choose among options by ``aggregate`` of per-draw ``values`` (sample, option).

    Losses when ``maximize`` is False (``inf`` = saturated). Ties (e.g. all options
    ``inf``) go to the lowest P(saturated), then the largest median ``headroom`` (e.g.
    saturation rate), then the first option. P(best) and regret use the same rule per draw.
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
    best = int(_lexbest(sign * score, p_sat, -np.median(room, axis=0)))
    per_draw = _lexbest(key, sat, -room)
    p_best = np.bincount(per_draw, minlength=v.shape[1]) / v.shape[0]
    kb = np.take_along_axis(key, per_draw[:, None], axis=1)
    with np.errstate(invalid="ignore"):
        reg = np.where(key == kb, 0.0, key - kb)  # inf - inf (both saturated) is no regret
    return Decision(best, score, p_best, reg.mean(axis=0), p_sat)


# ---------------------------------------------------------------------- model plumbing
_FIELDS = ("latency", "latency_p50", "latency_p90", "latency_p99", "batch_size", "saturation_rps",
           "acceptance_length")


def _draws(model, rows: list[dict], shape: tuple, max_draws: int, seed: int) -> dict:
    """One ``predict_draws`` call (so draws align across rows), reshaped to (sample, *shape)."""
    d = model.predict_draws(pd.DataFrame(rows), max_draws=max_draws, seed=seed)
    out = {f: np.asarray(getattr(d, f), float).reshape(-1, *shape) for f in _FIELDS}
    bad = ~np.isfinite(out["latency"])
    for f in ("latency", "latency_p50", "latency_p90", "latency_p99", "batch_size"):
        out[f] = np.where(bad, np.inf, out[f])  # past saturation every latency is unbounded
    return out


def _loads(rates, concurrencies) -> tuple[str, np.ndarray]:
    if (rates is None) == (concurrencies is None):
        raise ValueError("give exactly one of rates= or concurrencies= (requests/s or streams)")
    col, raw = ("rate_rps", rates) if rates is not None else ("concurrency", concurrencies)
    x = np.atleast_1d(np.asarray(raw, float))
    if x.size == 0 or not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"{col}: loads must be positive finite numbers, got {list(x)}")
    return col, x


def _check(k_max, prompt_len, output_len) -> None:
    if int(k_max) != k_max or k_max < 1:
        raise ValueError(f"k_max must be an integer >= 1, got {k_max}")
    if not (prompt_len > 0 and output_len > 1):
        raise ValueError("prompt_len must be > 0 and output_len > 1 (tokens)")


def _q(x, q):
    x = np.asarray(x, float)
    return float(np.nanquantile(x, q, method="inverted_cdf")) if np.any(~np.isnan(x)) else np.nan


def _speedup(lat0, lat):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isinf(lat0) & np.isinf(lat), np.nan, lat0 / lat)


def evaluate_k(model, *, verifier: str, drafter: str, hardware: str, dataset: str, prompt_len: float,
               output_len: float, rates=None, concurrencies=None, k_max: int = 8,
               objective: str | Objective = "mean", slo_s: float | None = None, cvar_alpha: float = 0.9,
               max_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every (load, k): score, P(k is best), expected regret, latency and speedup summaries.

    One row per load and k in ``0..k_max``; ``chosen`` marks the recommended k per load
    (see :func:`recommend_k`, which keeps those rows). All k of all loads come from one
    ``predict_draws`` call, so draws align across k.
    """
    col, loads = _loads(rates, concurrencies)
    _check(k_max, prompt_len, output_len)
    obj = make_objective(objective, slo_s=slo_s, cvar_alpha=cvar_alpha)
    ks = np.arange(int(k_max) + 1)
    lt = "rate" if col == "rate_rps" else "concurrency"
    rows = [{"verifier": verifier, "drafter": drafter if k else "none", "hardware": hardware, "dataset": dataset,
             "k": int(k), "prompt_len": float(prompt_len), "output_len": float(output_len), "load_type": lt,
             col: float(x)} for x in loads for k in ks]
    d = _draws(model, rows, (len(loads), len(ks)), max_draws, seed)
    vals = obj.values(d, loads, lt == "rate")
    out = []
    for i, x in enumerate(loads):
        dec = decide(vals[:, i], aggregate=obj.aggregate, maximize=obj.maximize,
                     saturated=~np.isfinite(d["latency"][:, i]), headroom=d["saturation_rps"][:, i])
        lat, lat0 = d["latency"][:, i], d["latency"][:, i, 0]
        for k in ks:
            sp = _speedup(lat0, lat[:, k])
            out.append({
                "verifier": verifier, "drafter": drafter, "hardware": hardware, "dataset": dataset,
                "prompt_len": float(prompt_len), "output_len": float(output_len), "load_type": lt, col: float(x),
                "k": int(k), "chosen": bool(k == dec.best), "objective": obj.name, "utility": float(dec.score[k]),
                "utility_q05": _q(vals[:, i, k], 0.05), "utility_q95": _q(vals[:, i, k], 0.95),
                "p_best": float(dec.p_best[k]), "expected_regret": float(dec.regret[k]),
                "latency_mean_s": float(lat[:, k].mean()), "latency_q05_s": _q(lat[:, k], 0.05),
                "latency_q50_s": _q(lat[:, k], 0.5), "latency_q95_s": _q(lat[:, k], 0.95),
                "latency_p90_s": _q(d["latency_p90"][:, i, k], 0.5),
                "speedup_vs_k0": _q(sp, 0.5), "speedup_q05": _q(sp, 0.05), "speedup_q95": _q(sp, 0.95),
                "p_slower_than_k0": float((lat[:, k] > lat0).mean()), "p_saturated": float(dec.p_saturated[k]),
                "p_saturated_k0": float(dec.p_saturated[0]), "batch_size": _q(d["batch_size"][:, i, k], 0.5),
                "saturation_rps": _q(d["saturation_rps"][:, i, k], 0.5),
                "acceptance_length": _q(d["acceptance_length"][:, i, k], 0.5),
            })
    return pd.DataFrame(out)


def recommend_k(model, *, verifier: str, drafter: str, hardware: str, dataset: str, prompt_len: float,
                output_len: float, rates=None, concurrencies=None, k_max: int = 8,
                objective: str | Objective = "mean", slo_s: float | None = None, cvar_alpha: float = 0.9,
                max_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The recommended draft length per load: one row per rate (or concurrency).

    Columns include ``best_k`` (0 = do not speculate), ``utility`` (the objective's score),
    ``latency_mean_s`` with its 90% interval ``latency_q05_s``/``latency_q95_s`` (mean
    request latency at best_k, s), ``p_best`` (P(best_k is the per-draw best)),
    ``expected_regret`` (objective units), ``speedup_vs_k0`` (median; ``speedup_q05``,
    ``speedup_q95``), ``p_slower_than_k0``, ``p_saturated`` and ``batch_size`` (median
    requests in flight at best_k: Little's law in open loop, the concurrency in closed loop).
    ``objective``: ``mean | p90 | cvar | slo | goodput`` or an :class:`Objective`.

    Example
    -------
    >>> recommend_k(model, verifier="llama3.1-8b", drafter="eagle3-small", hardware="H100",
    ...             dataset="chat", prompt_len=512, output_len=256, rates=[5, 20, 40])  # doctest: +SKIP
    """
    table = evaluate_k(model, verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset,
                       prompt_len=prompt_len, output_len=output_len, rates=rates, concurrencies=concurrencies,
                       k_max=k_max, objective=objective, slo_s=slo_s, cvar_alpha=cvar_alpha,
                       max_draws=max_draws, seed=seed)
    recs = table[table["chosen"]].drop(columns="chosen").rename(columns={"k": "best_k"})
    return recs.reset_index(drop=True)


def rank_drafters(model, *, verifier: str, drafters: list, hardware: str, dataset: str, prompt_len: float,
                  output_len: float, load: float, load_type: str = "rate", k_max: int = 8,
                  objective: str | Objective = "mean", slo_s: float | None = None, cvar_alpha: float = 0.9,
                  max_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Rank candidate drafters at one load: each one's best k, utility (90% interval) and P(best).

    Options are k = 0 (row ``drafter = 'none'``) and every (drafter, k >= 1), all from one
    ``predict_draws`` call. ``p_best``: fraction of draws in which that drafter (at any
    k >= 1), or no speculation, is the per-draw best option; it sums to 1 over the rows.
    ``best_k`` is the drafter's best k in 0..k_max by the objective (0: it does not pay).
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
    d = _draws(model, rows, (1, len(opts)), max_draws, seed)
    vals = obj.values(d, np.array([float(load)]), load_type == "rate")[:, 0]
    sat, room = ~np.isfinite(d["latency"][:, 0]), d["saturation_rps"][:, 0]
    overall = decide(vals, aggregate=obj.aggregate, maximize=obj.maximize, saturated=sat, headroom=room)
    out = []
    for name in ["none"] + drafters:
        idx = [0] + ([j for j, (dr, _) in enumerate(opts) if dr == name] if name != "none" else [])
        own = decide(vals[:, idx], aggregate=obj.aggregate, maximize=obj.maximize, saturated=sat[:, idx],
                     headroom=room[:, idx])
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


# ---------------------------------------------------------------------- vLLM export
def speculative_config(method: str, model_name: str | None, k: int) -> dict | None:
    """vLLM ``--speculative-config`` JSON for a fixed k; ``None`` for k = 0 (do not enable).

    ``{"method": method, "model": model_name, "num_speculative_tokens": k}``; ``model`` is
    left out when ``model_name`` is None (e.g. ``ngram``, or ``mtp`` using the verifier's heads).
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
    whose predicted batch size (``batch_size``: requests in flight, B = rate x latency) is
    nearest on a log scale; saturated loads count as ``max_num_seqs``.
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

    ``speculative_config`` is None when k = 0 at every batch size (do not enable speculation);
    a fixed ``num_speculative_tokens`` when one k covers every batch size; otherwise it adds
    ``num_speculative_tokens_per_batch_size`` (vLLM Dynamic SD; ``num_speculative_tokens`` is
    the largest k, as vLLM requires every range's K <= it). ``serve_args`` are the matching
    ``vllm serve`` arguments. Dynamic SD is documented as tested with EAGLE, EAGLE-3 and
    DFlash and is disabled by vLLM under data parallelism.
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
    return {"speculative_config": spec, "max_num_seqs": int(max_num_seqs), "serve_args": args,
            "schedule": [{"min_batch_size": a, "max_batch_size": z, "num_speculative_tokens": k} for a, z, k in ranges]}
