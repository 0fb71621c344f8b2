"""Model variants in ``models/``: MoE verifiers, roofline knee and drafter-design predictors.

The central check: for every variant, the numpy predictor (``model/predict.py``, used for
every prediction and decision) computes the same run latencies as the PyMC graph
(``model/build.py``, used for fitting) at the same parameter draws.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_sd import theory
from bayes_sd.cli import main
from bayes_sd.datasets import load_fleet_models, load_fleet_runs
from bayes_sd.model import LatencyModel
from bayes_sd.model.build import build_model
from bayes_sd.model.config import load_config
from bayes_sd.model.fit_data import prepare_fit_data
from bayes_sd.model.load_range import load_offset
from bayes_sd.model.predict import acceptance_second_moment, condition_draws
from bayes_sd.recommend import fitted_batch_cap, fitted_output_spread, fitted_setting
from bayes_sd.simulate.presets import PRESETS

COND = ["verifier", "drafter", "hardware", "dataset", "k", "prompt_len", "output_len", "load_type", "rate_rps",
        "concurrency"]


@pytest.fixture(scope="module")
def fleet_subset():
    """SYNTHETIC fleet runs: the MoE verifier and one dense verifier, H100, with every drafter."""
    runs = load_fleet_runs()
    keep = runs["verifier"].isin(["qwen3-30b-a3b", "llama3.1-8b"]) & (runs["hardware"] == "H100")
    return runs[keep].reset_index(drop=True), load_fleet_models()


def test_variant_files_extend_the_default():
    base, moe, design = load_config("default"), load_config("moe"), load_config("drafter_design")
    assert moe["model"]["verifier_form"] == "moe" and "expert_share" in moe["priors"]
    assert design["model"]["drafter_predictors"] == ["log_layers", "log_params_b"]
    assert set(base["priors"]) < set(moe["priors"]) and set(base["priors"]) < set(design["priors"])
    assert moe["priors"]["mu_v0"] == base["priors"]["mu_v0"]
    assert all("why" in spec for spec in {**moe["priors"], **design["priors"]}.values())
    assert "extends" not in moe


def test_newton_fixed_point_matches_bisection_and_has_finite_gradients():
    pre = PRESETS["qwen3-30b-a3b+eagle3-small@H100"]
    c, log_q = dataclasses.replace(pre.costs, knee_tokens=None), np.log1p(-8 / 128)  # the MoE part alone
    for k, tau in ((0, 1.0), (4, 2.8)):
        dem = theory.demand(c, k, tau, 512.0, 256.0)
        rates = np.array([0.2, 0.5, 0.9]) * theory.saturation_rate(dem.c2)
        saving = theory.iterations(256.0, tau) * c.v0 * c.expert_share
        newton = theory.latency_moe_open_newton(dem.c1, dem.c2, saving, log_q, k, rates)
        bisect = theory.latency_moe_open(c, k, tau, 512.0, 256.0, rates)
        np.testing.assert_allclose(newton, bisect, rtol=1e-9)
        dense = theory.latency_open(dem.c1, dem.c2, rates)
        assert np.all(newton <= dense * (1 + 1e-12))
        if k == 0:  # few tokens per pass at low load: few experts touched, a visible saving
            assert newton[0] < 0.99 * dense[0]
    share = pt.dscalar("share")
    lat = theory.latency_moe_open_newton(1.0, 0.02, 0.5 * share, log_q, 3.0, 20.0, xp=pt)
    grad = pytensor.function([share], pytensor.grad(lat, share))(0.6)
    assert np.isfinite(grad) and grad < 0  # a larger coverage-dependent share lowers latency


def test_fit_data_reads_experts_and_drafter_sizes(fleet_subset):
    runs, models = fleet_subset
    fd = prepare_fit_data(runs, models, ["log_layers", "log_params_b"])
    assert fd.coords["moe_verifier"] == ["qwen3-30b-a3b"]
    moe = fd.runs["verifier"].eq("qwen3-30b-a3b").to_numpy()
    assert np.all(fd.x["moe_on"][moe] == 1) and np.all(fd.x["moe_on"][~moe] == 0)
    np.testing.assert_allclose(fd.x["moe_log_q"][moe], np.log1p(-8 / 128))
    z = pd.DataFrame(fd.x["drafter_z"], index=fd.coords["drafter"], columns=fd.coords["drafter_predictor"])
    assert z.loc["draft-1b", "log_layers"] == pytest.approx(np.log(16 / 4))
    assert z.loc["eagle3-small", "log_layers"] < z.loc["draft-1b", "log_layers"]


def test_missing_drafter_sizes_name_the_fix(fleet_subset):
    runs, models = fleet_subset
    with pytest.raises(ValueError, match="no row for drafter.*Fix: add them to the models table"):
        prepare_fit_data(runs, models[models["name"] != "draft-1b"], ["log_layers"])
    with pytest.raises(ValueError, match="unknown.*Fix"):
        prepare_fit_data(runs, models, ["hidden_width"])


@pytest.mark.parametrize("config", ["default", "moe", "drafter_design", "per_position", "roofline", "moe_roofline",
                                    "moe_roofline_per_position", "moe_roofline_speculation", "config_load_trend",
                                    "server_load_trend"])
def test_numpy_predictor_reproduces_the_pymc_graph(fleet_subset, config):
    runs, models = fleet_subset
    if config.endswith("load_trend"):  # C2 bending with the distance from the measured loads
        cfg = load_config("moe_roofline_speculation")
        config = load_config({**cfg, "model": {**cfg["model"], "configuration_effects": [config]}})
    cfg = load_config(config)
    fd = prepare_fit_data(runs, models, cfg["model"].get("drafter_predictors", []))
    model = build_model(fd, cfg)
    if config == "moe":
        assert "expert_share" in model.named_vars
    for trend in {"config_load_trend", "server_load_trend"} & set(cfg["model"].get("configuration_effects", [])):
        assert f"z_{trend}" in model.named_vars
    prior = pm.sample_prior_predictive(draws=200, model=model, random_seed=3).prior
    post = {name: da.stack(sample=("chain", "draw")).transpose("sample", ...) for name, da in prior.data_vars.items()}
    cond = fd.runs[COND].assign(rate_rps=np.where(fd.x["is_open"] > 0, fd.x["rate"], np.nan))  # achieved rate
    offsets = {trend: np.tile(load_offset(fd.runs, fd.runs, by), 2)  # as the graph's (configured rates)
               for trend, by in (("config_load_trend", "configuration"), ("server_load_trend", "server"))}
    dr = condition_draws(post, cfg, fd.coords, cond, seed=0, models=models,
                         fitted_drafters=fd.drafter_table(), load_offsets=offsets)
    if "acceptance" in post:  # the first-position acceptance the graph reports is the one predictions use
        pd_of_run = fd.idx["run_pd"][cond["k"].to_numpy() > 0]
        np.testing.assert_allclose(dr.inputs["acceptance"][:, cond["k"].to_numpy() > 0],
                                   post["acceptance"].values[:, pd_of_run], rtol=1e-9)
    graph = post["latency_s"].values
    ok = np.isfinite(dr.latency) & (dr.batch_size < 0.5 * np.where(fd.x["is_open"] > 0,
                                                                     dr.saturation_rps * dr.latency, np.inf))
    ok &= np.isfinite(graph) & (graph < 1e4)
    if cfg["model"].get("verifier_form") in ("roofline", "moe_roofline"):  # open loop, the graph counts tokens
        # at the measured batch (build.py)
        ok &= fd.x["is_open"] == 0
    assert ok.mean() > 0.3  # enough prior draws away from saturation to compare
    np.testing.assert_allclose(dr.latency[ok], graph[ok], rtol=1e-6)


def graph_and_predictor(fd, cfg: dict, models, columns: list[str]):
    """Prior draws of the graph for ``fd``'s runs and the predictor's for the same runs as conditions
    (``COND + columns``): ``(post, cond, predicted, graph latency, ok)``, ``ok`` marking the draws both
    compute away from saturation (half the capacity in open loop) and, for the roofline forms, closed loops
    only (open loop the graph counts tokens as it may)."""
    prior = pm.sample_prior_predictive(draws=200, model=build_model(fd, cfg), random_seed=3).prior
    post = {name: da.stack(sample=("chain", "draw")).transpose("sample", ...) for name, da in prior.data_vars.items()}
    cond = fd.runs[COND + columns].assign(rate_rps=np.where(fd.x["is_open"] > 0, fd.x["rate"], np.nan))
    dr = condition_draws(post, cfg, fd.coords, cond, seed=0, models=models, fitted_drafters=fd.drafter_table())
    graph = post["latency_s"].values
    ok = np.isfinite(dr.latency) & np.isfinite(graph) & (graph < 1e4)
    ok &= np.where(fd.x["is_open"] > 0, cond["rate_rps"].to_numpy() < 0.5 * dr.saturation_rps, True)
    if cfg["model"].get("verifier_form") == "moe_roofline":
        ok &= fd.x["is_open"] == 0
    return post, cond, dr, graph, ok


@pytest.mark.parametrize("config", ["default", "moe_roofline"])
def test_numpy_predictor_reproduces_the_pymc_graph_with_a_batch_cap(fleet_subset, config):
    """A known batch cap (max_num_seqs) on the dense verifier's runs: the graph and the predictor agree
    on latency and capacity, capped runs past the cap included; uncapped runs are as without caps."""
    runs, models = fleet_subset
    runs = runs.assign(max_num_seqs=np.where(runs["verifier"] == "llama3.1-8b", 24.0, np.nan))
    cfg = load_config(config)
    fd = prepare_fit_data(runs, models)
    assert fd.x["has_cap"].sum() > 0 and (fd.x["has_cap"] == 0).sum() > 0
    post, cond, dr, graph, ok = graph_and_predictor(fd, cfg, models, ["max_num_seqs"])
    queued = (fd.x["has_cap"] > 0) & (cond["concurrency"].to_numpy() > 24)
    assert ok[:, queued].mean() > 0.3  # closed loops past the cap are compared
    np.testing.assert_allclose(dr.latency[ok], graph[ok], rtol=1e-6)
    np.testing.assert_allclose(dr.saturation_rps, post["saturation_rps"].values, rtol=1e-6)
    uncapped = condition_draws(post, cfg, fd.coords, cond.drop(columns="max_num_seqs"), seed=0, models=models,
                               fitted_drafters=fd.drafter_table())
    capped = fd.x["has_cap"] > 0
    # a full batch's requests each carry the load-independent demand C1 too: below 1 / C2 wherever C1 > C2
    assert np.all(dr.saturation_rps[:, capped] <= uncapped.saturation_rps[:, capped])
    assert np.mean(dr.saturation_rps[:, capped] < uncapped.saturation_rps[:, capped]) > 0.9
    np.testing.assert_array_equal(dr.latency[:, ~capped], uncapped.latency[:, ~capped])
    if config == "default":  # dense: past the cap, N L(B) / B - L(N) = (N / B - 1)(C1 - C2), > 0 where C1 > C2
        finite = np.isfinite(dr.latency[:, queued])
        assert np.mean((dr.latency[:, queued] > uncapped.latency[:, queued])[finite]) > 0.9


@pytest.mark.parametrize("config", ["default", "moe_roofline"])
def test_numpy_predictor_reproduces_the_pymc_graph_with_a_kv_cache(fleet_subset, config):
    """A KV cache of 24 sequences on the dense verifier's runs: the graph and the predictor agree, and a
    closed loop past it is slower than past max_num_seqs = 24 by the full batch's recompute
    (``theory.preemption_recompute``: 24 x p1 x the mean output), which enters through the wait for a
    slot, ``(streams / 24 - 1)`` times it."""
    from bayes_sd.model.fit_data import recompute_tokens

    runs, models = fleet_subset
    dense = (runs["verifier"] == "llama3.1-8b").to_numpy()
    held = theory.kv_tokens_held(runs["prompt_len"], runs["output_len"], 0.0)
    runs = runs.assign(output_len_sd=0.0, kv_cache_tokens=np.where(dense, 24.0 * held, np.nan))
    assert np.array_equal(recompute_tokens(runs) > 0, dense)
    cfg = load_config(config)
    fd = prepare_fit_data(runs, models)
    post, cond, dr, graph, ok = graph_and_predictor(fd, cfg, models, ["kv_cache_tokens", "output_len_sd"])
    queued = (fd.x["has_cap"] > 0) & (cond["concurrency"].to_numpy() > 24)
    assert ok[:, queued].mean() > 0.3
    np.testing.assert_allclose(dr.latency[ok], graph[ok], rtol=1e-6)
    np.testing.assert_allclose(dr.saturation_rps, post["saturation_rps"].values, rtol=1e-6)
    capped = (cond["verifier"] == "llama3.1-8b").to_numpy()
    by_seqs = condition_draws(post, cfg, fd.coords, cond.drop(columns="kv_cache_tokens").assign(
        max_num_seqs=np.where(capped, 24.0, np.nan)), seed=0, models=models, fitted_drafters=fd.drafter_table())
    extra = dr.latency[:, queued] - by_seqs.latency[:, queued]
    finite = np.isfinite(extra)
    assert finite.mean() > 0.5 and np.all(extra[finite] > 0)
    p1 = np.broadcast_to(dr.inputs["cost"]["p1"], dr.latency.shape)[:, queued]
    streams, output = cond["concurrency"].to_numpy()[queued], cond["output_len"].to_numpy()[queued]
    expected = (streams / 24.0 - 1.0) * theory.preemption_recompute(24.0, p1, output)  # through the wait
    np.testing.assert_allclose(extra[finite], expected[finite], rtol=1e-6)
    np.testing.assert_array_equal(dr.latency[:, ~capped], by_seqs.latency[:, ~capped])


@pytest.mark.parametrize("config", ["default", "moe", "moe_roofline_speculation"])
def test_numpy_predictor_reproduces_the_pymc_graph_with_regular_arrivals(fleet_subset, config):
    """Open loops whose arrivals are evenly spaced (cv2 0), between (0.5), Poisson (1) or burstier (2):
    the graph and the predictor agree (theory.arrivals' two pieces); more regular arrivals meet fewer
    others, so lower latency at the same rate, and the same capacity."""
    runs, models = fleet_subset
    is_open = (runs["load_type"] == "rate").to_numpy()
    cv2 = np.where(is_open, np.resize([0.0, 0.5, 2.0, 1.0], len(runs)), np.nan)
    base = load_config(config)
    cfg = load_config({**base, "model": {**base["model"], "arrivals": "as_recorded"}})
    fd = prepare_fit_data(runs.assign(arrival_cv2=cv2), models)
    assert set(np.unique(fd.x["arrival_cv2"])) == {0.0, 0.5, 1.0, 2.0}  # closed loops: Poisson, unused
    post, cond, dr, graph, ok = graph_and_predictor(fd, cfg, models, ["arrival_cv2"])
    if cfg["model"].get("verifier_form") != "moe_roofline":
        regular = (fd.x["is_open"] > 0) & (fd.x["arrival_cv2"] == 0.0)
        assert ok[:, regular].mean() > 0.3  # evenly spaced open loops are compared
    np.testing.assert_allclose(dr.latency[ok], graph[ok], rtol=1e-6)
    assert "arrival_irregularity" in post  # learned where evenly spaced runs are fitted
    poisson = condition_draws(post, cfg, fd.coords, cond.drop(columns="arrival_cv2"), seed=0, models=models,
                              fitted_drafters=fd.drafter_table())
    np.testing.assert_array_equal(  # as the default configuration takes them: every open loop Poisson
        condition_draws(post, base, fd.coords, cond, seed=0, models=models, fitted_drafters=fd.drafter_table()).latency,
        poisson.latency)
    np.testing.assert_allclose(dr.saturation_rps, poisson.saturation_rps, rtol=1e-12)
    both = np.isfinite(dr.latency) & np.isfinite(poisson.latency)
    with np.errstate(invalid="ignore"):  # inf - inf where saturated, left out below
        diffs = dr.latency - poisson.latency
    for c, sign in ((0.0, -1), (0.5, -1), (1.0, 0), (2.0, 1)):
        cols = (fd.x["is_open"] > 0) & (fd.x["arrival_cv2"] == c)
        diff = diffs[:, cols][both[:, cols]]
        assert np.all(np.sign(diff) * sign >= 0) and (sign == 0 or np.mean(np.sign(diff) == sign) > 0.5)


def test_closed_loop_runs_past_a_known_cap_are_kept(fleet_subset):
    """A closed loop flagged saturated is kept when it runs more streams than its batch cap (a steady
    queue the capped law describes), excluded below it (something else queues it); open-loop
    saturated runs stay excluded; without a cap nothing changes."""
    runs, models = fleet_subset
    closed = runs["load_type"] == "concurrency"
    runs = runs.assign(saturated=runs["saturated"].fillna(False).astype(bool)
                       | (closed & runs["concurrency"].isin([16.0, 96.0])), saturation_reason="queueing")
    flagged = runs["saturated"]
    assert (flagged & ~closed).any()
    ids = set(prepare_fit_data(runs.assign(max_num_seqs=48.0), models).runs["run_id"])
    assert set(runs.loc[closed & (runs["concurrency"] == 96.0), "run_id"]) <= ids
    assert not set(runs.loc[flagged & (runs["concurrency"] == 16.0), "run_id"]) & ids
    assert not set(runs.loc[flagged & ~closed, "run_id"]) & ids
    assert not set(runs.loc[flagged, "run_id"]) & set(prepare_fit_data(runs, models).runs["run_id"])


def test_a_batch_cap_saves_loads_and_reaches_the_recommender(fleet_subset, mock_pymc_sample, tmp_path):
    runs, models = fleet_subset
    runs = runs[runs["verifier"] == "llama3.1-8b"].assign(max_num_seqs=32.0, kv_cache_tokens=5.0e5)
    runs = runs.assign(output_len_sd=np.where(runs["dataset"] == runs["dataset"].iloc[0], 0.5 * runs["output_len"],
                                              np.nan))
    m = LatencyModel("default").fit(runs, models=models, draws=20, tune=0, chains=1, nuts_sampler="pymc",
                                    progressbar=False)
    back = LatencyModel.load(m.save(tmp_path / "capped.nc"))
    # the spread of the outputs a workload's training runs record, relative to their mean; none: EOS's
    assert fitted_output_spread(back, runs["dataset"].iloc[0], 300.0) == pytest.approx(150.0)
    assert fitted_output_spread(back, "never-seen", 300.0) is None
    cond = runs[COND + ["max_num_seqs", "kv_cache_tokens"]].head(6)
    pd.testing.assert_frame_equal(back.predict_table(cond), m.predict_table(cond))
    assert fitted_batch_cap(back, "llama3.1-8b", "H100") == 32.0
    assert fitted_setting(back, "llama3.1-8b", "H100", "kv_cache_tokens") == 5.0e5
    assert fitted_batch_cap(back, "llama3.1-8b", "A100") is None  # no training run there records one
    assert fitted_setting(back, "llama3.1-8b", "A100", "kv_cache_tokens") is None
    vj = tmp_path / "vllm.json"
    assert main(["recommend", str(tmp_path / "capped.nc"), "--verifier", "llama3.1-8b", "--drafter", "eagle3-small",
                 "--hardware", "H100", "--prompt-len", "500", "--output-len", "200", "--concurrency", "1,8",
                 "--k-max", "3", "--max-draws", "20", "--vllm-config", str(vj), "--quiet"]) == 0
    assert json.loads(vj.read_text())["schedule"][-1]["max_batch_size"] == 32  # the server's cap, not 256


@pytest.mark.parametrize("config", ["moe", "moe_roofline"])
def test_moe_variant_saves_and_loads_with_its_models_table(fleet_subset, mock_pymc_sample, tmp_path, config):
    runs, models = fleet_subset
    runs = runs[runs["verifier"] == "qwen3-30b-a3b"]  # with the n-gram drafter (model-free in moe_roofline)
    m = LatencyModel(config).fit(runs, models=models, draws=20, tune=0, chains=1, nuts_sampler="pymc",
                                 progressbar=False)
    assert "expert_share" in m.idata.posterior
    path = m.save(tmp_path / f"{config}.nc")
    back = LatencyModel.load(path)
    pd.testing.assert_frame_equal(back.models.reset_index(drop=True), m.models.reset_index(drop=True),
                                  check_dtype=False)
    cond = runs[COND].groupby("drafter").head(2)  # every drafter, the n-gram one included
    assert "ngram" in set(cond["drafter"])
    pd.testing.assert_frame_equal(back.predict_table(cond), m.predict_table(cond))


def _knee_fixed_point_by_scan(c1, c2, compute, knee, k, rate):
    """Smallest L with g(L) <= L on a fine grid (inf when none): the reference for the closed form."""
    grid = np.geomspace(c1, 1e4 * c1, 400_001)
    f = c1 + rate * grid * c2 + compute * theory.knee_excess(rate * grid, k, knee) - grid
    below = np.flatnonzero(f <= 0)
    return grid[below[0]] if below.size else np.inf


def test_roofline_open_loop_closed_form_matches_a_scan_and_detects_saturation():
    rng = np.random.default_rng(0)
    for _ in range(60):  # random costs, knees and loads up to 120% of 1 / C2
        c1, c2, compute = rng.uniform(0.5, 5), rng.uniform(0.005, 0.05), rng.choice([0.0, rng.uniform(0, 3)])
        knee, k, rate = rng.uniform(50, 500), int(rng.integers(0, 8)), rng.uniform(0.05, 1.2) / c2
        lat, ok = theory.latency_knee_open(c1, c2, compute, knee, k, rate)
        ref = _knee_fixed_point_by_scan(c1, c2, compute, knee, k, rate)
        if np.isinf(ref):
            assert not ok
        else:
            assert ok and lat == pytest.approx(ref, rel=1e-4)
            assert lat >= c1 / (1 - rate * c2) * (1 - 1e-12)  # the knee only adds time
    # the knee saturates the server below 1 / C2 = 100 requests/s
    c1, c2, compute, knee, k = 2.0, 0.01, 0.5, 200.0, 7
    assert np.isfinite(_knee_fixed_point_by_scan(c1, c2, compute, knee, k, 30.0))
    assert theory.latency_knee_open(c1, c2, compute, knee, k, 30.0)[1]
    assert not theory.latency_knee_open(c1, c2, compute, knee, k, 40.0)[1]
    # no compute share: the dense open-loop latency
    assert theory.latency_knee_open(c1, c2, 0.0, knee, k, 30.0)[0] == pytest.approx(c1 / (1 - 30 * c2))
    share = pt.dscalar("share")
    lat = theory.latency_knee_open(1.0, 0.02, 0.5 * share, 150.0, 3.0, 20.0, xp=pt)[0]
    grad = pytensor.function([share], pytensor.grad(lat, share))(0.6)
    assert np.isfinite(grad) and grad > 0  # a steeper compute slope raises latency


def test_knee_excess_is_flat_below_and_linear_above_the_knee():
    below = theory.knee_excess(np.array([0.0, 10.0]), 3, 400.0)  # 4 and 44 tokens per pass
    assert np.all(below < 0.03) and below[1] - below[0] < 0.01
    far = theory.knee_excess(np.array([399.0, 799.0]), 3, 400.0)  # 4x and 8x the knee
    assert far[1] - far[0] == pytest.approx(4.0, rel=1e-2)
    # speculation reaches the knee at a batch k + 1 times smaller
    assert theory.knee_excess(49.0, 7, 400.0) == pytest.approx(theory.knee_excess(399.0, 0, 400.0))


def test_roofline_variant_predicts_past_the_knee_from_its_prior(mock_pymc_sample):
    """Fitted below the knee, the prediction at 64 streams (k = 7: 512 tokens per pass) pays the knee:
    the same draws with the knee's compute share set to 0 predict less there, and about the same at one
    stream (8 tokens per pass, below every plausible knee)."""
    from bayes_sd.datasets import load_b200_runs

    runs = load_b200_runs()
    m = LatencyModel("roofline").fit(runs[runs["concurrency"] <= 16], draws=200, tune=0, chains=1,
                                     nuts_sampler="pymc", progressbar=False, random_seed=0)
    assert {"knee_tokens", "knee_compute_share"} <= set(m.idata.posterior)
    cond = runs[runs["concurrency"].isin([1, 64]) & (runs["k"] == 7)][COND].reset_index(drop=True)
    with_knee = m.predict_draws(cond, max_draws=200, seed=0).latency
    m.idata.posterior["knee_compute_share"] = m.idata.posterior["knee_compute_share"] * 0.0
    flat = m.predict_draws(cond, max_draws=200, seed=0).latency
    ratio = with_knee / flat
    far, near = (cond["concurrency"] == 64).to_numpy(), (cond["concurrency"] == 1).to_numpy()
    # prior draws (mocked sampler): the knee's median share at 64 streams is 4-12% across seeds, at 1 stream <1%
    assert np.median(ratio[:, far]) > np.median(ratio[:, near]) + 0.02 and np.mean(ratio[:, far] > 1.0) > 0.8
    assert np.median(ratio[:, near]) < 1.02


def test_pooled_sequence_cost_gives_an_unseen_verifier_a_draw_from_the_fitted_population():
    """moe_roofline pools s1 across verifier x hardware: a level seen in the fit keeps its posterior,
    one never fitted gets exp(centre + spread * z) per posterior sample, not the wide prior."""
    from bayes_sd.model.predict import _verifier_extras

    cfg = load_config("moe_roofline")
    n = 4000
    rng = np.random.default_rng(0)
    post = {"log_sequence_cost_centre": _da(np.full(n, np.log(0.02))), "sequence_cost_spread": _da(np.full(n, 0.1)),
            "sequence_cost_ms": _da(rng.lognormal(np.log(0.05), 0.01, size=(n, 1))),
            "knee_tokens": _da(np.full((n, 1), 200.0)), "knee_compute_share": _da(np.full((n, 1), 0.5))}
    out = _verifier_extras(post, cfg, {"verifier_hw": ["seen @ B200"]}, ["seen @ B200", "unseen @ H100"],
                           np.array([np.nan, np.nan]), rng)
    s1_ms = out["s1"] * 1000.0
    np.testing.assert_allclose(s1_ms[:, 0], post["sequence_cost_ms"].values[:, 0])
    assert np.median(s1_ms[:, 1]) == pytest.approx(0.02, rel=0.02)  # the population centre, not the seen level
    assert np.std(np.log(s1_ms[:, 1])) == pytest.approx(0.1, rel=0.1)  # the fitted spread, not the prior's 1.0


def test_speculation_costs_are_paid_from_k_1_on_and_pooled_for_an_unseen_verifier():
    """moe_roofline_speculation: e0 and e1 (ms) of a fitted verifier x hardware keep their posterior, an
    unseen one gets a draw from the fitted population; a condition without speculation pays neither, and
    a speculating one pays them the same at k = 1 and k = 7 (its predicted latency, with e1 large, rises
    by the same amount at both draft lengths)."""
    from bayes_sd.model.predict import _verifier_extras

    cfg = load_config("moe_roofline_speculation")
    n, rng = 4000, np.random.default_rng(0)
    post = {"log_speculation_step_centre": _da(np.full(n, np.log(0.3))),
            "log_speculation_sequence_centre": _da(np.full(n, np.log(0.01))),
            "speculation_step_ms": _da(np.full((n, 1), 0.8)), "speculation_sequence_ms": _da(np.full((n, 1), 0.02)),
            "log_sequence_cost_centre": _da(np.full(n, np.log(0.02))), "sequence_cost_ms": _da(np.full((n, 1), 0.02)),
            "knee_tokens": _da(np.full((n, 1), 200.0)), "knee_compute_share": _da(np.full((n, 1), 0.5))}
    out = _verifier_extras(post, cfg, {"verifier_hw": ["seen @ B200"]}, ["seen @ B200", "unseen @ H100"],
                           np.array([np.nan, np.nan]), rng)
    np.testing.assert_allclose(out["e0"][:, 0] * 1000.0, 0.8)
    np.testing.assert_allclose(out["e1"][:, 0] * 1000.0, 0.02)
    assert np.median(out["e0"][:, 1] * 1000.0) == pytest.approx(0.3, rel=0.05)
    spread = cfg["priors"]["speculation_sequence_spread"]["sigma"]  # fixed at its prior's scale
    assert np.std(np.log(out["e1"][:, 1])) == pytest.approx(spread, rel=0.1)
    without = load_config("moe_roofline_per_position")
    assert not np.any(_verifier_extras(post, without, {"verifier_hw": ["seen @ B200"]}, ["seen @ B200"],
                                       np.array([np.nan]), rng)["e1"])


def test_speculation_costs_shift_every_speculating_k_alike(fleet_subset):
    """At the same prior draws, a larger per-sequence speculation cost e1 leaves k = 0 unchanged and adds
    the same time per verify step at k = 1 and k = 7 (closed loop, where the latency is linear in it)."""
    runs, models = fleet_subset
    cfg = load_config("moe_roofline_speculation")
    fd = prepare_fit_data(runs, models)
    prior = pm.sample_prior_predictive(draws=50, model=build_model(fd, cfg), random_seed=4).prior
    post = {name: da.stack(sample=("chain", "draw")).transpose("sample", ...) for name, da in prior.data_vars.items()}
    base = fd.runs[COND].iloc[[0]]
    cond = pd.concat([base.assign(k=k, drafter="eagle3-small" if k else "none", load_type="concurrency",
                                  rate_rps=np.nan, concurrency=8.0) for k in (0, 1, 7)], ignore_index=True)
    bigger = dict(post, speculation_sequence_ms=post["speculation_sequence_ms"] + 0.05)  # e1 + 0.05 ms

    def draws(p):
        return condition_draws(p, cfg, fd.coords, cond, seed=0, models=models, fitted_drafters=fd.drafter_table())

    a, b = draws(post), draws(bigger)
    np.testing.assert_allclose(b.latency[:, 0], a.latency[:, 0], rtol=1e-12)
    k = cond["k"].to_numpy(float)
    tau_sq = acceptance_second_moment(a.inputs["acceptance"], k, a.inputs["accept_decay"])
    steps = theory.iterations(cond["output_len"].to_numpy(float), a.acceptance_length, tau_sq)
    per_step = ((b.latency - a.latency) / steps)[:, 1:]
    np.testing.assert_allclose(per_step, 0.05e-3 * 8.0, rtol=1e-6)  # e1 of the request itself and 7 others


def _da(values):
    import xarray as xr

    return xr.DataArray(values, dims=("sample",) + tuple(f"d{i}" for i in range(values.ndim - 1)))


@pytest.mark.parametrize("config, verifier", [("roofline", "llama3.1-8b"), ("moe_roofline", "qwen3-30b-a3b")])
def test_roofline_likelihood_at_the_measured_batch_agrees_with_the_fixed_point(fleet_subset, config, verifier):
    """Open loop, the roofline graphs count the pass's tokens at each run's measured batch (rate x
    observed latency). Where the observed latency is the predictor's fixed point at the parameter
    values, the graph gives back that latency: the fit and the predictions are one model. For the
    MoE verifier the predictor's fixed point is iterated (no closed form with coverage and knee)."""
    runs, models = fleet_subset
    runs = runs[runs["verifier"] == verifier].reset_index(drop=True)
    cfg = load_config(config)
    fd = prepare_fit_data(runs, models)
    model = build_model(fd, cfg)
    prior = pm.sample_prior_predictive(draws=40, model=model, random_seed=5).prior
    post = {name: da.stack(sample=("chain", "draw")).transpose("sample", ...) for name, da in prior.data_vars.items()}
    cond = fd.runs[COND].assign(rate_rps=np.where(fd.x["is_open"] > 0, fd.x["rate"], np.nan))
    dr = condition_draws(post, cfg, fd.coords, cond, seed=0, models=models)
    is_open = fd.x["is_open"] > 0
    # a draw whose fixed points are finite and well short of 1 / C2 (the graph's soft floor is exact there)
    usable = np.isfinite(dr.latency).all(axis=1) & (
        np.where(is_open, fd.x["rate"] / dr.saturation_rps, 0.0) < 0.9).all(axis=1)
    assert usable.any()
    i = int(np.flatnonzero(usable)[0])
    fixed_point = dr.latency[i]
    runs_at_fp = fd.runs.assign(latency_mean_s=fixed_point)  # "observed" latency := the fixed point
    model_fp = build_model(prepare_fit_data(runs_at_fp, models), cfg)
    values = {rv.name: post[rv.name].values[i] for rv in model_fp.free_RVs}
    graph = pm.draw(pm.do(model_fp, values)["latency_s"])
    np.testing.assert_allclose(graph[is_open], fixed_point[is_open], rtol=1e-6)
    np.testing.assert_allclose(graph[~is_open], fixed_point[~is_open], rtol=1e-6)
    # the knee is in play, not a dense special case: a smaller measured batch gives a shorter latency
    model_half = build_model(prepare_fit_data(runs_at_fp.assign(latency_mean_s=0.5 * fixed_point), models), cfg)
    half = pm.draw(pm.do(model_half, values)["latency_s"])
    assert np.all(half[is_open] < graph[is_open])


def test_sequence_cost_spread_is_fixed_unless_listed_in_learned_scales():
    """The s1 spread follows the other scales' policy: fixed at its prior's scale (learned, with the
    seven verifier x hardware levels of the bundled data, it was the fit's slowest parameter)."""
    runs, models = load_fleet_runs(), load_fleet_models()  # SYNTHETIC fleet: six verifier x hardware levels
    fixed = LatencyModel("moe_roofline").build(runs, models=models)
    assert "z_sequence_cost" in fixed.named_vars and "sequence_cost_spread" not in fixed.named_vars
    learned_scales = [*load_config("moe_roofline")["model"]["learned_scales"], "sequence_cost"]
    learned = LatencyModel("moe_roofline", overrides={"model": {"learned_scales": learned_scales}}).build(
        runs, models=models)
    assert "sequence_cost_spread" in learned.named_vars


@pytest.mark.parametrize("config, free", [("moe_roofline", True), ("roofline", False)])
def test_model_free_drafter_has_no_per_token_draft_cost(fleet_subset, config, free):
    """moe_roofline lists ngram in model_free_drafters: its d1 is 0 in the likelihood's latency and in
    the stored costs (the predictor's side is checked by test_numpy_predictor_reproduces_the_pymc_graph)."""
    runs, models = fleet_subset
    model = LatencyModel(config).build(runs, models=models)
    drafters = list(model.coords["drafter"])  # one hardware: the drafter effects are the levels
    assert list(model.coords["drafter_hw"]) == [f"{d} @ H100" for d in drafters]
    ngram, eagle = drafters.index("ngram"), drafters.index("eagle3-small")
    total = model.replace_rvs_by_values([model["latency_s"].sum()])[0]  # at the model's initial point
    value = model.rvs_to_values[model["effect_drafter"]]
    point = model.initial_point()
    grad = pytensor.function(model.value_vars, pt.grad(total, value), on_unused_input="ignore")(
        **{v.name: point[v.name] for v in model.value_vars})
    d1 = list(model.coords["dcoef"]).index("d1")
    assert grad[eagle, d1] > 0 and grad[ngram, 0] > 0  # the per-step cost d0 stays
    assert (grad[ngram, d1] == 0) == free
    stored = pm.draw(model["drafter_cost_ms"], random_seed=1)
    assert (stored[ngram, d1] == 0) == free and stored[eagle, d1] > 0


def test_model_free_drafters_must_be_a_list_of_names():
    from bayes_sd.model.config import ModelConfigError, merge_config

    with pytest.raises(ModelConfigError, match="model_free_drafters = 'ngram'.*Fix: a list"):
        merge_config(load_config("default"), {"model": {"model_free_drafters": "ngram"}})


def test_speculation_cost_is_fitted_only_where_the_runs_can_tell_it_from_the_drafters_costs(b200_runs, caplog):
    """A verifier x hardware identifies e0, e1 with runs without speculation and one drafter at two or more
    draft lengths. The real B200 runs have neither drafter at two (DSpark at k = 7, MTP at k = 2): fitted
    alone, the variant goes without the two costs and says why; the synthetic fleet's servers identify them."""
    import logging

    from bayes_sd.model.fit_data import level_label, speculation_identified

    fleet = load_fleet_runs()
    levels = sorted({level_label(v, h) for v, h in zip(fleet["verifier"], fleet["hardware"])})
    assert speculation_identified(fleet, levels).all()
    one_k = fleet[(fleet["k"] == 0) | (fleet["k"] == fleet["k"].max())]
    assert not speculation_identified(one_k, levels).any()
    b200_levels = sorted({level_label(v, h) for v, h in zip(b200_runs["verifier"], b200_runs["hardware"])})
    assert not speculation_identified(b200_runs, b200_levels).any()
    with caplog.at_level(logging.INFO, logger="bayes_sd.model.server_costs"):
        alone = LatencyModel("moe_roofline_speculation").build(b200_runs)
    assert "log_speculation_step_centre" not in alone.named_vars and "fitted without it" in caplog.text
    pooled = LatencyModel("moe_roofline_speculation").build(fleet, models=load_fleet_models())
    assert {"speculation_step_ms", "speculation_sequence_ms"} <= set(pooled.named_vars)


def test_a_fitted_models_predictions_bend_with_the_distance_from_its_measured_loads(fleet_subset, mock_pymc_sample,
                                                                                     monkeypatch):
    """With a load trend, LatencyModel gives the predictor each condition's offset from the fitted loads:
    none at the server's centre, a spread of bends at four times its highest load."""
    runs, models = fleet_subset
    runs = runs[runs["verifier"] == "llama3.1-8b"]
    cfg = load_config("default")
    cfg = load_config({**cfg, "model": {**cfg["model"], "configuration_effects": ["server_load_trend"]}})
    m = LatencyModel(cfg).fit(runs, models=models, draws=40, tune=0, chains=1, nuts_sampler="pymc", progressbar=False)
    closed = runs[runs["load_type"] == "concurrency"]
    centre = float(np.exp(np.log(closed["concurrency"]).mean()))
    row = closed[COND].head(1)
    cond = pd.concat([row.assign(concurrency=centre), row.assign(concurrency=4.0 * closed["concurrency"].max())])
    bent = m.predict_draws(cond, max_draws=None).latency
    monkeypatch.setattr(m, "_load_offsets", lambda conditions: None)
    flat = m.predict_draws(cond, max_draws=None).latency
    log_ratio = np.log(bent / flat)
    np.testing.assert_allclose(log_ratio[:, 0], 0.0, atol=1e-9)
    assert log_ratio[:, 1].std() > 0.01
