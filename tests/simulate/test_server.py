"""Tests of bayes_sd.simulate (step-level simulator), bayes_sd.simulate.presets and the synthetic fleet.

The simulator must agree with bayes_sd.theory where the theory is exact enough: at low
load, for a request alone (closed loop of 1), and for the acceptance length.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bayes_sd import theory as th
from bayes_sd.datasets import data_dir
from bayes_sd.simulate import SOURCE, acceptance_vector, simulate_run, simulate_runs, theory_tau
from bayes_sd.simulate.presets import PRESETS, WORKLOADS, models_table, preset_name
from bayes_sd.traces.schema import REQUESTS
from bayes_sd.traces.validate import validate_models, validate_requests, validate_runs

DENSE = preset_name("llama3.1-8b", "eagle3-small", "H100")
MOE = preset_name("qwen3-30b-a3b", "eagle3-small", "H100")
P, D = 512, 256
EXACT = dict(prompt_len=P, output_len=D, step_noise=0.0, length_cv=0.0, acceptance_spread=0.0)
FLEET = data_dir() / "synthetic"


def _theory_latency(costs, k, tau, *, rate=None, concurrency=None):
    """Theory's mean latency (s): the MoE functions (equal to the dense ones when dense)."""
    if rate is not None:
        return float(th.latency_moe_open(costs, k, tau, P, D, rate))
    return float(th.latency_moe_closed(costs, k, tau, P, D, concurrency))


def _no_knee(costs):
    """The preset's costs without its roofline knee: the dense closed form of theory.demand is exact."""
    return dataclasses.replace(costs, knee_tokens=None, compute_share=0.0)


def _mean_latency(df, trim=0.1):
    lat = (df["end_s"] - df["start_s"]).to_numpy()
    m = int(trim * len(lat))
    return float(lat[m:len(lat) - m].mean())


def _saturation(costs, k, tau):
    return float(th.saturation_rate(th.demand(costs, k, tau, P, D).c2))


# --------------------------------------------------------------------------- step cost model


@pytest.mark.parametrize("name", [DENSE, MOE])
def test_single_request_step_costs_exact(name):
    """One request alone, k = 0, no noise: latency is the hand-computed sum of its steps."""
    c = PRESETS[name].costs
    prompt, out = 100, 4
    df = simulate_run(c, k=0, acceptance=0.5, n_requests=1, concurrency=1, prompt_len=prompt,
                      output_len=out, step_noise=0.0)

    def fixed(tokens, decoding):  # the knee counts decode tokens only: none in the prefill step
        knee = 1 + c.compute_share * th.knee_excess(decoding - 1.0, 0, c.knee_tokens)
        if c.experts is None:
            return c.v0 * knee
        coverage = th.expert_coverage(tokens, c.experts, c.experts_per_token)
        return c.v0 * knee * (1 - c.expert_share + c.expert_share * coverage)

    assert c.knee_tokens > 0 and c.s1 > 0  # the presets have both
    prefill = c.p0 + c.p1 * prompt + fixed(prompt, 0) + c.v1 + c.s1 + c.c1 * prompt
    decode = sum(fixed(1, 1) + c.v1 + c.s1 + c.c1 * (prompt + g) for g in range(1, out))
    assert df["first_token_s"].iloc[0] == pytest.approx(prefill, rel=1e-12)
    assert df["end_s"].iloc[0] == pytest.approx(prefill + decode, rel=1e-12)


def test_chunked_prefill_respects_token_budget():
    """A prompt longer than max_num_batched_tokens is prefilled in chunks over several steps."""
    c = _no_knee(PRESETS[DENSE].costs)
    prompt, budget = 20_000, 8192
    df = simulate_run(c, k=3, acceptance=0.7, n_requests=1, concurrency=1, prompt_len=prompt,
                      output_len=1, step_noise=0.0, max_num_batched_tokens=budget)
    chunks = [8192, 8192, 3616]
    expected = c.p0 + 3 * c.v0 + c.p1 * sum(chunks) + 3 * c.d0 + 4 * c.v1 + 3 * c.d1 + c.s1 + c.c1 * prompt
    assert df["first_token_s"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert df["end_s"].iloc[0] == df["first_token_s"].iloc[0]


def test_batch_cap_limits_running_sequences():
    """At most max_num_seqs requests decode at once; the rest queue (longer TTFT)."""
    c = PRESETS[DENSE].costs
    kw = dict(k=2, acceptance=0.7, n_requests=64, concurrency=16, **EXACT)

    def max_decoding(df):
        ev = np.concatenate([np.c_[df["first_token_s"], np.ones(len(df))], np.c_[df["end_s"], -np.ones(len(df))]])
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]  # ends before starts at equal times
        return int(np.cumsum(ev[:, 1]).max())

    capped = simulate_run(c, max_num_seqs=4, **kw)
    free = simulate_run(c, max_num_seqs=256, **kw)
    assert max_decoding(capped) <= 4
    assert max_decoding(free) > 4
    ttft = lambda df: float((df["first_token_s"] - df["start_s"]).mean())  # noqa: E731
    assert ttft(capped) > 5 * ttft(free)


# --------------------------------------------------------------------------- agreement with theory


@pytest.mark.parametrize("k", [0, 4])
@pytest.mark.parametrize("name", [DENSE, MOE])
def test_low_load_open_loop_matches_theory(name, k):
    """Poisson arrivals at 5 % of saturation: mean latency within 5 % of the theory.

    Poisson (not constant) arrivals because the theory counts others in flight as
    rate x L (arrivals see time averages); see test_constant_arrivals_low_load_dense.
    """
    pre = PRESETS[name]
    a = pre.acceptance["chat"]
    tau = theory_tau(a, k)
    rate = 0.05 * _saturation(pre.costs, k, tau)
    df = simulate_run(pre.costs, k=k, acceptance=a, n_requests=3000, rate_rps=rate, seed=3, **EXACT)
    expected = _theory_latency(pre.costs, k, tau, rate=rate)
    assert _mean_latency(df) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("k", [0, 4])
def test_constant_arrivals_low_load_dense(k):
    """Constant arrivals at 5 % of saturation, dense verifier: within 5 % of latency_open.

    (Deterministic arrivals overlap about one request less than rate x L, so the
    simulator sits slightly below the theory; an MoE verifier amplifies this, which is
    why the MoE comparison uses Poisson arrivals.)
    """
    pre = PRESETS[DENSE]
    a = pre.acceptance["chat"]
    tau = theory_tau(a, k)
    dem = th.demand(pre.costs, k, tau, P, D)
    rate = 0.05 * th.saturation_rate(dem.c2)
    df = simulate_run(pre.costs, k=k, acceptance=a, n_requests=400, rate_rps=rate, arrivals="constant", **EXACT)
    assert _mean_latency(df) == pytest.approx(float(th.latency_open(dem.c1, dem.c2, rate)), rel=0.05)


@pytest.mark.parametrize("k", [0, 4])
@pytest.mark.parametrize("name", [DENSE, MOE])
def test_closed_loop_concurrency_one_matches_theory(name, k):
    pre = PRESETS[name]
    a = pre.acceptance["code"]
    tau = theory_tau(a, k)
    df = simulate_run(pre.costs, k=k, acceptance=a, n_requests=200, concurrency=1, **EXACT)
    assert _mean_latency(df, trim=0.0) == pytest.approx(_theory_latency(pre.costs, k, tau, concurrency=1), rel=0.05)
    # one stream: each request starts when the previous one ends
    assert np.allclose(df["start_s"].to_numpy()[1:], df["end_s"].to_numpy()[:-1])


@pytest.mark.parametrize("k", [2, 4, 7])
def test_iteration_boundary_term_closes_the_gap_to_the_simulator(k):
    """Alone on the server, the simulator's mean latency is the theory's C1 once the last
    iteration's discarded surplus is counted (theory.iterations with tau_sq); without it the
    theory is low by ~0.4-1 %."""
    pre = PRESETS[DENSE]
    a = pre.acceptance["code"]
    a_pos = acceptance_vector(a, k)
    tau, tau_sq = theory_tau(a, k), th.tau_sq_per_position(a_pos)
    costs = _no_knee(pre.costs)
    df = simulate_run(costs, k=k, acceptance=a, n_requests=2000, concurrency=1, seed=1, **EXACT)
    sim = float((df["end_s"] - df["start_s"]).mean())
    with_term = th.demand(costs, k, tau, P, D, tau_sq=tau_sq).c1
    without = th.demand(costs, k, tau, P, D).c1
    assert sim == pytest.approx(with_term, rel=0.003)
    assert abs(sim / with_term - 1) < abs(sim / without - 1)


@pytest.mark.parametrize("k", [0, 4])
def test_ttft_alone_and_under_load_matches_the_simulator(k):
    """One stream: TTFT is p0 + prefill + one step (no step in progress to wait for). Poisson
    arrivals with long prompts: the wait is the length-biased residual of a step, which the
    others' prefills make long; the old form (half a mean step) is further off."""
    pre = PRESETS[DENSE]
    a = pre.acceptance["code"]
    tau, tau_sq = theory_tau(a, k), th.tau_sq_per_position(acceptance_vector(a, k))
    alone = simulate_run(pre.costs, k=k, acceptance=a, n_requests=300, concurrency=1, seed=2, **EXACT)
    sim = float((alone["first_token_s"] - alone["start_s"]).mean())
    assert sim == pytest.approx(th.ttft(pre.costs, k, tau, P, D, 0.0, tau_sq=tau_sq, p_busy=0.0), rel=0.01)

    long_p = {**EXACT, "prompt_len": 2048}
    dem = th.demand(pre.costs, k, tau, 2048, D, tau_sq=tau_sq)
    rate = 0.4 * th.saturation_rate(dem.c2)
    df = simulate_run(pre.costs, k=k, acceptance=a, n_requests=4000, rate_rps=rate, seed=2, **long_p)
    body = df.iloc[400:]  # past the start-up transient
    sim = float((body["first_token_s"] - body["start_s"]).mean())
    others = rate * float((body["end_s"] - body["start_s"]).mean())
    new = th.ttft(pre.costs, k, tau, 2048, D, others, tau_sq=tau_sq)
    step = th.step_time(pre.costs, k, tau, 2048, D, others, tau_sq=tau_sq)
    old = pre.costs.p0 + pre.costs.p1 * 2048 + 1.5 * step
    assert abs(new / sim - 1) < abs(old / sim - 1)
    assert new == pytest.approx(sim, rel=0.1)


@pytest.mark.parametrize("load", ["rate", "concurrency"])
def test_latency_increases_with_load(load):
    pre = PRESETS[DENSE]
    a = pre.acceptance["chat"]
    tau = theory_tau(a, 4)
    sat = _saturation(pre.costs, 4, tau)
    levels = [0.1, 0.3, 0.5, 0.7] if load == "rate" else [1, 8, 32, 96]
    lat = []
    for x in levels:
        kw = dict(rate_rps=x * sat) if load == "rate" else dict(concurrency=x)
        df = simulate_run(pre.costs, k=4, acceptance=a, n_requests=1500, seed=11, prompt_len=P, output_len=D,
                          length_cv=0.3, acceptance_spread=0.2, **kw)
        lat.append(_mean_latency(df))
    assert np.all(np.diff(lat) > 0), lat


@pytest.mark.parametrize("acceptance,k", [(0.7, 4), (0.55, 7), (PRESETS[DENSE].acceptance["chat"], 7),
                                          (PRESETS[MOE].acceptance["code"], 3)])
def test_acceptance_statistics_match_tau(acceptance, k):
    df = simulate_run(PRESETS[DENSE].costs, k=k, acceptance=acceptance, n_requests=400, concurrency=16,
                      seed=5, **EXACT)
    est = df["accepted_tokens"].sum() / df["num_drafts"].sum() + 1.0
    assert est == pytest.approx(theory_tau(acceptance, k), rel=0.03)
    assert (df["draft_tokens"] == k * df["num_drafts"]).all()


def test_no_speculation_has_no_drafts():
    df = simulate_run(PRESETS[DENSE].costs, k=0, acceptance=0.9, n_requests=50, concurrency=4, **EXACT)
    assert (df[["draft_tokens", "accepted_tokens", "num_drafts"]] == 0).all().all()


# --------------------------------------------------------------------------- one kernel: plain SD in the cascade entry


_SAME = (("start_s", "start_s"), ("first_token_s", "first_token_s"), ("end_s", "end_s"),
         ("draft_tokens", "block_tokens"), ("accepted_tokens", "qv_accepted"), ("num_drafts", "num_verifies"))


def _assert_same_requests(ref, got):
    """simulate_run's table and a cascade table describe the same requests, to the last bit."""
    np.testing.assert_array_equal(got["prompt_tokens"], ref["prompt_tokens"])
    np.testing.assert_array_equal(got["output_tokens"], ref["output_tokens"])
    for a, b in _SAME:
        np.testing.assert_array_equal(got[b].to_numpy(), ref[a].to_numpy(), err_msg=f"{a} vs {b}")
    assert (got[["dq_accepted", "dq_rejected"]] == 0).all().all()


@pytest.mark.parametrize("load", [dict(concurrency=12), dict(rate_rps=60.0)])
@pytest.mark.parametrize("a,noise", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.03), (1.0, 0.03), (0.62, 0.03)])
def test_plain_sd_through_the_cascade_entry_is_simulate_run(a, noise, load):
    """k_draft = 0, k_qual = k with the drafter's costs as the qualifier's is plain SD on the same
    kernel: with acceptance 0 or 1 every request starts, gets its first token and ends at exactly
    the times simulate_run gives (queueing at a small batch cap and chunked prefill included), and
    with a constant acceptance and the same seed the random streams are the same too."""
    from bayes_sd.cascade.simulate import scenario, simulate_pyramid_run
    from bayes_sd.cascade.theory import drafter_as_qualifier

    costs = scenario()["costs"]  # dense, no knee, no s1: what the cascade simulator accepts
    kw = dict(n_requests=150, prompt_len=P, output_len=96, length_cv=0.3, step_noise=noise, max_num_seqs=6,
              max_num_batched_tokens=600, seed=4, **load)
    ref = simulate_run(costs, k=4, acceptance=a, **kw)
    got = simulate_pyramid_run(costs, drafter_as_qualifier(costs), k_draft=0, k_qual=4, a_dq=0.0, a_qv=a, **kw)
    ttft = ref["first_token_s"] - ref["start_s"]
    assert ttft.iloc[-1] > 5 * ttft.min()  # the batch cap binds: late requests queue
    _assert_same_requests(ref, got)
    if a in (0.0, 1.0):
        assert (ref["accepted_tokens"] == a * ref["draft_tokens"]).all()


@pytest.mark.parametrize("k", [0, 3])
def test_plain_rows_of_simulate_pyramid_runs_are_simulate_run(k):
    """A ``mode='plain'`` row of simulate_pyramid_runs is simulate_run at k = k_draft with acceptance
    a_dv, seeded as simulate_runs seeds run i (run_seed): same timings at a_dv = 1 with step noise."""
    from bayes_sd.cascade.simulate import scenario, simulate_pyramid_runs
    from bayes_sd.simulate.requests import run_seed

    sc = scenario()
    cfg = pd.DataFrame([dict(run_id="p", mode="plain", k_draft=k, k_qual=0, load_type="concurrency", concurrency=8,
                             n_requests=100, prompt_len=P, output_len=64, length_cv=0.3, step_noise=0.03)])
    got, _ = simulate_pyramid_runs(cfg, sc["costs"], sc["qcosts"], a_dq=sc["a_dq"], a_qv=sc["a_qv"], a_dv=1.0, seed=9)
    ref = simulate_run(sc["costs"], k=k, acceptance=1.0, n_requests=100, concurrency=8, prompt_len=P, output_len=64,
                       length_cv=0.3, step_noise=0.03, seed=run_seed(9, 0))
    _assert_same_requests(ref, got)


# --------------------------------------------------------------------------- outputs


def test_requests_table_is_canonical_and_valid():
    df = simulate_run(PRESETS[MOE].costs, k=4, acceptance=PRESETS[MOE].acceptance["chat"], n_requests=300,
                      rate_rps=5.0, prompt_len=P, output_len=D, length_cv=0.4, acceptance_spread=0.3, run_id="r1")
    assert list(df.columns) == [c.name for c in REQUESTS]
    clean = validate_requests(df, "simulated")
    assert len(clean) == 300 and clean["request_id"].is_unique and (clean["run_id"] == "r1").all()
    assert (df["first_token_s"] > df["start_s"]).all() and (df["end_s"] >= df["first_token_s"]).all()
    assert df["output_tokens"].min() >= 1 and df["prompt_tokens"].min() >= 1


def test_lengths_exact_or_spread_around_mean():
    c = PRESETS[DENSE].costs
    exact = simulate_run(c, k=0, acceptance=0.0, n_requests=100, concurrency=8, prompt_len=300, output_len=40)
    assert (exact["prompt_tokens"] == 300).all() and (exact["output_tokens"] == 40).all()
    spread = simulate_run(c, k=0, acceptance=0.0, n_requests=4000, concurrency=64, prompt_len=300,
                          output_len=40, length_cv=0.5)
    assert spread["prompt_tokens"].mean() == pytest.approx(300, rel=0.03)
    assert spread["prompt_tokens"].std() / spread["prompt_tokens"].mean() == pytest.approx(0.5, rel=0.15)


def test_reproducible_given_seed():
    kw = dict(k=3, acceptance=0.7, n_requests=200, rate_rps=8.0, prompt_len=P, output_len=D, length_cv=0.3,
              acceptance_spread=0.3, step_noise=0.05)
    c = PRESETS[DENSE].costs
    a, b, other = simulate_run(c, seed=7, **kw), simulate_run(c, seed=7, **kw), simulate_run(c, seed=8, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["end_s"], other["end_s"])


def test_invalid_arguments():
    c = PRESETS[DENSE].costs
    with pytest.raises(ValueError, match="exactly one"):
        simulate_run(c, k=1, acceptance=0.5, n_requests=5, rate_rps=1.0, concurrency=2, prompt_len=10, output_len=10)
    with pytest.raises(ValueError, match="positions"):
        simulate_run(c, k=4, acceptance=[0.5, 0.4], n_requests=5, concurrency=2, prompt_len=10, output_len=10)
    with pytest.raises(ValueError, match="arrivals"):
        simulate_run(c, k=1, acceptance=0.5, n_requests=5, rate_rps=1.0, arrivals="bursty", prompt_len=10,
                     output_len=10)


def test_simulate_runs_gives_canonical_tables():
    name = preset_name("llama3.3-70b", "draft-1b", "A100")
    configs = pd.DataFrame([
        dict(run_id="a", preset=name, dataset="chat", k=0, load_type="rate", rate_rps=0.3, concurrency=np.nan),
        dict(run_id="b", preset=name, dataset="code", k=4, load_type="concurrency", rate_rps=np.nan, concurrency=8),
        dict(run_id="c", preset=MOE, dataset="chat", k=2, load_type="rate", rate_rps=4.0, concurrency=np.nan),
    ]).assign(n_requests=200, prompt_len=P, output_len=128, length_cv=0.3)
    requests, runs = simulate_runs(configs, seed=1)
    validate_requests(requests)
    runs = validate_runs(runs)
    assert list(runs["run_id"]) == ["a", "b", "c"]
    assert (runs["source"] == SOURCE).all() and SOURCE.startswith("synthetic:")
    assert list(runs["drafter"]) == ["none", "draft-1b", "eagle3-small"]
    assert list(runs["hardware"]) == ["A100", "A100", "H100"]
    tau_b = theory_tau(PRESETS[name].acceptance["code"], 4)
    assert runs.loc[1, "acceptance_length"] == pytest.approx(tau_b, rel=0.05)
    assert not runs["saturated"].any()


# --------------------------------------------------------------------------- presets and fleet


def test_presets_cover_the_fleet_design():
    verifiers = {p.verifier for p in PRESETS.values()}
    drafters = {p.drafter for p in PRESETS.values()}
    assert len(verifiers) >= 3 and len(drafters) >= 3
    assert {p.hardware for p in PRESETS.values()} >= {"H100", "A100"}
    assert len({(p.verifier, p.drafter) for p in PRESETS.values()}) >= 8
    assert any(p.costs.experts is not None for p in PRESETS.values())
    for p in PRESETS.values():
        assert "ILLUSTRATIVE" in p.description
        for ds in WORKLOADS:
            a = np.asarray(p.acceptance[ds])
            assert a.shape == (8,) and np.all(np.diff(a) < 0) and 0 < a[-1] and a[0] < 1
        h100 = PRESETS[preset_name(p.verifier, p.drafter, "H100")].costs
        for coef in ("v0", "v1", "d0", "d1", "p1"):
            assert 1.6 <= getattr(p.costs, coef) / getattr(h100, coef) <= 2.0 or p.hardware == "H100"
    v8 = PRESETS[DENSE].costs
    assert 6e-3 <= v8.v0 <= 7e-3 and 3e-5 <= v8.v1 <= 6e-5


def test_models_table_names_every_preset_model():
    m = validate_models(models_table())
    names = set(m["name"])
    assert names == {p.verifier for p in PRESETS.values()} | {p.drafter for p in PRESETS.values()}
    assert m.loc[m["name"] == "qwen3-30b-a3b", "experts"].item() == 128


def test_speculation_stops_paying_at_high_load():
    """A preset where k = 4 beats k = 0 when lightly loaded and loses near saturation (the
    roofline knee included: k = 4 puts five tokens per sequence into every verify pass)."""
    pre = PRESETS[DENSE]
    c, tau = pre.costs, theory_tau(pre.acceptance["chat"], 4)
    sat0 = th.saturation_rate_at(c, 0, 1.0, P, D)

    def speedup(rate):
        return float(th.latency_moe_open(c, 0, 1.0, P, D, rate) / th.latency_moe_open(c, 4, tau, P, D, rate))

    assert speedup(0.05 * sat0) > 1.3 and speedup(0.88 * sat0) < 1.0
    assert th.saturation_rate_at(c, 4, tau, P, D) < sat0 < th.saturation_rate(th.demand(c, 0, 1.0, P, D).c2)


def test_committed_fleet_is_valid_and_synthetic():
    runs = validate_runs(pd.read_csv(FLEET / "fleet_runs_synthetic.csv"), "fleet_runs_synthetic.csv")
    models = validate_models(pd.read_csv(FLEET / "fleet_models_synthetic.csv"), "fleet_models_synthetic.csv")
    assert 400 <= len(runs) <= 700
    assert runs["source"].str.startswith("synthetic:").all()
    assert runs["verifier"].nunique() >= 3 and runs.loc[runs["k"] > 0, "drafter"].nunique() >= 3
    assert runs["hardware"].nunique() == 2 and set(runs["dataset"]) == set(WORKLOADS)
    assert set(runs["k"]) == set(range(8)) and set(runs["load_type"]) == {"rate", "concurrency"}
    spec = runs[runs["k"] > 0]
    assert spec.groupby(["verifier", "drafter"]).ngroups >= 8
    levels = runs.groupby(["verifier", "drafter", "hardware", "dataset", "k", "load_type"]).size()
    assert (levels >= 5).all()
    assert set(runs["verifier"]) | set(runs.loc[runs["k"] > 0, "drafter"]) <= set(models["name"])
    assert runs["saturated"].any() and not runs["saturated"].all()


@pytest.mark.parametrize("k", [0, 4])
def test_per_sequence_cost_adds_the_same_time_in_simulator_and_theory(k):
    """A per-sequence pass cost s1 (the ``sequence_cost`` variant) slows a closed loop of 16 streams
    by the amount the closed form says: N s1 per pass for itself and each other sequence."""
    pre = PRESETS[DENSE]
    a = pre.acceptance["code"]
    a_pos = acceptance_vector(a, k) if k else np.ones(0)
    tau, tau_sq = theory_tau(a, k), (th.tau_sq_per_position(a_pos) if k else 1.0)
    base = _no_knee(pre.costs)
    with_s1 = dataclasses.replace(base, s1=base.s1 + 0.1e-3)
    sims, theo = [], []
    for costs in (base, with_s1):
        df = simulate_run(costs, k=k, acceptance=a, n_requests=1500, concurrency=16, seed=5, **EXACT)
        sims.append(_mean_latency(df))
        dem = th.demand(costs, k, tau, P, D, tau_sq=tau_sq)
        theo.append(th.latency_closed(dem.c1, dem.c2, 16))
    added = 16 * th.iterations(D, tau, tau_sq) * 0.1e-3
    assert theo[1] - theo[0] == pytest.approx(added, rel=1e-9)
    assert sims[1] - sims[0] == pytest.approx(added, rel=0.1)


def test_roofline_knee_slows_high_load_as_the_theory_says():
    """Past the knee (96 streams x 8 tokens = 768 > 240 tokens per pass) the simulator slows down
    as theory.latency_moe_closed with the knee says, not as the dense closed form; below it
    (4 streams) the knee changes little."""
    pre = PRESETS[DENSE]
    a = pre.acceptance["chat"]
    tau = theory_tau(a, 7)
    df = simulate_run(pre.costs, k=7, acceptance=a, n_requests=960, concurrency=96, seed=3,
                      prompt_len=P, output_len=D)
    sim = _mean_latency(df, trim=0.2)
    knee = _theory_latency(pre.costs, 7, tau, concurrency=96)
    dense = _theory_latency(_no_knee(pre.costs), 7, tau, concurrency=96)
    assert knee > 1.05 * dense
    assert sim == pytest.approx(knee, rel=0.04)
    assert abs(sim / knee - 1) < abs(sim / dense - 1)
    low = [_theory_latency(c, 7, tau, concurrency=4) for c in (pre.costs, _no_knee(pre.costs))]
    assert low[0] == pytest.approx(low[1], rel=0.03)


def test_knee_fixed_point_and_saturation_rate():
    """Open loop with the knee: the latency is a fixed point of L = latency at rate x L others, the
    knee brings saturation below 1 / C2, and a rate past it has no fixed point (inf)."""
    c = PRESETS[DENSE].costs
    tau = theory_tau(PRESETS[DENSE].acceptance["chat"], 4)
    sat = th.saturation_rate_at(c, 4, tau, P, D)
    dense_sat = th.saturation_rate(th.demand(c, 4, tau, P, D).c2)
    assert 0.5 * dense_sat < sat < 0.95 * dense_sat
    assert th.saturation_rate_at(_no_knee(c), 4, tau, P, D) == pytest.approx(dense_sat)
    rates = np.array([0.3, 0.7, 0.95]) * sat
    lat = th.latency_moe_open(c, 4, tau, P, D, rates)
    np.testing.assert_allclose(th.latency_moe_at_load(c, 4, tau, P, D, rates * lat), lat, rtol=1e-9)
    assert np.all(np.diff(lat) > 0)
    assert th.latency_moe_open(c, 4, tau, P, D, 1.02 * sat) == np.inf
