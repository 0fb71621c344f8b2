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

A KV cache caps the batch too, at ``kv_cache_tokens`` over the context a running sequence holds
(:func:`kv_tokens_held`), which counts long requests for the time they stay; an engine that
admits on the prompt alone then preempts and prefills again (:func:`preemption_recompute`).

The wait happens before the first token, so it adds to TTFT as well as to the latency.
Functions take ``xp`` as in :mod:`.dense`; where a run's cap is unknown (``has_cap`` false) they
return the uncapped values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cap_capacity", "closed_wait", "kv_tokens_held", "preemption_recompute", "queue_wait", "utilisation_at_cap"]


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


def kv_tokens_held(prompt_len, output_len, output_len_sd=np.nan):
    """Tokens of KV cache a running sequence holds, averaged over the running ones: its prompt and
    ``E[o^2] / (2 E[o]) = (output_len + output_len_sd^2 / output_len) / 2`` of output (all tokens).

    A sequence holds its prompt and, on average over its life, half its output, but the running
    sequences are not a fair sample of the requests: a request stays in the batch for as long as it
    decodes, so one twice as long is twice as likely to be found running (the inspection paradox).
    With outputs ended by EOS (a geometric number of tokens, ``sd`` close to the mean) a running
    sequence holds about its whole mean output, twice what a fixed output length gives. Where the
    spread is unknown (NaN) it is taken as the mean's.

    >>> float(kv_tokens_held(300.0, 200.0, 0.0)), float(kv_tokens_held(300.0, 200.0))
    (400.0, 500.0)
    """
    output_len = np.asarray(output_len, float)
    sd = np.asarray(output_len_sd, float)
    sd = np.where(np.isnan(sd), output_len, sd)
    return np.asarray(prompt_len, float) + 0.5 * (output_len + sd**2 / output_len)


def preemption_recompute(slots, p1, recompute_tokens):
    """What a full batch's requests lose to preemption, s: ``slots * p1 * recompute_tokens``, added to
    the in-service latency of a full batch (``full_latency`` of :func:`queue_wait`, :func:`closed_wait`
    and :func:`cap_capacity`) where the KV cache sets the cap.

    An engine that admits a request once its prompt fits (vLLM) overcommits the cache: the running
    sequences keep growing, and when the cache is full the newest is preempted and later prefilled
    again. With requests waiting, every completion frees its prompt and output, the freed room is
    refilled with prompts at once, and the ``E[o]`` tokens the batch grows by before the next completion
    push out that many tokens of young sequences, which hold little beyond their prompts: about
    ``recompute_tokens = E[o]`` prompt tokens prefilled again per request (``p1``: s per prompt token).
    A full server completes ``slots`` requests per ``full_latency``, so each request's time in a full
    batch grows by ``slots * p1 * E[o]``. Below the cap nothing waits and nothing is preempted; the
    wait formulas see the term only through ``full_latency``.

    >>> float(preemption_recompute(50.0, 2e-4, 900.0))
    9.0
    """
    return slots * p1 * recompute_tokens
