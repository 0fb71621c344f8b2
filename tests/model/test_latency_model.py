"""The latency model: prior predictive, fit (one shared small fit), predict, save/load."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_sd._stats import convergence
from bayes_sd.model import DifferentModelError, LatencyModel

COND_COLS = ["verifier", "drafter", "hardware", "dataset", "k", "prompt_len", "output_len", "load_type",
             "rate_rps", "concurrency"]


@pytest.mark.parametrize("config", ["default", "moe_roofline"])  # the dense base and the main job's model
def test_prior_predictive_latency_is_plausible(b200_runs, config):
    """Priors put run latencies between a millisecond and ten minutes (checked on the real runs)."""
    prior = LatencyModel(config).prior_predictive(b200_runs, draws=300, random_seed=1)
    lat = prior.prior["latency_s"].values.ravel()
    lat = lat[np.isfinite(lat)]
    share = np.mean((lat > 1e-3) & (lat < 600))
    assert share > 0.95, f"only {share:.2%} of prior latencies within 1 ms - 10 min"
    # and the priors do not decide the answer: per run (not pooled over runs whose latencies
    # already span 12x), the prior's 90% interval spans at least 3x, and holds the measured latency
    per_run = prior.prior["latency_s"].stack(sample=("chain", "draw")).transpose("run", "sample")
    lo, hi = np.nanquantile(per_run.values, [0.05, 0.95], axis=-1)
    assert np.min(hi / lo) > 3, f"prior 90% interval of a run spans only {np.min(hi / lo):.2f}x"
    measured = b200_runs.set_index("run_id").loc[per_run["run"].values, "latency_mean_s"].to_numpy()
    inside = np.mean((measured >= lo) & (measured <= hi))
    assert inside > 0.9, f"prior 90% intervals hold only {inside:.0%} of the measured run latencies"


def test_fit_reports_diagnostics_and_excluded_runs(fitted_b200):
    model, _ = fitted_b200
    d = model.diagnostics()
    assert set(d) >= {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "converged"}
    assert d["chains"] == 2 and d["draws"] == 150
    assert d == convergence(model.idata)  # the sampling loop's figures, cached, are the posterior's
    attempts = model.fit_attempts
    assert [a["kept"] for a in attempts] == [True] and attempts[0]["min_ess_tail"] == d["min_ess_tail"]
    assert len(model.fit_data.excluded) == 2
    assert "fit_data" in model.idata.groups()
    post = model.idata.posterior
    assert {"verifier_cost_ms", "drafter_cost_ms", "acceptance"} <= set(post.data_vars)
    assert post["verifier_cost_ms"].dims[-2:] == ("verifier_hw", "vcoef")


def test_in_sample_latency_tracks_the_real_runs(fitted_b200, b200_runs):
    model, _ = fitted_b200
    runs = model.fit_data.runs
    pred = model.predict_table(runs[COND_COLS])
    err = np.abs(pred["latency_q50_s"].to_numpy() / runs["latency_mean_s"].to_numpy() - 1)
    assert np.median(err) < 0.08, f"median in-sample error {np.median(err):.1%}"
    # not only the run mean: the time per output token, a second observed quantity, is tracked too
    tpot_err = np.abs(pred["tpot_s"].to_numpy() / runs["tpot_mean_s"].to_numpy() - 1)
    assert np.median(tpot_err) < 0.15, f"median in-sample TPOT error {np.median(tpot_err):.1%}"


def test_speculation_pays_at_batch_one_on_b200(fitted_b200):
    """Measured: DSpark k=7 at 1 stream on HumanEval is 8.18 s / 3.46 s = 2.4x faster than no speculation."""
    model, _ = fitted_b200
    cond = pd.DataFrame([{"verifier": "Qwen/Qwen3.8-27B", "drafter": "dspark", "hardware": "B200",
                          "dataset": "HumanEval", "k": 7, "prompt_len": 190, "output_len": 760,
                          "load_type": "concurrency", "concurrency": 1}])
    row = model.predict_table(cond).iloc[0]
    assert 1.8 < row["speedup_vs_k0"] < 3.2
    assert row["p_slower_than_k0"] < 0.05


def test_predictions_take_the_fitted_runs_share_of_decode_steps_that_draft(fitted_b200):
    """A drafter whose fitted runs drafted at 30% of their decode steps is predicted so: the same
    acceptance length per draft, the latency of the closed form at that share."""
    import copy
    import dataclasses

    from bayes_sd.model.predict import acceptance_second_moment, latency_at

    model, _ = fitted_b200
    cond = pd.DataFrame({"verifier": "Qwen/Qwen3.8-27B", "drafter": "mtp", "hardware": "B200", "dataset": "HumanEval",
                         "k": [2], "prompt_len": 200.0, "output_len": 256.0, "load_type": "concurrency",
                         "rate_rps": np.nan, "concurrency": 1.0})
    every = model.predict_draws(cond, max_draws=200, seed=0)
    runs = model.fit_data.runs.copy()
    mtp = runs["drafter"] == "mtp"
    runs.loc[mtp, "num_drafts"] = 0.3 * (runs["n_requests"] * (runs["output_len"] - 1) - runs["accepted_tokens"])[mtp]
    sparse = copy.copy(model)
    sparse.fit_data = dataclasses.replace(model.fit_data, runs=runs)
    some = sparse.predict_draws(cond, max_draws=200, seed=0)
    np.testing.assert_allclose(some.acceptance_length, every.acceptance_length)
    inputs = every.inputs
    tau_sq = acceptance_second_moment(inputs["acceptance"], np.array([2.0]), inputs["accept_decay"])
    expected = latency_at({**inputs, "draft_share": np.array([0.3])}, np.array([2.0]), every.acceptance_length,
                          tau_sq)[2]
    np.testing.assert_allclose(some.latency, expected, rtol=1e-9)
    assert np.median(some.latency) > np.median(every.latency)  # fewer steps speculate: less of its gain


def test_unseen_hardware_is_more_uncertain_than_seen(fitted_b200):
    model, _ = fitted_b200
    base = {"verifier": "Qwen/Qwen3.8-27B", "drafter": "mtp", "dataset": "HumanEval", "k": 2, "prompt_len": 190,
            "output_len": 760, "load_type": "concurrency", "concurrency": 8}
    tab = model.predict_table(pd.DataFrame([{**base, "hardware": "B200"}, {**base, "hardware": "H100"}]))
    width = np.log(tab["latency_q95_s"] / tab["latency_q05_s"])
    assert width[1] > 2 * width[0]


def test_open_loop_prediction_diverges_past_saturation(fitted_b200):
    model, _ = fitted_b200
    base = {"verifier": "Qwen/Qwen3.8-27B", "drafter": "none", "hardware": "B200", "dataset": "HumanEval",
            "k": 0, "prompt_len": 190, "output_len": 760, "load_type": "rate"}
    sat = model.predict_table(pd.DataFrame([{**base, "rate_rps": 0.1}])).iloc[0]["saturation_rps"]
    tab = model.predict_table(pd.DataFrame([{**base, "rate_rps": r} for r in (0.1, 0.5 * sat, 3 * sat)]))
    assert tab["latency_q50_s"].iloc[0] < tab["latency_q50_s"].iloc[1]
    assert np.isinf(tab["latency_q50_s"].iloc[2]) and tab["p_saturated"].iloc[2] > 0.9


def test_predict_grid_has_named_dims(fitted_b200):
    model, _ = fitted_b200
    ds = model.predict_grid(verifier="Qwen/Qwen3.8-27B", drafter="dspark", hardware="B200", dataset="HumanEval",
                            ks=[0, 3, 7], prompt_len=190, output_len=760, concurrencies=[1, 16, 64])
    assert ds["latency_mean_s"].dims == ("k", "concurrency")
    assert list(ds["k"].values) == [0, 3, 7]
    lat = ds["latency_q50_s"]
    assert (lat.diff("concurrency") > 0).all()  # latency rises with load


def test_save_load_round_trip_gives_identical_predictions(fitted_b200, b200_runs):
    model, path = fitted_b200
    loaded = LatencyModel.load(path)
    assert loaded.id == model.id
    cond = b200_runs[COND_COLS].head(6)
    pd.testing.assert_frame_equal(model.predict_table(cond), loaded.predict_table(cond))
    pd.testing.assert_frame_equal(loaded.runs, model.runs, check_dtype=False)


def test_tree_depth_cap_reaches_the_sampler_and_is_kept(fitted_b200):
    """fit(max_tree_depth=6) caps nutpie's trees (warm-up too) and the setting survives save/load."""
    model, path = fitted_b200
    # the early warm-up is where the cap bites: uncapped, this fit's warm-up trees reach depth 10
    # (its posterior draws stay at depth 4 either way, so they would not tell)
    assert int(model.idata.warmup_sample_stats["depth"].max()) <= 6
    assert LatencyModel.load(path).sampler_settings["max_tree_depth"] == 6


def test_load_rejects_a_different_model(fitted_b200, tmp_path):
    model, _ = fitted_b200
    idata = model.idata.copy()
    cfg = json.loads(idata.attrs["config"])
    cfg["priors"]["mu_v0"]["mu"] += 1.0  # saved with another config than its id says
    idata.attrs["config"] = json.dumps(cfg)
    idata.to_netcdf(tmp_path / "tampered.nc", engine="h5netcdf")
    with pytest.raises(DifferentModelError, match="does not match"):
        LatencyModel.load(tmp_path / "tampered.nc")
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(ValueError, match="junk.nc"):
        LatencyModel.load(tmp_path / "junk.nc")


def test_posterior_predictive_replicates_the_observations(fitted_b200):
    model, _ = fitted_b200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp = model.sample_posterior_predictive(random_seed=1, extend_idata=False)
    rep = pp.posterior_predictive["latency_obs"]
    obs = np.log(model.fit_data.obs["latency"][1])
    lo, hi = rep.quantile([0.05, 0.95], dim=("chain", "draw")).values
    coverage = np.mean((obs >= lo) & (obs <= hi))
    assert coverage > 0.7, f"90% posterior predictive interval covers only {coverage:.0%} of runs"


def test_within_drafter_centring_sums_to_zero_with_unit_variance():
    """Pair deviations of the drafter costs sum to zero within each drafter and keep the prior's
    variance (a drafter with one verifier has no deviation of its own)."""
    from bayes_sd.model.build import within_group_centring

    group = np.array([2, 0, 2, 1, 2, 0])
    M = within_group_centring(group)
    for g in np.unique(group):
        assert np.allclose(M[:, group == g].sum(axis=1)[group == g], 0.0)
    # covariance of M z for iid unit z is M M^T: unit diagonal, except the singleton (0)
    assert np.allclose(np.diag(M @ M.T), [1, 1, 1, 0, 1, 1])
    assert np.allclose(M[group != 1] @ np.ones(6), 0.0)


def test_both_parameterisations_define_the_same_prior():
    """Hierarchical centring (level ~ N(parent, sigma)) and the sum form (parent + sigma z) are the
    same prior: the stored effects have the same spread in both, at the prior's scale when fixed."""
    import pymc as pm

    from bayes_sd import datasets
    from bayes_sd.model.fit_data import fixed_scale

    runs = datasets.load_fleet_runs()
    spread = {}
    for param in ("centered", "non_centered"):
        lm = LatencyModel(overrides={"model": {"parameterization": param}})
        model = lm.build(runs)
        assert ("logit_acceptance" in {v.name for v in model.free_RVs}) == (param == "centered")
        names = ["effect_verifier_hw", "effect_drafter_hw", "effect_accept_pair", "effect_tail_pair"]
        draws = pm.draw([model[n] for n in names], draws=3000, random_seed=3)
        spread[param] = np.array([np.std(d) for d in draws])
    assert np.allclose(spread["centered"], spread["non_centered"], rtol=0.08), spread
    level = fixed_scale(lm.config, "sigma_level")
    assert np.allclose(spread["centered"][:2], level, rtol=0.08)


def test_ttft_error_scale_grows_with_the_load_share():
    """The TTFT closed form leaves out admission queueing, which grows with load: the TTFT
    likelihood's scale is sqrt(sigma_ttft^2 + (sigma_ttft_load * load share)^2), so it is
    sigma_ttft for a run alone on the server and wider for busy runs."""
    import pytensor

    from bayes_sd import datasets

    lm = LatencyModel()
    model = lm.build(datasets.load_fleet_runs())
    assert "sigma_ttft_load" in {v.name for v in model.free_RVs}
    sigma = model.replace_rvs_by_values([model["ttft_obs"].owner.inputs[-1]])[0]  # StudentT(nu, mu, sigma)
    fn = pytensor.function(model.value_vars, sigma, on_unused_input="ignore", mode="FAST_COMPILE")
    point = model.initial_point()
    scale = np.broadcast_to(fn(*[point[v.name] for v in model.value_vars]), (len(model.coords["ttft_run"]),))
    fd = lm.fit_data
    rows = fd.obs["ttft"][0]
    alone = (fd.x["is_open"][rows] == 0) & (fd.x["concurrency"][rows] == 1)
    s_ttft = np.exp(point["sigma_ttft_log__"])
    assert alone.any() and np.allclose(scale[alone], s_ttft)
    assert np.all(scale >= s_ttft * (1 - 1e-12)) and scale.max() > 1.5 * s_ttft


def test_each_deployment_keeps_its_own_acceptance(b200_runs):
    """The same pair and dataset measured on two hardware with acceptance 25% apart (another server's
    sampling settings): each deployment's predicted acceptance length follows its own runs, and a
    third hardware gets the pair x dataset's average, more uncertain."""
    import warnings

    from bayes_sd.model import ConvergenceWarning

    mtp = b200_runs[(b200_runs["drafter"].isin(["mtp", "none"])) & (b200_runs["dataset"] == "HumanEval")]
    other = mtp.assign(hardware="H200", run_id=mtp["run_id"] + "-h200")
    spec = other["k"] > 0
    scale = 0.75  # accepted drafts per step: 25% fewer
    other.loc[spec, "accepted_tokens"] = other.loc[spec, "accepted_tokens"] * scale
    other.loc[spec, "acceptance_length"] = 1 + (other.loc[spec, "acceptance_length"] - 1) * scale
    other = other.drop(columns="per_position_acceptance", errors="ignore")
    runs = pd.concat([mtp, other], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel().fit(runs, draws=150, tune=200, chains=2, random_seed=3, progressbar=False,
                                   max_tree_depth=6)
    k = int(runs.loc[runs["k"] > 0, "k"].iloc[0])
    cond = pd.DataFrame({"verifier": "Qwen/Qwen3.8-27B", "drafter": "mtp", "hardware": ["B200", "H200", "H100"],
                         "dataset": "HumanEval", "k": k, "prompt_len": 190.0, "output_len": 760.0,
                         "load_type": "concurrency", "rate_rps": np.nan, "concurrency": 1.0})
    tau = model.predict_draws(cond, max_draws=300, seed=0).acceptance_length
    for i, hw in enumerate(["B200", "H200"]):
        measured = runs.loc[(runs["hardware"] == hw) & (runs["k"] == k), "acceptance_length"].mean()
        assert np.median(tau[:, i]) == pytest.approx(measured, rel=0.04)
    assert np.median(tau[:, 1]) < np.median(tau[:, 2]) < np.median(tau[:, 0])
    assert tau[:, 2].std() > 2 * max(tau[:, 0].std(), tau[:, 1].std())


def test_the_moe_form_warns_of_dense_verifiers_only_when_the_models_table_does_not_list_them(b200_runs, caplog):
    """`bayes-sd fit` fits the main job's MoE-capable form by default: a verifier the models table lists without
    experts is dense by the user's word (no warning); one missing from it may be MoE (a warning naming it)."""
    verifiers = sorted(b200_runs["verifier"].unique())
    listed = pd.DataFrame({"name": verifiers, "params_b": 8.0, "layers": 32})
    for models, warned in ((listed, False), (None, True)):
        caplog.clear()
        with caplog.at_level("INFO", logger="bayes_sd.model.latency_model"):
            LatencyModel("moe_roofline_speculation")._prepare(b200_runs, models)
        said = [r for r in caplog.records if "every verifier is fitted dense" in r.getMessage()]
        assert len(said) == 1 and (said[0].levelname == "WARNING") == warned
        assert (verifiers[0] in said[0].getMessage()) == warned
