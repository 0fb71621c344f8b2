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
