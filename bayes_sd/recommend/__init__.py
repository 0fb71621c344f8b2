"""From a posterior to actions: which draft length at which load, and as engine configuration.

- :mod:`.utility`: what a decision optimises (mean, p90, CVaR, SLO fraction, goodput) over draws;
- :mod:`.draft_length`: :func:`recommend_k`, :func:`evaluate_k`, :func:`rank_drafters`, :func:`decide`;
- :mod:`.export`: vLLM ``--speculative-config`` and its batch-size schedule (kept only where it pays
  for its own cost), TensorRT-LLM's ``draft_len_schedule``, SGLang's launch arguments;
- :mod:`.drafter`: a drafter never measured (:func:`what_if_drafter`) and what it needs for
  parity with the best measured one (:func:`parity`).
"""

from bayes_sd.recommend.draft_length import (
    MIN_P_FASTER,
    RESOLUTION_SE,
    Decision,
    chosen_rows,
    decide,
    evaluate_k,
    rank_drafters,
    recommend_k,
)
from bayes_sd.recommend.drafter import parity, what_if_drafter
from bayes_sd.recommend.export import (
    MAX_NUM_SEQS,
    VLLM_SCHEDULE_OVERHEAD,
    batch_size_policy,
    guess_method,
    schedule_check,
    schedule_overhead,
    sglang_args,
    speculative_config,
    static_recommendations,
    trtllm_config,
    vllm_config,
)
from bayes_sd.recommend.training_runs import fitted_batch_cap, fitted_output_spread, fitted_setting
from bayes_sd.recommend.utility import (
    LATENCY_CAP_FACTOR,
    OBJECTIVES,
    Objective,
    cap_latency,
    cvar,
    expected,
    fraction_within_slo,
    make_objective,
    posterior_quantile,
    prob_at_most,
)

__all__ = [
    "expected", "posterior_quantile", "cvar", "prob_at_most", "fraction_within_slo", "cap_latency",
    "LATENCY_CAP_FACTOR", "Objective", "make_objective", "OBJECTIVES", "Decision", "decide", "RESOLUTION_SE",
    "MIN_P_FASTER", "evaluate_k", "recommend_k", "chosen_rows", "rank_drafters", "fitted_batch_cap", "fitted_setting",
    "fitted_output_spread",
    "speculative_config", "batch_size_policy", "vllm_config", "guess_method", "MAX_NUM_SEQS",
    "schedule_overhead", "schedule_check", "static_recommendations", "trtllm_config", "sglang_args",
    "VLLM_SCHEDULE_OVERHEAD",
    "what_if_drafter", "parity",
]
