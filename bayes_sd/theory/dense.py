"""Dense closed form: service costs, acceptance moments, per-request demand, open- and closed-loop
latency, TTFT and TPOT, and the batch-1 baselines of the papers (units and symbols: ``bayes_sd.theory``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: The verifier's service-cost coefficients (verify pass, prefill, attention), in the one order
#: every part of the package stacks them (model dims ``vcoef``/``coef``, baselines, recovery).
VERIFIER_COEFS = ("v0", "v1", "p0", "p1", "c1")
#: The drafter's service-cost coefficients (draft pass: fixed, per sequence-token).
DRAFTER_COEFS = ("d0", "d1")
#: Every pooled service-cost coefficient: the verifier's, then the drafter's.
COEFS = VERIFIER_COEFS + DRAFTER_COEFS

_NEAR_ONE = 1e-9


@dataclass(frozen=True)
class ServiceCosts:
    """Service-cost coefficients of one verifier/drafter pair on one hardware.

    Fields may be floats, numpy arrays or pytensor tensors (broadcastable together).

    Parameters
    ----------
    v0 : float or array-like
        s, fixed cost of one verifier forward pass (weights read, launch, scheduler).
    v1 : float or array-like
        s per sequence-token in a verifier pass (each sequence carries k+1 tokens).
    d0 : float or array-like
        s, fixed cost of one drafter forward pass.
    d1 : float or array-like
        s per sequence-token in a drafter pass (k draft passes per iteration, 1 token each).
    p0 : float or array-like
        s, fixed per-request overhead before its first token (front end, tokenisation,
        scheduling, prefill launch); it delays the request itself, not the others.
    p1 : float or array-like
        s per prompt token prefilled.
    c1 : float or array-like
        s per sequence per pass per context token (attention over the KV cache);
        the mean context of a request is P + D/2 tokens.
    s1 : float or array-like, default 0.0
        s per sequence per pass, whatever tokens it carries (sampler, scheduler bookkeeping,
        per-sequence kernel work); 0 unless a model variant fits it (``[model] sequence_cost``).
    e0 : float or array-like, default 0.0
        s, fixed cost of a step that speculates, whatever its draft length (draft bookkeeping, the
        rejection sampler's launch, the host's proposal loop); 0 unless a model variant fits it
        (``[model] speculation_cost``).
    e1 : float or array-like, default 0.0
        s per sequence in a step that speculates, whatever its draft length (per-request rejection
        sampling and input preparation, a verify attention kernel whose multi-token queries fill a
        whole tile); 0 unless a model variant fits it.
    knee_tokens : float or array-like, optional
        Tokens in a verify pass at its roofline knee (None = no knee): past it the pass
        is compute-bound and its fixed cost grows as ``v0 * (1 + compute_share * knee_excess)``
        (:func:`knee_excess`); the ``roofline`` model variant fits it.
    compute_share : float or array-like, default 0.0
        Dimensionless share of ``v0`` that one knee's worth of tokens adds past the knee.
    experts : float, optional
        Routed experts per layer E of an MoE verifier (None = dense).
    experts_per_token : float, optional
        Experts each token is routed to (top-k).
    expert_share : float or array-like, default 0.0
        Fraction of v0 spent reading expert weights (scales with coverage).
    """

    v0: Any
    v1: Any
    d0: Any
    d1: Any
    p0: Any
    p1: Any
    c1: Any
    s1: Any = 0.0
    e0: Any = 0.0
    e1: Any = 0.0
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

    def scaled(self, c1_factor=1.0, c2_factor=1.0) -> Demand:
        """This demand with every load-independent part times ``c1_factor`` and every per-request
        load part times ``c2_factor`` (a configuration's departure from the cost law)."""
        return Demand(self.c1_prefill * c1_factor, self.c1_draft * c1_factor, self.c1_verify * c1_factor,
                      self.c2_prefill * c2_factor, self.c2_draft * c2_factor, self.c2_verify * c2_factor)


# --------------------------------------------------------------------------- acceptance


def tau_constant(a, k, xp=np):
    """Tokens per verify iteration (acceptance length, tokens) for constant acceptance.

    ``tau = (1 - a^(k+1)) / (1 - a)``; ``k = 0`` gives 1; the ``a -> 1`` limit is ``k + 1``.

    Parameters
    ----------
    a : float or array-like
        Per-position acceptance probability, in [0, 1].
    k : float or array-like
        Draft length, tokens.
    xp : module, default numpy
        Array namespace: :mod:`numpy`, or :mod:`pytensor.tensor` inside the model.

    Returns
    -------
    float or array
        ``tau``, tokens per verify iteration (bonus token included), broadcast over ``a`` and ``k``.

    Examples
    --------
    >>> float(tau_constant(0.5, 2))
    1.75
    """
    near = xp.abs(1.0 - a) < _NEAR_ONE
    den = xp.where(near, 1.0, 1.0 - a)  # safe denominator: finite gradients in both branches
    return xp.where(near, k + 1.0, (1.0 - a ** (k + 1)) / den)


def tau_per_position(a_pos, xp=np):
    """Acceptance length (tokens) from per-position acceptance ``a_pos`` of shape (..., k).

    ``tau = 1 + sum_j prod_{i<=j} a_i`` (a draft token counts only if all before it did).

    Parameters
    ----------
    a_pos : array-like
        Shape (..., k): acceptance probability of draft position j given positions 1..j-1 were accepted.
    xp : module, default numpy
        Array namespace: :mod:`numpy`, or :mod:`pytensor.tensor` inside the model.

    Returns
    -------
    float or array
        ``tau``, tokens per verify iteration, shape (...).

    Examples
    --------
    >>> float(tau_per_position([0.8, 0.5]))
    2.2
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

    The first output token comes from prefill, so ``N`` counts the prefill pass.

    Parameters
    ----------
    output_len : float or array-like
        ``D``, output tokens per request.
    tau : float or array-like
        Acceptance length, tokens per iteration.
    tau_sq : float or array-like, optional
        ``E[Y^2]`` (tokens^2, e.g. :func:`tau_sq_constant`): adds the renewal-theory
        boundary term ``(E[Y^2] / tau - 1) / (2 tau)``: the last iteration of a request usually
        yields more tokens than the request still needs (the surplus is discarded at the length
        cap or after EOS), so a request needs that many iterations more than ``(D - 1) / tau``
        on average (exact as ``D`` grows; about +0.5 iteration at k = 4, a = 0.7). Without
        ``tau_sq`` the surplus is ignored.

    Returns
    -------
    float or array
        ``N``, iterations (forward passes of the verifier) per request.

    Examples
    --------
    >>> float(iterations(101, 2.0))
    51.0
    """
    n = (output_len - 1.0) / tau + 1.0
    if tau_sq is None:
        return n
    return n + (tau_sq / tau - 1.0) / (2.0 * tau)


def per_decode_step(k, tau, tau_sq, draft_share):
    """Draft tokens, emitted tokens and their second moment per decode step, when only a share of a
    request's decode steps carry drafts.

    A proposer without weights (n-gram / prompt lookup, suffix decoding) drafts only when it finds a
    match: the other steps verify one token and emit one. Engines count acceptance per draft (vLLM's
    ``1 + accepted / num_drafts``), so ``tau`` of a run is per drafting step; per decode step::

        k_step   = share k                       draft tokens a sequence carries into a verify pass
        tau_step = 1 + share (tau - 1)           tokens emitted
        E[Y^2]   = (1 - share) + share E[Y^2 | draft]

    Parameters
    ----------
    k : float or array-like
        Draft length, tokens.
    tau : float or array-like
        Acceptance length per drafting step, tokens (bonus token included).
    tau_sq : float or array-like or None
        Its second moment, tokens^2 (None: not modelled).
    draft_share : float or array-like
        Share (0-1] of decode steps that carry drafts (1: every step, as a drafter with weights does).

    Returns
    -------
    tuple
        ``(k_step, tau_step, tau_sq_step)`` as above. The costs of turning speculation on (``e0``,
        ``e1``) stay those of every step: the proposer is consulted at each one, match or not.

    Examples
    --------
    >>> [float(v) for v in per_decode_step(4.0, 3.0, None, 0.25)[:2]]
    [1.0, 1.5]
    """
    # written as departures from the per-draft values, so that share 1 returns them bit for bit
    skipped = 1.0 - draft_share
    tau_sq_step = None if tau_sq is None else tau_sq - skipped * (tau_sq - 1.0)
    return draft_share * k, tau - skipped * (tau - 1.0), tau_sq_step


# --------------------------------------------------------------------------- demand and latency


def _speculates(k, xp=np):
    """1.0 where the draft tokens per step ``k`` (>= 0; fractional where only some steps draft,
    :func:`per_decode_step`) are positive, else 0.0."""
    return xp.where(k > 0, 1.0, 0.0)


def _sequence_pass_cost(costs, prompt_len, output_len):
    """``ctx = c1 * (P + D/2) + s1`` (s): what one sequence adds to a pass beyond its tokens' weight
    work, attention over its mean context and the per-sequence cost."""
    return costs.c1 * (prompt_len + output_len / 2.0) + costs.s1


def demand(costs, k, tau, prompt_len, output_len, xp=np, tau_sq=None):
    """Per-request demand (s) of a request with ``P`` prompt and ``D`` output tokens.

    With ``N = iterations(D, tau, tau_sq)``, ``ctx = c1 * (P + D/2) + s1`` (attention and
    per-sequence work, s per pass) and ``[k > 0]`` 1 for a step that speculates::

        c1_prefill = p0 + p1 P                           c2_prefill = p1 P
        c1_draft   = N (k (d0 + d1) + [k > 0] (e0 + e1)) c2_draft   = N (k d1 + [k > 0] e1)
        c1_verify  = N (v0 + (k+1) v1 + ctx)             c2_verify  = N ((k+1) v1 + ctx)

    ``e0``, ``e1``: what turning speculation on costs a step and each of its sequences, whatever
    the draft length (0 unless a model variant fits them). Where only a share of the decode steps
    carry drafts, pass the per-step ``k``, ``tau`` and ``tau_sq`` of :func:`per_decode_step`.

    ``C1`` is the latency alone on the server; ``C2`` what each other in-flight request
    adds (its sequence-tokens in my passes, its prefill tokens in my steps; its fixed
    overhead ``p0`` is its own, not GPU time taken from me).

    Parameters
    ----------
    costs : ServiceCosts
        Service-cost coefficients, s.
    k : float or array-like
        Draft length, tokens (0 = no speculation).
    tau : float or array-like
        Acceptance length, tokens per iteration (1 when ``k = 0``).
    prompt_len : float or array-like
        ``P``, prompt tokens.
    output_len : float or array-like
        ``D``, output tokens.
    xp : module, default numpy
        Array namespace: :mod:`numpy`, or :mod:`pytensor.tensor` inside the model.
    tau_sq : float or array-like, optional
        ``E[Y^2]`` (tokens^2), for the last iteration's overshoot (:func:`iterations`).

    Returns
    -------
    Demand
        ``c1_*`` (s) and ``c2_*`` (s per other in-flight request) by phase; ``.c1`` and ``.c2`` their sums.
    """
    c = costs
    n = iterations(output_len, tau, tau_sq)
    ctx = _sequence_pass_cost(c, prompt_len, output_len)
    prefill = c.p0 + c.p1 * prompt_len
    spec = _speculates(k, xp)
    return Demand(
        c1_prefill=prefill,
        c1_draft=n * (k * (c.d0 + c.d1) + spec * (c.e0 + c.e1)),
        c1_verify=n * (c.v0 + (k + 1.0) * c.v1 + ctx),
        c2_prefill=c.p1 * prompt_len,
        c2_draft=n * (k * c.d1 + spec * c.e1),
        c2_verify=n * ((k + 1.0) * c.v1 + ctx),
    )


def latency_at_load(c1, c2, others):
    """Mean request latency (s): ``L = C1 + others * C2``.

    Parameters
    ----------
    c1 : float or array-like
        Load-independent demand, s.
    c2 : float or array-like
        Demand added per other in-flight request, s.
    others : float or array-like
        Mean number of OTHER requests in flight while this one is served.

    Returns
    -------
    float or array
        Mean latency, s.
    """
    return c1 + others * c2


def latency_closed(c1, c2, concurrency):
    """Mean latency (s) in a closed loop of ``concurrency`` streams: others = concurrency - 1.

    Parameters
    ----------
    c1 : float or array-like
        Load-independent demand, s.
    c2 : float or array-like
        Demand added per other in-flight request, s.
    concurrency : float or array-like
        Streams in flight (each sends its next request when its previous one ends).

    Returns
    -------
    float or array
        Mean latency, s.

    Examples
    --------
    >>> float(latency_closed(1.0, 0.1, 4))
    1.3
    """
    return latency_at_load(c1, c2, concurrency - 1.0)


def latency_open(c1, c2, rate, xp=np):
    """Mean latency (s) at open-loop arrival ``rate`` (requests/s).

    Arrivals see time averages (PASTA) and Little's law gives others = rate * L, so
    ``L = C1 / (1 - rate C2)``.

    Parameters
    ----------
    c1 : float or array-like
        Load-independent demand, s.
    c2 : float or array-like
        Demand added per other in-flight request, s.
    rate : float or array-like
        Arrival rate, requests/s.
    xp : module, default numpy
        Array namespace: :mod:`numpy`, or :mod:`pytensor.tensor` inside the model.

    Returns
    -------
    float or array
        Mean latency, s; ``+inf`` where ``rate * C2 >= 1`` (saturated).

    Examples
    --------
    >>> latency_open(1.0, 0.1, np.array([5.0, 10.0]))
    array([ 2., inf])
    """
    rho = rate * c2
    stable = rho < 1.0
    den = xp.where(stable, 1.0 - rho, 1.0)
    return xp.where(stable, c1 / den, np.inf)


def saturation_rate(c2):
    """Arrival rate (requests/s) at which the open-loop latency diverges: ``1 / C2``.

    Parameters
    ----------
    c2 : float or array-like
        Demand added per other in-flight request, s.

    Returns
    -------
    float or array
        Saturation rate, requests/s.
    """
    return 1.0 / c2


def run_mean_inflation(load_share, is_open, xp=np):
    """How many times more a run's mean latency varies than the mean of as many independent requests
    (``n / ESS``, the integrated autocorrelation time of the latencies in sending order).

    In an open loop, requests that arrive while the server is loaded share its backlog: consecutive
    latencies correlate about as an AR(1) series whose lag-one correlation is the utilisation ``rho``,
    which gives ``(1 + rho) / (1 - rho) = 1 + 2 load_share``, with ``load_share = rho / (1 - rho)``. A
    closed loop's streams take turns, and its run means vary as independent requests' would: 1.

    Parameters
    ----------
    load_share : float or array-like
        Open loop: ``rho / (1 - rho)``, ``rho = rate / capacity`` the utilisation (dimensionless,
        >= 0; ``rate * C2`` uncapped, ``rate * L(B) / B`` where a batch cap of ``B`` binds first,
        :mod:`.batch_cap`); ignored in closed loops.
    is_open : bool or array-like
        Open-loop (fixed-rate) runs.

    Returns
    -------
    float or array
        The variance inflation factor, >= 1 (dimensionless).
    """
    return xp.where(is_open, 1.0 + 2.0 * load_share, 1.0)


def in_flight(rate, latency):
    """Mean number of requests in flight (batch size) by Little's law: ``B = rate * L``."""
    return rate * latency


def step_time(costs, k, tau, prompt_len, output_len, others, xp=np, tau_sq=None):
    """Mean duration (s) of one scheduler step (k draft passes + one verify pass).

    ``v0 + k d0 + [k > 0] e0 + (others+1) ((k+1) v1 + k d1 + [k > 0] e1 + ctx) + others p1 P / N``:
    every in-flight sequence adds its per-token work, and the others' prefills
    (one per request over its ``N`` steps) are spread uniformly over the steps.
    Consistency: ``p0 + p1 P + N * step_time(others) == C1 + others * C2`` (same ``tau_sq``).
    """
    c = costs
    n = iterations(output_len, tau, tau_sq)
    ctx = _sequence_pass_cost(c, prompt_len, output_len)
    spec = _speculates(k, xp)
    per_seq = (k + 1.0) * c.v1 + k * c.d1 + spec * c.e1 + ctx
    return c.v0 + k * c.d0 + spec * c.e0 + (others + 1.0) * per_seq + others * c.p1 * prompt_len / n


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

    Parameters
    ----------
    costs : ServiceCosts
        Service-cost coefficients, s.
    k : float or array-like
        Draft length, tokens.
    tau : float or array-like
        Acceptance length, tokens per iteration.
    prompt_len, output_len : float or array-like
        ``P`` and ``D``, tokens.
    others : float or array-like
        Mean number of other requests in flight.
    xp : module, default numpy
        Array namespace: :mod:`numpy`, or :mod:`pytensor.tensor` inside the model.
    tau_sq : float or array-like, optional
        ``E[Y^2]`` (tokens^2), for the last iteration's overshoot (:func:`iterations`).
    p_busy : float or array-like, optional
        Probability (0-1) that the server is busy when the request becomes admissible; default
        ``1 - exp(-others)`` (Poisson arrivals: no other request in flight with probability
        ``exp(-others)``); in closed loop pass :func:`busy_probability` (with one stream the server
        is idle whenever a request is sent).

    Returns
    -------
    float or array
        Mean time to first token, s.
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
    """Mean time per output token after the first (s/token): ``(L - TTFT) / (D - 1)``; D > 1.

    Parameters
    ----------
    latency : float or array-like
        ``L``, mean request latency, s.
    ttft : float or array-like
        Mean time to first token, s.
    output_len : float or array-like
        ``D``, output tokens (> 1).

    Returns
    -------
    float or array
        TPOT, s/token.
    """
    return (latency - ttft) / (output_len - 1.0)


# --------------------------------------------------------------------------- MoE verifier


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
