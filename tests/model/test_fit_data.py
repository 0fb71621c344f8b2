import numpy as np
import pandas as pd
import pytest

from bayes_sd.model.fit_data import prepare_fit_data


def test_saturated_runs_are_excluded_with_their_reason(b200_runs):
    fd = prepare_fit_data(b200_runs)
    sat = b200_runs.loc[b200_runs["saturated"].astype(bool), "run_id"]
    assert len(sat) == 2
    assert set(fd.excluded["run_id"]) == set(sat)
    assert fd.excluded["reason"].str.startswith("saturated").all()
    assert fd.n_runs == len(b200_runs) - 2


def test_indices_point_inside_their_levels(b200_runs):
    fd = prepare_fit_data(b200_runs)
    for name, idx in fd.idx.items():
        assert idx.min() >= 0, name
    assert fd.idx["run_vh"].max() < len(fd.coords["verifier_hw"])
    assert fd.idx["run_pd"].max() < len(fd.coords["pair_dataset"])
    # k = 0 runs carry no acceptance observation; speculative runs all do
    rows, _ = fd.obs["tau"]
    assert np.all(fd.x["k"][rows] > 0)
    assert len(rows) == int((fd.x["k"] > 0).sum())


def test_single_level_groups_get_no_effect(b200_runs):
    fd = prepare_fit_data(b200_runs)  # one verifier, one hardware
    assert not fd.uses("hardware") and not fd.uses("verifier")
    assert fd.uses("drafter")  # dspark and mtp


def test_arrival_rate_prefers_the_configured_source():
    """Open-loop runs enter the model at the offered rate (default) or the achieved one, each
    falling back on the other where missing; closed-loop runs without either stay NaN."""
    from bayes_sd.model.fit_data import arrival_rate

    runs = pd.DataFrame({"rate_rps": [2.0, np.nan, 4.0, np.nan], "achieved_rps": [1.8, 3.0, np.nan, np.nan]})
    assert arrival_rate(runs, "achieved").tolist()[:3] == [1.8, 3.0, 4.0]
    assert arrival_rate(runs).tolist()[:3] == [2.0, 3.0, 4.0]
    assert np.isnan(arrival_rate(runs)[3])
    with pytest.raises(ValueError, match="offered"):
        arrival_rate(runs, "measured")


def test_default_feeds_the_configured_rate_and_the_variant_the_achieved_one(b200_runs):
    from bayes_sd import datasets
    from bayes_sd.model import LatencyModel
    from bayes_sd.model.config import ModelConfigError

    fleet = datasets.load_fleet_runs()
    fd_default = LatencyModel()._prepare(fleet, None)
    fd_achieved = LatencyModel("achieved_rate")._prepare(fleet, None)
    is_open = fd_default.x["is_open"] > 0
    runs = fd_default.runs
    assert np.allclose(fd_default.x["rate"][is_open], runs.loc[is_open, "rate_rps"])
    assert np.allclose(fd_achieved.x["rate"][is_open], runs.loc[is_open, "achieved_rps"])
    assert not np.allclose(runs.loc[is_open, "rate_rps"], runs.loc[is_open, "achieved_rps"])
    with pytest.raises(ModelConfigError, match="open_loop_rate"):
        LatencyModel(overrides={"model": {"open_loop_rate": "measured"}})
