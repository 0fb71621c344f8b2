"""A benchmark run is finite: what a run of ``N`` requests measures near and past capacity.

The open-loop laws of :mod:`.dense` and :mod:`.batch_cap` are steady states: at or past capacity
their mean latency is infinite. A run of ``N`` requests sent at a fixed rate to an idle server
always ends, and its mean latency is finite; past capacity it grows with ``N``, because the backlog
builds up for as long as requests keep arriving. Near capacity, too, a run can end before it builds
the steady state's backlog. Two pieces say what such a run accumulates:

- the **fluid run** (:func:`fluid_run_latency`): the law's own dynamics, with requests as a
  continuum. The server holds ``n`` requests; those in service (``min(n, slots)``) each take the
  law's latency at that many in flight, so they leave at ``min(n, slots) / L(n)`` per second;
  requests arrive at ``rate`` for ``N / rate`` seconds, then the backlog drains. By Little's law
  for a run that ends, the mean latency is the area under ``n(t)`` divided by ``N``. Below capacity
  and for a run long against the law's latency, it approaches the steady state (the open-loop law
  is the fluid's fixed point, ``n = rate L(n)``); past capacity it is about the full server's latency
  plus ``(rho - 1) N / (2 rate)``;
- the **fluctuation** (:func:`fluctuation_wait`): randomness in the arrivals and departures builds a
  backlog the fluid does not have (the steady state's wait for a slot), largest at capacity, where it
  is a reflected random walk:
  over a run of ``N`` arrivals its mean is about ``(2/3) sqrt(2 N (1 + cv2) / pi)`` requests, each
  worth ``1 / capacity`` seconds of wait.

A run's mean latency joins them with the steady state (:func:`finite_run_latency`): the fluid run plus
as much of the steady state's wait as the fluctuation allows, never more than the steady state. The
run's own warm-up and cool-down trimming is not modelled.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RUN_GRID", "finite_run_latency", "fluctuation_wait", "fluid_run_latency"]

#: shares of the run's requests in the server at which the caller evaluates the law's latency
#: (``n = RUN_GRID * N``): fine near zero, where a light load sits
RUN_GRID = np.concatenate(([0.0], np.geomspace(1e-4, 1.0, 47)))


def _interp(latency_grid: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of ``latency_grid`` (entry, grid) at ``share`` (entry,) of ``RUN_GRID``."""
    share = np.clip(share, 0.0, 1.0)
    j = np.clip(np.searchsorted(RUN_GRID, share, side="right") - 1, 0, RUN_GRID.size - 2)
    w = (share - RUN_GRID[j]) / (RUN_GRID[j + 1] - RUN_GRID[j])
    rows = np.arange(latency_grid.shape[0])
    return latency_grid[rows, j] * (1.0 - w) + latency_grid[rows, j + 1] * w


def fluid_run_latency(rate, n_requests, slots, latency_grid, steps: int = 400):
    """Mean latency (s) of a fluid run: ``n_requests`` arriving evenly at ``rate`` to an idle server.

    Parameters
    ----------
    rate : array (entry,)
        Arrival rate, requests/s (> 0).
    n_requests : array (entry,)
        Requests in the run (>= 1).
    slots : array (entry,)
        Requests in service at most (the batch cap); ``inf`` without one.
    latency_grid : array (entry, grid)
        The law's latency (s) of a request in service while ``n = RUN_GRID * n_requests`` requests are
        in the server (the caller caps the requests in service at ``slots``).
    steps : int, default 400
        Time steps over the arrivals. Each step solves the fluid exactly with the server's latency
        held at its value at the step's start, so a step longer than the latency stays stable.

    Returns
    -------
    array (entry,)
        Mean latency over the run's requests, s.

    Examples
    --------
    A server whose latency does not depend on its load (10 s) holds ``rate x 10`` requests; a long
    run's mean is close to 10 s:

    >>> grid = np.full((1, RUN_GRID.size), 10.0)
    >>> round(float(fluid_run_latency(np.array([1.0]), np.array([2000.0]), np.array([np.inf]), grid)[0]), 1)
    10.0

    With one slot the same server serves 0.1 requests/s; offered 0.2, the backlog of a run of 100
    grows for 500 s and the mean latency is about ``(2 - 1) x 100 / (2 x 0.2)`` = 250 s of wait plus
    some of the 10 s of service (the discrete queue's exact figure is 257.5 s):

    >>> round(float(fluid_run_latency(np.array([0.2]), np.array([100.0]), np.array([1.0]), grid)[0]))
    251
    """
    rate, n, slots = (np.asarray(x, float) for x in (rate, n_requests, slots))
    duration = n / rate
    dt = duration / steps
    held = np.zeros_like(rate)
    area = np.zeros_like(rate)
    for _ in range(steps):
        lat = _interp(latency_grid, held / n)
        # departures min(n, slots) / L = held * h; h at n -> 0 is 1 / L
        h = np.where(held > 0, np.minimum(held, slots) / np.maximum(held, 1e-300), 1.0) / lat
        target = rate / h
        decay = np.exp(-h * dt)
        area += target * dt + (held - target) * (1.0 - decay) / h
        held = target + (held - target) * decay
    # the drain, once arrivals stop: each of the n held requests leaves at min(n, slots) / L(n), so the
    # area is the integral over n from 0 to held of n L(n) / min(n, slots)
    v = np.linspace(0.0, 1.0, 65)
    m = held[:, None] * v[None, :]
    lat = np.stack([_interp(latency_grid, m[:, i] / n) for i in range(v.size)], axis=1)
    integrand = lat * np.maximum(1.0, m / slots[:, None])
    area += held * np.trapezoid(integrand, v, axis=1)
    return area / n


def fluctuation_wait(n_requests, capacity, arrival_cv2=1.0):
    """Mean wait (s) a run of ``n_requests`` accumulates from randomness at capacity: the mean over the
    run of a reflected random walk's expected height, ``(2/3) sqrt(2 N (1 + cv2) / pi)`` requests, each
    ``1 / capacity`` seconds of work (``capacity``, requests/s; ``arrival_cv2``: squared coefficient of
    variation of the inter-arrival times, 1 for Poisson; departures counted as Poisson).

    >>> round(float(fluctuation_wait(500, 2.0)), 2)
    8.41
    """
    n, capacity, cv2 = (np.asarray(x, float) for x in (n_requests, capacity, arrival_cv2))
    return (2.0 / 3.0) * np.sqrt(2.0 * n * (1.0 + cv2) / np.pi) / capacity


def finite_run_latency(steady, wait, fluid, fluctuation, load, rate, n_requests):
    """A run's mean latency (s) from the model's ``steady`` state (``inf`` at or past capacity) and the
    part of it that is the ``wait`` for a slot (the queueing that randomness builds, :mod:`.batch_cap`;
    0 without a batch cap), the ``fluid`` run (:func:`fluid_run_latency`) and the ``fluctuation``
    (:func:`fluctuation_wait`), all s, at ``load`` (rate over capacity), ``rate`` (requests/s) and
    ``n_requests``; never more than the steady state.

    The fluid splits into the backlog's drift past capacity, ``max(load - 1, 0) N / (2 rate)``, and the
    rest ``S``, which below capacity is the steady state's service part as far as the run reaches it.
    To it adds the wait the run can build: below capacity the smaller of the steady state's and the
    fluctuation, joined smoothly (``W D / sqrt(W^2 + D^2)``: a run much longer than the queue's memory
    reaches the steady state's wait, a short one does not); past capacity the drift and the fluctuation
    add as ``(W^1.5 + D^1.5)^(2/3)`` (the fluctuation matters less as the drift grows). Both forms are
    fitted by eye to discrete-event simulations of FIFO queues with Poisson arrivals (one and eight
    servers, exponential service, runs of 200 and 1000 requests, loads 0.7-1.3: within 30% near capacity,
    20% past it, 10% at 0.7; synthetic; ``tests/theory/test_finite_run.py`` holds them to it).
    """
    drift = np.maximum(np.asarray(load, float) - 1.0, 0.0) * np.asarray(n_requests, float) / (2.0 * rate)
    rest = fluid - drift
    with np.errstate(invalid="ignore", over="ignore"):
        wait = np.maximum(wait, 0.0)
        below = np.where(np.isfinite(wait), wait * fluctuation / np.maximum(np.hypot(wait, fluctuation), 1e-300),
                         fluctuation)
    return np.minimum(steady, rest + (drift**1.5 + below**1.5) ** (2.0 / 3.0))
