"""Reading / writing trace files and ingesting a set of them into one runs table."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_sd.datasets import data_dir
from bayes_sd.traces.ingest import IngestResult, ingest_paths
from bayes_sd.traces.io import read_table, write_table
from bayes_sd.traces.schema import TraceError
from bayes_sd.traces.validate import validate_requests, validate_runs

REAL = data_dir() / "real"


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_requests(run_ids=("m1", "m2"), n=30) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    parts = []
    for j, r in enumerate(run_ids):
        start = np.sort(rng.uniform(0, 60, n))
        lat = 1.0 + j + rng.uniform(0, 0.5, n)
        parts.append(pd.DataFrame({"run_id": r, "request_id": [f"{r}-{i}" for i in range(n)], "start_s": start,
                                   "first_token_s": start + 0.05, "end_s": start + lat, "prompt_tokens": 100,
                                   "output_tokens": rng.integers(2, 300, n), "draft_tokens": 40,
                                   "accepted_tokens": 20, "num_drafts": 10}))
    return pd.concat(parts, ignore_index=True)


def make_meta(run_ids=("m1", "m2")) -> pd.DataFrame:
    return pd.DataFrame({"run_id": list(run_ids), "source": "mine", "hardware": "H100", "verifier": "v",
                         "drafter": "d", "dataset": "x", "k": 4, "load_type": "concurrency",
                         "concurrency": [float(2 ** i) for i in range(len(run_ids))]})


def make_runs() -> pd.DataFrame:
    return pd.DataFrame({"run_id": ["s1", "s2"], "source": "theirs", "hardware": "A100", "verifier": "v",
                         "drafter": "none", "dataset": "x", "k": 0, "load_type": "rate", "rate_rps": [1.0, 2.0],
                         "achieved_rps": [1.0, 2.0], "prompt_len": 100.0, "output_len": 200.0, "n_requests": 100,
                         "latency_mean_s": [3.0, 3.2], "ttft_mean_s": 0.05})


# --- io ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_runs_and_requests(tmp_path, suffix):
    runs = validate_runs(make_runs(), "runs")
    req = validate_requests(make_requests(), "requests")
    for df, kind, check in ((runs, "runs", validate_runs), (req, "requests", validate_requests)):
        path = write_table(df, tmp_path / f"{kind}{suffix}")
        got_kind, back = read_table(path)
        assert got_kind == kind
        pd.testing.assert_frame_equal(check(back, str(path)), df)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp files left


def test_kind_detected_from_columns_not_name(tmp_path):
    p = tmp_path / "requests.csv"  # misleading name: holds runs
    make_runs().to_csv(p, index=False)
    assert read_table(p)[0] == "runs"
    m = tmp_path / "table.csv"
    pd.DataFrame({"name": ["v"], "params_b": [8.0], "layers": [32]}).to_csv(m, index=False)
    assert read_table(m)[0] == "models"
    assert read_table(REAL / "vllm_eagle_bs1_k_sweeps.csv")[0] == "real_long"
    # a runs table with a millisecond column is still a runs table; validation names the column
    ms = tmp_path / "ms.csv"
    make_runs().rename(columns={"latency_mean_s": "latency_mean_ms"}).to_csv(ms, index=False)
    kind, df = read_table(ms)
    with pytest.raises(TraceError, match="latency_mean_ms") as e:
        validate_runs(df, str(ms))
    assert "ms.csv" in str(e.value) and "divide by 1000" in str(e.value)


@pytest.mark.parametrize("name,content,problem", [
    ("empty.csv", b"", "empty"),
    ("header.csv", b"run_id,source,hardware,verifier\n", "no rows"),
    ("table.json", b"{}", "unknown file format"),
    ("broken.parquet", b"not a parquet file", "cannot read"),
    ("odd.csv", b"a,b,c\n1,2,3\n", "cannot tell which table"),
])
def test_unreadable_files(tmp_path, name, content, problem):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(TraceError, match=problem) as e:
        read_table(p)
    assert name in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(TraceError, match="not found"):
        read_table(tmp_path / "missing.csv")


def test_write_refuses_inputs_and_unknown_formats(tmp_path):
    src = tmp_path / "in.csv"
    make_runs().to_csv(src, index=False)
    before = sha(src)
    with pytest.raises(TraceError, match="overwrite an input"):
        write_table(make_runs(), src, protect=[src])
    with pytest.raises(TraceError, match="overwrite an input"):
        write_table(make_runs(), tmp_path / "." / "in.csv", protect=str(src))
    with pytest.raises(TraceError, match=r"\.csv or \.parquet"):
        write_table(make_runs(), tmp_path / "out.xlsx")
    assert sha(src) == before
    out = write_table(make_runs(), tmp_path / "sub" / "out.csv.gz")
    assert read_table(out)[0] == "runs"


# --- ingest ------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    paths = {
        "requests": tmp_path / "requests.parquet",
        "meta": tmp_path / "meta.csv",
        "runs": tmp_path / "runs.csv",
        "models": tmp_path / "models.csv",
    }
    make_requests().to_parquet(paths["requests"], index=False)
    make_meta().to_csv(paths["meta"], index=False)
    make_runs().to_csv(paths["runs"], index=False)
    pd.DataFrame({"name": ["v", "d"], "params_b": [8.0, 0.3], "layers": [32, 2]}).to_csv(paths["models"], index=False)
    return paths


def test_ingest_everything(files):
    inputs = list(files.values()) + [REAL / "speculators_qwen38_27b_b200.csv"]
    hashes = {p: sha(p) for p in inputs}
    res = ingest_paths(inputs)
    assert {p: sha(p) for p in inputs} == hashes  # inputs never modified
    assert isinstance(res, IngestResult)
    runs = res.runs.set_index("run_id")
    assert len(runs) == 2 + 2 + 48
    assert runs.loc["m1", "n_requests"] < 30 and runs.loc["m1", "acceptance_length"] == pytest.approx(3.0)
    assert runs.loc["m2", "latency_mean_s"] > runs.loc["m1", "latency_mean_s"]
    assert runs.loc["s1", "latency_mean_s"] == 3.0
    assert runs["saturated"].dtype == bool
    assert runs["saturated"].sum() == 2  # the two DSpark runs at concurrency 128
    assert list(res.runs["source"]) == sorted(res.runs["source"])
    assert sorted(res.models["name"]) == ["d", "v"]
    validate_runs(res.runs, "result", require_stats=False)


def test_ingest_requests_without_metadata(files):
    with pytest.raises(TraceError) as e:
        ingest_paths([files["requests"], files["runs"]])
    msg = str(e.value)
    assert "requests.parquet" in msg and "m1" in msg and "m2" in msg and "'run_id'" in msg


def test_ingest_metadata_without_requests(files):
    with pytest.raises(TraceError, match="no statistics and no request rows") as e:
        ingest_paths([files["meta"]])
    assert "meta.csv" in str(e.value)


def test_ingest_duplicate_run_ids_across_files(files, tmp_path):
    again = tmp_path / "again.csv"
    make_runs().to_csv(again, index=False)
    with pytest.raises(TraceError, match="s1") as e:
        ingest_paths([files["runs"], again])
    assert "again.csv" in str(e.value) and "runs.csv" in str(e.value)


def test_ingest_models_only_and_no_inputs(files):
    res = ingest_paths([files["models"]])
    assert len(res.runs) == 0 and len(res.models) == 2
    with pytest.raises(TraceError, match="no input files"):
        ingest_paths([])
