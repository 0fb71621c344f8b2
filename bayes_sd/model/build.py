"""Build the hierarchical PyMC latency model from :class:`FitData` and a configuration.

Structure (MODEL.md section 2), all service costs on the log scale in milliseconds::

    log theta[verifier_hw, c] = mu[c] + hardware[h, c] + verifier[v, c] + verifier_hw[vh, c]
                                                                         c in v0 v1 p0 p1 c1
    log theta[run, c]         = mu[c] + hardware[h, c] + drafter[d, c] + drafter_hw[dh, c]
                                + spec_pair[pair, c]                     c in d0 d1
    logit a[pair, dataset]    = mu_a + accept_drafter[d] + accept_dataset[s] + accept_pair[pair, dataset]
    logit a[run]              = logit a[pair, dataset] + accept_deployment[pair, dataset, hardware]

Variants (``models/*.toml``): ``drafter_predictors`` add ``beta . z[drafter]`` (size elasticities)
to the drafter costs; ``verifier_form = "moe"`` scales an MoE verifier's v0 by its expert coverage
(open loop solved by Newton inside the graph); ``acceptance_form = "decaying"`` makes ``a`` the
first-position acceptance with a per-drafter decay; ``verifier_form = "roofline"`` makes a verify
pass compute-bound past a knee in its tokens (in the likelihood an open-loop run's tokens per pass
are counted at its measured batch, rate x observed latency; prediction solves the fixed point), and
``"moe_roofline"`` combines the knee with the MoE coverage the same way; ``model_free_drafters``
fixes the per-token draft cost ``d1`` of the drafters it names (n-gram) at 0. The
run-mean likelihood's scale adds a
structural error ``sigma_c2`` of C2, amplified by ``d log L / d log C2``.

Each term is a zero-mean effect created by ``_Effects`` (which effects exist, their scales and
parameterisation follow one policy, documented there). The latency of each run comes from
:mod:`bayes_sd.theory` (the same functions the simulator and the recommender use), called
with pytensor tensors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayes_sd import theory
from bayes_sd.model.config import make_prior
from bayes_sd.model.cost_split import prefill_means, reference_tokens_per_pass, verify_means
from bayes_sd.model.fit_data import (
    COEFS,
    DEFAULT_LEARNED_SCALES,
    DRAFTER_COEFS,
    EFFECTS,
    LOAD_TRENDS,
    OPEN_LOOP_BATCHES,
    TAIL_QUANTILES,
    VERIFIER_COEFS,
    FitData,
    acceptance_pivot,
    arrivals,
    configuration_effects,
    fixed_scale,
    model_free_keep,
)
from bayes_sd.model.load_range import load_offset
from bayes_sd.model.server_costs import (
    expert_share,
    pooled_log_levels,
    roofline_knee,
    sequence_cost,
    speculation_costs,
)
from bayes_sd.theory import acceptance

__all__ = ["build_model", "z_quantile"]


def z_quantile(q: float) -> float:
    """Standard-normal quantile (numpy/scipy-free constant for the tail model)."""
    from scipy.stats import norm

    return float(norm.ppf(q))


#: lowest-level deviations, whose scale is often near zero: non-centred avoids the funnel there
#: (in the sum form; in the centred configuration HIERARCHICALLY_CENTRED below takes precedence)
ALWAYS_NON_CENTERED = frozenset({"verifier_hw", "drafter_hw", "spec_pair", "tail_pair", "config_level",
                                 "config_load", "config_load_trend", "server_load_trend", "accept_deployment"})
#: lowest levels the data pin tightly, sampled as the level's own value (hierarchical centring,
#: Gelfand, Sahu & Carlin 1995): ``logit a[pair, dataset] ~ N(mu_a + drafter + dataset, sigma)``
#: instead of ``mu_a + drafter + dataset + effect``. With the sum form, every pinned cell ties its
#: deviation to the grand mean and main effects: on the bundled data the pair-level acceptance
#: deviations had posterior correlations of 0.99 and the unconstrained posterior a condition number
#: of ~4e5, which cost nutpie ~200 draws of depth-9 trees in warm-up (bench/fit_speed.py). Centred,
#: the parent terms are a regression on well-measured values. Name -> name of the sampled level.
HIERARCHICALLY_CENTRED = {"accept_pair": "logit_acceptance", "tail_pair": "log_tail_shape_pair",
                          "verifier_hw": "log_verifier_cost", "drafter_hw": "log_drafter_cost"}
#: main effects crossed with the grand mean: zero-sum over the observed levels, so the grand
#: mean and the effects are identified separately (no additive ridge for the sampler to crawl)
ZERO_SUM = frozenset({"accept_drafter", "accept_dataset"})
#: deviations that sum to zero within their parent level (name -> the fit data's index from a level to
#: its parent): the pair deviations of the drafter costs within each drafter, so the drafter x hardware
#: level is the drafter's average over its verifiers (unconstrained, each drafter's level and its pairs'
#: deviations formed a ridge, posterior correlations down to -0.99 on the bundled data, that set the
#: fit's lowest ESS); the deployments' acceptance within their pair x dataset, which is then their
#: average (a pair x dataset served on one hardware has no deviation). Rescaled so each deviation keeps
#: its prior variance.
ZERO_SUM_WITHIN = {"spec_pair": "spec_pair_drafter", "accept_deployment": "deployment_pair_dataset"}


class _Effects:
    """Creates the model's zero-mean effects (table ``EFFECTS``) with one consistent policy.

    - an effect the data cannot identify (``FitData.uses``) is 0;
    - a group with fewer than ``MIN_LEVELS_FOR_SCALE`` levels uses the prior's scale as a
      fixed scale: a handful of levels say next to nothing about a population scale, and a
      learned scale there is a funnel the sampler cannot cross;
    - centred (``effect_<name> ~ N(0, sigma)``) when the configuration says so, except the
      lowest-level deviations, which are non-centred (``sigma * z_<name>``);
    - the well-measured lowest levels (``HIERARCHICALLY_CENTRED``) are, in the centred
      configuration, parameters in their own right: ``level ~ N(parent, sigma)`` (see ``level``);
    - main effects crossed with the grand mean are zero-sum (``ZERO_SUM``), and pair deviations
      of the drafter costs are zero-sum within each drafter, deployments' acceptance within their pair x
      dataset (``ZERO_SUM_WITHIN``);
    - the effect is always stored as ``effect_<name>`` and a learned scale as its prior's name.
    """

    def __init__(self, cfg: dict, fd: FitData):
        self.cfg, self.fd = cfg, fd
        self.centered = cfg.get("model", {}).get("parameterization", "centered") == "centered"
        self.learned = tuple(cfg.get("model", {}).get("learned_scales", DEFAULT_LEARNED_SCALES))
        self._scales: dict[str, object] = {}

    def _scale(self, prior: str, dims: str | None):
        if prior not in self._scales:
            self._scales[prior] = make_prior(self.cfg, prior, dims=dims)
        return self._scales[prior]

    def level(self, name: str, parent, shape: tuple[int, ...]):
        """``parent + effect_<name>``: the value of each level of ``name``, broadcast to ``shape``.

        In the centred configuration a ``HIERARCHICALLY_CENTRED`` effect is sampled as the level's
        value, ``N(parent, sigma)``, and ``effect_<name>`` is stored as the difference; otherwise
        this is ``parent + self(name)``. Both define the same prior.
        """
        parent = parent + pt.zeros(shape)
        if not (self.centered and name in HIERARCHICALLY_CENTRED and self.fd.uses(name)):
            return parent + self(name)
        sigma, dims = self._scale_and_dims(name)
        value = pm.Normal(HIERARCHICALLY_CENTRED[name], mu=parent, sigma=sigma, dims=dims)
        pm.Deterministic(f"effect_{name}", value - parent, dims=dims)
        return value

    def _scale_and_dims(self, name: str):
        group, prior, prior_dims, coefs = EFFECTS[name]
        if self.fd.learns_scale(name, self.learned):
            sigma = self._scale(prior, prior_dims)
            if prior_dims == "coef" and coefs is not None and len(coefs) < len(COEFS):
                sigma = sigma[[COEFS.index(c) for c in coefs]]
        else:
            sigma = fixed_scale(self.cfg, prior)
        dims = (group,) if coefs is None else (group, "vcoef" if coefs == VERIFIER_COEFS else
                                               "dcoef" if coefs == DRAFTER_COEFS else "coef")
        return sigma, dims

    def __call__(self, name: str):
        if not self.fd.uses(name):
            return 0.0
        sigma, dims = self._scale_and_dims(name)
        if name in ZERO_SUM:
            # ZeroSumNormal sums to zero over its LAST axis: put the levels last, store transposed
            if len(dims) == 1:
                return pm.ZeroSumNormal(f"effect_{name}", sigma=sigma, dims=dims)
            sig = sigma[:, None] if not isinstance(sigma, float) else sigma
            raw = pm.ZeroSumNormal(f"zs_{name}", sigma=sig, dims=dims[::-1])
            return pm.Deterministic(f"effect_{name}", raw.T, dims=dims)
        if self.centered and name not in ALWAYS_NON_CENTERED:
            return pm.Normal(f"effect_{name}", 0.0, sigma, dims=dims)
        z = pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)
        if name in ZERO_SUM_WITHIN:
            z = pt.as_tensor(within_group_centring(self.fd.idx[ZERO_SUM_WITHIN[name]])) @ z
        return pm.Deterministic(f"effect_{name}", sigma * z, dims=dims)


def within_group_centring(group: np.ndarray) -> np.ndarray:
    """Matrix ``M`` with ``M @ z`` zero-sum within each group and, for iid standard-normal ``z``,
    unit marginal variance: ``(z - group mean) * sqrt(n / (n - 1))``; a group of one gets 0."""
    group = np.asarray(group)
    same = (group[:, None] == group[None, :]).astype(float)
    n = same.sum(axis=1)
    scale = np.sqrt(np.where(n > 1, n / np.maximum(n - 1.0, 1.0), 0.0))
    return (np.eye(len(group)) - same / n[:, None]) * scale[:, None]


def _at(value, index):
    """``value``'s entries at ``index`` where it is a vector (numpy or PyTensor: an effect's levels, a per-run
    quantity); a scalar (0 for a dropped effect), or any value where ``index`` is None, as it is."""
    return value if index is None or np.ndim(value) == 0 else value[index]


def _scatter(n: int, rows: np.ndarray, values, fill: float):
    """A length-``n`` vector holding ``values`` at ``rows`` and ``fill`` elsewhere."""
    return pt.set_subtensor(pt.as_tensor(np.full(n, fill, dtype=float))[rows], values)  # float64, as the model is


def _level_log_costs(eff: _Effects, fd: FitData, mu, eff_hw, *, coefs, main: str, level: str, coef_dim: str,
                     design=0.0, keep=1.0):
    """log cost (ms) per ``level`` (verifier_hw or drafter_hw) for ``coefs``.

    ``mu[c] + hardware[h, c] + main[m, c] + design[m, c] + level[l, c]``, stored as
    ``<main>_cost_ms`` (times ``keep``, 0 for a cost fixed at zero); ``design`` is the (main, coef)
    contribution of size predictors.
    """
    cols = [COEFS.index(c) for c in coefs]
    hw = _at(eff_hw, fd.idx[f"{level}_hardware"])
    hw = hw if isinstance(hw, float) else hw[:, cols]
    shape = (len(fd.coords[level]), len(cols))
    main_eff = _at(eff(main), fd.idx[f"{level}_{main}"]) + _at(design, fd.idx[f"{level}_{main}"])
    log_c = eff.level(level, mu[cols] + main_eff + hw, shape)
    cost = pt.exp(log_c)
    pm.Deterministic(f"{main}_cost_ms", cost if np.all(keep == 1.0) else cost * keep, dims=(level, coef_dim))
    return log_c


def _acceptance_logit(eff: _Effects, fd: FitData, decay=None):
    """Per-run log-odds of (first-position) acceptance. With a per-position ``decay`` (drafter) and
    ``acceptance_pivot = "measured"``, the pooled latent ``logit_acceptance`` is the log-odds at
    position ``1 + pivot``, the drafter's pivot the position its runs are most informative about
    (:func:`bayes_sd.model.fit_data.measured_pivot`): runs at one draft length pin the acceptance
    of a middle position, not of the first, so a latent there is nearly independent of the decay,
    where the first position's sits on a curved ridge with it. ``acceptance`` (pair_dataset)
    is the first position's either way."""
    mu_a = make_prior(eff.cfg, "mu_accept")
    eff_d = eff("accept_drafter")
    eff_s = eff("accept_dataset")
    n_pd = len(fd.coords["pair_dataset"])
    logit_a = eff.level("accept_pair", mu_a + _at(eff_d, fd.idx["pd_drafter"]) + _at(eff_s, fd.idx["pd_dataset"]),
                        (n_pd,))
    if decay is not None and acceptance_pivot(eff.cfg) == "measured":
        logit_a = logit_a + fd.x["drafter_pivot"][fd.idx["pd_drafter"]] * decay[fd.idx["pd_drafter"]]
    pm.Deterministic("acceptance", pm.math.sigmoid(logit_a), dims="pair_dataset")
    return logit_a[fd.idx["run_pd"]] + _at(eff("accept_deployment"), fd.idx["run_deployment"])


def build_model(fd: FitData, cfg: dict, *, observed_as_data: bool = False) -> pm.Model:
    """The PyMC model of run-level latency (and TTFT, TPOT, acceptance, tails) for ``fd``.

    ``observed_as_data``: hold each observed array in a ``pm.Data`` container named
    ``<variable>_data`` (e.g. ``latency_obs_data``), so a compiled model can be refitted to other
    observations of the same runs without recompiling (simulation-based calibration does).
    """
    opts = cfg.get("model", {})
    nu = float(opts.get("student_t_nu", 4.0))
    soft = float(opts.get("saturation_softness", 0.01))
    coords = dict(fd.coords)
    for name, (rows, _) in fd.obs.items():
        coords[f"{name}_run"] = [fd.coords["run"][r] for r in rows]
    x = fd.x

    def observed(name: str, values: np.ndarray):
        return pm.Data(f"{name}_data", values, dims=f"{name[:-4]}_run") if observed_as_data else values

    with pm.Model(coords=coords) as model:
        eff = _Effects(cfg, fd)
        split = _split_cost_means(cfg, fd)
        mu = pt.stack([split[c] if c in split else make_prior(cfg, f"mu_{c}") for c in COEFS])
        pm.Deterministic("mu_log_cost", mu, dims="coef")
        eff_hw = eff("hardware")
        log_v = _level_log_costs(eff, fd, mu, eff_hw, coefs=VERIFIER_COEFS, main="verifier", level="verifier_hw",
                                 coef_dim="vcoef")
        v = pt.exp(log_v[fd.idx["run_vh"]]) / 1000.0  # (run, vcoef), seconds
        k = pt.as_tensor(x["k"])
        if fd.has_drafters:
            keep = _model_free_level_keep(cfg, fd)  # 0 at d1 of model-free drafters
            log_dh = _level_log_costs(eff, fd, mu, eff_hw, coefs=DRAFTER_COEFS, main="drafter", level="drafter_hw",
                                      coef_dim="dcoef", design=_drafter_design(cfg, fd), keep=keep)
            log_d = log_dh[fd.idx["run_dh"]] + _at(eff("spec_pair"), fd.idx["run_spec_pair"])
            d = pt.exp(log_d) / 1000.0
            if not keep.all():
                d = d * keep[fd.idx["run_dh"]]
            decay = _accept_decay(cfg, fd) if opts.get("acceptance_form", "constant") == "decaying" else None
            tau, tau_sq = _tau(fd, _acceptance_logit(eff, fd, decay), decay, x["k"])
            d0, d1 = d[:, 0], d[:, 1]
        else:
            tau, tau_sq, d0, d1 = pt.ones(fd.n_runs), None, pt.zeros(fd.n_runs), pt.zeros(fd.n_runs)
        # per decode step: a proposer without weights drafts only at the steps where it finds a match
        k_step, tau_step, tau_sq_step = theory.per_decode_step(k, tau, tau_sq, x["draft_share"])
        e0, e1 = speculation_costs(cfg, fd)
        costs = theory.ServiceCosts(**{c: v[:, i] for i, c in enumerate(VERIFIER_COEFS)}, d0=d0, d1=d1,
                                    s1=sequence_cost(cfg, fd), e0=e0, e1=e1)
        P, D = x["prompt_len"], x["output_len"]
        dem = theory.demand(costs, k_step, tau_step, P, D, xp=pt, tau_sq=tau_sq_step)
        c1_factor, c2_factor = _configuration_factors(eff, fd)
        c1, c2 = dem.c1 * c1_factor, dem.c2 * c2_factor
        capped = bool(x["has_cap"].any())
        has_cap, slots = x["has_cap"] > 0, x["slots"]
        share = expert_share(cfg, fd)
        knee = roofline_knee(cfg, fd)

        def in_service(others_in_flight, rows=None):  # a pass carries at most the batch cap's sequences
            if not capped:
                return others_in_flight
            cap, n_slots = _at(has_cap, rows), _at(slots, rows)
            return pt.where(cap, pt.minimum(others_in_flight, n_slots - 1.0), others_in_flight)

        if knee is not None:  # past the knee a verify pass is compute-bound and grows with its tokens
            knee_tokens, compute_share = knee
            n_v0 = theory.iterations(D, tau_step, tau_sq_step) * costs.v0
        elif share is not None:  # MoE verifiers: the verify pass reads only the experts its tokens touch
            saving = theory.iterations(D, tau_step, tau_sq_step) * costs.v0 * share

        def load_extra(others_in_flight, rows=None):
            """s per request the knee adds to (and MoE coverage saves from) the dense C1 + others C2, for the
            runs ``rows`` (all where None; ``others_in_flight`` is theirs)."""
            log_q, k_rows = _at(x["moe_log_q"], rows), _at(k_step, rows)
            if knee is not None:
                mult = theory.verify_cost_multiplier(_at(0.0 if share is None else share, rows), log_q,
                                                     _at(compute_share, rows), _at(knee_tokens, rows), k_rows,
                                                     in_service(others_in_flight, rows), xp=pt)
                return _at(n_v0, rows) * (mult - 1.0)
            if share is not None:
                return -_at(saving, rows) * theory.moe_untouched(log_q, k_rows, others_in_flight, xp=pt)
            return 0.0

        # arrivals more regular than Poisson meet fewer others (theory.arrivals): two linear pieces
        cv2 = x["arrival_cv2"] if arrivals(cfg) == "as_recorded" else np.ones(fd.n_runs)
        regular = bool((cv2 != theory.POISSON).any())
        if (cv2 < theory.POISSON).any():  # evenly spaced sends still overlap: how much, learned
            cv2 = theory.effective_cv2(cv2, make_prior(cfg, "arrival_irregularity"), xp=pt)

        # the open-loop law is solved for the open-loop runs only, the closed-loop one for the closed-loop runs
        # (each is a subset of the runs' vectors, scattered back): the knee's fixed-point steps are the
        # gradient's costliest part, and a branch a run does not take cannot poison its gradient
        open_rows = np.flatnonzero(x["is_open"] > 0)
        closed_rows = np.flatnonzero(x["is_open"] == 0)
        c1_o, c2_o, rate_o, cv2_o = (_at(v, open_rows) for v in (c1, c2, x["rate"], cv2))

        def open_piece(rate, shift):
            """Open-loop latency (s) and load share d log L / d log C2 of the open-loop runs where a request
            meets rate L - shift others. L = (C1 - shift C2) / (1 - rate C2), with a smooth positive floor on
            the denominator so the log-density stays finite (and differentiable) if a draw crosses saturation."""
            headroom = soft * pt.softplus((1.0 - rate * c2_o) / soft)
            lat = (c1_o - shift * c2_o) / headroom
            if knee is not None:
                measured = theory.others_open(rate_o, _observed_or(fd, "latency", lat, open_rows), cv2_o, xp=pt)
                lat = _knee_open_latency(opts, c1_o - shift * c2_o, headroom, lat, lambda at: rate * at - shift,
                                         measured, lambda others: load_extra(others, open_rows))
            elif share is not None:
                lat = theory.latency_moe_open_newton(c1_o, c2_o, _at(saving, open_rows),
                                                     _at(x["moe_log_q"], open_rows), _at(k_step, open_rows),
                                                     rate, xp=pt, start=lat, shift=shift)
            return lat, rate * c2_o / headroom

        if not open_rows.size:
            lat_o, share_o = 1.0, 0.0
        elif regular:
            (rate_a, shift_a), (rate_b, shift_b) = theory.open_loop_pieces(rate_o, cv2_o)
            lat_a, share_a = open_piece(rate_a, shift_a)
            lat_b, share_b = open_piece(rate_b, shift_b)
            lat_o = theory.combine_pieces(lat_a, lat_b, cv2_o, xp=pt)
            share_o = pt.where(pt.eq(lat_o, lat_a), share_a, share_b)
        else:
            lat_o, share_o = open_piece(rate_o, 0.0)
        lat_open = _scatter(fd.n_runs, open_rows, lat_o, 1.0)
        open_share = _scatter(fd.n_runs, open_rows, share_o, 0.0)

        def closed_at(streams, rows=None):
            """Closed-loop latency (s) of the runs ``rows`` (all where None) at ``streams`` (theirs)."""
            return (theory.latency_at_load(_at(c1, rows), _at(c2, rows), streams - 1.0)
                    + load_extra(streams - 1.0, rows))

        capacity = theory.saturation_rate(c2)
        if capped:  # where a run's batch cap is known, past it requests wait for a slot (theory.batch_cap)
            full = closed_at(slots) + theory.preemption_recompute(slots, costs.p1, x["recompute"])  # a full batch
            streams = np.where(has_cap, np.minimum(x["concurrency"], slots), x["concurrency"])
            lat_closed = _scatter(fd.n_runs, closed_rows, closed_at(streams[closed_rows], closed_rows), 1.0)
            wait = pt.where(x["is_open"] > 0,
                            theory.queue_wait(x["rate"], slots, full, has_cap, xp=pt, softness=soft),
                            theory.closed_wait(x["concurrency"], slots, full, has_cap, xp=pt))
            capacity = pt.where(has_cap, pt.minimum(capacity, theory.cap_capacity(slots, full)), capacity)
        else:
            lat_closed = _scatter(fd.n_runs, closed_rows, closed_at(x["concurrency"][closed_rows], closed_rows), 1.0)
            wait = 0.0
        service = pt.where(x["is_open"] > 0, lat_open, lat_closed)
        latency = service + wait
        pm.Deterministic("latency_s", latency, dims="run")
        met = theory.others_open(x["rate"], service, cv2, xp=pt) if regular else x["rate"] * service
        others = in_service(pt.where(x["is_open"] > 0, met, x["concurrency"] - 1.0))
        pm.Deterministic("saturation_rps", capacity, dims="run")
        if share is not None:  # TTFT sees the effective (partly covered) verifier fixed cost
            v0_eff = costs.v0 * (1.0 - share * theory.moe_untouched(x["moe_log_q"], k_step, others, xp=pt))
            costs = dataclasses.replace(costs, v0=v0_eff)
        if knee is not None:  # so does the step a new request's prefill rides
            costs = dataclasses.replace(
                costs, v0=costs.v0 * (1.0 + compute_share * theory.knee_excess(others, k_step, knee_tokens, xp=pt)))

        if "saturated" in fd.obs:  # censored runs: their offered rate exceeded the capacity
            rows, vals = fd.obs["saturated"]
            width = float(opts.get("saturation_width", 0.05))
            logit = (np.log(x["sat_rate"][rows]) - pt.log(capacity[rows])) / width  # log(rate / capacity) / width
            pm.Bernoulli("saturated_obs", logit_p=logit, observed=observed("saturated_obs", vals.astype("int64")),
                         dims="saturated_run")
        # d log L / d log C2: the share of latency that load adds (open loop rho / (1 - rho))
        load_share = pt.where(x["is_open"] > 0, open_share, (x["concurrency"] - 1.0) * c2 / latency)
        shape = _tail_shape(eff, fd, others)
        if "latency" in fd.obs:
            rows, vals = fd.obs["latency"]
            s_lat = make_prior(cfg, "sigma_latency")
            # a run mean's relative standard error: from its own spread, else from the model's per-request
            # lognormal shape (CV^2 = exp(s^2) - 1), never zero
            rel_se_sq = pt.where(x["has_spread"] > 0, x["latency_rel_se"] ** 2, pt.expm1(shape**2) / x["n_requests"])
            var = s_lat**2 + rel_se_sq[rows]
            if "sigma_c2" in cfg["priors"]:  # structural error of C2, amplified toward saturation
                var = var + (make_prior(cfg, "sigma_c2") * load_share[rows]) ** 2
            scale = pt.sqrt(var)
            pm.StudentT("latency_obs", nu=nu, mu=pt.log(latency[rows]), sigma=scale,
                        observed=observed("latency_obs", np.log(vals)), dims="latency_run")
        ttft = theory.ttft(costs, k_step, tau_step, P, D, others, xp=pt, tau_sq=tau_sq_step,
                           p_busy=theory.busy_probability(others, x["is_open"] > 0, xp=pt)) + wait
        if "ttft" in fd.obs:
            rows, vals = fd.obs["ttft"]
            s_ttft = make_prior(cfg, "sigma_ttft")
            if "sigma_ttft_load" in cfg["priors"]:  # admission queueing the closed form leaves out grows with load
                s_ttft = pt.sqrt(s_ttft**2 + (make_prior(cfg, "sigma_ttft_load") * load_share[rows]) ** 2)
            pm.StudentT("ttft_obs", nu=nu, mu=pt.log(ttft[rows]), sigma=s_ttft,
                        observed=observed("ttft_obs", np.log(vals)), dims="ttft_run")
        if "prefill" in fd.obs:  # the engine's own timing of prompt processing (ms per prompt token) is p1,
            rows, vals = fd.obs["prefill"]  # and more under load, when a prompt's passes carry others' tokens
            log_p1 = log_v[fd.idx["run_vh"], VERIFIER_COEFS.index("p1")]
            pm.StudentT("prefill_obs", nu=nu, mu=log_p1[rows],
                        sigma=make_prior(cfg, "sigma_prefill_time") * (1.0 + load_share[rows]),
                        observed=observed("prefill_obs", np.log(vals)), dims="prefill_run")
        if "tpot" in fd.obs:
            rows, vals = fd.obs["tpot"]
            tp = theory.tpot(latency, ttft, D)
            pm.StudentT("tpot_obs", nu=nu, mu=pt.log(pt.maximum(tp[rows], 1e-9)),
                        sigma=make_prior(cfg, "sigma_tpot"), observed=observed("tpot_obs", np.log(vals)),
                        dims="tpot_run")
        if "tau" in fd.obs and fd.has_drafters:
            rows, vals = fd.obs["tau"]
            s_tau = make_prior(cfg, "sigma_tau_obs")
            sd = pt.sqrt((s_tau * tau[rows]) ** 2 + x["tau_se"][rows] ** 2)  # scatter and the counts' sampling error
            pm.Normal("tau_obs", mu=tau[rows], sigma=sd, observed=observed("tau_obs", vals), dims="tau_run")
            if "decay" in fd.obs and decay is not None:
                _decay_obs(cfg, fd, decay, observed)
        _tails(eff, fd, shape, observed)
    return model


def _split_cost_means(cfg: dict, fd: FitData) -> dict:
    """The cost means sampled along their ridge (:mod:`bayes_sd.model.cost_split`), by coefficient name."""
    x, levels = fd.x, len(fd.coords["verifier_hw"])
    latency = np.full(fd.n_runs, np.nan)
    if "latency" in fd.obs:
        rows, vals = fd.obs["latency"]
        latency[rows] = vals
    tokens = reference_tokens_per_pass(x["k"], x["is_open"], x["rate"], x["concurrency"], latency)
    split = dict(zip(("p0", "p1"), prefill_means(cfg, x["prompt_len"], levels) or ()))
    split.update(zip(("v0", "v1"), verify_means(cfg, levels, tokens) or ()))
    return split


def _configuration_factors(eff: _Effects, fd: FitData):
    """``(exp(config_level), exp(config_load + trend * offset))`` per run: how each
    configuration's load-independent demand C1 and per-request load cost C2 depart from the cost law,
    shared by its runs at every load, and how C2's departure bends with the run's log-load offset from
    the configuration's (``config_load_trend``) or its server's (``server_load_trend``) measured loads
    (``load_range.load_offset``); 1 for a departure the model configuration's ``configuration_effects``
    does not list."""
    wanted = configuration_effects(eff.cfg)
    idx = fd.idx["run_configuration"]
    level, load = (pt.exp(_at(eff(name), idx)) if name in wanted else 1.0 for name in ("config_level", "config_load"))
    for trend, by in LOAD_TRENDS.items():
        if trend in wanted and fd.uses(trend):
            index = idx if by == "configuration" else fd.idx["run_vh"]
            load = load * pt.exp(_at(eff(trend), index) * load_offset(fd.runs, fd.runs, by))
    return level, load


def _tau(fd: FitData, logit_a, decay, k: np.ndarray):
    """Acceptance length per run and its second moment ``(tau, E[Y^2])``: constant per-position
    acceptance with log-odds ``logit_a`` (``decay`` None), or (``acceptance_form = "decaying"``)
    first-position log-odds ``logit_a`` falling by ``decay[drafter]`` per position (one decay per
    drafter: the real EAGLE-1 and EAGLE-3 decays differ threefold)."""
    if decay is not None:
        run_drafter = fd.idx["drafter_hw_drafter"][fd.idx["run_dh"]]
        return acceptance.tau_moments_decaying(logit_a, decay[run_drafter], k, xp=pt)
    a = pm.math.sigmoid(logit_a)
    return theory.tau_constant(a, k, xp=pt), theory.tau_sq_constant(a, k, xp=pt)


def _decay_obs(cfg: dict, fd: FitData, decay, observed) -> None:
    """Per-position acceptance (runs at ``k >= 2`` that carry it), as each run's slope of the
    conditional acceptance's log-odds per position (:func:`bayes_sd.model.fit_data.observed_decay`):
    ``-decay[drafter]`` with the counts' standard error and ``sigma_decay_obs``, how far a run's slope
    strays from its drafter's (the workload, the logit-linear form's misfit). The slope says nothing
    of the level, which the run's acceptance length gives, so the two enter side by side."""
    rows, vals = fd.obs["decay"]
    run_drafter = fd.idx["drafter_hw_drafter"][fd.idx["run_dh"]][rows]
    sd = pt.sqrt(make_prior(cfg, "sigma_decay_obs") ** 2 + fd.x["decay_se"][rows] ** 2)
    pm.Normal("decay_obs", mu=-decay[run_drafter], sigma=sd, observed=observed("decay_obs", vals), dims="decay_run")


def _accept_decay(cfg: dict, fd: FitData):
    """Per-drafter log-odds drop of acceptance per draft position (``accept_decay``), independent
    under its prior, or, with the prior ``accept_decay_spread``, partially pooled on the log scale:
    ``decay[drafter] = exp(centre + spread * z[drafter])`` with ``exp(centre)`` under the (LogNormal)
    ``accept_decay`` prior. The tokens per step at one draft length cannot tell a high first-position
    acceptance that decays fast from a low one that decays slowly; pooled, a drafter measured at one
    k takes the decay (and its spread) of the drafters measured at several, so its predictions at
    other k widen by what the population does not know. Positive: every published per-position
    curve falls with position, and a decay free to go negative gave divergences where a one-k
    drafter's draws reached rising acceptance. The spread stays fixed at its prior's scale unless
    ``learned_scales`` lists ``accept_decay`` and enough drafters are fitted (as ``sequence_cost``)."""
    if "accept_decay_spread" not in cfg["priors"]:
        return make_prior(cfg, "accept_decay", dims="drafter")
    # A drafter measured at one draft length without per-position counts that pin its decay
    # (FitData.drafter_table, decay_identified) is fitted at the population's centre: with its
    # latent at the pivot its runs are flat in its decay to first order, so its posterior decay is
    # the population's, which predict.py draws afresh; sampled here, it was a curved ridge with the
    # latent that gave 5-16 divergences on all bundled data (models/moe_roofline_per_position.toml).
    identified = fd.drafter_table()["decay_identified"].to_numpy(float)
    log_decay = pooled_log_levels(cfg, fd, "accept_decay", "accept_decay", "drafter", keep=identified)
    return pm.Deterministic("accept_decay", pt.exp(log_decay), dims="drafter")


def _model_free_level_keep(cfg: dict, fd: FitData) -> np.ndarray:
    """(drafter_hw, dcoef) 1.0, with 0.0 at d1 of the model-free drafters (``model_free_keep``)."""
    keep = np.ones((len(fd.coords["drafter_hw"]), len(DRAFTER_COEFS)))
    drafters = np.asarray(fd.coords["drafter"], dtype=object)[fd.idx["drafter_hw_drafter"]]
    keep[:, DRAFTER_COEFS.index("d1")] = model_free_keep(cfg, drafters)
    return keep


def _drafter_design(cfg: dict, fd: FitData):
    """(drafter, dcoef) log-cost contribution of drafter size predictors, or 0 when none are configured.

    ``beta_drafter_design[dcoef, predictor]`` are elasticities: d log(cost) / d log(size).
    """
    names = fd.coords["drafter_predictor"]
    if not names:
        return 0.0
    beta = make_prior(cfg, "beta_drafter_design", dims=("dcoef", "drafter_predictor"))
    return pt.as_tensor(fd.x["drafter_z"]) @ beta.T


def _knee_open_latency(opts: dict, c1, headroom, dense, others_at, measured_others, verify_extra):
    """Open-loop latency (s) with a roofline knee: ``L = (C1 + extra(others_at(L))) / headroom``, ``others_at(L)``
    the others a request meets (``rate L`` for Poisson arrivals; one piece of ``theory.arrivals`` else).

    The exact fixed point (``serve_latency.latency_at``) has no root where the knee saturates the server, a
    cliff in the log density that a draw near a high-load run falls off (570 divergences in
    2 x (300 tune + 300) draws). ``open_loop_batch`` says how the pass's tokens are counted instead:

    - ``"iterated"``: a fixed number (``open_loop_iterations``, default 4) of fixed-point steps from the
      dense latency ``dense``: smooth, finite where no root exists (the steps grow instead), and a
      function of the parameters alone, so the model is generative (simulation-based calibration and
      PSIS-LOO are valid for it);
    - ``"measured"``: at the run's measured batch, ``measured_others``, the others its observed mean latency
      meets (Little's law): explicit and smooth, but the observed latency then sits inside its own mean, so
      the likelihood is not a generative model of it.
    """
    if opts.get("open_loop_batch", OPEN_LOOP_BATCHES[0]) == "measured":
        return (c1 + verify_extra(measured_others)) / headroom
    lat = dense
    for _ in range(int(opts.get("open_loop_iterations", 4))):
        lat = (c1 + verify_extra(others_at(lat))) / headroom
    return lat


def _observed_or(fd: FitData, name: str, fallback, rows: np.ndarray):
    """Per run of ``rows`` (sorted run indices), observed ``name`` (run means, seconds) where measured and
    ``fallback`` (theirs) elsewhere."""
    if name not in fd.obs:
        return fallback
    at, vals = fd.obs[name]
    among = np.isin(at, rows)  # the observed runs among ``rows``, as positions in it
    at, vals = np.searchsorted(rows, at[among]), np.asarray(vals, float)[among]
    if not len(at):
        return fallback
    return pt.set_subtensor(fallback[at], pt.as_tensor(vals))


def _tail_shape(eff: _Effects, fd: FitData, others):
    """Per-request latency ~ lognormal around the run mean with shape s (pooled by pair, load-dependent)."""
    cfg = eff.cfg
    mu_t = make_prior(cfg, "mu_tail")
    slope = make_prior(cfg, "tail_load_slope")
    log_s_pair = eff.level("tail_pair", mu_t, (len(fd.coords["pair"]),))
    log_s = log_s_pair[fd.idx["run_pair"]] + slope * pt.log1p(pt.maximum(others, 0.0))
    return pm.Deterministic("tail_shape", pt.exp(log_s), dims="run")


def _tails(eff: _Effects, fd: FitData, shape, observed):
    """The runs' observed tails (CV, p50/p90/p99 over the mean) given the per-run lognormal ``shape``."""
    cfg = eff.cfg
    tail_names = [n for n in ("tail_cv", *TAIL_QUANTILES) if n in fd.obs]
    if not tail_names:
        return
    s_obs = make_prior(cfg, "sigma_tail_obs")
    for name in tail_names:
        rows, vals = fd.obs[name]
        s = shape[rows]
        if name == "tail_cv":
            mu = 0.5 * pt.log(pt.expm1(s**2))
        else:
            mu = -0.5 * s**2 + z_quantile(TAIL_QUANTILES[name]) * s
        pm.Normal(f"{name}_obs", mu=mu, sigma=s_obs, observed=observed(f"{name}_obs", np.log(vals)),
                  dims=f"{name}_run")
