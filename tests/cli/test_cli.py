"""The bayes-sd command line: help texts, one-line errors, fit / predict plumbing."""

import argparse
import json

import pandas as pd
import pytest

from bayes_sd.cli import main
from bayes_sd.demo import MAIN_MODEL


def test_ingest_help_documents_every_run_column(capsys):
    from bayes_sd.traces.schema import RUNS

    with pytest.raises(SystemExit) as exc:
        main(["ingest", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for col in RUNS:
        assert col.name in out


def test_errors_are_one_line_without_traceback(capsys, tmp_path):
    code = main(["ingest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.csv" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_fit_cli_writes_a_loadable_posterior(mock_pymc_sample, b200_runs, tmp_path, capsys):
    """Plumbing only (mocked sampler): runs file -> fit -> netCDF that loads back."""
    from bayes_sd.model import LatencyModel

    runs_path = tmp_path / "runs.csv"
    b200_runs.to_csv(runs_path, index=False)
    out = tmp_path / "post.nc"
    assert main(["fit", str(runs_path), "--out", str(out), "--config", "default", "--sampler", "pymc", "--draws", "10",
                 "--tune", "0", "--chains", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote posterior" in printed
    model = LatencyModel.load(out)
    assert model.fit_data.n_runs == 46
    # ten prior draws of one chain never converge (no R-hat): fit sampled again twice (its default --retries 2),
    # each time with smaller steps, and says what it tried
    tried = model.fit_attempts
    assert [a["tune"] for a in tried] == [0, 200, 400] and [a["target_accept"] for a in tried] == [0.9, 0.95, 0.98]
    assert not tried[-1]["converged"] and "tried tune 0 at target acceptance 0.9" in printed


def test_fit_cli_starts_no_retry_past_the_retry_time_limit(mock_pymc_sample, b200_runs, tmp_path, capsys):
    """Plumbing only (mocked sampler): with --retry-minutes 0 the unconverged first attempt is the only one,
    and the line after sampling says why."""
    from bayes_sd.model import LatencyModel

    runs_path = tmp_path / "runs.csv"
    b200_runs.to_csv(runs_path, index=False)
    out = tmp_path / "post.nc"
    assert main(["fit", str(runs_path), "--out", str(out), "--config", "default", "--sampler", "pymc", "--draws", "10",
                 "--tune", "0", "--chains", "1", "--no-progress", "--retry-minutes", "0"]) == 0
    printed = capsys.readouterr().out
    model = LatencyModel.load(out)
    assert len(model.fit_attempts) == 1 and model.fit_attempts[0]["kept"] and model.fit_attempts[0]["seconds"] > 0
    assert "no further retry: the retry time limit (0 s) was reached" in printed
    assert "no further retry" in model.diagnostics_text()  # kept with the posterior


@pytest.mark.parametrize(("flags", "fitted"), [
    ([], [MAIN_MODEL, "default"]),  # the main job's form, the dense base as its fallback
    (["--config", "default"], ["default"]),  # nothing to fall back to
    (["--compare", "none"], [MAIN_MODEL]),
    (["--config", "roofline", "--compare", "per_position,default"], ["roofline", "per_position", "default"]),
])
def test_fit_cli_fits_the_main_jobs_form_and_falls_back_to_the_dense_base(flags, fitted, tmp_path):
    from bayes_sd.cli import fit as fit_cli
    from bayes_sd.model.config import load_config

    parser = argparse.ArgumentParser()
    fit_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["fit", "runs.csv", "--out", str(tmp_path / "p.nc"), *flags])
    assert [load_config(c)["name"] for c in fit_cli._candidates(args)] == fitted


@pytest.mark.parametrize(("converged", "caveat", "fitted"), [
    (True, "not comparable", ["moe_roofline_speculation"]),  # the fallback could not be chosen: not fitted
    (False, "not comparable", ["moe_roofline_speculation", "default"]),  # it replaces an unconverged fit
    (True, None, ["moe_roofline_speculation", "default"]),  # compared by elpd
])
def test_fit_cli_fits_the_fallback_only_where_it_could_be_chosen(converged, caveat, fitted, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from bayes_sd.cli import fit as fit_cli
    from bayes_sd.model import compare

    sampled = []

    def fake_fit(args, name, runs, models, progress):  # plumbing only: no graph, no sampling
        sampled.append(name)
        return SimpleNamespace(config={"name": name}, diagnostics=lambda: {"converged": converged},
                               save=lambda path: path)

    monkeypatch.setattr(fit_cli, "_fit", fake_fit)
    monkeypatch.setattr(fit_cli, "read_traces", lambda *a, **k: SimpleNamespace(runs=None, models=None))
    monkeypatch.setattr(compare, "loo_caveat", lambda m: caveat)
    stop = RuntimeError("compared")
    monkeypatch.setattr(compare, "compare_forms", lambda *a: (_ for _ in ()).throw(stop))
    try:
        fit_cli.run(argparse.Namespace(command="fit", runs=["runs.csv"], models=None, config="moe_roofline_speculation",
                                       compare=None, out=str(tmp_path / "p.nc"), quiet=True, no_progress=True,
                                       verbose=False))
    except RuntimeError as err:
        assert err is stop and len(fitted) > 1
    assert sampled == fitted


def test_fit_cli_samples_with_the_settings_that_converge_the_configuration(b200_runs, tmp_path, monkeypatch, capsys):
    """Without flags, fit samples as the configuration's [sampling] table says (the main job's model: 1000 tune +
    2000 draws from plausible starts); a flag overrides its one setting and leaves the others."""
    import bayes_sd.model.latency_model as latency_model

    seen = {}

    class Stop(Exception):
        pass

    def fake_sample(model, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(latency_model, "sample_until_converged", fake_sample)
    for name, stub in (("build", lambda self, runs, models=None: latency_model.pm.Model()),
                       ("_data_groups", lambda self: {}), ("_attrs", lambda self: {})):
        monkeypatch.setattr(latency_model.LatencyModel, name, stub)  # plumbing only: no graph, no sampling
    runs_path = tmp_path / "runs.csv"
    b200_runs.to_csv(runs_path, index=False)
    for flags, expected in (([], {"tune": 1000, "draws": 2000, "chains": 2, "target_accept": 0.9}),
                            (["--draws", "50", "--target-accept", "0.95"],
                             {"tune": 1000, "draws": 50, "chains": 2, "target_accept": 0.95})):
        with pytest.raises(Stop):
            main(["fit", str(runs_path), "--config", MAIN_MODEL, "--out", str(tmp_path / "p.nc"), *flags])
        assert {key: seen[key] for key in expected} == expected
        assert seen["start"] == "plausible" and seen["max_tree_depth"] == 10
        said = "".join(capsys.readouterr())
        assert f"({expected['tune']} tune + {expected['draws']} draws)" in said and "plausible" in said


def test_predict_cli_single_and_batch(fitted_b200, tmp_path, capsys):
    _, post = fitted_b200
    args = ["predict", str(post), "--verifier", "Qwen/Qwen3.8-27B", "--drafter", "dspark", "--hardware", "B200",
            "--dataset", "HumanEval", "--k", "7", "--concurrency", "16", "--prompt-len", "190", "--output-len", "760"]
    assert main(args) == 0
    assert "mean latency" in capsys.readouterr().out
    assert main(args + ["--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    model, _ = fitted_b200
    expected = model.predict_table(pd.DataFrame([{
        "verifier": "Qwen/Qwen3.8-27B", "drafter": "dspark", "hardware": "B200", "dataset": "HumanEval", "k": 7,
        "prompt_len": 190.0, "output_len": 760.0, "load_type": "concurrency", "rate_rps": None,
        "concurrency": 16.0}])).iloc[0]
    for key in ("latency_mean_s", "latency_q05_s", "latency_q95_s", "latency_p90_s", "speedup_vs_k0"):
        assert row[key] == pytest.approx(float(expected[key]), rel=1e-9), key
    cond = pd.DataFrame({"verifier": "Qwen/Qwen3.8-27B", "drafter": ["none", "mtp"], "hardware": "B200",
                         "dataset": "math_reasoning", "k": [0, 2], "prompt_len": 112, "output_len": 280,
                         "load_type": "concurrency", "concurrency": 32})
    cond.to_csv(tmp_path / "cond.csv", index=False)
    assert main(["predict", str(post), "--conditions", str(tmp_path / "cond.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 2
    assert {"latency_mean_s", "latency_q05_s", "latency_q95_s", "latency_p90_s", "latency_p99_s"} <= set(pred.columns)


def test_predict_cli_needs_a_load(fitted_b200, capsys):
    _, post = fitted_b200
    code = main(["predict", str(post), "--verifier", "Qwen/Qwen3.8-27B", "--hardware", "B200",
                 "--prompt-len", "100", "--output-len", "100"])
    assert code == 2 and "--rate-rps" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sweep", "ingest", "summary", "fit", "compare", "predict", "recommend",
                                     "what-if-drafter", "report", "demo"])
def test_every_help_documents_its_command_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out and f"bayes-sd {command}" in out.split("Example")[-1]
    assert "--quiet" in out and "--verbose" in out
