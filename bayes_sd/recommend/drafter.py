"""Drafter design questions (Yan et al., "Designing Draft Models for Speculative Decoding").

- :func:`what_if_drafter`: latency, with intervals, of a drafter never measured, from its
  depth and size, with a model fitted with drafter predictors (``models/drafter_design.toml``):
  its cost coefficients come from the fitted size elasticities plus a population draw of
  what size does not explain, its acceptance from the drafters' population.
- :func:`parity`: how much more acceptance, or how much less draft cost, a candidate drafter
  needs to match the best current drafter at a load, per posterior draw (so with uncertainty).

A SYNTHETIC family of drafters to try them on: :func:`bayes_sd.simulate.designs.drafter_family_runs`.

Units: seconds, requests/s, tokens; drafter sizes in layers and billions of parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd._stats import quantile
from bayes_sd.model.conditions import condition_grid
from bayes_sd.model.predict import (
    acceptance_length,
    acceptance_second_moment,
    latency_at,
)

__all__ = ["what_if_drafter", "parity"]

def what_if_drafter(model, *, layers: int, params_b: float, verifier: str, hardware: str, dataset: str,
                    prompt_len: float, output_len: float, ks=range(0, 8), rates=None, concurrencies=None,
                    name: str = "what-if-drafter", acceptance: float | None = None, max_draws: int = 1000,
                    seed: int = 0) -> xr.Dataset:
    """Predicted latency of a drafter with ``layers`` and ``params_b`` (billions) never measured.

    The intervals include the population spread of what size does not explain and, unless
    ``acceptance`` is given, of acceptance.

    Parameters
    ----------
    model : LatencyModel
        A fitted :class:`~bayes_sd.model.LatencyModel` whose configuration has
        ``drafter_predictors`` (``"drafter_design"``).
    layers : int
        Transformer blocks of the drafter (>= 1).
    params_b : float
        Drafter parameters, billions (>= 0).
    verifier, hardware, dataset : str
        The verifier model, the accelerator and the workload.
    prompt_len, output_len : float
        Mean prompt and output length, tokens.
    ks : iterable of int, default range(0, 8)
        Draft lengths (0 = no speculation).
    rates : array-like of float, optional
        Open-loop request rates, requests/s.
    concurrencies : array-like of float, optional
        Closed-loop streams in flight; give exactly one of ``rates`` and ``concurrencies``.
    name : str, default "what-if-drafter"
        Name of the new drafter (not a measured one).
    acceptance : float, optional
        The per-position acceptance, in (0, 1), e.g. measured offline on your prompts (default: drawn
        from the drafters' population).
    max_draws : int, default 1000
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    xarray.Dataset
        As :meth:`~bayes_sd.model.LatencyModel.predict_grid` (dims ``k`` and ``rate_rps`` or
        ``concurrency``): mean latency with 90% intervals (``latency_mean_s``, ``latency_q05_s``,
        ``latency_q95_s``, s), speedup versus k = 0 (``speedup_vs_k0``), P(slower)
        (``p_slower_than_k0``), saturation rate (``saturation_rps``, requests/s). Attributes
        ``drafter``, ``layers``, ``params_b``, ``acceptance``.

    Raises
    ------
    ValueError
        When the model has no drafter predictors, ``layers < 1`` or ``params_b < 0``, ``name`` is a
        measured drafter, ``acceptance`` is outside (0, 1), or not exactly one of ``rates`` and
        ``concurrencies`` is given.
    """
    if not model.config.get("model", {}).get("drafter_predictors"):
        raise ValueError("what_if_drafter needs a model fitted with drafter predictors. "
                         "Fix: LatencyModel('drafter_design').fit(runs, models=models)")
    if layers < 1 or params_b < 0:
        raise ValueError(f"layers must be >= 1 and params_b >= 0, got layers={layers}, params_b={params_b}")
    if name in set(model.fit_data.coords["drafter"]):
        raise ValueError(f"drafter name '{name}' is a measured drafter. Fix: pass another name=")
    grid, col, _ = condition_grid(verifier=verifier, drafter=name, hardware=hardware, dataset=dataset, ks=ks,
                                  prompt_len=prompt_len, output_len=output_len, rates=rates,
                                  concurrencies=concurrencies)
    extra = pd.DataFrame([{"name": name, "params_b": float(params_b), "layers": int(layers)}])
    if acceptance is not None and not 0.0 < acceptance < 1.0:
        raise ValueError(f"acceptance is a per-position probability in (0, 1), got {acceptance}")
    given = None if acceptance is None else np.full(len(grid), float(acceptance))
    ds = model.predict(grid, max_draws=max_draws, seed=seed, models=extra, acceptance=given)
    ds = ds.drop_vars([c for c in ds.coords if c not in ("k", col)])
    return ds.set_index(condition=["k", col]).unstack("condition").assign_attrs(
        drafter=name, layers=layers, params_b=params_b, acceptance="population" if acceptance is None else acceptance)


def _columns(inputs: dict, cols: slice) -> dict:
    """The conditions ``cols`` of per-draw prediction inputs (arrays (sample, condition) or (condition,))."""
    def pick(v):
        if v is None:
            return None
        if isinstance(v, dict):
            return {name: pick(x) for name, x in v.items()}
        if isinstance(v, tuple):
            return tuple(pick(x) for x in v)
        v = np.asarray(v)
        return v if v.ndim == 0 else v[:, cols] if v.ndim == 2 else v[cols]
    return {key: pick(v) for key, v in inputs.items()}


def _best_over_k(inputs_by_k, ks, a, scale):
    """(sample, load) min over ``ks`` of mean latency with acceptance ``a`` and drafter cost x ``scale``;
    ``inputs_by_k``: per k the prediction inputs of that k's conditions (its configuration's own
    departure from the cost law)."""
    best = None
    for k in ks:
        inputs = inputs_by_k[k]
        kk = np.full(inputs["prompt_len"].shape, float(k))
        tau = acceptance_length(a, kk, inputs["accept_decay"])
        tau_sq = acceptance_second_moment(a, kk, inputs["accept_decay"])
        lat = latency_at(inputs, kk, tau, tau_sq, drafter_scale=scale)[2]
        lat = np.where(np.isnan(lat), np.inf, lat)
        best = lat if best is None else np.minimum(best, lat)
    return best


def _bisect(f, lo, hi, n=40, log=False):
    """Per-element root of increasing-in-x ``f(x) > 0 <=> x above the root`` on [lo, hi]."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, float), np.asarray(hi, float))
    lo, hi = lo.copy(), hi.copy()
    for _ in range(n):
        mid = np.sqrt(lo * hi) if log else 0.5 * (lo + hi)
        above = f(mid)
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return np.sqrt(lo * hi) if log else 0.5 * (lo + hi)


def parity(model, *, candidate: str, reference: str, verifier: str, hardware: str, dataset: str,
           prompt_len: float, output_len: float, rates=None, concurrencies=None, k_max: int = 7,
           candidate_models: pd.DataFrame | None = None, max_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
    """What ``candidate`` needs to match ``reference`` (each at its own best k) at each load.

    Per posterior draw: the reference's best latency over k = 0..k_max (k = 0 included, so
    matching "no speculation" when that is best) and the candidate's over k = 1..k_max.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    candidate : str
        The drafter to assess. A candidate never measured needs ``candidate_models`` and a
        drafter-design model.
    reference : str
        The drafter to match (e.g. the best current one).
    verifier, hardware, dataset : str
        The verifier model, the accelerator and the workload.
    prompt_len, output_len : float
        Mean prompt and output length, tokens.
    rates : array-like of float, optional
        Open-loop request rates, requests/s.
    concurrencies : array-like of float, optional
        Closed-loop streams in flight; give exactly one of ``rates`` and ``concurrencies``.
    k_max : int, default 7
        Largest draft length considered.
    candidate_models : pandas.DataFrame, optional
        The candidate's MODELS row (``name``, ``params_b`` in billions, ``layers``).
    max_draws : int, default 1000
        Posterior draws used.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    pandas.DataFrame
        One row per load (``rate_rps`` in requests/s or ``concurrency``) with medians and 90% intervals
        (``_q05``/``_q95``):

        - ``reference_best_latency_s``, ``candidate_best_latency_s`` (s), ``p_candidate_already_better``;
        - ``acceptance_needed``: the candidate's per-position acceptance at which it matches;
          ``extra_acceptance`` = needed minus its current acceptance (``candidate_acceptance``;
          > 0: it needs more); ``p_cannot_match_by_acceptance`` (even acceptance 0.999 is not enough);
        - ``draft_cost_factor``: the multiplier on the candidate's drafter costs (d0, d1) at
          which it matches (< 1: it must be that much faster; > 1: it has room to spare; inf: any
          cost up to 1000x still matches), over the draws where drafting 1000x faster would match
          (``p_cannot_match_by_draft_cost``: share of draws where even that is not enough).

    Raises
    ------
    ValueError
        When not exactly one of ``rates`` and ``concurrencies`` is given, or a load is not positive.
    """
    ks = list(range(0, k_max + 1))
    pair = dict(verifier=verifier, hardware=hardware, dataset=dataset, ks=ks, prompt_len=prompt_len,
                output_len=output_len, rates=rates, concurrencies=concurrencies)
    rows_r, col, loads = condition_grid(drafter=reference, **pair)
    rows_c, _, _ = condition_grid(drafter=candidate, **pair)
    both = pd.concat([rows_r, rows_c], ignore_index=True)
    dr = model.predict_draws(both, max_draws=max_draws, seed=seed, models=candidate_models)
    n = len(rows_r)  # load-major, k fastest: the columns of k = ks[i] start at i with step len(ks)
    ref, cand = ({k: _columns(dr.inputs, slice(start + i, start + n, len(ks))) for i, k in enumerate(ks)}
                 for start in (0, n))
    target = _best_over_k(ref, ks, ref[1]["acceptance"], 1.0)
    a_c = cand[1]["acceptance"]
    current = _best_over_k(cand, range(1, k_max + 1), a_c, 1.0)
    a_need = _bisect(lambda a: _best_over_k(cand, range(1, k_max + 1), a, 1.0) <= target,
                     np.full_like(a_c, 1e-3), np.full_like(a_c, 0.999))
    cannot = _best_over_k(cand, range(1, k_max + 1), np.full_like(a_c, 0.999), 1.0) > target
    f_lo, f_hi = np.full_like(a_c, 1e-3), np.full_like(a_c, 1e3)
    f_need = _bisect(lambda f: _best_over_k(cand, range(1, k_max + 1), a_c, f) > target, f_lo, f_hi, log=True)
    # outside the bracket: even nearly free drafting cannot match (NaN), or any cost up to 1000x does (inf)
    no_cost_match = _best_over_k(cand, range(1, k_max + 1), a_c, f_lo) > target
    f_need = np.where(no_cost_match, np.nan, f_need)
    f_need = np.where(_best_over_k(cand, range(1, k_max + 1), a_c, f_hi) <= target, np.inf, f_need)
    extra = np.where(cannot, np.nan, a_need - a_c)

    def q(x, p):  # quantile over the draws where a cost factor or an extra acceptance exists
        return float(quantile(x, p, axis=None, skipna=True))
    out = []
    for i, load in enumerate(loads):
        e = extra[:, i][np.isfinite(extra[:, i])]
        out.append({
            col: load, "candidate": candidate, "reference": reference,
            "reference_best_latency_s": float(np.median(target[:, i])),
            "candidate_best_latency_s": float(np.median(current[:, i])),
            "p_candidate_already_better": float(np.mean(current[:, i] <= target[:, i])),
            "candidate_acceptance": float(np.median(a_c[:, i])),
            "acceptance_needed": float(np.median(a_need[:, i])) if e.size else np.nan,
            "extra_acceptance": float(np.median(e)) if e.size else np.nan,
            "extra_acceptance_q05": q(e, 0.05) if e.size else np.nan,
            "extra_acceptance_q95": q(e, 0.95) if e.size else np.nan,
            "p_cannot_match_by_acceptance": float(np.mean(cannot[:, i])),
            "draft_cost_factor": q(f_need[:, i], 0.5),
            "draft_cost_factor_q05": q(f_need[:, i], 0.05),
            "draft_cost_factor_q95": q(f_need[:, i], 0.95),
            "p_cannot_match_by_draft_cost": float(np.mean(np.isnan(f_need[:, i]))),
        })
    return pd.DataFrame(out)
