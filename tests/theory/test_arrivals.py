"""How many others an open-loop request meets when arrivals are more regular than Poisson
(theory.arrivals), and the open-loop solvers that take one linear piece of it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from bayes_sd import theory


def overlap_simulated(cv2: float, x: float, n: int = 40_000, seed: int = 0) -> float:
    """Time-averaged number of others a request of fixed length L meets, arrivals at rate 1 / L * x with gamma
    inter-arrival times of squared coefficient of variation ``cv2`` (0: evenly spaced), no interaction."""
    rng = np.random.default_rng(seed)
    gaps = np.ones(n) if cv2 == 0 else rng.gamma(1.0 / cv2, cv2, size=n)
    start = np.cumsum(gaps) / x  # mean gap 1 / x: rate x per unit latency
    lat, tagged = 1.0, np.arange(n // 4, 3 * n // 4)
    lo = np.searchsorted(start, start[tagged] - lat)
    hi = np.searchsorted(start, start[tagged] + lat)
    total = np.zeros(tagged.size)
    for j in range(int(np.max(hi - lo))):
        other = lo + j
        valid = (other < hi) & (other != tagged)
        other = np.minimum(other, n - 1)
        overlap = np.clip(np.minimum(start[other], start[tagged]) + lat - np.maximum(start[other], start[tagged]),
                          0.0, None)
        total += np.where(valid, overlap, 0.0)
    return float(np.mean(total) / lat)


@pytest.mark.parametrize("x", [0.5, 0.9, 1.5, 2.0, 3.0, 5.0])
def test_others_met_match_simulated_arrivals(x):
    """Poisson: the time average, rate L; evenly spaced: no one below one request in flight, then the
    equal-request law, which the formula meets at whole x and undershoots by at most 0.18 between;
    between the two, within 0.25 of simulated gamma arrivals."""
    poisson = overlap_simulated(1.0, x)
    assert theory.others_open(x, 1.0, 1.0) == pytest.approx(poisson, abs=0.05)
    even = overlap_simulated(0.0, x)
    formula = theory.others_open(x, 1.0, 0.0)
    assert 0.0 <= even - formula <= 0.18
    if x == int(x):
        assert formula == pytest.approx(even, abs=1e-6)
    half = overlap_simulated(0.5, x)
    assert theory.others_open(x, 1.0, 0.5) == pytest.approx(half, abs=0.25)
    assert formula <= theory.others_open(x, 1.0, 0.5) <= theory.others_open(x, 1.0, 1.0)


def smallest_root(g, hi: float = 300.0) -> float:
    grid = np.linspace(1e-6, hi, 300_001)
    vals = g(grid)
    idx = np.flatnonzero(np.sign(vals[:-1]) != np.sign(vals[1:]))
    return brentq(g, grid[idx[0]], grid[idx[0] + 1]) if idx.size else np.inf


def check_solvers(rng: np.random.Generator, cv2: float) -> None:
    """One random server: every solver, on both pieces, against the smallest root found by scanning."""
    c1, c2 = rng.uniform(0.5, 2.0), rng.uniform(0.01, 0.2)
    rate = rng.uniform(0.1, 0.9) / c2
    k, knee, compute = int(rng.integers(0, 6)), rng.uniform(4.0, 64.0), rng.uniform(0.0, 0.5)
    log_q, saving, n_v0, r = np.log(1 - 8 / 128), rng.uniform(0.0, 0.4) * c1, 0.5 * c1, rng.uniform(0.0, 0.3)
    pieces = theory.open_loop_pieces(rate, cv2)

    def others(lat):
        return theory.others_open(rate, lat, cv2)

    def solve(one):
        return theory.combine_pieces(*(one(rp, sp) for rp, sp in pieces), cv2)

    def knee_piece(rp, sp):
        lat, ok = theory.latency_knee_open(c1, c2, compute, knee, k, rp, shift=sp)
        return lat if ok else np.inf

    def newton(rp, sp):
        return theory.latency_moe_open_newton(c1, c2, saving, log_q, k, rp, shift=sp, steps=30) \
            if rp * c2 < 1 else np.inf

    dense = theory.latency_open_arrivals(c1, c2, rate, cv2)
    assert dense == pytest.approx(solve(lambda rp, sp: theory.latency_open(c1 - sp * c2, c2, rp)))
    assert dense == pytest.approx(smallest_root(lambda lat: c1 + others(lat) * c2 - lat), rel=1e-6)
    true = smallest_root(lambda lat: c1 + others(lat) * c2 + compute * theory.knee_excess(others(lat), k, knee) - lat)
    assert solve(knee_piece) == pytest.approx(true, rel=1e-6) or np.isinf(true)
    true = smallest_root(lambda lat: c1 + others(lat) * c2 - saving * theory.moe_untouched(log_q, k, others(lat)) - lat)
    assert solve(newton) == pytest.approx(true, rel=1e-6)
    true = smallest_root(lambda lat: c1 + others(lat) * c2 - lat + n_v0 * (
        theory.verify_cost_multiplier(0.6, log_q, r, knee, k, others(lat)) - 1.0), hi=1000.0)
    both = solve(lambda rp, sp: theory.latency_moe_knee_open(c1, c2, n_v0, 0.6, log_q, r, knee, k, rp, shift=sp))
    assert both == pytest.approx(true, rel=1e-6) or np.isinf(true)


@pytest.mark.parametrize("cv2", [0.0, 0.3, 1.0, 2.0])
def test_solvers_on_two_pieces_give_the_fixed_point(cv2):
    """Each open-loop solver on one piece (rate', shift) and combine_pieces reproduce the smallest root of
    L = C1 + o C2 + extra(o), o = others_open(rate, L, cv2): dense, roofline knee, MoE (Newton) and MoE
    with a knee."""
    rng = np.random.default_rng(int(10 * cv2))
    for _ in range(25):
        check_solvers(rng, cv2)


@pytest.mark.parametrize("cv2", [0.0, 0.3, 1.0, 2.0])
def test_dense_law_when_another_request_costs_more_than_the_first(cv2):
    """C2 > C1 (a compute-bound CPU server, where the per-sequence load cost can pass a request's own
    cost once the configuration's departures multiply it): the shifted piece's numerator C1 - shift C2 is
    negative; the law stays the smallest positive root, and infinite from rate C2 = 1."""
    c1, c2 = 1.0, 1.3
    for rate in (0.2, 0.5, 0.7, 0.76):
        lat = theory.latency_open_arrivals(c1, c2, rate, cv2)
        root = smallest_root(lambda L, x=rate: c1 + theory.others_open(x, L, cv2) * c2 - L, hi=1e4)
        assert lat > 0 and lat == pytest.approx(root, rel=1e-6)
    assert np.isinf(theory.latency_open_arrivals(c1, c2, 1 / c2, cv2))


def test_poisson_pieces_are_one_and_capacity_does_not_move():
    """cv2 = 1 gives one piece twice (the Poisson law); evenly spaced arrivals are faster below the
    saturation rate 1 / C2 and saturate at it all the same."""
    (ra, sa), (rb, sb) = theory.open_loop_pieces(3.0, 1.0)
    assert (ra, sa) == (rb, sb) == (3.0, 0.0)
    c1, c2 = 1.0, 0.1
    rates = np.array([0.5, 5.0, 9.0, 9.99, 10.0, 12.0])
    poisson = theory.latency_open(c1, c2, rates)
    pieces = theory.open_loop_pieces(rates, np.zeros_like(rates))
    even = theory.combine_pieces(*(theory.latency_open(c1 - sp * c2, c2, rp) for rp, sp in pieces), 0.0)
    assert even[0] == pytest.approx(c1)  # one request in flight at a time: no one met
    assert np.all(even[:4] < poisson[:4]) and np.all(np.isinf(even[4:])) and np.all(np.isinf(poisson[4:]))
