"""The batch cap's queue: the wait for a slot, open and closed loop (bayes_sd.theory.batch_cap)."""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_sd import theory


def _erlang_c_wait(rate, slots, service):
    """Exact mean wait in queue of the M/M/c queue (Erlang C), s."""
    a = rate * service
    rho = a / slots
    terms = sum(a**n / math.factorial(n) for n in range(slots))
    top = a**slots / math.factorial(slots) / (1.0 - rho)
    return top / (terms + top) / (slots / service - rate)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_one_slot_is_the_mm1_queue(rho):
    service = 2.0
    assert theory.queue_wait(rho / service, 1.0, service, True) == pytest.approx(rho * service / (1.0 - rho))


@pytest.mark.parametrize("slots", [4, 16, 64])
@pytest.mark.parametrize("rho", [0.7, 0.9, 0.97])
def test_wait_follows_erlang_c(slots, rho):
    """Sakasegawa's approximation stays within 20% of the exact M/M/c wait where the wait matters
    (a visible share of the service time) and never adds more than 2% of the service time elsewhere."""
    service = 1.5
    rate = rho * slots / service
    exact = _erlang_c_wait(rate, slots, service)
    approx = float(theory.queue_wait(rate, float(slots), service, True))
    if exact > 0.05 * service:
        assert approx == pytest.approx(exact, rel=0.2)
    else:
        assert abs(approx - exact) < 0.02 * service


def test_wait_is_infinite_at_capacity_and_zero_without_a_cap():
    full = np.array([1.0, 1.0, 1.0])
    wait = theory.queue_wait(np.array([10.0, 16.0, 20.0]), 16.0, full, np.array([True, True, False]))
    assert np.isfinite(wait[0]) and wait[0] > 0 and np.isinf(wait[1]) and wait[2] == 0.0
    assert theory.cap_capacity(16.0, 1.0) == 16.0


def test_graph_wait_matches_numpy_below_capacity_and_stays_finite_past_it():
    rate = pt.dvector("rate")
    wait = theory.queue_wait(rate, 16.0, 1.0, np.array(True), xp=pt, softness=0.01)
    f = pytensor.function([rate], [wait, pytensor.grad(wait.sum(), rate)])
    w, g = f(np.array([8.0, 14.0, 15.5, 17.0]))
    np.testing.assert_allclose(w[:2], theory.queue_wait(np.array([8.0, 14.0]), 16.0, 1.0, True), rtol=1e-6)
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(g)) and np.all(g > 0)  # grows with the rate, smoothly


def test_closed_loop_past_the_cap_runs_at_the_full_servers_throughput():
    slots, full = 32.0, 2.0
    n = np.array([16.0, 32.0, 48.0, 96.0])
    wait = theory.closed_wait(n, slots, full, True)
    assert np.all(wait[:2] == 0.0)  # at or below the cap nobody waits
    latency = np.where(n > slots, full, np.nan) + wait
    np.testing.assert_allclose((n / latency)[2:], slots / full)  # Little's law: throughput = the full server's
    assert theory.closed_wait(96.0, slots, full, False) == 0.0
