"""bayes-sd ingest / summary: folders, the saturation overrides and what the help says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bayes_sd.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
MOCK = DATA / "guidellm-0.8.1-generated-benchmarks.json"
PROBE = "sweep:1:throughput"  # GuideLLM's throughput strategy: flagged by design
LABELS = ["--verifier", "Qwen/Qwen3-8B", "--drafter", "d", "--k", "4", "--hardware", "cpu"]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(MOCK, tmp_path / "in" / "sweep.json")
    return tmp_path


def test_ingest_a_folder_with_overrides(folder, capsys):
    out = folder / "runs.csv"
    code = main(["ingest", str(folder / "in"), "--out", str(out), *LABELS, "--drop-run", "sweep:0:synchronous",
                 "--keep-run", PROBE, "--models-out", str(folder / "models.csv")])
    cap = capsys.readouterr()
    assert code == 0
    runs = pd.read_csv(out)
    assert sorted(runs["run_id"]) == [PROBE, "sweep:2:constant@18.08"]
    assert not runs.set_index("run_id").loc[PROBE, "saturated"]
    assert "sweep:0:synchronous" in cap.err and "--drop-run" in cap.err
    assert PROBE in cap.err and "--keep-run" in cap.err
    assert pd.read_csv(folder / "models.csv")["name"].tolist() == ["Qwen/Qwen3-8B"]  # from the catalogue


def test_no_saturation_check_and_summary_take_the_same_flags(folder, capsys):
    out = folder / "runs.csv"
    assert main(["ingest", str(folder / "in"), "--out", str(out), *LABELS, "--no-saturation-check",
                 "--max-num-seqs", "64", "--kv-cache-tokens", "193307"]) == 0
    runs = pd.read_csv(out)
    assert runs["saturated"].sum() == 1  # only the capacity probe, a value the report gives
    assert (runs["max_num_seqs"] == 64).all() and (runs["kv_cache_tokens"] == 193307).all()  # the server's settings
    capsys.readouterr()
    assert main(["summary", str(folder / "in"), *LABELS, "--drop-run", PROBE, "-q"]) == 0
    cap = capsys.readouterr()
    assert "Qwen/Qwen3-8B" in cap.out and PROBE in cap.err


def test_unknown_run_id_is_a_one_line_error(folder, capsys):
    code = main(["ingest", str(folder / "in"), "--out", str(folder / "o.csv"), *LABELS, "--keep-run", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "no run 'nope'" in err and len(err.strip().splitlines()) == 1


def test_help_lists_formats_manifest_and_overrides(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    out = capsys.readouterr().out
    for text in ("AIPerf", "llama.cpp", "SGLang", "manifest.json", "--no-saturation-check", "--keep-run",
                 "--drop-run", "a third of its configuration's capacity", "catalogue", "pinned_acceptance_length"):
        assert text in out, text


def test_files_inside_an_input_folder_are_never_overwritten(folder, capsys):
    inside = folder / "in" / "other_runs.csv"
    pd.DataFrame({"run_id": ["o1"], "source": "other", "hardware": "cpu", "verifier": "Qwen/Qwen3-8B",
                  "drafter": "none", "dataset": "x", "k": 0, "load_type": "rate", "rate_rps": 1.0,
                  "achieved_rps": 1.0, "prompt_len": 100.0, "output_len": 50.0, "n_requests": 40,
                  "latency_mean_s": 1.0}).to_csv(inside, index=False)
    before = inside.read_bytes()
    code = main(["ingest", str(folder / "in"), "--out", str(inside), *LABELS])
    assert code == 2 and "refusing to overwrite an input file" in capsys.readouterr().err
    assert inside.read_bytes() == before
