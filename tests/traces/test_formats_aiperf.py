"""NVIDIA AIPerf per-request export (profile_export.jsonl), read from its record schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bayes_sd.traces.formats import detect_format, read_format
from bayes_sd.traces.ingest import ingest_paths
from bayes_sd.traces.schema import TraceError

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")

AIPERF = Path(__file__).resolve().parents[1] / "data" / "derived" / "aiperf"
JSONL = AIPERF / "profile_export.jsonl"
FLAGS = {"drafter": "eagle3", "hardware": "H100", "dataset": "synthetic"}


def records():
    return [json.loads(line) for line in JSONL.read_text().splitlines()]


def test_detected_from_content():
    assert detect_format(JSONL) == "aiperf"
    assert detect_format(AIPERF / "profile_export_aiperf.json") == "aiperf_summary"
    with pytest.raises(TraceError, match="per-request records"):
        read_format(AIPERF / "profile_export_aiperf.json")


def test_request_rows_speculative_counts_and_load():
    parsed = read_format(JSONL)
    (run,) = parsed.runs
    recs = [r for r in records() if r["metadata"]["benchmark_phase"] == "profiling" and r["error"] is None]
    assert len(run.requests) == len(recs) == 23 and run.n_errored == 1  # warm-up left out, failure counted
    first = recs[0]
    row = run.requests.iloc[0]
    start = first["metadata"]["request_start_ns"] / 1e9
    assert row["start_s"] == pytest.approx(start)
    ttft = first["metrics"]["time_to_first_token"]["value"] / 1e3
    assert row["first_token_s"] - row["start_s"] == pytest.approx(ttft)
    assert row["end_s"] - row["start_s"] == pytest.approx(first["metrics"]["request_latency"]["value"] / 1e3)
    assert row["num_drafts"] == first["spec_decode_acceptance"]["num_spec_steps"]
    assert (run.load_type, run.rate_rps) == ("rate", 2.0) and run.acceptance == {"k": 3}
    assert parsed.recorded == {"verifier": "meta-llama/Llama-3.1-8B-Instruct"}
    assert parsed.info == {"tool": "aiperf", "engine": "vllm"}


def test_ingested_run():
    row = ingest_paths([JSONL], labels=FLAGS).runs.iloc[0]
    recs = [r for r in records() if r["metadata"]["benchmark_phase"] == "profiling" and r["error"] is None]
    acc = sum(r["spec_decode_acceptance"]["num_accepted_draft_tokens"] for r in recs)
    steps = sum(r["spec_decode_acceptance"]["num_spec_steps"] for r in recs)
    assert row["acceptance_length"] == pytest.approx(1 + acc / steps) and row["k"] == 3
    assert row["load_type"] == "rate" and row["rate_rps"] == 2.0 and 1.5 < row["achieved_rps"] < 2.2
    assert row["prompt_len"] == 512 and row["n_errored"] == 1 and (row["tool"], row["engine"]) == ("aiperf", "vllm")
    ttft = np.median([r["metrics"]["time_to_first_token"]["value"] / 1e3 for r in recs])
    assert 0.5 * ttft < row["ttft_p50_s"] < 2 * ttft


def test_older_record_schema(tmp_path):
    """Files of older AIPerf: timestamp_ns, credit_phase and the ttft tag (as in AIPerf's example artifacts)."""
    lines = []
    for r in records():
        md = r["metadata"]
        md["timestamp_ns"] = md.pop("request_start_ns")
        md["credit_phase"] = md.pop("benchmark_phase")
        for key in ("request_end_ns", "request_ack_ns", "session_num"):
            md.pop(key)
        if "time_to_first_token" in r["metrics"]:
            r["metrics"]["ttft"] = r["metrics"].pop("time_to_first_token")
        r.pop("spec_decode_acceptance", None)
        lines.append(json.dumps(r))
    (tmp_path / "profile_export.jsonl").write_text("\n".join(lines))
    shutil.copy(AIPERF / "profile_export_aiperf.json", tmp_path)
    a = ingest_paths([tmp_path / "profile_export.jsonl"], labels={**FLAGS, "k": 3}).runs.iloc[0]
    b = ingest_paths([JSONL], labels=FLAGS).runs.iloc[0]
    for col in ("n_requests", "latency_mean_s", "ttft_mean_s", "tpot_mean_s", "achieved_rps"):
        assert a[col] == pytest.approx(b[col]), col
    assert np.isnan(a["acceptance_length"])


def test_without_its_aggregate_file_the_load_is_asked_for(tmp_path):
    shutil.copy(JSONL, tmp_path)
    with pytest.raises(TraceError, match="does not record its load") as e:
        ingest_paths([tmp_path / "profile_export.jsonl"], labels={**FLAGS, "verifier": "v"})
    assert "profile_export_aiperf.json" in str(e.value) and "manifest" in str(e.value)


def test_non_streaming_export_is_refused(tmp_path):
    lines = []
    for r in records():
        r["metrics"].pop("time_to_first_token", None)
        lines.append(json.dumps(r))
    p = tmp_path / "profile_export.jsonl"
    p.write_text("\n".join(lines))
    with pytest.raises(TraceError, match="--streaming"):
        read_format(p)


def test_the_acceptance_histograms_give_per_position_shares_consistent_with_the_counts():
    """The export's dict histograms ({"1": 15, "2": 23}: steps accepting exactly j drafts), summed over
    the run, give s_j; 1 + sum s_j is the acceptance length the step and token counts give."""
    row = ingest_paths([JSONL], labels=FLAGS).runs.iloc[0]
    recs = [r for r in records() if r["metadata"]["benchmark_phase"] == "profiling" and r["error"] is None]
    total = np.zeros(4)
    for r in recs:
        for j, c in r["spec_decode_acceptance"]["acceptance_histogram"].items():
            total[int(j)] += c
    shares = [float(v) for v in row["per_position_acceptance"].split(";")]
    np.testing.assert_allclose(shares, [total[j:].sum() / total.sum() for j in (1, 2, 3)], rtol=1e-5)
    assert 1 + sum(shares) == pytest.approx(row["acceptance_length"], rel=1e-5)
