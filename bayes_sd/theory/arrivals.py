"""How regular an open loop's arrivals are changes how many requests each one meets.

Poisson arrivals see the time average: a request meets ``others = rate L`` others (PASTA and
Little's law), the law of :func:`~bayes_sd.theory.dense.latency_open`. Evenly spaced arrivals
(GuideLLM's ``constant`` profile) meet no one while a request lasts less than the spacing
``1 / rate``: with ``x = rate L`` and equal requests, a request overlaps each of the ``j``-th earlier
and later ones for ``L - j / rate``, on average ``(2 / x) sum_{1 <= j < x} (x - j)`` others: 0 up to
``x = 1``, then ``x - 1`` at every whole ``x`` (at most 0.18 more between). With ``cv2`` the squared
coefficient of variation of the inter-arrival times (1 Poisson, 0 evenly spaced, ``1 / burstiness``
for ``vllm bench serve --burstiness``'s gamma arrivals):

    others = x - (1 - cv2) min(x, 1)

exact at ``cv2 = 1``, the equal-request law's lower envelope at ``cv2 = 0``, linear between (and
burstier than Poisson above 1). The saturation rate ``1 / C2`` is the same whatever ``cv2``:
regular arrivals help below it, most where a request rarely overlaps another.

``others`` is piecewise linear in ``L``: ``cv2 rate L`` up to ``L = 1 / rate``, ``rate L - (1 -
cv2)`` past it, the larger of the two when ``cv2 <= 1`` (their smaller above). Each open-loop
solver takes one piece as ``(rate, shift)``, ``others = rate L - shift``
(:func:`open_loop_pieces`), and, the latency being increasing in others, the open-loop latency is
the larger of the two pieces' (smaller above 1; :func:`combine_pieces`).

Evenly spaced sends do not make evenly spaced requests: their lengths vary, prefills interleave and
clients jitter, so requests overlap before ``x = 1``. The model takes an open loop sent more regularly
than Poisson as ``cv2 + (1 - cv2) irregularity`` (:func:`effective_cv2`), ``irregularity`` in [0, 1]
learned where such runs are fitted (prior ``arrival_irregularity``). Without it a fit of runs that all
sit below ``x = 1`` would not see ``C2`` at all.
"""

from __future__ import annotations

import numpy as np

from .dense import latency_open

__all__ = ["POISSON", "others_open", "open_loop_pieces", "combine_pieces", "latency_open_arrivals", "arrival_cv2_of",
           "effective_cv2"]

#: ``cv2`` of Poisson arrivals, and what an open loop whose arrivals are not recorded is taken to have
POISSON = 1.0


def others_open(rate, latency, arrival_cv2, xp=np):
    """Mean number of other requests an open-loop request meets (dimensionless).

    Parameters
    ----------
    rate : float or array-like
        Arrival rate, requests/s.
    latency : float or array-like
        Mean latency, s.
    arrival_cv2 : float or array-like
        Squared coefficient of variation of the inter-arrival times (1 Poisson, 0 evenly spaced).
    xp : module, default numpy
        Array namespace.

    Returns
    -------
    float or array
        ``x - (1 - cv2) min(x, 1)`` with ``x = rate * latency``.

    Examples
    --------
    >>> float(others_open(0.5, 1.5, 0.0)), float(others_open(0.5, 1.5, 1.0)), float(others_open(1.0, 3.0, 0.0))
    (0.0, 0.75, 2.0)
    """
    x = rate * latency
    return x - (1.0 - arrival_cv2) * xp.minimum(x, 1.0)


def open_loop_pieces(rate, arrival_cv2):
    """The two linear pieces of :func:`others_open` in ``L``, each ``(rate', shift)`` with
    ``others = rate' L - shift``: ``(cv2 rate, 0)`` and ``(rate, 1 - cv2)`` (requests/s, requests).

    Examples
    --------
    >>> open_loop_pieces(2.0, 0.25)
    ((0.5, 0.0), (2.0, 0.75))
    """
    return (arrival_cv2 * rate, 0.0 * arrival_cv2), (rate + 0.0 * arrival_cv2, 1.0 - arrival_cv2)


def combine_pieces(latency_a, latency_b, arrival_cv2, xp=np):
    """Open-loop mean latency (s) from the latencies the two pieces of :func:`open_loop_pieces` give on
    their own: the larger where ``cv2 <= 1`` (others is the larger piece there), the smaller above.

    Examples
    --------
    >>> float(combine_pieces(1.0, 1.2, 0.0)), float(combine_pieces(1.0, 1.2, 2.0))
    (1.2, 1.0)
    """
    return xp.where(arrival_cv2 <= 1.0, xp.maximum(latency_a, latency_b), xp.minimum(latency_a, latency_b))


def latency_open_arrivals(c1, c2, rate, arrival_cv2, xp=np):
    """Open-loop mean latency (s) of the dense law, ``L = C1 + others C2``, for arrivals of any regularity.

    Each piece of :func:`open_loop_pieces` solved in closed form, ``(C1 - shift C2) / (1 - rate' C2)``
    (:func:`~bayes_sd.theory.dense.latency_open`), and combined by :func:`combine_pieces`. A piece
    whose numerator is negative (``C2 > C1``: a request would meet fewer than none) never wins the
    combination where ``cv2 <= 1``; ``+inf`` past ``rate C2 >= 1`` whatever ``cv2``.

    Parameters
    ----------
    c1, c2 : float or array-like
        Load-independent demand and demand added per other request met, s.
    rate, arrival_cv2 : float or array-like
        Arrival rate (requests/s) and how regular the arrivals are (as in :func:`others_open`).
    xp : module, default numpy
        Array namespace.

    Returns
    -------
    float or array
        Mean latency, s (``+inf`` where saturated).

    Examples
    --------
    >>> float(latency_open_arrivals(1.0, 0.5, 0.5, 1.0)), float(latency_open_arrivals(1.0, 0.5, 0.5, 0.0))
    (1.3333333333333333, 1.0)
    >>> float(latency_open_arrivals(1.0, 1.5, 0.5, 0.0)), float(latency_open_arrivals(1.0, 0.5, 2.0, 0.0))
    (1.0, inf)
    """
    (rate_a, shift_a), (rate_b, shift_b) = open_loop_pieces(rate, arrival_cv2)
    piece_a = latency_open(c1 - shift_a * c2, c2, rate_a, xp=xp)
    piece_b = latency_open(c1 - shift_b * c2, c2, rate_b, xp=xp)
    return combine_pieces(piece_a, piece_b, arrival_cv2, xp=xp)


def arrival_cv2_of(values) -> np.ndarray:
    """Per-run ``cv2`` as floats, Poisson (:data:`POISSON`) where not recorded (NaN or absent)."""
    cv2 = np.asarray(values, dtype=float)
    return np.where(np.isfinite(cv2), cv2, POISSON)


def effective_cv2(arrival_cv2, irregularity, xp=np):
    """The ``cv2`` the open-loop law uses: arrivals sent more regularly than Poisson (``cv2 < 1``) moved
    toward it by ``irregularity`` (in [0, 1]: 0 takes the sends as the requests' arrivals, 1 as Poisson);
    Poisson and burstier arrivals as they are.

    Examples
    --------
    >>> float(effective_cv2(0.0, 0.25)), float(effective_cv2(1.0, 0.25)), float(effective_cv2(2.0, 0.25))
    (0.25, 1.0, 2.0)
    """
    return arrival_cv2 + xp.maximum(1.0 - arrival_cv2, 0.0) * irregularity
