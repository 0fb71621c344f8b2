"""Roofline pass times, tile quantisation, model shapes and MoE expert coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from bayes_sd.evaluation.fleets.costs import attention_query_rows, pass_breakdown, pass_cost
from bayes_sd.evaluation.fleets.hardware import DEVICES, padded_tokens, roofline_seconds
from bayes_sd.evaluation.fleets.models import VERIFIERS, eagle_head, ngram_drafter
from bayes_sd.evaluation.fleets.shapes import ExpertRouting

H100 = DEVICES["H100"]
LLAMA8 = VERIFIERS["llama3.1-8b"]


def test_presets_carry_spec_sheet_numbers_and_sources():
    assert H100.peak_flops == pytest.approx(989e12) and H100.memory_bandwidth == pytest.approx(3.35e12)
    assert DEVICES["A100"].peak_flops == pytest.approx(312e12)
    assert DEVICES["L40S"].memory_bandwidth == pytest.approx(864e9)
    assert DEVICES["B200"].peak_flops == pytest.approx(2.25e15)
    assert all(d.source for d in DEVICES.values())


def test_shapes_match_the_published_parameter_counts():
    # billions, as the model cards state them
    expected = {"llama3.1-8b": 8.03, "llama3.1-70b": 70.6, "mixtral-8x7b": 46.7, "qwen3-30b-a3b": 30.5,
                "qwen3-235b-a22b": 235.1, "qwen2.5-32b": 32.8}
    for name, params_b in expected.items():
        assert VERIFIERS[name].total_params / 1e9 == pytest.approx(params_b, rel=0.01), name
    assert VERIFIERS["qwen3-30b-a3b"].active_params_per_token / 1e9 == pytest.approx(3.3, rel=0.1)
    # GQA: 8 KV heads of 128 values, K and V, 32 blocks, bf16
    assert LLAMA8.kv_bytes_per_token == 2 * 8 * 128 * 32 * 2


def test_a_pass_is_memory_bound_at_small_batch_and_compute_bound_at_large_batch_on_h100():
    cost = pass_cost(LLAMA8, H100)
    small = pass_breakdown(cost, 8)
    large = pass_breakdown(cost, 2048)
    assert small["dense"][1] == "memory" and small["head"][1] == "memory"
    assert large["dense"][1] == "compute" and large["head"][1] == "compute"
    # small batch: reading the weights once sets the time, so 8 tokens cost about what 1 token costs
    assert cost.seconds(8) / cost.seconds(1) < 1.02
    # large batch: time grows with the tokens
    assert cost.seconds(4096) / cost.seconds(2048) > 1.9


def test_the_dense_phase_is_the_roofline_from_first_principles():
    cost = pass_cost(LLAMA8, H100)
    for tokens in (1, 100, 300, 3000):
        flops = 2 * LLAMA8.dense_gemm_params * padded_tokens(tokens, H100.tile_tokens)
        moved = LLAMA8.dense_weight_bytes + LLAMA8.activation_bytes_per_token * tokens
        want = roofline_seconds(flops, moved, H100.achievable_flops, H100.achievable_bandwidth)
        assert pass_breakdown(cost, tokens)["dense"][0] == pytest.approx(want, rel=1e-12)


def test_tile_quantisation_when_compute_bound():
    # an H100 whose GEMMs reach a fifth of peak: ridge ~70 FLOPs/byte, so 65 tokens (128 padded) are compute-bound
    starved = pass_cost(LLAMA8, H100.with_(compute_efficiency=0.2))
    assert pass_breakdown(starved, 65)["dense"][1] == "compute"
    # a prefill-like pass (logits for one token: the sampler's traffic, which grows with the logit rows, stays put)
    assert starved.seconds(65, logit_tokens=1) == starved.seconds(128, logit_tokens=1)
    assert starved.seconds(129, logit_tokens=1) > 1.5 * starved.seconds(128, logit_tokens=1)
    for name in ("H100", "A100"):  # presets, tile 128: compute-bound past ~126 (A100) and ~210 (H100) tokens
        cost = pass_cost(LLAMA8, DEVICES[name])
        assert pass_breakdown(cost, 257)["dense"][1] == "compute"
        assert cost.seconds(257, logit_tokens=1) == cost.seconds(384, logit_tokens=1), name
        assert cost.seconds(385, logit_tokens=1) > 1.2 * cost.seconds(384, logit_tokens=1), name
        assert pass_breakdown(cost, 257)["dense"][0] == pass_breakdown(cost, 384)["dense"][0]
    # memory-bound, the tile does not show: 65 tokens cost about what 128 cost because both read the same weights
    h100 = pass_cost(LLAMA8, H100)
    assert pass_breakdown(h100, 65)["dense"][1] == "memory"


def test_kv_reads_grow_with_context_and_tensor_parallelism_adds_all_reduces():
    cost = pass_cost(LLAMA8, H100)
    short = pass_breakdown(cost, 64, context_tokens=64 * 100, query_context_pairs=64 * 100)
    long = pass_breakdown(cost, 64, context_tokens=64 * 4000, query_context_pairs=64 * 4000)
    assert long["attention"][0] / short["attention"][0] == pytest.approx(40, rel=1e-9)
    assert long["attention"][1] == "memory"
    tp2 = pass_breakdown(pass_cost(LLAMA8, H100, tp=2), 64)
    assert tp2["communication"][0] > 0 and pass_breakdown(cost, 64)["communication"][0] == 0


def test_verify_blocks_are_padded_to_the_attention_query_tile():
    assert attention_query_rows(1.0, 4.0, 128.0, False) == 1.0  # decode kernel
    assert attention_query_rows(5.0, 4.0, 128.0, False) == 128.0  # one tile per query head
    assert attention_query_rows(5.0, 4.0, 64.0, True) == 16.0  # 20 packed rows -> 64 / 4 heads
    assert attention_query_rows(5.0, 4.0, 0.0, True) == 5.0


def test_drafters():
    head = eagle_head(LLAMA8)
    assert head.layers == 1 and head.hidden_size == LLAMA8.hidden_size and head.kind == "eagle"
    assert pass_cost(head, H100).seconds(64) < 0.15 * pass_cost(LLAMA8, H100).seconds(64)
    ngram = pass_cost(ngram_drafter(lookup_seconds_per_sequence=20e-6), H100)
    assert ngram.seconds(10) == pytest.approx(200e-6)
    assert ngram_drafter().models_row["params_b"] == 0.0


def test_moe_weight_bytes_grow_slower_than_dense_equivalent_and_depend_on_imbalance():
    moe = VERIFIERS["qwen3-30b-a3b"]
    rng = np.random.default_rng(0)
    uniform = ExpertRouting.uniform(moe.experts, moe.experts_per_token)
    skewed = ExpertRouting.draw(rng, moe.experts, moe.experts_per_token, concentration=1.0)
    fixed = moe.dense_weight_bytes + moe.lm_head_bytes
    per_token_active = moe.n_moe_layers * moe.experts_per_token * moe.expert_bytes
    tokens = np.array([1, 2, 4, 8, 16, 32, 64, 128, 512])
    u = np.array([moe.weight_bytes_per_pass(int(t), uniform) for t in tokens])
    s = np.array([moe.weight_bytes_per_pass(int(t), skewed) for t in tokens])
    # one token reads exactly its top-k experts
    assert u[0] == pytest.approx(fixed + per_token_active)
    # dense-equivalent: every token reading its own experts; shared experts make the growth sublinear and concave
    assert np.all(u[1:] - fixed < tokens[1:] * per_token_active)
    assert np.all(np.diff(u) > 0) and np.all(np.diff(np.diff(u) / np.diff(tokens)) < 0)
    # every expert read once at most
    assert u[-1] <= fixed + moe.routed_expert_params * 2.0 + 1.0
    # imbalance: popular experts are shared, so fewer distinct experts are read
    assert np.all(s[2:-1] < u[2:-1])
    assert (u[4] - s[4]) / (u[4] - fixed) > 0.05


def test_expected_coverage_and_padding_match_binomial_routing():
    routing = ExpertRouting.draw(np.random.default_rng(1), 16, 2, concentration=2.0, blocks=2)
    q = routing.inclusion
    assert q.sum(axis=1) == pytest.approx([2.0, 2.0])
    for tokens in (1, 7, 40, 300):
        active = np.mean([np.sum(1 - (1 - qb) ** tokens) for qb in q])
        assert routing.expected_active_experts(np.array([tokens]))[0] == pytest.approx(active)
        tile = 8
        exact = np.mean([sum(tile * binom.sf(np.arange(0, tokens // tile + 2) * tile, tokens, qe).sum() for qe in qb)
                         for qb in q])
        assert routing.expected_padded_rows(np.array([tokens]), tile)[0] == pytest.approx(exact, rel=0.03)
    uniform = ExpertRouting.uniform(64, 4)
    assert uniform.expected_active_experts(np.array([10]))[0] == pytest.approx(64 * (1 - (1 - 4 / 64) ** 10))
    assert math.isclose(uniform.expected_padded_rows(np.array([1]), 32)[0], 4 * 32)
