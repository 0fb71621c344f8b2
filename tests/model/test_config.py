import json

import pytest

from bayes_sd.model.config import ModelConfigError, config_id, load_config, merge_config


def test_default_config_has_a_reason_for_every_prior():
    cfg = load_config("default")
    assert cfg["priors"], "no priors"
    for name, spec in cfg["priors"].items():
        assert spec.get("why"), f"prior {name} has no 'why'"


def test_override_changes_one_prior_and_the_id():
    base = load_config("default")
    new = merge_config(base, {"priors": {"mu_v0": {"mu": 3.0}}})
    assert new["priors"]["mu_v0"]["mu"] == 3.0
    assert new["priors"]["mu_v0"]["sigma"] == base["priors"]["mu_v0"]["sigma"]
    assert base["priors"]["mu_v0"]["mu"] != 3.0  # base untouched
    assert config_id(new, "1") != config_id(base, "1")
    assert config_id(base, "1") == config_id(json.loads(json.dumps(base)), "1")


def test_unknown_prior_and_bad_distribution_raise():
    base = load_config("default")
    with pytest.raises(ModelConfigError, match="unknown prior 'mu_vo'"):
        merge_config(base, {"priors": {"mu_vo": {"mu": 1.0}}})
    with pytest.raises(ModelConfigError, match="not supported"):
        merge_config(base, {"priors": {"mu_v0": {"dist": "Cauchy", "alpha": 0, "beta": 1}}})
    with pytest.raises(ModelConfigError, match="needs"):
        merge_config(base, {"priors": {"mu_v0": {"dist": "LogNormal", "mu": 0}}})


def test_arrivals_option_and_its_prior_are_checked():
    base = load_config("default")
    with pytest.raises(ModelConfigError, match="arrivals = 'even'.*Fix: use one of poisson, as_recorded"):
        load_config({**base, "model": {**base["model"], "arrivals": "even"}})
    with pytest.raises(ModelConfigError, match="'arrival_irregularity' must be Beta"):
        merge_config(base, {"priors": {"arrival_irregularity": {"dist": "HalfNormal", "sigma": 0.3}}})


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="default"):
        load_config("no_such_model")


def test_every_bundled_configuration_loads():
    """Each file in models/ is a valid configuration that LatencyModel accepts by name."""
    from bayes_sd.model import LatencyModel
    from bayes_sd.model.config import models_dir

    names = sorted(p.stem for p in models_dir().glob("*.toml"))
    assert {"default", "achieved_rate", "moe", "roofline"} <= set(names)
    for name in names:
        assert LatencyModel(name).config["name"] == name
    assert LatencyModel().open_loop_rate == "offered"
    assert LatencyModel("achieved_rate").open_loop_rate == "achieved"
    assert LatencyModel("moe").open_loop_rate == "offered"  # inherited from the default
    assert LatencyModel("moe").config["model"]["verifier_form"] == "moe"


def test_verifier_form_is_checked_with_its_priors():
    base = load_config("default")
    with pytest.raises(ModelConfigError, match="verifier_form = 'tiled'.*Fix: use one of dense, moe, roofline"):
        merge_config(base, {"model": {"verifier_form": "tiled"}})
    with pytest.raises(ModelConfigError, match="needs priors knee_tokens and knee_compute_share"):
        merge_config(base, {"model": {"verifier_form": "roofline"}})
    roof = load_config("roofline")
    assert roof["model"]["verifier_form"] == "roofline" and "why" in roof["priors"]["knee_tokens"]
    with pytest.raises(ModelConfigError, match="'knee_tokens' must be LogNormal"):
        merge_config(roof, {"priors": {"knee_tokens": {"dist": "HalfNormal", "sigma": 300.0}}})
    with pytest.raises(ModelConfigError, match="'moe_roofline' needs the prior expert_share.*Fix"):
        merge_config(roof, {"model": {"verifier_form": "moe_roofline"}})
    both = load_config("moe_roofline")  # extends roofline, which extends the default
    assert both["model"]["verifier_form"] == "moe_roofline" and both["model"]["sequence_cost"] is True
    assert both["priors"]["knee_tokens"] == roof["priors"]["knee_tokens"] and "expert_share" in both["priors"]
    with pytest.raises(ModelConfigError, match="'sequence_cost_spread' must be HalfNormal.*Fix"):
        merge_config(both, {"priors": {"sequence_cost_spread": {"dist": "LogNormal", "mu": 0.0, "sigma": 1.0}}})


def test_pooled_decay_and_its_pivot_are_checked():
    pooled = load_config("moe_roofline_per_position")
    assert pooled["model"]["acceptance_pivot"] == "measured" and "accept_decay_spread" in pooled["priors"]
    with pytest.raises(ModelConfigError, match="acceptance_pivot = 'middle'.*Fix: use one of first, measured"):
        merge_config(pooled, {"model": {"acceptance_pivot": "middle"}})
    with pytest.raises(ModelConfigError, match="needs 'accept_decay' LogNormal.*Fix"):
        merge_config(pooled, {"priors": {"accept_decay": {"dist": "Normal", "mu": 0.2, "sigma": 0.15}}})
    with pytest.raises(ModelConfigError, match="'accept_decay_spread' must be HalfNormal.*Fix"):
        merge_config(pooled, {"priors": {"accept_decay_spread": {"dist": "Normal", "mu": 0.0, "sigma": 1.0}}})


def test_sampling_table_and_learned_scales_are_checked():
    """A configuration's [sampling] table sets the main job's settings for it; a typo in it or in
    learned_scales raises instead of being ignored."""
    from bayes_sd.demo import DEMO_SAMPLING, demo_sampling
    from bayes_sd.model.config import SAMPLING, sampling_settings

    base = load_config("default")
    with pytest.raises(ModelConfigError, match=r"\[sampling\] has unknown settings \['draw'\].*Fix"):
        merge_config(base, {"sampling": {"draw": 100}})
    with pytest.raises(ModelConfigError, match=r"\[sampling\] draws = 0.*positive whole number"):
        merge_config(base, {"sampling": {"draws": 0}})
    with pytest.raises(ModelConfigError, match=r"target_accept = 1.5.*between 0 and 1"):
        merge_config(base, {"sampling": {"target_accept": 1.5}})
    with pytest.raises(ModelConfigError, match=r"start = 'prior'.*Fix: one of 'jittered', 'plausible'"):
        merge_config(base, {"sampling": {"start": "prior"}})
    assert merge_config(base, {"sampling": {"start": "plausible"}})["sampling"]["start"] == "plausible"
    with pytest.raises(ModelConfigError, match=r"learned_scales names \['tail_pairs'\].*Fix"):
        merge_config(base, {"model": {"learned_scales": ["tail_pairs"]}})
    assert sampling_settings("default") == SAMPLING
    assert demo_sampling("default") == {**SAMPLING, **DEMO_SAMPLING["full"]} != SAMPLING
    assert demo_sampling("default", quick=True) == DEMO_SAMPLING["quick"]
    own = load_config("moe_roofline")["sampling"]
    assert sampling_settings("moe_roofline") == {**SAMPLING, **own} != SAMPLING
    assert demo_sampling("moe_roofline") == {**SAMPLING, **own, **DEMO_SAMPLING["full"]}


def test_speculation_cost_needs_its_priors_and_lognormal_levels():
    base = load_config("moe_roofline_per_position")
    with pytest.raises(ModelConfigError, match=r"speculation_cost = true needs the priors speculation_step_ms.*Fix"):
        merge_config(base, {"model": {"speculation_cost": True}})
    spec = load_config("moe_roofline_speculation")
    with pytest.raises(ModelConfigError, match=r"prior 'speculation_sequence_ms' must be LogNormal"):
        merge_config(spec, {"priors": {"speculation_sequence_ms": {"dist": "HalfNormal", "sigma": 1.0}}})
