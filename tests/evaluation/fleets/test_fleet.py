"""Random fleets: reproducible, canonical, and a truth table that says which draft length is best."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_sd.evaluation.fleets.fleet import (
    TRUTH_COLUMNS,
    fleet_summary,
    fleets,
    no_speculation_share,
    random_fleet,
)
from bayes_sd.traces.schema import NO_DRAFTER
from bayes_sd.traces.validate import validate_models, validate_runs

SMALL = dict(n_configs=3, k_max=3, requests_per_run=(60, 100), max_requests_per_run=600, truth_requests=300)


@pytest.fixture(scope="module")
def small_fleet():
    return random_fleet(101, **SMALL)


def test_same_seed_same_fleet(small_fleet):
    again = random_fleet(101, **SMALL)
    for first, second in zip(small_fleet, again):
        pd.testing.assert_frame_equal(first, second)
    other = random_fleet(102, **SMALL)
    assert not other[0]["latency_mean_s"].equals(small_fleet[0]["latency_mean_s"])


def test_runs_and_models_are_canonical(small_fleet):
    runs, models, _ = small_fleet
    validate_runs(runs, "fleet", check_units=False)
    validate_models(models, "fleet models")
    assert (runs["source"] == "synthetic:outfamily:101").all()
    assert runs["saturated"].dtype == bool
    names = set(runs["verifier"]) | (set(runs["drafter"]) - {NO_DRAFTER})
    assert names == set(models["name"])
    assert set(runs["load_type"]) == {"rate", "concurrency"}
    # every base is measured without speculation, and speculation at one or more k
    assert (runs["k"] == 0).any() and (runs["k"] > 0).any()
    assert ((runs["k"] == 0) == (runs["drafter"] == NO_DRAFTER)).all()


def test_truth_has_every_k_at_every_load_and_its_best_k(small_fleet):
    runs, _, truth = small_fleet
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    key = ["condition", "load_type", "rate_rps", "concurrency"]
    ks = truth.groupby(key, dropna=False)["k"].apply(lambda k: sorted(k))
    assert all(k == [0, 1, 2, 3] for k in ks)
    for _, group in truth.groupby(key, dropna=False):
        finite = group[np.isfinite(group["latency_mean_s"])]
        best = int(group["best_k"].iloc[0])
        assert (group["best_k"] == best).all()
        if len(finite):
            assert best == int(finite.loc[finite["latency_mean_s"].idxmin(), "k"])
        else:
            assert best == -1
    # past capacity only in open loop, and then the latency is infinite
    past = truth[truth["past_capacity"]]
    assert (past["load_type"] == "rate").all() and np.isinf(past["latency_mean_s"]).all()
    # every measured (configuration, load, k) is in the truth
    measured = truth[truth["measured"] & (truth["k"] > 0)]
    spec_runs = runs[runs["k"] > 0]
    assert len(measured) == len(spec_runs)


def test_summary(small_fleet):
    runs, _, truth = small_fleet
    summary = fleet_summary(runs, truth)
    assert summary["runs"] == len(runs)
    assert 1.0 < summary["acceptance_length"][0] <= summary["acceptance_length"][1] <= 4.0
    assert summary["light_load_speedup"][0] <= summary["light_load_speedup"][2]
    assert 0.0 <= summary["no_speculation_share"] <= 1.0


def test_no_speculation_share_counts_conditions_not_rows():
    rows = []
    for condition, best in (("a", 0), ("b", 2), ("c", 0), ("d", -1)):
        for k in range(3):
            rows.append({"source": "s", "condition": condition, "load_type": "rate", "rate_rps": 1.0,
                         "concurrency": np.nan, "k": k, "best_k": best})
    assert no_speculation_share(pd.DataFrame(rows)) == pytest.approx(2 / 3)


def test_fleets_concatenates_and_labels():
    runs, models, truth = fleets([7], label="dev", **SMALL)
    assert (runs["source"] == "synthetic:outfamily:dev0").all()
    assert models["name"].is_unique
    assert truth["source"].unique().tolist() == ["synthetic:outfamily:dev0"]
