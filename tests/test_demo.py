"""The main job (`bayes-sd demo`): plumbing with a mocked sampler; the real run is in the README/CI-free bench."""

import json

import pandas as pd
import pytest

from bayes_sd.cli import main


def test_demo_writes_every_output(mock_pymc_sample, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["demo", "--quick", "--out", str(out), "--sampler", "pymc", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert stage in printed
    for name in ("posterior.nc", "report.html", "report.md", "recommendations.csv", "data_summary.csv",
                 "vllm_config_dspark.json"):
        assert (out / name).is_file(), name
    recs = pd.read_csv(out / "recommendations.csv")
    need = {"best_k", "latency_mean_s", "latency_q05_s", "latency_q95_s", "p_best", "expected_regret",
            "speedup_vs_k0", "p_slower_than_k0"}
    assert need <= set(recs.columns)
    # the vLLM configuration is the DSpark rows' recommendation: its draft lengths are theirs
    cfg = json.loads((out / "vllm_config_dspark.json").read_text())
    dspark = recs.loc[recs["drafter"] == "dspark", "best_k"]
    assert {r["num_speculative_tokens"] for r in cfg["schedule"]} <= set(dspark)
    assert (cfg["speculative_config"] is None) == (dspark == 0).all()
    assert (out / "posterior.nc").stat().st_mode & 0o044  # readable by others, not 0600


def test_demo_model_option_reaches_the_fit_with_that_models_sampling(monkeypatch, tmp_path):
    """``bayes-sd demo --model NAME`` fits that configuration with its own [sampling] settings."""
    from bayes_sd import demo
    from bayes_sd.model import LatencyModel

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(self, runs, **kwargs):
        seen.update(config=self.config["name"], models=kwargs.pop("models"), **kwargs)
        raise Stop

    monkeypatch.setattr(LatencyModel, "fit", fake_fit)
    with pytest.raises(Stop):
        main(["demo", "--model", "moe_roofline", "--out", str(tmp_path / "r"), "--no-progress"])
    assert seen["config"] == "moe_roofline"
    assert seen["models"] is not None and "experts" in seen["models"]  # so the MoE verifier is fitted as MoE
    expected = demo.demo_sampling("moe_roofline")
    assert {k: seen[k] for k in expected} == expected and expected["draws"] == 3000  # moe_roofline's [sampling]


def test_demo_quiet_prints_only_its_result(mock_pymc_sample, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["demo", "--quick", "--quiet", "--out", str(out), "--sampler", "pymc"]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip().splitlines() == [f"done: {out / 'report.html'}"]
    assert "Sampling:" not in printed.err and "FutureWarning" not in printed.err
