"""Verify passes that are not flat in their tokens: an MoE verifier's expert coverage and the
roofline knee past which a pass is compute-bound; and the speedup of speculation under load,
which takes either form (units and symbols: ``bayes_sd.theory``)."""

from __future__ import annotations

import numpy as np

from .dense import (
    demand,
    iterations,
    latency_at_load,
    latency_closed,
    latency_open,
    saturation_rate,
)


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


def latency_moe_open_newton(c1, c2, saving, log_q, k, rate, xp=np, steps=4, start=None, shift=0.0):
    """Open-loop mean latency (s) with an MoE verifier, by Newton's method (numpy or pytensor).

    Solves ``L = g(L) = C1 + o C2 - saving * q^((o + 1)(k + 1))``, ``o = rate L - shift`` the others
    a request meets (``shift`` 0 for Poisson arrivals; :mod:`.arrivals`), where ``C1, C2``
    are the dense demands at full expert coverage and ``saving = N v0 share`` (s per
    request). ``g`` is increasing and concave in ``L``, so Newton started at the dense
    latency ``(C1 - shift C2) / (1 - rate C2)`` (an upper bound, or ``start``) descends monotonically
    to the fixed point; ``steps`` unrolled iterations keep it differentiable (4 reach 1e-14
    relative error against bisection on the fleet's MoE presets up to 97% of saturation). Callers
    handle saturation (``rate C2 >= 1``) before calling. ``saving = 0`` gives the dense form.
    """
    c1 = c1 - shift * c2
    lat = c1 / (1.0 - rate * c2) if start is None else start
    slope_q = -log_q * rate * (k + 1.0)  # d(-q^T)/dL = q^T * slope_q
    for _ in range(steps):
        u = moe_untouched(log_q, k, rate * lat - shift, xp=xp)
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
                          max_iter=500, shift=0.0):
    """Open-loop mean latency (s) with expert coverage and a roofline knee in the verify pass. numpy only.

    Solves ``L = C1 + o C2 + n_v0 (verify_cost_multiplier(others = o) - 1)``, ``o = rate L - shift``
    (:mod:`.arrivals`), for its
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
                                    k, rate, shift=shift)
        nxt = np.where(ok, nxt, np.inf)
        with np.errstate(invalid="ignore"):
            settled = (nxt == lat) | (np.abs(nxt - lat) <= rtol * np.abs(nxt))
        lat = nxt
        if settled.all():
            break
        untouched = np.where(np.isfinite(lat), moe_untouched(log_q, k, rate * np.where(np.isfinite(lat), lat, 0.0)
                                                             - shift), 0.0)
    return lat[()] if lat.ndim == 0 else lat


def latency_knee_closed(c1, c2, compute, knee_tokens, k, concurrency, xp=np):
    """Closed-loop mean latency (s) with a roofline knee: ``C1 + (B - 1) C2 + compute * knee_excess``
    at ``B = concurrency`` streams; ``compute`` (s per request) as in :func:`latency_knee_open`."""
    others = concurrency - 1.0
    return latency_at_load(c1, c2, others) + compute * knee_excess(others, k, knee_tokens, xp=xp)


def latency_knee_open(c1, c2, compute, knee_tokens, k, rate, xp=np, softness=KNEE_SOFTNESS, shift=0.0):
    """Open-loop mean latency (s) with a roofline knee in the verify pass, in closed form.

    Solves ``L = g(L) = C1 + o C2 + compute * knee_excess(o, k, knee)``, ``o = rate L - shift`` the
    others a request meets (``shift`` 0 for Poisson arrivals; :mod:`.arrivals`), for its smallest
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
    beta = (1.0 - shift) * (k + 1.0) / knee_tokens - 1.0
    e = 0.5 * compute
    a_lin = 1.0 - rate * c2 - e * alpha
    b_lin = c1 - shift * c2 + e * beta
    qa = a_lin * a_lin - e * e * alpha * alpha
    w = (a_lin * beta + alpha * b_lin) ** 2 + softness**2 * qa
    root_w = xp.sqrt(xp.maximum(w, 0.0))
    num = b_lin * b_lin - e * e * (beta * beta + softness**2)
    den = a_lin * b_lin + e * e * alpha * beta - e * root_w
    ok_den = xp.abs(den) > 1e-300
    lat = num / xp.where(ok_den, den, 1.0)
    ok = (w >= 0.0) & ok_den & (lat > 0.0) & (a_lin * lat - b_lin >= -1e-9 * xp.abs(b_lin))
    return lat, ok


def speedup(costs, k, tau, prompt_len, output_len, *, rate=None, concurrency=None, xp=np):
    """Latency ratio ``L(k=0, tau=1) / L(k, tau)`` under the given load (dimensionless).

    An MoE verifier (``experts`` set) or a roofline knee (``knee_tokens`` set) uses
    :func:`latency_moe_open` / :func:`latency_moe_closed` (numpy only).

    Parameters
    ----------
    costs : ServiceCosts
        Service-cost coefficients, s.
    k : float or array-like
        Draft length, tokens.
    tau : float or array-like
        Acceptance length at ``k``, tokens per iteration.
    prompt_len, output_len : float or array-like
        Mean prompt and output length, tokens.
    rate : float or array-like, optional
        Open-loop arrival rate, requests/s.
    concurrency : float or array-like, optional
        Closed-loop streams. Give ``rate`` or ``concurrency``, or neither for a request alone on the
        server.
    xp : module, default numpy
        Array namespace: :mod:`numpy`, or :mod:`pytensor.tensor` (dense verifiers only).

    Returns
    -------
    float or array
        The speedup (> 1: speculation is faster). Saturated baseline with a stable speculative run
        gives inf; both saturated gives NaN.

    Raises
    ------
    ValueError
        When both ``rate`` and ``concurrency`` are given.
    """
    if rate is not None and concurrency is not None:
        raise ValueError("give rate or concurrency, not both")
    moe = costs.experts is not None or costs.knee_tokens is not None

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
