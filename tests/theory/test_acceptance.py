"""Per-position (decaying) acceptance, the math of bayes_sd.theory.acceptance: numpy and pytensor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_sd import theory as th
from bayes_sd.theory import acceptance as acc

SETTINGS = settings(max_examples=40, deadline=None)


def fl(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- math
def test_k_zero_gives_one():
    assert acc.tau_decaying(0.8, 0.3, 0) == 1.0
    out = acc.tau_decaying(np.array([0.1, 0.5, 0.99]), np.array([0.0, 1.0, -0.5]), np.zeros(3))
    np.testing.assert_array_equal(out, np.ones(3))
    assert acc.position_acceptance(np.array([0.7, 0.8]), 0.3, 0).shape == (2, 0)


@SETTINGS
@given(a=fl(0.0, 1.0), k=st.integers(0, 10))
def test_zero_decay_is_constant_acceptance(a, k):
    assert acc.tau_decaying(a, 0.0, k) == pytest.approx(th.tau_constant(a, k), rel=1e-9, abs=1e-9)


@SETTINGS
@given(a1=fl(0.01, 0.99), decay=fl(-1.0, 2.0), k=st.integers(0, 10))
def test_second_moment_matches_per_position_distribution(a1, decay, k):
    surv = np.concatenate([[1.0], acc.survival(a1, decay, k)])  # P(Y >= j), j = 1..k+1
    pmf = surv - np.append(surv[1:], 0.0)
    j = np.arange(1, k + 2)
    assert acc.tau_sq_decaying(a1, decay, k) == pytest.approx(float(np.sum(j * j * pmf)), rel=1e-12)
    assert acc.tau_sq_decaying(a1, 0.0, k) == pytest.approx(th.tau_sq_constant(a1, k), rel=1e-12)


@SETTINGS
@given(a1=fl(0.01, 0.99), decay=fl(-1.0, 2.0), k=st.integers(1, 10))
def test_matches_per_position_formula_and_bounds(a1, decay, k):
    a_pos = acc.position_acceptance(a1, decay, k)
    assert a_pos.shape == (k,) and np.all((a_pos > 0) & (a_pos < 1))
    assert acc.tau_decaying(a1, decay, k) == pytest.approx(float(th.tau_per_position(a_pos)), rel=1e-12)
    np.testing.assert_allclose(acc.survival(a1, decay, k), np.cumprod(a_pos), rtol=1e-12)
    tau = acc.tau_decaying(a1, decay, k)
    assert 1.0 <= tau <= k + 1.0
    assert acc.tau_decaying(a1, decay, k + 1) >= tau  # one more position never removes tokens
    if acc.survival(a1, decay, k + 1)[-1] > 1e-12 * tau:  # ... and adds some when visible in float64
        assert acc.tau_decaying(a1, decay, k + 1) > tau
    assert acc.tau_decaying(a1, decay + 0.1, k) <= tau + 1e-12  # more decay, fewer tokens


def test_decay_lowers_later_positions_only():
    a = acc.position_acceptance(0.8, 0.4, 5)
    assert a[0] == pytest.approx(0.8)
    assert np.all(np.diff(a) < 0)
    np.testing.assert_allclose(acc.logit(a), acc.logit(0.8) - 0.4 * np.arange(5), rtol=1e-10)


def test_vectorised_mixed_k_over_draws():
    rng = np.random.default_rng(0)
    a1, decay = rng.uniform(0.3, 0.9, (50, 1)), rng.uniform(-0.2, 0.6, (50, 1))
    k = np.array([0.0, 1, 3, 7, 2])
    out = acc.tau_decaying(a1, decay, k)
    assert out.shape == (50, 5)
    for j, kk in enumerate(k):
        np.testing.assert_allclose(out[:, j], acc.tau_decaying(a1[:, 0], decay[:, 0], kk), rtol=1e-12)
    # k above an explicit k_max is truncated at k_max
    np.testing.assert_allclose(acc.tau_decaying(0.7, 0.2, 9.0, k_max=4), acc.tau_decaying(0.7, 0.2, 4))


def test_pytensor_matches_numpy_with_per_row_tensors():
    pytensor = pytest.importorskip("pytensor")
    pt = pytest.importorskip("pytensor.tensor")
    a1_s, decay_s = pt.dvector("a1"), pt.dvector("decay")
    k = np.array([0.0, 2.0, 7.0, 4.0, 1.0])  # numpy per-row draft lengths, one of them 0
    tau = acc.tau_decaying(a1_s, decay_s, k, xp=pt)
    grads = pytensor.grad(pt.sum(tau), [a1_s, decay_s])
    fn = pytensor.function([a1_s, decay_s], [tau, *grads])
    a1 = np.array([0.6, 0.7, 0.8, 0.999, 0.3])
    decay = np.array([0.3, 0.0, 0.1, -0.2, 1.0])
    got, g_a1, g_decay = fn(a1, decay)
    np.testing.assert_allclose(got, acc.tau_decaying(a1, decay, k), rtol=1e-12)
    assert got[0] == 1.0 and g_a1[0] == 0.0 and g_decay[0] == 0.0  # k = 0: no dependence
    assert np.all(np.isfinite(g_a1)) and np.all(np.isfinite(g_decay))
    assert np.all(g_a1[1:] > 0)  # more first-position acceptance, more tokens
    assert np.all(g_decay[1:4] < 0) and g_decay[4] == 0.0  # more decay, fewer tokens; k = 1 has no decay
    # a symbolic k needs k_max
    k_sym = pt.dvector("k")
    with pytest.raises(ValueError, match="k_max"):
        acc.tau_decaying(a1_s, decay_s, k_sym, xp=pt)
    f2 = pytensor.function([a1_s, decay_s, k_sym], acc.tau_decaying(a1_s, decay_s, k_sym, xp=pt, k_max=7))
    np.testing.assert_allclose(f2(a1, decay, k), got, rtol=1e-12)


def test_bad_k_is_refused():
    with pytest.raises(ValueError, match="k"):
        acc.tau_decaying(0.7, 0.1, np.array([2.0, -1.0]))
    with pytest.raises(ValueError, match="k"):
        acc.position_acceptance(0.7, 0.1, -1)


def test_implied_a1_round_trip_and_constant_case():
    k = np.arange(1, 9.0)
    tau = acc.tau_decaying(0.72, 0.25, k)
    np.testing.assert_allclose(acc.implied_a1(tau, k, 0.25), 0.72, atol=1e-9)
    tau_c = th.tau_constant(0.6, k)
    np.testing.assert_allclose(acc.implied_a1(tau_c, k, 0.0), th.implied_acceptance(tau_c, k), atol=1e-9)
    assert np.isnan(acc.implied_a1(1.0, 0, 0.1))


def test_per_position_from_sweep_recovers_exact_rates():
    ks = np.arange(2, 8.0)
    tau = acc.tau_decaying(0.75, 0.2, ks)
    kk, s, a = acc.per_position_from_sweep(ks[::-1], tau[::-1])  # order does not matter
    np.testing.assert_array_equal(kk, ks[1:])
    np.testing.assert_allclose(s, acc.survival(0.75, 0.2, 7)[2:], rtol=1e-10)
    np.testing.assert_allclose(a[1:], acc.position_acceptance(0.75, 0.2, 7)[3:], rtol=1e-10)
    with pytest.raises(ValueError, match="consecutive"):
        acc.per_position_from_sweep([2, 3, 5], [2.0, 2.3, 2.5])


@settings(max_examples=60, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(-0.5, 2.0), st.integers(0, 9))
def test_tau_moments_from_the_log_odds_match_the_two_functions(a1, decay, k):
    tau, tau_sq = acc.tau_moments_decaying(acc.logit(np.array([a1])), np.array([decay]), np.array([float(k)]))
    assert tau[0] == pytest.approx(acc.tau_decaying(a1, decay, k), rel=1e-12)
    assert tau_sq[0] == pytest.approx(acc.tau_sq_decaying(a1, decay, k), rel=1e-12)


def test_information_centre_is_where_tau_is_flat_in_the_decay():
    """A latent log-odds placed at the centre leaves tau unchanged, to first order, when the decay moves."""
    for a, k in ((0.8, 2), (0.8, 7), (0.5, 4), (0.9, 7)):
        pivot = acc.information_centre(a, k)
        assert 0.0 < pivot < (k - 1) / 2  # early positions weigh more: every later token needs them

        def tau_at(decay, pivot=pivot, a=a, k=k):  # log-odds at position 1 + pivot held at logit(a)
            return acc.tau_decaying(acc.expit(acc.logit(a) + pivot * decay), decay, k)
        slope = (tau_at(1e-4) - tau_at(-1e-4)) / 2e-4
        slope_first = (acc.tau_decaying(a, 1e-4, k) - acc.tau_decaying(a, -1e-4, k)) / 2e-4
        assert abs(slope) < 0.02 * abs(slope_first)
    assert acc.information_centre(0.8, 1) == 0.0 and acc.information_centre(0.8, 0) == 0.0


def test_decay_from_positions_is_calibrated_under_binomial_counts():
    """Drafts thinned position by position (the counts vLLM's per-position counters make): the slope
    estimates -decay without bias and its standard error gives 90% intervals that hold 90%."""
    rng = np.random.default_rng(5)
    a1, decay, k, n = 0.75, 0.3, 5, 2000
    a = acc.position_acceptance(a1, decay, k)
    slopes, ses = [], []
    for _ in range(600):
        alive, s = n, []
        for j in range(k):
            alive = rng.binomial(alive, a[j])
            s.append(alive / n)
        slope, se = acc.decay_from_positions(s, n)
        slopes.append(slope)
        ses.append(se)
    slopes, ses = np.array(slopes), np.array(ses)
    assert abs(slopes.mean() + decay) < 0.01
    assert 0.85 < np.mean(np.abs(slopes + decay) < 1.645 * ses) < 0.95
    assert abs(ses.mean() / slopes.std() - 1) < 0.15


def test_decay_from_positions_needs_two_positions_and_drafts():
    assert np.isnan(acc.decay_from_positions([0.8], 100)[0])
    assert np.isnan(acc.decay_from_positions([0.8, 0.6], 0)[1])
    # a position (almost) no draft reached carries (almost) no weight: the first two set the slope
    slope, _ = acc.decay_from_positions([0.5, 0.0, 0.0], 1e6)
    assert slope < -3
