"""What an unconverged fit tries next (``sampling.sample_until_converged``): more chains, pooled, where only the
effective sample size fell short; smaller steps where chains diverged."""

import json

import arviz as az
import numpy as np
import pymc as pm
import pytest

from bayes_sd._stats import convergence
from bayes_sd.model import sampling
from bayes_sd.model.sampling import pool_chains, sample_until_converged


def _idata(seed: int, chains: int = 2, draws: int = 50, divergences: int = 0, shift: float = 0.0):
    """Independent normal draws standing in for a sampling: posterior x, sample_stats diverging."""
    rng = np.random.default_rng(seed)
    diverging = np.zeros((chains, draws), bool)
    diverging.flat[:divergences] = True
    idata = az.from_dict(posterior={"x": rng.normal(shift, 1.0, (chains, draws))},
                         sample_stats={"diverging": diverging})
    idata.attrs["sampler"] = f'{{"random_seed": {seed}}}'
    return idata


def test_pooled_chains_are_renumbered_and_add_their_draws():
    a, b = _idata(1), _idata(2)
    pooled = pool_chains([a, b])
    assert pooled.posterior.sizes["chain"] == 4 and list(pooled.posterior["chain"].values) == [0, 1, 2, 3]
    np.testing.assert_array_equal(pooled.posterior["x"].values[2:], b.posterior["x"].values)
    assert int(pooled.sample_stats["diverging"].sum()) == 0
    assert az.ess(pooled.posterior)["x"] > az.ess(a.posterior)["x"]
    with pytest.raises(ValueError, match="same number of draws"):
        pool_chains([a, _idata(3, draws=60)])


def _scripted(monkeypatch, script):
    """sample_posterior replaced by a list of samplings handed out in order; returns the settings it got."""
    seen = []

    def fake(model, **settings):
        seen.append(settings)
        return script[len(seen) - 1]

    monkeypatch.setattr(sampling, "sample_posterior", fake)
    return seen


def test_an_ess_shortfall_gets_more_chains_and_the_pool_converges(monkeypatch):
    """50 independent draws per chain x 2 chains: ESS about 100, short of 400; R-hat fine, no divergence. Each
    retry keeps the settings (next seed) and pools: four attempts make 8 chains, ESS about 400."""
    seen = _scripted(monkeypatch, [_idata(s, draws=60) for s in range(1, 6)])
    idata, attempts = sample_until_converged(pm.Model(), retries=4, tune=100, target_accept=0.9, random_seed=1)
    assert [s["tune"] for s in seen] == [100] * len(seen) and {s["target_accept"] for s in seen} == {0.9}
    assert [s["random_seed"] for s in seen] == list(range(1, len(seen) + 1))
    assert attempts[-1]["converged"] and attempts[-1]["pooled"] == list(range(len(seen)))
    assert idata.posterior.sizes["chain"] == 2 * len(seen) and len(seen) < 5
    assert [a["kept"] for a in attempts] == [False] * len(seen) + [True]
    kept = attempts[-1]
    assert {key: kept[key] for key in convergence(idata)} == convergence(idata)  # tail ESS included


def test_divergent_chains_get_smaller_steps_and_stay_out_of_the_pool(monkeypatch):
    script = [_idata(1, divergences=3), _idata(2), _idata(3, divergences=1)]
    seen = _scripted(monkeypatch, script)
    idata, attempts = sample_until_converged(pm.Model(), retries=2, tune=100, target_accept=0.9, random_seed=1)
    # after divergences: twice the warm-up at 0.95; after the clean second attempt, more chains at its settings
    assert [(s["tune"], s["target_accept"]) for s in seen] == [(100, 0.9), (200, 0.95), (200, 0.95)]
    assert not any(a.get("pooled") for a in attempts) and len(attempts) == 3  # one clean attempt: nothing to pool
    assert idata.posterior.sizes["chain"] == 2 and not attempts[-1]["converged"]
    # none converged: the one kept is the lowest max R-hat's, and its figures are the returned posterior's
    kept = [a for a in attempts if a["kept"]]
    assert len(kept) == 1 and kept[0]["max_rhat"] == min(a["max_rhat"] for a in attempts)
    assert kept[0]["random_seed"] == json.loads(idata.attrs["sampler"])["random_seed"]
    assert {key: kept[0][key] for key in convergence(idata)} == convergence(idata)


def test_no_retry_starts_past_the_time_limit(monkeypatch):
    seen = _scripted(monkeypatch, [_idata(1, divergences=3), _idata(2)])
    idata, attempts = sample_until_converged(pm.Model(), retries=1, tune=100, random_seed=1, retry_time_limit=0.0)
    assert len(seen) == 1 and [a["kept"] for a in attempts] == [True] and attempts[0]["seconds"] >= 0
    seen = _scripted(monkeypatch, [_idata(1, divergences=3), _idata(2)])
    sample_until_converged(pm.Model(), retries=1, tune=100, random_seed=1, retry_time_limit=3600.0)
    assert len(seen) == 2  # within the limit, the retry runs
    with pytest.raises(ValueError, match="retry_time_limit"):
        sample_until_converged(pm.Model(), retries=1, retry_time_limit=-1.0)
