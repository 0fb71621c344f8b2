"""Posterior prediction for arbitrary conditions, in numpy, from posterior draws.

A condition is one row with canonical run columns: ``verifier, drafter, hardware, dataset,
k, prompt_len, output_len`` and a load (``load_type`` with ``rate_rps`` or ``concurrency``).
Service costs are composed from the posterior effects exactly as the PyMC model composes
them (table ``EFFECTS``); a level never seen in training (a new pair, a new hardware, a new
dataset) gets a fresh draw from its population, one draw per unseen level shared by every
condition that names it, so curves over k and load stay coherent. Latency then comes from
:mod:`bayes_sd.theory` (the same functions the model used), here with the exact open-loop
form (infinite past saturation).
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd import theory
from bayes_sd._stats import quantile
from bayes_sd.model.build import z_quantile
from bayes_sd.model.fit_data import (
    COEFS,
    DRAFTER_COEFS,
    EFFECTS,
    KNEE_FORMS,
    LOAD_TRENDS,
    MOE_FORMS,
    SPECULATION_COSTS,
    VERIFIER_COEFS,
    acceptance_pivot,
    arrivals,
    batch_cap,
    configuration_effects,
    configuration_level_label,
    deployment_label,
    drafter_predictor_matrix,
    fixed_scale,
    level_label,
    model_free_keep,
    moe_log_q,
    pair_label,
    recompute_tokens,
)
from bayes_sd.model.serve_latency import latency_at, run_latency
from bayes_sd.theory import acceptance
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["Draws", "acceptance_length", "acceptance_second_moment", "condition_draws", "latency_at", "summarise",
           "stack_posterior"]


def stack_posterior(posterior: xr.Dataset, max_draws: int | None = None, seed: int = 0) -> dict[str, xr.DataArray]:
    """Posterior variables with (chain, draw) stacked into a leading ``sample`` axis."""
    stacked = posterior.stack(sample=("chain", "draw"))
    n = stacked.sizes["sample"]
    if max_draws is not None and n > max_draws:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_draws, replace=False))
        stacked = stacked.isel(sample=keep)
    return {name: da.transpose("sample", ...) for name, da in stacked.data_vars.items()}


def _labels(cond: pd.DataFrame) -> dict[str, list[str]]:
    v, d, h, s = (cond[c].astype(str).tolist() for c in ("verifier", "drafter", "hardware", "dataset"))
    pair = [pair_label(a, b) for a, b in zip(v, d)]
    return {
        "verifier": v, "hardware": h, "drafter": d, "dataset": s, "pair": pair, "spec_pair": pair,
        "verifier_hw": [level_label(a, b) for a, b in zip(v, h)],
        "drafter_hw": [level_label(a, b) for a, b in zip(d, h)],
        "pair_dataset": [f"{p} | {x}" for p, x in zip(pair, s)],
        "deployment": [deployment_label(f"{p} | {x}", hw) for p, x, hw in zip(pair, s, h)],
        "configuration": [configuration_level_label(*row) for row in zip(v, d, h, s, cond["k"])],
    }


class _EffectSampler:
    """Effect values (sample, condition[, coef]) for known or unseen levels."""

    def __init__(self, post: dict, cfg: dict, fit_coords: dict, labels: dict, seed: int):
        self.post, self.cfg, self.fit_coords, self.labels, self.seed = post, cfg, fit_coords, labels, seed
        self.n_samples = next(iter(post.values())).shape[0]

    def _fresh_normal(self, name: str, label: str, width: int) -> np.ndarray:
        """Standard-normal draws (sample, width) for an unseen level: seeded by the seed, the effect
        and the level, so a level gets the same draw whatever else a call predicts."""
        key = [self.seed, zlib.crc32(name.encode()), zlib.crc32(label.encode())]
        return np.random.default_rng(key).standard_normal((self.n_samples, width))

    def _scale(self, prior: str, prior_dims: str | None, coefs) -> np.ndarray:
        if prior in self.post:
            s = self.post[prior].values
            if s.ndim == 1:  # a scalar scale: one column
                s = s[:, None]
            if prior_dims == "coef" and coefs is not None:
                s = s[:, [COEFS.index(c) for c in coefs]]
            return s
        width = 1 if coefs is None else len(coefs)
        return np.full((self.n_samples, width), fixed_scale(self.cfg, prior))

    def __call__(self, name: str, query: list[str] | None = None) -> np.ndarray:
        """Effect ``name`` for the conditions' levels (or for the levels ``query`` of its group)."""
        group, prior, prior_dims, coefs = EFFECTS[name]
        width = 1 if coefs is None else len(coefs)
        query = self.labels[group] if query is None else query
        out = np.zeros((self.n_samples, len(query), width))
        da = self.post.get(f"effect_{name}")
        known = list(da.coords[group].values) if da is not None else []
        values = None if da is None else da.values.reshape(self.n_samples, len(known), width)
        scale = None
        fresh: dict[str, np.ndarray] = {}
        for j, label in enumerate(query):
            if label in known:
                out[:, j] = values[:, known.index(label)]
            elif da is None and label in self.fit_coords.get(group, []):
                continue  # an effect the data could not separate: it is part of the grand mean
            else:
                if label not in fresh:
                    scale = self._scale(prior, prior_dims, coefs) if scale is None else scale
                    fresh[label] = scale * self._fresh_normal(name, label, width)
                out[:, j] = fresh[label]
        return out if coefs is not None else out[..., 0]


@dataclass
class Draws:
    """Posterior draws (sample, condition) of everything predicted for a set of conditions."""

    latency: np.ndarray  # mean request latency, s
    latency_pred: np.ndarray  # a new run's observed mean latency (adds model discrepancy; and, for conditions
    # with n_requests, the sampling error of that many requests' mean, inflated by queueing, and in open loop
    # the mean of a run that ends before the steady state's backlog builds near capacity; inf at or past
    # capacity, where the ingest flags the run saturated: serve_latency.run_latency), s
    latency_p50: np.ndarray  # per-request latency quantiles, s
    latency_p90: np.ndarray
    latency_p99: np.ndarray
    ttft: np.ndarray  # s
    tpot: np.ndarray  # s/token
    latency_k0: np.ndarray  # same condition without speculation, s
    saturation_rps: np.ndarray  # requests/s
    batch_size: np.ndarray  # requests in flight (Little's law for open loop)
    acceptance_length: np.ndarray  # tokens per verify step
    inputs: dict = dataclasses.field(default_factory=dict)  # per-draw costs etc. for :func:`latency_at`


def _costs(eff: _EffectSampler, post: dict, design: np.ndarray | float = 0.0) -> np.ndarray:
    """log service costs in ms, (sample, condition, coef) in ``COEFS`` order.

    ``design``: (sample, condition, dcoef) contribution of drafter size predictors.
    """
    mu = post["mu_log_cost"].values[:, None, :]
    log_c = mu + eff("hardware")
    vcols = [COEFS.index(c) for c in VERIFIER_COEFS]
    dcols = [COEFS.index(c) for c in DRAFTER_COEFS]
    log_c[..., vcols] += eff("verifier") + eff("verifier_hw")
    log_c[..., dcols] += eff("drafter") + eff("drafter_hw") + eff("spec_pair") + design
    return log_c


def _drafter_design(post: dict, fit_coords: dict, drafters: list[str], k: np.ndarray, models) -> np.ndarray | float:
    """(sample, condition, dcoef) ``beta . z[drafter]`` for the conditions' drafters (0 without predictors)."""
    names = list(fit_coords.get("drafter_predictor", []))
    if not names:
        return 0.0
    spec = k > 0
    z = np.zeros((len(drafters), len(names)))
    if spec.any():
        wanted = sorted({d for d, s in zip(drafters, spec) if s})
        zz = dict(zip(wanted, drafter_predictor_matrix(wanted, models, names, source="models (for prediction)")))
        z[spec] = np.stack([zz[d] for d, s in zip(drafters, spec) if s])
    beta = post["beta_drafter_design"].transpose("sample", "dcoef", "drafter_predictor").values
    return np.einsum("cp,sdp->scd", z, beta)


def _expert_share(post: dict, cfg: dict, fit_coords: dict, verifiers: list[str], log_q: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """(sample, condition) share of v0 that scales with expert coverage.

    ``log_q``: per condition ``log(1 - top_k / E)``, NaN for a dense verifier (``moe_log_q``).
    Dense verifiers (or a form without expert coverage) get share 0. An MoE verifier seen in the
    fit uses its posterior; one never fitted gets one draw per sample from the share prior.
    """
    n = next(iter(post.values())).shape[0]
    share = np.zeros((n, len(verifiers)))
    if cfg.get("model", {}).get("verifier_form", "dense") not in MOE_FORMS:
        return share
    moe = np.isfinite(log_q)
    spec = cfg["priors"]["expert_share"]
    share[:, moe] = _per_level(post, "expert_share", list(fit_coords.get("moe_verifier", [])),
                               [v for v, m in zip(verifiers, moe) if m],
                               lambda size: rng.beta(spec["alpha"], spec["beta"], size=size))
    return share


def _per_level(post: dict, name: str, fitted: list[str], query: list[str], prior_draw) -> np.ndarray:
    """(sample, condition) draws of the per-level parameter ``name`` for the levels in ``query``:
    the posterior for a level seen in the fit (``fitted``: the fit's levels, in the posterior's
    order), ``prior_draw(n)`` once per level never fitted (shared by every condition naming it)."""
    n = next(iter(post.values())).shape[0]
    out, fresh = np.empty((n, len(query))), {}
    for j, level in enumerate(query):
        if level in fitted and name in post:
            out[:, j] = post[name].values[:, fitted.index(level)]
            continue
        if level not in fresh:
            fresh[level] = prior_draw(n)
        out[:, j] = fresh[level]
    return out


def _lognormal_prior(cfg: dict, name: str, rng: np.random.Generator):
    spec = cfg["priors"][name]
    return lambda n: rng.lognormal(spec["mu"], spec["sigma"], size=n)


def _verifier_extras(post: dict, cfg: dict, fit_coords: dict, verifier_hw: list[str], log_q: np.ndarray,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(sample, condition) roofline knee (tokens per verify pass), its compute share, and the
    per-sequence cost s1 (s) and the costs of a step that speculates e0, e1 (s), of the variants that
    have them (``verifier_form = "roofline"`` or ``"moe_roofline"``, ``sequence_cost = true``,
    ``speculation_cost = true``); otherwise no knee (share 0) and s1 = e0 = e1 = 0.
    ``log_q``: per condition ``log(1 - top_k / E)``, NaN for a dense verifier (``moe_log_q``)."""
    opts = cfg.get("model", {})
    shape = (next(iter(post.values())).shape[0], len(verifier_hw))
    fitted = list(fit_coords.get("verifier_hw", []))

    def draws(name):
        return _per_level(post, name, fitted, verifier_hw, _lognormal_prior(cfg, name, rng))

    out = {"knee_tokens": np.ones(shape), "compute_share": np.zeros(shape), "s1": np.zeros(shape)}
    form = opts.get("verifier_form", "dense")
    if form in KNEE_FORMS:
        out["knee_tokens"], out["compute_share"] = draws("knee_tokens"), draws("knee_compute_share")
    if form == "moe_roofline":  # as in server_costs.roofline_knee
        moe = np.isfinite(log_q)
        out["knee_tokens"] = out["knee_tokens"] * np.where(moe, theory.moe_knee_scale(np.where(moe, log_q, -1.0)), 1.0)
    if opts.get("sequence_cost", False) and "sequence_cost_spread" in cfg["priors"]:
        out["s1"] = _pooled_per_level(post, cfg, "sequence_cost", fitted, verifier_hw, rng) / 1000.0
    elif opts.get("sequence_cost", False):
        out["s1"] = draws("sequence_cost_ms") / 1000.0
    for effect, field in SPECULATION_COSTS.items():  # server_costs.speculation_costs
        out[field] = np.zeros(shape)
        if opts.get("speculation_cost", False) and f"log_{effect}_centre" in post:  # else fitted without
            out[field] = _pooled_per_level(post, cfg, effect, fitted, verifier_hw, rng) / 1000.0
    return out


def _pooled_per_level(post: dict, cfg: dict, effect: str, fitted: list[str], query: list[str],
                      rng: np.random.Generator) -> np.ndarray:
    """(sample, condition) draws of ``<effect>_ms`` (server_costs.pooled_log_levels): the posterior for a
    level seen in the fit, and for one never fitted a fresh draw from the fitted population per sample,
    ``exp(centre + spread z)`` (the spread fixed at its prior's scale unless the fit learned it)."""
    centre = post[f"log_{effect}_centre"].values
    spread = (post[f"{effect}_spread"].values if f"{effect}_spread" in post
              else fixed_scale(cfg, f"{effect}_spread"))
    return _per_level(post, f"{effect}_ms", fitted, query, lambda n: np.exp(centre + spread * rng.standard_normal(n)))


def condition_draws(post: dict, cfg: dict, fit_coords: dict, conditions: pd.DataFrame, *, seed: int = 0,
                    models: pd.DataFrame | None = None, acceptance=None,
                    fitted_drafters: pd.DataFrame | None = None, draft_share=None, load_offsets=None) -> Draws:
    """Posterior draws of latency and friends for each condition row.

    ``post``: stacked posterior (:func:`stack_posterior`); ``cfg``: the model configuration;
    ``fit_coords``: the training coords (levels seen in the fit); ``models``: MODELS table
    (MoE experts, drafter sizes) for the variants that use it; ``acceptance``: per-condition
    per-position acceptance (first-position in the ``per_position`` variant) replacing the
    model's, NaN where the model's is kept (for what-if questions); ``fitted_drafters``: the fit's
    :meth:`FitData.drafter_table`, needed with a pooled decay or ``acceptance_pivot = "measured"``;
    ``draft_share``: per condition, the share of decode steps that carry drafts (default 1, every step;
    :func:`bayes_sd.model.fit_data.draft_share` from the fitted runs); ``load_offsets``: per load trend
    (``config_load_trend``, ``server_load_trend``), the conditions' log-load offsets from their
    configuration's (server's) measured loads followed by their k = 0 counterparts'
    (:meth:`LatencyModel._load_offsets`, :func:`bayes_sd.model.load_range.load_offset`; default 0).
    """
    cond = conditions.reset_index(drop=True).copy()
    cond["drafter"] = cond["drafter"].fillna(NO_DRAFTER).astype(str).where(cond["k"] > 0, NO_DRAFTER)
    cond["dataset"] = cond.get("dataset", pd.Series("unseen", index=cond.index)).fillna("unseen")
    rng = np.random.default_rng(seed)
    labels = _labels(cond)
    eff = _EffectSampler(post, cfg, fit_coords, labels, seed)
    k = cond["k"].to_numpy(float)
    design = _drafter_design(post, fit_coords, labels["drafter"], k, models)
    cost = np.exp(_costs(eff, post, design)) / 1000.0  # seconds
    c = {name: cost[..., COEFS.index(name)] for name in COEFS}
    c["d1"] = c["d1"] * model_free_keep(cfg, labels["drafter"])  # as in build.py
    log_q = moe_log_q(labels["verifier"], models)  # NaN for dense verifiers
    share = _expert_share(post, cfg, fit_coords, labels["verifier"], log_q, rng)
    extras = _verifier_extras(post, cfg, fit_coords, labels["verifier_hw"], log_q, rng)
    log_q = np.where(np.isfinite(log_q), log_q, np.log(0.5))  # dense: any finite value (share 0)
    for field in ("s1", *SPECULATION_COSTS.values()):
        c[field] = extras[field]
    logit_a = post["mu_accept"].values[:, None] + eff("accept_drafter") + eff("accept_dataset") + eff("accept_pair")
    decay = _accept_decay(post, cfg, fit_coords, labels["drafter"], rng, fitted_drafters)
    if decay is not None and acceptance_pivot(cfg) == "measured":  # build.py, _acceptance_logit
        logit_a = logit_a + _drafter_pivot(fitted_drafters, labels["drafter"]) * decay
    logit_a = logit_a + eff("accept_deployment")  # after the pivot shift, as in build.py
    a = 1.0 / (1.0 + np.exp(-logit_a))
    if acceptance is not None:  # what-if: a given per-position acceptance replaces the model's
        given = np.asarray(acceptance, float)
        a = np.where(np.isnan(given), a, given)
    tau, tau_sq = acceptance_length(a, k, decay), acceptance_second_moment(a, k, decay)
    P, D = cond["prompt_len"].to_numpy(float), cond["output_len"].to_numpy(float)
    is_open = (cond["load_type"] == "rate").to_numpy()
    rate = np.nan_to_num(cond["rate_rps"].to_numpy(float)) if "rate_rps" in cond else np.zeros(len(cond))
    conc = np.nan_to_num(cond["concurrency"].to_numpy(float), nan=1.0) if "concurrency" in cond else np.ones(len(cond))

    cap = batch_cap(cond).to_numpy(float)

    factors, factors_k0 = _configuration_factors(eff, cfg, cond, load_offsets)
    inputs = {"cost": c, "acceptance": a, "accept_decay": decay, "share": share, "log_q": log_q,
              "knee_tokens": extras["knee_tokens"], "compute_share": extras["compute_share"], "prompt_len": P,
              "output_len": D, "is_open": is_open, "rate": rate, "concurrency": conc, "configuration": factors,
              "slots": np.where(np.isfinite(cap), cap, 1.0), "has_cap": np.isfinite(cap),
              "recompute": recompute_tokens(cond),
              "arrival_cv2": _arrival_cv2(post, cfg, cond, rng),
              "draft_share": np.ones(len(cond)) if draft_share is None else np.asarray(draft_share, float)}

    costs, dem, lat, others, wait, capacity = latency_at(inputs, k, tau, tau_sq)
    _, _, lat0, *_ = latency_at({**inputs, "configuration": factors_k0}, np.zeros_like(k), np.ones_like(tau),
                               np.ones_like(tau))
    with np.errstate(over="ignore", invalid="ignore"):  # past saturation: infinite latency, by design
        others_ok = np.where(np.isfinite(others), others, np.nan)
        k_step, tau_step, tau_sq_step = theory.per_decode_step(k, tau, tau_sq, inputs["draft_share"])
        ttft = theory.ttft(costs, k_step, tau_step, P, D, others_ok, tau_sq=tau_sq_step,
                           p_busy=theory.busy_probability(others_ok, is_open)) + wait
        tpot = theory.tpot(lat, ttft, D)
        tail_pair = eff("tail_pair")

        def tail_shape(met):  # per-request latency spread (log sd) at ``met`` other requests in service
            return np.exp(post["mu_tail"].values[:, None] + tail_pair
                          + post["tail_load_slope"].values[:, None] * np.log1p(np.maximum(met, 0.0)))

        shape = tail_shape(others)
        quant = {q: np.where(np.isfinite(lat), lat * np.exp(-0.5 * shape**2 + z_quantile(q) * shape), np.inf)
                 for q in (0.5, 0.9, 0.99)}  # saturated draws: every percentile is infinite too
    nu = float(cfg.get("model", {}).get("student_t_nu", 4.0))
    noise = post["sigma_latency"].values[:, None] * rng.standard_t(nu, size=lat.shape)
    lat_pred = lat * np.exp(noise)
    c2_new = dem.c2  # a new run's C2

    def c2_ratio(others_met, c2_run):  # the closed-loop law's latency with a run's C2 over the model's
        return (dem.c1 + others_met * c2_run) / (dem.c1 + others_met * dem.c2)

    if "sigma_c2" in post:  # a new run's C2 deviates from the closed form's by exp(sigma_c2 t): applied
        # exactly, so a draw pushed past saturation is infinite (the model's linearisation, used in
        # the likelihood, would instead blow up near saturation)
        c2_new = dem.c2 * np.exp(post["sigma_c2"].values[:, None] * rng.standard_t(nu, size=lat.shape))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # open loop: the dense law's ratio, each piece of theory.arrivals solved with the new C2 (a piece
            # whose C1 - shift C2 turns negative loses to the other, never a negative latency)
            cv2 = inputs["arrival_cv2"]
            ratio = np.where(is_open, theory.latency_open_arrivals(dem.c1, c2_new, rate, cv2)
                             / theory.latency_open_arrivals(dem.c1, dem.c2, rate, cv2),
                             c2_ratio(conc - 1.0, c2_new))
            # a draw saturated in the mean stays saturated (inf times the ratio's sign would not)
            lat_pred = np.where(np.isfinite(lat), lat_pred * ratio, np.inf)
    n_requests = cond["n_requests"].to_numpy(float) if "n_requests" in cond else np.full(len(cond), np.nan)
    if np.any(np.isfinite(n_requests)):  # a run of that many requests: its mean's sampling error too
        # an open-loop run ends: near capacity it measures less than the steady state, whose backlog it
        # does not build (serve_latency.run_latency); there the run's latency replaces the steady state,
        # and its requests meet the others the run held rather than the steady state's
        lat_run = run_latency(inputs, k, tau, tau_sq, lat, wait, capacity, n_requests)
        bound = lat_run < lat
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            met = np.minimum(others, rate * lat_run)
            # the new run's C2 at the others its requests met (the closed-loop ratio, as at a concurrency)
            lat_pred = np.where(bound, lat_run * np.exp(noise) * c2_ratio(met, c2_new), lat_pred)
            spread = np.where(bound, tail_shape(met), shape)
            rho = rate / capacity  # rate C2, or rate L(B) / B where the batch cap binds first
            # the requests' effective sample size is at least one request, however loaded the run
            inflation = np.minimum(theory.run_mean_inflation(np.where(rho < 1.0, rho / (1.0 - rho), np.inf), is_open),
                                   np.where(np.isfinite(n_requests), n_requests, np.inf))
            rel_se = np.sqrt(np.expm1(spread**2) / n_requests * inflation)
        rel_se = np.where(np.isfinite(rel_se) & np.isfinite(lat_pred), rel_se, 0.0)
        lat_pred = lat_pred * np.exp(rel_se * rng.standard_normal(lat.shape))
    return Draws(
        latency=lat, latency_pred=lat_pred, latency_p50=quant[0.5], latency_p90=quant[0.9],
        latency_p99=quant[0.99], ttft=ttft, tpot=tpot, latency_k0=lat0,
        saturation_rps=capacity, batch_size=np.where(is_open, rate * lat, conc),
        acceptance_length=np.broadcast_to(tau, lat.shape), inputs=inputs,
    )


def _arrival_cv2(post, cfg: dict, cond: pd.DataFrame, rng) -> np.ndarray:
    """The open-loop law's ``cv2`` per condition, (sample, condition) where some condition's arrivals are
    more regular than Poisson: moved toward Poisson by the fitted ``arrival_irregularity`` (its prior's
    draws when the fit had no such runs; ``theory.effective_cv2``). Poisson for every condition under
    ``[model] arrivals = "poisson"``, as in the fit."""
    if arrivals(cfg) == "poisson" or "arrival_cv2" not in cond:
        return np.full(len(cond), theory.POISSON)
    cv2 = theory.arrival_cv2_of(cond["arrival_cv2"])
    if not (cv2 < theory.POISSON).any():
        return cv2
    if "arrival_irregularity" in post:
        irregular = post["arrival_irregularity"].values[:, None]
    else:
        spec = cfg["priors"]["arrival_irregularity"]
        n = next(iter(post.values())).shape[0]
        irregular = rng.beta(spec["alpha"], spec["beta"], size=(n, 1))
    return theory.effective_cv2(cv2, irregular)


def _configuration_factors(eff: _EffectSampler, cfg: dict, cond: pd.DataFrame, offsets: dict | None):
    """``((c1_factor, c2_factor), same for k = 0)``, each (sample, condition): how the conditions'
    configurations (and the same server without speculation) depart from the cost law, the fitted
    departure for a configuration seen in the fit, a fresh draw from its population (one per
    configuration) otherwise; 1.0 for a departure the model configuration does not have. C2's bends
    with ``offsets[trend]`` (each condition's log-load offset, then its k = 0 counterpart's, as in
    build.py; none given: 0, at the measured loads' centre)."""
    wanted = configuration_effects(cfg)
    n = len(cond)
    k0 = [configuration_level_label(v, NO_DRAFTER, h, s, 0) for v, h, s in
          zip(*(cond[c].astype(str) for c in ("verifier", "hardware", "dataset")))]
    query = {"configuration": eff.labels["configuration"] + k0, "verifier_hw": eff.labels["verifier_hw"] * 2}
    level, load = (eff(name, query["configuration"]) if name in wanted else np.zeros((1, 2 * n))
                   for name in ("config_level", "config_load"))
    for trend in LOAD_TRENDS:
        if trend in wanted and offsets is not None:
            load = load + eff(trend, query[EFFECTS[trend][0]]) * offsets[trend]
    level, load = np.exp(level), np.exp(load)
    return (level[:, :n], load[:, :n]), (level[:, n:], load[:, n:])


def _drafter_pivot(fitted_drafters: pd.DataFrame | None, drafters: list[str]) -> np.ndarray:
    """(condition,) the fitted drafters' pivots (draft positions past the first where their latent
    acceptance sits); for a drafter never fitted the mean over the fitted drafters that speculated,
    the position at which the population's latent (``mu_accept``) centres."""
    pivots = _require_drafter_table(fitted_drafters)["pivot"]
    mean = float(pivots[fitted_drafters["measured_ks"] > 0].mean())
    return np.array([float(pivots.get(d, mean)) for d in drafters])


def _require_drafter_table(fitted_drafters: pd.DataFrame | None) -> pd.DataFrame:
    if fitted_drafters is None:
        raise ValueError("a pooled decay or acceptance_pivot = 'measured' needs the fit's drafter table. Fix: "
                         "predict through LatencyModel.predict_draws, or pass fitted_drafters=FitData.drafter_table()")
    return fitted_drafters


def _accept_decay(post: dict, cfg: dict, fit_coords: dict, drafters: list[str], rng,
                  fitted_drafters: pd.DataFrame | None = None) -> np.ndarray | None:
    """(sample, condition) per-position decay of acceptance (variant ``acceptance_form = "decaying"``),
    the fitted one per drafter; for a drafter never fitted, a draw from the population the fit learned
    (pooled decay, prior ``accept_decay_spread``) or from the prior; None for constant acceptance.
    Pooled, a drafter the fit saw at one draft length only, without per-position counts that pin its
    decay, also takes a population draw (build.py, ``_accept_decay``: its runs do not identify it)."""
    if cfg.get("model", {}).get("acceptance_form", "constant") != "decaying":
        return None
    fitted = list(fit_coords.get("drafter", []))
    if "log_accept_decay_centre" not in post:
        spec = cfg["priors"]["accept_decay"]
        return _per_level(post, "accept_decay", fitted, drafters,
                          lambda n: rng.normal(spec["mu"], spec["sigma"], size=n))
    centre = post["log_accept_decay_centre"].values
    spread = (post["accept_decay_spread"].values if "accept_decay_spread" in post  # else fixed (build.py)
              else fixed_scale(cfg, "accept_decay_spread"))
    table = _require_drafter_table(fitted_drafters)
    unknown = set(table.index[~table["decay_identified"]])
    known = [d if d not in unknown else None for d in fitted]  # decay not identified: as never fitted
    return _per_level(post, "accept_decay", known, drafters,
                      lambda n: np.exp(centre + spread * rng.standard_normal(n)))


def acceptance_length(a, k, decay=None):
    """Tokens per verify step for (first-position) acceptance ``a`` at draft length ``k``.

    ``decay`` (sample, condition) of the ``acceptance_form = "decaying"`` variant, or None for constant
    per-position acceptance. ``k = 0`` gives 1.
    """
    k = np.asarray(k, float)
    if decay is None:
        return np.where(k > 0, theory.tau_constant(a, k), 1.0)
    return acceptance.tau_decaying(a, decay, k)


def acceptance_second_moment(a, k, decay=None):
    """``E[Y^2]`` (tokens^2) of the tokens per verify step, same arguments as :func:`acceptance_length`
    (it sets the iteration-boundary term of :func:`bayes_sd.theory.iterations`)."""
    k = np.asarray(k, float)
    if decay is None:
        return theory.tau_sq_constant(a, k)
    return acceptance.tau_sq_decaying(a, decay, k)


def summarise(draws: Draws, conditions: pd.DataFrame) -> xr.Dataset:
    """Posterior summaries per condition as an ``xr.Dataset`` with dim ``condition``.

    Intervals are 90% (5% and 95% quantiles). ``latency_*`` are posterior summaries of the
    mean latency; ``latency_pred_q05_s``/``latency_pred_q95_s`` also include model discrepancy
    (what a new benchmark run's mean would show); ``latency_p90_s``/``latency_p99_s`` are
    per-request percentiles (posterior mean).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        speedup = draws.latency_k0 / draws.latency
        out = {
            "latency_mean_s": draws.latency.mean(0),
            "latency_q05_s": quantile(draws.latency, 0.05),
            "latency_q50_s": quantile(draws.latency, 0.5),
            "latency_q95_s": quantile(draws.latency, 0.95),
            "latency_pred_q05_s": quantile(draws.latency_pred, 0.05),
            "latency_pred_q25_s": quantile(draws.latency_pred, 0.25),
            "latency_pred_q75_s": quantile(draws.latency_pred, 0.75),
            "latency_pred_q95_s": quantile(draws.latency_pred, 0.95),
            "latency_p50_s": quantile(draws.latency_p50, 0.5),
            "latency_p90_s": quantile(draws.latency_p90, 0.5),
            "latency_p99_s": quantile(draws.latency_p99, 0.5),
            "ttft_s": quantile(draws.ttft, 0.5),
            "tpot_s": quantile(draws.tpot, 0.5),
            "speedup_vs_k0": quantile(speedup, 0.5),
            "speedup_q05": quantile(speedup, 0.05),
            "speedup_q95": quantile(speedup, 0.95),
            "p_slower_than_k0": (draws.latency > draws.latency_k0).mean(0),
            "saturation_rps": quantile(draws.saturation_rps, 0.5),
            "saturation_q05_rps": quantile(draws.saturation_rps, 0.05),
            "saturation_q95_rps": quantile(draws.saturation_rps, 0.95),
            "p_saturated": (~np.isfinite(draws.latency)).mean(0),
            "batch_size": quantile(draws.batch_size, 0.5),
            "acceptance_length": quantile(draws.acceptance_length, 0.5),
        }
    ds = xr.Dataset({name: ("condition", np.asarray(v, float)) for name, v in out.items()})
    cond = conditions.reset_index(drop=True)
    for col in cond.columns:
        vals = cond[col]
        ds = ds.assign_coords({col: ("condition", vals.astype(object).to_numpy() if vals.dtype == object or
                                      str(vals.dtype).startswith("str") else vals.to_numpy())})
    return ds
