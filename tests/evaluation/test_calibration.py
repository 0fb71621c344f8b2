"""The held-out harness end to end at smoke size: an out-of-family fleet (synthetic, from a
simulator that does not share the model's closed form), a split, a real fit, scores that count
every run. `python bench/calibration.py` runs it at size; its figures are in docs/evaluation.md."""

import warnings

import numpy as np
import pytest

from bayes_sd.evaluation.fleets import random_fleet
from bayes_sd.evaluation.scoring import LEVELS, score_runs, summarise_scores
from bayes_sd.evaluation.splits import configuration_label, highest_loads, leave_one_pair_out, one_k_per_drafter
from bayes_sd.model import ConvergenceWarning, LatencyModel
from bayes_sd.model.conditions import CONDITION_COLUMNS


@pytest.fixture(scope="module")
def fleet():
    return random_fleet(3, n_configs=4, requests_per_run=(120, 200), truth_requests=300)


def test_splits_hold_out_what_they_say(fleet):
    runs, _, _ = fleet
    (sp,) = highest_loads(runs)
    cfg = configuration_label(runs)
    load = runs["rate_rps"].where(runs["load_type"] == "rate", runs["concurrency"])
    assert (load[sp.test.index] == load.groupby(cfg).transform("max")[sp.test.index]).all()
    assert set(sp.train.index).isdisjoint(sp.test.index) and len(sp.train) + len(sp.test) == len(runs)
    for pair_split in leave_one_pair_out(runs):
        verifier, drafter = pair_split.label.split(" + ")
        assert not ((pair_split.train["verifier"] == verifier) & (pair_split.train["drafter"] == drafter)).any()
        assert (pair_split.test["k"] > 0).all()
    by_drafter = one_k_per_drafter(runs)
    assert by_drafter  # the fleet measures drafters at several k
    for sp in by_drafter:
        drafter, kept = sp.label.split(": k = ")
        trained = sp.train[sp.train["drafter"] == drafter]
        assert set(trained["k"]) == {int(kept.split()[0])} and len(sp.test)
        assert (sp.test["drafter"] == drafter).all() and (sp.test["k"] != trained["k"].iloc[0]).all()
        assert set(sp.train.index).isdisjoint(sp.test.index)
    # the fleet's runs carry vLLM-style per-position acceptance
    spec = runs[runs["k"] > 0]
    assert spec["per_position_acceptance"].notna().all()


def test_held_out_scores_on_an_out_of_family_fleet(fleet):
    runs, models, _ = fleet
    (sp,) = highest_loads(runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel("default").fit(sp.train, models=models, draws=150, tune=250, chains=2,
                                            random_seed=5, progressbar=False, max_tree_depth=6)
    test = sp.test.reset_index(drop=True)
    d = model.predict_draws(test[CONDITION_COLUMNS], max_draws=300, seed=0)
    assert (d.latency_pred > 0).all()  # a draw saturated in the mean stays +inf for a new run, never -inf
    scores = score_runs(d.latency_pred, test["latency_mean_s"], saturated=test["saturated"])
    assert len(scores) == len(test)  # every held-out run is scored, the saturated ones too
    table = summarise_scores(scores, configuration_label(test), n_boot=200).set_index("figure")
    for level in LEVELS:
        row = table.loc[f"coverage_{round(100 * level)}"]
        assert row["low"] <= row["estimate"] <= row["high"]
    # a model that had lost the load term or the costs would be off by far more on held-out loads
    assert table.loc["mape_median", "estimate"] < 0.5
    assert np.isfinite(table.loc["crps_s", "estimate"])
