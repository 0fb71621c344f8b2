"""Choosing the draft length: utilities, the decision rule, vLLM export and the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from bayes_sd import recommend as R

B200 = dict(verifier="Qwen/Qwen3.8-27B", drafter="dspark", hardware="B200", dataset="HumanEval",
            prompt_len=190.0, output_len=760.0)


# ---------------------------------------------------------------------- utilities on hand-made arrays
def test_cvar_averages_the_worst_tail_and_propagates_saturation():
    x = np.arange(1.0, 11.0)[:, None] * np.array([1.0, 2.0])  # (10 draws, 2 options)
    np.testing.assert_allclose(R.cvar(0.9)(x), [10.0, 20.0])
    np.testing.assert_allclose(R.cvar(0.8)(x), [9.5, 19.0])
    np.testing.assert_allclose(R.cvar(0.0)(x), x.mean(0))
    y = x.copy()
    y[0, 1] = np.inf
    assert np.isinf(R.cvar(0.9)(y)[1]) and R.cvar(0.9)(y)[0] == 10.0
    with pytest.raises(ValueError):
        R.cvar(1.0)


def test_quantile_and_probability_utilities():
    x = np.arange(1.0, 101.0)[:, None]
    assert R.posterior_quantile(0.9)(x)[0] == 90.0
    assert R.prob_at_most(25.0)(x)[0] == 0.25
    assert np.isinf(R.posterior_quantile(0.99)(np.r_[x[:-5], np.full((5, 1), np.inf)])[0])
    assert R.expected(np.array([[1.0], [np.inf]]))[0] == np.inf


def test_fraction_within_slo_uses_the_lognormal_tail():
    p50, shape = 2.0, 0.5
    p90 = p50 * np.exp(norm.ppf(0.9) * shape)
    np.testing.assert_allclose(R.fraction_within_slo(p50, p90, 2.0), 0.5)
    np.testing.assert_allclose(R.fraction_within_slo(p50, p90, p90), 0.9)
    assert R.fraction_within_slo(np.inf, np.inf, 100.0) == 0.0  # saturated: nobody meets the SLO


# ---------------------------------------------------------------------- the decision rule
def test_decide_chooses_k0_when_speculation_is_slower(rng):
    base = 2.0 + 0.1 * rng.standard_normal(500)
    lat = np.column_stack([base, base * 1.10, base * 1.25, base * 1.4])  # every k > 0 is slower
    lat[:20, 1] = base[:20] * 0.98  # ... except in a few draws
    dec = R.decide(lat)
    assert dec.best == 0
    assert dec.p_best[0] == pytest.approx(0.96) and dec.p_best[1] == pytest.approx(0.04)
    # expected regret is E[latency of the option - the draw's best latency], computed here directly
    np.testing.assert_allclose(dec.regret, (lat - lat.min(axis=1, keepdims=True)).mean(axis=0))


def test_an_option_not_eligible_is_never_chosen_but_still_scored(rng):
    """k = 2 is best on average but slower than k = 0 in 30% of draws; k = 1 is a little faster in every draw.
    Requiring P(faster than k = 0) >= 0.9 leaves k = 2 out of the choice, not out of P(best) and regret;
    the first option is always eligible."""
    base = 2.0 + 0.1 * rng.standard_normal(1000)
    k2 = np.where(np.arange(1000) < 300, base * 1.05, base * 0.6)
    lat = np.column_stack([base, base * 0.95, k2])
    assert R.decide(lat, resolution=0).best == 2
    p_faster = (lat < lat[:, :1]).mean(axis=0)
    np.testing.assert_allclose(p_faster, [0.0, 1.0, 0.7])
    dec = R.decide(lat, resolution=0, eligible=p_faster >= 0.9)
    assert dec.best == 1
    np.testing.assert_allclose(dec.regret, R.decide(lat, resolution=0).regret)  # reported for every option
    assert R.decide(lat, resolution=0, eligible=[False, False, False]).best == 0


def test_regret_is_zero_and_p_best_one_when_one_option_dominates(rng):
    lat = 1.0 + rng.random((300, 4))
    lat[:, 2] = lat.min(axis=1) - 0.1  # option 2 is best in every draw
    dec = R.decide(lat)
    assert dec.best == 2 and dec.p_best[2] == 1.0 and dec.regret[2] == 0.0
    np.testing.assert_allclose(dec.regret[[0, 1, 3]], (lat[:, [0, 1, 3]] - lat[:, [2]]).mean(axis=0))


def test_decision_uses_the_posterior_not_its_mean():
    # B is faster on average but sometimes much slower: mean picks B, CVaR_0.9 picks the safe A
    a = np.full(100, 1.0)
    b = np.r_[np.full(90, 0.5), np.full(10, 5.0)]
    lat = np.column_stack([a, b])
    assert R.decide(lat, resolution=0).best == 1
    assert R.decide(lat, aggregate=R.cvar(0.9), resolution=0).best == 0
    assert R.decide(-lat, maximize=True, resolution=0).best == 1  # maximising -latency is minimising latency
    # 100 draws do not resolve B's 5% lead (its Monte Carlo error is 13%): the simpler option A stays
    dec = R.decide(lat)
    assert dec.best == 0 and dec.score_gap_se[1] == pytest.approx(0.135, abs=0.03)


def test_a_lead_within_the_monte_carlo_error_goes_to_the_smaller_k_and_a_resolved_one_does_not(rng):
    n = 400
    base = 1.0 + 0.2 * rng.standard_normal(n)  # what the options share, draw by draw
    noise = 0.3 * rng.standard_normal((n, 3))
    noise -= noise.mean(axis=0)  # so the realised leads are exactly 0.02 and 0.15
    lat = base[:, None] + noise + np.array([0.0, -0.02, -0.15])
    dec = R.decide(lat)
    se = 0.3 * np.sqrt(2 / n)  # the error of a difference of two options' means: 0.021
    np.testing.assert_allclose(dec.score_gap_se[[0, 1]], se, rtol=0.25)
    assert dec.best == 2  # a lead of about 7 standard errors is resolved
    assert R.decide(lat[:, :2]).best == 0 and R.decide(lat[:, :2], resolution=0).best == 1  # one of < 1 is not


def test_the_resolution_rule_makes_a_near_tie_stable_across_draws():
    """A near tie (a lead of a fifth of a standard error, as between neighbouring k at a flat optimum):
    the best-score rule flips with the draws, the resolution rule keeps the smaller k. (It moves the
    threshold rather than removing it: a lead of about two standard errors flips either way.)"""
    n, lead = 400, 0.2 * 0.3 * np.sqrt(2 / 400)
    picks = {0.0: [], 2.0: []}
    for seed in range(40):
        r = np.random.default_rng(seed)
        lat = 1.0 + 0.3 * r.standard_normal((n, 2)) + np.array([0.0, -lead])
        for res in picks:
            picks[res].append(R.decide(lat, resolution=res).best)
    agree = {res: max(np.mean(p), 1 - np.mean(p)) for res, p in picks.items()}
    assert agree[0.0] < 0.75 and agree[2.0] >= 0.9, agree


def test_capped_latency_scores_saturation_finitely_and_in_proportion():
    lat = np.ones((1000, 3))
    lat[:, 1] = 0.8
    lat[:5, 1] = np.inf  # k=1: 20% faster, saturated in 0.5% of draws
    lat[:, 2] = 0.7
    lat[:200, 2] = np.inf  # k=2: 30% faster, saturated in 20% of draws
    assert np.isinf(R.decide(lat).score[1])  # uncapped: one saturated draw makes the mean infinite
    capped = R.cap_latency(lat)  # cap: 10 x the best median (0.7 s)
    assert capped.max() == pytest.approx(7.0)
    dec = R.decide(capped)
    np.testing.assert_allclose(dec.score, [1.0, 0.8 * 0.995 + 7.0 * 0.005, 0.7 * 0.8 + 7.0 * 0.2])
    assert dec.best == 1 and np.isfinite(dec.regret).all()
    assert R.decide(R.cap_latency(lat, cap_s=100.0)).best == 0  # a 100 s cap: 0.5% of draws cost 0.5 s
    with pytest.raises(ValueError, match="positive"):
        R.cap_latency(lat, cap_s=0.0)
    # every option's median saturated: nothing is capped and the least saturated option wins
    sat = np.full((100, 2), np.inf)
    sat[:30, 1] = 1.0
    assert np.isinf(R.cap_latency(sat)).all(axis=0)[0] and R.decide(R.cap_latency(sat)).best == 1


def test_saturated_draws_prefer_the_stable_option():
    lat = np.ones((100, 3))
    lat[:10, 0] = np.inf  # k=0 saturated in 10% of draws, k=1 in 40%, k=2 always
    lat[:40, 1] = np.inf
    lat[:, 2] = np.inf
    dec = R.decide(lat)
    assert np.all(np.isinf(dec.score)) and dec.best == 0
    np.testing.assert_allclose(dec.p_saturated, [0.1, 0.4, 1.0])
    # every draw's best is k=0: finite wherever k=0 is (ties go to the first option), and where every
    # option saturates (the first 10 draws) the tie rule keeps the first
    np.testing.assert_allclose(dec.p_best, [1.0, 0.0, 0.0])
    # all saturated in every draw: the larger saturation rate (headroom) wins
    room = np.tile([1.0, 3.0, 2.0], (100, 1))
    assert R.decide(np.full((100, 3), np.inf), headroom=room).best == 1


def test_objectives_validate_their_options():
    with pytest.raises(ValueError, match="slo_s"):
        R.make_objective("slo")
    with pytest.raises(ValueError, match="unknown objective"):
        R.make_objective("fastest")
    assert R.make_objective("goodput", slo_s=3.0).maximize


# ---------------------------------------------------------------------- on the fitted B200 model
def test_recommend_k_columns_p_best_and_regret(fitted_b200):
    model, _ = fitted_b200
    table = R.evaluate_k(model, **B200, concurrencies=[1, 32, 128], k_max=6, max_draws=200)
    assert len(table) == 3 * 7
    # closed loop never saturates, so nothing is capped: the mean objective scores each k by its expected
    # mean latency; the k minimising it also minimises the expected regret (E[L_k] - E[min_k L_k]); the
    # chosen k is that one or a smaller k within two Monte Carlo errors of it
    np.testing.assert_allclose(table["utility"], table["latency_mean_s"])
    for _, g in table.groupby("concurrency"):
        chosen, top = g[g["chosen"]].iloc[0], g.loc[g["utility"].idxmin()]
        assert top["expected_regret"] == pytest.approx(g["expected_regret"].min())
        assert chosen["k"] <= top["k"] and chosen["utility_gap_se"] == 0
        assert chosen["utility"] - top["utility"] <= R.RESOLUTION_SE * top["utility_gap_se"] + 1e-12
        assert (g["regret_se"] >= 0).all() and (g["utility_gap_se"] > 0).sum() == len(g) - 1
    recs = R.recommend_k(model, **B200, concurrencies=[1, 32, 128], k_max=6, max_draws=200)
    need = ["concurrency", "best_k", "latency_mean_s", "latency_q05_s", "latency_q95_s", "p_best",
            "expected_regret", "speedup_vs_k0", "speedup_q05", "speedup_q95", "p_slower_than_k0",
            "p_saturated", "batch_size"]
    assert set(need) <= set(recs.columns) and len(recs) == 3
    assert (recs["latency_q05_s"] <= recs["latency_mean_s"]).all()
    assert (recs["latency_mean_s"] <= recs["latency_q95_s"]).all()
    assert recs["best_k"].iloc[0] > 0  # alone on the server, DSpark pays off clearly (data: 2.4x)


def test_min_p_faster_chooses_only_credibly_faster_speculation(fitted_b200):
    model, _ = fitted_b200
    table = R.evaluate_k(model, **B200, concurrencies=[1, 64, 256], k_max=6, max_draws=200, min_p_faster=0.95)
    chosen = table[table["chosen"]]
    assert ((chosen["k"] == 0) | (chosen["p_slower_than_k0"] <= 0.05)).all()
    assert (chosen["k"] > 0).any()  # alone on the server, DSpark is faster in every draw
    with pytest.raises(ValueError, match="min_p_faster = 1.0"):
        R.evaluate_k(model, **B200, concurrencies=[1], k_max=2, max_draws=20, min_p_faster=1.0)


def test_evenly_spaced_arrivals_only_for_a_model_that_takes_arrivals_as_recorded(fitted_b200):
    """A model fitted with every open loop Poisson refuses a question about evenly spaced arrivals; one
    that takes them as recorded answers it: lower latency below saturation (fewer others met, by the
    prior's irregularity when it fitted no such run), the same capacity, and cv2 = 1 as Poisson."""
    import copy

    model, _ = fitted_b200
    with pytest.raises(ValueError, match="arrival_cv2 = 0.*Fix: leave arrival_cv2 out, or fit a configuration"):
        R.evaluate_k(model, **B200, rates=[1.0], ks=[2], max_draws=50, arrival_cv2=0.0)
    recorded = copy.copy(model)
    recorded.config = {**model.config, "model": {**model.config["model"], "arrivals": "as_recorded"}}
    rates = [0.5, 2.0, 4.0]
    poisson = R.evaluate_k(recorded, **B200, rates=rates, ks=[2], max_draws=200)
    even = R.evaluate_k(recorded, **B200, rates=rates, ks=[2], max_draws=200, arrival_cv2=0.0)
    same = R.evaluate_k(recorded, **B200, rates=rates, ks=[2], max_draws=200, arrival_cv2=1.0)
    np.testing.assert_allclose(same["latency_q50_s"], poisson["latency_q50_s"])
    finite = np.isfinite(poisson["latency_q50_s"]).to_numpy()
    assert finite.sum() >= 2
    assert (even["latency_q50_s"].to_numpy()[finite] < poisson["latency_q50_s"].to_numpy()[finite]).all()
    np.testing.assert_allclose(even["saturation_rps"], poisson["saturation_rps"])


def test_recommend_k0_near_the_baseline_saturation_rate(fitted_b200):
    """Open loop just under k = 0's saturation: speculation saturates first, so k = 0 wins."""
    model, _ = fitted_b200
    probe = R.evaluate_k(model, **B200, rates=[1.0], k_max=4, max_draws=200)
    sat = probe.set_index("k")["saturation_rps"]
    assert (sat.iloc[1:] < sat.loc[0]).all()  # speculation lowers the saturation rate
    rate = 0.5 * (sat.loc[0] + sat.loc[1])
    recs = R.recommend_k(model, **B200, rates=[rate], k_max=4, max_draws=200)
    row = recs.iloc[0]
    assert row["best_k"] == 0 and row["p_saturated"] <= row["p_saturated_k0"]
    assert row["speedup_vs_k0"] == 1.0 and row["p_slower_than_k0"] == 0.0


def test_rank_drafters_agrees_with_each_drafters_own_evaluation(fitted_b200):
    model, _ = fitted_b200
    ranked = R.rank_drafters(model, verifier=B200["verifier"], drafters=["dspark", "mtp"], hardware="B200",
                             dataset="HumanEval", prompt_len=190, output_len=760, load=8,
                             load_type="concurrency", k_max=4, max_draws=200)
    assert set(ranked["drafter"]) == {"dspark", "mtp", "none"}
    # each drafter's row is its own best k, as evaluate_k scores it at the same load (same draws)
    for drafter in ("dspark", "mtp"):
        own = R.evaluate_k(model, verifier=B200["verifier"], drafter=drafter, hardware="B200", dataset="HumanEval",
                           prompt_len=190, output_len=760, concurrencies=[8], k_max=4, max_draws=200)
        row = ranked.set_index("drafter").loc[drafter]
        assert row["best_k"] == own.loc[own["chosen"], "k"].iloc[0]
        assert row["utility"] == pytest.approx(own["utility"].min(), rel=1e-6)


# ---------------------------------------------------------------------- vLLM export
def test_speculative_config_and_k0():
    assert R.speculative_config("eagle3", "org/head", 0) is None
    assert R.speculative_config("eagle3", "org/head", 3) == {"method": "eagle3", "model": "org/head",
                                                             "num_speculative_tokens": 3}
    assert "model" not in R.speculative_config("ngram", None, 4)


def _covers(ranges, n):
    """Every batch size 1..n in exactly one range; vLLM's rules: sorted, first starts at 1."""
    hits = np.zeros(n + 1, int)
    for start, end, k in ranges:
        assert 1 <= start <= end <= n and k >= 0
        hits[start:end + 1] += 1
    return bool(np.all(hits[1:] == 1)) and ranges[0][0] == 1 and [r[0] for r in ranges] == sorted(r[0] for r in ranges)


def test_vllm_config_maps_every_batch_size_to_one_k(tmp_path):
    recs = pd.DataFrame({"rate_rps": [1, 5, 20, 40, 60], "best_k": [5, 4, 2, 0, 0],
                         "batch_size": [1.2, 7.0, 45.0, 180.0, np.inf]})
    cfg = R.vllm_config(recs, "eagle3", "org/head")
    path = tmp_path / "v.json"
    path.write_text(json.dumps(cfg))
    back = json.loads(path.read_text())
    spec = back["speculative_config"]
    ranges = spec["num_speculative_tokens_per_batch_size"]
    assert _covers(ranges, 256) and ranges[-1][1] == 256
    assert spec["num_speculative_tokens"] == 5 and all(k <= 5 for *_, k in ranges)
    lookup = {b: k for s, e, k in ranges for b in range(s, e + 1)}
    assert lookup[1] == 5 and lookup[7] == 4 and lookup[45] == 2 and lookup[200] == 0 and lookup[256] == 0
    assert json.loads(back["serve_args"][back["serve_args"].index("--speculative-config") + 1]) == spec
    # speculation never pays: no speculative config at all
    none = R.vllm_config(recs.assign(best_k=0), "eagle3", "org/head")
    assert none["speculative_config"] is None and "--speculative-config" not in none["serve_args"]
    # one k everywhere: a plain fixed-k config
    fixed = R.vllm_config(recs.assign(best_k=3), "eagle3", "org/head", max_num_seqs=64)
    assert fixed["speculative_config"] == R.speculative_config("eagle3", "org/head", 3)
    assert _covers(R.batch_size_policy(recs, 64)["num_speculative_tokens_per_batch_size"], 64)


def _table(utility: dict, batch_size: list, chosen: list) -> pd.DataFrame:
    """An evaluate_k-shaped table: utility[k] is a list over the loads (rates 1, 2, ...)."""
    rows = []
    for i, (b, c) in enumerate(zip(batch_size, chosen)):
        for k, u in utility.items():
            rows.append({"rate_rps": float(i + 1), "k": k, "utility": u[i], "chosen": k == c, "objective": "mean",
                         "batch_size": b, "k_measured": True})
    return pd.DataFrame(rows)


def test_a_schedule_is_kept_only_where_its_gain_pays_for_its_own_cost():
    assert R.schedule_overhead(2) == pytest.approx(0.066) and R.schedule_overhead(189) == pytest.approx(0.216)
    assert R.schedule_overhead(1) == pytest.approx(0.066) and R.schedule_overhead(1000) == pytest.approx(0.216)
    assert 0.066 < R.schedule_overhead(20) < 0.216
    # k = 4 at light load, k = 2 at heavy load, but k = 2 everywhere is only 2% slower at light load
    small = _table({0: [1.5, 2.0], 2: [1.02, 1.5], 4: [1.0, 1.6]}, batch_size=[2.0, 20.0], chosen=[4, 2])
    check = R.schedule_check(small)
    assert not check["use_schedule"] and check["static_k"] == 2
    assert check["schedule_gain"] == pytest.approx(0.01) and check["schedule_cost"] > 0.066
    assert "serve k = 2" in check["reason"]
    # the static alternatives lose 40-50%: the schedule pays
    big = _table({0: [1.5, 2.0], 2: [1.4, 1.5], 4: [1.0, 2.2]}, batch_size=[2.0, 20.0], chosen=[4, 2])
    check = R.schedule_check(big)
    assert check["use_schedule"] and check["schedule_gain"] == pytest.approx(0.2) and check["static_k"] == 2
    static = R.static_recommendations(big, 2)
    assert (static["best_k"] == 2).all() and len(static) == 2
    # a smaller k that scores slightly better than the chosen one (within its Monte Carlo error) is a tie
    # the best static k was never measured: the check names the best measured one and what it loses
    unmeasured = small.assign(k_measured=small["k"] != 2)
    check = R.schedule_check(unmeasured)
    assert check["static_k"] == 2 and check["best_measured_static_k"] == 4
    assert check["best_measured_static_loss"] == pytest.approx((0.0 + 1.6 / 1.5 - 1) / 2)
    assert "k = 2 was never measured" in check["reason"] and "best_measured_static_k" not in R.schedule_check(small)
    tie = _table({0: [2.0, 2.0], 3: [1.0, 1.0], 4: [0.99, 0.995]}, batch_size=[2.0, 20.0], chosen=[3, 3])
    assert R.schedule_check(tie)["static_k"] == 3 and not R.schedule_check(tie)["use_schedule"]
    with pytest.raises(ValueError, match="latency objective"):
        R.schedule_check(small.assign(objective="goodput"))


def _trt_lookup(schedule: dict, b: int) -> int:
    """TensorRT-LLM's rule: the first key >= b gives k; past the largest key, 0."""
    keys = sorted(schedule)
    return next((schedule[key] for key in keys if key >= b), 0)


def test_trtllm_schedule_gives_every_batch_size_the_same_k_as_the_vllm_one():
    recs = pd.DataFrame({"rate_rps": [1, 5, 20, 40, 60], "best_k": [5, 4, 2, 0, 0],
                         "batch_size": [1.2, 7.0, 45.0, 180.0, np.inf]})
    cfg = R.trtllm_config(recs, "eagle3", "org/head")
    spec = cfg["speculative_config"]
    assert spec["decoding_type"] == "Eagle3" and spec["max_draft_len"] == 5 and spec["speculative_model"] == "org/head"
    schedule = spec["draft_len_schedule"]
    assert schedule[1] == spec["max_draft_len"] and max(schedule.values()) <= spec["max_draft_len"]
    vllm = {b: k for s, e, k in R.batch_size_policy(recs, 256)["num_speculative_tokens_per_batch_size"]
            for b in range(s, e + 1)}
    assert all(_trt_lookup(schedule, b) == vllm[b] for b in range(1, 257)) and cfg["clamped"] == []
    # k rising with the batch size cannot be written (TensorRT-LLM: schedule[1] = max_draft_len): clamped, said
    rising = R.trtllm_config(recs.assign(best_k=[2, 4, 4, 0, 0]), "mtp", None)
    assert rising["speculative_config"]["max_draft_len"] == 2 and rising["clamped"]
    assert "speculative_model" not in rising["speculative_config"]
    assert R.trtllm_config(recs.assign(best_k=0), "eagle3", "x")["speculative_config"] is None
    with pytest.raises(ValueError, match="decoding type"):
        R.trtllm_config(recs, "suffix", None)


def test_sglang_args_count_the_root_token_among_the_draft_tokens():
    args = R.sglang_args(3, "eagle3", "org/head")
    assert args[args.index("--speculative-num-steps") + 1] == "3"
    assert args[args.index("--speculative-num-draft-tokens") + 1] == "4"
    assert args[args.index("--speculative-algorithm") + 1] == "EAGLE3" and "--speculative-eagle-topk" in args
    assert R.sglang_args(0, "eagle3", "org/head") == []
    assert "--speculative-draft-model-path" not in R.sglang_args(2, "mtp", None)


# ---------------------------------------------------------------------- CLI
def _parser():
    from bayes_sd.cli.recommend import add_parser

    parser = argparse.ArgumentParser(prog="bayes-sd")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_writes_csv_and_vllm_json(fitted_b200, tmp_path, capsys):
    _, post = fitted_b200
    out, vj, tj, sj = (tmp_path / name for name in ("recs.csv", "vllm.json", "trtllm.json", "sglang.json"))
    args = _parser().parse_args([
        "recommend", str(post), "--verifier", B200["verifier"], "--drafter", "dspark", "--hardware", "B200",
        "--dataset", "HumanEval", "--prompt-len", "190", "--output-len", "760", "--concurrency", "1,16,128",
        "--k-max", "5", "--max-draws", "200", "--out", str(out), "--vllm-config", str(vj),
        "--trtllm-config", str(tj), "--sglang-config", str(sj), "--method", "eagle3"])
    assert args.func(args) == 0
    recs = pd.read_csv(out)
    assert {"concurrency", "best_k", "latency_mean_s", "latency_q05_s", "latency_q95_s", "p_best",
            "expected_regret", "speedup_vs_k0", "speedup_q05", "speedup_q95", "p_slower_than_k0",
            "p_saturated", "batch_size"} <= set(recs.columns)
    assert len(recs) == 3
    cfg = json.loads(vj.read_text())
    assert len(cfg["schedule"]) >= 1 and cfg["schedule"][-1]["max_batch_size"] == 256
    check = cfg["schedule_check"]
    served_ks = {r["num_speculative_tokens"] for r in cfg["schedule"]}
    if not check["use_schedule"]:  # a schedule that does not pay: every engine serves the static k
        assert served_ks == {check["static_k"]}
    if cfg["speculative_config"] is not None:
        assert cfg["speculative_config"]["method"] == "eagle3"
    sg, trt = json.loads(sj.read_text()), json.loads(tj.read_text())
    assert sg["k"] == check["static_k"] and (sg["launch_args"] == []) is (sg["k"] == 0)
    assert (trt["speculative_config"] is None) is (cfg["speculative_config"] is None)
    assert trt["posterior_converged"] is sg["posterior_converged"] is cfg["posterior_converged"]
    # the export says whether the posterior behind it converged (the session's short fit: usually not)
    converged = fitted_b200[0].diagnostics()["converged"]
    assert cfg["posterior_converged"] is converged and ("warning" in cfg) is (not converged)
    if not converged:
        assert "NOT converged" in cfg["warning"] and "R-hat" in cfg["warning"]
    assert "best_k" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


@pytest.mark.parametrize("extra, match", [
    (["--rate-rps", "1,2", "--concurrency", "4"], "exactly one"),
    ([], "exactly one"),
    (["--rate-rps", "1,x"], "comma-separated"),
    (["--rate-rps", "1", "--objective", "slo"], "--slo-s"),
])
def test_cli_bad_options_raise_one_line_value_errors(extra, match, tmp_path):
    args = _parser().parse_args(["recommend", str(tmp_path / "p.nc"), "--verifier", "v", "--drafter", "d",
                                 "--hardware", "h", "--prompt-len", "10", "--output-len", "10", *extra])
    with pytest.raises(ValueError, match=match) as exc:
        args.func(args)
    assert "\n" not in str(exc.value)
