"""Step-level simulator of a continuous-batching LLM server with speculative decoding.

The simulator plays the cost model of :mod:`bayes_sd.theory` one scheduler step at a
time, so that at low load its mean latency matches ``theory.latency_open`` /
``theory.latency_closed`` (and the MoE variants), while at high load it shows what the
closed form leaves out: the batch cap, the token budget, queueing at admission,
per-request variation of lengths and acceptance, and step-time noise.

One step (vLLM V1-like scheduler, FCFS):

1. running sequences are scheduled first: a decoding sequence takes ``k + 1`` tokens of
   the step's token budget (``max_num_batched_tokens``), a sequence still in prefill
   takes a chunk of its prompt (chunked prefill shares the step with decode);
2. waiting requests are admitted in arrival order while fewer than ``max_num_seqs`` run
   and budget is left, each with a first prefill chunk;
3. the step lasts (seconds)::

       v0 * moe(T) * knee(T) + k * d0                          # fixed verify + draft passes
       + sum_seq ((k + 1) v1 + k d1 + s1 + c1 * context_seq)   # each sequence making a token
       + sum_chunk (p1 * chunk_tokens)                         # prefill work

   times a mean-one lognormal noise ``exp(step_noise * z - step_noise^2 / 2)``.
   ``moe(T) = 1 - share + share * coverage(T)`` for an MoE verifier, with ``T`` the tokens
   in the verify pass (``k + 1`` per decoding sequence plus the prefill chunk tokens);
   ``knee(T) = 1 + compute_share * theory.knee_excess`` when the costs have a roofline knee,
   with ``T`` the decode tokens only (``k + 1`` per decoding sequence: prefill tokens already
   cost ``p1`` each), as in the ``roofline`` model variant; 1 without a knee;
4. a sequence whose prefill completes in the step gets its first token at the step's end
   (that step counts as one of its ``N = (D - 1) / tau + 1`` iterations); a decoding
   sequence gets ``accepted + 1`` tokens (leading successes of ``k`` Bernoulli draws with
   its per-position acceptance, plus the bonus token), capped at its remaining output.

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
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from numba import njit

from bayes_sd.theory import KNEE_SOFTNESS, ServiceCosts, tau_per_position

__all__ = ["simulate_run", "simulate_runs", "SOURCE", "acceptance_vector", "theory_tau"]

#: ``source`` value of every simulated run.
SOURCE = "synthetic:bayes_sd.simulate"

_REQUEST_COLUMNS = (
    "run_id", "request_id", "start_s", "first_token_s", "end_s", "prompt_tokens",
    "output_tokens", "draft_tokens", "accepted_tokens", "num_drafts",
)


@njit(cache=True)
def _kernel(start, closed, concurrency, prompt, output, acc, k,
            v0, v1, d0, d1, p0, p1, c1, s1, experts, top_k, share,
            knee, compute_share, knee_softness, step_noise, max_num_seqs, max_tokens, seed):
    """Run the server until every request has finished. Times in seconds.

    ``start`` holds open-loop arrival times; in closed loop it is filled as requests are
    issued. Returns (start, first_token, end, draft_tokens, accepted_tokens, num_drafts).
    """
    np.random.seed(seed)
    n = prompt.shape[0]
    first = np.full(n, np.nan)
    end = np.full(n, np.nan)
    prefilled = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    drafts = np.zeros(n, np.int64)
    accepted = np.zeros(n, np.int64)
    n_drafts = np.zeros(n, np.int64)
    running = np.empty(max_num_seqs, np.int64)
    kind = np.zeros(max_num_seqs, np.int64)  # 0 idle, 1 decode, 2 prefill chunk, 3 last chunk
    per_tok = (k + 1) * v1 + k * d1 + s1  # one sequence's work in a step, beyond its context
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
        n_gen = 0
        n_dec = 0
        # 1. running sequences: decode, or the next prefill chunk
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
                    work += per_tok + c1 * prompt[r]
                else:
                    kind[i] = 2
                prefilled[r] += chunk
            elif budget >= k + 1:
                budget -= k + 1
                tokens += k + 1
                kind[i] = 1
                n_gen += 1
                n_dec += 1
                work += per_tok + c1 * (prompt[r] + generated[r])
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
                work += per_tok + c1 * prompt[r]
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
            x = n_dec * (k + 1) / knee - 1.0
            fixed *= 1.0 + compute_share * 0.5 * (x + np.sqrt(x * x + knee_softness * knee_softness))
        if n_gen > 0:
            fixed += k * d0
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
                emit = 1
                if k > 0:
                    a = 0
                    while a < k and np.random.random() < acc[r, a]:
                        a += 1
                    drafts[r] += k
                    accepted[r] += a
                    n_drafts[r] += 1
                    emit = a + 1
                generated[r] = min(generated[r] + emit, output[r])
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
    return start, first, end, drafts, accepted, n_drafts


def acceptance_vector(acceptance, k: int) -> np.ndarray:
    """Per-position acceptance ``a_1..a_k`` (probabilities) from a scalar or a sequence.

    A scalar gives constant acceptance; a sequence must have at least ``k`` entries
    (extra positions are ignored).
    """
    a = np.asarray(acceptance, float)
    if a.ndim == 0:
        a = np.full(k, float(a))
    elif a.shape[0] < k:
        raise ValueError(f"acceptance has {a.shape[0]} positions, k = {k} needs at least k")
    a = a[:k]
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"acceptance probabilities must be in [0, 1], got {a}")
    return a


def _lengths(rng, mean: float, cv: float, n: int) -> np.ndarray:
    """Token lengths (>= 1) with the given mean: exact for cv = 0, lognormal otherwise."""
    if cv <= 0:
        return np.full(n, max(1, int(round(mean))), np.int64)
    s2 = np.log1p(cv * cv)
    x = rng.lognormal(np.log(mean) - 0.5 * s2, np.sqrt(s2), n)
    return np.maximum(1, np.rint(x)).astype(np.int64)


def _acceptance_matrix(rng, a: np.ndarray, spread: float, n: int) -> np.ndarray:
    """(n, k) per-request acceptance: logit(a_j) shifted by ``spread * z_i`` per request."""
    if spread <= 0 or a.size == 0:
        return np.broadcast_to(a, (n, a.size)).copy()
    lo = np.log(np.clip(a, 1e-9, 1 - 1e-9)) - np.log1p(-np.clip(a, 1e-9, 1 - 1e-9))
    z = rng.standard_normal(n)[:, None]
    return 1.0 / (1.0 + np.exp(-(lo[None, :] + spread * z)))


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

    Parameters
    ----------
    costs : service-cost coefficients (seconds); MoE when ``costs.experts`` is set, a roofline
        knee when ``costs.knee_tokens`` is set.
    k : draft length (0 = no speculation).
    acceptance : per-position acceptance ``a_1..a_k`` (sequence) or constant ``a`` (scalar).
    n_requests : requests in the run.
    rate_rps / concurrency : open-loop arrival rate (requests/s) or closed-loop streams;
        give exactly one.
    arrivals : ``"poisson"`` or ``"constant"`` inter-arrival times (open loop only).
    prompt_len, output_len : mean prompt / output tokens per request.
    length_cv : coefficient of variation of both lengths (lognormal; 0 = exact lengths).
    acceptance_spread : sd of a per-request shift of logit acceptance (0 = all alike).
    step_noise : sd of the log of the mean-one multiplicative noise on every step time.
    max_num_seqs, max_num_batched_tokens : scheduler limits (vLLM defaults).
    seed : all randomness derives from it; same seed, same table.
    """
    if (rate_rps is None) == (concurrency is None):
        raise ValueError("give exactly one of rate_rps (open loop) or concurrency (closed loop)")
    k = int(k)
    if k < 0 or max_num_batched_tokens < k + 1 or max_num_seqs < 1 or n_requests < 1:
        raise ValueError("need k >= 0, n_requests >= 1, max_num_seqs >= 1, "
                         "max_num_batched_tokens >= k + 1")
    n = int(n_requests)
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss.spawn(1)[0])
    kernel_seed = int(ss.generate_state(1)[0] % (2**31 - 1))

    closed = concurrency is not None
    if closed:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        start = np.zeros(n)
    else:
        if not rate_rps > 0:
            raise ValueError(f"rate_rps must be > 0, got {rate_rps}")
        if arrivals == "poisson":
            gaps = rng.exponential(1.0 / rate_rps, n)
        elif arrivals == "constant":
            gaps = np.full(n, 1.0 / rate_rps)
        else:
            raise ValueError(f"arrivals must be 'poisson' or 'constant', got {arrivals!r}")
        start = np.concatenate(([0.0], np.cumsum(gaps[:-1])))
    prompt = _lengths(rng, prompt_len, length_cv, n)
    output = _lengths(rng, output_len, length_cv, n)
    a = acceptance_vector(acceptance, k)
    acc = _acceptance_matrix(rng, a, acceptance_spread, n)
    if acc.shape[1] == 0:
        acc = np.zeros((n, 1))

    c = costs
    moe = c.experts is not None
    start, first, end, drafts, accepted, n_drafts = _kernel(
        start, closed, int(concurrency or 0), prompt, output, np.ascontiguousarray(acc), k,
        float(c.v0), float(c.v1), float(c.d0), float(c.d1), float(c.p0), float(c.p1),
        float(c.c1), float(c.s1), float(c.experts) if moe else 0.0,
        float(c.experts_per_token) if moe else 0.0, float(c.expert_share) if moe else 0.0,
        float(c.knee_tokens) if c.knee_tokens is not None else 0.0, float(c.compute_share),
        KNEE_SOFTNESS, float(step_noise), int(max_num_seqs), int(max_num_batched_tokens), kernel_seed,
    )
    return pd.DataFrame({
        "run_id": pd.Series([str(run_id)] * n, dtype=object),
        "request_id": pd.Series([f"{i}" for i in range(n)], dtype=object),
        "start_s": start,
        "first_token_s": first,
        "end_s": end,
        "prompt_tokens": prompt,
        "output_tokens": output,
        "draft_tokens": drafts,
        "accepted_tokens": accepted,
        "num_drafts": n_drafts,
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

    Each row of ``configs`` is one run: ``run_id``, ``preset`` (key of ``presets``,
    default :data:`bayes_sd.presets.PRESETS`), ``dataset`` (key of the preset's
    acceptance), ``k``, ``load_type`` ('rate' or 'concurrency') with ``rate_rps`` or
    ``concurrency``, ``n_requests``, ``prompt_len``, ``output_len``; optionally
    ``arrivals``, ``length_cv``, ``acceptance_spread``, ``step_noise``, ``max_num_seqs``,
    ``max_num_batched_tokens``. Run ``i`` uses the seed ``SeedSequence([seed, i])``.
    The runs table comes from :func:`bayes_sd.traces.aggregate.aggregate_runs` with
    ``source = 'synthetic:bayes_sd.simulate'`` and ``drafter = 'none'`` when ``k = 0``.
    """
    from bayes_sd.traces.aggregate import aggregate_runs

    if presets is None:
        from bayes_sd.presets import PRESETS as presets
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
        run_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        rate = float(row["rate_rps"]) if load == "rate" else None
        conc = int(row["concurrency"]) if load == "concurrency" else None
        reqs.append(simulate_run(
            pre.costs, k=k, acceptance=pre.acceptance[row["dataset"]],
            n_requests=int(row["n_requests"]), rate_rps=rate, concurrency=conc,
            prompt_len=float(row["prompt_len"]), output_len=float(row["output_len"]),
            seed=run_seed, run_id=str(row["run_id"]), **opts,
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


def theory_tau(acceptance, k: int) -> float:
    """Acceptance length ``tau`` (tokens) implied by ``acceptance`` at draft length ``k``."""
    return float(tau_per_position(acceptance_vector(acceptance, k))) if k > 0 else 1.0
