"""Every real fixture and derived file becomes valid canonical runs with the right units and load type."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bayes_sd.traces.formats import detect_format
from bayes_sd.traces.ingest import ingest_paths
from bayes_sd.traces.validate import validate_runs

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")

DATA = Path(__file__).resolve().parents[1] / "data"
DER = DATA / "derived"
FLAGS = {"verifier": "llama-3.1-8b-instruct", "drafter": "eagle3-8b", "k": 4, "hardware": "mock-cpu"}
# GuideLLM mock server: TTFT ~40 ms +- 5, ITL ~8 ms +- 1, ~32 output tokens (max 32)
MOCK = {"ttft_mean_s": (0.030, 0.070), "tpot_mean_s": (0.006, 0.011), "output_len": (24, 32),
        "latency_mean_s": (0.20, 0.45)}


def ingest(*names, **flags):
    return ingest_paths([DATA / n for n in names], labels={**FLAGS, **flags})


def check_mock(runs):
    for col, (lo, hi) in MOCK.items():
        v = runs[col].to_numpy()
        assert np.all((v >= lo) & (v <= hi)), (col, v)
    assert validate_runs(runs, "check").shape[0] == len(runs)


# (file, format, [(load_type, rate_rps, concurrency, saturated by design)])
REAL = [
    ("guidellm-0.8.1-generated-benchmarks.json", "guidellm_json",
     [("concurrency", None, 1.0, False), ("concurrency", None, 6.0, True), ("rate", 18.076299382272662, None, None)]),
    ("guidellm-0.5.4-generated-benchmarks.json", "guidellm_json",
     [("concurrency", None, 1.0, False), ("concurrency", None, 6.0, True), ("rate", 17.865777844037186, None, None)]),
    ("guidellm-0.8.1-generated-benchmarks.csv", "guidellm_csv",
     [("concurrency", None, 1.0, False), ("concurrency", None, 6.0, True), ("rate", 18.08, None, None)]),
    ("vllm-0.32.0-generated-bench-serve-detailed.json", "vllm_bench", [("rate", 4.0, None, None)]),
]


@pytest.mark.parametrize("name,fmt,expect", REAL, ids=[r[0] for r in REAL])
def test_mock_server_fixtures(name, fmt, expect):
    assert detect_format(DATA / name) == fmt
    runs = ingest(name).runs
    assert len(runs) == len(expect)
    runs = runs.sort_values("run_id").reset_index(drop=True)
    for (_, row), (lt, rate, conc, sat) in zip(runs.iterrows(), expect):
        assert row["load_type"] == lt
        if rate is not None:
            assert row["rate_rps"] == pytest.approx(rate) and math.isnan(row["concurrency"])
        if conc is not None:
            assert row["concurrency"] == conc and math.isnan(row["rate_rps"])
        if sat:
            assert row["saturated"] and "throughput" in row["saturation_reason"]
    check_mock(runs)
    assert (runs["n_errored"] == 0).all() and runs["n_requests"].between(5, 12).all()
    assert (runs["verifier"] == "llama-3.1-8b-instruct").all() and (runs["k"] == 4).all()


def test_guidellm_json_matches_guidellm_own_aggregates():
    """Untrimmed (6 requests < min_keep): our statistics equal GuideLLM's per-request ones."""
    import json

    tree = json.loads((DATA / "guidellm-0.8.1-generated-benchmarks.json").read_text())
    runs = ingest("guidellm-0.8.1-generated-benchmarks.json").runs.sort_values("run_id")
    for (_, row), b in zip(runs.iterrows(), tree["benchmarks"]):
        ok = b["requests"]["successful"]
        assert row["n_requests"] == len(ok)
        assert row["ttft_mean_s"] == pytest.approx(np.mean([r["time_to_first_token_ms"] for r in ok]) / 1e3)
        assert row["tpot_mean_s"] == pytest.approx(np.mean([r["inter_token_latency_ms"] for r in ok]) / 1e3)
        assert row["output_len"] == pytest.approx(np.mean([r["output_tokens"] for r in ok]))
        lat = [r["info"]["timings"]["last_token_iteration"] - r["request_start_time"] for r in ok]
        assert row["latency_mean_s"] == pytest.approx(np.mean(lat))


def test_guidellm_csv_agrees_with_json():
    js = ingest("guidellm-0.8.1-generated-benchmarks.json").runs.sort_values("run_id").reset_index(drop=True)
    cs = ingest("guidellm-0.8.1-generated-benchmarks.csv").runs.sort_values("run_id").reset_index(drop=True)
    assert list(cs["dataset"]) == list(js["dataset"]) == ["prompts"] * 3
    for col, rel in (("ttft_mean_s", 1e-9), ("tpot_mean_s", 1e-3), ("output_len", 1e-9), ("latency_mean_s", 0.01)):
        assert np.allclose(cs[col], js[col], rtol=rel), col
    # GuideLLM's Std Dev divides by n, the aggregation of requests by n - 1 (6 requests per benchmark)
    np.testing.assert_allclose(cs["output_len_sd"], js["output_len_sd"] * np.sqrt(5 / 6), rtol=1e-6)


def test_legacy_guidellm_fixture():
    res = ingest("guidellm-benchmarks_stripped.json")
    (row,) = res.runs.to_dict("records")
    assert row["load_type"] == "concurrency" and row["concurrency"] == 1.0 and row["n_requests"] == 1
    assert row["ttft_mean_s"] == pytest.approx(0.021281957626342773)  # ms field -> s
    assert row["latency_mean_s"] == pytest.approx(1749157168.8717923 - 1749157168.1827004)
    assert row["output_len"] == 128 and row["n_incomplete"] == 1
    assert any("1 of 46 successful requests" in w and "sampled" in w for w in res.warnings)


def test_llamacpp_speculative_fixture():
    row = ingest("guidellm-0.8.1-llamacpp-speculative.json").runs.iloc[0]
    assert row["load_type"] == "rate" and row["rate_rps"] == 4.0
    assert row["output_len"] == 64 and 0.04 < row["ttft_mean_s"] < 0.2 and 0.004 < row["tpot_mean_s"] < 0.012
    assert 20 <= row["n_requests"] <= 40  # 10% trimmed at each end (no GuideLLM warm-up set)
    assert math.isnan(row["acceptance_length"])  # the file has no acceptance field
    assert row["verifier"] == "llama-3.1-8b-instruct"  # flag overrides the recorded model path


def test_vllm_detailed_uses_deltas_of_the_monotonic_clock():
    res = ingest("vllm-0.32.0-generated-bench-serve-detailed.json", dataset="random")
    row = res.runs.iloc[0]
    assert row["ttft_mean_s"] == pytest.approx(0.04520774266666194)  # = mean_ttft_ms / 1000
    assert row["latency_mean_s"] == pytest.approx(0.30216698824996985)  # = mean_e2el_ms / 1000
    assert 3.0 < row["achieved_rps"] < 4.5 and row["dataset"] == "random" and not res.warnings


@pytest.mark.parametrize("name,n,load", [
    ("derived/guidellm-0.8.1-sync.yaml", 1, "concurrency"),
    ("derived/guidellm-0.4-style.json", 3, "concurrency"),
    ("derived/vllm-0.32.0-summary.json", 1, "rate"),
    ("derived/vllm-0.14-style-detailed-no-start-times.json", 1, "rate"),
])
def test_derived_formats(name, n, load):
    runs = ingest(name).runs
    assert len(runs) == n and runs["load_type"].iloc[0] == load
    check_mock(runs)


def test_vllm_summary_and_detailed_agree():
    a = ingest("vllm-0.32.0-generated-bench-serve-detailed.json").runs.iloc[0]
    for name in ("derived/vllm-0.32.0-summary.json", "derived/vllm-0.14-style-detailed-no-start-times.json"):
        b = ingest(name).runs.iloc[0]
        for col in ("latency_mean_s", "ttft_mean_s", "n_requests"):
            assert b[col] == pytest.approx(a[col]), (name, col)
        assert b["achieved_rps"] == pytest.approx(12 / 3.3112322770000446, rel=0.06)


def test_guidellm_warmup_window_errors_and_concurrent():
    row = ingest("derived/guidellm-0.5.4-concurrent-warmup.json").runs.iloc[0]
    assert row["load_type"] == "concurrency" and row["concurrency"] == 4
    assert row["n_requests"] == 5 and row["n_errored"] == 1  # warm-up request dropped, errored counted


def test_guidellm_window_keeps_a_request_started_inside_that_ends_after_it(tmp_path):
    # the window ends at 1795312817.45 s, while the last request (sent at .343 s) is still running until .656 s
    text = (DER / "guidellm-0.5.4-concurrent-warmup.json").read_text()
    edited = tmp_path / "window.json"
    shortened = text.replace('"measure_end_time": 1795312817.6556296', '"measure_end_time": 1795312817.45')
    assert shortened != text  # the window really ends early: otherwise the test would compare the file with itself
    edited.write_text(shortened)
    row = ingest_paths([edited], labels=FLAGS).runs.iloc[0]
    assert row["n_requests"] == 5  # sent inside the window: the warm-up request alone is left out
    whole = ingest("derived/guidellm-0.5.4-concurrent-warmup.json").runs.iloc[0]  # its window ends with the last
    assert row["latency_mean_s"] == whole["latency_mean_s"] and row["latency_p99_s"] == whole["latency_p99_s"]


def test_guidellm_per_request_speculative_metrics_and_labels():
    res = ingest_paths([DER / "guidellm-0.8.1-specdec.json"])  # configuration from the file's --label
    row = res.runs.iloc[0]
    assert row["load_type"] == "rate" and row["rate_rps"] == 5.0
    assert (row["verifier"], row["drafter"], row["k"], row["hardware"], row["dataset"]) == (
        "llama-3.1-8b-instruct", "eagle3-llama3.1-8b", 4, "mock-cpu", "robot-stories")
    assert row["num_drafts"] > 0 and row["accepted_tokens"] + row["num_drafts"] == pytest.approx(
        (row["output_len"] - 1) * row["n_requests"])
    assert row["acceptance_length"] == pytest.approx(1 + row["accepted_tokens"] / row["num_drafts"])


def test_vllm_appended_with_spec_decode_and_metadata():
    runs = ingest_paths([DER / "vllm-appended-specdec.jsonl"]).runs.sort_values("run_id")
    assert list(runs["load_type"]) == ["rate", "concurrency"]
    assert runs["rate_rps"].iloc[0] == 2.0 and runs["concurrency"].iloc[1] == 4.0
    assert (runs["hardware"] == "H100").all() and (runs["k"] == 4).all() and (runs["dataset"] == "sharegpt").all()
    assert np.allclose(runs["acceptance_length"], 3.2) and (runs["num_drafts"] == 120).all()


def test_sglang_jsonl():
    res = ingest_paths([DER / "sglang-bench-serving.jsonl"], labels={"hardware": "H100"})
    runs = res.runs.sort_values("run_id")
    assert list(runs["load_type"]) == ["concurrency", "rate"] and runs["concurrency"].iloc[0] == 8
    assert (runs["k"] == 3).all() and runs["drafter"].iloc[0].endswith("EAGLE3-Llama-3.1-Instruct-8B")
    assert (runs["verifier"] == "meta-llama/Llama-3.1-8B-Instruct").all() and (runs["dataset"] == "random").all()
    assert runs["latency_mean_s"].iloc[0] == pytest.approx(0.31) and (runs["acceptance_length"] == 2.9).all()
    assert any("cumulative" in w or "since it started" in w for w in res.warnings)


@pytest.mark.parametrize("extra,tau,drafts,k", [
    (["vllm-metrics-before.prom", "vllm-metrics-after.prom"], 1 + 360 / 160, 160, 4),
    (["vllm-metrics-after.prom", "vllm-metrics-before.prom"], 1 + 360 / 160, 160, 4),
    (["vllm-metrics-two-scrapes.prom"], 1 + 360 / 160, 160, 4),
    (["vllm-0.33-serve.log"], 1 + 152 / 77, 77, 4),
    (["vllm-0.10-serve.log"], 2.16, 129, 3),
    (["vllm-v0-serve.log"], 10616 / (13311 / 3), 13311 / 3, 3),
])
def test_acceptance_sources_attach_to_the_run(extra, tau, drafts, k):
    flags = {**FLAGS, "k": None}
    runs = ingest_paths([DER / "vllm-0.32.0-summary.json"] + [DER / e for e in extra], labels=flags).runs
    row = runs.iloc[0]
    assert row["acceptance_length"] == pytest.approx(tau, rel=2e-3)
    assert row["num_drafts"] == pytest.approx(drafts) and row["k"] == k  # k inferred from the positions


@pytest.mark.parametrize("extra,shares", [
    (["vllm-metrics-before.prom", "vllm-metrics-after.prom"], [0.875, 0.6875, 0.5, 0.1875]),  # delta, both engines
    (["vllm-metrics-two-scrapes.prom"], [0.875, 0.6875, 0.5, 0.1875]),
    (["vllm-0.10-serve.log"], [0.543, 0.357, 0.264]),
    # two logging intervals of 37 and 40 drafts (92 / 2.49, 60 / 1.5): weighted by their drafts
    (["vllm-0.33-serve.log"], [(37 * a + 40 * b) / 77 for a, b in [(0.757, 0.6), (0.622, 0.4), (0.432, 0.3),
                                                                   (0.25, 0.2)]]),
    (["vllm-v0-serve.log"], []),  # the V0 engine prints no per-position counts
])
def test_per_position_acceptance_reaches_the_runs_table(extra, shares):
    from bayes_sd.traces.validate import parse_per_position

    runs = ingest_paths([DER / "vllm-0.32.0-summary.json"] + [DER / e for e in extra],
                        labels={**FLAGS, "k": None}).runs
    assert parse_per_position(runs["per_position_acceptance"].iloc[0]) == pytest.approx(shares, abs=1e-5)


def test_vllm_bench_per_position_rates_reach_the_runs_table():
    from bayes_sd.traces.validate import parse_per_position

    runs = ingest_paths([DER / "vllm-appended-specdec.jsonl"]).runs
    for cell in runs["per_position_acceptance"]:
        assert parse_per_position(cell).tolist() == [0.85, 0.62, 0.45, 0.28]


def test_sidecar_overrides_and_detection():
    res = ingest_paths([DATA / "guidellm-0.8.1-generated-benchmarks.json", DER / "sidecar.yaml"])
    assert res.formats[str(DER / "sidecar.yaml")] == "sidecar"
    runs = res.runs.sort_values("run_id")
    assert list(runs["k"]) == [4, 2, 4] and (runs["hardware"] == "mock-cpu").all()
    csv = ingest_paths([DATA / "guidellm-0.8.1-generated-benchmarks.csv"], sidecar=DER / "sidecar.yaml").runs
    assert (csv["hardware"] == "other-cpu").all()  # files: override


def test_how_regular_the_arrivals_were_is_read(tmp_path):
    """GuideLLM's constant rate sends evenly spaced (0), vllm bench serve gamma arrivals of shape
    burstiness (1 / burstiness; Poisson by default), closed loops have none; a bad shape names the fix."""
    import json

    from bayes_sd.traces.schema import TraceError

    guidellm = ingest("guidellm-0.8.1-generated-benchmarks.json").runs.sort_values("run_id")
    assert guidellm["arrival_cv2"].isna().tolist() == [True, True, False]
    assert guidellm["arrival_cv2"].iloc[2] == 0.0 and guidellm["load_type"].iloc[2] == "rate"
    assert ingest("guidellm-0.8.1-generated-benchmarks.csv").runs["arrival_cv2"].max() == 0.0
    vllm = DATA / "vllm-0.32.0-generated-bench-serve-detailed.json"
    assert ingest(vllm.name).runs["arrival_cv2"].tolist() == [1.0]
    result = json.loads(vllm.read_text())
    for shape, expect in ((4.0, 0.25), (0.5, 2.0)):
        (tmp_path / "bursty.json").write_text(json.dumps({**result, "burstiness": shape}))
        assert ingest_paths(tmp_path / "bursty.json", labels=FLAGS).runs["arrival_cv2"].tolist() == [expect]
    (tmp_path / "bursty.json").write_text(json.dumps({**result, "burstiness": 0}))
    with pytest.raises(TraceError, match="burstiness.*Fix: give the result file as vLLM wrote it"):
        ingest_paths(tmp_path / "bursty.json", labels=FLAGS)
