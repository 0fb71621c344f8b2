"""Step-level simulator of a continuous-batching server running the PyramidSD cascade.

SYNTHETIC data only: every table this module returns is generated here and carries
``source = 'synthetic:bayes_sd.simulate_pyramid'``.

It plays the cascade of :mod:`bayes_sd.pyramid` one scheduler step at a time, with the
scheduler of :mod:`bayes_sd.simulate` (FCFS admission, ``max_num_seqs``, token budget,
chunked prefill, ``p0`` as a request's own delay before admission). One step lasts
(seconds)::

    v0 + k_qual (k_draft d0 + q0)                       # fixed: verifier, drafter and qualifier passes
    + sum_seq (k_qual (k_draft d1 + (k_draft+1) q1)     # each sequence making a token
               + (K_seq + 1) v1 + c1 * context_seq)
    + sum_chunk (p1 * chunk_tokens)                     # prefill work

times mean-one lognormal noise. ``K_seq`` is the sequence's qualified block this step: the
sum over ``k_qual`` rounds of (leading drafter tokens the qualifier accepts out of
``k_draft``, with probability ``a_dq`` each) + 1. The verifier then accepts a leading run of
the block (probability ``a_qv`` each) and adds one token; the output is capped at the
remaining tokens. A sequence finishing its prefill in the step is charged the mean block
(``1 + k_qual tau_constant(a_dq, k_draft)`` verify tokens), as the theory counts it.

Plain drafter -> verifier SD is the same kernel with ``k_draft = 0``, ``k_qual = k`` and the
drafter's costs in the qualifier's place (``mode='plain'`` in :func:`simulate_pyramid_runs`);
its timings then equal :func:`bayes_sd.simulate.simulate_run`'s when the acceptance is 0 or 1.

Acceptance is recorded as sufficient statistics: ``dq_accepted`` (drafter tokens the
qualifier accepted), ``dq_rejected`` (rounds with a rejection), ``qv_accepted`` (block
tokens the verifier accepted, before the output cap) and ``qv_rejected`` (verify steps
with a rejection). For constant per-position acceptance the likelihood of a run's counts
is ``a^accepted (1 - a)^rejected`` exactly, which :mod:`bayes_sd.pyramid_fit` uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from numba import njit

from bayes_sd import theory
from bayes_sd.pyramid import PyramidCosts, block_length, drafter_as_qualifier, pyramid_demand
from bayes_sd.simulate import _lengths

__all__ = ["SOURCE", "simulate_pyramid_run", "simulate_pyramid_runs", "summarise_run", "ACCEPTANCE_COUNTS",
           "scenario", "scenario_configs"]

#: ``source`` value of every simulated cascade run.
SOURCE = "synthetic:bayes_sd.simulate_pyramid"
#: Per-request (and per-run) acceptance sufficient statistics.
ACCEPTANCE_COUNTS = ("dq_accepted", "dq_rejected", "qv_accepted", "qv_rejected")


@njit(cache=True)
def _kernel(start, closed, concurrency, prompt, output, k_d, k_q, a_dq, a_qv,
            v0, v1, d0, d1, q0, q1, p0, p1, c1, mean_block,
            step_noise, max_num_seqs, max_tokens, seed):
    """Run the server until every request has finished. Times in seconds.

    Returns (start, first_token, end, dq_acc, dq_rej, qv_acc, qv_rej, block_tokens, n_verify).
    """
    np.random.seed(seed)
    n = prompt.shape[0]
    first = np.full(n, np.nan)
    end = np.full(n, np.nan)
    prefilled = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    dq_acc = np.zeros(n, np.int64)
    dq_rej = np.zeros(n, np.int64)
    qv_acc = np.zeros(n, np.int64)
    qv_rej = np.zeros(n, np.int64)
    blocks = np.zeros(n, np.int64)
    n_ver = np.zeros(n, np.int64)
    running = np.empty(max_num_seqs, np.int64)
    kind = np.zeros(max_num_seqs, np.int64)  # 0 idle, 1 decode, 2 prefill chunk, 3 last chunk
    emit = np.zeros(max_num_seqs, np.int64)
    stage_tok = k_q * (k_d * d1 + (k_d + 1) * q1)  # drafter + qualifier sequence-token cost
    need = k_q * (k_d + 1) + 1  # token budget of a decoding sequence (largest block + 1)

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
        n_gen = 0
        for i in range(n_run):
            r = running[i]
            kind[i] = 0
            left = prompt[r] - prefilled[r]
            if left > 0:
                chunk = min(left, budget)
                if chunk <= 0:
                    continue
                budget -= chunk
                work += p1 * chunk
                if chunk == left:
                    kind[i] = 3
                    n_gen += 1
                    work += stage_tok + (1.0 + mean_block) * v1 + c1 * prompt[r]
                else:
                    kind[i] = 2
                prefilled[r] += chunk
            elif budget >= need:
                budget -= need
                kind[i] = 1
                n_gen += 1
                blk = 0
                for _ in range(k_q):  # qualifier rounds
                    m = 0
                    while m < k_d and np.random.random() < a_dq:
                        m += 1
                    if m < k_d:
                        dq_rej[r] += 1
                    dq_acc[r] += m
                    blk += m + 1
                c = 0
                while c < blk and np.random.random() < a_qv:
                    c += 1
                if blk > 0:
                    qv_acc[r] += c
                    if c < blk:
                        qv_rej[r] += 1
                    blocks[r] += blk
                    n_ver[r] += 1
                emit[i] = c + 1
                work += stage_tok + (blk + 1) * v1 + c1 * (prompt[r] + generated[r])
        while (n_run < max_num_seqs and budget > 0 and next_admit < n_issued
               and start[next_admit] + p0 <= t):
            r = next_admit
            next_admit += 1
            chunk = min(prompt[r], budget)
            budget -= chunk
            work += p1 * chunk
            if chunk == prompt[r]:
                kind[n_run] = 3
                n_gen += 1
                work += stage_tok + (1.0 + mean_block) * v1 + c1 * prompt[r]
            else:
                kind[n_run] = 2
            prefilled[r] = chunk
            running[n_run] = r
            n_run += 1
        dt = v0 + work
        if n_gen > 0:
            dt += k_q * (k_d * d0 + q0)
        if step_noise > 0.0:
            dt *= np.exp(step_noise * np.random.standard_normal() - 0.5 * step_noise * step_noise)
        t_end = t + dt
        keep = 0
        for i in range(n_run):
            r = running[i]
            done = False
            if kind[i] == 3:
                first[r] = t_end
                generated[r] = 1
                done = output[r] <= 1
            elif kind[i] == 1:
                generated[r] = min(generated[r] + emit[i], output[r])
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
    return start, first, end, dq_acc, dq_rej, qv_acc, qv_rej, blocks, n_ver


def _check_prob(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}. Fix: pass the per-position "
                         "acceptance probability, not a percentage or an acceptance length")
    return value


def simulate_pyramid_run(costs: theory.ServiceCosts, qcosts: PyramidCosts, *, k_draft: int, k_qual: int,
                         a_dq: float, a_qv: float, n_requests: int, rate_rps: float | None = None,
                         concurrency: int | None = None, arrivals: str = "poisson", prompt_len: float,
                         output_len: float, length_cv: float = 0.0, step_noise: float = 0.03,
                         max_num_seqs: int = 256, max_num_batched_tokens: int = 8192, seed: int = 0,
                         run_id: str = "pyramid") -> pd.DataFrame:
    """Simulate one cascade run (SYNTHETIC); return one row per request.

    ``costs``: verifier/drafter coefficients (s; dense verifiers only); ``qcosts``: qualifier
    coefficients (s); ``k_draft``: drafter tokens per qualifier round; ``k_qual``: qualifier
    rounds per verifier step (``k_draft = 0``: the qualifier drafts alone); ``a_dq`` / ``a_qv``:
    per-position acceptance. Load: ``rate_rps`` (open loop, ``'poisson'`` or ``'constant'``
    arrivals) or ``concurrency`` (closed loop): exactly one. Lengths in tokens (``length_cv``
    = 0: exact). Columns: run_id, request_id, start_s, first_token_s, end_s, prompt_tokens,
    output_tokens, :data:`ACCEPTANCE_COUNTS`, block_tokens, num_verifies.
    """
    if (rate_rps is None) == (concurrency is None):
        raise ValueError("give exactly one of rate_rps (open loop, requests/s) or concurrency (closed loop, streams)")
    if costs.experts is not None:
        raise ValueError("costs.experts is set: the cascade simulator models dense verifiers only. "
                         "Fix: pass ServiceCosts without experts")
    if costs.knee_tokens is not None or costs.s1:
        raise ValueError("costs has a roofline knee or a per-sequence cost s1: the cascade simulator and "
                         "closed form (bayes_sd.pyramid) have neither. Fix: pass "
                         "dataclasses.replace(costs, knee_tokens=None, s1=0.0)")
    k_d, k_q, n = int(k_draft), int(k_qual), int(n_requests)
    for name, v in (("k_draft", k_d), ("k_qual", k_q)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    if n < 1 or max_num_seqs < 1 or max_num_batched_tokens < k_q * (k_d + 1) + 1:
        raise ValueError("need n_requests >= 1, max_num_seqs >= 1 and max_num_batched_tokens >= "
                         "k_qual * (k_draft + 1) + 1")
    a_dq, a_qv = _check_prob("a_dq", a_dq), _check_prob("a_qv", a_qv)
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
            raise ValueError(f"rate_rps must be > 0 (requests/s), got {rate_rps}")
        if arrivals == "poisson":
            gaps = rng.exponential(1.0 / rate_rps, n)
        elif arrivals == "constant":
            gaps = np.full(n, 1.0 / rate_rps)
        else:
            raise ValueError(f"arrivals must be 'poisson' or 'constant', got {arrivals!r}")
        start = np.concatenate(([0.0], np.cumsum(gaps[:-1])))
    prompt = _lengths(rng, prompt_len, length_cv, n)
    output = _lengths(rng, output_len, length_cv, n)
    c = costs
    out = _kernel(start, closed, int(concurrency or 0), prompt, output, k_d, k_q, a_dq, a_qv,
                  float(c.v0), float(c.v1), float(c.d0), float(c.d1), float(qcosts.q0), float(qcosts.q1),
                  float(c.p0), float(c.p1), float(c.c1), float(block_length(a_dq, k_d, k_q)),
                  float(step_noise), int(max_num_seqs), int(max_num_batched_tokens), kernel_seed)
    start, first, end, dq_acc, dq_rej, qv_acc, qv_rej, blocks, n_ver = out
    return pd.DataFrame({
        "run_id": [str(run_id)] * n, "request_id": [str(i) for i in range(n)],
        "start_s": start, "first_token_s": first, "end_s": end,
        "prompt_tokens": prompt, "output_tokens": output,
        "dq_accepted": dq_acc, "dq_rejected": dq_rej, "qv_accepted": qv_acc, "qv_rejected": qv_rej,
        "block_tokens": blocks, "num_verifies": n_ver,
    })


def summarise_run(requests: pd.DataFrame, trim_frac: float = 0.1) -> dict:
    """Run-level statistics of one run's request rows (times in s).

    Drops the first and last ``trim_frac`` of requests by start time (warm-up, cool-down);
    returns n_requests, latency_mean_s, latency_sd_s, latency_se_s (= sd / sqrt(n)),
    ttft_mean_s, achieved_rps, and the sums of :data:`ACCEPTANCE_COUNTS` and block_tokens.
    """
    r = requests.sort_values("start_s", kind="stable")
    m = int(trim_frac * len(r))
    kept = r.iloc[m:len(r) - m] if len(r) - 2 * m >= 2 else r
    lat = (kept["end_s"] - kept["start_s"]).to_numpy(float)
    span = float(kept["end_s"].max() - kept["start_s"].min())
    sd = float(lat.std(ddof=1)) if len(lat) > 1 else 0.0
    out = {"n_requests": len(lat), "latency_mean_s": float(lat.mean()), "latency_sd_s": sd,
           "latency_se_s": sd / np.sqrt(len(lat)),
           "ttft_mean_s": float((kept["first_token_s"] - kept["start_s"]).mean()),
           "achieved_rps": len(lat) / span if span > 0 else np.nan}
    for col in (*ACCEPTANCE_COUNTS, "block_tokens"):
        out[col] = int(kept[col].sum())
    return out


def simulate_pyramid_runs(configs: pd.DataFrame, costs: theory.ServiceCosts, qcosts: PyramidCosts, *,
                          a_dq: float, a_qv: float, a_dv: float | None = None, seed: int = 0,
                          trim_frac: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate many runs of one verifier/drafter/qualifier trio; return ``(requests, runs)``.

    Each row of ``configs`` is one run: ``run_id``, ``mode`` ('cascade' or 'plain'),
    ``k_draft``, ``k_qual`` (0 for plain rows: a plain row is drafter -> verifier SD with draft
    length ``k_draft`` and acceptance ``a_dv``; ``k_draft = 0`` there means no speculation),
    ``load_type`` ('rate' or 'concurrency') with ``rate_rps`` or ``concurrency``,
    ``n_requests``, ``prompt_len``, ``output_len``; optionally ``length_cv``, ``step_noise``.
    Run ``i`` uses the seed ``SeedSequence([seed, i])``. The runs table has the config
    columns, ``source`` (:data:`SOURCE`) and :func:`summarise_run`'s statistics.
    """
    reqs, rows = [], []
    for i, row in enumerate(configs.to_dict("records")):
        mode, load = row.get("mode"), row.get("load_type")
        if mode not in ("cascade", "plain"):
            raise ValueError(f"config {row.get('run_id')}: mode must be 'cascade' or 'plain', got {mode!r}")
        if load not in ("rate", "concurrency"):
            raise ValueError(f"config {row.get('run_id')}: load_type must be 'rate' or 'concurrency', got {load!r}")
        if mode == "plain":
            if a_dv is None:
                raise ValueError("configs have plain rows but a_dv is None. Fix: pass a_dv, the drafter -> "
                                 "verifier per-position acceptance")
            if int(row["k_qual"]) != 0:
                raise ValueError(f"config {row['run_id']}: plain rows have no qualifier, k_qual must be 0")
            kw = dict(qcosts=drafter_as_qualifier(costs), k_draft=0, k_qual=int(row["k_draft"]),
                      a_dq=0.0, a_qv=a_dv)
        else:
            kw = dict(qcosts=qcosts, k_draft=int(row["k_draft"]), k_qual=int(row["k_qual"]), a_dq=a_dq, a_qv=a_qv)
        opts = {o: float(row[o]) for o in ("length_cv", "step_noise") if o in row and pd.notna(row[o])}
        run_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        rate = float(row["rate_rps"]) if load == "rate" else None
        conc = int(row["concurrency"]) if load == "concurrency" else None
        df = simulate_pyramid_run(costs, n_requests=int(row["n_requests"]), rate_rps=rate, concurrency=conc,
                                  prompt_len=float(row["prompt_len"]), output_len=float(row["output_len"]),
                                  seed=run_seed, run_id=str(row["run_id"]), **kw, **opts)
        reqs.append(df)
        rows.append({"run_id": str(row["run_id"]), "source": SOURCE, "mode": mode,
                     "k_draft": int(row["k_draft"]), "k_qual": int(row["k_qual"]), "load_type": load,
                     "rate_rps": rate if rate is not None else np.nan,
                     "concurrency": float(conc) if conc is not None else np.nan,
                     "prompt_len": float(row["prompt_len"]), "output_len": float(row["output_len"]),
                     **summarise_run(df, trim_frac)})
    return pd.concat(reqs, ignore_index=True), pd.DataFrame(rows)


def scenario() -> dict:
    """The SYNTHETIC cascade used by the tests, the notebook and the bench (ILLUSTRATIVE numbers).

    A 70B verifier with a 1B drafter on H100 (:data:`bayes_sd.presets.PRESETS`), and an 8B
    qualifier whose pass costs are the 8B verifier preset's (q0 = 6.6 ms, q1 = 45 us).
    Acceptance: 1B -> 70B directly 0.62; 1B -> 8B with fuzzy acceptance 0.80; qualified
    tokens -> 70B 0.82. Chat workload: 512 prompt, 256 output tokens. Keys: costs, qcosts,
    a_dq, a_qv, a_dv, prompt_len, output_len.
    """
    from bayes_sd.presets import PRESETS, VERIFIERS, preset_name

    q = VERIFIERS["llama3.1-8b"]
    costs = PRESETS[preset_name("llama3.3-70b", "draft-1b", "H100")].costs
    # the cascade's closed form has no roofline knee and no per-sequence cost: the preset without them
    return {"costs": dataclasses.replace(costs, knee_tokens=None, s1=0.0),
            "qcosts": PyramidCosts(q0=q["v0"], q1=q["v1"]), "a_dq": 0.80, "a_qv": 0.82, "a_dv": 0.62,
            "prompt_len": 512.0, "output_len": 256.0}


def scenario_configs(n_requests: int = 150, length_cv: float = 0.3) -> pd.DataFrame:
    """Run design for :func:`simulate_pyramid_runs` on :func:`scenario` (SYNTHETIC).

    Cascades (k_draft, k_qual) in {(2, 1), (3, 2), (1, 3)} at 1, 8 and 32 streams, the (3, 2)
    cascade open loop at 30 % of its saturation rate, and plain SD at k = 0 and k = 3 at 1 and
    16 streams: 14 runs. Several draft lengths and loads separate q0 (per pass) from q1 (per
    sequence-token, grows with load); the plain runs pin the drafter -> verifier acceptance.
    """
    sc = scenario()
    rows = []
    for kd, kq in ((2, 1), (3, 2), (1, 3)):
        for c in (1, 8, 32):
            rows.append(dict(run_id=f"casc-{kd}-{kq}-c{c}", mode="cascade", k_draft=kd, k_qual=kq,
                             load_type="concurrency", concurrency=c))
    c2 = pyramid_demand(sc["costs"], sc["qcosts"], 3, 2, sc["a_dq"], sc["a_qv"], sc["prompt_len"], sc["output_len"]).c2
    rows.append(dict(run_id="casc-3-2-r30", mode="cascade", k_draft=3, k_qual=2, load_type="rate", rate_rps=0.3 / c2))
    for k in (0, 3):
        for c in (1, 16):
            rows.append(dict(run_id=f"plain-{k}-c{c}", mode="plain", k_draft=k, k_qual=0, load_type="concurrency",
                             concurrency=c))
    return pd.DataFrame(rows).assign(n_requests=int(n_requests), prompt_len=sc["prompt_len"],
                                     output_len=sc["output_len"], length_cv=float(length_cv))
