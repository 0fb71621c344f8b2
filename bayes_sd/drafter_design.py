"""Drafter design questions (Yan et al., "Designing Draft Models for Speculative Decoding").

- :func:`what_if_drafter`: latency, with intervals, of a drafter never measured, from its
  depth and size, with a model fitted with drafter predictors (``models/drafter_design.toml``):
  its cost coefficients come from the fitted size elasticities plus a population draw of
  what size does not explain, its acceptance from the drafters' population.
- :func:`parity`: how much more acceptance, or how much less draft cost, a candidate drafter
  needs to match the best current drafter at a load, per posterior draw (so with uncertainty).
- :func:`drafter_family_runs`: a SYNTHETIC family of drafters of varying depth and size
  (simulated with :mod:`bayes_sd.simulate`), where depth drives draft cost as Yan et al.
  found, for tests, benchmarks and the notebook.

Units: seconds, requests/s, tokens; drafter sizes in layers and billions of parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd import theory
from bayes_sd.model.predict import acceptance_length, acceptance_second_moment, latency_at

__all__ = ["FAMILY_VERIFIER", "FAMILY_DRAFTERS", "family_true_costs", "drafter_family_runs", "what_if_drafter",
           "parity"]

#: the family's verifier: an 8B-class dense model on one H100 (ILLUSTRATIVE costs, seconds)
FAMILY_VERIFIER = theory.ServiceCosts(v0=6.6e-3, v1=45e-6, d0=0.0, d1=0.0, p0=2e-3, p1=50e-6, c1=0.04e-6)
#: SYNTHETIC drafters: name -> (layers, params_b). Depth varies more than width.
FAMILY_DRAFTERS = {
    "draft-L1-0.25b": (1, 0.25), "draft-L2-0.3b": (2, 0.3), "draft-L4-0.5b": (4, 0.5),
    "draft-L6-0.4b": (6, 0.4), "draft-L8-1b": (8, 1.0), "draft-L12-0.8b": (12, 0.8),
    "draft-L16-1.2b": (16, 1.2), "draft-L24-2b": (24, 2.0),
}


def family_true_costs(layers: float, params_b: float) -> tuple[float, float, float]:
    """True (d0 s, d1 s, per-position acceptance) of a family drafter. SYNTHETIC ground truth.

    ``d0 = 0.15 ms + 0.12 ms x layers`` (a pass runs its layers in sequence: depth drives
    latency); ``d1 = 10 us x params_b`` (per-token work grows with width); acceptance rises
    slowly with depth and size (0.55 to 0.75).
    """
    d0 = 0.15e-3 + 0.12e-3 * layers
    d1 = 10e-6 * params_b
    a = float(np.clip(0.55 + 0.035 * np.log2(layers) + 0.03 * np.log2(params_b / 0.25 + 1.0), 0.05, 0.95))
    return d0, d1, a


def drafter_family_runs(drafters: dict | None = None, *, seed: int = 0, n_requests: int = 200,
                        concurrencies=(1, 8, 32), ks=(2, 4)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SYNTHETIC closed-loop runs of the family on one verifier; returns (runs, models).

    Each drafter runs at draft lengths ``ks`` and the verifier alone (k = 0) at every
    concurrency; dataset 'chat' (prompt 512, output 256 tokens).
    """
    from bayes_sd.presets import Preset
    from bayes_sd.simulate import simulate_runs

    drafters = FAMILY_DRAFTERS if drafters is None else drafters
    presets, rows = {}, []
    for name, (layers, params) in drafters.items():
        d0, d1, a = family_true_costs(layers, params)
        costs = theory.ServiceCosts(**{**FAMILY_VERIFIER.__dict__, "d0": d0, "d1": d1})
        presets[name] = Preset("family-8b", name, "H100", costs, {"chat": (a,) * 8}, "SYNTHETIC drafter family")
        for k in ks:
            for c in concurrencies:
                rows.append({"run_id": f"family-{name}-k{k}-c{c}", "preset": name, "k": k, "concurrency": c})
    first = next(iter(drafters))
    for c in concurrencies:
        rows.append({"run_id": f"family-none-k0-c{c}", "preset": first, "k": 0, "concurrency": c})
    configs = pd.DataFrame(rows).assign(dataset="chat", load_type="concurrency", prompt_len=512.0,
                                        output_len=256.0, length_cv=0.3, n_requests=n_requests)
    _, runs = simulate_runs(configs, presets=presets, seed=seed)
    models = pd.DataFrame([{"name": n, "params_b": float(p), "layers": int(layer)}
                           for n, (layer, p) in drafters.items()]
                          + [{"name": "family-8b", "params_b": 8.0, "layers": 32}])
    return runs, models


def _conditions(verifier, drafter, hardware, dataset, ks, prompt_len, output_len, rates, concurrencies):
    if (rates is None) == (concurrencies is None):
        raise ValueError("give exactly one of rates= (requests/s) or concurrencies= (streams)")
    col = "rate_rps" if rates is not None else "concurrency"
    loads = [float(x) for x in (rates if rates is not None else concurrencies)]
    rows = [{"verifier": verifier, "drafter": drafter if k > 0 else "none", "hardware": hardware, "dataset": dataset,
             "k": int(k), "prompt_len": float(prompt_len), "output_len": float(output_len),
             "load_type": "rate" if rates is not None else "concurrency", col: x} for x in loads for k in ks]
    return pd.DataFrame(rows), col, loads


def what_if_drafter(model, *, layers: int, params_b: float, verifier: str, hardware: str, dataset: str,
                    prompt_len: float, output_len: float, ks=range(0, 8), rates=None, concurrencies=None,
                    name: str = "what-if-drafter", acceptance: float | None = None, max_draws: int = 1000,
                    seed: int = 0) -> xr.Dataset:
    """Predicted latency of a drafter with ``layers`` and ``params_b`` (billions) never measured.

    ``model``: a fitted :class:`~bayes_sd.model.LatencyModel` whose configuration has
    ``drafter_predictors`` (``"drafter_design"``). Returns the same ``xr.Dataset`` as
    ``predict_grid`` (dims ``k`` and ``rate_rps`` or ``concurrency``): mean latency with
    90% intervals, speedup versus k = 0, P(slower), saturation rate. The intervals include
    the population spread of what size does not explain and, unless ``acceptance`` (the
    per-position acceptance, e.g. measured offline on your prompts) is given, of acceptance.
    """
    if not model.config.get("model", {}).get("drafter_predictors"):
        raise ValueError("what_if_drafter needs a model fitted with drafter predictors. "
                         "Fix: LatencyModel('drafter_design').fit(runs, models=models)")
    if layers < 1 or params_b < 0:
        raise ValueError(f"layers must be >= 1 and params_b >= 0, got layers={layers}, params_b={params_b}")
    if name in set(model.fit_data.coords["drafter"]):
        raise ValueError(f"drafter name '{name}' is a measured drafter. Fix: pass another name=")
    grid, col, _ = _conditions(verifier, name, hardware, dataset, ks, prompt_len, output_len, rates, concurrencies)
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
        return v[:, cols] if v.ndim == 2 else v[cols]
    return {key: pick(v) for key, v in inputs.items()}


def _best_over_k(inputs, ks, a, scale):
    """(sample, load) min over ``ks`` of mean latency with acceptance ``a`` and drafter cost x ``scale``."""
    best = None
    for k in ks:
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
    matching "no speculation" when that is best), the candidate's over k = 1..k_max, and

    - ``acceptance_needed``: the candidate's per-position acceptance at which it matches;
      ``extra_acceptance`` = needed minus its current acceptance (> 0: it needs more);
    - ``draft_cost_factor``: the multiplier on the candidate's drafter costs (d0, d1) at
      which it matches (< 1: it must be that much faster; > 1: it has room to spare; inf: any
      cost up to 1000x still matches), over the draws where drafting 1000x faster would match
      (``p_cannot_match_by_draft_cost``: share of draws where even that is not enough).

    One row per load with medians and 90% intervals, ``p_candidate_already_better``, and
    ``p_cannot_match_by_acceptance`` (even acceptance 0.999 is not enough). A candidate
    never measured needs ``candidate_models`` (its MODELS row) and a drafter-design model.
    """
    ks = range(0, k_max + 1)
    rows_r, col, loads = _conditions(verifier, reference, hardware, dataset, [1], prompt_len, output_len, rates,
                                     concurrencies)
    rows_c, _, _ = _conditions(verifier, candidate, hardware, dataset, [1], prompt_len, output_len, rates,
                               concurrencies)
    both = pd.concat([rows_r, rows_c], ignore_index=True)
    dr = model.predict_draws(both, max_draws=max_draws, seed=seed, models=candidate_models)
    n = len(loads)
    ref, cand = _columns(dr.inputs, slice(0, n)), _columns(dr.inputs, slice(n, 2 * n))
    target = _best_over_k(ref, ks, ref["acceptance"], 1.0)
    a_c = cand["acceptance"]
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
    q = lambda x, p: np.quantile(x, p, axis=0)  # noqa: E731
    extra = np.where(cannot, np.nan, a_need - a_c)

    def fq(x, p):  # quantile over the draws where a cost factor exists
        x = x[~np.isnan(x)]
        return float(np.quantile(x, p)) if x.size else np.nan
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
            "extra_acceptance_q05": float(q(e, 0.05)) if e.size else np.nan,
            "extra_acceptance_q95": float(q(e, 0.95)) if e.size else np.nan,
            "p_cannot_match_by_acceptance": float(np.mean(cannot[:, i])),
            "draft_cost_factor": fq(f_need[:, i], 0.5),
            "draft_cost_factor_q05": fq(f_need[:, i], 0.05),
            "draft_cost_factor_q95": fq(f_need[:, i], 0.95),
            "p_cannot_match_by_draft_cost": float(np.mean(np.isnan(f_need[:, i]))),
        })
    return pd.DataFrame(out)
