"""Where nutpie's chains start (``sampling.start_near_the_data``): in the region the data allow,
still apart from each other; a model compiled once however often it is sampled."""

import numpy as np
import pymc as pm

from bayes_sd.model.sampling import INIT_FLOOR_PER_OBSERVATION, compile_nutpie, sample_posterior, start_near_the_data


def _sharp_model():
    """A log-scale cost pinned by 50 precise observations far from the prior's centre: nearly every
    jittered prior-centred start sits thousands of log-density units below the posterior."""
    rng = np.random.default_rng(0)
    with pm.Model() as model:
        log_cost = pm.Normal("log_cost", 0.0, 3.0, shape=3)
        noise = pm.HalfNormal("noise", 1.0)
        pm.Normal("obs", pm.math.exp(log_cost).sum(), 0.01 * noise, observed=7.0 + 0.01 * rng.standard_normal(50))
    return model


def test_chains_start_near_the_posterior_but_apart():
    compiled = compile_nutpie(_sharp_model())
    started = start_near_the_data(compiled, floor=-INIT_FLOOR_PER_OBSERVATION * 50)  # 50 observations
    logp = lambda x: float(compiled.logp_func(x)[0])  # noqa: E731
    jittered = [logp(compiled.initial_point_func(s)) for s in range(20)]
    starts = [started.initial_point_func(s) for s in range(4)]
    at_start = [logp(x) for x in starts]
    # the jittered prior-centred points are far down; the starts climb more than 99% of the way from the
    # best of them to the posterior's typical log density (sampled below)
    idata = sample_posterior(_sharp_model(), draws=300, tune=300, chains=2, random_seed=1)
    typical = float(np.median(idata.sample_stats["logp"]))
    assert np.median(jittered) < typical - 1000
    assert (min(at_start) - max(jittered)) / (typical - max(jittered)) > 0.99
    assert min(np.abs(a - b).max() for i, a in enumerate(starts) for b in starts[i + 1:]) > 1e-3  # apart


def test_a_plausible_start_is_nutpies_own():
    compiled = compile_nutpie(_sharp_model())
    kept = start_near_the_data(compiled, floor=-np.inf)  # every finite start is plausible
    for seed in range(3):
        np.testing.assert_array_equal(kept.initial_point_func(seed), compiled.initial_point_func(seed))


def test_the_start_is_checked_and_kept_with_the_posterior(b200_runs, mock_pymc_sample):
    import pytest

    from bayes_sd.model import LatencyModel

    with pytest.raises(ValueError, match="unknown start 'nowhere'.*Fix"):
        sample_posterior(_sharp_model(), draws=10, tune=10, chains=1, start="nowhere")
    model = LatencyModel().fit(b200_runs, draws=10, tune=10, chains=1, progressbar=False, start="plausible")
    assert model.sampler_settings["start"] == "plausible"


def test_a_model_is_compiled_once_across_samplings_and_again_when_its_data_change(monkeypatch):
    from bayes_sd.model import sampling

    calls = []
    monkeypatch.setattr(sampling, "compile_nutpie", lambda m: calls.append(m) or compile_nutpie(m))
    with pm.Model() as model:
        level = pm.Data("level", np.array([1.0, 2.0]))
        mu = pm.Normal("mu", 0.0, 5.0)
        pm.Normal("obs", mu + level, 1.0, observed=np.array([3.0, 4.0]))
    first = sample_posterior(model, draws=50, tune=50, chains=1, random_seed=1)
    again = sample_posterior(model, draws=50, tune=50, chains=1, random_seed=1)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.posterior["mu"], again.posterior["mu"])  # same seed, same draws
    with model:
        pm.set_data({"level": np.array([101.0, 102.0])})
    moved = sample_posterior(model, draws=50, tune=50, chains=1, random_seed=1)
    assert len(calls) == 2
    assert float(moved.posterior["mu"].mean()) < -90  # sampled with the new data, not a stale copy
