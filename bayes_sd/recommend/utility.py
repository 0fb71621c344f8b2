"""Utilities and objectives: what a draft-length decision optimises, scored over posterior draws.

Utilities are small numpy functions over a ``(sample, option)`` array, reducing axis 0
(pymc-marketing style): :func:`expected`, :func:`posterior_quantile`, :func:`cvar`,
:func:`prob_at_most`. An :class:`Objective` pairs the per-draw values it scores (mean
latency, per-request p90, fraction of requests within an SLO, goodput) with one of them.

Saturation: past its saturation rate an open-loop server has infinite mean latency, so a
draw can be ``inf``. Then means, quantiles and CVaR become ``inf`` as they should.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from bayes_sd._stats import quantile

__all__ = ["expected", "posterior_quantile", "cvar", "prob_at_most", "fraction_within_slo", "Objective",
           "make_objective", "OBJECTIVES"]

#: objectives by name (:func:`make_objective`)
OBJECTIVES = ("mean", "p90", "cvar", "slo", "goodput")
_Z90 = float(norm.ppf(0.9))


# ---------------------------------------------------------------------- utilities
def expected(values: np.ndarray) -> np.ndarray:
    """Posterior expectation over draws (axis 0); any ``inf`` draw makes it ``inf``.

    Parameters
    ----------
    values : array-like of float
        Draws ``(sample, ...)``, e.g. latencies in s.

    Returns
    -------
    numpy.ndarray
        The mean over axis 0, shape ``values.shape[1:]``, in the unit of ``values``.

    Examples
    --------
    >>> expected([[1.0, 2.0], [3.0, float("inf")]])
    array([ 2., inf])
    """
    return np.asarray(values, float).mean(axis=0)


def posterior_quantile(q: float) -> Callable[[np.ndarray], np.ndarray]:
    """Factory: the ``q`` quantile over draws (no interpolation, so ``inf`` stays ``inf``).

    Parameters
    ----------
    q : float
        The quantile, in (0, 1) (0.9: the 90th percentile).

    Returns
    -------
    callable
        ``f(values) -> numpy.ndarray``: the ``q`` quantile of ``values`` over axis 0 (an observed draw).

    Raises
    ------
    ValueError
        Unless ``0 < q < 1``.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")

    def _quantile(values):
        return quantile(values, q)
    return _quantile


def cvar(alpha: float = 0.9) -> Callable[[np.ndarray], np.ndarray]:
    """Factory: CVaR_alpha of a loss over draws, the mean of its worst ``1 - alpha`` share.

    Parameters
    ----------
    alpha : float, default 0.9
        Level, in [0, 1): the worst ``1 - alpha`` share of draws is averaged (0 gives the mean).

    Returns
    -------
    callable
        ``f(values) -> numpy.ndarray``: with ``n`` draws on axis 0, the mean of the
        ``ceil(n (1 - alpha))`` largest values (risk-averse: CVaR >= mean; ``inf`` when a saturated
        draw is among them).

    Raises
    ------
    ValueError
        Unless ``0 <= alpha < 1``.

    Examples
    --------
    >>> cvar(0.5)([[1.0], [2.0], [3.0], [4.0]])
    array([3.5])
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"cvar_alpha must be in [0, 1), got {alpha}")

    def _cvar(values):
        x = np.sort(np.asarray(values, float), axis=0)
        m = max(1, int(np.ceil(x.shape[0] * (1.0 - alpha) - 1e-9)))
        return x[-m:].mean(axis=0)
    return _cvar


def prob_at_most(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """Factory: P(value <= threshold) over draws, e.g. P(mean latency <= SLO).

    Parameters
    ----------
    threshold : float
        The bound, in the unit of the values scored (s for latencies).

    Returns
    -------
    callable
        ``f(values) -> numpy.ndarray``: the share of draws (axis 0) at most ``threshold``, in [0, 1].
    """
    def _prob(values):
        return (np.asarray(values, float) <= threshold).mean(axis=0)
    return _prob


def fraction_within_slo(p50: np.ndarray, p90: np.ndarray, slo_s: float) -> np.ndarray:
    """Per draw, the fraction of requests with latency <= ``slo_s`` (lognormal tail).

    Per-request latency is lognormal in the model; its median ``p50`` and shape
    ``ln(p90 / p50) / z_0.9`` give ``Phi((ln slo - ln p50) / shape)``.

    Parameters
    ----------
    p50, p90 : array-like of float
        Per-request median and 90th-percentile latency per draw, s (``inf`` where saturated).
    slo_s : float
        The latency objective, s.

    Returns
    -------
    numpy.ndarray
        The fraction of requests within ``slo_s``, in [0, 1], shaped like ``p50``; 0 where saturated.
    """
    p50, p90 = np.asarray(p50, float), np.asarray(p90, float)
    ok = np.isfinite(p50) & np.isfinite(p90) & (p50 > 0)
    p50s, p90s = np.where(ok, p50, 1.0), np.where(ok, p90, 1.0)
    shape = np.maximum(np.log(np.maximum(p90s, p50s) / p50s) / _Z90, 1e-12)
    frac = norm.cdf((np.log(slo_s) - np.log(p50s)) / shape)
    return np.where(ok, frac, 0.0)


# ---------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class Objective:
    """What a decision optimises.

    Parameters
    ----------
    name : str
        Name of the objective (``"mean"``, ``"p90"``, ``"cvar0.9"``, ``"slo"``, ``"goodput"``, ...).
    values : callable
        ``values(draws, loads, is_open)`` maps a dict of draw arrays ``(sample, load, k)``
        (``latency``, ``latency_p50``, ``latency_p90``, ...; s), the loads ``(load,)`` and the
        load type (True: open loop) to per-draw values ``(sample, load, k)``.
    aggregate : callable, default :func:`expected`
        Reduces draws (axis 0) to the score.
    maximize : bool, default False
        Whether higher is better.
    unit : str, default "s"
        Unit of the score (``"s"``, ``"fraction"``, ``"req/s"``).
    """

    name: str
    values: Callable[[dict, np.ndarray, bool], np.ndarray]
    aggregate: Callable[[np.ndarray], np.ndarray] = expected
    maximize: bool = False
    unit: str = "s"


def make_objective(objective: str | Objective = "mean", *, slo_s: float | None = None,
                   cvar_alpha: float = 0.9) -> Objective:
    """An :class:`Objective` by name (``OBJECTIVES``), or ``objective`` itself.

    Parameters
    ----------
    objective : str or Objective, default "mean"
        One of :data:`OBJECTIVES`, or an :class:`Objective` (returned as it is):

        - ``mean``: minimise E[mean latency];
        - ``p90``: minimise E[per-request p90 latency];
        - ``cvar``: minimise CVaR_alpha over draws of the mean latency (risk-averse);
        - ``slo``: maximise E[fraction of requests with latency <= slo_s];
        - ``goodput``: maximise E[requests/s meeting the SLO] = throughput x that fraction
          (throughput = rate in open loop, 0 when saturated; concurrency / latency in closed loop).
    slo_s : float, optional
        Latency objective, s; required (positive) by ``slo`` and ``goodput``.
    cvar_alpha : float, default 0.9
        Level of ``cvar``, in [0, 1).

    Returns
    -------
    Objective
        The objective; its score is in s for ``mean``, ``p90``, ``cvar``, a fraction for ``slo``,
        requests/s for ``goodput``.

    Raises
    ------
    ValueError
        For an unknown name, a ``slo``/``goodput`` objective without a positive ``slo_s``, or a
        ``cvar`` objective with ``cvar_alpha`` outside [0, 1).

    Examples
    --------
    >>> make_objective("slo", slo_s=2.0).maximize
    True
    """
    if isinstance(objective, Objective):
        return objective
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective '{objective}'. Fix: use one of {', '.join(OBJECTIVES)}")
    if objective in ("slo", "goodput") and not (slo_s is not None and np.isfinite(slo_s) and slo_s > 0):
        raise ValueError(f"objective '{objective}' needs a positive slo_s (seconds). Fix: pass slo_s / --slo-s")
    if objective == "mean":
        return Objective("mean", lambda d, x, o: d["latency"])
    if objective == "p90":
        return Objective("p90", lambda d, x, o: d["latency_p90"])
    if objective == "cvar":
        return Objective(f"cvar{cvar_alpha:g}", lambda d, x, o: d["latency"], aggregate=cvar(cvar_alpha))

    def _within(d, x, o):
        return fraction_within_slo(d["latency_p50"], d["latency_p90"], slo_s)

    if objective == "slo":
        return Objective("slo", _within, maximize=True, unit="fraction")

    def _goodput(d, x, o):
        lat = d["latency"]
        with np.errstate(divide="ignore", invalid="ignore"):
            thr = np.where(o, x[None, :, None], x[None, :, None] / lat)
        return np.where(np.isfinite(lat), thr, 0.0) * _within(d, x, o)

    return Objective("goodput", _goodput, maximize=True, unit="req/s")
