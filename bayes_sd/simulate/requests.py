"""SYNTHETIC requests of one simulated run, before scheduling: per-position acceptance, token lengths,
open-loop send times, per-run seeds and the request stream that :mod:`.server` (and
:mod:`bayes_sd.cascade.simulate`) schedule; the acceptance length they imply (:func:`theory_tau`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bayes_sd.theory import tau_per_position

__all__ = ["acceptance_vector", "theory_tau", "token_lengths", "arrival_times", "run_seed", "RequestStream",
           "request_stream", "acceptance_matrix"]


def acceptance_vector(acceptance, k: int) -> np.ndarray:
    """Per-position acceptance ``a_1..a_k`` (probabilities) from a scalar or a sequence.

    Parameters
    ----------
    acceptance : float or sequence of float
        A scalar gives constant acceptance; a sequence must have at least ``k`` entries
        (extra positions are ignored). Probabilities in [0, 1].
    k : int
        Draft length, tokens.

    Returns
    -------
    numpy.ndarray
        Shape ``(k,)``: ``a_1..a_k``.

    Raises
    ------
    ValueError
        When the sequence has fewer than ``k`` entries or a probability is outside [0, 1].

    Examples
    --------
    >>> acceptance_vector(0.7, 3)
    array([0.7, 0.7, 0.7])
    """
    a = np.asarray(acceptance, float)
    if a.ndim == 0:
        a = np.full(k, float(a))
    elif a.shape[0] < k:
        raise ValueError(f"acceptance has {a.shape[0]} positions, k = {k} needs at least k")
    a = a[:k]
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"acceptance probabilities must be in [0, 1], got {a}")
    return a


def token_lengths(rng: np.random.Generator, mean: float, cv: float, n: int) -> np.ndarray:
    """``n`` token lengths (int, >= 1) with mean ``mean`` tokens: exact for ``cv = 0``, lognormal
    with coefficient of variation ``cv`` otherwise (draws from ``rng`` only then)."""
    if cv <= 0:
        return np.full(n, max(1, int(round(mean))), np.int64)
    s2 = np.log1p(cv * cv)
    x = rng.lognormal(np.log(mean) - 0.5 * s2, np.sqrt(s2), n)
    return np.maximum(1, np.rint(x)).astype(np.int64)


def arrival_times(rng: np.random.Generator, n: int, rate_rps: float, arrivals: str = "poisson") -> np.ndarray:
    """Open-loop send times (s) of ``n`` requests at ``rate_rps`` requests/s, the first at 0:
    ``'poisson'`` (exponential gaps, drawn from ``rng``) or ``'constant'`` (gaps ``1 / rate_rps``)."""
    if not rate_rps > 0:
        raise ValueError(f"rate_rps must be > 0 (requests/s), got {rate_rps}")
    if arrivals == "poisson":
        gaps = rng.exponential(1.0 / rate_rps, n)
    elif arrivals == "constant":
        gaps = np.full(n, 1.0 / rate_rps)
    else:
        raise ValueError(f"arrivals must be 'poisson' or 'constant', got {arrivals!r}")
    return np.concatenate(([0.0], np.cumsum(gaps[:-1])))


def run_seed(seed: int, i: int) -> int:
    """Seed of run ``i`` of a batch seeded with ``seed``: the first word of ``SeedSequence([seed, i])``."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


class RequestStream(NamedTuple):
    """One run's requests before scheduling (from :func:`request_stream`)."""

    closed: bool  #: closed loop (``concurrency`` streams) or open loop
    concurrency: int  #: closed-loop streams (0 in open loop)
    start: np.ndarray  #: s, open-loop send times (zeros in closed loop: filled by the scheduler)
    prompt: np.ndarray  #: tokens per request (int64)
    output: np.ndarray  #: tokens per request (int64)
    rng: np.random.Generator  #: for further per-request draws (acceptance), after the lengths
    kernel_seed: int  #: seed of the scheduler kernel's random stream


def request_stream(*, n_requests: int, rate_rps: float | None, concurrency: int | None, arrivals: str,
                   prompt_len: float, output_len: float, length_cv: float, seed: int) -> RequestStream:
    """Check a run's load and draw its requests: send times (open loop), prompt and output lengths.

    ``rate_rps`` (requests/s, open loop, ``'poisson'`` or ``'constant'`` ``arrivals``) or
    ``concurrency`` (closed-loop streams): exactly one. Lengths in tokens (mean; ``length_cv``
    = 0: exact). From ``SeedSequence(seed)``: its first child seeds ``rng`` (arrival gaps, then
    prompt lengths, then output lengths, then whatever the caller draws), its first state word
    the kernel.
    """
    if (rate_rps is None) == (concurrency is None):
        raise ValueError("give exactly one of rate_rps (open loop, requests/s) or concurrency (closed loop, streams)")
    n = int(n_requests)
    if n < 1:
        raise ValueError(f"n_requests must be >= 1, got {n_requests}")
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss.spawn(1)[0])
    kernel_seed = int(ss.generate_state(1)[0] % (2**31 - 1))
    closed = concurrency is not None
    if closed:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        start = np.zeros(n)
    else:
        start = arrival_times(rng, n, rate_rps, arrivals)
    prompt = token_lengths(rng, prompt_len, length_cv, n)
    output = token_lengths(rng, output_len, length_cv, n)
    return RequestStream(closed, int(concurrency or 0), start, prompt, output, rng, kernel_seed)


def acceptance_matrix(rng, a: np.ndarray, spread: float, n: int) -> np.ndarray:
    """(n, k) per-request acceptance: logit(a_j) shifted by ``spread * z_i`` per request."""
    if spread <= 0 or a.size == 0:
        return np.broadcast_to(a, (n, a.size)).copy()
    lo = np.log(np.clip(a, 1e-9, 1 - 1e-9)) - np.log1p(-np.clip(a, 1e-9, 1 - 1e-9))
    z = rng.standard_normal(n)[:, None]
    return 1.0 / (1.0 + np.exp(-(lo[None, :] + spread * z)))


def theory_tau(acceptance, k: int) -> float:
    """Acceptance length ``tau`` (tokens) implied by ``acceptance`` at draft length ``k``.

    Parameters
    ----------
    acceptance : float or sequence of float
        Per-position acceptance ``a_1..a_k`` (sequence) or constant ``a`` (scalar).
    k : int
        Draft length, tokens.

    Returns
    -------
    float
        Tokens per verify step, bonus token included (1 for ``k = 0``).

    Raises
    ------
    ValueError
        As :func:`acceptance_vector`.

    Examples
    --------
    >>> theory_tau(0.5, 2)
    1.75
    """
    return float(tau_per_position(acceptance_vector(acceptance, k))) if k > 0 else 1.0
