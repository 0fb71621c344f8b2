"""Per-server terms of the PyMC latency model that the pooled cost coefficients do not hold: an MoE
verifier's expert share, the roofline knee, the per-sequence pass cost and what a speculating step
costs whatever its draft length, each one per verifier x hardware (or per MoE verifier), and the
partially pooled positive levels they and the acceptance decay share (``pooled_log_levels``).
Called by :func:`bayes_sd.model.build.build_model` inside its ``pm.Model`` context."""

from __future__ import annotations

import logging

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayes_sd import theory
from bayes_sd.model.config import make_prior
from bayes_sd.model.fit_data import (
    DEFAULT_LEARNED_SCALES,
    KNEE_FORMS,
    MOE_FORMS,
    SPECULATION_COSTS,
    FitData,
    fixed_scale,
)

log = logging.getLogger(__name__)

__all__ = ["pooled_log_levels", "expert_share", "sequence_cost", "speculation_costs", "roofline_knee"]


def pooled_log_levels(cfg: dict, fd: FitData, effect: str, level_prior: str, dim: str, keep=1.0):
    """Log levels ``centre + spread * z[dim] * keep`` of a positive per-level quantity pooled across
    ``dim``: ``log_<effect>_centre`` under the log-scale mu and sigma of the LogNormal prior
    ``level_prior``, ``spread`` the prior ``<effect>_spread``, learned only if ``learned_scales``
    lists ``effect`` and there are enough levels (:meth:`FitData.learns_scale`), else fixed at its
    scale; ``keep`` (per level, 0 or 1) holds a level at the centre."""
    spec = cfg["priors"][level_prior]
    centre = pm.Normal(f"log_{effect}_centre", spec["mu"], spec["sigma"])
    if fd.learns_scale(effect, tuple(cfg.get("model", {}).get("learned_scales", DEFAULT_LEARNED_SCALES))):
        spread = make_prior(cfg, f"{effect}_spread")
    else:
        spread = fixed_scale(cfg, f"{effect}_spread")
    return centre + spread * pm.Normal(f"z_{effect}", 0.0, 1.0, dims=dim) * keep


def expert_share(cfg: dict, fd: FitData):
    """Per-run share of the verifier fixed cost that scales with expert coverage (0 for dense
    verifiers), or None when the form has no expert coverage or no verifier is MoE."""
    if cfg.get("model", {}).get("verifier_form", "dense") not in MOE_FORMS or not fd.coords["moe_verifier"]:
        return None
    share = make_prior(cfg, "expert_share", dims="moe_verifier")
    return share[fd.idx["run_moe"]] * fd.x["moe_on"]


def sequence_cost(cfg: dict, fd: FitData):
    """Per-run cost s1 (s) of one sequence in one pass whatever tokens it carries, or 0 unless
    ``sequence_cost = true``; one per verifier x hardware, from its prior (``sequence_cost_ms``).
    Without it the per-sequence slope of a pass is ``(k+1) v1 + k d1 + ctx``: runs without
    speculation then force ``v1`` up and runs with a long draft force it down. With the prior
    ``sequence_cost_spread`` the levels are partially pooled (see below)."""
    if not cfg.get("model", {}).get("sequence_cost", False):
        return 0.0
    if "sequence_cost_spread" not in cfg["priors"]:  # one independent s1 per verifier x hardware
        return make_prior(cfg, "sequence_cost_ms", dims="verifier_hw")[fd.idx["run_vh"]] / 1000.0
    # Partially pooled: log s1[vh] = centre + spread * z[vh], the centre under the sequence_cost_ms
    # prior. A verifier x hardware whose runs cannot separate s1 from v1 and d1 (the real B200 runs:
    # one draft length per drafter, three per-stream slopes for four costs) borrows the level that
    # the other verifiers' runs pin, instead of leaving the sampler a ridge the prior alone closes.
    # As for the other effects (_Effects), the spread stays fixed at its prior's scale unless
    # "sequence_cost" is in learned_scales and there are enough levels to learn it: learned, it was
    # a funnel (bulk ESS 260 in 2 x 3500 draws with the 7 levels of all bundled data, the fit's
    # lowest; bench/fit_speed.py --config moe_roofline), and with one level, the real runs alone, it
    # gave 4 divergences.
    log_s1 = pooled_log_levels(cfg, fd, "sequence_cost", "sequence_cost_ms", "verifier_hw")
    s1 = pm.Deterministic("sequence_cost_ms", pt.exp(log_s1), dims="verifier_hw")
    return s1[fd.idx["run_vh"]] / 1000.0


def speculation_costs(cfg: dict, fd: FitData):
    """Per-run costs (s) of turning speculation on, ``(e0, e1)``, or ``(0, 0)`` unless ``speculation_cost
    = true``: a step that speculates costs ``e0`` more and each of its sequences ``e1`` more, whatever the
    draft length (draft bookkeeping and the host's proposal loop; per-request rejection sampling; a verify
    attention kernel that pads a sequence's few query tokens to a whole tile). Without them the only
    costs of speculating grow with ``k`` (``k d0``, ``k d1``, ``(k+1) v1``), so where engines pay most of
    it at ``k = 1`` already the fit puts k = 1 too cheap and a long draft too dear. One of each per
    verifier x hardware (the engine and the verifier's kernels on that device), partially pooled on the
    log scale (``speculation_step_ms`` / ``speculation_sequence_ms`` the priors of their centres,
    ``*_spread`` their fixed spreads) as ``sequence_cost``: the runs of one verifier x hardware at
    several draft lengths, with and without speculation, separate them from the drafter's ``k d0``
    (``FitData.x["speculation_identified"]``); a level whose runs cannot (one draft length per drafter: the
    real B200 runs) is fitted all the same, informed by the population and by what its runs say about
    ``k d0 + e0`` together (held at the centre instead, it tied the centre to the B200 drafters' costs: the
    main job's tail ESS fell to 64 in one seed of two). With no identifying level at all, nothing pins the
    centre but its prior, a ridge with every ``d0`` (R-hat 1.11 on the real B200 runs alone), so the fit
    goes without them and logs why."""
    if not cfg.get("model", {}).get("speculation_cost", False):
        return 0.0, 0.0
    identified = fd.x["speculation_identified"]
    if not identified.any():
        log.info("speculation_cost: no verifier x hardware has runs without speculation and one drafter at two or "
                 "more draft lengths, so nothing tells what turning speculation on costs from the drafters' costs "
                 "per k; fitted without it (as moe_roofline_per_position)")
        return 0.0, 0.0
    out = []
    for effect in SPECULATION_COSTS:
        log_e = pooled_log_levels(cfg, fd, effect, f"{effect}_ms", "verifier_hw")
        e = pm.Deterministic(f"{effect}_ms", pt.exp(log_e), dims="verifier_hw")
        out.append(e[fd.idx["run_vh"]] / 1000.0)
    return tuple(out)


def roofline_knee(cfg: dict, fd: FitData):
    """Per-run roofline knee (tokens per verify pass) and compute share, or None unless
    ``verifier_form = "roofline"``. One of each per verifier x hardware, from their priors:
    the knee is where a pass of ``T`` tokens turns compute-bound, and past it every further
    knee's worth of tokens adds ``compute_share * v0`` to the pass (at the knee, compute time
    equals the weight-read time, the part of ``v0`` that ``compute_share`` stands for). In the
    ``moe_roofline`` form an MoE verifier's knee is ``knee_tokens * E / top_k`` tokens
    (``theory.moe_knee_scale``), so the prior on ``knee_tokens`` stays the dense one."""
    form = cfg.get("model", {}).get("verifier_form", "dense")
    if form not in KNEE_FORMS:
        return None
    knee = make_prior(cfg, "knee_tokens", dims="verifier_hw")[fd.idx["run_vh"]]
    share = make_prior(cfg, "knee_compute_share", dims="verifier_hw")
    if form == "moe_roofline":  # an MoE pass reads all experts but computes with the active ones
        knee = knee * np.where(fd.x["moe_on"] > 0, theory.moe_knee_scale(fd.x["moe_log_q"]), 1.0)
    return knee, share[fd.idx["run_vh"]]
