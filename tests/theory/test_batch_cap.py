"""The batch cap's queue: the wait for a slot, open and closed loop (bayes_sd.theory.batch_cap)."""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_sd import theory
from bayes_sd.evaluation import fleets
from bayes_sd.evaluation.fleets.server import request_stream


def _erlang_c_wait(rate, slots, service):
    """Exact mean wait in queue of the M/M/c queue (Erlang C), s."""
    a = rate * service
    rho = a / slots
    terms = sum(a**n / math.factorial(n) for n in range(slots))
    top = a**slots / math.factorial(slots) / (1.0 - rho)
    return top / (terms + top) / (slots / service - rate)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_one_slot_is_the_mm1_queue(rho):
    service = 2.0
    assert theory.queue_wait(rho / service, 1.0, service, True) == pytest.approx(rho * service / (1.0 - rho))


@pytest.mark.parametrize("slots", [4, 16, 64])
@pytest.mark.parametrize("rho", [0.7, 0.9, 0.97])
def test_wait_follows_erlang_c(slots, rho):
    """Sakasegawa's approximation stays within 20% of the exact M/M/c wait where the wait matters
    (a visible share of the service time) and never adds more than 2% of the service time elsewhere."""
    service = 1.5
    rate = rho * slots / service
    exact = _erlang_c_wait(rate, slots, service)
    approx = float(theory.queue_wait(rate, float(slots), service, True))
    if exact > 0.05 * service:
        assert approx == pytest.approx(exact, rel=0.2)
    else:
        assert abs(approx - exact) < 0.02 * service


def test_wait_is_infinite_at_capacity_and_zero_without_a_cap():
    full = np.array([1.0, 1.0, 1.0])
    wait = theory.queue_wait(np.array([10.0, 16.0, 20.0]), 16.0, full, np.array([True, True, False]))
    assert np.isfinite(wait[0]) and wait[0] > 0 and np.isinf(wait[1]) and wait[2] == 0.0
    assert theory.cap_capacity(16.0, 1.0) == 16.0


def test_graph_wait_matches_numpy_below_capacity_and_stays_finite_past_it():
    rate = pt.dvector("rate")
    wait = theory.queue_wait(rate, 16.0, 1.0, np.array(True), xp=pt, softness=0.01)
    f = pytensor.function([rate], [wait, pytensor.grad(wait.sum(), rate)])
    w, g = f(np.array([8.0, 14.0, 15.5, 17.0]))
    np.testing.assert_allclose(w[:2], theory.queue_wait(np.array([8.0, 14.0]), 16.0, 1.0, True), rtol=1e-6)
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(g)) and np.all(g > 0)  # grows with the rate, smoothly


def test_closed_loop_past_the_cap_runs_at_the_full_servers_throughput():
    slots, full = 32.0, 2.0
    n = np.array([16.0, 32.0, 48.0, 96.0])
    wait = theory.closed_wait(n, slots, full, True)
    assert np.all(wait[:2] == 0.0)  # at or below the cap nobody waits
    latency = np.where(n > slots, full, np.nan) + wait
    np.testing.assert_allclose((n / latency)[2:], slots / full)  # Little's law: throughput = the full server's
    assert theory.closed_wait(96.0, slots, full, False) == 0.0


def _closed_loop(verifier, workload, streams, settings, n_requests, fixed_output=False):
    """A closed loop of ``streams`` in the out-of-family fleets' server (admits on the prompt, preempts when
    the KV cache runs out, as vLLM does): ``(run, prompt lengths, output lengths)``."""
    profile = fleets.AcceptanceProfile(first_mean=0.5)
    stream = request_stream(np.random.default_rng(3), n_requests, fleets.WORKLOADS[workload], profile, None)
    if fixed_output:
        stream["output"] = np.full_like(stream["output"], int(round(stream["output"].mean())))
    cost = fleets.pass_cost(fleets.VERIFIERS[verifier], fleets.DEVICES["H100"])
    run = fleets.simulate_run(cost, None, 0, fleets.WORKLOADS[workload], profile, settings(stream), n_requests,
                              concurrency=streams, seed=1, stream=stream)
    return run, stream["prompt"].astype(float), stream["output"].astype(float)


def _kv_for_60_requests(stream):
    return int(60 * (stream["prompt"].mean() + stream["output"].mean()))


@pytest.mark.parametrize("workload", ["chat", "reasoning", "summarize"])
@pytest.mark.parametrize("fixed_output", [False, True])
def test_the_kv_cache_holds_the_batch_the_out_of_family_server_runs(workload, fixed_output):
    """A closed loop of 200 streams against a KV cache of 60 mean requests' tokens, in the out-of-family
    server: the batch it runs on time average is the cache over ``kv_tokens_held`` within 10%, whether the
    outputs end at EOS or have one fixed length. Counting half the mean output (a fixed length's figure)
    overstates the batch of EOS outputs by a fifth (chat) to a half (reasoning). Synthetic."""
    run, prompt, output = _closed_loop(
        "llama3.1-8b", workload, 200,
        lambda stream: fleets.ServerSettings(max_num_seqs=1024, kv_capacity_tokens=_kv_for_60_requests(stream)),
        1200, fixed_output)
    kv = _kv_for_60_requests({"prompt": prompt, "output": output})
    running = run.diagnostics["mean_running"]
    assert kv / theory.kv_tokens_held(prompt.mean(), output.mean(), output.std()) == pytest.approx(running, rel=0.10)
    half_output = kv / (prompt.mean() + output.mean() / 2.0)
    if not fixed_output and workload != "summarize":  # summaries: short outputs behind long prompts
        assert half_output > 1.2 * running


@pytest.mark.parametrize("verifier", ["llama3.1-8b", "llama3.1-70b"])
@pytest.mark.parametrize("workload", ["chat", "reasoning"])
def test_preemption_recompute_accounts_for_part_of_what_an_overcommitted_cache_costs(verifier, workload):
    """A closed loop of 240 streams, ~4x what the KV cache holds, in the out-of-family server, against the
    same server capped by max_num_seqs at the batch the cache ran (no preemption): the cache's run is
    slower by 15-29%, and ``preemption_recompute`` through the wait for a slot (``(N / B - 1)`` times it,
    as the model adds it) recovers 40-90% of that, with the server's own prefill cost per token and the
    mean output. Synthetic: what is left is the preempted requests' own time and the chunks' interference."""
    streams = 240

    def mean_latency(settings):
        run, _, output = _closed_loop(verifier, workload, streams, settings, 1500)
        return (run.requests["end_s"] - run.requests["start_s"]).mean(), run.diagnostics["mean_running"], output

    by_cache, batch, output = mean_latency(
        lambda stream: fleets.ServerSettings(max_num_seqs=1024, kv_capacity_tokens=_kv_for_60_requests(stream)))
    by_seqs, _, _ = mean_latency(lambda stream: fleets.ServerSettings(max_num_seqs=int(round(batch)),
                                                                      kv_capacity_tokens=10**8))
    measured = by_cache - by_seqs
    assert 0.1 < measured / by_seqs < 0.35
    cost = fleets.pass_cost(fleets.VERIFIERS[verifier], fleets.DEVICES["H100"])

    def prefill(tokens):
        return fleets.pass_seconds(cost.coefficients, cost.table_tokens, cost.active_experts, cost.padded_rows,
                                   tokens, 0.0, 0.0, 0.0)

    p1 = (prefill(8192.0) - prefill(4096.0)) / 4096.0  # s per prompt token, marginal
    law = (streams / batch - 1.0) * theory.preemption_recompute(batch, p1, output.mean())
    assert 0.4 < law / measured < 0.9
