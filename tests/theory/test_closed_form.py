"""Tests of bayes_sd.theory: the closed-form latency model (numpy and pytensor)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bayes_sd import theory as th

SETTINGS = settings(max_examples=50, deadline=None)


def fl(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def costs_st(draw, moe=False):
    kw = dict(
        v0=draw(fl(1e-3, 5e-2)),
        v1=draw(fl(1e-6, 1e-3)),
        d0=draw(fl(1e-4, 1e-2)),
        d1=draw(fl(1e-7, 1e-4)),
        p0=draw(fl(0.0, 1e-2)),
        p1=draw(fl(0.0, 1e-4)),
        c1=draw(fl(0.0, 1e-7)),
    )
    if moe:
        kw.update(
            experts=draw(st.sampled_from([8, 64, 128, 256])),
            experts_per_token=draw(st.sampled_from([1, 2, 8])),
            expert_share=draw(fl(0.0, 0.9)),
        )
    return th.ServiceCosts(**kw)


ks = st.integers(0, 8)
accept = fl(0.0, 0.99)
prompts = fl(1.0, 4096.0)
outputs = fl(2.0, 2048.0)


def dem_of(costs, k, a, P, D):
    return th.demand(costs, k, th.tau_constant(a, k), P, D)


# --------------------------------------------------------------------------- acceptance


@SETTINGS
@given(a=accept, k=ks)
def test_tau_bounds_and_monotone(a, k):
    tau = th.tau_constant(a, k)
    assert 1.0 - 1e-12 <= tau <= k + 1.0 + 1e-12
    assert th.tau_constant(a, k + 1) >= tau
    if a ** (k + 1) > 1e-12:  # the next term must be visible in float64
        assert th.tau_constant(a, k + 1) > tau
    if a > 1e-3 and k >= 1:
        assert th.tau_constant(min(a + 1e-3, 1.0), k) > tau


def test_tau_special_values():
    assert th.tau_constant(0.7, 0) == pytest.approx(1.0)
    assert th.tau_constant(1.0, 5) == 6.0
    assert th.tau_constant(1.0 - 1e-7, 5) == pytest.approx(6.0, rel=1e-6)
    assert th.tau_constant(0.0, 5) == 1.0
    np.testing.assert_allclose(th.tau_constant(np.array([0.5, 1.0]), np.array([1, 3])), [1.5, 4.0])


@SETTINGS
@given(a=fl(0.0, 1.0), k=ks)
def test_tau_per_position_constant_equals_closed_form(a, k):
    assert th.tau_per_position(np.full(k, a)) == pytest.approx(th.tau_constant(a, k), rel=1e-9)


def test_tau_sq_per_position_equals_constant_form():
    assert th.tau_sq_per_position(np.full(5, 0.7)) == pytest.approx(th.tau_sq_constant(0.7, 5), rel=1e-12)
    assert th.tau_sq_per_position(np.array([0.8, 0.5])) == pytest.approx(1 + 3 * 0.8 + 5 * 0.4)


def test_tau_per_position_decaying():
    assert th.tau_per_position(np.array([0.8, 0.5, 0.25])) == pytest.approx(1 + 0.8 + 0.4 + 0.1)
    np.testing.assert_allclose(th.tau_per_position(np.array([[1.0, 1.0], [0.0, 1.0]])), [3.0, 1.0])


@SETTINGS
@given(a=fl(0.0, 0.999), k=st.integers(1, 8))
def test_implied_acceptance_inverts_tau(a, k):
    assert th.implied_acceptance(th.tau_constant(a, k), k) == pytest.approx(a, abs=1e-7)


def test_implied_acceptance_vectorised_and_edges():
    a = np.array([0.1, 0.5, 0.9])
    k = np.array([1, 4, 7])
    np.testing.assert_allclose(th.implied_acceptance(th.tau_constant(a, k), k), a, atol=1e-9)
    assert th.implied_acceptance(9.0, 3) == pytest.approx(1.0)  # clipped to k + 1
    assert np.isnan(th.implied_acceptance(1.0, 0))


def test_iterations():
    assert th.iterations(101, 4.0) == 26.0
    assert th.iterations(1, 3.0) == 1.0


# --------------------------------------------------------------------------- latency


@SETTINGS
@given(costs=costs_st(), k=ks, a=accept, P=prompts, D=outputs, u1=fl(0.01, 0.98), du=fl(1e-3, 0.01))
def test_latency_open_rises_diverges_and_tends_to_c1(costs, k, a, P, D, u1, du):
    dem = dem_of(costs, k, a, P, D)
    c1, c2 = dem.c1, dem.c2
    sat = th.saturation_rate(c2)
    assert th.latency_open(c1, c2, (u1 + du) * sat) > th.latency_open(c1, c2, u1 * sat)
    assert th.latency_open(c1, c2, (1 - 1e-9) * sat) > 1e8 * c1
    assert th.latency_open(c1, c2, (1 + 1e-12) * sat) == np.inf  # 1/C2 * C2 may round below 1
    assert th.latency_open(c1, c2, 2 * sat) == np.inf
    assert th.latency_open(c1, c2, 1e-12 * sat) == pytest.approx(c1, rel=1e-9)


@SETTINGS
@given(costs=costs_st(), k=ks, a=accept, P=prompts, D=outputs, u=fl(0.0, 0.99))
def test_open_loop_is_self_consistent(costs, k, a, P, D, u):
    dem = dem_of(costs, k, a, P, D)
    rate = u * th.saturation_rate(dem.c2)
    lat = th.latency_open(dem.c1, dem.c2, rate)
    others = th.in_flight(rate, lat)
    assert th.latency_at_load(dem.c1, dem.c2, others) == pytest.approx(lat, rel=1e-9)


@SETTINGS
@given(costs=costs_st(), k=ks, a=accept, P=prompts, D=outputs, b=st.integers(1, 256))
def test_latency_closed(costs, k, a, P, D, b):
    dem = dem_of(costs, k, a, P, D)
    assert th.latency_closed(dem.c1, dem.c2, 1) == dem.c1
    assert th.latency_closed(dem.c1, dem.c2, b + 1) > th.latency_closed(dem.c1, dem.c2, b)


def test_demand_values():
    costs = th.ServiceCosts(v0=1.0, v1=0.1, d0=0.5, d1=0.01, p0=2.0, p1=0.001, c1=1e-4)
    dem = th.demand(costs, 3, 2.0, 1000.0, 21.0)  # N = 11, ctx = 1e-4 * 1010.5
    ctx = 0.10105
    assert dem.c1_prefill == pytest.approx(3.0) and dem.c2_prefill == pytest.approx(1.0)  # p0 is own overhead only
    assert dem.c1_draft == pytest.approx(11 * 3 * 0.51)
    assert dem.c1_verify == pytest.approx(11 * (1.0 + 0.4 + ctx))
    assert dem.c2_draft == pytest.approx(11 * 3 * 0.01)
    assert dem.c2_verify == pytest.approx(11 * (0.4 + ctx))
    assert dem.c1 == pytest.approx(3.0 + 16.83 + 11 * 1.50105)
    assert dem.c2 == pytest.approx(1.0 + 0.33 + 11 * 0.50105)


@SETTINGS
@given(costs=costs_st(), k=ks, a=accept, P=prompts, D=outputs, others=fl(0.0, 200.0))
def test_step_time_ttft_tpot_consistent(costs, k, a, P, D, others):
    tau = th.tau_constant(a, k)
    dem = th.demand(costs, k, tau, P, D)
    lat = th.latency_at_load(dem.c1, dem.c2, others)
    n = th.iterations(D, tau)
    step = th.step_time(costs, k, tau, P, D, others)
    assert costs.p0 + costs.p1 * P + n * step == pytest.approx(lat, rel=1e-9)
    first = th.ttft(costs, k, tau, P, D, others)
    busy = 1.0 - np.exp(-others)  # Poisson arrivals: no other request in flight w.p. exp(-others)
    x, f = costs.p1 * P, others / n  # a prefill's duration; the others' prefills per step
    residual = 0.5 * step + f * x**2 / (2.0 * step)  # length-biased residual of the step in progress
    assert first == pytest.approx(costs.p0 + x + step + busy * residual, rel=1e-12)
    assert first >= costs.p0 + x + step * (1.0 + 0.5 * busy) * (1 - 1e-12)
    assert th.tpot(lat, first, D) == pytest.approx((lat - first) / (D - 1), rel=1e-12)
    assert th.ttft(costs, k, tau, P, D, others + 1) > first


def _iterations_exact(m: int, a: float, k: int) -> float:
    """E[iterations to yield >= m tokens] by dynamic programming over the remaining tokens."""
    p = [a ** (j - 1) - (a**j if j < k + 1 else 0.0) for j in range(1, k + 2)]  # P(Y = j)
    f = np.zeros(m + 1)
    for x in range(1, m + 1):
        f[x] = 1.0 + sum(p[j - 1] * f[x - j] for j in range(1, k + 2) if x - j > 0)
    return float(f[m])


@pytest.mark.parametrize("a, k, D, rel", [(0.7, 4, 200, 1e-9), (0.8, 7, 301, 1e-9), (0.5, 2, 101, 1e-9),
                                          (0.9, 3, 40, 1e-3), (0.95, 7, 20, 0.03), (0.6, 0, 50, 1e-12)])
def test_iteration_boundary_term_matches_exact_expectation(a, k, D, rel):
    """The renewal term is exact as D grows (the transient dies out geometrically)."""
    tau, tau_sq = th.tau_constant(a, k), th.tau_sq_constant(a, k)
    exact = 1.0 + _iterations_exact(D - 1, a, k)  # + the prefill pass
    assert th.iterations(D, tau, tau_sq) == pytest.approx(exact, rel=rel)
    if k > 0:  # without the term the surplus of the last iteration is missed
        assert th.iterations(D, tau) < exact - 0.1
        assert abs(th.iterations(D, tau, tau_sq) - exact) < abs(th.iterations(D, tau) - exact)


def test_tau_sq_is_the_second_moment_of_tokens_per_iteration():
    a, k = 0.65, np.array([0, 1, 3, 6])
    for kk, t2 in zip(k, th.tau_sq_constant(a, k)):
        p = [a ** (j - 1) - (a**j if j < kk + 1 else 0.0) for j in range(1, kk + 2)]
        assert t2 == pytest.approx(sum(j * j * pj for j, pj in zip(range(1, kk + 2), p)), rel=1e-12)


def test_step_time_identity_holds_with_the_boundary_term():
    costs = th.ServiceCosts(v0=0.01, v1=1e-4, d0=1e-3, d1=1e-5, p0=0.02, p1=2e-5, c1=1e-8)
    k, a, P, D, others = 5, 0.7, 300.0, 250.0, 7.0
    tau, tau_sq = th.tau_constant(a, k), th.tau_sq_constant(a, k)
    dem = th.demand(costs, k, tau, P, D, tau_sq=tau_sq)
    step = th.step_time(costs, k, tau, P, D, others, tau_sq=tau_sq)
    n = th.iterations(D, tau, tau_sq)
    assert costs.p0 + costs.p1 * P + n * step == pytest.approx(th.latency_at_load(dem.c1, dem.c2, others), rel=1e-9)
    assert dem.c1 > th.demand(costs, k, tau, P, D).c1


def test_per_sequence_cost_enters_both_demands_and_the_step():
    """s1 (s per sequence per pass) is paid once per pass for the request itself (C1) and once
    for each other sequence in flight (C2); the step-time identity still holds."""
    base = th.ServiceCosts(v0=0.01, v1=1e-4, d0=1e-3, d1=1e-5, p0=0.02, p1=2e-5, c1=1e-8)
    costs = dataclasses.replace(base, s1=5e-5)
    k, a, P, D, others = 5, 0.7, 300.0, 250.0, 7.0
    tau, tau_sq = th.tau_constant(a, k), th.tau_sq_constant(a, k)
    n = th.iterations(D, tau, tau_sq)
    dem, dem0 = th.demand(costs, k, tau, P, D, tau_sq=tau_sq), th.demand(base, k, tau, P, D, tau_sq=tau_sq)
    assert dem.c1 - dem0.c1 == pytest.approx(n * 5e-5) and dem.c2 - dem0.c2 == pytest.approx(n * 5e-5)
    step = th.step_time(costs, k, tau, P, D, others, tau_sq=tau_sq)
    assert costs.p0 + costs.p1 * P + n * step == pytest.approx(th.latency_at_load(dem.c1, dem.c2, others), rel=1e-9)


@pytest.mark.parametrize("k", [0, 1, 2, 7])
def test_speculation_cost_is_paid_once_per_speculating_step_whatever_k(k):
    """e0 (s per speculating step) and e1 (s per sequence in it) are paid from k = 1 on, the same at
    every k: C1 gains N (e0 + e1), C2 gains N e1; nothing at k = 0; the step-time identity holds
    (numpy and pytensor give the same demand)."""
    import pytensor.tensor as pt

    base = th.ServiceCosts(v0=0.01, v1=1e-4, d0=1e-3, d1=1e-5, p0=0.02, p1=2e-5, c1=1e-8)
    costs = dataclasses.replace(base, e0=3e-4, e1=2e-5)
    a, P, D, others = 0.7, 300.0, 250.0, 7.0
    tau, tau_sq = th.tau_constant(a, k), th.tau_sq_constant(a, k)
    n = th.iterations(D, tau, tau_sq)
    dem, dem0 = th.demand(costs, k, tau, P, D, tau_sq=tau_sq), th.demand(base, k, tau, P, D, tau_sq=tau_sq)
    on = 1.0 if k > 0 else 0.0
    assert dem.c1 - dem0.c1 == pytest.approx(on * n * (3e-4 + 2e-5), abs=1e-15)
    assert dem.c2 - dem0.c2 == pytest.approx(on * n * 2e-5, abs=1e-15)
    step = th.step_time(costs, k, tau, P, D, others, tau_sq=tau_sq)
    assert costs.p0 + costs.p1 * P + n * step == pytest.approx(th.latency_at_load(dem.c1, dem.c2, others), rel=1e-9)
    symbolic = th.demand(costs, pt.as_tensor(float(k)), tau, P, D, xp=pt, tau_sq=tau_sq)
    assert float(symbolic.c2.eval()) == pytest.approx(dem.c2, rel=1e-12)


@pytest.mark.parametrize("share", [1.0, 0.6, 0.2])
def test_a_proposer_that_drafts_at_some_steps_matches_its_steps_simulated(share):
    """A request whose decode steps carry k drafts with probability ``share`` (an n-gram proposer that
    found a match) and accept a truncated-geometric number of them, simulated step by step: its mean
    decode steps and its verify tokens per step are what ``per_decode_step`` feeds the closed form
    (iterations with the boundary term; ``k_step + 1``)."""
    rng = np.random.default_rng(7)
    a, k, D, n_req = 0.7, 4, 120, 20_000
    steps = np.zeros(n_req)
    verify_tokens = np.zeros(n_req)
    for i in range(n_req):
        left = D - 1  # the first token comes from the prefill
        while left > 0:
            drafts = rng.random() < share
            accepted = 0
            if drafts:
                while accepted < k and rng.random() < a:
                    accepted += 1
            left -= 1 + accepted
            steps[i] += 1
            verify_tokens[i] += 1 + (k if drafts else 0)
    tau, tau_sq = th.tau_constant(a, k), th.tau_sq_constant(a, k)
    k_step, tau_step, tau_sq_step = th.per_decode_step(k, tau, tau_sq, share)
    n = th.iterations(D, tau_step, tau_sq_step) - 1.0  # less the prefill pass
    assert steps.mean() == pytest.approx(n, rel=0.01)
    assert verify_tokens.sum() / steps.sum() == pytest.approx(k_step + 1.0, rel=0.01)


def test_a_proposer_that_never_drafts_costs_what_no_speculation_costs():
    """At share 0 a speculative configuration's demand is that of k = 0 exactly, drafter costs and the
    speculation costs included; at share 1 it is the plain closed form; in between the costs of turning
    speculation on stay those of every step (the proposer is consulted at each)."""
    costs = th.ServiceCosts(v0=0.01, v1=1e-4, d0=1e-3, d1=1e-5, p0=0.02, p1=2e-5, c1=1e-8, e0=3e-4, e1=2e-5)
    k, a, P, D = 3, 0.7, 300.0, 250.0
    tau, tau_sq = th.tau_constant(a, k), th.tau_sq_constant(a, k)
    k_step, tau_step, tau_sq_step = th.per_decode_step(k, tau, tau_sq, 0.0)
    never = th.demand(costs, k_step, tau_step, P, D, tau_sq=tau_sq_step)
    plain = th.demand(costs, 0, 1.0, P, D, tau_sq=1.0)
    assert (never.c1, never.c2) == pytest.approx((plain.c1, plain.c2), rel=1e-12)
    k_step, tau_step, tau_sq_step = th.per_decode_step(k, tau, tau_sq, 1.0)
    every = th.demand(costs, k_step, tau_step, P, D, tau_sq=tau_sq_step)
    plain_k = th.demand(costs, k, tau, P, D, tau_sq=tau_sq)
    assert (every.c1, every.c2) == pytest.approx((plain_k.c1, plain_k.c2), rel=1e-12)
    k_step, tau_step, tau_sq_step = th.per_decode_step(k, tau, tau_sq, 0.3)
    some = th.demand(costs, k_step, tau_step, P, D, tau_sq=tau_sq_step)
    free = th.demand(dataclasses.replace(costs, e0=0.0, e1=0.0), k_step, tau_step, P, D, tau_sq=tau_sq_step)
    n = th.iterations(D, tau_step, tau_sq_step)
    assert (some.c1 - free.c1, some.c2 - free.c2) == pytest.approx((n * (3e-4 + 2e-5), n * 2e-5), rel=1e-12)


def test_vectorised_broadcasting():
    costs = th.ServiceCosts(v0=np.array([0.01, 0.02]), v1=1e-4, d0=1e-3, d1=1e-5, p0=0.0, p1=1e-5, c1=0.0)
    dem = th.demand(costs, np.array([[0], [4]]), np.array([[1.0], [3.0]]), 512.0, 256.0)
    lat = th.latency_open(dem.c1, dem.c2, np.array([0.0, 1.0]))
    assert lat.shape == (2, 2)
    np.testing.assert_allclose(lat[:, 0], dem.c1[:, 0])


# --------------------------------------------------------------------------- batch-1 baselines


@SETTINGS
@given(v0=fl(1e-3, 5e-2), ratio=fl(0.0, 0.5), a=accept, k=st.integers(1, 8))
def test_batch1_limits_match_leviathan_and_yan(v0, ratio, a, k):
    d0 = ratio * v0
    costs = th.ServiceCosts(v0=v0, v1=0.0, d0=d0, d1=0.0, p0=0.0, p1=0.0, c1=0.0)
    tau = th.tau_constant(a, k)
    D, P = 1e6, 100.0
    base = th.demand(costs, 0, 1.0, P, D).c1
    spec_dem = th.demand(costs, k, tau, P, D)
    assert base / spec_dem.c1 == pytest.approx(th.leviathan_speedup(a, k, d0 / v0), rel=0.01)
    assert th.speedup(costs, k, tau, P, D) == pytest.approx(th.leviathan_speedup(a, k, ratio), rel=0.01)
    lat = th.latency_closed(spec_dem.c1, spec_dem.c2, 1)
    inv_tpot = 1.0 / th.tpot(lat, th.ttft(costs, k, tau, P, D, 0.0), D)
    assert inv_tpot == pytest.approx(th.yan_throughput(tau, v0, k * d0), rel=0.01)


def test_leviathan_values():
    assert th.leviathan_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8**5) / (0.2 * 1.2))
    assert th.leviathan_speedup(1.0, 3, 0.0) == 4.0


def test_speedup_under_load_and_arguments():
    costs = th.ServiceCosts(v0=0.02, v1=2e-4, d0=2e-3, d1=5e-5, p0=1e-3, p1=1e-5, c1=1e-8)
    tau = th.tau_constant(0.7, 4)
    alone = th.speedup(costs, 4, tau, 512, 256)
    busy = th.speedup(costs, 4, tau, 512, 256, concurrency=256)
    assert alone > 1.0 > busy  # speculation stops paying at high load
    assert th.speedup(costs, 4, tau, 512, 256, rate=1e-9) == pytest.approx(alone, rel=1e-6)
    with pytest.raises(ValueError):
        th.speedup(costs, 4, tau, 512, 256, rate=1.0, concurrency=4)


# --------------------------------------------------------------------------- MoE


@SETTINGS
@given(T=fl(1.0, 2000.0), dT=fl(0.5, 10.0), E=st.sampled_from([8, 64, 256]), top=st.sampled_from([1, 2, 8]))
def test_expert_coverage_bounds_and_monotone(T, dT, E, top):
    cov = th.expert_coverage(T, E, top)
    assert top / E - 1e-12 <= cov <= 1.0
    assert th.expert_coverage(T + dT, E, top) >= cov
    if cov < 1 - 1e-6:
        assert th.expert_coverage(T + dT, E, top) > cov


@SETTINGS
@given(costs=costs_st(moe=True), k=ks, a=accept, P=prompts, D=outputs, u=fl(0.0, 0.999))
def test_moe_fixed_point_satisfies_equation(costs, k, a, P, D, u):
    tau = th.tau_constant(a, k)
    dem = th.demand(costs, k, tau, P, D)
    rate = u * th.saturation_rate(dem.c2)
    lat = th.latency_moe_open(costs, k, tau, P, D, rate)
    again = th.latency_moe_at_load(costs, k, tau, P, D, rate * lat)
    assert again == pytest.approx(lat, rel=1e-9)
    assert lat <= th.latency_open(dem.c1, dem.c2, rate) * (1 + 1e-12)
    assert th.latency_moe_open(costs, k, tau, P, D, 1.0001 * th.saturation_rate(dem.c2)) == np.inf


def test_moe_values_and_vectorised():
    costs = th.ServiceCosts(v0=0.03, v1=1e-4, d0=2e-3, d1=1e-5, p0=1e-3, p1=1e-5, c1=1e-8,
                            experts=64, experts_per_token=2, expert_share=0.6)
    tau = th.tau_constant(0.6, 3)
    dem = th.demand(costs, 3, tau, 256, 128)
    n = th.iterations(128, tau)
    cov = th.expert_coverage(4 * 4, 64, 2)  # 3 others + itself, k + 1 = 4 tokens each
    expected = dem.c1 + 3 * dem.c2 - n * 0.03 * 0.6 * (1 - cov)
    assert th.latency_moe_closed(costs, 3, tau, 256, 128, 4) == pytest.approx(expected, rel=1e-12)
    rates = np.array([0.0, 0.5, 0.9, 1.5]) * th.saturation_rate(dem.c2)
    lat = th.latency_moe_open(costs, 3, tau, 256, 128, rates)
    assert np.all(np.diff(lat[:3]) > 0) and lat[3] == np.inf
    assert lat[0] == pytest.approx(th.latency_moe_closed(costs, 3, tau, 256, 128, 1), rel=1e-12)


@SETTINGS
@given(costs=costs_st(), k=ks, a=accept, P=prompts, D=outputs, u=fl(0.0, 1.2), b=st.integers(1, 128))
def test_moe_dense_equals_dense_latency(costs, k, a, P, D, u, b):
    tau = th.tau_constant(a, k)
    dem = th.demand(costs, k, tau, P, D)
    rate = u * th.saturation_rate(dem.c2)
    assert th.latency_moe_open(costs, k, tau, P, D, rate) == th.latency_open(dem.c1, dem.c2, rate)
    assert th.latency_moe_closed(costs, k, tau, P, D, b) == pytest.approx(th.latency_closed(dem.c1, dem.c2, b))
    # experts set but no expert share: also dense
    zero = dataclasses.replace(costs, experts=64, experts_per_token=4, expert_share=0.0)
    if u < 1:
        assert th.latency_moe_open(zero, k, tau, P, D, rate) == pytest.approx(
            th.latency_open(dem.c1, dem.c2, rate), rel=1e-9)


@SETTINGS
@given(costs=costs_st(moe=True), k=ks, a=accept, P=prompts, D=outputs, u=fl(0.0, 1.3), b=st.integers(1, 256),
       knee=fl(16.0, 4000.0), r=fl(0.0, 1.5))
@example(costs=th.ServiceCosts(v0=0.03125, v1=0.001, d0=0.0078125, d1=7.3e-05, p0=0.0, p1=0.0, c1=0.0, experts=8,
                               experts_per_token=1, expert_share=0.0), k=0, a=0.0, P=1.0, D=2.0, u=0.99999, b=1,
         knee=16.0, r=0.0)  # 1e-5 below capacity: the plain iteration runs out of steps, the root is finite
def test_moe_knee_in_the_model_parameterisation_equals_the_simulator_form(costs, k, a, P, D, u, b, knee, r):
    """The fitted models' verify-pass factor and their open-loop solver (an outer loop over the
    untouched experts around the knee's closed form) agree with latency_moe_at_load and its plain
    fixed-point iteration (the forms the simulator and the recommender's truth use)."""
    costs = dataclasses.replace(costs, knee_tokens=knee, compute_share=r)
    tau = th.tau_constant(a, k)
    dem = th.demand(costs, k, tau, P, D)
    n_v0 = th.iterations(D, tau) * costs.v0
    log_q = np.log1p(-costs.experts_per_token / costs.experts)
    mult = th.verify_cost_multiplier(costs.expert_share, log_q, r, knee, k, b - 1.0)
    assert th.latency_at_load(dem.c1, dem.c2, b - 1.0) + n_v0 * (mult - 1.0) == pytest.approx(
        th.latency_moe_closed(costs, k, tau, P, D, b), rel=1e-9)
    rate = u * th.saturation_rate(dem.c2)
    ours = th.latency_moe_knee_open(dem.c1, dem.c2, n_v0, costs.expert_share, log_q, r, knee, k, rate)
    reference = th.latency_moe_open(costs, k, tau, P, D, rate)
    if np.isfinite(reference):
        assert ours == pytest.approx(reference, rel=1e-7)
        assert th.latency_moe_at_load(costs, k, tau, P, D, rate * ours) == pytest.approx(ours, rel=1e-9)
    else:  # no root: the knee (or 1 / C2) saturates the server; exactly at capacity rounding decides. Or,
        # within a hair of capacity, the plain iteration ran out of steps before the root that ours found
        assert ours == np.inf or ours > 1e9 * dem.c1 or th.latency_moe_at_load(
            costs, k, tau, P, D, rate * ours) == pytest.approx(ours, rel=1e-9)


def test_speedup_counts_the_roofline_knee():
    """With a knee, a long draft's extra tokens per pass push the verify pass past it at high
    concurrency: the speedup is the ratio of the knee-aware latencies, below the dense one."""
    costs = th.ServiceCosts(v0=0.012, v1=4e-5, d0=1e-3, d1=1e-5, p0=1e-3, p1=2e-5, c1=1e-8,
                            knee_tokens=240.0, compute_share=0.7)
    tau = th.tau_constant(0.7, 7)
    busy = th.speedup(costs, 7, tau, 512, 256, concurrency=64)
    expected = (th.latency_moe_closed(costs, 0, 1.0, 512, 256, 64) / th.latency_moe_closed(costs, 7, tau, 512, 256, 64))
    assert busy == pytest.approx(expected, rel=1e-12)
    dense = th.speedup(dataclasses.replace(costs, knee_tokens=None), 7, tau, 512, 256, concurrency=64)
    assert busy < 0.9 * dense


# --------------------------------------------------------------------------- pytensor


def test_pytensor_matches_numpy():
    pytensor = pytest.importorskip("pytensor")
    pt = pytest.importorskip("pytensor.tensor")

    names = ("a", "k", "P", "D", "rate", "conc") + th.COEFS
    sym = {n: pt.dvector(n) for n in names}
    costs = th.ServiceCosts(**{c: sym[c] for c in th.COEFS})
    tau = th.tau_constant(sym["a"], sym["k"], xp=pt)
    dem = th.demand(costs, sym["k"], tau, sym["P"], sym["D"], xp=pt)
    l_open = th.latency_open(dem.c1, dem.c2, sym["rate"], xp=pt)
    l_closed = th.latency_closed(dem.c1, dem.c2, sym["conc"])
    grad = pytensor.grad(pt.sum(tau) + pt.sum(l_closed), sym["a"])  # finite at a = 1 too
    fn = pytensor.function([sym[n] for n in names], [tau, dem.c1, dem.c2, l_open, l_closed, grad],
                           on_unused_input="ignore", mode="FAST_COMPILE")

    vals = dict(a=[0.0, 0.5, 0.8, 1.0], k=[0, 3, 5, 2], P=[128, 512, 1024, 64], D=[64, 256, 1024, 32],
                rate=[1.0, 5.0, 1e4, 0.0], conc=[1, 8, 32, 4], v0=[0.02] * 4, v1=[1e-4] * 4,
                d0=[2e-3] * 4, d1=[1e-5] * 4, p0=[1e-3] * 4, p1=[1e-5] * 4, c1=[1e-8] * 4)
    vals = {n: np.asarray(v, float) for n, v in vals.items()}
    got = fn(*[vals[n] for n in names])

    ncosts = th.ServiceCosts(**{c: vals[c] for c in th.COEFS})
    ntau = th.tau_constant(vals["a"], vals["k"])
    ndem = th.demand(ncosts, vals["k"], ntau, vals["P"], vals["D"])
    want = [ntau, ndem.c1, ndem.c2, th.latency_open(ndem.c1, ndem.c2, vals["rate"]),
            th.latency_closed(ndem.c1, ndem.c2, vals["conc"])]
    for g, w in zip(got[:5], want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert np.isinf(got[3][2])  # saturated entry
    assert np.all(np.isfinite(got[5]))
