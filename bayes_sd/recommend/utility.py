"""Utilities and objectives: what a draft-length decision optimises, scored over posterior draws.

Utilities are small numpy functions over a ``(sample, option)`` array, reducing axis 0
(pymc-marketing style): :func:`expected`, :func:`posterior_quantile`, :func:`cvar`,
:func:`prob_at_most`. An :class:`Objective` pairs the per-draw values it scores (mean
latency, per-request p90, fraction of requests within an SLO, goodput) with one of them.

Saturation: past its saturation rate an open-loop server has infinite mean latency, so a
draw can be ``inf``; means, quantiles and CVaR of raw draws become ``inf``. A decision scored that
way turns on whether one draw in a thousand saturates, so the latency objectives score *capped*
latencies (:func:`cap_latency`): a request slower than the cap counts as lost, and costs the cap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from bayes_sd._stats import quantile

__all__ = ["expected", "posterior_quantile", "cvar", "prob_at_most", "fraction_within_slo", "cap_latency",
           "Objective", "make_objective", "OBJECTIVES", "LATENCY_CAP_FACTOR"]

#: objectives by name (:func:`make_objective`)
OBJECTIVES = ("mean", "p90", "cvar", "slo", "goodput")
#: default latency cap: this many times the best option's median latency at the same load
LATENCY_CAP_FACTOR = 10.0
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


def cap_latency(values, cap_s: float | None = None, factor: float = LATENCY_CAP_FACTOR) -> np.ndarray:
    """Latency draws ``(sample, ..., option)`` capped: a saturated draw (``inf``) costs the cap.

    The cap is ``cap_s`` when given (an SLO, or the benchmark's length: a request cannot be measured
    slower than the run lasted), else ``factor`` times the smallest posterior median over the options
    of the same condition (the last axis): a request ten times slower than the best option's typical
    latency counts as lost. Where every option's median is saturated there is no finite reference and
    nothing is capped (the decision then goes to the least saturated option).

    Parameters
    ----------
    values : array-like of float
        Latency draws, s, with draws on axis 0 and options on the last axis (``inf`` = saturated).
    cap_s : float, optional
        Absolute cap, s (> 0).
    factor : float, default :data:`LATENCY_CAP_FACTOR`
        Relative cap, used without ``cap_s`` (> 1).

    Returns
    -------
    numpy.ndarray
        ``min(values, cap)``, shaped like ``values``, s.

    Raises
    ------
    ValueError
        For a ``cap_s`` that is not positive and finite, or a ``factor`` not above 1.

    Examples
    --------
    >>> cap_latency([[1.0, 2.0], [float("inf"), 3.0], [1.2, 2.5]]).tolist()
    [[1.0, 2.0], [12.0, 3.0], [1.2, 2.5]]
    """
    v = np.asarray(values, float)
    if cap_s is not None:
        if not (np.isfinite(cap_s) and cap_s > 0):
            raise ValueError(f"latency cap must be positive and finite (seconds), got {cap_s}")
        return np.minimum(v, cap_s)
    if not factor > 1:
        raise ValueError(f"latency cap factor must be above 1, got {factor}")
    reference = quantile(v, 0.5).min(axis=-1, keepdims=True)  # (..., 1): the best option's median
    return np.minimum(v, factor * reference[None])


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
    capped : bool, default False
        Whether the per-draw values are latencies to cap (:func:`cap_latency`) before they are scored.
    """

    name: str
    values: Callable[[dict, np.ndarray, bool], np.ndarray]
    aggregate: Callable[[np.ndarray], np.ndarray] = expected
    maximize: bool = False
    unit: str = "s"
    capped: bool = False


def make_objective(objective: str | Objective = "mean", *, slo_s: float | None = None,
                   cvar_alpha: float = 0.9) -> Objective:
    """An :class:`Objective` by name (``OBJECTIVES``), or ``objective`` itself.

    Parameters
    ----------
    objective : str or Objective, default "mean"
        One of :data:`OBJECTIVES`, or an :class:`Objective` (returned as it is):

        - ``mean``: minimise E[mean latency, capped] (:func:`cap_latency`);
        - ``p90``: minimise E[per-request p90 latency, capped];
        - ``cvar``: minimise CVaR_alpha over draws of the capped mean latency (risk-averse);
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
        return Objective("mean", lambda d, x, o: d["latency"], capped=True)
    if objective == "p90":
        return Objective("p90", lambda d, x, o: d["latency_p90"], capped=True)
    if objective == "cvar":
        return Objective(f"cvar{cvar_alpha:g}", lambda d, x, o: d["latency"], aggregate=cvar(cvar_alpha),
                         capped=True)

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
