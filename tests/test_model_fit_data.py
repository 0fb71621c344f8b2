import numpy as np

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
