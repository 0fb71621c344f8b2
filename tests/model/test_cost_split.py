"""Cost means sampled along and across their ridge (``model.cost_split``): the same prior, other coordinates."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from bayes_sd.model.config import load_config
from bayes_sd.model.cost_split import (
    CostSplit,
    prefill_means,
    reference_prompt_len,
    reference_tokens_per_pass,
    verify_means,
)


def test_the_split_inverts_and_keeps_volume():
    transform = CostSplit(np.log(65.0))
    value = pt.dvector("value")
    there = transform.forward(value)
    back = transform.backward(there)
    rng = np.random.default_rng(0)
    for log_p in rng.normal([3.0, -4.0], [1.0, 2.5], size=(20, 2)):
        np.testing.assert_allclose(back.eval({value: log_p}), log_p, atol=1e-10)
    # |det d(log p0, log p1) / d(t, u)| = 1, so log_jac_det = 0 is exact
    y = pt.dvector("y")
    jac = pt.jacobian(transform.backward(y), y)
    for point in rng.normal(0.0, 3.0, size=(10, 2)):
        np.testing.assert_allclose(np.linalg.det(jac.eval({y: point})), 1.0, atol=1e-10)


def test_the_prior_on_the_prefill_means_is_the_configured_one():
    cfg = load_config("default")
    p0, p1 = (cfg["priors"][n] for n in ("mu_p0", "mu_p1"))
    with pm.Model() as model:
        prefill_means(cfg, np.array([65.0, 65.0, 70.0]), levels=1)
    logp = model.compile_logp(jacobian=True)
    to_value = CostSplit(np.log(reference_prompt_len(np.array([65.0, 65.0, 70.0]))))
    for log_p in ([3.0, -4.0], [1.2, 1.0], [5.0, -9.0]):
        point = {"mu_prefill_costsplit__": to_value.forward(pt.as_tensor(np.array(log_p))).eval()}
        expected = sum(stats.norm.logpdf(v, spec["mu"], spec["sigma"]) for v, spec in zip(log_p, (p0, p1)))
        np.testing.assert_allclose(logp(point), expected, rtol=1e-10)
    with pm.Model():
        assert prefill_means(cfg, np.array([65.0]), levels=2) is None  # several servers: means as configured
        assert prefill_means(cfg, np.array([65.0, 257.0]), levels=1) is None  # the prompts split p0 from p1
    np.testing.assert_allclose(reference_prompt_len(np.array([64.0, 256.0])), 128.0)


def test_the_prior_on_the_verify_means_is_the_configured_one_and_used_only_where_the_ridge_is():
    cfg = load_config("default")
    v0, v1 = (cfg["priors"][n] for n in ("mu_v0", "mu_v1"))
    with pm.Model() as model:
        verify_means(cfg, levels=1, tokens_per_pass=3.3)
    logp = model.compile_logp(jacobian=True)
    to_value = CostSplit(np.log(3.3))
    for log_v in ([2.3, -2.5], [2.9, 1.2], [0.5, -8.0]):
        point = {"mu_verify_costsplit__": to_value.forward(pt.as_tensor(np.array(log_v))).eval()}
        expected = sum(stats.norm.logpdf(v, spec["mu"], spec["sigma"]) for v, spec in zip(log_v, (v0, v1)))
        np.testing.assert_allclose(logp(point), expected, rtol=1e-10)
    knee = load_config("roofline")
    with pm.Model():
        assert verify_means(cfg, levels=2, tokens_per_pass=3.3) is None  # several servers
        assert verify_means(knee, levels=1, tokens_per_pass=3.3) is None  # v0 inside the knee


def test_tokens_per_pass_count_each_loops_batch():
    # closed loop at 4 streams, k = 3: 16 tokens; open loop 2 req/s x 1.5 s = 3 in flight, k = 0: 3 tokens;
    # open loop without a latency: batch 1, k = 1: 2 tokens
    tokens = reference_tokens_per_pass(k=np.array([3.0, 0.0, 1.0]), is_open=np.array([0.0, 1.0, 1.0]),
                                       rate=np.array([0.0, 2.0, 0.5]), concurrency=np.array([4.0, 1.0, 1.0]),
                                       latency=np.array([np.nan, 1.5, np.nan]))
    np.testing.assert_allclose(tokens, (16.0 * 3.0 * 2.0) ** (1 / 3))
