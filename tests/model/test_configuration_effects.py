"""The structural error a configuration shares across its loads (``config_level`` on C1,
``config_load`` on C2): its levels, its place in the PyMC model, and its use in prediction."""

import copy

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_sd import theory
from bayes_sd.model.build import build_model
from bayes_sd.model.config import load_config
from bayes_sd.model.fit_data import configuration_level_label, prepare_fit_data
from bayes_sd.model.load_range import load_offset
from bayes_sd.model.predict import condition_draws

LOG_MS = {"v0": 2.0, "v1": -3.0, "d0": -0.5, "d1": -4.6, "p0": 3.0, "p1": -4.0, "c1": -10.4}
SEEN = configuration_level_label("v", "d", "h", "a", 2)
SEEN_K0 = configuration_level_label("v", "none", "h", "a", 0)


def _runs():
    base = {"verifier": "v", "hardware": "h", "dataset": "a", "prompt_len": 100.0, "output_len": 100.0,
            "latency_mean_s": 1.0, "saturated": False, "n_requests": 100}
    rows = [
        {"drafter": "d", "k": 2, "load_type": "rate", "rate_rps": 1.0, "concurrency": np.nan},
        {"drafter": "d", "k": 2, "load_type": "rate", "rate_rps": 3.0, "concurrency": np.nan},
        {"drafter": "d", "k": 2, "load_type": "concurrency", "rate_rps": np.nan, "concurrency": 8.0},
        {"drafter": "d", "k": 4, "load_type": "rate", "rate_rps": 1.0, "concurrency": np.nan},
        {"drafter": "none", "k": 0, "load_type": "rate", "rate_rps": 1.0, "concurrency": np.nan},
    ]
    runs = pd.DataFrame([{**base, **r} for r in rows])
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    runs["acceptance_length"] = np.where(runs["k"] > 0, 2.0, np.nan)
    return runs


def test_a_configuration_is_one_server_setting_at_every_load():
    fd = prepare_fit_data(_runs())
    level = np.asarray(fd.coords["configuration"])[fd.idx["run_configuration"]]
    # the same pair, hardware, workload and k share a level across rates and open/closed loop
    assert level[0] == level[1] == level[2] == SEEN
    assert len({level[0], level[3], level[4]}) == 3 and level[4] == SEEN_K0
    assert fd.uses("config_level") and fd.uses("config_load")


def _without_configuration_effects(cfg):
    cfg = copy.deepcopy(cfg)
    cfg["model"]["configuration_effects"] = []
    return cfg


def test_the_effects_exist_only_in_a_configuration_that_lists_them():
    fd = prepare_fit_data(_runs())
    with_effects = build_model(fd, load_config("default"))
    assert with_effects.named_vars_to_dims["effect_config_level"] == ("configuration",)
    without = build_model(fd, _without_configuration_effects(load_config("default")))
    assert "effect_config_level" not in without.named_vars


def test_the_level_effect_scales_a_configurations_latency_at_every_load():
    """exp(config_level) multiplies C1 (and so the latency) of every run of that configuration alone,
    and no other configuration's; config_load moves the loaded runs only."""
    fd = prepare_fit_data(_runs())
    model = build_model(fd, load_config("default"))
    latency = model.compile_fn(model.replace_rvs_by_values([model["latency_s"]])[0], inputs=model.value_vars,
                               on_unused_input="ignore")
    point = model.initial_point()
    base = latency(point)
    sigma = load_config("default")["priors"]["sigma_config_level"]["sigma"]
    z = np.zeros(len(fd.coords["configuration"]))
    z[fd.coords["configuration"].index(SEEN)] = 1.0
    moved = latency({**point, "z_config_level": z})
    ratio = moved / base
    seen = fd.idx["run_configuration"] == fd.coords["configuration"].index(SEEN)
    # open loop L = C1 / (1 - rate C2): a factor on C1 alone moves the latency by that factor
    np.testing.assert_allclose(ratio[seen & (fd.x["is_open"] > 0)], np.exp(sigma), rtol=1e-6)
    np.testing.assert_allclose(ratio[~seen], 1.0, rtol=1e-9)
    loaded = latency({**point, "z_config_load": z}) / base
    assert np.all(loaded[seen] > 1.0) and np.allclose(loaded[~seen], 1.0)


def _posterior(n=400, seed=0, level=0.1823, level_k0=-0.1054):  # log 1.2, log 0.9
    rng = np.random.default_rng(seed)
    coef = list(theory.COEFS)
    s = ("chain", "draw")
    post = xr.Dataset({
        "mu_log_cost": (s + ("coef",), np.tile([LOG_MS[c] for c in coef], (1, n, 1))),
        "mu_accept": (s, np.full((1, n), 0.5)),
        "mu_tail": (s, np.full((1, n), -1.2)),
        "tail_load_slope": (s, np.zeros((1, n))),
        "sigma_latency": (s, np.full((1, n), 0.05)),
        "effect_config_level": (s + ("configuration",), np.tile([level, level_k0], (1, n, 1))),
        "effect_config_load": (s + ("configuration",), np.zeros((1, n, 2))),
        "effect_accept_pair": (s + ("pair_dataset",), rng.normal(0.0, 1e-6, (1, n, 1))),
    }, coords={"coef": coef, "configuration": [SEEN, SEEN_K0], "pair_dataset": ["v / d | a"]})
    return {k: v.stack(sample=("chain", "draw")).transpose("sample", ...) for k, v in post.data_vars.items()}


FIT_COORDS = {"hardware": ["h"], "verifier": ["v"], "drafter": ["d"], "dataset": ["a"], "verifier_hw": ["v @ h"],
              "drafter_hw": ["d @ h"], "spec_pair": ["v / d"], "pair": ["v / d", "v / none"],
              "pair_dataset": ["v / d | a"], "configuration": [SEEN, SEEN_K0]}


def _conditions(**kw):
    base = {"verifier": "v", "drafter": "d", "hardware": "h", "dataset": "a", "k": 2, "prompt_len": 100.0,
            "output_len": 100.0, "load_type": "concurrency", "rate_rps": np.nan, "concurrency": 1.0}
    return pd.DataFrame([{**base, **row} for row in kw["rows"]])


def test_prediction_uses_the_fitted_departure_of_a_measured_configuration():
    cfg = load_config("default")
    cond = _conditions(rows=[{}, {"dataset": "b"}])
    moved = condition_draws(_posterior(), cfg, FIT_COORDS, cond, seed=1)
    flat = condition_draws(_posterior(level=0.0, level_k0=0.0), cfg, FIT_COORDS, cond, seed=1)
    # alone on the server the latency is C1: the measured configuration's factor exactly, k = 0 its own
    np.testing.assert_allclose(moved.latency[:, 0] / flat.latency[:, 0], np.exp(0.1823), rtol=1e-9)
    np.testing.assert_allclose(moved.latency_k0[:, 0] / flat.latency_k0[:, 0], np.exp(-0.1054), rtol=1e-9)


def test_an_unmeasured_configuration_gets_one_population_draw_shared_by_its_conditions():
    cfg = load_config("default")
    cond = _conditions(rows=[{"k": 6}, {"k": 6, "prompt_len": 400.0}, {}])
    dr = condition_draws(_posterior(), cfg, FIT_COORDS, cond, seed=2)
    flat = condition_draws(_posterior(), _without_configuration_effects(cfg), FIT_COORDS, cond, seed=2)
    ratio = np.log(dr.latency / flat.latency)
    # each sample draws the unmeasured configuration's departure from its population, N(0, sigma) ...
    sigma = cfg["priors"]["sigma_config_level"]["sigma"]
    assert ratio[:, 0].std() == pytest.approx(sigma, rel=0.15)
    # ... once, shared by both of its conditions (curves over load and length stay coherent)
    np.testing.assert_allclose(ratio[:, 0], ratio[:, 1], atol=1e-12)
    # and the measured configuration keeps its fitted value
    np.testing.assert_allclose(ratio[:, 2], 0.1823, atol=1e-9)


def test_a_configuration_may_keep_one_departure_and_must_have_its_prior():
    from bayes_sd.model.config import ModelConfigError

    cfg = load_config({**load_config("default"), "model": {**load_config("default")["model"],
                                                          "configuration_effects": ["config_level"]}})
    model = build_model(prepare_fit_data(_runs()), cfg)
    assert "effect_config_level" in model.named_vars and "effect_config_load" not in model.named_vars
    bad = load_config("default")
    bad["priors"].pop("sigma_config_load")
    with pytest.raises(ModelConfigError, match="sigma_config_load"):
        load_config(bad)
    with pytest.raises(ModelConfigError, match="configuration_effects"):
        load_config({**cfg, "model": {**cfg["model"], "configuration_effects": ["config_slope"]}})


def test_a_loads_offset_is_from_its_configurations_measured_loads_then_its_servers():
    runs = _runs()
    centre = np.log(np.sqrt(3.0))  # the mean log rate of SEEN's open-loop runs, rates 1 and 3
    np.testing.assert_allclose(load_offset(runs, runs), [-centre, centre, 0.0, 0.0, 0.0], atol=1e-12)
    cond = _conditions(rows=[{"load_type": "rate", "rate_rps": 9.0, "concurrency": np.nan},
                             {"concurrency": 32.0},
                             {"k": 6, "load_type": "rate", "rate_rps": 2.0, "concurrency": np.nan},
                             {"hardware": "other", "concurrency": 2.0},
                             {"load_type": "rate", "rate_rps": np.nan, "concurrency": np.nan}])
    server_rates = np.log([1.0, 3.0, 1.0, 1.0]).mean()  # every open-loop run of v @ h
    np.testing.assert_allclose(load_offset(cond, runs), [np.log(9.0) - centre, np.log(32.0 / 8.0),
                                                         np.log(2.0) - server_rates, np.log(2.0 / 8.0), 0.0],
                               atol=1e-12)


def _with_trend(cfg):
    cfg = copy.deepcopy(cfg)
    cfg["model"]["configuration_effects"] = ["config_load_trend"]
    return cfg


def test_the_load_trend_bends_c2_with_the_runs_offset_from_its_configurations_loads():
    """exp(config_load_trend * offset) multiplies C2: the run above its configuration's centre slows,
    the one below speeds up, a run at the centre and other configurations' runs do not move."""
    fd = prepare_fit_data(_runs())
    model = build_model(fd, _with_trend(load_config("default")))
    assert "effect_config_level" not in model.named_vars and "z_config_load_trend" in model.named_vars
    latency = model.compile_fn(model.replace_rvs_by_values([model["latency_s"]])[0], inputs=model.value_vars,
                               on_unused_input="ignore")
    point = model.initial_point()
    z = np.zeros(len(fd.coords["configuration"]))
    z[fd.coords["configuration"].index(SEEN)] = 1.0
    ratio = latency({**point, "z_config_load_trend": z}) / latency(point)
    by_id = dict(zip(fd.runs["run_id"], ratio))
    assert by_id["r0"] < 1.0 < by_id["r1"]  # rates 1 and 3 rps, offsets -/+ log(3) / 2
    np.testing.assert_allclose([by_id["r2"], by_id["r3"], by_id["r4"]], 1.0, rtol=1e-9)


def test_prediction_bends_a_measured_configurations_c2_exactly_by_its_fitted_slope():
    cfg = _with_trend(load_config("default"))
    post = _posterior()
    slope = 0.2
    post["effect_config_load_trend"] = xr.DataArray(np.tile([slope, 0.0], (len(post["mu_accept"]), 1)),
                                                    dims=("sample", "configuration"),
                                                    coords={"configuration": [SEEN, SEEN_K0]})
    cond = _conditions(rows=[{"concurrency": 1.0}, {"concurrency": 9.0}])
    flat = condition_draws(post, cfg, FIT_COORDS, cond, seed=1)
    bent = condition_draws(post, cfg, FIT_COORDS, cond, seed=1, load_offsets={"config_load_trend": np.ones(4)})
    # alone on the server C2 plays no part; at 9 streams L = C1 + 8 C2, so the change is 8 C2 (e^b - 1)
    np.testing.assert_allclose(bent.latency[:, 0], flat.latency[:, 0], rtol=1e-12)
    extra = (bent.latency[:, 1] - flat.latency[:, 1]) / (flat.latency[:, 1] - flat.latency[:, 0])
    np.testing.assert_allclose(extra, np.expm1(slope), rtol=1e-9)
    np.testing.assert_allclose(bent.latency_k0, flat.latency_k0, rtol=1e-12)  # its k = 0 slope is 0


def test_an_unmeasured_configurations_trend_widens_its_predictions_with_distance():
    cfg = _with_trend(load_config("default"))
    cond = _conditions(rows=[{"k": 6, "concurrency": 16.0}] * 3)
    offsets = np.array([0.0, 1.0, 2.0])
    dr = condition_draws(_posterior(), cfg, FIT_COORDS, cond, seed=3,
                         load_offsets={"config_load_trend": np.concatenate([offsets, offsets])})
    centred = condition_draws(_posterior(), cfg, FIT_COORDS, cond, seed=3)
    spread = np.log(dr.latency / centred.latency).std(axis=0)
    assert spread[0] < 1e-12 < 0.02 < spread[1] < spread[2]
    # one draw of the slope per configuration and sample: the log C2 departure is proportional to the offset
    sigma = cfg["priors"]["sigma_config_load_trend"]["sigma"]
    c2 = dr.inputs["configuration"][1]
    np.testing.assert_allclose(np.log(c2[:, 2]), 2.0 * np.log(c2[:, 1]), rtol=1e-9)
    assert np.log(c2[:, 1]).std() == pytest.approx(sigma, rel=0.15)


def test_a_servers_load_trend_bends_every_configuration_on_it_alike():
    """``server_load_trend``: one slope per verifier x hardware, so a condition and its k = 0
    counterpart bend together; the offset is from the server's measured loads."""
    cfg = load_config("default")
    cfg["model"]["configuration_effects"] = ["server_load_trend"]
    post = _posterior()
    slope = -0.15
    post["effect_server_load_trend"] = xr.DataArray(np.full((len(post["mu_accept"]), 1), slope),
                                                    dims=("sample", "verifier_hw"), coords={"verifier_hw": ["v @ h"]})
    cond = _conditions(rows=[{"concurrency": 1.0}, {"concurrency": 9.0}, {"k": 6, "concurrency": 9.0}])
    flat = condition_draws(post, cfg, FIT_COORDS, cond, seed=1)
    bent = condition_draws(post, cfg, FIT_COORDS, cond, seed=1, load_offsets={"server_load_trend": np.ones(6)})
    for lat, lat_flat in ((bent.latency, flat.latency), (bent.latency_k0, flat.latency_k0)):
        extra = (lat[:, 1] - lat_flat[:, 1]) / (lat_flat[:, 1] - lat_flat[:, 0])
        np.testing.assert_allclose(extra, np.expm1(slope), rtol=1e-9)
    assert np.all(bent.latency[:, 2] < flat.latency[:, 2])  # a k never measured on the server bends too
    runs = _runs()
    server_centre = np.log([1.0, 3.0, 1.0, 1.0]).mean()  # every open-loop run of v @ h, any k
    np.testing.assert_allclose(load_offset(runs, runs, "server")[:2], np.log([1.0, 3.0]) - server_centre)
