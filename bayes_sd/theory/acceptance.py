"""Per-position acceptance that decays with draft position (pure math, numpy or pytensor).

A drafter's guess at draft position ``j`` is accepted (given that positions ``1..j-1``
were) with probability ``a_j``. Measured in vLLM, ``a_j`` falls with ``j``: the drafter
conditions on its own earlier guesses, so its errors compound. The constant-acceptance
formula ``tau = (1 - a^(k+1)) / (1 - a)`` (:func:`bayes_sd.theory.tau_constant`) then
over-predicts the acceptance length at large ``k``.

Parameterisation (logit-linear)::

    logit a_j = logit a1 - decay * (j - 1),      j = 1..k

``a1`` (probability) is the first-position acceptance, ``decay`` the drop of the log-odds
per position (logit units per position). Why this form rather than geometric
``a_j = a1 * r^(j-1)``: every real ``decay`` gives valid probabilities (no ``r <= 1`` or
``a1 r^(j-1) <= 1`` constraint), so a model can put an unconstrained Normal prior on it and
``decay = 0`` is exactly the constant model (``decay < 0``, rising acceptance, stays legal);
on the real EAGLE k-sweeps both forms fit equally well (``bench/acceptance_positions.py``).

Acceptance length (tokens per verify iteration, bonus token included)::

    tau = 1 + sum_{j=1..k} prod_{i<=j} a_i

Functions taking ``xp`` use only arithmetic, ``xp.exp``, ``xp.log``, ``xp.log1p``,
``xp.clip``, ``xp.where`` and ``xp.stack``, and never branch in Python on array values, so
they run on numpy arrays (default) and on pytensor tensors (``xp=pytensor.tensor``).
Positions are unrolled in a Python loop over ``1..k_max``, a static number: ``k`` itself
may differ per row (a mask ``j <= k`` drops the positions past each row's draft length).
"""

from __future__ import annotations

import numpy as np

__all__ = ["logit", "expit", "position_acceptance", "survival", "tau_decaying", "tau_sq_decaying",
           "tau_moments_decaying", "information_centre", "implied_a1", "per_position_from_sweep",
           "decay_from_positions"]

_EPS = 1e-12


def logit(p, xp=np):
    """Log-odds ``log(p / (1 - p))`` of a probability ``p``, clipped to [1e-12, 1 - 1e-12]."""
    p = xp.clip(p, _EPS, 1.0 - _EPS)
    return xp.log(p) - xp.log1p(-p)


def expit(x, xp=np):
    """Inverse of :func:`logit`: ``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + xp.exp(-x))


def _k_max(k, k_max) -> int:
    if k_max is not None:
        return int(k_max)
    try:
        arr = np.asarray(k, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("k is symbolic (not a number or numpy array): pass k_max=<largest draft length> "
                         "so that the positions 1..k_max can be unrolled") from None
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr < 0)):
        raise ValueError(f"k (draft length) must be finite and >= 0, got {arr}")
    return int(np.max(arr)) if arr.size else 0


def position_acceptance(a1, decay, k, xp=np):
    """Per-position acceptance ``a_1..a_k`` (probabilities), shape ``(..., k)``.

    ``a1``: first-position acceptance in [0, 1]; ``decay``: log-odds drop per position
    (any real; 0 = constant acceptance). ``k`` is a plain int here (the length of the
    returned last axis); ``a1`` and ``decay`` broadcast together over the leading axes.
    """
    k = int(k)
    if k < 0:
        raise ValueError(f"k (draft length) must be >= 0, got {k}")
    if k == 0:
        return _empty(a1, decay, xp)
    base = logit(a1, xp=xp)
    return xp.stack([expit(base - decay * float(j), xp=xp) for j in range(k)], axis=-1)


def survival(a1, decay, k, xp=np):
    """``s_j = prod_{i<=j} a_i`` for ``j = 1..k``, shape ``(..., k)``: the share of drafts whose
    first ``j`` tokens are all accepted (what vLLM reports as per-position acceptance rates)."""
    k = int(k)
    if k < 0:
        raise ValueError(f"k (draft length) must be >= 0, got {k}")
    if k == 0:
        return _empty(a1, decay, xp)
    return xp.stack(list(_survival_terms(a1, decay, k, xp)), axis=-1)


def _empty(a1, decay, xp):
    """A (..., 0) array with the broadcast leading shape of ``a1`` and ``decay``."""
    return xp.stack([0.0 * (a1 + decay)], axis=-1)[..., :0]


def _survival_terms(a1, decay, k_max, xp):
    """Yield ``s_1..s_k_max`` (static unrolled loop: no Python branching on values)."""
    base = logit(a1, xp=xp)
    s = 1.0
    for j in range(k_max):
        s = s * expit(base - decay * float(j), xp=xp)
        yield s


def tau_decaying(a1, decay, k, xp=np, k_max=None):
    """Acceptance length (tokens per verify iteration) under logit-linear decaying acceptance.

    ``tau = 1 + sum_{j=1..k} prod_{i<=j} a_i`` with ``logit a_j = logit a1 - decay (j - 1)``.

    Parameters
    ----------
    a1 : first-position acceptance (probability in [0, 1]); float, array or tensor.
    decay : log-odds drop per draft position (logit units per position); 0 gives
        :func:`bayes_sd.theory.tau_constant` with ``a = a1``.
    k : draft length per row (tokens, >= 0; 0 gives tau = 1). A number or numpy array
        (float or int) broadcasting with ``a1`` and ``decay``; rows may have different k.
    xp : :mod:`numpy` (default) or :mod:`pytensor.tensor`.
    k_max : largest draft length to unroll; default ``max(k)``. Required when ``k`` is a
        symbolic tensor; ``k`` values above ``k_max`` are truncated at ``k_max``.

    Returns tokens per verify iteration, in ``[1, k + 1]``, shaped like the broadcast of
    ``a1``, ``decay`` and ``k``. Differentiable in ``a1`` and ``decay`` (no branching on values).
    """
    return tau_moments_decaying(logit(a1, xp=xp), decay, k, xp=xp, k_max=k_max)[0]


def tau_moments_decaying(logit_a1, decay, k, xp=np, k_max=None):
    """``(tau, E[Y^2])`` of :func:`tau_decaying` and :func:`tau_sq_decaying` (which take it from here)
    in one pass over the positions, given the first position's log-odds ``logit_a1`` (no round trip
    through a probability: the form a model's gradient evaluates fastest). ``s_j`` is accumulated in
    log space, ``log s_j = sum_{i<=j} log expit(logit_a1 - decay (i - 1))``."""
    km = _k_max(k, k_max)
    tau = 1.0 + 0.0 * (logit_a1 + decay + k)
    tau_sq = tau
    log_s = 0.0
    for j in range(1, km + 1):
        x = logit_a1 - decay * float(j - 1)
        log_s = log_s - (xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0.0))  # log expit(x), stable
        s = xp.where(k >= j, xp.exp(log_s), 0.0)
        tau, tau_sq = tau + s, tau_sq + (2.0 * j + 1.0) * s
    return tau, tau_sq


def tau_sq_decaying(a1, decay, k, xp=np, k_max=None):
    """Second moment ``E[Y^2]`` (tokens^2) of the tokens one verify iteration yields under
    logit-linear decaying acceptance (arguments as :func:`tau_decaying`).

    ``E[Y^2] = sum_{j=1..k+1} (2j - 1) P(Y >= j) = 1 + sum_{j=1..k} (2j + 1) prod_{i<=j} a_i``;
    with ``tau`` it gives the iteration-boundary term of :func:`bayes_sd.theory.iterations`.
    """
    return tau_moments_decaying(logit(a1, xp=xp), decay, k, xp=xp, k_max=k_max)[1]


def information_centre(a, k):
    """Draft positions past the first at which a run's acceptance length is most sensitive to the
    per-position log-odds, for constant acceptance ``a`` at draft length ``k``. numpy only.

    The log-odds of position ``i`` moves ``tau`` by ``(1 - a_i) sum_{j>=i} s_j``; this is the mean of
    ``i - 1`` under those weights. A latent acceptance placed there is, to first order, uncorrelated
    with the decay that runs at one ``k`` cannot identify (about 0.3 positions at ``k = 2``, 1.6 at
    ``k = 7`` for ``a = 0.8``). ``k = 0`` gives 0.
    """
    a, k = np.broadcast_arrays(np.clip(np.asarray(a, float), 0.0, 1.0), np.asarray(k, float))
    km = int(np.max(k)) if k.size else 0
    j = np.arange(1, km + 1)
    s = np.where(j <= k[..., None], a[..., None] ** j, 0.0)  # survival s_j, 0 past each k
    tail = np.flip(np.cumsum(np.flip(s, -1), -1), -1)  # sum_{j>=i} s_j
    total = tail.sum(-1)
    out = np.divide((tail * (j - 1)).sum(-1), total, out=np.zeros(total.shape), where=total > 0)
    return out[()] if out.ndim == 0 else out


def implied_a1(tau, k, decay, n_iter=64):
    """First-position acceptance ``a1`` with ``tau_decaying(a1, decay, k) = tau``. numpy only.

    Vectorised bisection (``tau`` is increasing in ``a1``); ``tau`` (tokens) is clipped to
    [1, k + 1]; entries with ``k = 0`` (no information) are NaN. ``decay = 0`` gives
    :func:`bayes_sd.theory.implied_acceptance`.
    """
    tau, k, decay = np.broadcast_arrays(np.asarray(tau, float), np.asarray(k, float), np.asarray(decay, float))
    target = np.clip(tau, 1.0, k + 1.0)
    lo, hi = np.zeros(tau.shape), np.ones(tau.shape)
    km = _k_max(k, None)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        below = tau_decaying(mid, decay, k, k_max=km) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out = np.where(k > 0, 0.5 * (lo + hi), np.nan)
    return out[()] if out.ndim == 0 else out


def per_position_from_sweep(k, tau):
    """Empirical per-position acceptance from a k-sweep of acceptance lengths. numpy only.

    With a drafter whose guess at position ``j`` does not depend on ``k`` (EAGLE-style
    autoregressive drafting), ``tau(k) - tau(k - 1) = s_k``, the share of drafts with the
    first ``k`` tokens accepted, and ``a_k = s_k / s_{k-1}``. Needs consecutive ``k``.
    Returns ``(k[1:], s, a)`` for the positions after the smallest ``k``; ``a`` has NaN
    where ``s_{k-1}`` is unknown (the first difference). Noisy: rounding of ``tau`` to 0.01
    tokens moves small ``s`` by a large fraction.
    """
    k = np.asarray(k, float)
    tau = np.asarray(tau, float)
    if k.shape != tau.shape or k.ndim != 1 or k.size < 2:
        raise ValueError("k and tau must be 1-D arrays of the same length >= 2 (one acceptance length per k)")
    order = np.argsort(k)
    k, tau = k[order], tau[order]
    if not np.all(np.diff(k) == 1):
        raise ValueError(f"k must be consecutive integers (k = {k.tolist()}); fix: pass one run per k without gaps")
    s = np.diff(tau)
    a = np.concatenate(([np.nan], s[1:] / np.where(s[:-1] > 0, s[:-1], np.nan)))
    return k[1:], s, a


def decay_from_positions(survival, drafts):
    """One run's per-position acceptance, reduced to its slope in log-odds per draft position with the
    standard error of its counts. numpy only.

    ``survival`` (length ``k``, fractions) is ``s_j``, the share of drafts whose first ``j`` tokens were
    all accepted (vLLM's per-position acceptance rates); ``drafts`` the number of drafts (verify steps
    that carried them). Position ``j`` was reached by ``n s_{j-1}`` drafts (``s_0 = 1``) and accepted by
    ``n s_j``, so its conditional acceptance is a binomial proportion; its log-odds (continuity
    corrected, ``(n s_j + 1/2) / (n s_{j-1} + 1)``) has variance ``1 / ((n s_{j-1} + 1) a_j (1 - a_j))``.
    The weighted least-squares slope of the log-odds on ``j - 1`` is the run's estimate of ``-decay``
    under ``logit a_j = logit a1 - decay (j - 1)`` with the run's own level profiled out: the slope
    carries what the run says about the shape and nothing about the level, which its acceptance length
    already says.

    Parameters
    ----------
    survival : array_like
        ``s_1..s_k`` (fractions in [0, 1], non-increasing), ``k >= 2``.
    drafts : float
        Drafts counted (> 0).

    Returns
    -------
    (float, float)
        The slope (log-odds per position; ``-decay``) and its standard error; ``(nan, nan)`` when
        ``k < 2`` or ``drafts <= 0``.

    Examples
    --------
    >>> s = survival(0.8, 0.3, 4)
    >>> slope, se = decay_from_positions(s, 1e6)
    >>> round(float(slope), 2), bool(se < 0.01)
    (-0.3, True)
    """
    s = np.clip(np.asarray(survival, float), 0.0, 1.0)
    if s.ndim != 1 or s.size < 2 or not drafts > 0:
        return float("nan"), float("nan")
    reached = float(drafts) * np.concatenate(([1.0], s[:-1]))
    a = (float(drafts) * s + 0.5) / (reached + 1.0)
    w = (reached + 1.0) * a * (1.0 - a)
    x = np.arange(s.size, dtype=float)
    xbar = float((w * x).sum() / w.sum())
    sxx = float((w * (x - xbar) ** 2).sum())
    slope = float((w * (x - xbar) * logit(a)).sum() / sxx)
    return slope, float(1.0 / np.sqrt(sxx))
