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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COEFS",
    "ServiceCosts",
    "Demand",
    "tau_constant",
    "tau_per_position",
    "implied_acceptance",
    "tau_sq_constant",
    "tau_sq_per_position",
    "iterations",
    "demand",
    "latency_at_load",
    "latency_closed",
    "latency_open",
    "saturation_rate",
    "saturation_rate_at",
    "in_flight",
    "step_time",
    "ttft",
    "busy_probability",
    "tpot",
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
    "leviathan_speedup",
    "yan_throughput",
    "speedup",
]

#: Names of the service-cost coefficients, in the order the model stacks them.
COEFS = ("v0", "v1", "d0", "d1", "p0", "p1", "c1")

_NEAR_ONE = 1e-9


@dataclass(frozen=True)
class ServiceCosts:
    """Service-cost coefficients of one verifier/drafter pair on one hardware.

    Fields may be floats, numpy arrays or pytensor tensors (broadcastable together).

    v0: s, fixed cost of one verifier forward pass (weights read, launch, scheduler).
    v1: s per sequence-token in a verifier pass (each sequence carries k+1 tokens).
    d0: s, fixed cost of one drafter forward pass.
    d1: s per sequence-token in a drafter pass (k draft passes per iteration, 1 token each).
    p0: s, fixed per-request overhead before its first token (front end, tokenisation,
        scheduling, prefill launch); it delays the request itself, not the others.
    p1: s per prompt token prefilled.
    c1: s per sequence per pass per context token (attention over the KV cache);
        the mean context of a request is P + D/2 tokens.
    s1: s per sequence per pass, whatever tokens it carries (sampler, scheduler bookkeeping,
        per-sequence kernel work); 0 unless a model variant fits it (``[model] sequence_cost``).
    knee_tokens: tokens in a verify pass at its roofline knee (None = no knee): past it the pass
        is compute-bound and its fixed cost grows as ``v0 * (1 + compute_share * knee_excess)``
        (:func:`knee_excess`); the ``roofline`` model variant fits it.
    compute_share: dimensionless share of ``v0`` that one knee's worth of tokens adds past the knee.
    experts: routed experts per layer E of an MoE verifier (None = dense).
    experts_per_token: experts each token is routed to (top-k).
    expert_share: fraction of v0 spent reading expert weights (scales with coverage).
    """

    v0: Any
    v1: Any
    d0: Any
    d1: Any
    p0: Any
    p1: Any
    c1: Any
    s1: Any = 0.0
    knee_tokens: Any = None
    compute_share: Any = 0.0
    experts: Any = None
    experts_per_token: Any = None
    expert_share: Any = 0.0


@dataclass(frozen=True)
class Demand:
    """Per-request service demand (s), split by phase.

    ``c1_*``: load-independent part (latency of the request alone on the server).
    ``c2_*``: part added per other request in flight (s per request).
    """

    c1_prefill: Any
    c1_draft: Any
    c1_verify: Any
    c2_prefill: Any
    c2_draft: Any
    c2_verify: Any

    @property
    def c1(self):
        """C1 (s): latency of the request alone on the server."""
        return self.c1_prefill + self.c1_draft + self.c1_verify

    @property
    def c2(self):
        """C2 (s per other in-flight request)."""
        return self.c2_prefill + self.c2_draft + self.c2_verify


# --------------------------------------------------------------------------- acceptance


def tau_constant(a, k, xp=np):
    """Tokens per verify iteration (acceptance length, tokens) for constant acceptance.

    ``tau = (1 - a^(k+1)) / (1 - a)``; ``k = 0`` gives 1; the ``a -> 1`` limit is ``k + 1``.
    ``a`` is the per-position acceptance probability in [0, 1], ``k`` the draft length.
    """
    near = xp.abs(1.0 - a) < _NEAR_ONE
    den = xp.where(near, 1.0, 1.0 - a)  # safe denominator: finite gradients in both branches
    return xp.where(near, k + 1.0, (1.0 - a ** (k + 1)) / den)


def tau_per_position(a_pos, xp=np):
    """Acceptance length (tokens) from per-position acceptance ``a_pos`` of shape (..., k).

    ``tau = 1 + sum_j prod_{i<=j} a_i`` (a draft token counts only if all before it did).
    """
    return 1.0 + xp.sum(xp.cumprod(a_pos, axis=-1), axis=-1)


def implied_acceptance(tau, k, n_iter=64):
    """Constant per-position acceptance ``a`` in [0, 1] with ``tau_constant(a, k) = tau``.

    numpy only, vectorised bisection (``tau`` is increasing in ``a``). ``tau`` (tokens)
    is clipped to [1, k+1]; entries with ``k = 0`` (no information about ``a``) are NaN.
    """
    tau, k = np.broadcast_arrays(np.asarray(tau, float), np.asarray(k, float))
    target = np.clip(tau, 1.0, k + 1.0)
    lo, hi = np.zeros(tau.shape), np.ones(tau.shape)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        below = tau_constant(mid, k) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = np.where(k > 0, 0.5 * (lo + hi), np.nan)
    return out[()] if out.ndim == 0 else out


def tau_sq_constant(a, k, xp=np):
    """Second moment ``E[Y^2]`` (tokens^2) of the tokens ``Y`` one verify iteration yields, for
    constant per-position acceptance ``a`` at draft length ``k`` (numbers or numpy arrays; ``a``
    may be a pytensor tensor).

    ``Y = 1 + leading accepted drafts``, ``P(Y >= j) = a^(j-1)`` for ``j = 1..k+1``, so
    ``E[Y^2] = sum_j (2j - 1) a^(j-1)``; ``k = 0`` gives 1. Unrolled to ``max(k)`` positions.
    """
    k_arr = np.asarray(k, dtype=float)
    out = 1.0 + 0.0 * (a + k_arr)
    for j in range(1, int(np.max(k_arr)) + 1 if k_arr.size else 1):
        out = out + xp.where(k_arr >= j, (2.0 * j + 1.0) * a**j, 0.0)
    return out


def tau_sq_per_position(a_pos, xp=np):
    """``E[Y^2]`` (tokens^2) from per-position acceptance ``a_pos`` of shape (..., k):
    ``1 + sum_j (2j + 1) prod_{i<=j} a_i`` (see :func:`tau_sq_constant`)."""
    surv = xp.cumprod(a_pos, axis=-1)
    j = np.arange(1, np.shape(a_pos)[-1] + 1, dtype=float)
    return 1.0 + xp.sum((2.0 * j + 1.0) * surv, axis=-1)


def iterations(output_len, tau, tau_sq=None):
    """Forward-pass iterations per request: ``N = (D - 1) / tau + 1 [+ overshoot]``.

    The first output token comes from prefill, so ``N`` counts the prefill pass;
    ``D`` in tokens, ``tau`` in tokens per iteration.

    ``tau_sq`` (``E[Y^2]``, tokens^2, e.g. :func:`tau_sq_constant`) adds the renewal-theory
    boundary term ``(E[Y^2] / tau - 1) / (2 tau)``: the last iteration of a request usually
    yields more tokens than the request still needs (the surplus is discarded at the length
    cap or after EOS), so a request needs that many iterations more than ``(D - 1) / tau``
    on average (exact as ``D`` grows; about +0.5 iteration at k = 4, a = 0.7). Without
    ``tau_sq`` the surplus is ignored.
    """
    n = (output_len - 1.0) / tau + 1.0
    if tau_sq is None:
        return n
    return n + (tau_sq / tau - 1.0) / (2.0 * tau)


# --------------------------------------------------------------------------- demand and latency


def _sequence_pass_cost(costs, prompt_len, output_len):
    """``ctx = c1 * (P + D/2) + s1`` (s): what one sequence adds to a pass beyond its tokens' weight
    work, attention over its mean context and the per-sequence cost."""
    return costs.c1 * (prompt_len + output_len / 2.0) + costs.s1


def demand(costs, k, tau, prompt_len, output_len, xp=np, tau_sq=None):
    """Per-request demand (s) of a request with ``P`` prompt and ``D`` output tokens.

    With ``N = iterations(D, tau, tau_sq)`` and ``ctx = c1 * (P + D/2) + s1`` (attention and
    per-sequence work, s per pass)::

        c1_prefill = p0 + p1 P              c2_prefill = p1 P
        c1_draft   = N k (d0 + d1)          c2_draft   = N k d1
        c1_verify  = N (v0 + (k+1) v1 + ctx) c2_verify = N ((k+1) v1 + ctx)

    ``C1`` is the latency alone on the server; ``C2`` what each other in-flight request
    adds (its sequence-tokens in my passes, its prefill tokens in my steps; its fixed
    overhead ``p0`` is its own, not GPU time taken from me).
    """
    c = costs
    n = iterations(output_len, tau, tau_sq)
    ctx = _sequence_pass_cost(c, prompt_len, output_len)
    prefill = c.p0 + c.p1 * prompt_len
    return Demand(
        c1_prefill=prefill,
        c1_draft=n * k * (c.d0 + c.d1),
        c1_verify=n * (c.v0 + (k + 1.0) * c.v1 + ctx),
        c2_prefill=c.p1 * prompt_len,
        c2_draft=n * k * c.d1,
        c2_verify=n * ((k + 1.0) * c.v1 + ctx),
    )


def latency_at_load(c1, c2, others):
    """Mean request latency (s): ``L = C1 + others * C2``.

    ``others`` is the mean number of OTHER requests in flight while this one is served.
    """
    return c1 + others * c2


def latency_closed(c1, c2, concurrency):
    """Mean latency (s) in a closed loop of ``concurrency`` streams: others = concurrency - 1."""
    return latency_at_load(c1, c2, concurrency - 1.0)


def latency_open(c1, c2, rate, xp=np):
    """Mean latency (s) at open-loop arrival ``rate`` (requests/s).

    Arrivals see time averages (PASTA) and Little's law gives others = rate * L, so
    ``L = C1 / (1 - rate C2)``; ``+inf`` where ``rate * C2 >= 1`` (saturated).
    """
    rho = rate * c2
    stable = rho < 1.0
    den = xp.where(stable, 1.0 - rho, 1.0)
    return xp.where(stable, c1 / den, np.inf)


def saturation_rate(c2):
    """Arrival rate (requests/s) at which the open-loop latency diverges: ``1 / C2``."""
    return 1.0 / c2


def in_flight(rate, latency):
    """Mean number of requests in flight (batch size) by Little's law: ``B = rate * L``."""
    return rate * latency


def step_time(costs, k, tau, prompt_len, output_len, others, xp=np, tau_sq=None):
    """Mean duration (s) of one scheduler step (k draft passes + one verify pass).

    ``v0 + k d0 + (others+1) ((k+1) v1 + k d1 + ctx) + others p1 P / N``:
    every in-flight sequence adds its per-token work, and the others' prefills
    (one per request over its ``N`` steps) are spread uniformly over the steps.
    Consistency: ``p0 + p1 P + N * step_time(others) == C1 + others * C2`` (same ``tau_sq``).
    """
    c = costs
    n = iterations(output_len, tau, tau_sq)
    ctx = _sequence_pass_cost(c, prompt_len, output_len)
    per_seq = (k + 1.0) * c.v1 + k * c.d1 + ctx
    return c.v0 + k * c.d0 + (others + 1.0) * per_seq + others * c.p1 * prompt_len / n


def ttft(costs, k, tau, prompt_len, output_len, others, xp=np, tau_sq=None, p_busy=None):
    """Mean time to first token (s): ``p0 + p1 P + S + p_busy * R``.

    A request that becomes admissible while a step is in progress waits for it to end, then
    rides one step (mean ``S = step_time(others)``) that carries its prefill alongside the
    others' decoding. The wait ``R`` is the length-biased residual of a step,
    ``E[S^2] / (2 E[S]) = S / 2 + f X^2 / (2 S)``: the others' prefills (``X = p1 P`` each,
    ``f = others / N`` of them per step, Poisson) make a few steps long, and an arrival is
    more likely to land in a long one. ``p_busy``: probability that the server is busy when
    the request becomes admissible; default ``1 - exp(-others)`` (Poisson arrivals: no other
    request in flight with probability ``exp(-others)``); in closed loop pass
    :func:`busy_probability` (with one stream the server is idle whenever a request is sent).
    All requests are assumed alike (same P, D), and no queueing for KV-cache admission.
    """
    c = costs
    prefill = c.p1 * prompt_len
    if p_busy is None:
        p_busy = 1.0 - xp.exp(-others)
    step = step_time(costs, k, tau, prompt_len, output_len, others, xp=xp, tau_sq=tau_sq)
    per_step = others / iterations(output_len, tau, tau_sq)  # others' prefills per step
    residual = 0.5 * step + per_step * prefill**2 / (2.0 * step)
    return c.p0 + prefill + step + p_busy * residual


def busy_probability(others, is_open, xp=np):
    """Probability (0-1) that the server is busy when a request becomes admissible:
    ``1 - exp(-others)`` in open loop (Poisson), ``min(others, 1)`` in closed loop."""
    return xp.where(is_open, 1.0 - xp.exp(-others), xp.minimum(others, 1.0))


def tpot(latency, ttft, output_len):
    """Mean time per output token after the first (s/token): ``(L - TTFT) / (D - 1)``; D > 1."""
    return (latency - ttft) / (output_len - 1.0)


# --------------------------------------------------------------------------- MoE verifier


def expert_coverage(tokens, experts, experts_per_token):
    """Expected fraction of routed experts touched by ``tokens`` tokens in one pass.

    ``1 - (1 - top_k / E)^T`` (uniform independent routing); in [top_k/E, 1] for T >= 1.
    """
    return 1.0 - (1.0 - experts_per_token / experts) ** tokens


def latency_moe_at_load(costs, k, tau, prompt_len, output_len, others, xp=np):
    """Mean latency (s) with an MoE and/or roofline verifier at ``others`` other requests in flight.

    The verifier fixed cost becomes ``v0 (1 - share + share * coverage(T))`` with
    ``T = (others + 1)(k + 1)`` tokens per verify pass (MoE; dense when ``experts`` is None),
    times ``1 + compute_share * knee_excess(T)`` when ``knee_tokens`` is set (roofline knee).
    """
    dem = demand(costs, k, tau, prompt_len, output_len, xp=xp)
    lat = latency_at_load(dem.c1, dem.c2, others)
    if costs.experts is None and costs.knee_tokens is None:  # structural, not an array value
        return lat
    n = iterations(output_len, tau)
    moe_factor = 1.0
    if costs.experts is not None:
        untouched = 1.0 - expert_coverage((others + 1.0) * (k + 1.0), costs.experts, costs.experts_per_token)
        moe_factor = 1.0 - costs.expert_share * untouched
        lat = lat - n * costs.v0 * costs.expert_share * untouched
    if costs.knee_tokens is not None:
        lat = lat + n * costs.v0 * moe_factor * costs.compute_share * knee_excess(others, k, costs.knee_tokens, xp=xp)
    return lat


def latency_moe_closed(costs, k, tau, prompt_len, output_len, concurrency, xp=np):
    """Mean latency (s), MoE verifier, closed loop of ``concurrency`` streams (others = B - 1)."""
    return latency_moe_at_load(costs, k, tau, prompt_len, output_len, concurrency - 1.0, xp=xp)


def latency_moe_open(costs, k, tau, prompt_len, output_len, rate, n_iter=200):
    """Mean latency (s), MoE and/or roofline verifier, open loop at ``rate`` (requests/s). numpy only.

    Solves the fixed point ``L = g(L) = latency_moe_at_load(others = rate * L)``. Without a knee,
    by vectorised bisection on ``[g(0), C1 / (1 - rate C2)]`` (``g`` is increasing in L, so the
    dense open-loop latency bounds it from above); ``+inf`` where ``rate * C2 >= 1``. With a knee
    (``knee_tokens`` set) ``g`` turns convex and may have no fixed point below ``rate C2 = 1``:
    :func:`_smallest_fixed_point` iterates ``L <- g(L)`` from 0, which climbs to the smallest
    (stable) root, ``+inf`` where there is none. Equals :func:`latency_open` for a dense verifier.
    """
    rate = np.asarray(rate, float)

    def g(lat):
        return latency_moe_at_load(costs, k, tau, prompt_len, output_len, rate * lat)

    if costs.knee_tokens is not None:
        return _smallest_fixed_point(g, np.zeros_like(rate))
    dem = demand(costs, k, tau, prompt_len, output_len)
    dense = latency_open(dem.c1, dem.c2, rate)
    if costs.experts is None:
        return dense
    finite = np.isfinite(dense)
    hi = np.where(finite, dense, 0.0)
    lo = np.minimum(g(np.zeros_like(hi)) + 0.0 * hi, hi)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        low = g(mid) > mid  # f(mid) = mid - g(mid) < 0: root lies above
        lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
        if np.all(hi - lo <= 1e-15 * np.abs(hi)):
            break
    out = np.where(finite, 0.5 * (lo + hi), np.inf)
    return out[()] if out.ndim == 0 else out


def _smallest_fixed_point(g, start, rtol=1e-12, max_iter=200_000):
    """Smallest root of ``L = g(L)`` for an increasing ``g`` with ``g(start) >= start``: the
    iteration ``L <- g(L)`` rises monotonically to it; ``+inf`` where it grows past 1e6 x its
    start value or has not settled in ``max_iter`` steps (no root: the server saturates)."""
    lat = g(np.asarray(start, float))
    first = np.where(lat > 0, lat, 1.0)
    done = np.zeros(lat.shape, bool)
    for _ in range(max_iter):
        nxt = np.where(done, lat, g(lat))
        done |= (np.abs(nxt - lat) <= rtol * np.abs(nxt)) | ~(nxt < 1e6 * first)
        lat = nxt
        if done.all():
            break
    out = np.where(done & (lat < 1e6 * first), lat, np.inf)
    return out[()] if out.ndim == 0 else out


def saturation_rate_at(costs, k, tau, prompt_len, output_len):
    """Highest open-loop arrival rate (requests/s) the server sustains, MoE and roofline knee
    included: ``max over B of B / L(B)`` with ``L(B) = latency_moe_at_load(others = B)`` (at a
    fixed point ``rate = others / L``). ``1 / C2`` for a dense verifier without a knee (the
    supremum as ``B -> inf``); below it when the knee makes ``L`` grow faster than ``B``."""
    if costs.experts is None and costs.knee_tokens is None:
        return saturation_rate(demand(costs, k, tau, prompt_len, output_len).c2)
    others = np.geomspace(1e-2, 1e7, 4000)
    lat = latency_moe_at_load(costs, k, tau, prompt_len, output_len, others)
    return float(np.max(others / lat))


def moe_untouched(log_q, k, others, xp=np):
    """Fraction of routed experts a verify pass leaves untouched: ``q^T``, ``T = (others+1)(k+1)``.

    ``log_q = log(1 - top_k / E)`` (0 > log_q); the effective verifier fixed cost is
    ``v0 (1 - share * moe_untouched)``. Written with ``exp`` so it runs on pytensor tensors.
    """
    return xp.exp((others + 1.0) * (k + 1.0) * log_q)


def latency_moe_open_newton(c1, c2, saving, log_q, k, rate, xp=np, steps=4, start=None):
    """Open-loop mean latency (s) with an MoE verifier, by Newton's method (numpy or pytensor).

    Solves ``L = g(L) = C1 + rate L C2 - saving * q^((rate L + 1)(k + 1))`` where ``C1, C2``
    are the dense demands at full expert coverage and ``saving = N v0 share`` (s per
    request). ``g`` is increasing and concave in ``L``, so Newton started at the dense
    latency ``C1 / (1 - rate C2)`` (an upper bound, or ``start``) descends monotonically
    to the fixed point; ``steps`` unrolled iterations keep it differentiable (4 reach 1e-14
    relative error against bisection on the fleet's MoE presets up to 97% of saturation). Callers
    handle saturation (``rate C2 >= 1``) before calling. ``saving = 0`` gives the dense form.
    """
    lat = c1 / (1.0 - rate * c2) if start is None else start
    slope_q = -log_q * rate * (k + 1.0)  # d(-q^T)/dL = q^T * slope_q
    for _ in range(steps):
        u = moe_untouched(log_q, k, rate * lat, xp=xp)
        g = c1 + rate * lat * c2 - saving * u
        dg = rate * c2 + saving * u * slope_q
        lat = lat - (lat - g) / xp.maximum(1.0 - dg, 1e-6)
    return lat


# --------------------------------------------------------------------------- roofline knee

#: Half-width of the smooth corner of :func:`knee_excess`, in units of ``T / knee - 1``: the pass
#: turns from memory-bound to compute-bound over roughly ``knee * (1 +- 0.3)`` tokens, as measured
#: roofline curves bend gradually (kernels change tiling, not a hard switch).
KNEE_SOFTNESS = 0.3


def knee_excess(others, k, knee_tokens, xp=np, softness=KNEE_SOFTNESS):
    """Smoothed ``max(0, T / knee - 1)`` (dimensionless) with ``T = (others + 1)(k + 1)`` tokens.

    A verify pass carries ``k + 1`` tokens for each of the ``others + 1`` sequences in flight.
    While ``T`` is below the roofline knee (``knee_tokens``, tokens) the pass is memory-bound and
    costs about the same; past it, compute dominates and the pass grows in proportion to ``T``.
    Smooth max ``(x + sqrt(x^2 + h^2)) / 2``: positive everywhere, ``~h^2/4`` far below the knee.
    """
    x = (others + 1.0) * (k + 1.0) / knee_tokens - 1.0
    return 0.5 * (x + xp.sqrt(x * x + softness**2))


def verify_cost_multiplier(share, log_q, compute_share, knee_tokens, k, others, xp=np):
    """Factor (dimensionless) on the verifier fixed cost ``v0`` at ``others`` other requests in flight.

    ``(1 - share * q^T) * (1 + compute_share * knee_excess(T))`` with ``T = (others + 1)(k + 1)``
    tokens per verify pass: an MoE pass skips the experts no token touches (``share``, the expert
    part of ``v0``; ``log_q = log(1 - top_k / E)``; ``share = 0`` for a dense verifier) and past
    the roofline knee the pass grows with its tokens (``compute_share``; 0 for no knee). The
    same product as :func:`latency_moe_at_load`, in the model's parameterisation.
    """
    untouched = moe_untouched(log_q, k, others, xp=xp)
    return (1.0 - share * untouched) * (1.0 + compute_share * knee_excess(others, k, knee_tokens, xp=xp))


def moe_knee_scale(log_q, xp=np):
    """How many times further out (in tokens per pass) an MoE verifier's roofline knee sits than a
    dense one's on the same GPU: ``E / top_k = 1 / (1 - q)``, ``log_q = log(1 - top_k / E)``.

    At full coverage a pass reads every expert's weights but each token is computed by ``top_k``
    of them, so the FLOP per weight byte of ``T`` tokens is ``top_k / E`` of a dense model's
    (expert-dominated weights: Qwen3-30B-A3B, 128 experts, top-8, knee 16 times further out).
    """
    return -1.0 / xp.expm1(log_q)


def latency_moe_knee_open(c1, c2, n_v0, share, log_q, compute_share, knee_tokens, k, rate, rtol=1e-12,
                          max_iter=500):
    """Open-loop mean latency (s) with expert coverage and a roofline knee in the verify pass. numpy only.

    Solves ``L = C1 + rate L C2 + n_v0 (verify_cost_multiplier(others = rate L) - 1)`` for its
    smallest root; ``n_v0`` (s per request) is the request's ``N`` verify passes times ``v0``, the
    other arguments as in :func:`verify_cost_multiplier`. With the untouched fraction ``u = q^T``
    held fixed the equation is the knee's, solved in closed form (:func:`latency_knee_open`); the
    outer loop updates ``u`` at the new latency. It starts from ``u = 1`` (no expert read: the
    cheapest pass, a latency below the root) and, both maps being monotone, climbs to the smallest
    root in a handful of steps, where iterating ``L <- g(L)`` alone crawls near saturation. ``+inf``
    where no root exists (the knee saturates the server).
    """
    shape = np.broadcast_shapes(*(np.shape(a) for a in (c1, c2, n_v0, share, log_q, compute_share, knee_tokens,
                                                         k, rate)))
    untouched, lat = np.ones(shape), np.zeros(shape)
    for _ in range(max_iter):
        fixed = n_v0 * share * untouched
        nxt, ok = latency_knee_open(c1 - fixed, c2, n_v0 * compute_share * (1.0 - share * untouched), knee_tokens,
                                    k, rate)
        nxt = np.where(ok, nxt, np.inf)
        with np.errstate(invalid="ignore"):
            settled = (nxt == lat) | (np.abs(nxt - lat) <= rtol * np.abs(nxt))
        lat = nxt
        if settled.all():
            break
        untouched = np.where(np.isfinite(lat), moe_untouched(log_q, k, rate * np.where(np.isfinite(lat), lat, 0.0)),
                             0.0)
    return lat[()] if lat.ndim == 0 else lat


def latency_knee_closed(c1, c2, compute, knee_tokens, k, concurrency, xp=np):
    """Closed-loop mean latency (s) with a roofline knee: ``C1 + (B - 1) C2 + compute * knee_excess``
    at ``B = concurrency`` streams; ``compute`` (s per request) as in :func:`latency_knee_open`."""
    others = concurrency - 1.0
    return latency_at_load(c1, c2, others) + compute * knee_excess(others, k, knee_tokens, xp=xp)


def latency_knee_open(c1, c2, compute, knee_tokens, k, rate, xp=np, softness=KNEE_SOFTNESS):
    """Open-loop mean latency (s) with a roofline knee in the verify pass, in closed form.

    Solves ``L = g(L) = C1 + rate L C2 + compute * knee_excess(rate L, k, knee)`` for its smallest
    root (the stable one): ``compute`` (s per request) is ``N * r * v0``, the extra time of a
    request's ``N`` passes per knee's worth of tokens past the knee. With the hyperbolic smooth max
    of :func:`knee_excess` the equation is ``A L - B = e sqrt(x^2 + h^2)`` with ``x = alpha L + beta``
    linear in ``L``, ``e = compute / 2``, ``A = 1 - rate C2 - e alpha``, ``B = C1 + e beta``;
    squared, a quadratic whose discriminant factors as ``e^2 W``,
    ``W = (A beta + alpha B)^2 + h^2 (A^2 - e^2 alpha^2)``, so the root is free of cancellation:
    ``L = (B^2 - e^2 (beta^2 + h^2)) / (A B + e^2 alpha beta - e sqrt(W))``. (An unrolled Newton
    iteration gave the same values but took numba minutes to compile with its gradient.)

    Returns ``(latency, ok)``; ``ok`` is False where no fixed point exists (the knee saturates the
    server, possibly before ``rate C2 = 1``), and there ``latency`` is not meaningful. ``compute = 0``
    gives ``C1 / (1 - rate C2)``.
    """
    alpha = rate * (k + 1.0) / knee_tokens
    beta = (k + 1.0) / knee_tokens - 1.0
    e = 0.5 * compute
    a_lin = 1.0 - rate * c2 - e * alpha
    b_lin = c1 + e * beta
    qa = a_lin * a_lin - e * e * alpha * alpha
    w = (a_lin * beta + alpha * b_lin) ** 2 + softness**2 * qa
    root_w = xp.sqrt(xp.maximum(w, 0.0))
    num = b_lin * b_lin - e * e * (beta * beta + softness**2)
    den = a_lin * b_lin + e * e * alpha * beta - e * root_w
    ok_den = xp.abs(den) > 1e-300
    lat = num / xp.where(ok_den, den, 1.0)
    ok = (w >= 0.0) & ok_den & (lat > 0.0) & (a_lin * lat - b_lin >= -1e-9 * xp.abs(b_lin))
    return lat, ok


# --------------------------------------------------------------------------- baselines


def leviathan_speedup(a, k, c, xp=np):
    """Batch-1 speedup of Leviathan et al.: ``(1 - a^(k+1)) / ((1 - a)(k c + 1))``.

    ``c`` is the ratio of one draft pass's cost to one verify pass's cost (dimensionless).
    """
    return tau_constant(a, k, xp=xp) / (k * c + 1.0)


def yan_throughput(tau, t_verify, t_draft):
    """Batch-1 decoding throughput of Yan et al. (tokens/s): ``tau / (t_verify + t_draft)``.

    ``t_verify`` (s) is one verify pass, ``t_draft`` (s) the k draft passes of one iteration.
    """
    return tau / (t_verify + t_draft)


def speedup(costs, k, tau, prompt_len, output_len, *, rate=None, concurrency=None, xp=np):
    """Latency ratio ``L(k=0, tau=1) / L(k, tau)`` under the given load (dimensionless).

    Give ``rate`` (requests/s, open loop) or ``concurrency`` (streams, closed loop), or
    neither for a request alone on the server. An MoE verifier (``experts`` set) uses
    the MoE latencies (numpy only). Saturated baseline with a stable speculative run
    gives inf; both saturated gives NaN.
    """
    if rate is not None and concurrency is not None:
        raise ValueError("give rate or concurrency, not both")
    moe = costs.experts is not None

    def lat(kk, tt):
        if rate is not None:
            if moe:
                return latency_moe_open(costs, kk, tt, prompt_len, output_len, rate)
            dem = demand(costs, kk, tt, prompt_len, output_len, xp=xp)
            return latency_open(dem.c1, dem.c2, rate, xp=xp)
        conc = 1.0 if concurrency is None else concurrency
        if moe:
            return latency_moe_closed(costs, kk, tt, prompt_len, output_len, conc)
        dem = demand(costs, kk, tt, prompt_len, output_len, xp=xp)
        return latency_closed(dem.c1, dem.c2, conc)

    return lat(0.0, 1.0) / lat(k, tau)
