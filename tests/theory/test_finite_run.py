"""What a finite run measures near and past capacity (bayes_sd.theory.finite_run), held to discrete-event
simulations of FIFO queues (synthetic: Poisson arrivals, exponential service, as the model's queue wait
assumes) that know nothing of the fluid or the random-walk approximation."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_sd import theory


def simulated_run_mean(rate: float, capacity: float, n: int, servers: int, reps: int = 300, seed: int = 0) -> float:
    """Mean over ``reps`` runs of the mean latency of ``n`` requests, Poisson at ``rate``, to an idle FIFO
    server of ``servers`` slots each serving in an exponential time of mean ``servers / capacity``."""
    rng = np.random.default_rng(seed)
    arrive = np.cumsum(rng.exponential(1.0 / rate, (reps, n)), axis=1)
    service = rng.exponential(servers / capacity, (reps, n))
    free = np.zeros((reps, servers))
    rows = np.arange(reps)
    total = np.zeros(reps)
    for i in range(n):
        j = free.argmin(axis=1)
        done = np.maximum(arrive[:, i], free[rows, j]) + service[:, i]
        free[rows, j] = done
        total += done - arrive[:, i]
    return float((total / n).mean())


def predicted_run_mean(rate: float, capacity: float, n: int, servers: int) -> float:
    service = servers / capacity  # the latency of one request in service, s, whatever the load
    grid = np.full((1, theory.RUN_GRID.size), service)
    fluid = theory.fluid_run_latency(np.array([rate]), np.array([float(n)]), np.array([float(servers)]), grid)
    wait = np.array([theory.queue_wait(rate, servers, service, True)])
    load = rate / capacity
    return float(theory.finite_run_latency(service + wait, wait, fluid, theory.fluctuation_wait(n, capacity), load,
                                           rate, n)[0])


@pytest.mark.parametrize("servers", [1, 8])
@pytest.mark.parametrize("load,tolerance", [(0.7, 0.1), (0.9, 0.3), (1.0, 0.3), (1.1, 0.2), (1.3, 0.2)])
def test_a_finite_run_matches_a_simulated_queue(servers, load, tolerance):
    sim = simulated_run_mean(load, 1.0, 200, servers)
    assert predicted_run_mean(load, 1.0, 200, servers) == pytest.approx(sim, rel=tolerance)


def test_past_capacity_the_run_mean_grows_with_its_length_and_stays_finite():
    means = [predicted_run_mean(1.2, 1.0, n, 1) for n in (100, 1000, 10000)]
    assert np.all(np.isfinite(means))
    # the backlog's drift, (load - 1) N / (2 rate), dominates long runs
    assert means[2] == pytest.approx(0.2 * 10000 / 2.4, rel=0.1)
    assert means[0] < means[1] < means[2]


def test_a_long_run_below_capacity_reaches_the_steady_state_of_the_dense_law():
    c1, c2, rate, n = 2.0, 0.1, 5.0, 20000  # load 0.5: the open-loop law's 4 s
    others = theory.RUN_GRID * n
    grid = (c1 + others * c2)[None, :]
    fluid = theory.fluid_run_latency(np.array([rate]), np.array([float(n)]), np.array([np.inf]), grid)[0]
    assert fluid == pytest.approx(float(theory.latency_open(c1, c2, rate)), rel=0.02)
    # a short run near capacity (0.99) holds far fewer than the steady state's 990 others
    short = theory.fluid_run_latency(np.array([9.9]), np.array([200.0]), np.array([np.inf]),
                                     (c1 + theory.RUN_GRID * 200 * c2)[None, :])[0]
    assert short < 0.25 * float(theory.latency_open(c1, c2, 9.9))
