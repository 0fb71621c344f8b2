"""`bayes-sd sweep`: dry run, one line per point, the summary, exit statuses, one-line errors."""

from __future__ import annotations

import json

import pytest

from bayes_sd.cli import main


def test_help_documents_the_plan_and_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out and "bayes-sd sweep plan.toml --out sweep/ --resume" in out.split("Example")[-1]
    assert "--quiet" in out and "--verbose" in out and "[[configurations]]" in out and "{k_plus_1}" in out


def test_dry_run_prints_every_command_and_runs_nothing(make_plan, tmp_path, capsys):
    plan = make_plan()
    out = tmp_path / "sweep"
    assert main(["sweep", str(plan), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert text.count("server: ") == 2 and "--k 3 --pid-file" in text
    assert text.count("fake_client.py --url http://127.0.0.1:") == 4 and "--rate 80 " in text
    assert "spec-k3@rate-80.before.prom" in text and "4 points" in text


def test_a_sweep_prints_a_line_per_point_and_a_summary(make_plan, kit, tmp_path, capsys):
    pid_file = tmp_path / "server.pids"
    plan = make_plan([kit.config("good", 2, pid_file),
                      kit.config("bad", 2, pid_file, server_command=kit.server_argv("--exit-at-start"))],
                     loads={"values": [40]})
    out = tmp_path / "sweep"
    assert main(["sweep", str(plan), "--out", str(out), "--no-progress"]) == 1  # a point failed
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["good", "rate", "40", "done"] and lines[0].split()[-2:] == ["6", "requests"]
    assert lines[1].split()[:4] == ["bad", "rate", "40", "failed"] and "exited with status 4" in lines[1]
    assert lines[2].startswith("sweep: 2 points") and "1 done, 1 failed, 0 skipped" in lines[2]
    assert json.loads((out / "manifest.json").read_text())["points"][0]["status"] == "done"
    # -q keeps the summary only; --resume re-runs the failed point (which fails again: exit 1)
    assert main(["sweep", str(plan), "--out", str(out), "-q", "--resume"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[0].startswith("sweep: 2 points")


def test_the_budget_exits_0_with_a_summary(make_plan, tmp_path, capsys):
    plan = make_plan()
    assert main(["sweep", str(plan), "--out", str(tmp_path / "s"), "--budget-minutes", "0.001", "-q"]) == 0
    captured = capsys.readouterr()
    assert "1 done, 0 failed, 3 skipped" in captured.out and "--resume" in captured.err


@pytest.mark.parametrize(("args", "message"), [
    (["--budget-minutes", "0"], "--budget-minutes 0: give a positive number"),
    (["--resume"], None),
])
def test_user_errors_are_one_line(make_plan, tmp_path, capsys, args, message):
    plan = make_plan(server={"host": "10.1.2.3"})
    assert main(["sweep", str(plan), "--out", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bayes-sd sweep: error: ")
    assert (message or "server.host = '10.1.2.3' is not a loopback address") in err
    assert not (tmp_path / "s").exists()
