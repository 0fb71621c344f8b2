"""The continuous-batching server: queueing laws, batch cap, acceptance, lengths, speed, table shape."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from bayes_sd.evaluation.fleets.costs import kv_capacity_tokens, pass_cost
from bayes_sd.evaluation.fleets.hardware import DEVICES
from bayes_sd.evaluation.fleets.models import VERIFIERS, eagle_head, ngram_drafter
from bayes_sd.evaluation.fleets.server import ServerSettings, request_stream, simulate_arrays, simulate_run
from bayes_sd.evaluation.fleets.workloads import (
    WORKLOADS,
    AcceptanceProfile,
    eos_output_lengths,
    prompt_lengths,
    solve_stop_beta,
    truncated_mean_output,
)
from bayes_sd.traces.aggregate import aggregate_runs
from bayes_sd.traces.validate import validate_requests

H100 = DEVICES["H100"]
LLAMA8 = VERIFIERS["llama3.1-8b"]
HEAD = eagle_head(LLAMA8)
VERIFY = pass_cost(LLAMA8, H100)
DRAFT = pass_cost(HEAD, H100)
CHAT = WORKLOADS["chat"]
GOOD = AcceptanceProfile(first_mean=0.8, decay_ratio=0.9)
SETTINGS = ServerSettings(kv_capacity_tokens=kv_capacity_tokens(LLAMA8, H100, 1, HEAD))


def _latency(result):
    r = result.requests
    return (r["end_s"] - r["start_s"]).to_numpy()


def test_littles_law_in_a_long_open_loop_run():
    rate = 12.0
    result = simulate_run(VERIFY, DRAFT, 3, CHAT, GOOD, SETTINGS, 20_000, rate_rps=rate, seed=3)
    in_flight = result.diagnostics["mean_in_flight"]  # time average the kernel integrates step by step
    latency = _latency(result).mean()
    assert in_flight > 5
    # L = lambda W, with the offered rate: a long run is close to the steady state
    assert in_flight == pytest.approx(rate * latency, rel=0.03)
    # over the run's own horizon (empty at both ends) it is an identity: the kernel counts each request
    # in flight from its arrival to its last token, queueing included
    horizon_rate = len(result.requests) / result.diagnostics["duration_s"]
    assert in_flight == pytest.approx(horizon_rate * latency, rel=0.005)


def test_the_batch_cap_queues_requests():
    rate = 8.0
    kwargs = dict(rate_rps=rate, seed=5)
    wide = simulate_run(VERIFY, DRAFT, 2, CHAT, GOOD, SETTINGS, 800, **kwargs)
    narrow_settings = ServerSettings(max_num_seqs=4, kv_capacity_tokens=SETTINGS.kv_capacity_tokens)
    narrow = simulate_run(VERIFY, DRAFT, 2, CHAT, GOOD, narrow_settings, 800, **kwargs)
    ttft = lambda r: float((r.requests["first_token_s"] - r.requests["start_s"]).mean())  # noqa: E731
    assert narrow.diagnostics["mean_running"] <= 4.0 + 1e-9
    assert wide.diagnostics["mean_running"] > 8
    # four slots serve fewer requests per second than arrive: requests wait for a slot before their first token
    assert ttft(narrow) > 20 * ttft(wide)
    waited = narrow.requests["first_token_s"] - narrow.requests["start_s"]
    assert waited.iloc[-100:].mean() > waited.iloc[:100].mean()


def test_acceptance_decays_with_position_in_the_recorded_counts():
    decaying = AcceptanceProfile(first_mean=0.85, decay_ratio=0.85, concentration=30.0)
    result = simulate_run(VERIFY, DRAFT, 6, CHAT, decaying, SETTINGS, 400, concurrency=16, seed=7)
    conditional = result.position_accepted / result.position_reached
    assert result.position_reached[-1] > 2000
    assert np.all(np.diff(conditional) < 0), conditional
    assert conditional[-1] < 0.75 * conditional[0]
    flat = AcceptanceProfile(first_mean=0.85, decay_ratio=1.0, concentration=30.0)
    same = simulate_run(VERIFY, DRAFT, 6, CHAT, flat, SETTINGS, 400, concurrency=16, seed=7)
    flat_conditional = same.position_accepted / same.position_reached
    assert flat_conditional[-1] > 0.9 * flat_conditional[0]
    # request totals agree with the positions
    r = result.requests
    assert int(r["accepted_tokens"].sum()) == int(result.position_accepted.sum())
    assert (r["draft_tokens"] == 6 * r["num_drafts"]).all()
    assert (r["accepted_tokens"] <= r["draft_tokens"]).all()


def test_acceptance_varies_between_requests():
    result = simulate_run(VERIFY, DRAFT, 4, CHAT, AcceptanceProfile(first_mean=0.7, concentration=8.0), SETTINGS,
                          300, concurrency=8, seed=11)
    r = result.requests[result.requests["num_drafts"] >= 30]
    per_request = 1 + r["accepted_tokens"] / r["num_drafts"]
    assert per_request.std() > 0.3


def test_eos_lengths_have_the_requested_mean():
    rng = np.random.default_rng(0)
    for mean, shape, cap in ((260, 3.0, 1024), (900, 2.5, 4096), (150, 6.0, 512)):
        assert truncated_mean_output(shape, solve_stop_beta(mean, shape, cap), cap) == pytest.approx(mean, rel=1e-6)
        lengths = eos_output_lengths(rng, 200_000, mean, shape, cap)
        assert lengths.min() >= 1 and lengths.max() == cap
        assert lengths.mean() == pytest.approx(mean, rel=0.02)
        # more spread than one geometric law with the same mean and cap (a mixture over per-request hazards)
        hazard = 1.0 / mean
        for _ in range(60):  # the geometric's truncated mean (1 - (1 - p)^cap) / p equals the requested mean
            hazard *= ((1 - (1 - hazard) ** cap) / hazard) / mean
        geometric = np.minimum(rng.geometric(hazard, 200_000), cap)
        assert geometric.mean() == pytest.approx(mean, rel=0.02)
        assert lengths.std() > 1.04 * geometric.std()


def test_prompt_lengths_come_from_the_mixture():
    lengths = prompt_lengths(np.random.default_rng(1), 50_000, CHAT.prompt_mixture, CHAT.max_prompt_tokens)
    assert lengths.min() >= 1 and lengths.max() <= CHAT.max_prompt_tokens
    # the fixed templates (900 and 1400 tokens +- 60) show as spikes a lognormal would not have
    near = lambda centre: np.mean(np.abs(lengths - centre) <= 60)  # noqa: E731
    assert near(900) > 2 * near(1150)


def test_speculation_pays_at_light_load_and_counts_make_sense():
    base = simulate_run(VERIFY, None, 0, CHAT, GOOD, SETTINGS, 120, concurrency=1, seed=2)
    spec = simulate_run(VERIFY, DRAFT, 4, CHAT, GOOD, SETTINGS, 120, concurrency=1, seed=2)
    assert _latency(spec).mean() < 0.7 * _latency(base).mean()
    assert (base.requests[["draft_tokens", "accepted_tokens", "num_drafts"]] == 0).all().all()
    ngram = simulate_run(VERIFY, pass_cost(ngram_drafter(), H100), 4, CHAT,
                         AcceptanceProfile(first_mean=0.6, match_probability=0.3), SETTINGS, 120, concurrency=1, seed=2)
    steps = (ngram.requests["output_tokens"] - 1).sum()
    assert 0.15 * steps < ngram.requests["num_drafts"].sum() < 0.5 * steps  # proposes only on a match


def test_the_run_factor_scales_every_step():
    stream = request_stream(np.random.default_rng(4), 60, CHAT, GOOD, None)
    quiet = ServerSettings(kv_capacity_tokens=SETTINGS.kv_capacity_tokens, step_noise_sd=0.0)
    one = simulate_arrays(VERIFY, DRAFT, 3, GOOD, quiet, stream, concurrency=1, seed=4, run_factor=1.0)
    slow = simulate_arrays(VERIFY, DRAFT, 3, GOOD, quiet, stream, concurrency=1, seed=4, run_factor=1.1)
    assert (slow[2] - slow[0]).mean() == pytest.approx(1.1 * (one[2] - one[0]).mean(), rel=1e-9)


def test_requests_table_is_canonical_and_aggregates():
    result = simulate_run(VERIFY, DRAFT, 3, CHAT, GOOD, SETTINGS, 300, rate_rps=5.0, seed=1, run_id="r1")
    requests = validate_requests(result.requests, "simulated")
    assert len(requests) == 300 and requests["request_id"].is_unique
    assert (requests["first_token_s"] >= requests["start_s"]).all()
    assert (requests["end_s"] >= requests["first_token_s"]).all()
    meta = pd.DataFrame([{"run_id": "r1", "source": "synthetic:outfamily:test", "hardware": "H100",
                          "verifier": LLAMA8.name, "drafter": HEAD.name, "dataset": "chat", "k": 3,
                          "load_type": "rate", "rate_rps": 5.0}])
    runs = aggregate_runs(requests, meta)
    assert 1.5 < runs["acceptance_length"].iloc[0] < 4.0


def test_preemption_frees_the_kv_cache_when_it_runs_out():
    tight = ServerSettings(kv_capacity_tokens=20_000)
    result = simulate_run(VERIFY, DRAFT, 2, CHAT, GOOD, tight, 300, concurrency=64, seed=9)
    assert result.diagnostics["preemptions"] > 0
    assert np.isfinite(result.requests["end_s"]).all()


def test_a_2000_request_run_takes_well_under_a_second():
    simulate_run(VERIFY, DRAFT, 4, CHAT, GOOD, SETTINGS, 50, rate_rps=10.0, seed=0)  # compiled (or cached)
    t0 = time.perf_counter()
    simulate_run(VERIFY, DRAFT, 4, CHAT, GOOD, SETTINGS, 2000, rate_rps=10.0, seed=0)
    assert time.perf_counter() - t0 < 0.5


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        simulate_run(VERIFY, DRAFT, 2, CHAT, GOOD, SETTINGS, 10)
    with pytest.raises(ValueError, match="needs a drafter"):
        simulate_run(VERIFY, None, 2, CHAT, GOOD, SETTINGS, 10, concurrency=1)
