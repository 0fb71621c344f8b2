"""Closed-form latency model of speculative decoding under load (MODEL.md section 1).

Units throughout: times in seconds (s), rates in requests per second (requests/s),
lengths in tokens, throughput in tokens per second.

One implementation of the math serves numpy (simulator, recommender, tests) and the
PyMC model: the functions that take ``xp`` use only arithmetic operators and functions
of ``xp`` (default :mod:`numpy`; the model passes :mod:`pytensor.tensor`), and never
branch in Python on array values. Divisions guarded by ``xp.where`` use a safe
denominator in the unused branch so that pytensor gradients stay finite.

Symbols: ``a`` per-position acceptance probability, ``k`` draft length (0 = no
speculation), ``tau`` tokens per verify iteration (acceptance length, counts the bonus
token), ``P`` prompt length, ``D`` output length, ``N`` iterations per request,
``C1`` load-independent demand (s), ``C2`` demand added per other in-flight request (s).

Modules: :mod:`.dense` (service costs, acceptance moments, demand, open- and closed-loop
latency, TTFT and TPOT, the batch-1 baselines of the papers), :mod:`.batch_cap` (a
server's cap on the requests in service: the wait for a slot, the capped capacity, the batch a KV cache
holds and what its preemptions cost), :mod:`.finite_run` (what a
run of a given number of requests measures near and past capacity), :mod:`.arrivals` (how
many others an open-loop request meets when arrivals are more regular than Poisson), :mod:`.verify_pass` (verify
passes that are not flat in their tokens: MoE expert coverage and the roofline knee, and the
speedup that dispatches between the two) and :mod:`.acceptance` (per-position acceptance that
decays with draft position). Import from ``bayes_sd.theory``: the names below are its public API.
"""

from __future__ import annotations

from .acceptance import (
    decay_from_positions,
    expit,
    implied_a1,
    logit,
    per_position_from_sweep,
    position_acceptance,
    survival,
    tau_decaying,
    tau_sq_decaying,
)
from .arrivals import (
    POISSON,
    arrival_cv2_of,
    combine_pieces,
    effective_cv2,
    latency_open_arrivals,
    open_loop_pieces,
    others_open,
)
from .batch_cap import cap_capacity, closed_wait, kv_tokens_held, preemption_recompute, queue_wait, utilisation_at_cap
from .dense import (
    COEFS,
    DRAFTER_COEFS,
    VERIFIER_COEFS,
    Demand,
    ServiceCosts,
    busy_probability,
    demand,
    implied_acceptance,
    in_flight,
    iterations,
    latency_at_load,
    latency_closed,
    latency_open,
    leviathan_speedup,
    per_decode_step,
    run_mean_inflation,
    saturation_rate,
    step_time,
    tau_constant,
    tau_per_position,
    tau_sq_constant,
    tau_sq_per_position,
    tpot,
    ttft,
    yan_throughput,
)
from .finite_run import RUN_GRID, finite_run_latency, fluctuation_wait, fluid_run_latency
from .verify_pass import (
    KNEE_SOFTNESS,
    expert_coverage,
    knee_excess,
    latency_knee_closed,
    latency_knee_open,
    latency_moe_at_load,
    latency_moe_closed,
    latency_moe_knee_open,
    latency_moe_open,
    latency_moe_open_newton,
    moe_knee_scale,
    moe_untouched,
    saturation_rate_at,
    speedup,
    verify_cost_multiplier,
)

__all__ = [
    "COEFS",
    "VERIFIER_COEFS",
    "DRAFTER_COEFS",
    "ServiceCosts",
    "Demand",
    "tau_constant",
    "tau_per_position",
    "implied_acceptance",
    "tau_sq_constant",
    "tau_sq_per_position",
    "iterations",
    "per_decode_step",
    "demand",
    "latency_at_load",
    "latency_closed",
    "latency_open",
    "POISSON",
    "arrival_cv2_of",
    "combine_pieces",
    "latency_open_arrivals",
    "effective_cv2",
    "open_loop_pieces",
    "others_open",
    "saturation_rate",
    "cap_capacity",
    "queue_wait",
    "closed_wait",
    "utilisation_at_cap",
    "kv_tokens_held",
    "preemption_recompute",
    "in_flight",
    "RUN_GRID",
    "fluid_run_latency",
    "fluctuation_wait",
    "finite_run_latency",
    "run_mean_inflation",
    "step_time",
    "ttft",
    "busy_probability",
    "tpot",
    "leviathan_speedup",
    "yan_throughput",
    "saturation_rate_at",
    "expert_coverage",
    "latency_moe_at_load",
    "latency_moe_open",
    "latency_moe_closed",
    "moe_untouched",
    "latency_moe_open_newton",
    "KNEE_SOFTNESS",
    "knee_excess",
    "latency_knee_open",
    "latency_knee_closed",
    "verify_cost_multiplier",
    "moe_knee_scale",
    "latency_moe_knee_open",
    "speedup",
    "logit",
    "expit",
    "position_acceptance",
    "survival",
    "tau_decaying",
    "tau_sq_decaying",
    "implied_a1",
    "per_position_from_sweep",
    "decay_from_positions",
]
