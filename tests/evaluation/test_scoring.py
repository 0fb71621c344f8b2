"""Held-out scores against known answers: CRPS of a normal, calibrated and overconfident forecasts,
saturated draws and runs counted (not dropped), the cluster bootstrap's width."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_sd.evaluation.scoring import (
    cluster_bootstrap,
    coverage,
    crps,
    pit,
    score_runs,
    scored_saturated,
    summarise_scores,
)


def test_crps_matches_the_closed_form_of_a_normal():
    rng = np.random.default_rng(0)
    draws = rng.normal(10.0, 2.0, size=(40_000, 3))
    y = np.array([10.0, 12.0, 5.0])
    z = (y - 10.0) / 2.0
    exact = 2.0 * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(crps(draws, y, cap=1e6), exact, rtol=0.02)


def test_calibrated_forecasts_cover_at_their_level_and_overconfident_ones_do_not():
    rng = np.random.default_rng(1)
    n_runs = 2000
    truth_sd = 1.0
    y = rng.normal(0.0, truth_sd, n_runs) + 50.0
    right = rng.normal(50.0, truth_sd, size=(1000, n_runs))
    narrow = rng.normal(50.0, 0.4 * truth_sd, size=(1000, n_runs))
    assert coverage(right, y, 0.9).mean() == pytest.approx(0.9, abs=0.025)
    assert coverage(narrow, y, 0.9).mean() < 0.5
    # PIT: uniform for the calibrated forecast, U-shaped (mass at the ends) for the narrow one
    assert stats.kstest(pit(right, y), "uniform").pvalue > 0.01
    ends = lambda p: np.mean((p < 0.05) | (p > 0.95))  # noqa: E731
    assert ends(pit(narrow, y)) > 3 * ends(pit(right, y))


def test_saturated_runs_and_draws_are_scored_not_dropped():
    draws = np.array([[1.0, 1.0, np.inf], [2.0, np.inf, np.inf], [3.0, np.inf, np.inf], [4.0, 2.0, np.inf]])
    observed = np.array([2.5, np.nan, 3.0])  # run 1 measured saturated; run 2 finite but every draw saturated
    s = score_runs(draws, observed, saturated=[False, True, False])
    assert len(s) == 3 and s["saturated"].tolist() == [False, True, False]
    assert s.loc[1, "p_saturated"] == 0.5 and s.loc[1, "brier"] == pytest.approx(0.25)
    assert s.loc[2, "brier"] == pytest.approx(1.0)  # certain of saturation, measured finite: the worst score
    assert np.isinf(s.loc[2, "mean_s"]) and np.isinf(s.loc[2, "ape_mean"])  # an error, not a footnote
    assert np.isfinite(s["crps_s"]).all() and s.loc[2, "crps_s"] > s.loc[0, "crps_s"]
    # an interval whose upper end is infinite covers a saturated run, not every large finite value
    assert bool(s.loc[1, "covered_50"]) and not bool(s.loc[2, "covered_50"])


def test_negative_or_nan_draws_are_refused():
    with pytest.raises(ValueError, match="negative"):
        score_runs(np.array([[-np.inf], [1.0]]), np.array([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        score_runs(np.array([[np.nan], [1.0]]), np.array([1.0]))


def test_the_cluster_bootstrap_is_wider_when_runs_are_clustered():
    rng = np.random.default_rng(2)
    clusters = np.repeat(np.arange(10), 20)
    shared = rng.normal(0, 1, 10)[clusters]  # runs of one configuration err together
    values = shared + rng.normal(0, 0.1, clusters.size)
    est, lo, hi = cluster_bootstrap(values, clusters.astype(str), n_boot=1000, seed=0)
    _, lo_iid, hi_iid = cluster_bootstrap(values, np.arange(clusters.size).astype(str), n_boot=1000, seed=0)
    assert lo <= est <= hi and (hi - lo) > 2.5 * (hi_iid - lo_iid)


def test_summary_counts_every_run_and_names_each_figure():
    rng = np.random.default_rng(3)
    draws = rng.lognormal(0.0, 0.1, size=(500, 12))
    observed = np.exp(rng.normal(0.0, 0.1, 12))
    table = summarise_scores(score_runs(draws, observed), np.repeat(list("abcd"), 3), n_boot=200).set_index("figure")
    assert {"mape_median", "mape_mean", "coverage_90", "crps_s", "brier", "pit_ks"} <= set(table.index)
    assert (table["runs"] == 12).all()
    assert isinstance(table, pd.DataFrame) and table.loc["mape_median", "estimate"] < 0.2


def test_acceptance_length_is_scored_where_a_run_has_one():
    rng = np.random.default_rng(4)
    n = 400
    tau = rng.normal(3.0, 0.1, n)
    tau[:50] = np.nan  # runs without speculation: no acceptance length
    right = rng.normal(3.0, 0.1, size=(2000, n))
    wide = 3.0 * rng.lognormal(0.0, 0.3, size=(2000, n))
    lat = rng.lognormal(0.0, 0.1, size=(2000, n))
    s = score_runs(lat, np.ones(n), tau_draws=right, tau_observed=tau)
    assert s["ape_tau"].isna().sum() == 50 and s["covered_tau_90"].isna().sum() == 50
    assert s["covered_tau_90"].mean() == pytest.approx(0.9, abs=0.04)
    table = summarise_scores(s, np.arange(n) % 20).set_index("figure")
    assert table.loc["coverage_tau_90", "runs"] == n - 50
    assert table.loc["mape_tau", "estimate"] == pytest.approx(0.8 * 0.1 / 3.0, rel=0.15)  # E|N(0, s)| = 0.8 s
    wide_width = score_runs(lat, np.ones(n), tau_draws=wide, tau_observed=tau)["width_tau_90"].mean()
    assert wide_width > 5 * s["width_tau_90"].mean()


def test_only_open_loop_runs_flagged_saturated_are_scored_as_infinite():
    runs = pd.DataFrame({"load_type": ["rate", "rate", "concurrency", "concurrency"],
                         "saturated": [True, False, True, None]})
    np.testing.assert_array_equal(scored_saturated(runs), [True, False, False, False])
    # a closed loop flagged saturated is then scored on its finite latency: covered by an interval around it
    draws = np.random.default_rng(0).normal(10.0, 0.5, size=(400, 2))
    s = score_runs(draws, [10.0, 10.0], saturated=scored_saturated(runs.iloc[2:]))
    assert s["covered_90"].all() and not s["saturated"].any()


def test_a_new_runs_acceptance_carries_the_fits_run_to_run_scatter():
    import xarray as xr

    from bayes_sd.evaluation.scoring import new_run_acceptance

    curve = np.full((4000, 3), 2.5)
    post = xr.Dataset({"sigma_tau_obs": (("chain", "draw"), np.full((2, 50), 0.1))})
    draws = new_run_acceptance(post, curve, seed=1)
    assert draws.shape == curve.shape
    assert abs(draws.mean() / 2.5 - 1) < 0.01 and abs((draws / 2.5).std() - 0.1) < 0.005
    assert new_run_acceptance(xr.Dataset(), curve) is curve  # no scatter fitted: the curve alone
