"""Step-level simulator of a continuous-batching server running the PyramidSD cascade.

SYNTHETIC data only: every table this module returns is generated here and carries
``source = 'synthetic:bayes_sd.cascade.simulate'``.

It plays the cascade of :mod:`bayes_sd.cascade.theory` one scheduler step at a time, on the
scheduler kernel of :mod:`bayes_sd.simulate.server` (:func:`~bayes_sd.simulate.server.run_scheduler`:
FCFS admission, ``max_num_seqs``, token budget, chunked prefill, ``p0`` as a request's own
delay before admission). A decoding sequence takes ``k_qual (k_draft + 1) + 1`` tokens of the
step's budget (its largest block + 1). One step lasts (seconds)::

    v0 + k_qual (k_draft d0 + q0)                       # fixed: verifier, drafter and qualifier passes
    + sum_seq ((K_seq + 1) v1                           # each sequence making a token
               + k_qual (k_draft d1 + (k_draft+1) q1) + c1 * context_seq)
    + sum_chunk (p1 * chunk_tokens)                     # prefill work

(the drafter and qualifier passes only when some sequence makes a token) times mean-one
lognormal noise. ``K_seq`` is the sequence's qualified block this step, drawn when the step is
scheduled: the sum over ``k_qual`` rounds of (leading drafter tokens the qualifier accepts out of
``k_draft``, with probability ``a_dq`` each) + 1. After the step noise, at the step's end, the
verifier accepts a leading run of the block (probability ``a_qv`` each) and adds one token; the
output is capped at the remaining tokens. A sequence finishing its prefill in the step is
charged the mean block (``1 + k_qual tau_constant(a_dq, k_draft)`` verify tokens), as the
theory counts it.

Plain drafter -> verifier SD is the same kernel with ``k_draft = 0``, ``k_qual = k`` and the
drafter's costs in the qualifier's place (``mode='plain'`` in :func:`simulate_pyramid_runs`);
it is how :func:`bayes_sd.simulate.simulate_run` runs it. Its timings therefore equal
:func:`~bayes_sd.simulate.simulate_run`'s when the acceptance is 0 or 1, and with a constant
acceptance ``a_qv = a_dv`` (``simulate_run``'s ``acceptance_spread = 0``) the same seed gives the
same requests, timings and counts (``block_tokens``, ``qv_accepted``, ``num_verifies`` are
``draft_tokens``, ``accepted_tokens``, ``num_drafts``).

Acceptance is recorded as sufficient statistics: ``dq_accepted`` (drafter tokens the
qualifier accepted), ``dq_rejected`` (rounds with a rejection), ``qv_accepted`` (block
tokens the verifier accepted, before the output cap) and ``qv_rejected`` (verify steps
with a rejection). For constant per-position acceptance the likelihood of a run's counts
is ``a^accepted (1 - a)^rejected`` exactly, which :mod:`bayes_sd.cascade.model` uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bayes_sd import theory
from bayes_sd.cascade.theory import (
    PyramidCosts,
    block_length,
    drafter_as_qualifier,
    pyramid_demand,
)
from bayes_sd.simulate.requests import request_stream, run_seed
from bayes_sd.simulate.server import run_scheduler

__all__ = ["SOURCE", "simulate_pyramid_run", "simulate_pyramid_runs", "summarise_run", "ACCEPTANCE_COUNTS",
           "scenario", "scenario_configs"]

#: ``source`` value of every simulated cascade run.
SOURCE = "synthetic:bayes_sd.cascade.simulate"
#: Per-request (and per-run) acceptance sufficient statistics.
ACCEPTANCE_COUNTS = ("dq_accepted", "dq_rejected", "qv_accepted", "qv_rejected")


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

    Parameters
    ----------
    costs : ServiceCosts
        Verifier/drafter coefficients (s; dense verifiers only: no experts, no roofline knee, ``s1 = 0``).
    qcosts : PyramidCosts
        Qualifier coefficients (s).
    k_draft : int
        Drafter tokens per qualifier round (``k_draft = 0``: the qualifier drafts alone).
    k_qual : int
        Qualifier rounds per verifier step.
    a_dq, a_qv : float
        Per-position acceptance, drafter -> qualifier and qualifier -> verifier, in [0, 1].
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
        Coefficient of variation of both lengths (0 = exact).
    step_noise : float, default 0.03
        Sd of the log of the mean-one multiplicative noise on every step time.
    max_num_seqs, max_num_batched_tokens : int, default 256, 8192
        Scheduler limits (vLLM defaults).
    seed : int, default 0
        All randomness derives from it.
    run_id : str, default "pyramid"
        ``run_id`` of every row.

    Returns
    -------
    pandas.DataFrame
        One row per request. Columns: run_id, request_id, start_s, first_token_s, end_s (s),
        prompt_tokens, output_tokens, :data:`ACCEPTANCE_COUNTS`, block_tokens (tokens), num_verifies.

    Raises
    ------
    ValueError
        For costs with experts, a knee or ``s1``; negative ``k_draft``/``k_qual``; an acceptance outside
        [0, 1]; or a bad load (not exactly one of ``rate_rps`` and ``concurrency``, ``n_requests < 1``).
    """
    if costs.experts is not None:
        raise ValueError("costs.experts is set: the cascade simulator models dense verifiers only. "
                         "Fix: pass ServiceCosts without experts")
    if costs.knee_tokens is not None or costs.s1:
        raise ValueError("costs has a roofline knee or a per-sequence cost s1: the cascade simulator and "
                         "closed form (bayes_sd.cascade.theory) have neither. Fix: pass "
                         "dataclasses.replace(costs, knee_tokens=None, s1=0.0)")
    k_d, k_q = int(k_draft), int(k_qual)
    for name, v in (("k_draft", k_d), ("k_qual", k_q)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    a_dq, a_qv = _check_prob("a_dq", a_dq), _check_prob("a_qv", a_qv)
    stream = request_stream(n_requests=n_requests, rate_rps=rate_rps, concurrency=concurrency, arrivals=arrivals,
                            prompt_len=prompt_len, output_len=output_len, length_cv=length_cv, seed=seed)
    n = stream.prompt.shape[0]
    acc = np.full((n, max(1, k_q * (k_d + 1))), a_qv)  # the verifier's acceptance of every block position
    res = run_scheduler(costs, stream, acc, k_draft=k_d, k_qual=k_q, a_dq=a_dq, q0=qcosts.q0, q1=qcosts.q1,
                        mean_block=float(block_length(a_dq, k_d, k_q)), step_noise=step_noise,
                        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens)
    return pd.DataFrame({
        "run_id": [str(run_id)] * n, "request_id": [str(i) for i in range(n)],
        "start_s": res.start, "first_token_s": res.first_token, "end_s": res.end,
        "prompt_tokens": stream.prompt, "output_tokens": stream.output,
        "dq_accepted": res.dq_accepted, "dq_rejected": res.dq_rejected, "qv_accepted": res.accepted,
        "qv_rejected": res.qv_rejected, "block_tokens": res.drafts, "num_verifies": res.num_drafts,
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

    Parameters
    ----------
    configs : pandas.DataFrame
        One row per run: ``run_id``, ``mode`` ('cascade' or 'plain'),
        ``k_draft``, ``k_qual`` (0 for plain rows: a plain row is drafter -> verifier SD with draft
        length ``k_draft`` and acceptance ``a_dv``; ``k_draft = 0`` there means no speculation),
        ``load_type`` ('rate' or 'concurrency') with ``rate_rps`` (requests/s) or ``concurrency``,
        ``n_requests``, ``prompt_len``, ``output_len`` (tokens); optionally ``length_cv``, ``step_noise``.
    costs : ServiceCosts
        Verifier/drafter coefficients (s).
    qcosts : PyramidCosts
        Qualifier coefficients (s).
    a_dq, a_qv : float
        Per-position acceptance, drafter -> qualifier and qualifier -> verifier.
    a_dv : float, optional
        Per-position acceptance drafter -> verifier; needed by plain rows.
    seed : int, default 0
        Run ``i`` uses the seed ``SeedSequence([seed, i])``.
    trim_frac : float, default 0.1
        Share of requests dropped at each end of a run (by start time) before its statistics.

    Returns
    -------
    requests : pandas.DataFrame
        :func:`simulate_pyramid_run` rows of every run.
    runs : pandas.DataFrame
        The config columns, ``source`` (:data:`SOURCE`) and :func:`summarise_run`'s statistics
        (``latency_mean_s``, ``latency_sd_s``, ``latency_se_s``, ``ttft_mean_s`` in s, ``achieved_rps`` in
        requests/s, acceptance counts).

    Raises
    ------
    ValueError
        For a bad ``mode`` or ``load_type``, plain rows without ``a_dv`` or with ``k_qual != 0``, or any
        argument :func:`simulate_pyramid_run` rejects.
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
        rate = float(row["rate_rps"]) if load == "rate" else None
        conc = int(row["concurrency"]) if load == "concurrency" else None
        df = simulate_pyramid_run(costs, n_requests=int(row["n_requests"]), rate_rps=rate, concurrency=conc,
                                  prompt_len=float(row["prompt_len"]), output_len=float(row["output_len"]),
                                  seed=run_seed(seed, i), run_id=str(row["run_id"]), **kw, **opts)
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

    A 70B verifier with a 1B drafter on H100 (:data:`bayes_sd.simulate.presets.PRESETS`), and an 8B
    qualifier whose pass costs are the 8B verifier preset's (q0 = 6.6 ms, q1 = 45 us).
    Acceptance: 1B -> 70B directly 0.62; 1B -> 8B with fuzzy acceptance 0.80; qualified
    tokens -> 70B 0.82. Chat workload: 512 prompt, 256 output tokens. Keys: costs, qcosts,
    a_dq, a_qv, a_dv, prompt_len, output_len.
    """
    from bayes_sd.simulate.presets import PRESETS, VERIFIERS, preset_name

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
