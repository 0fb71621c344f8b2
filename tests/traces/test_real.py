"""The bundled real measurements: long-format reader, canonical tables, saturation flags."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_sd import datasets
from bayes_sd.datasets import data_dir
from bayes_sd.traces.real import read_real_long, short_dataset, short_hardware
from bayes_sd.traces.schema import RUNS, TraceError
from bayes_sd.traces.validate import validate_runs

REAL = data_dir() / "real"
B200_LONG = REAL / "speculators_qwen38_27b_b200.csv"
EAGLE_LONG = REAL / "vllm_eagle_bs1_k_sweeps.csv"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def b200() -> pd.DataFrame:
    before = sha(B200_LONG)
    runs = read_real_long(B200_LONG)
    assert sha(B200_LONG) == before  # the input file is only read
    return runs.set_index("run_id", drop=False)


def test_b200_canonical_runs(b200):
    assert len(b200) == 48 and list(b200.columns) == [c.name for c in RUNS]
    assert set(b200["hardware"]) == {"B200"} and set(b200["drafter"]) == {"none", "dspark", "mtp"}
    assert set(b200["dataset"]) == {"HumanEval", "math_reasoning"}
    assert set(b200["load_type"]) == {"concurrency"}
    assert sorted(b200["concurrency"].unique()) == [1, 2, 4, 8, 16, 32, 64, 128]
    r = b200.loc["b200-qwen27b-dspark-k7-HumanEval-c16"]
    assert r["k"] == 7 and r["concurrency"] == 16 and r["n_requests"] == 402
    assert r["achieved_rps"] == pytest.approx(3.333, abs=1e-3)
    assert r["latency_mean_s"] == pytest.approx(4.799, abs=1e-3)  # Little's law, seconds
    assert r["ttft_p50_s"] == pytest.approx(0.071568, abs=1e-5)  # median_ttft_ms / 1000
    assert r["tpot_mean_s"] == pytest.approx(0.005765, abs=1e-5)  # mean_itl_ms / 1000
    assert r["draft_tokens"] == r["num_drafts"] * 7
    assert r["acceptance_length"] == pytest.approx(1 + r["accepted_tokens"] / r["num_drafts"], rel=1e-6)
    base = b200[b200["k"] == 0]
    assert base["acceptance_length"].isna().all() and (base["drafter"] == "none").all()


def test_b200_saturation_flags(b200):
    flagged = set(b200.index[b200["saturated"]])
    assert flagged == {"b200-qwen27b-dspark-k7-HumanEval-c128", "b200-qwen27b-dspark-k7-math_reasoning-c128"}
    assert not b200.loc[b200["concurrency"] <= 64, "saturated"].any()
    why = b200.loc["b200-qwen27b-dspark-k7-HumanEval-c128", "saturation_reason"]
    assert "TTFT 11 s" in why
    assert (b200.loc[~b200["saturated"], "saturation_reason"] == "").all()


def test_eagle_runs_without_latency():
    runs = read_real_long(EAGLE_LONG).set_index("run_id", drop=False)
    assert len(runs) == 21 and runs["latency_mean_s"].isna().all()
    assert (runs["concurrency"] == 1).all() and not runs["saturated"].any()
    van = runs[(runs["source"] == "vllm_issue20780_eagle_k_sweep") & (runs["k"] == 0)].iloc[0]
    assert van["tpot_mean_s"] == pytest.approx(0.00707)
    e3 = runs[(runs["drafter"] == "eagle3-llama3.1-8b") & (runs["k"] == 7) & (runs["hardware"] == "unknown")]
    assert e3["acceptance_length"].tolist() == [3.54]
    assert runs.loc[runs["source"] == "vllm_pr16937_eagle_bs1_h100", "hardware"].eq("H100").all()
    assert runs["run_id"].is_unique
    with pytest.raises(TraceError, match="latency_mean_s|n_requests|prompt_len"):
        validate_runs(runs.reset_index(drop=True), "eagle", require_stats=True)


def test_name_normalisation():
    assert short_hardware("1x NVIDIA B200 (TP=1)") == "B200"
    assert short_hardware("8x NVIDIA H100 80GB") == "8xH100"
    assert short_hardware("not stated in issue (same author reports H100 elsewhere)") == "unknown"
    assert short_dataset("RedHatAI/speculator_benchmarks HumanEval (max_tokens 1024)") == "HumanEval"
    assert short_dataset("MT-Bench (80 prompts)") == "MT-Bench"


def test_bundled_canonical_files_match_the_reader(b200):
    """data/real/*_runs.csv are what make_canonical.py writes from the long files: every value and
    the same saturated runs. The reasons' wording is that of the rules when the files were written
    (the saturation check since names each rule), so only their presence is compared."""
    for bundled, read in ((datasets.load_b200_runs(), b200.reset_index(drop=True)),
                          (datasets.load_eagle_bs1_runs(), read_real_long(EAGLE_LONG))):
        pd.testing.assert_frame_equal(bundled.drop(columns="saturation_reason"),
                                      read.drop(columns="saturation_reason"))
        assert ((bundled["saturation_reason"] != "") == bundled["saturated"]).all()
        assert ((read["saturation_reason"] != "") == read["saturated"]).all()
    flagged = b200.loc[b200["saturated"], "run_id"].tolist()
    assert flagged == ["b200-qwen27b-dspark-k7-HumanEval-c128", "b200-qwen27b-dspark-k7-math_reasoning-c128"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/ data folder not beside the repository")
def test_bundled_long_files_are_unchanged_copies():
    for name in ("speculators_qwen38_27b_b200.csv", "vllm_eagle_bs1_k_sweeps.csv"):
        assert sha(REAL / name) == sha(SHARED / name)


def test_wrong_kind_and_bad_unit_rejected(tmp_path):
    runs_file = tmp_path / "runs.csv"
    datasets.load_b200_runs().to_csv(runs_file, index=False)
    with pytest.raises(TraceError, match="runs.csv"):
        read_real_long(runs_file)
    long = pd.read_csv(B200_LONG)
    long.loc[long["metric"] == "median_ttft_ms", "unit"] = "s"
    bad = tmp_path / "long.csv"
    long.to_csv(bad, index=False)
    with pytest.raises(TraceError, match="median_ttft_ms") as e:
        read_real_long(bad)
    assert "long.csv" in str(e.value) and "'unit'" in str(e.value)


def test_datasets_paths_and_fleet():
    d = datasets.data_dir()
    assert (d / "real" / "b200_runs.csv").is_file()
    fleet = d / "synthetic" / "fleet_runs_synthetic.csv"
    if fleet.is_file():
        runs = datasets.load_fleet_runs()
        assert len(runs) > 0 and np.isin(runs["load_type"], ["rate", "concurrency"]).all()
    else:
        with pytest.raises(FileNotFoundError, match="fleet_runs_synthetic.csv"):
            datasets.load_fleet_runs()
    if not (d / "synthetic" / "fleet_models_synthetic.csv").is_file():
        with pytest.raises(FileNotFoundError, match="fleet_models_synthetic.csv"):
            datasets.load_fleet_models()
    else:
        assert len(datasets.load_fleet_models()) > 0
