"""Aggregation of request rows into run statistics, and saturation detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_sd.traces.aggregate import aggregate_runs
from bayes_sd.traces.schema import RUNS, TraceError


def meta(run_ids, **kw) -> pd.DataFrame:
    base = dict(source="test", hardware="H100", verifier="v", drafter="d", dataset="x", k=3,
                load_type="concurrency", concurrency=4.0)
    base.update(kw)
    return pd.DataFrame([{"run_id": r, **base} for r in run_ids])


def requests(start, latency, ttft=None, out=None, run="r1", **extra) -> pd.DataFrame:
    start, latency = np.asarray(start, float), np.asarray(latency, float)
    n = len(start)
    ttft = np.full(n, 0.5) if ttft is None else np.asarray(ttft, float)
    return pd.DataFrame({"run_id": run, "request_id": [f"{run}-{i}" for i in range(n)], "start_s": start,
                         "first_token_s": start + ttft, "end_s": start + latency,
                         "prompt_tokens": 100, "output_tokens": 11 if out is None else out, **extra})


def test_hand_computed_statistics_no_trimming():
    # 5 requests (< 20: never trimmed); latencies 1, 2, 3, 4, 10 s
    req = requests(start=[0, 1, 2, 3, 4], latency=[1, 2, 3, 4, 10], ttft=[0.1, 0.2, 0.3, 0.4, 0.5],
                   out=[11, 21, 1, 5, 101], draft_tokens=10, accepted_tokens=[5, 5, 5, 5, 0], num_drafts=2)
    req["prompt_tokens"] = [10, 20, 30, 40, 50]
    before = req.copy(deep=True)
    r = aggregate_runs(req, meta(["r1"])).iloc[0]
    pd.testing.assert_frame_equal(req, before)  # input untouched
    assert r["n_requests"] == 5
    assert r["latency_mean_s"] == pytest.approx(4.0)
    assert r["latency_sd_s"] == pytest.approx(np.sqrt(50 / 4))  # squares 9+4+1+0+36, ddof 1
    assert r["latency_se_s"] == pytest.approx(np.sqrt(50 / 4) / np.sqrt(5))  # too few for autocorrelation
    assert r["latency_p50_s"] == pytest.approx(3.0)
    assert r["latency_p90_s"] == pytest.approx(4 + 0.6 * 6)  # position 3.6 between 4 and 10
    assert r["latency_p99_s"] == pytest.approx(4 + 0.96 * 6)
    assert r["ttft_mean_s"] == pytest.approx(0.3) and r["ttft_p50_s"] == pytest.approx(0.3)
    # tpot over requests with > 1 token: 0.9/10, 1.8/20, 3.6/4, 9.5/100
    assert r["tpot_mean_s"] == pytest.approx((0.09 + 0.09 + 0.9 + 0.095) / 4)
    assert r["achieved_rps"] == pytest.approx(5 / 14)  # window [0, 14]
    assert r["output_tps"] == pytest.approx(139 / 14)
    assert r["prompt_len"] == pytest.approx(30) and r["output_len"] == pytest.approx(139 / 5)
    assert r["output_len_sd"] == pytest.approx(np.std([11, 21, 1, 5, 101], ddof=1))
    assert (r["draft_tokens"], r["accepted_tokens"], r["num_drafts"]) == (50, 20, 10)
    assert r["acceptance_length"] == pytest.approx(3.0)
    assert list(aggregate_runs(req, meta(["r1"])).columns) == [c.name for c in RUNS]


def test_in_flight_seen_by_hand_drain_and_steady():
    # two streams: A [0, 1] then C [1, 2] on one, B [0, 4] on the other; B runs alone over [2, 4]
    req = requests(start=[0, 0, 1], latency=[1, 4, 1], out=[10, 40, 10])
    r = aggregate_runs(req, meta(["r1"], concurrency=2.0)).iloc[0]
    # A and C see 2 all their lives, B 2 for half of its and 1 for the other; weights 10, 40, 10
    assert r["in_flight_seen"] == pytest.approx((10 * 2 + 40 * 1.5 + 10 * 2) / 60)
    # three streams of equal requests back to back: every request sees exactly 3
    steady = requests(start=np.repeat(np.arange(5) * 2.0, 3), latency=np.full(15, 2.0))
    assert aggregate_runs(steady, meta(["r1"], concurrency=3.0)).iloc[0]["in_flight_seen"] == pytest.approx(3.0)


def test_in_flight_seen_counts_trimmed_requests_as_company_and_keeps_runs_apart():
    # 30 requests of 3 s, two at a time; the trimmed first and last still keep the kept ones company
    start = np.repeat(np.arange(15) * 3.0, 2)
    req = pd.concat([requests(start=start, latency=np.full(30, 3.0), run="a"),
                     requests(start=[0.5], latency=[1.0], run="b")])  # another run's request overlaps in time
    out = aggregate_runs(req, meta(["a", "b"], concurrency=2.0)).set_index("run_id")
    assert out.loc["a", "n_requests"] < 30
    assert out.loc["a", "in_flight_seen"] == pytest.approx(2.0)
    assert out.loc["b", "in_flight_seen"] == pytest.approx(1.0)


def _trim_table():
    # 40 requests, start i s; latency 2 s, except the first five (warm-up) at 5 s
    lat = np.where(np.arange(40) < 5, 5.0, 2.0)
    return requests(start=np.arange(40), latency=lat)


def test_default_trimming_drops_first_and_last_tenth():
    r = aggregate_runs(_trim_table(), meta(["r1"])).iloc[0]
    # span [0, 41]; window [4.1, 36.9]; kept: started inside it -> i = 5..36
    assert r["n_requests"] == 32
    assert r["latency_mean_s"] == pytest.approx(2.0) and r["latency_sd_s"] == pytest.approx(0.0)
    # completions inside the window: i = 0..34 (ends 5..9 and 7..36) -> 35 over 32.8 s
    assert r["achieved_rps"] == pytest.approx(35 / 32.8)


def test_a_request_started_in_the_window_counts_however_late_it_ends():
    # 40 requests, start i s, latency 2 s, except i = 30..36 at 8 s (a queue builds near the end)
    lat = np.where((np.arange(40) >= 30) & (np.arange(40) <= 36), 8.0, 2.0)
    r = aggregate_runs(requests(start=np.arange(40), latency=lat), meta(["r1"])).iloc[0]
    # span [0, 44]; window [4.4, 39.6]; started inside: i = 5..39, seven of them slow (ending up to 44 s)
    assert r["n_requests"] == 35
    assert r["latency_mean_s"] == pytest.approx((28 * 2 + 7 * 8) / 35)


def test_explicit_warmup_and_cooldown():
    r = aggregate_runs(_trim_table(), meta(["r1"]), warmup_s=10, cooldown_s=0).iloc[0]
    assert r["n_requests"] == 30  # i = 10..39
    assert r["achieved_rps"] == pytest.approx(32 / 31)  # ends in [10, 41]: i = 8..39


def test_trimming_keeps_at_least_20():
    # 23 requests: trimming would keep 19 (i = 3..21 start in [2.4, 21.6]; < 20), so the run is kept whole
    r = aggregate_runs(requests(start=np.arange(23), latency=np.full(23, 2.0)), meta(["r1"])).iloc[0]
    assert r["n_requests"] == 23 and r["achieved_rps"] == pytest.approx(23 / 24)


def test_runs_are_independent_and_meta_rows_without_requests_dropped():
    req = pd.concat([requests([0, 1, 2], [1, 1, 1], run="a"), requests([0, 1], [3, 5], run="b")])
    out = aggregate_runs(req, meta(["a", "b", "unused"])).set_index("run_id")
    assert set(out.index) == {"a", "b"}
    assert out.loc["a", "latency_mean_s"] == pytest.approx(1) and out.loc["b", "latency_mean_s"] == pytest.approx(4)


def test_missing_metadata_is_an_error_naming_run_ids():
    req = pd.concat([requests([0, 1], [1, 1], run="a"), requests([0, 1], [1, 1], run="zz")])
    with pytest.raises(TraceError, match="zz") as e:
        aggregate_runs(req, meta(["a"]), source="reqs.csv")
    assert "reqs.csv" in str(e.value) and "'run_id'" in str(e.value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 1e4), st.floats(1e-3, 300), st.floats(0, 1),
                          st.integers(1, 2000)), min_size=1, max_size=80))
def test_property_percentiles_ordered_and_mean_in_range(rows):
    run, start, lat, frac, out = map(np.array, zip(*rows))
    req = pd.DataFrame({"run_id": [f"r{x}" for x in run], "request_id": [str(i) for i in range(len(rows))],
                        "start_s": start, "first_token_s": start + frac * lat, "end_s": start + lat,
                        "prompt_tokens": 10, "output_tokens": out})
    res = aggregate_runs(req, meta(sorted(set(req["run_id"]))))
    for r in res.itertuples():
        lats = lat[np.array([f"r{x}" for x in run]) == r.run_id]
        tol = 1e-9 * max(1.0, lats.max())
        assert r.latency_p50_s <= r.latency_p90_s + tol <= r.latency_p99_s + 2 * tol
        assert lats.min() - tol <= r.latency_mean_s <= lats.max() + tol
        assert lats.min() - tol <= r.latency_p50_s and r.latency_p99_s <= lats.max() + tol
        assert 1 <= r.n_requests <= len(lats) and r.achieved_rps >= 0


def test_the_mean_latencys_standard_error_counts_requests_that_queue_together_once():
    """Latencies that drift together in sending order (requests queued behind the same backlog) give
    a mean worth far fewer requests than were sent; independent ones give sd / sqrt(n); and the error
    never falls below that, whatever the order."""
    rng = np.random.default_rng(3)
    n = 400
    backlog = np.convolve(rng.standard_normal(n + 39), np.ones(40) / 40, mode="valid")  # runs of 40 alike
    independent = 2.0 + 0.3 * rng.standard_normal(n)
    alternating = 2.0 + 0.3 * np.tile([1.0, -1.0], n // 2)  # anti-correlated: more than n would say
    req = pd.concat([requests(np.arange(n), 2.0 + backlog, run="queued"),
                     requests(np.arange(n), independent, run="independent"),
                     requests(np.arange(n), alternating, run="alternating")], ignore_index=True)
    out = aggregate_runs(req, meta(["queued", "independent", "alternating"]), warmup_s=0, cooldown_s=0)
    iid = (out["latency_sd_s"] / np.sqrt(out["n_requests"])).to_numpy()
    ratio = dict(zip(out["run_id"], out["latency_se_s"].to_numpy() / iid))
    assert ratio["queued"] > 3  # ~40 alike in a row: an effective sample of ~n / 40
    assert 0.8 < ratio["independent"] < 1.25
    assert ratio["alternating"] == pytest.approx(1.0)  # capped at n


def test_many_runs_at_once_give_what_each_run_gives_alone():
    """300,000 requests of 60 runs that overlap in time, aggregated at once (vectorised over runs: its
    speed is bench/ingest_speed.py's), give each run's statistics as aggregating that run alone does."""
    rng = np.random.default_rng(1)
    n, runs = 300_000, 60
    run = rng.integers(0, runs, n)
    start = rng.uniform(0, 300, n)
    lat = rng.gamma(2.0, 1.0, n) + 0.01
    req = pd.DataFrame({"run_id": pd.Series(np.char.add("r", run.astype(str)), dtype="str"),
                        "request_id": pd.Series(np.arange(n).astype(str), dtype="str"),
                        "start_s": start, "first_token_s": start + 0.1 * lat, "end_s": start + lat,
                        "prompt_tokens": 100, "output_tokens": rng.integers(1, 500, n)})
    out = aggregate_runs(req, meta([f"r{i}" for i in range(runs)])).set_index("run_id")
    assert len(out) == runs and out["n_requests"].sum() < n
    columns = ["n_requests", "latency_mean_s", "latency_p99_s", "latency_se_s", "achieved_rps", "in_flight_seen"]
    for r in ("r0", "r17", "r59"):
        alone = aggregate_runs(req[req["run_id"] == r], meta([r])).set_index("run_id")
        pd.testing.assert_frame_equal(out.loc[[r], columns], alone[columns], check_dtype=False)
    # Poisson-like arrivals at about 17 requests/s of about 2 s each: some 35 in flight, as Little's law says
    assert out["in_flight_seen"].between(25, 50).all()


def test_per_request_acceptance_histograms_give_the_runs_per_position_shares():
    """Summed over the kept requests: s_j = steps that accepted at least j drafts / steps; with
    1 + sum_j s_j the acceptance length the counts give."""
    hist = ["2;3;5;0", "0;1;1;2", "1;0;0"]  # steps accepting exactly 0..3 drafts; the last one shorter
    steps = [10, 4, 1]
    accepted = [3 + 10, 1 + 2 + 6, 0]
    req = requests(start=[0, 1, 2], latency=[1, 1, 1], draft_tokens=[30, 12, 3], accepted_tokens=accepted,
                   num_drafts=steps, acceptance_histogram=hist)
    r = aggregate_runs(req, meta(["r1"])).iloc[0]
    total = np.array([3, 4, 6, 2])  # 15 steps
    expected = [12 / 15, 8 / 15, 2 / 15]
    np.testing.assert_allclose([float(v) for v in r["per_position_acceptance"].split(";")], expected, rtol=1e-5)
    assert 1 + sum(expected) == pytest.approx(r["acceptance_length"])
    assert total.sum() == r["num_drafts"]


def test_histograms_that_do_not_fit_the_runs_k_leave_the_shares_to_the_metadata(caplog):
    req = requests(start=[0, 1], latency=[1, 1], num_drafts=[5, 5], acceptance_histogram=["1;1;1;1;1", "1;1;1;1;1"])
    given = meta(["r1"], per_position_acceptance="0.8;0.6;0.4")  # k = 3: five counts are one too many
    with caplog.at_level("WARNING", logger="bayes_sd.traces.aggregate"):
        r = aggregate_runs(req, given).iloc[0]
    assert r["per_position_acceptance"] == "0.8;0.6;0.4" and "do not fit its draft length" in caplog.text
    r = aggregate_runs(req.drop(columns="acceptance_histogram"), given).iloc[0]
    assert r["per_position_acceptance"] == "0.8;0.6;0.4"


@pytest.mark.parametrize("cell, steps, match", [("3;x;1", 4, "not a list of counts"), ("3;-1;1", 3, "not a list"),
                                                ("3;1;1", 9, "5 steps in the histogram, 9 in num_drafts")])
def test_a_bad_histogram_cell_names_the_request_and_the_fix(cell, steps, match):
    req = requests(start=[0], latency=[1], num_drafts=[steps], acceptance_histogram=[cell])
    with pytest.raises(TraceError, match=f"acceptance_histogram.*{match}.*Fix"):
        aggregate_runs(req, meta(["r1"]))
