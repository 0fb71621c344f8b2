"""Step-level simulator of a continuous-batching LLM server with speculative decoding.

The simulator plays the cost model of :mod:`bayes_sd.theory` one scheduler step at a
time, so that at low load its mean latency matches ``theory.latency_open`` /
``theory.latency_closed`` (and the MoE variants), while at high load it shows what the
closed form leaves out: the batch cap, the token budget, queueing at admission,
per-request variation of lengths and acceptance, and step-time noise.

One scheduler kernel serves two uses: plain drafter -> verifier speculative decoding
(:func:`simulate_run`, draft length ``k``) and the PyramidSD cascade drafter -> qualifier ->
verifier (:mod:`bayes_sd.cascade.simulate`, ``k_qual`` qualifier rounds of ``k_draft``
drafter tokens). Each step, a decoding sequence puts a *block* of ``K`` speculated tokens
before the verifier: plain SD is the cascade with ``k_draft = 0``, ``k_qual = k`` and the
drafter's pass costs ``(d0, d1)`` in the qualifier's place ``(q0, q1)``, so ``K = k``.
In the cascade, ``K`` is the sum over the ``k_qual`` rounds of (leading drafter tokens the
qualifier accepts out of ``k_draft``, with probability ``a_dq`` each) + 1.

One step (vLLM V1-like scheduler, FCFS):

1. running sequences are scheduled first: a decoding sequence takes ``k_qual (k_draft + 1) + 1``
   tokens of the step's token budget (``max_num_batched_tokens``; the largest block + 1,
   ``k + 1`` in plain SD) and draws its block ``K`` (random only when ``k_draft > 0``); a
   sequence still in prefill takes a chunk of its prompt (chunked prefill shares the step
   with decode);
2. waiting requests are admitted in arrival order while fewer than ``max_num_seqs`` run
   and budget is left, each with a first prefill chunk;
3. the step lasts (seconds)::

       v0 * moe(T) * knee(T_dec) + k_qual (k_draft d0 + q0)         # fixed verify, draft, qualifier passes
       + sum_seq ((K_seq + 1) v1 + k_qual (k_draft d1 + (k_draft + 1) q1) + s1 + c1 * context_seq)
       + sum_chunk (p1 * chunk_tokens)                              # prefill work

   (plain SD: ``v0 * moe(T) * knee(T_dec) + k d0 + sum_seq ((k + 1) v1 + k d1 + s1 + c1 * context_seq)
   + sum_chunk (p1 * chunk_tokens)``; the drafter and qualifier passes count only when some
   sequence makes a token), times a mean-one lognormal noise
   ``exp(step_noise * z - step_noise^2 / 2)``. ``moe(T) = 1 - share + share * coverage(T)``
   for an MoE verifier, with ``T`` the budget tokens used in the step (``k + 1`` per decoding
   sequence in plain SD, ``k_qual (k_draft + 1) + 1`` in the cascade, plus the prefill chunk
   tokens);
   ``knee(T_dec) = 1 + compute_share * theory.knee_excess`` when the costs have a roofline
   knee, with ``T_dec`` the decode tokens only (``K_seq + 1`` per decoding sequence: prefill
   tokens already cost ``p1`` each), as in the ``roofline`` model variant; 1 without a knee.
   A sequence finishing its prefill in the step is charged the mean block (``K`` replaced by
   ``E[K]``: ``k`` in plain SD, ``k_qual tau_constant(a_dq, k_draft)`` in the cascade);
4. a sequence whose prefill completes in the step gets its first token at the step's end
   (that step counts as one of its ``N = (D - 1) / tau + 1`` iterations); a decoding
   sequence gets ``accepted + 1`` tokens (leading successes of ``K`` Bernoulli draws with
   its per-request per-position acceptance, plus the bonus token), capped at its remaining
   output. Random numbers are drawn in this order within a step: the blocks (scheduling
   order), the step noise, the verifier's acceptance draws (running order).

``p0`` is a request's own fixed overhead (front end, tokenisation, scheduling): a request
becomes admissible ``p0`` seconds after it is sent, without taking time from other
requests' steps, as in the theory (``p0`` is in C1, not in C2).

Acceptance statistics are recorded as the verifier reports them (before the cap at the
remaining output), so ``accepted / num_drafts + 1`` estimates ``tau``.

Load: open loop (``rate_rps``, Poisson or constant arrivals) or closed loop
(``concurrency`` streams starting together at t = 0; each sends its next request when
its previous one ends). The theory's ``L = C1 / (1 - rate C2)`` assumes arrivals that
see time averages (Poisson); constant arrivals overlap about one request fewer, so they
sit a little below it (about -3 % dense, -12 % MoE at 5 % of saturation).

Shared with :mod:`bayes_sd.cascade.simulate`: :func:`run_scheduler` (the kernel on one run's
requests), and from :mod:`.requests` the requests themselves (``request_stream``: argument checks,
seeds, arrivals and lengths of one run) and ``run_seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from bayes_sd.simulate.requests import (
    RequestStream,
    acceptance_matrix,
    acceptance_vector,
    request_stream,
    run_seed,
)
from bayes_sd.theory import KNEE_SOFTNESS, ServiceCosts

__all__ = ["simulate_run", "simulate_runs", "SOURCE", "ScheduleResult", "run_scheduler"]

#: ``source`` value of every simulated run.
SOURCE = "synthetic:bayes_sd.simulate"

_REQUEST_COLUMNS = (
    "run_id", "request_id", "start_s", "first_token_s", "end_s", "prompt_tokens",
    "output_tokens", "draft_tokens", "accepted_tokens", "num_drafts", "acceptance_histogram",
)


@njit(cache=True)
def _kernel(start, closed, concurrency, prompt, output, acc, k_d, k_q, a_dq,
            v0, v1, d0, d1, q0, q1, p0, p1, c1, s1, mean_block, experts, top_k, share,
            knee, compute_share, knee_softness, step_noise, max_num_seqs, max_tokens, seed):
    """Run the server until every request has finished (see the module docstring).

    Times and pass costs in seconds (``v1, d1, q1, p1, c1, s1``: s per token); ``k_d`` drafter
    tokens per qualifier round, ``k_q`` rounds (plain SD: ``k_d = 0, k_q = k``, ``q0, q1`` the
    drafter's); ``a_dq`` qualifier acceptance of a drafter token; ``acc[r, j]`` the verifier's
    acceptance of block position ``j`` for request ``r`` (at least ``k_q (k_d + 1)`` columns);
    ``mean_block``: tokens, the block charged to a last prefill chunk; ``experts <= 0``: dense;
    ``knee <= 0``: no roofline knee. ``start`` holds open-loop arrival times; in closed loop it
    is filled as requests are issued. Returns (start, first_token, end, drafts, accepted,
    num_drafts, qv_rejected, dq_accepted, dq_rejected): per-request times (s) and counts.
    """
    np.random.seed(seed)
    n = prompt.shape[0]
    first = np.full(n, np.nan)
    end = np.full(n, np.nan)
    prefilled = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    drafts = np.zeros(n, np.int64)  # block tokens put before the verifier
    accepted = np.zeros(n, np.int64)  # block tokens the verifier accepted
    n_drafts = np.zeros(n, np.int64)  # verify steps with a block
    qv_rej = np.zeros(n, np.int64)  # verify steps with a rejection
    dq_acc = np.zeros(n, np.int64)  # drafter tokens the qualifier accepted
    dq_rej = np.zeros(n, np.int64)  # qualifier rounds with a rejection
    running = np.empty(max_num_seqs, np.int64)
    kind = np.zeros(max_num_seqs, np.int64)  # 0 idle, 1 decode, 2 prefill chunk, 3 last chunk
    block = np.zeros(max_num_seqs, np.int64)  # a decoding sequence's block this step
    need = k_q * (k_d + 1) + 1  # budget tokens of a decoding sequence (largest block + 1)
    stage_tok = k_q * (k_d * d1 + (k_d + 1) * q1)  # drafter + qualifier work of one sequence
    stage_fixed = k_q * (k_d * d0 + q0)  # drafter + qualifier passes
    last_tok = (1.0 + mean_block) * v1 + stage_tok + s1  # a last chunk's work, beyond its context
    moe = experts > 0.0
    miss = 1.0 - top_k / experts if moe else 1.0

    n_issued = n
    if closed:
        n_issued = min(concurrency, n)
        for i in range(n_issued):
            start[i] = 0.0
    n_run = 0
    next_admit = 0
    n_done = 0
    t = 0.0
    while n_done < n:
        if n_run == 0 and next_admit < n and start[next_admit] + p0 > t:
            t = start[next_admit] + p0  # idle server: jump to the next admissible request
        budget = max_tokens
        work = 0.0
        tokens = 0
        dec_tokens = 0
        n_gen = 0
        # 1. running sequences: decode (drawing the block), or the next prefill chunk
        for i in range(n_run):
            r = running[i]
            kind[i] = 0
            left = prompt[r] - prefilled[r]
            if left > 0:
                chunk = min(left, budget)
                if chunk <= 0:
                    continue
                budget -= chunk
                tokens += chunk
                work += p1 * chunk
                if chunk == left:
                    kind[i] = 3
                    n_gen += 1
                    work += last_tok + c1 * prompt[r]
                else:
                    kind[i] = 2
                prefilled[r] += chunk
            elif budget >= need:
                budget -= need
                tokens += need
                blk = k_q
                if k_d > 0:
                    blk = 0
                    for _ in range(k_q):  # qualifier rounds
                        m = 0
                        while m < k_d and np.random.random() < a_dq:
                            m += 1
                        if m < k_d:
                            dq_rej[r] += 1
                        dq_acc[r] += m
                        blk += m + 1
                block[i] = blk
                kind[i] = 1
                n_gen += 1
                dec_tokens += blk + 1
                work += (blk + 1) * v1 + stage_tok + s1 + c1 * (prompt[r] + generated[r])
        # 2. admit waiting requests (FCFS) with a first prefill chunk
        while (n_run < max_num_seqs and budget > 0 and next_admit < n_issued
               and start[next_admit] + p0 <= t):
            r = next_admit
            next_admit += 1
            chunk = min(prompt[r], budget)
            budget -= chunk
            tokens += chunk
            work += p1 * chunk
            if chunk == prompt[r]:
                kind[n_run] = 3
                n_gen += 1
                work += last_tok + c1 * prompt[r]
            else:
                kind[n_run] = 2
            prefilled[r] = chunk
            running[n_run] = r
            n_run += 1
        # 3. step duration
        fixed = v0
        if moe:
            fixed = v0 * (1.0 - share + share * (1.0 - miss ** tokens))
        if knee > 0.0:  # roofline: past the knee the pass is compute-bound (theory.knee_excess)
            x = dec_tokens / knee - 1.0
            fixed *= 1.0 + compute_share * 0.5 * (x + np.sqrt(x * x + knee_softness * knee_softness))
        if n_gen > 0:
            fixed += stage_fixed
        dt = fixed + work
        if step_noise > 0.0:
            dt *= np.exp(step_noise * np.random.standard_normal() - 0.5 * step_noise * step_noise)
        t_end = t + dt
        # 4. outcomes at the end of the step; drop finished sequences (stable compaction)
        keep = 0
        for i in range(n_run):
            r = running[i]
            done = False
            if kind[i] == 3:
                first[r] = t_end
                generated[r] = 1
                done = output[r] <= 1
            elif kind[i] == 1:
                blk = block[i]
                a = 0
                while a < blk and np.random.random() < acc[r, a]:  # the verifier checks the block
                    a += 1
                if blk > 0:
                    drafts[r] += blk
                    accepted[r] += a
                    n_drafts[r] += 1
                    if a < blk:
                        qv_rej[r] += 1
                generated[r] = min(generated[r] + a + 1, output[r])
                done = generated[r] >= output[r]
            if done:
                end[r] = t_end
                n_done += 1
                if closed and n_issued < n:
                    start[n_issued] = t_end
                    n_issued += 1
            else:
                running[keep] = r
                keep += 1
        n_run = keep
        t = t_end
    return start, first, end, drafts, accepted, n_drafts, qv_rej, dq_acc, dq_rej


class ScheduleResult(NamedTuple):
    """Per-request outcome of :func:`run_scheduler` (times in s, counts in tokens or steps)."""

    start: np.ndarray  #: s, send time
    first_token: np.ndarray  #: s, end of the step that completed the prefill
    end: np.ndarray  #: s, end of the step that produced the last output token
    drafts: np.ndarray  #: block tokens put before the verifier (plain SD: k per verify step)
    accepted: np.ndarray  #: block tokens the verifier accepted (before the cap at the output)
    num_drafts: np.ndarray  #: verify steps with a block
    qv_rejected: np.ndarray  #: verify steps where the verifier rejected a block token
    dq_accepted: np.ndarray  #: drafter tokens the qualifier accepted (cascade)
    dq_rejected: np.ndarray  #: qualifier rounds with a rejection (cascade)


def run_scheduler(costs: ServiceCosts, stream: RequestStream, acc: np.ndarray, *, k_draft: int, k_qual: int,
                  a_dq: float, q0: float, q1: float, mean_block: float, step_noise: float, max_num_seqs: int,
                  max_num_batched_tokens: int) -> ScheduleResult:
    """Run the scheduler kernel on ``stream`` until every request has finished.

    ``costs``: verifier and drafter coefficients (s; MoE when ``costs.experts`` is set, a roofline
    knee when ``costs.knee_tokens`` is set); ``q0`` (s per pass), ``q1`` (s per sequence-token):
    the qualifier's. ``k_qual`` rounds of ``k_draft`` drafter tokens per verify step; plain SD at
    draft length ``k`` is ``k_draft = 0, k_qual = k, (q0, q1) = (costs.d0, costs.d1)``.
    ``a_dq``: probability that the qualifier accepts a drafter token; ``acc`` (n_requests x at
    least ``max(1, k_qual (k_draft + 1))``): the verifier's per-request per-position acceptance
    of the block. ``mean_block`` (tokens): the block a last prefill chunk is charged.
    ``step_noise``: sd of the log of the step-time noise. Scheduler limits in sequences / tokens.
    """
    k_d, k_q = int(k_draft), int(k_qual)
    if k_d < 0 or k_q < 0:
        raise ValueError(f"k_draft and k_qual must be >= 0, got {k_d}, {k_q}")
    need = k_q * (k_d + 1) + 1
    if max_num_seqs < 1:
        raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
    if max_num_batched_tokens < need:
        raise ValueError(f"max_num_batched_tokens = {max_num_batched_tokens} cannot hold one decoding sequence: "
                         f"it needs {need} tokens (k + 1 in plain SD, k_qual * (k_draft + 1) + 1 in the cascade)")
    n = stream.prompt.shape[0]
    acc = np.ascontiguousarray(acc, dtype=float)
    if acc.ndim != 2 or acc.shape[0] != n or acc.shape[1] < max(1, need - 1):
        raise ValueError(f"acc must be ({n}, >= {max(1, need - 1)}), got shape {acc.shape}")
    c = costs
    moe = c.experts is not None
    out = _kernel(
        np.array(stream.start, dtype=float), bool(stream.closed), int(stream.concurrency),
        np.asarray(stream.prompt, np.int64), np.asarray(stream.output, np.int64), acc, k_d, k_q, float(a_dq),
        float(c.v0), float(c.v1), float(c.d0), float(c.d1), float(q0), float(q1), float(c.p0), float(c.p1),
        float(c.c1), float(c.s1), float(mean_block), float(c.experts) if moe else 0.0,
        float(c.experts_per_token) if moe else 0.0, float(c.expert_share) if moe else 0.0,
        float(c.knee_tokens) if c.knee_tokens is not None else 0.0, float(c.compute_share),
        KNEE_SOFTNESS, float(step_noise), int(max_num_seqs), int(max_num_batched_tokens), int(stream.kernel_seed),
    )
    return ScheduleResult(*out)


def simulate_run(
    costs: ServiceCosts,
    *,
    k: int,
    acceptance,
    n_requests: int,
    rate_rps: float | None = None,
    concurrency: int | None = None,
    arrivals: str = "poisson",
    prompt_len: float,
    output_len: float,
    length_cv: float = 0.0,
    acceptance_spread: float = 0.0,
    step_noise: float = 0.03,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    seed: int = 0,
    run_id: str = "sim",
) -> pd.DataFrame:
    """Simulate one benchmark run; return its canonical REQUESTS table.

    The scheduler kernel runs with ``k_draft = 0``, ``k_qual = k`` and the drafter's pass
    costs in the qualifier's place (see the module docstring).

    Parameters
    ----------
    costs : ServiceCosts
        Service-cost coefficients (seconds); MoE when ``costs.experts`` is set, a roofline
        knee when ``costs.knee_tokens`` is set.
    k : int
        Draft length (0 = no speculation).
    acceptance : float or sequence of float
        Per-position acceptance ``a_1..a_k`` (sequence) or constant ``a`` (scalar).
    n_requests : int
        Requests in the run (>= 1).
    rate_rps : float, optional
        Open-loop arrival rate, requests/s.
    concurrency : int, optional
        Closed-loop streams; give exactly one of ``rate_rps`` and ``concurrency``.
    arrivals : {"poisson", "constant"}, default "poisson"
        Inter-arrival times (open loop only).
    prompt_len, output_len : float
        Mean prompt / output tokens per request.
    length_cv : float, default 0.0
        Coefficient of variation of both lengths (lognormal; 0 = exact lengths).
    acceptance_spread : float, default 0.0
        Sd of a per-request shift of logit acceptance (0 = all alike).
    step_noise : float, default 0.03
        Sd of the log of the mean-one multiplicative noise on every step time.
    max_num_seqs : int, default 256
        Scheduler limit on running sequences (vLLM default).
    max_num_batched_tokens : int, default 8192
        Scheduler token budget per step (vLLM default).
    seed : int, default 0
        All randomness derives from it; same seed, same table.
    run_id : str, default "sim"
        ``run_id`` of every row.

    Returns
    -------
    pandas.DataFrame
        Canonical REQUESTS table, one row per request: ``run_id``, ``request_id``, ``start_s``,
        ``first_token_s``, ``end_s`` (s), ``prompt_tokens``, ``output_tokens``, ``draft_tokens``,
        ``accepted_tokens`` (tokens), ``num_drafts`` (verify steps that carried drafts) and
        ``acceptance_histogram`` (empty: the scheduler kernel keeps no per-step counts).

    Raises
    ------
    ValueError
        For ``k < 0``, not exactly one of ``rate_rps`` and ``concurrency`` (or a non-positive one),
        ``n_requests < 1``, unknown ``arrivals``, or an acceptance that does not fit ``k``.
    """
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    stream = request_stream(n_requests=n_requests, rate_rps=rate_rps, concurrency=concurrency, arrivals=arrivals,
                            prompt_len=prompt_len, output_len=output_len, length_cv=length_cv, seed=seed)
    n = stream.prompt.shape[0]
    acc = acceptance_matrix(stream.rng, acceptance_vector(acceptance, k), acceptance_spread, n)
    if acc.shape[1] == 0:
        acc = np.zeros((n, 1))
    res = run_scheduler(costs, stream, acc, k_draft=0, k_qual=k, a_dq=0.0, q0=costs.d0, q1=costs.d1,
                        mean_block=float(k), step_noise=step_noise, max_num_seqs=max_num_seqs,
                        max_num_batched_tokens=max_num_batched_tokens)
    return pd.DataFrame({
        "run_id": pd.Series([str(run_id)] * n, dtype=object),
        "request_id": pd.Series([f"{i}" for i in range(n)], dtype=object),
        "start_s": res.start,
        "first_token_s": res.first_token,
        "end_s": res.end,
        "prompt_tokens": stream.prompt,
        "output_tokens": stream.output,
        "draft_tokens": res.drafts,
        "accepted_tokens": res.accepted,
        "num_drafts": res.num_drafts,
        "acceptance_histogram": pd.Series([None] * n, dtype=object),  # the kernel keeps no per-step counts
    })[list(_REQUEST_COLUMNS)]


_OPTIONAL = ("arrivals", "length_cv", "acceptance_spread", "step_noise", "max_num_seqs",
             "max_num_batched_tokens")
_META = ("run_id", "source", "hardware", "verifier", "drafter", "dataset", "k", "load_type",
         "rate_rps", "concurrency")


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value is not pd.NA


def simulate_runs(configs: pd.DataFrame, presets: Mapping | None = None, seed: int = 0,
                  *, trim_frac: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate many runs; return canonical ``(requests, runs)`` tables.

    Parameters
    ----------
    configs : pandas.DataFrame
        One row per run: ``run_id``, ``preset`` (key of ``presets``), ``dataset`` (key of the preset's
        acceptance), ``k``, ``load_type`` ('rate' or 'concurrency') with ``rate_rps`` (requests/s) or
        ``concurrency`` (streams), ``n_requests``, ``prompt_len``, ``output_len`` (tokens); optionally
        ``arrivals``, ``length_cv``, ``acceptance_spread``, ``step_noise``, ``max_num_seqs``,
        ``max_num_batched_tokens`` (as in :func:`simulate_run`).
    presets : mapping, optional
        Presets by name (default :data:`bayes_sd.simulate.presets.PRESETS`).
    seed : int, default 0
        Run ``i`` uses the seed ``run_seed(seed, i)`` (``SeedSequence([seed, i])``).
    trim_frac : float, default 0.1
        Warm-up and cool-down trimmed from each run, as a fraction of its span
        (:func:`bayes_sd.traces.aggregate.aggregate_runs`).

    Returns
    -------
    requests : pandas.DataFrame
        Canonical REQUESTS table of every run (as :func:`simulate_run`).
    runs : pandas.DataFrame
        Canonical RUNS table from :func:`bayes_sd.traces.aggregate.aggregate_runs` (latency statistics
        in s, ``achieved_rps`` in requests/s, lengths in tokens, ``saturated``), with
        ``source = 'synthetic:bayes_sd.simulate'`` and ``drafter = 'none'`` when ``k = 0``.

    Raises
    ------
    ValueError
        For a bad ``load_type`` or any argument :func:`simulate_run` rejects.
    KeyError
        For a ``preset`` or ``dataset`` not in the presets.
    """
    from bayes_sd.traces.aggregate import aggregate_runs

    if presets is None:
        from bayes_sd.simulate.presets import PRESETS as presets
    reqs, meta = [], []
    for i, row in enumerate(configs.to_dict("records")):
        pre = presets[row["preset"]]
        k = int(row["k"])
        load = row["load_type"]
        if load not in ("rate", "concurrency"):
            raise ValueError(f"config {row['run_id']}: load_type must be 'rate' or 'concurrency'")
        opts = {o: row[o] for o in _OPTIONAL if o in row and _present(row[o])}
        for o in ("max_num_seqs", "max_num_batched_tokens"):
            if o in opts:
                opts[o] = int(opts[o])
        rate = float(row["rate_rps"]) if load == "rate" else None
        conc = int(row["concurrency"]) if load == "concurrency" else None
        reqs.append(simulate_run(
            pre.costs, k=k, acceptance=pre.acceptance[row["dataset"]],
            n_requests=int(row["n_requests"]), rate_rps=rate, concurrency=conc,
            prompt_len=float(row["prompt_len"]), output_len=float(row["output_len"]),
            seed=run_seed(seed, i), run_id=str(row["run_id"]), **opts,
        ))
        meta.append({
            "run_id": str(row["run_id"]), "source": SOURCE, "hardware": pre.hardware,
            "verifier": pre.verifier, "drafter": pre.drafter if k > 0 else "none",
            "dataset": row["dataset"], "k": k, "load_type": load,
            "rate_rps": rate if rate is not None else np.nan,
            "concurrency": float(conc) if conc is not None else np.nan,
        })
    requests = pd.concat(reqs, ignore_index=True)
    runs_meta = pd.DataFrame(meta, columns=list(_META))
    runs = aggregate_runs(requests, runs_meta, trim_frac=trim_frac)
    return requests, runs
