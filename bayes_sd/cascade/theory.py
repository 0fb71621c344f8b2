"""Closed-form latency of a three-model cascade (PyramidSD): drafter -> qualifier -> verifier.

Units: times in seconds (s), rates in requests/s, lengths in tokens. Pure numpy math; the
functions taking ``xp`` also run on :mod:`pytensor.tensor` (the fit in
:mod:`bayes_sd.cascade.model`), with the draft lengths ``k_draft`` / ``k_qual`` as numpy data.

The mechanism (one verifier iteration of one sequence, batched lockstep form)
----------------------------------------------------------------------------
PyramidSD (Byun et al., "3-Model Speculative Decoding") puts a mid-size *qualifier* between
a small drafter and the verifier: the qualifier screens draft tokens with a relaxed (fuzzy)
acceptance rule, and the verifier checks only what the qualifier let through. Here:

1. ``k_qual`` qualifier *rounds* per verifier iteration. In each round the drafter proposes
   ``k_draft`` tokens (``k_draft`` drafter passes, one sequence-token each) and the qualifier
   checks them in one pass (``k_draft + 1`` sequence-tokens). It keeps the accepted prefix
   and adds one token of its own (the correction at the first rejection, or the bonus token
   when all ``k_draft`` were accepted), exactly like one iteration of ordinary speculative
   decoding between drafter and qualifier. With per-position acceptance ``a_dq`` a round
   yields ``X`` tokens, ``P(X >= x) = a_dq^(x-1)`` for ``x = 1..k_draft+1``, so
   ``E[X] = tau_constant(a_dq, k_draft)``.
2. The verifier checks the block of ``K = X_1 + ... + X_kqual`` qualified tokens in one
   pass (``K + 1`` sequence-tokens) and, with per-position acceptance ``a_qv``, emits the
   accepted prefix plus its own token: ``tau_constant(a_qv, K)`` tokens on average given K.

The number of passes per iteration is fixed (``k_qual * k_draft`` drafter, ``k_qual``
qualifier, one verifier pass), which is what a batched server does: all sequences step in
lockstep, only the block length ``K`` differs between them.

Acceptance length. With the probability generating function of one round
``phi(s) = E[s^X] = s ((1 - a_dq) tau_constant(a_dq s, k_draft - 1) + (a_dq s)^k_draft)``
and independent rounds, ``E[a^K] = phi(a)^k_qual`` and::

    tau_v = E[tau_constant(a_qv, K)] = (1 - a_qv phi(a_qv)^k_qual) / (1 - a_qv)

(limit ``a_qv -> 1``: ``1 + E[K]``), with ``E[K] = k_qual tau_constant(a_dq, k_draft)``.

Demand. With ``N = (D - 1) / tau_v + 1`` verifier iterations and ``ctx = c1 (P + D/2)``,
theory's ``Demand`` gets the drafter and qualifier work in its ``draft`` fields::

    c1_draft  = N k_qual (k_draft (d0 + d1) + q0 + (k_draft + 1) q1)
    c2_draft  = N k_qual (k_draft d1 + (k_draft + 1) q1)
    c1_verify = N (v0 + (1 + E[K]) v1 + ctx)        c2_verify = N ((1 + E[K]) v1 + ctx)

and prefill as in :func:`bayes_sd.theory.demand`; latency is then theory's
``latency_open`` / ``latency_closed``.

Exact reductions (tested): ``k_draft = 0`` is plain two-model SD with the qualifier as the
drafter (``theory.demand`` with ``d0, d1 = q0, q1`` and ``k = k_qual``); ``k_qual = 0`` is
no speculation (``theory.demand`` with ``k = 0``); plain drafter -> verifier SD is the same
``k_draft = 0`` form with the drafter's costs in the qualifier's place
(:func:`config_demand`). A free qualifier that accepts everything (``q0 = q1 = 0``,
``a_dq = 1``, ``k_qual = 1``) equals plain SD with ``k = k_draft + 1`` minus one drafter pass
per iteration: its bonus token is a free draft token.

Assumptions: the verifier accepts each block position with the same ``a_qv`` whether the
token came from the drafter or the qualifier (the qualifier's screening is what makes them
alike); acceptance is constant per position; the qualifier, like the drafter in
``theory``, has no context-length (attention) term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bayes_sd import theory

__all__ = [
    "PyramidCosts",
    "drafter_as_qualifier",
    "round_pgf",
    "block_length",
    "pyramid_tau",
    "pyramid_demand",
    "config_demand",
    "pyramid_latency",
    "plain_latency",
    "latency_from_demand",
]


@dataclass(frozen=True)
class PyramidCosts:
    """Service-cost coefficients of the qualifier (floats, numpy arrays or pytensor tensors).

    Parameters
    ----------
    q0 : float or array-like
        s, fixed cost of one qualifier forward pass (weights read, launch).
    q1 : float or array-like
        s per sequence-token in a qualifier pass (each sequence carries k_draft + 1 tokens).
    """

    q0: Any
    q1: Any


def drafter_as_qualifier(costs: theory.ServiceCosts) -> PyramidCosts:
    """The drafter's pass costs in the qualifier's place: with ``k_draft = 0`` this makes the
    cascade plain drafter -> verifier speculative decoding (see :func:`config_demand`)."""
    return PyramidCosts(q0=costs.d0, q1=costs.d1)


def round_pgf(a_dq, k_draft, s, xp=np):
    """``E[s^X]`` for the tokens ``X`` one qualifier round yields (probability generating function).

    ``X - 1`` is the number of leading drafter tokens the qualifier accepts out of
    ``k_draft`` (per-position acceptance ``a_dq``); ``k_draft = 0`` gives ``X = 1``, ``s``.
    """
    y = a_dq * s
    return s * ((1.0 - a_dq) * theory.tau_constant(y, k_draft - 1.0, xp=xp) + y ** k_draft)


def block_length(a_dq, k_draft, k_qual, xp=np):
    """Mean qualified tokens per verifier iteration (tokens): ``k_qual * tau_constant(a_dq, k_draft)``."""
    return k_qual * theory.tau_constant(a_dq, k_draft, xp=xp)


def pyramid_tau(a_dq, a_qv, k_draft, k_qual, xp=np):
    """Tokens emitted per verifier iteration (acceptance length, tokens, bonus included).

    ``(1 - a_qv phi(a_qv)^k_qual) / (1 - a_qv)`` with ``phi`` = :func:`round_pgf`; in the
    limit ``a_qv -> 1`` it is ``1 + block_length``. ``k_qual = 0`` gives 1 (no speculation);
    ``k_draft = 0`` gives ``theory.tau_constant(a_qv, k_qual)``.
    """
    near = xp.abs(1.0 - a_qv) < 1e-9
    den = xp.where(near, 1.0, 1.0 - a_qv)  # safe denominator keeps pytensor gradients finite
    geo = (1.0 - a_qv * round_pgf(a_dq, k_draft, a_qv, xp=xp) ** k_qual) / den
    return xp.where(near, 1.0 + block_length(a_dq, k_draft, k_qual, xp=xp), geo)


def pyramid_demand(costs, qcosts, k_draft, k_qual, a_dq, a_qv, prompt_len, output_len, xp=np):
    """Per-request demand (s) of the cascade, as a :class:`bayes_sd.theory.Demand`.

    ``costs``: verifier and drafter coefficients (:class:`~bayes_sd.theory.ServiceCosts`, s);
    ``qcosts``: qualifier coefficients (:class:`PyramidCosts`, s); ``k_draft``: drafter tokens
    per qualifier round; ``k_qual``: qualifier rounds per verifier iteration; ``a_dq``,
    ``a_qv``: per-position acceptance of drafter tokens by the qualifier and of qualified
    tokens by the verifier; ``prompt_len`` / ``output_len`` in tokens. The drafter and
    qualifier work both land in the ``draft`` fields (see the module docstring).
    """
    c, q = costs, qcosts
    tau_v = pyramid_tau(a_dq, a_qv, k_draft, k_qual, xp=xp)
    n = theory.iterations(output_len, tau_v)
    verify_tokens = 1.0 + block_length(a_dq, k_draft, k_qual, xp=xp)
    ctx = c.c1 * (prompt_len + output_len / 2.0)
    return theory.Demand(
        c1_prefill=c.p0 + c.p1 * prompt_len,
        c1_draft=n * k_qual * (k_draft * (c.d0 + c.d1) + q.q0 + (k_draft + 1.0) * q.q1),
        c1_verify=n * (c.v0 + verify_tokens * c.v1 + ctx),
        c2_prefill=c.p1 * prompt_len,
        c2_draft=n * k_qual * (k_draft * c.d1 + (k_draft + 1.0) * q.q1),
        c2_verify=n * (verify_tokens * c.v1 + ctx),
    )


def config_demand(costs, qcosts, plain, k_draft, k_qual, a_dq, a_qv, a_dv, prompt_len, output_len, xp=np):
    """Demand (s) of a mix of plain and cascade configurations in one vectorised expression.

    ``plain`` (bool array): rows that are plain drafter -> verifier SD with draft length
    ``k_draft`` and acceptance ``a_dv`` (their ``k_qual`` is ignored); the other rows are
    cascades. A plain row is evaluated as the cascade with ``k_draft = 0``,
    ``k_qual = k_draft`` and the drafter's costs as the qualifier's, which is exactly
    ``theory.demand(costs, k, tau_constant(a_dv, k))``.
    """
    plain = np.asarray(plain, bool)
    k_draft = np.asarray(k_draft, float)
    kd = np.where(plain, 0.0, k_draft)
    kq = np.where(plain, k_draft, np.asarray(k_qual, float))
    q = PyramidCosts(q0=xp.where(plain, costs.d0, qcosts.q0), q1=xp.where(plain, costs.d1, qcosts.q1))
    a_v = xp.where(plain, a_dv, a_qv)
    return pyramid_demand(costs, q, kd, kq, a_dq, a_v, prompt_len, output_len, xp=xp)


def latency_from_demand(dem: theory.Demand, *, rate=None, concurrency=None, xp=np):
    """Mean latency (s) from a demand: open loop at ``rate`` (requests/s), closed loop at
    ``concurrency`` (streams), or a request alone when neither is given. ``inf`` past saturation."""
    if rate is not None and concurrency is not None:
        raise ValueError("give rate (requests/s, open loop) or concurrency (streams, closed loop), not both")
    if rate is not None:
        return theory.latency_open(dem.c1, dem.c2, rate, xp=xp)
    return theory.latency_closed(dem.c1, dem.c2, 1.0 if concurrency is None else concurrency)


def pyramid_latency(costs, qcosts, k_draft, k_qual, a_dq, a_qv, prompt_len, output_len, *,
                    rate=None, concurrency=None, xp=np):
    """Mean request latency (s) of the cascade at ``rate`` (requests/s) or ``concurrency`` (streams).

    ``L = C1 / (1 - rate C2)`` open loop (``inf`` when ``rate C2 >= 1``), ``C1 + (B - 1) C2``
    closed loop, ``C1`` for a request alone; demand from :func:`pyramid_demand`.
    """
    dem = pyramid_demand(costs, qcosts, k_draft, k_qual, a_dq, a_qv, prompt_len, output_len, xp=xp)
    return latency_from_demand(dem, rate=rate, concurrency=concurrency, xp=xp)


def plain_latency(costs, k, a_dv, prompt_len, output_len, *, rate=None, concurrency=None, xp=np):
    """Mean latency (s) of plain drafter -> verifier SD (draft length ``k``, acceptance ``a_dv``):
    :func:`bayes_sd.theory.demand` with ``tau_constant(a_dv, k)``, under the given load."""
    dem = theory.demand(costs, k, theory.tau_constant(a_dv, k, xp=xp), prompt_len, output_len, xp=xp)
    return latency_from_demand(dem, rate=rate, concurrency=concurrency, xp=xp)
