"""Prediction for unseen levels from a posterior with learned scalar scales (no sampling)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_sd import theory
from bayes_sd.model.config import load_config
from bayes_sd.model.predict import acceptance_second_moment, condition_draws

#: log ms of each cost coefficient in the fake posterior
LOG_MS = {"v0": 2.0, "v1": -3.0, "d0": -0.5, "d1": -4.6, "p0": 3.0, "p1": -4.0, "c1": -10.4}


def _posterior(n=50, seed=0):
    rng = np.random.default_rng(seed)
    coef = list(theory.COEFS)
    s = ("chain", "draw")
    post = xr.Dataset({
        "mu_log_cost": (s + ("coef",), np.tile([LOG_MS[c] for c in coef], (1, n, 1))),
        "mu_accept": (s, np.full((1, n), 0.5)),
        "sigma_accept_pair": (s, np.abs(rng.normal(0.3, 0.05, (1, n)))),  # learned scalar scale
        "effect_accept_pair": (s + ("pair_dataset",), rng.normal(0.2, 0.01, (1, n, 2))),  # well measured
        "mu_tail": (s, np.full((1, n), -1.2)),
        "tail_load_slope": (s, np.zeros((1, n))),
        "sigma_latency": (s, np.full((1, n), 0.05)),
    }, coords={"coef": coef, "pair_dataset": ["v / d | a", "v / d | b"]})
    return {k: v.stack(sample=("chain", "draw")).transpose("sample", ...) for k, v in post.data_vars.items()}


def test_unseen_pair_dataset_with_learned_scalar_scale():
    post = _posterior(n=400)
    cond = pd.DataFrame({"verifier": "v", "drafter": ["d", "d", "none"], "hardware": "h", "dataset": ["a", "c", "a"],
                         "k": [2, 2, 0], "prompt_len": 100.0, "output_len": 100.0, "load_type": "concurrency",
                         "rate_rps": np.nan, "concurrency": 4.0})
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    cfg = load_config("default")
    cfg["model"]["configuration_effects"] = []  # no configuration departures: the closed form alone
    dr = condition_draws(post, cfg, fit_coords, cond, seed=1)
    assert dr.latency.shape == (400, 3) and np.isfinite(dr.latency).all()
    # the seen pair/dataset keeps its fitted acceptance; the unseen dataset spreads wider
    assert dr.acceptance_length[:, 1].std() > dr.acceptance_length[:, 0].std()
    # without speculation the prediction is centred on the closed form at the posterior's costs, computed
    # here (the draws spread around it: the hardware and verifier effects the posterior lacks are drawn)
    costs = theory.ServiceCosts(**{c: np.exp(LOG_MS[c]) / 1000.0 for c in theory.COEFS})
    dem = theory.demand(dataclasses.replace(costs, d0=0.0, d1=0.0), 0, 1.0, 100.0, 100.0)
    assert np.median(dr.latency[:, 2]) == pytest.approx(theory.latency_closed(dem.c1, dem.c2, 4.0), rel=0.05)


def test_a_proposer_that_drafts_at_some_steps_is_predicted_per_decode_step():
    """The acceptance length stays per draft (what engines report); the latency takes the share of
    decode steps that carry drafts: at share 0 exactly the latency without speculation, and in between
    the closed form at the per-step draft length and acceptance length."""
    post = _posterior(n=200)
    cond = pd.DataFrame({"verifier": "v", "drafter": ["d", "d", "d", "none"], "hardware": "h", "dataset": "a",
                         "k": [3, 3, 3, 0], "prompt_len": 100.0, "output_len": 100.0, "load_type": "concurrency",
                         "rate_rps": np.nan, "concurrency": 4.0})
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    cfg = load_config("default")
    cfg["model"]["configuration_effects"] = []
    dr = condition_draws(post, cfg, fit_coords, cond, seed=1, draft_share=[1.0, 0.4, 0.0, 1.0])
    np.testing.assert_allclose(dr.acceptance_length[:, 1], dr.acceptance_length[:, 0])
    np.testing.assert_allclose(dr.latency[:, 2], dr.latency[:, 3], rtol=1e-12)
    tau = dr.acceptance_length[:, 0]
    c = dr.inputs["cost"]
    costs = theory.ServiceCosts(**{n: c[n][:, 1] for n in theory.COEFS}, s1=c["s1"][:, 1], e0=c["e0"][:, 1],
                                e1=c["e1"][:, 1])
    tau_sq = acceptance_second_moment(dr.inputs["acceptance"][:, 1], 3.0)
    k_step, tau_step, tau_sq_step = theory.per_decode_step(3.0, tau, tau_sq, 0.4)
    dem = theory.demand(costs, k_step, tau_step, 100.0, 100.0, tau_sq=tau_sq_step)
    np.testing.assert_allclose(dr.latency[:, 1], theory.latency_closed(dem.c1, dem.c2, 4.0), rtol=1e-9)
    assert np.median(dr.latency[:, 0]) < np.median(dr.latency[:, 1]) < np.median(dr.latency[:, 3])


def test_a_run_of_n_requests_adds_its_mean_sampling_error_inflated_by_queueing():
    """latency_pred of a run of n requests = the long-run prediction times exp(rel_se z), rel_se^2 =
    CV^2 / n times theory.run_mean_inflation at each draw's own utilisation rate / capacity (the
    capped server's where a batch cap binds); none without n_requests."""
    from bayes_sd.model.predict import latency_at
    from bayes_sd.model.serve_latency import run_latency

    post = _posterior(n=2000)
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    cfg = load_config("default")
    cfg["model"]["configuration_effects"] = []
    costs = theory.ServiceCosts(**{c: np.exp(LOG_MS[c]) / 1000.0 for c in theory.COEFS})
    RUN = 400  # requests
    dem0 = theory.demand(dataclasses.replace(costs, d0=0.0, d1=0.0), 0, 1.0, 100.0, 100.0)
    c2, capped_capacity = dem0.c2, 2.0 / theory.latency_closed(dem0.c1, dem0.c2, 2.0)  # two slots: 2 / L(2)
    is_open = np.array([True, True, False, True])
    cond = pd.DataFrame({"verifier": "v", "drafter": "none", "hardware": "h", "dataset": "a", "k": 0,
                         "prompt_len": 100.0, "output_len": 100.0,
                         "load_type": np.where(is_open, "rate", "concurrency"),
                         "rate_rps": [0.1 / c2, 0.7 / c2, np.nan, 0.5 * capped_capacity],
                         "concurrency": [np.nan, np.nan, 8.0, np.nan],
                         "max_num_seqs": [np.nan, np.nan, np.nan, 2.0]})
    long_run = condition_draws(post, cfg, fit_coords, cond, seed=1)
    of_run = condition_draws(post, cfg, fit_coords, cond.assign(n_requests=RUN), seed=1)
    np.testing.assert_array_equal(of_run.latency, long_run.latency)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ratio = np.log(of_run.latency_pred / long_run.latency_pred)
    _, dem, _, _, wait, capacity = latency_at(long_run.inputs, np.zeros(4), np.ones(4), np.ones(4))
    rate = np.array(cond["rate_rps"].fillna(0.0))
    rho = rate / capacity
    # two slots bind long before 1 / C2: the capped utilisation is well above rate C2
    assert np.median(rho[:, 3]) > 2.0 * np.median(rate[3] * dem.c2[:, 3])
    with np.errstate(invalid="ignore", divide="ignore"):  # each draw's tail shape: p50 = mean exp(-s^2 / 2)
        cv_sq = np.expm1(2.0 * np.log(long_run.latency / long_run.latency_p50))
    inflation = np.where(is_open, (1 + rho) / (1 - rho), 1.0)
    # a run ends: near capacity it measures less than the steady state (run_latency), by the same factor
    # in every draw's prediction; what is left is the sampling error
    log_ratio = log_ratio - np.log(run_latency(long_run.inputs, np.zeros(4), np.ones(4), np.ones(4), long_run.latency,
                                               wait, capacity, np.full(4, float(RUN))) / long_run.latency)
    ok = np.isfinite(log_ratio) & (rho < 1)
    for j in range(4):
        z = log_ratio[ok[:, j], j] / np.sqrt(cv_sq[ok[:, j], j] / RUN * inflation[ok[:, j], j])
        assert 0.9 < z.std() < 1.1, j
    # the draws' utilisation spreads (unseen hardware effects); at 70% nominal the error is several times
    # the light load's, and independent requests' (inflation 1) would be far too narrow
    assert log_ratio[ok[:, 1], 1].std() > 2.0 * log_ratio[:, 0].std()
    assert log_ratio[ok[:, 1], 1].std() > 2.0 * np.sqrt(np.mean(cv_sq[ok[:, 1], 1]) / RUN)
    assert log_ratio[:, 2].std() == pytest.approx(np.sqrt(np.mean(cv_sq[:, 2]) / RUN), rel=0.1)


@pytest.mark.parametrize("column, bad", [("max_num_seqs", 0), ("kv_cache_tokens", 0.5), ("n_requests", 0.5),
                                         ("n_requests", "many"), ("arrival_cv2", -0.5), ("arrival_cv2", "even"),
                                         ("output_len_sd", -1.0), ("output_len_sd", "wide")])
def test_a_condition_with_an_impossible_count_names_the_column_and_the_fix(column, bad):
    from bayes_sd.model.conditions import validate_conditions

    cond = pd.DataFrame({"verifier": ["v"], "hardware": ["h"], "k": [0], "prompt_len": [100.0],
                         "output_len": [100.0], "load_type": ["concurrency"], "concurrency": [4.0], column: [bad]})
    with pytest.raises(ValueError, match=f"'{column}'.*Fix"):
        validate_conditions(cond)
    assert np.isnan(validate_conditions(cond.drop(columns=column))[column].iloc[0])  # empty: allowed


def test_a_kv_cache_caps_the_batch_at_the_sequences_it_holds():
    """A KV cache of 32 x (prompt + output) tokens caps the batch at 32 sequences of outputs ended by EOS
    (their spread unknown: sd = mean), as max_num_seqs = 32 does, and its preemptions add to a full batch
    32 x p1 x the output (theory.preemption_recompute): a closed loop of 96 streams waits (96 / 32 - 1)
    times that more, and the capacity is lower; the smaller of the two caps binds; with a fixed output
    length (sd 0) the same cache holds 40."""
    from bayes_sd.model.fit_data import batch_cap

    held = 300.0 + 200.0
    runs = pd.DataFrame({"prompt_len": [300.0] * 4, "output_len": [200.0] * 4,
                         "max_num_seqs": [np.nan, 64.0, 16.0, np.nan], "kv_cache_tokens": [32 * held] * 3 + [np.nan]})
    np.testing.assert_allclose(batch_cap(runs), [32.0, 32.0, 16.0, np.inf])
    np.testing.assert_allclose(batch_cap(runs.assign(output_len_sd=0.0)), [40.0, 40.0, 16.0, np.inf])
    np.testing.assert_allclose(batch_cap(runs.assign(output_len_sd=200.0)), batch_cap(runs))
    np.testing.assert_allclose(batch_cap(runs.drop(columns=["max_num_seqs", "kv_cache_tokens"])), np.inf)

    post = _posterior(300)
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    cfg = load_config("default")
    cond = pd.DataFrame({"verifier": "v", "drafter": "none", "hardware": "h", "dataset": "a", "k": 0,
                         "prompt_len": 300.0, "output_len": 200.0, "load_type": ["concurrency", "rate"],
                         "rate_rps": [np.nan, 5.0], "concurrency": [96.0, np.nan]})
    by_kv = condition_draws(post, cfg, fit_coords, cond.assign(kv_cache_tokens=32 * held), seed=1)
    by_cap = condition_draws(post, cfg, fit_coords, cond.assign(max_num_seqs=32.0), seed=1)
    uncapped = condition_draws(post, cfg, fit_coords, cond, seed=1)
    p1 = by_kv.inputs["cost"]["p1"][:, 0]
    np.testing.assert_allclose(by_kv.latency[:, 0] - by_cap.latency[:, 0], 2.0 * 32.0 * p1 * 200.0, rtol=1e-9)
    assert np.all(by_kv.saturation_rps < by_cap.saturation_rps)
    assert np.all(by_kv.latency[:, 1] >= by_cap.latency[:, 1])  # the open loop's wait, with the slower batch
    assert np.all(by_cap.latency[:, 0] > uncapped.latency[:, 0])  # 96 streams, 32 held: the rest wait


def test_a_finite_run_near_capacity_measures_what_its_length_allows():
    """An open-loop run of n requests cannot build the steady state's backlog when it holds more requests
    in flight than its length lets it accumulate: its predicted mean falls to the finite run's
    (theory.finite_run_latency), below the steady state, the shorter the run the more; a draw at or past
    capacity stays infinite (the run is flagged saturated); a closed loop and a condition without
    n_requests keep the steady state."""
    post = _posterior(n=1000)
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    cfg = load_config("default")
    cfg["model"]["configuration_effects"] = []
    costs = theory.ServiceCosts(**{c: np.exp(LOG_MS[c]) / 1000.0 for c in theory.COEFS})
    c2 = theory.demand(dataclasses.replace(costs, d0=0.0, d1=0.0), 0, 1.0, 100.0, 100.0).c2
    cond = pd.DataFrame({"verifier": "v", "drafter": "none", "hardware": "h", "dataset": "a", "k": 0,
                         "prompt_len": 100.0, "output_len": 100.0, "load_type": ["rate", "rate", "concurrency"],
                         "rate_rps": [0.2 / c2, 0.95 / c2, np.nan], "concurrency": [np.nan, np.nan, 64.0]})
    steady = condition_draws(post, cfg, fit_coords, cond, seed=3)
    short, long_ = (condition_draws(post, cfg, fit_coords, cond.assign(n_requests=n), seed=3) for n in (200, 5000))
    load = cond["rate_rps"].fillna(0).to_numpy() / steady.saturation_rps
    below = np.isfinite(steady.latency[:, 1])
    assert 0.2 < below.mean() < 0.9  # the draws straddle capacity
    for run in (short, long_):
        np.testing.assert_array_equal(np.isinf(run.latency_pred[:, 1]), load[:, 1] >= 1.0)
        assert np.isfinite(run.latency_pred[:, [0, 2]]).all()
    near = below & (load[:, 1] > 0.9)
    # near capacity: the steady state's backlog is out of a short run's reach
    assert np.median(short.latency_pred[near, 1] / steady.latency_pred[near, 1]) < 0.5
    assert np.median(short.latency_pred[near, 1]) < np.median(long_.latency_pred[near, 1])
    # in a closed loop the run keeps the steady state, and so does a long one at 20% load: only the sampling
    # error differs; a short one from an idle server measures a little less
    for run, j in ((short, 2), (long_, 0)):
        ratio = np.log(run.latency_pred[:, j] / steady.latency_pred[:, j])
        assert abs(np.median(ratio)) < 0.01 and np.std(ratio) < 0.2, j
    assert -0.1 < np.median(np.log(short.latency_pred[:, 0] / steady.latency_pred[:, 0])) < -0.005
    # a new run's C2 deviation (sigma_c2) reaches the finite run too, at the others its requests met
    deviating = condition_draws({**post, "sigma_c2": post["sigma_latency"] * 0 + 0.3}, cfg, fit_coords,
                                cond.assign(n_requests=200), seed=3)
    assert np.std(np.log(deviating.latency_pred[near, 1])) > 1.2 * np.std(np.log(short.latency_pred[near, 1]))
