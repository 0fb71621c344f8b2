"""Chains that did not mix: where they disagree (``_stats.chain_groups``) and what it does to the
fitted runs' predictions (``LatencyModel.chain_agreement``, in ``diagnostics_text``)."""

import copy

import numpy as np
import pytest
import xarray as xr

from bayes_sd._stats import chain_groups


def _posterior(chain_centres, sd=1.0, seed=0):
    rng = np.random.default_rng(seed)
    n_chain, n_draw = len(chain_centres), 500
    b = rng.normal(0.0, sd, (n_chain, n_draw, 2))
    b[:, :, 1] += np.asarray(chain_centres)[:, None]
    return xr.Dataset({"a": (("chain", "draw"), rng.normal(0.0, 1.0, (n_chain, n_draw))),
                       "b": (("chain", "draw", "coef"), b)}, coords={"coef": ["v0", "v1"]})


def test_chains_in_two_modes_are_grouped_on_the_parameter_they_disagree_on():
    out = chain_groups(_posterior([0.0, 6.0, 0.0, 6.0]))
    assert out["parameter"] == "b[v1]"
    assert out["groups"] == [[0, 2], [1, 3]]
    np.testing.assert_allclose(out["chain_means"], [0, 6, 0, 6], atol=0.2)


def test_chains_that_overlap_but_mix_slowly_form_one_group():
    out = chain_groups(_posterior([0.0, 0.6, 1.2, 1.8]))
    assert out["parameter"] == "b[v1]" and out["groups"] == [[0, 1, 2, 3]]


def _with_chains(model, shift_v0: float, coefs=("v0",)):
    """``model`` with two chains: its first, and the same draws with the population's log cost of
    ``coefs`` shifted by ``shift_v0``."""
    post = model.idata.posterior.isel(chain=[0])
    moved = post.copy(deep=True)
    moved["mu_log_cost"] = moved["mu_log_cost"] + xr.where(moved["coef"].isin(list(coefs)), shift_v0, 0.0)
    other = copy.copy(model)
    other.idata = copy.copy(model.idata)
    other.idata.posterior = xr.concat([post, moved.assign_coords(chain=[1])], dim="chain")
    other.idata.sample_stats = model.idata.sample_stats.isel(chain=[0, 0]).assign_coords(chain=[0, 1])
    return other


@pytest.mark.parametrize("shift_v0, groups", [(0.0, 1), (np.log(1.5), 2)])
def test_the_fitted_runs_predictions_show_how_far_apart_the_chains_are(fitted_b200, shift_v0, groups):
    model, _ = fitted_b200
    out = _with_chains(model, shift_v0).chain_agreement()
    assert len(out["groups"]) == groups
    if groups == 1:  # the same draws twice: the same predictions
        assert out["latency_spread_max"] == 0.0
    else:  # a 1.5x per-pass cost: latency is mostly passes, so the chains' predictions differ by most of that
        assert out["parameter"] == "mu_log_cost[v0]"
        assert 0.15 < out["latency_spread_median"] <= out["latency_spread_max"] < 0.6


def test_an_unconverged_fit_says_where_its_chains_disagree(fitted_b200):
    model, _ = fitted_b200
    text = _with_chains(model, np.log(1.5)).diagnostics_text()
    assert text.startswith("NOT converged")
    assert "the chains split into 2 groups (1 | 2) on mu_log_cost[v0]" in text
    assert "the fitted runs' mean latency differs between chains by up to" in text


def test_a_recommendation_says_when_the_chains_modes_would_choose_differently(fitted_b200):
    """A drafter 30 times dearer in one chain: that chain's group turns speculation off where the other's
    keeps it on, and the rows say so; chains that agree (the same draws twice) leave the columns empty."""
    from bayes_sd.recommend import recommend_k

    model, _ = fitted_b200
    ask = {"verifier": "Qwen/Qwen3.8-27B", "drafter": "mtp", "hardware": "B200", "dataset": "HumanEval",
           "prompt_len": 200.0, "output_len": 800.0, "concurrencies": [1, 8], "k_max": 4, "max_draws": 150}
    split = recommend_k(_with_chains(model, np.log(30.0), coefs=("d0", "d1")), **ask)
    ks = split["k_by_chain_group"].str.split(" | ", regex=False)
    assert all(len(g) == 2 for g in ks)
    assert not split["chain_groups_agree"].all()
    assert any(g[0] != g[1] and "0" in g for g in ks)  # one group (the dear drafter) chooses no speculation
    same = recommend_k(_with_chains(model, 0.0), **ask)
    assert (same["k_by_chain_group"] == "").all() and same["chain_groups_agree"].all()


def test_bayes_sd_recommend_warns_where_the_modes_would_choose_differently(fitted_b200, tmp_path, capsys):
    from bayes_sd.cli import main

    model, _ = fitted_b200
    path = _with_chains(model, np.log(30.0), coefs=("d0", "d1")).save(tmp_path / "split.nc")
    assert main(["recommend", str(path), "--verifier", "Qwen/Qwen3.8-27B", "--drafter", "mtp", "--hardware", "B200",
                 "--dataset", "HumanEval", "--prompt-len", "200", "--output-len", "800", "--concurrency", "1",
                 "--k-max", "4", "--max-draws", "150"]) == 0
    out, err = capsys.readouterr()
    assert "k_by_chain_group" in out
    assert "at concurrency 1 the posterior's groups of chains" in err and "would choose k = 2 | 0" in err
