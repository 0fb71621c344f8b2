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


def test_a_drained_closed_loop_is_fitted_at_the_load_its_requests_saw(b200_runs, caplog):
    """``in_flight_seen`` replaces the streams of a closed loop (kept within [1, streams]); runs without
    it, and open-loop runs, keep their configured load; the drained runs are logged."""
    from bayes_sd.model.fit_data import closed_loop_load

    runs = b200_runs[~b200_runs["saturated"].astype(bool)].reset_index(drop=True)
    runs["in_flight_seen"] = np.nan
    high = runs.index[runs["concurrency"] >= 32]
    runs.loc[high[0], "in_flight_seen"] = 0.8 * runs.loc[high[0], "concurrency"]  # drained
    runs.loc[high[1], "in_flight_seen"] = 2.0 * runs.loc[high[1], "concurrency"]  # more than its streams
    load = closed_loop_load(runs)
    assert load[high[0]] == pytest.approx(0.8 * runs.loc[high[0], "concurrency"])
    assert load[high[1]] == runs.loc[high[1], "concurrency"]
    assert closed_loop_load(runs.assign(load_type="rate")).isna().all()
    with caplog.at_level("INFO", logger="bayes_sd.model.fit_data"):
        fd = prepare_fit_data(runs)
    expected = runs["concurrency"].to_numpy(float).copy()
    expected[high[0]] *= 0.8
    assert np.allclose(fd.x["concurrency"], expected)
    assert "1 closed-loop runs drained" in caplog.text and runs.loc[high[0], "run_id"] in caplog.text


def test_acceptance_comes_from_whatever_the_run_carries():
    from bayes_sd.model.fit_data import observed_acceptance

    runs = pd.DataFrame({
        "k": [4, 4, 4, 4, 0],
        "acceptance_length": [2.5, np.nan, np.nan, np.nan, np.nan],
        "accepted_tokens": [1500.0, 1500.0, 1500.0, np.nan, 0.0],
        "num_drafts": [1000.0, 1000.0, np.nan, np.nan, 0.0],
        "draft_tokens": [4000.0, 4000.0, 4000.0, np.nan, 0.0],
    })
    tau, se = observed_acceptance(runs)
    # the length as given; from accepted per step; from the acceptance rate with k drafts per step
    np.testing.assert_allclose(tau.to_numpy()[:3], [2.5, 2.5, 1 + 4 * 1500 / 4000])
    assert np.isnan(tau.iloc[3]) and np.isnan(tau.iloc[4])  # nothing carried; no speculation
    # Bhatia-Davis: accepted per step in [0, 4] with mean 1.5 -> sd <= sqrt(1.5 * 2.5), over 1000 steps
    np.testing.assert_allclose(se.to_numpy()[:3], np.sqrt(1.5 * 2.5 / 1000))
    # a smaller run is a noisier measurement
    _, se_small = observed_acceptance(runs.assign(num_drafts=runs["num_drafts"] / 100,
                                                  accepted_tokens=runs["accepted_tokens"] / 100))
    assert se_small.iloc[1] == pytest.approx(10 * se.iloc[1])


def test_per_position_acceptance_becomes_a_slope_with_the_drafts_behind_it():
    from bayes_sd.model.fit_data import observed_acceptance, observed_decay
    from bayes_sd.theory.acceptance import decay_from_positions

    cell = "0.8;0.6;0.42;0.27"
    runs = pd.DataFrame({
        "k": [4, 4, 4, 2, 0], "n_requests": 100, "output_len": 200.0,
        "acceptance_length": [3.09, 3.09, 3.09, 2.4, np.nan],
        "num_drafts": [1000.0, np.nan, np.nan, np.nan, np.nan],
        "draft_tokens": [4000.0, 8000.0, np.nan, np.nan, np.nan],
        "per_position_acceptance": [cell, cell, cell, None, None],
    })
    slope, se = observed_decay(runs, observed_acceptance(runs)[0])
    # drafts: counted; from draft tokens / k; from output tokens / acceptance length (20000 / 3.09)
    for i, drafts in enumerate([1000.0, 2000.0, 20000 / 3.09]):
        assert (slope.iloc[i], se.iloc[i]) == pytest.approx(decay_from_positions([0.8, 0.6, 0.42, 0.27], drafts))
    assert slope.iloc[0] < 0 and se.iloc[0] > se.iloc[1] > se.iloc[2]  # more drafts, smaller error
    assert slope.iloc[3:].isna().all()  # nothing carried; no speculation


def test_runs_with_counts_but_no_acceptance_length_inform_the_fit(b200_runs):
    counts_only = b200_runs.assign(acceptance_length=np.nan)
    fd = prepare_fit_data(counts_only)
    rows, vals = fd.obs["tau"]
    spec = fd.runs["k"].to_numpy() > 0
    assert set(rows) == set(np.flatnonzero(spec))  # every speculative run, none without speculation
    truth = b200_runs.set_index("run_id").loc[fd.runs["run_id"].to_numpy()[rows], "acceptance_length"].to_numpy()
    np.testing.assert_allclose(vals, truth, rtol=1e-6)  # B200: acceptance_length = 1 + accepted / drafts
    # thousands of steps per run: sampling errors under 2% of the length, below the 5% scatter prior
    assert (fd.x["tau_se"][rows] > 0).all() and (fd.x["tau_se"][rows] / vals < 0.02).all()


def _open_loop_with_saturation():
    from bayes_sd.simulate.designs import recovery_runs

    runs = recovery_runs(0, n_requests=40)
    runs = runs[runs["load_type"] == "rate"].reset_index(drop=True)
    top = runs["rate_rps"] == runs.groupby(["drafter", "k", "dataset"])["rate_rps"].transform("max")
    return runs.assign(saturated=top, saturation_reason=np.where(top, "test: flagged", ""))


def test_censored_saturated_runs_keep_what_they_say_and_nothing_else():
    runs = _open_loop_with_saturation()
    n_sat = int(runs["saturated"].sum())
    assert n_sat > 0
    dropped = prepare_fit_data(runs)
    assert dropped.n_runs == len(runs) - n_sat and len(dropped.excluded) == n_sat and "saturated" not in dropped.obs
    kept = prepare_fit_data(runs, saturated_runs="censored")
    assert kept.n_runs == len(runs) and kept.excluded.empty
    censored = kept.runs["censored"].to_numpy()
    rows, vals = kept.obs["saturated"]
    assert set(rows) == set(np.flatnonzero(censored)) and (vals == 1).all()
    for name in ("latency", "ttft", "tail_cv"):  # no steady-state latency is read from a saturated run
        assert not censored[kept.obs[name][0]].any()
    np.testing.assert_allclose(kept.x["sat_rate"][censored], kept.runs.loc[censored, "rate_rps"])
    assert (kept.x["rate"][censored] == 0).all()  # their latency is never evaluated past saturation
    with pytest.raises(ValueError, match="saturated_runs"):
        prepare_fit_data(runs, saturated_runs="dropped")


def test_a_censored_run_pulls_the_capacity_below_its_rate():
    """The censoring term rewards costs that put the flagged runs past capacity: raising the per-request
    load cost (verifier v1, ms per token in flight) raises its log-density."""
    from bayes_sd.model import LatencyModel

    cfg = LatencyModel("default").config
    cfg = {**cfg, "model": {**cfg["model"], "saturated_runs": "censored"}}
    model = LatencyModel(cfg).build(_open_loop_with_saturation())
    point = model.initial_point()
    logp = model.compile_logp(vars=[model["saturated_obs"]], sum=True)
    low = logp(point)
    # one server: the verify means are sampled along their ridge (model.cost_split), so move log v1 through it
    split = model.rvs_to_transforms[model["mu_verify"]]
    log_v = split.backward(point["mu_verify_costsplit__"]).eval()
    log_v[1] += 3.0  # 20x the per-token verify cost: capacity / 20
    high = logp({**point, "mu_verify_costsplit__": split.forward(log_v).eval()})
    assert high > low + 1.0, (low, high)


def test_a_constant_acceptance_fit_says_it_leaves_per_position_acceptance_unused(b200_runs, caplog):
    from bayes_sd.model import LatencyModel
    from bayes_sd.theory.acceptance import implied_a1, survival
    from bayes_sd.traces.validate import format_per_position

    spec = b200_runs["k"] >= 2
    a1 = implied_a1(b200_runs.loc[spec, "acceptance_length"].to_numpy(float), b200_runs.loc[spec, "k"], 0.2)
    cells = [format_per_position(survival(a, 0.2, k)) for a, k in zip(a1, b200_runs.loc[spec, "k"])]
    runs = b200_runs.assign(per_position_acceptance=None)
    runs.loc[spec, "per_position_acceptance"] = cells
    with caplog.at_level("WARNING", logger="bayes_sd.model.latency_model"):
        fd = LatencyModel("default")._prepare(runs, None)
    assert len(fd.obs["decay"][0]) == int(spec.sum()) - int(b200_runs.loc[spec, "saturated"].astype(bool).sum())
    assert "does not use" in caplog.text and "moe_roofline_per_position" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="bayes_sd.model.latency_model"):
        LatencyModel("moe_roofline_per_position")._prepare(runs, None)
    assert "does not use" not in caplog.text


def test_a_runs_own_standard_error_wins_over_sd_over_root_n(b200_runs):
    runs = b200_runs.assign(latency_sd_s=0.5 * b200_runs["latency_mean_s"], n_requests=100)
    fd = prepare_fit_data(runs)
    np.testing.assert_allclose(fd.x["latency_rel_se"], 0.05)  # 0.5 / sqrt(100)
    given = runs.assign(latency_se_s=0.2 * runs["latency_mean_s"])  # autocorrelated: worth ~6 requests
    given.loc[given.index[0], "latency_se_s"] = np.nan  # where missing, sd / sqrt(n) still
    fd = prepare_fit_data(given)
    rel = dict(zip(fd.runs["run_id"], fd.x["latency_rel_se"]))
    assert rel[given["run_id"].iloc[0]] == pytest.approx(0.05)
    assert np.allclose([rel[r] for r in given["run_id"].iloc[1:] if r in rel], 0.2)


def test_acceptance_replayed_at_another_load_counts_once(b200_runs, caplog):
    """A sweep that sends the same requests at each load with greedy decoding measures the same
    acceptance each time (the bundled real llama.cpp sweep does): one measurement, not several."""
    from bayes_sd.model.fit_data import replayed_acceptance

    spec = b200_runs[b200_runs["k"] > 0].copy()
    first = spec.iloc[0]
    same = ((spec["drafter"] == first["drafter"]) & (spec["k"] == first["k"]) & (spec["dataset"] == first["dataset"]))
    assert same.sum() >= 2
    spec.loc[same, ["num_drafts", "accepted_tokens"]] = [1000.0, 1500.0]  # identical counts at every load
    spec["per_position_acceptance"] = None
    flagged = replayed_acceptance(spec)
    assert flagged.sum() == same.sum() - 1 and not flagged[same].iloc[0]
    assert not replayed_acceptance(spec.assign(num_drafts=np.nan)).any()  # a length alone never counts as a replay
    runs = pd.concat([b200_runs[b200_runs["k"] == 0], spec], ignore_index=True)
    with caplog.at_level("INFO", logger="bayes_sd.model.fit_data"):
        fd = prepare_fit_data(runs)
    assert "replayed" in caplog.text
    observed = set(fd.runs["run_id"].to_numpy()[fd.obs["tau"][0]])
    dup = set(spec.loc[same, "run_id"]) & set(fd.runs["run_id"])
    assert len(observed & dup) == 1


@pytest.mark.parametrize("drafts,identified", [(20.0, False), (200_000.0, True)])
def test_per_position_counts_identify_a_decay_only_when_they_pin_it(b200_runs, drafts, identified):
    """MTP and DSpark are measured at one k each in the real B200 runs: with one run each whose
    per-position shares come from twenty drafts their decays stay the population's; from hundreds
    of thousands, their own."""
    from bayes_sd.model.fit_data import POSITION_SE_IDENTIFIED
    from bayes_sd.theory.acceptance import implied_a1, survival
    from bayes_sd.traces.validate import format_per_position

    one_each = b200_runs[b200_runs["k"] > 0].drop_duplicates("drafter")
    b200_runs = pd.concat([b200_runs[b200_runs["k"] == 0], one_each], ignore_index=True)
    spec = b200_runs["k"] >= 2
    ks = b200_runs.loc[spec, "k"].to_numpy(float)
    a1 = implied_a1(b200_runs.loc[spec, "acceptance_length"].to_numpy(float), ks, 0.2)
    runs = b200_runs.assign(per_position_acceptance=None, num_drafts=np.nan, accepted_tokens=np.nan)
    runs.loc[spec, "per_position_acceptance"] = [format_per_position(survival(a, 0.2, k)) for a, k in zip(a1, ks)]
    runs.loc[spec, "num_drafts"] = drafts
    runs.loc[spec, "accepted_tokens"] = drafts * (b200_runs.loc[spec, "acceptance_length"] - 1.0)
    table = prepare_fit_data(runs).drafter_table()
    assert (table["measured_ks"] == 1).all() and (table["position_runs"] > 0).all()
    assert (table["decay_identified"] == identified).all()
    assert ((table["position_se"] < POSITION_SE_IDENTIFIED) == identified).all()


def test_the_share_of_decode_steps_that_draft_comes_from_the_counts():
    """Drafts over decode steps (``n (D - 1) - accepted``), at most 1; pooled over a drafter's runs on a
    dataset for conditions, else over its runs anywhere, else 1, and 1 from 0.9 up; k = 0 is 1."""
    from bayes_sd.model.fit_data import draft_share, observed_draft_share

    runs = pd.DataFrame({
        "drafter": ["ngram", "ngram", "ngram", "eagle", "eagle", "none"],
        "dataset": ["code", "code", "chat", "chat", "chat", "chat"],
        "k": [4, 4, 4, 3, 3, 0], "n_requests": [100, 100, 50, 100, 100, 100],
        "output_len": [201.0, 201.0, 101.0, 201.0, 201.0, 201.0],
        "accepted_tokens": [4000.0, 2000.0, 1000.0, 9000.0, np.nan, np.nan],
        "num_drafts": [4000.0, np.nan, 2000.0, 12000.0, np.nan, np.nan],
        "draft_tokens": [16000.0, 8000.0, 8000.0, 36000.0, np.nan, np.nan],
    })
    share = observed_draft_share(runs)
    # 4000 drafts over 20000 - 4000 steps; 8000 / 4 drafts over 18000; 2000 over 4000; warm-up counted: 1
    np.testing.assert_allclose(share.to_numpy()[:4], [0.25, 2000 / 18000, 0.5, 1.0])
    assert share.iloc[4:].isna().all()  # no counts; no speculation
    cond = pd.DataFrame({"drafter": ["ngram", "ngram", "eagle", "ngram", "unknown"],
                         "dataset": ["code", "summaries", "chat", "code", "code"], "k": [2, 2, 5, 0, 2]})
    np.testing.assert_allclose(draft_share(cond, runs),
                               [6000 / 34000, 8000 / 38000, 1.0, 1.0, 1.0])
    nearly = runs.assign(num_drafts=runs["num_drafts"] * [3.7, 1, 1, 1, 1, 1],
                         draft_tokens=runs["draft_tokens"] * [1, 8, 1, 1, 1, 1])
    # code: (14800 + 16000) / 34000 = 0.906 -> 1; the drafter anywhere: 32800 / 38000 = 0.863
    np.testing.assert_allclose(draft_share(cond, nearly)[:2], [1.0, 32800 / 38000])


def test_a_proposer_that_drafts_at_some_steps_is_fitted_so(b200_runs, caplog):
    """The fit data carry each run's share, pooled over its drafter's runs with counts (runs without
    them too), and log the drafters that draft at only some steps."""
    runs = b200_runs[~b200_runs["saturated"].astype(bool)].reset_index(drop=True)
    mtp = runs["drafter"] == "mtp"
    steps = runs["n_requests"] * (runs["output_len"] - 1) - runs["accepted_tokens"]
    runs.loc[mtp, "num_drafts"] = 0.3 * steps[mtp]
    runs.loc[mtp & (runs["k"] > 0) & (runs.index % 2 == 0), ["num_drafts", "draft_tokens"]] = np.nan
    with caplog.at_level("INFO", logger="bayes_sd.model.fit_data"):
        fd = prepare_fit_data(runs)
    order = fd.runs["run_id"].to_numpy()
    share = pd.Series(fd.x["draft_share"], index=order)
    mtp_runs = runs.loc[mtp & (runs["k"] > 0), "run_id"]
    np.testing.assert_allclose(share[mtp_runs], 0.3, rtol=1e-9)  # pooled over its runs with counts
    assert (share[runs.loc[runs["drafter"] == "dspark", "run_id"]] == 1.0).all()
    assert "mtp 0.30-0.30" in caplog.text


def test_a_pair_served_on_two_hardware_gets_a_deployment_level(b200_runs):
    """A pair x dataset measured on two hardware has a deployment level each, pointing at its pair x
    dataset; one hardware has none (the effect is the pair x dataset's own)."""
    fd = prepare_fit_data(b200_runs)
    assert not fd.uses("accept_deployment") and len(fd.coords["deployment"]) == len(fd.coords["pair_dataset"])
    other = b200_runs[b200_runs["drafter"] == "mtp"].assign(hardware="H200",
                                                            run_id=lambda r: r["run_id"] + "-h200")
    fd = prepare_fit_data(pd.concat([b200_runs, other], ignore_index=True))
    assert fd.uses("accept_deployment")
    deployments = fd.coords["deployment"]
    assert len(deployments) == len(fd.coords["pair_dataset"]) + fd.runs.loc[fd.runs["drafter"] == "mtp",
                                                                             "dataset"].nunique()
    parent = np.array(fd.coords["pair_dataset"])[fd.idx["deployment_pair_dataset"]]
    assert all(d.startswith(p + " @ ") for d, p in zip(deployments, parent))
    spec = fd.x["k"] > 0
    run_dep = np.array(deployments)[fd.idx["run_deployment"]]
    assert all(d.endswith("@ " + h) for d, h in zip(run_dep[spec], fd.runs["hardware"].to_numpy()[spec]))
