"""A continuous-batching server with speculative decoding, timed by the roofline of :mod:`.costs`.

One scheduler step (vLLM V1-like, first come first served):

1. **Preemption.** When the KV cache could not hold one more step of every running sequence
   (``k + 1`` tokens each), the most recently admitted sequence is preempted: its KV blocks are
   freed and it goes back to the front of the waiting queue, to recompute its prompt and the
   tokens it already generated.
2. **Running sequences first**, in admission order: a sequence still in prefill takes a chunk of its
   prompt from the token budget (``max_num_batched_tokens``: chunked prefill shares the step with
   decode); a decoding sequence takes ``k + 1`` tokens when its drafter proposes (a model drafter
   always does, the n-gram drafter only when it finds a match) and 1 otherwise.
3. **Admission**, in arrival order, while fewer than ``max_num_seqs`` sequences run, budget is
   left and the KV cache can hold the prompt: each admitted request gets a first prefill chunk.
4. **Timing.** The step lasts ``(k draft passes + one verify pass + host overhead) * run factor *
   step noise``:

   - the verify pass carries every scheduled token (decode and prefill); its time is
     :func:`.costs.pass_seconds` with the KV reads of every sequence's context and the attention
     of its query tokens against it (a sequence with several query tokens padded to the attention
     kernel's query tile, :func:`.costs.attention_query_rows`);
   - draft pass 1 of a model drafter carries, per proposing sequence, the tokens the verifier
     emitted last step (the drafter catches up on them), plus the prefill chunks (the drafter keeps
     its own KV of the prompt); passes 2..k carry one token per proposing sequence;
   - the n-gram drafter costs a CPU lookup per decoding sequence instead;
   - host overhead: a fixed scheduler/sampler cost per step, a cost per running sequence, an
     extra per-step cost when speculating (draft bookkeeping, rejection sampling) and a launch cost
     per draft pass of a model drafter (the proposal loop runs on the host);
   - the run factor (server state) multiplies every pass of the run; the step noise is a mean-one
     lognormal per step.
5. **Outcomes.** A prefill that completes emits the first token at the step's end. A proposing
   sequence has its drafts checked left to right: position ``j`` (1-based) is accepted with
   probability ``min(a1 * h * r^(j - 1), 0.995)`` given the earlier ones (``a1`` the request's
   quality, ``h`` the hard-stretch factor when the request is in a hard stretch, ``r`` the decay
   ratio); it emits the accepted prefix plus one token from the verifier, cut at its remaining
   output. The easy/hard state then switches with its Markov probabilities.

Load: open loop (arrivals given, Poisson in :func:`simulate_run`) or closed loop (``concurrency``
streams from t = 0; each sends its next request when its previous one ends).

Acceptance counts are recorded as the verifier reports them (before the cut at the output length):
``draft_tokens`` (k per proposing step), ``accepted_tokens``, ``num_drafts`` (proposing steps); and
per position, how often it was reached and accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from .costs import GQA_GROUP, HAS_WEIGHTS, PassCost, attention_query_rows, pass_seconds
from .workloads import AcceptanceProfile, Workload, eos_output_lengths, prompt_lengths, request_qualities

__all__ = ["ServerSettings", "RunResult", "simulate_run", "simulate_arrays", "request_stream", "DRAFTER_NONE",
           "DRAFTER_MODEL", "DRAFTER_NGRAM"]

DRAFTER_NONE = 0
DRAFTER_MODEL = 1
DRAFTER_NGRAM = 2

# Indices of the kernel's summary statistics.
_STAT_STEPS = 0
_STAT_IN_FLIGHT_INTEGRAL = 1
_STAT_END_TIME = 2
_STAT_PREEMPTIONS = 3
_STAT_RUNNING_INTEGRAL = 4
_STAT_VERIFY_TOKENS = 5
_STAT_BUSY_TIME = 6
_N_STATS = 7


@dataclass(frozen=True)
class ServerSettings:
    """Scheduler limits and host-side costs of the serving engine.

    Parameters
    ----------
    max_num_seqs : int, default 256
        Batch cap: sequences running at once.
    max_num_batched_tokens : int, default 8192
        Token budget of one step (decode tokens plus prefill chunks).
    kv_capacity_tokens : int, default 1_000_000
        Tokens of context the KV cache holds (verifier and drafter caches together).
    host_step_s : float, default 0.6e-3
        CPU cost of one step (scheduling, sampling, output processing), s.
    host_sequence_s : float, default 8e-6
        CPU cost per running sequence and step, s.
    speculation_host_s : float, default 0.25e-3
        Extra CPU cost of a step that speculates (draft bookkeeping, rejection sampling), s.
    draft_pass_host_s : float, default 0.1e-3
        CPU cost of launching each draft pass of a model drafter (the proposal loop runs on the host), s.
    step_noise_sd : float, default 0.03
        Sd of the log of the per-step time multiplier.
    attention_tile_rows : int, default 64
        Query rows per tile of the attention kernel for sequences with several query tokens (verify
        blocks, prefill chunks); 0 for no padding.
    attention_packs_gqa : bool, default True
        Whether that kernel packs the query heads sharing a KV head into one tile.
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    kv_capacity_tokens: int = 1_000_000
    host_step_s: float = 0.6e-3
    host_sequence_s: float = 8e-6
    speculation_host_s: float = 0.25e-3
    draft_pass_host_s: float = 0.1e-3
    step_noise_sd: float = 0.03
    attention_tile_rows: int = 64
    attention_packs_gqa: bool = True


class RunResult(NamedTuple):
    """One simulated run.

    Attributes
    ----------
    requests : pandas.DataFrame
        Canonical REQUESTS rows (times in s, lengths in tokens).
    position_reached, position_accepted : numpy.ndarray
        Per draft position (index 0 = position 1): proposals that reached it, and accepted it.
    diagnostics : dict
        ``steps``, ``mean_in_flight`` (time average of requests sent and not finished),
        ``mean_running`` (time average of the batch), ``preemptions``, ``duration_s``,
        ``busy_share`` (time spent in steps), ``mean_verify_tokens`` (tokens per verify pass).
    """

    requests: pd.DataFrame
    position_reached: np.ndarray
    position_accepted: np.ndarray
    diagnostics: dict


@njit(cache=True)
def _uniform():
    return np.random.random()  # noqa: NPY002 - numba's nopython mode supports only the legacy API


@njit(cache=True)
def _kernel(arrival, prompt, output, first_accept, match_prob, concurrency, k, decay_ratio, hard_factor, to_hard,
            to_easy, drafter_kind, v_coef, v_tt, v_act, v_pad, d_coef, d_tt, d_act, d_pad, max_num_seqs,
            max_batched_tokens, kv_capacity, host_step_s, host_sequence_s, speculation_host_s, draft_pass_host_s,
            run_factor, step_noise_sd, attention_tile_rows, attention_packs_gqa, seed):
    np.random.seed(seed)  # noqa: NPY002
    n = prompt.shape[0]
    start = np.full(n, np.nan)
    first_token = np.full(n, np.nan)
    end = np.full(n, np.nan)
    drafted = np.zeros(n, np.int64)
    accepted = np.zeros(n, np.int64)
    n_drafts = np.zeros(n, np.int64)
    reached_at = np.zeros(max(k, 1), np.int64)
    accepted_at = np.zeros(max(k, 1), np.int64)
    stats = np.zeros(_N_STATS)

    target = prompt.copy()  # tokens to (re)prefill
    prefilled = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    kv_hold = np.zeros(n, np.int64)
    last_emitted = np.ones(n, np.int64)
    hard = np.zeros(n, np.int64)
    stationary_hard = to_hard / (to_hard + to_easy) if to_hard + to_easy > 0 else 0.0
    for i in range(n):
        hard[i] = 1 if _uniform() < stationary_hard else 0

    queue = np.zeros(n + 1, np.int64)  # ring buffer: waiting requests, front = next admitted
    q_head, q_size, q_cap = 0, 0, n + 1
    running = np.zeros(max_num_seqs, np.int64)
    n_run = 0
    plan_kind = np.zeros(max_num_seqs, np.int64)  # 0 idle this step, 1 prefill chunk, 2 decode
    plan_tokens = np.zeros(max_num_seqs, np.int64)
    plan_propose = np.zeros(max_num_seqs, np.int64)
    kv_used = 0
    open_loop = concurrency <= 0
    next_issue = 0
    if not open_loop:
        for i in range(min(concurrency, n)):
            start[i] = 0.0
            queue[(q_head + q_size) % q_cap] = i
            q_size += 1
        next_issue = min(concurrency, n)
    t = 0.0
    done = 0
    noise_shift = -0.5 * step_noise_sd * step_noise_sd
    while done < n:
        if open_loop:
            while next_issue < n and arrival[next_issue] <= t:
                start[next_issue] = arrival[next_issue]
                queue[(q_head + q_size) % q_cap] = next_issue
                q_size += 1
                next_issue += 1
        if n_run == 0 and q_size == 0:
            if open_loop and next_issue < n:
                t = arrival[next_issue]
                continue
            break
        in_flight = n_run + q_size

        # 1. preemption: room for one more step of every running sequence
        while n_run > 1 and kv_used + n_run * (k + 1) > kv_capacity:
            n_run -= 1
            i = running[n_run]
            kv_used -= kv_hold[i]
            kv_hold[i] = 0
            target[i] = prompt[i] + generated[i]
            prefilled[i] = 0
            q_head = (q_head - 1) % q_cap
            queue[q_head] = i
            q_size += 1
            stats[_STAT_PREEMPTIONS] += 1

        # 2. running sequences
        budget = max_batched_tokens
        for r in range(n_run):
            i = running[r]
            plan_kind[r] = 0
            plan_propose[r] = 0
            if prefilled[i] < target[i]:
                chunk = min(target[i] - prefilled[i], budget)
                if chunk > 0:
                    plan_kind[r] = 1
                    plan_tokens[r] = chunk
                    budget -= chunk
            else:
                propose = 0
                if k > 0:
                    if drafter_kind == DRAFTER_MODEL:
                        propose = 1
                    elif drafter_kind == DRAFTER_NGRAM and _uniform() < match_prob[i]:
                        propose = 1
                q = k + 1 if propose == 1 else 1
                if q <= budget:
                    plan_kind[r] = 2
                    plan_tokens[r] = q
                    plan_propose[r] = propose
                    budget -= q
        # 3. admission
        while n_run < max_num_seqs and q_size > 0 and budget > 0:
            i = queue[q_head]
            if n_run > 0 and kv_used + target[i] + k + 1 > kv_capacity:
                break
            q_head = (q_head + 1) % q_cap
            q_size -= 1
            running[n_run] = i
            kv_hold[i] = target[i]
            kv_used += target[i]
            chunk = min(target[i] - prefilled[i], budget)
            plan_kind[n_run] = 1
            plan_tokens[n_run] = chunk
            plan_propose[n_run] = 0
            budget -= chunk
            n_run += 1

        # 4. timing
        v_tokens = 0.0
        v_logits = 0.0
        v_context = 0.0
        v_pairs = 0.0
        d_first = 0.0
        d_context = 0.0
        d_first_pairs = 0.0
        n_propose = 0.0
        n_decode = 0.0
        v_group = v_coef[GQA_GROUP]
        d_group = d_coef[GQA_GROUP]
        for r in range(n_run):
            i = running[r]
            q = plan_tokens[r]
            if plan_kind[r] == 1:
                ctx = prefilled[i]
                v_tokens += q
                v_context += ctx
                v_pairs += attention_query_rows(q, v_group, attention_tile_rows, attention_packs_gqa) * ctx \
                    + 0.5 * q * (q + 1)
                if prefilled[i] + q >= target[i]:
                    v_logits += 1.0
                d_first += q
                d_context += ctx
                d_first_pairs += attention_query_rows(q, d_group, attention_tile_rows, attention_packs_gqa) * ctx \
                    + 0.5 * q * (q + 1)
            elif plan_kind[r] == 2:
                ctx = kv_hold[i] - 1
                v_tokens += q
                v_logits += q
                v_context += ctx
                v_pairs += attention_query_rows(q, v_group, attention_tile_rows, attention_packs_gqa) * ctx \
                    + 0.5 * q * (q + 1)
                n_decode += 1.0
                if plan_propose[r] == 1:
                    n_propose += 1.0
                    e = last_emitted[i]
                    d_first += e
                    d_context += ctx
                    d_first_pairs += attention_query_rows(e, d_group, attention_tile_rows, attention_packs_gqa) * ctx \
                        + 0.5 * e * (e + 1)
        dt = 0.0
        if v_tokens > 0:
            dt += pass_seconds(v_coef, v_tt, v_act, v_pad, v_tokens, v_logits, v_context, v_pairs)
        speculating = k > 0 and n_propose > 0
        if k > 0 and drafter_kind == DRAFTER_MODEL and (n_propose > 0 or d_first > 0):
            dt += pass_seconds(d_coef, d_tt, d_act, d_pad, d_first, n_propose, d_context, d_first_pairs)
            dt += draft_pass_host_s
            if n_propose > 0:
                dt += (k - 1) * draft_pass_host_s
                for j in range(1, k):
                    d_ctx_j = d_context + j * n_propose
                    dt += pass_seconds(d_coef, d_tt, d_act, d_pad, n_propose, n_propose, d_ctx_j, n_propose * d_ctx_j)
        elif k > 0 and drafter_kind == DRAFTER_NGRAM and n_decode > 0:
            dt += pass_seconds(d_coef, d_tt, d_act, d_pad, n_decode, 0.0, 0.0, 0.0)
        dt += host_step_s + host_sequence_s * n_run + (speculation_host_s if speculating else 0.0)
        z = 0.0
        if step_noise_sd > 0:
            u1 = max(_uniform(), 1e-300)
            u2 = _uniform()
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        dt *= run_factor * math.exp(step_noise_sd * z + noise_shift)
        t_end = t + dt
        stats[_STAT_STEPS] += 1
        stats[_STAT_IN_FLIGHT_INTEGRAL] += in_flight * dt
        stats[_STAT_RUNNING_INTEGRAL] += n_run * dt
        stats[_STAT_VERIFY_TOKENS] += v_tokens
        stats[_STAT_BUSY_TIME] += dt
        if open_loop:  # requests arriving during the step are in flight from their arrival
            j = next_issue
            while j < n and arrival[j] <= t_end:
                stats[_STAT_IN_FLIGHT_INTEGRAL] += t_end - arrival[j]
                j += 1

        # 5. outcomes
        t = t_end
        r = 0
        while r < n_run:
            i = running[r]
            finished = False
            if plan_kind[r] == 1:
                prefilled[i] += plan_tokens[r]
                if prefilled[i] >= target[i]:
                    generated[i] += 1
                    kv_hold[i] += 1
                    kv_used += 1
                    last_emitted[i] = 1
                    if np.isnan(first_token[i]):
                        first_token[i] = t
                    finished = generated[i] >= output[i]
            elif plan_kind[r] == 2:
                emitted = 1
                if plan_propose[r] == 1:
                    a1 = first_accept[i] * (hard_factor if hard[i] == 1 else 1.0)
                    acc = 0
                    ratio = 1.0
                    for j in range(k):
                        reached_at[j] += 1
                        if _uniform() < min(a1 * ratio, 0.995):
                            acc += 1
                            accepted_at[j] += 1
                            ratio *= decay_ratio
                        else:
                            break
                    drafted[i] += k
                    accepted[i] += acc
                    n_drafts[i] += 1
                    emitted = acc + 1
                    if hard[i] == 0:
                        if _uniform() < to_hard:
                            hard[i] = 1
                    elif _uniform() < to_easy:
                        hard[i] = 0
                emitted = min(emitted, output[i] - generated[i])
                generated[i] += emitted
                kv_hold[i] += emitted
                kv_used += emitted
                last_emitted[i] = emitted
                finished = generated[i] >= output[i]
            if finished:
                end[i] = t
                kv_used -= kv_hold[i]
                kv_hold[i] = 0
                done += 1
                for s in range(r, n_run - 1):  # keep admission order
                    running[s] = running[s + 1]
                    plan_kind[s] = plan_kind[s + 1]
                    plan_tokens[s] = plan_tokens[s + 1]
                    plan_propose[s] = plan_propose[s + 1]
                n_run -= 1
                if not open_loop and next_issue < n:
                    start[next_issue] = t
                    queue[(q_head + q_size) % q_cap] = next_issue
                    q_size += 1
                    next_issue += 1
            else:
                r += 1
    stats[_STAT_END_TIME] = t
    return start, first_token, end, drafted, accepted, n_drafts, reached_at, accepted_at, stats


def request_stream(rng: np.random.Generator, n_requests: int, workload: Workload, profile: AcceptanceProfile,
                   rate_rps: float | None = None) -> dict:
    """Draw the requests of one run: prompt and output lengths, qualities and (open loop) arrivals.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source (seeded per run; the same seed gives the same stream at every ``k``, and the same
        lengths and arrivals whatever the acceptance profile).
    n_requests : int
        Requests.
    workload : Workload
        Prompt and output length regimes.
    profile : AcceptanceProfile
        The pair's acceptance on the workload.
    rate_rps : float, optional
        Poisson arrival rate, requests/s (open loop); None gives no arrivals (closed loop).

    Returns
    -------
    dict
        ``prompt``, ``output`` (tokens), ``first_accept``, ``match`` (probabilities), ``arrival`` (s).
    """
    lengths_rng, quality_rng, arrival_rng = rng.spawn(3)  # lengths and arrivals do not depend on the profile
    prompt = prompt_lengths(lengths_rng, n_requests, workload.prompt_mixture, workload.max_prompt_tokens)
    output = eos_output_lengths(lengths_rng, n_requests, workload.output_mean_tokens, workload.output_shape,
                                workload.max_tokens)
    first, match = request_qualities(quality_rng, n_requests, profile)
    if rate_rps is not None:
        arrival = np.cumsum(arrival_rng.exponential(1.0 / rate_rps, size=n_requests))
    else:
        arrival = np.zeros(n_requests)
    return {"prompt": prompt, "output": output, "first_accept": first, "match": match, "arrival": arrival}


def simulate_arrays(verifier: PassCost, drafter: PassCost | None, k: int, profile: AcceptanceProfile,
                    settings: ServerSettings, stream: dict, *, concurrency: int = 0, seed: int = 0,
                    run_factor: float = 1.0) -> tuple:
    """The kernel on a request stream, without building a table (the fleet's ground truth uses it).

    Parameters
    ----------
    verifier, drafter, k, profile, settings, seed, run_factor
        As :func:`simulate_run`.
    stream : dict
        From :func:`request_stream` (open loop: with arrivals).
    concurrency : int, default 0
        Closed-loop streams; 0 for open loop.

    Returns
    -------
    tuple
        ``(start, first_token, end, draft_tokens, accepted_tokens, num_drafts, position_reached,
        position_accepted, stats)``: per-request arrays (s, tokens), per-position counts and the
        kernel's summary statistics.
    """
    if k > 0 and drafter is not None:
        kind = DRAFTER_MODEL if drafter.coefficients[HAS_WEIGHTS] > 0 else DRAFTER_NGRAM
    else:
        kind = DRAFTER_NONE
        drafter = verifier
    return _kernel(stream["arrival"], stream["prompt"], stream["output"], stream["first_accept"], stream["match"],
                   int(concurrency), int(k), float(profile.decay_ratio), float(profile.hard_factor),
                   float(profile.to_hard), float(profile.to_easy), kind,
                   verifier.coefficients, verifier.table_tokens, verifier.active_experts, verifier.padded_rows,
                   drafter.coefficients, drafter.table_tokens, drafter.active_experts, drafter.padded_rows,
                   int(settings.max_num_seqs), int(settings.max_num_batched_tokens), int(settings.kv_capacity_tokens),
                   float(settings.host_step_s), float(settings.host_sequence_s), float(settings.speculation_host_s),
                   float(settings.draft_pass_host_s), float(run_factor), float(settings.step_noise_sd),
                   float(settings.attention_tile_rows), bool(settings.attention_packs_gqa), int(seed % (2**31 - 1)))


def simulate_run(verifier: PassCost, drafter: PassCost | None, k: int, workload: Workload,
                 profile: AcceptanceProfile, settings: ServerSettings, n_requests: int, *,
                 rate_rps: float | None = None, concurrency: int | None = None, seed: int = 0,
                 run_factor: float = 1.0, run_id: str = "run", stream: dict | None = None) -> RunResult:
    """Simulate one run (one configuration at one load) and return its request rows.

    Parameters
    ----------
    verifier : PassCost
        The target model on its deployment (:func:`.costs.pass_cost`).
    drafter : PassCost or None
        The drafter on the same deployment (None, or ignored, when ``k == 0``); an n-gram drafter's
        cost is its CPU lookup.
    k : int
        Draft length (0: no speculation).
    workload : Workload
        Length regimes.
    profile : AcceptanceProfile
        Acceptance of the pair on the workload.
    settings : ServerSettings
        Scheduler limits and host costs.
    n_requests : int
        Requests in the run.
    rate_rps : float, optional
        Open loop: Poisson arrivals at this rate, requests/s.
    concurrency : int, optional
        Closed loop: streams (exactly one of ``rate_rps`` and ``concurrency``).
    seed : int, default 0
        Seed of the request stream and of the step-level draws.
    run_factor : float, default 1.0
        Multiplier on every step time of the run (server state).
    run_id : str, default "run"
        Written to ``requests.run_id``.
    stream : dict, optional
        A request stream from :func:`request_stream` to reuse (common random numbers across ``k``).

    Returns
    -------
    RunResult
    """
    if (rate_rps is None) == (concurrency is None):
        raise ValueError("give exactly one of rate_rps (open loop) and concurrency (closed loop)")
    if rate_rps is not None and not rate_rps > 0:
        raise ValueError(f"rate_rps must be positive, got {rate_rps}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k > 0 and drafter is None:
        raise ValueError("k > 0 needs a drafter")
    if stream is None:
        stream = request_stream(np.random.default_rng(seed), n_requests, workload, profile, rate_rps)
    out = simulate_arrays(verifier, drafter, k, profile, settings, stream, concurrency=concurrency or 0, seed=seed,
                          run_factor=run_factor)
    start, first, end, drafted, acc, n_drafts, reached, acc_at, stats = out
    requests = pd.DataFrame({
        "run_id": run_id, "request_id": [f"{run_id}/{i}" for i in range(len(start))], "start_s": start,
        "first_token_s": first, "end_s": end, "prompt_tokens": stream["prompt"], "output_tokens": stream["output"],
        "draft_tokens": drafted, "accepted_tokens": acc, "num_drafts": n_drafts,
    })
    duration = float(stats[_STAT_END_TIME])
    diagnostics = {
        "steps": int(stats[_STAT_STEPS]),
        "mean_in_flight": float(stats[_STAT_IN_FLIGHT_INTEGRAL]) / duration if duration > 0 else np.nan,
        "mean_running": float(stats[_STAT_RUNNING_INTEGRAL]) / duration if duration > 0 else np.nan,
        "preemptions": int(stats[_STAT_PREEMPTIONS]),
        "duration_s": duration,
        "busy_share": float(stats[_STAT_BUSY_TIME]) / duration if duration > 0 else np.nan,
        "mean_verify_tokens": float(stats[_STAT_VERIFY_TOKENS]) / max(stats[_STAT_STEPS], 1.0),
    }
    return RunResult(requests, reached[:k] if k > 0 else reached[:0], acc_at[:k] if k > 0 else acc_at[:0],
                     diagnostics)
