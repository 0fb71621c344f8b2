"""A server's batch cap: at most ``slots`` requests in service, the rest wait in FIFO order.

Engines cap the requests a step carries (vLLM and TensorRT-LLM ``max_num_seqs`` /
``max_batch_size``, SGLang ``--max-running-requests``, llama.cpp ``--parallel``). Below the cap the
laws of :mod:`.dense` and :mod:`.verify_pass` hold; at the cap a full server completes ``slots``
requests per ``full_latency`` seconds, where ``full_latency`` is the closed-loop latency at
``slots`` streams (the in-service time of a request in a full batch), so:

- closed loop, ``N > slots`` streams: every request waits for a slot, and Little's law gives
  ``L = N full_latency / slots`` (continuous at ``N = slots``);
- open loop: the capacity is ``slots / full_latency`` (below the uncapped ``1 / C2``: a full batch's
  requests each carry the load-independent demand too), and a request waits for a slot a mean
  ``W_q`` before its service begins. ``W_q`` is Sakasegawa's approximation for the M/M/c queue,
  ``L_q = rho^sqrt(2 (c + 1)) / (1 - rho)``, ``W_q = L_q / rate`` with ``c = slots`` servers of
  service time ``full_latency`` and ``rho = rate full_latency / slots``: near zero until ``rho``
  nears 1 when the cap is large, exact for one slot.

The wait happens before the first token, so it adds to TTFT as well as to the latency.
Functions take ``xp`` as in :mod:`.dense`; where a run's cap is unknown (``has_cap`` false) they
return the uncapped values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cap_capacity", "closed_wait", "queue_wait", "utilisation_at_cap"]


def utilisation_at_cap(rate, slots, full_latency):
    """``rho = rate full_latency / slots``: the share of the capped server's capacity that an
    open-loop ``rate`` (requests/s) uses; 1 at saturation."""
    return rate * full_latency / slots


def cap_capacity(slots, full_latency):
    """Highest open-loop rate (requests/s) a server capped at ``slots`` requests in service
    sustains: ``slots / full_latency`` (``full_latency``: the closed-loop latency at ``slots``
    streams, s)."""
    return slots / full_latency


def queue_wait(rate, slots, full_latency, has_cap, xp=np, softness=None):
    """Mean wait (s) for a slot at open-loop arrival ``rate`` (requests/s), M/M/c (Sakasegawa).

    Parameters
    ----------
    rate : float or array-like
        Arrival rate, requests/s.
    slots : float or array-like
        The batch cap: requests in service at most. Any value >= 1 where ``has_cap`` is false.
    full_latency : float or array-like
        Closed-loop mean latency at ``slots`` streams, s.
    has_cap : bool or array-like
        Whether the cap is known; where not, the wait is 0 (the uncapped law).
    xp : module, default numpy
        Array namespace.
    softness : float, optional
        ``None`` (numpy): ``+inf`` at or past capacity. A positive value (the model's graph): the
        headroom ``1 - rho`` is floored smoothly at this scale, as the open-loop law's is, so that the
        log-density stays finite and differentiable when a draw crosses the capacity.

    Returns
    -------
    float or array
        Mean wait before service, s.

    Examples
    --------
    One slot is the M/M/1 queue: ``W_q = rho S / (1 - rho)``.

    >>> float(queue_wait(0.5, 1.0, 1.0, True))
    1.0
    """
    rho = utilisation_at_cap(rate, slots, full_latency)
    power = xp.sqrt(2.0 * (slots + 1.0))
    # L_q / rate written without dividing by the rate (0 at rate 0)
    scale = xp.power(xp.maximum(rho, 1e-300), power - 1.0) * full_latency / slots
    if softness is None:
        stable = rho < 1.0
        wait = xp.where(stable, scale / xp.where(stable, 1.0 - rho, 1.0), np.inf)
    else:
        wait = scale / (softness * xp.softplus((1.0 - rho) / softness))
    return xp.where(has_cap, wait, 0.0)


def closed_wait(concurrency, slots, full_latency, has_cap, xp=np):
    """Mean wait (s) for a slot in a closed loop of ``concurrency`` streams: ``N full_latency / slots -
    full_latency`` past the cap (Little's law at the full server's throughput), 0 at or below it or
    where the cap is unknown."""
    over = has_cap & (concurrency > slots)
    return xp.where(over, (concurrency / slots - 1.0) * full_latency, 0.0)
