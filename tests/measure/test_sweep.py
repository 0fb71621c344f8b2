"""run_sweep end to end against the stand-in server and client: lifecycle, manifest, scrapes,
ingest, resume after a kill, failing servers, the budget, a hung client."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_sd.measure import load_plan, run_sweep
from bayes_sd.measure.plan import PlanError
from bayes_sd.measure.sweep import Budget
from bayes_sd.traces.manifest import read_manifest


def _counter(path: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)}\s+(\S+)", Path(path).read_text(), re.M)
    return float(m.group(1))


def _ingest_points(out: Path, points) -> object:
    """The runs of a sweep folder as `bayes-sd ingest DIR` gives them; before the ingest reads
    manifests, each report with its point's configuration as labels."""
    from bayes_sd.traces import formats, ingest_paths

    if "manifest" in formats.FORMATS:
        return ingest_paths([out]).runs
    import pandas as pd

    rows = []
    for p in points:
        labels = {k: p.configuration[k] for k in ("verifier", "drafter", "k", "hardware", "dataset")}
        runs = ingest_paths([p.files["report"]], labels=labels).runs.assign(run_id=p.id)
        rows.append(runs)
    return pd.concat(rows, ignore_index=True)


def test_two_configurations_two_loads_end_to_end(make_plan, kit, tmp_path):
    plan = load_plan(make_plan())
    out = tmp_path / "sweep"
    lines = []
    result = run_sweep(plan, out, on_point=lambda p, n, s: lines.append((p.id, p.status, n, s)))

    assert [x[:3] for x in lines] == [("base@rate-40", "done", 6), ("base@rate-80", "done", 6),
                                      ("spec-k3@rate-40", "done", 6), ("spec-k3@rate-80", "done", 6)]
    # one server per configuration, each stopped: no process left
    pids = kit.pids(tmp_path)
    assert len(pids) == 2 and not any(kit.pid_alive(p) for p in pids)
    points = read_manifest(out / "manifest.json")
    assert [p.id for p in points] == [x[0] for x in lines] and {p.status for p in points} == {"done"}
    top = json.loads((out / "manifest.json").read_text())
    assert top["plan_hash"] == plan.hash() and top["plan"]["loads"]["values"] == [40, 80]
    for p in points:
        assert p.configuration["k"] == (0 if p.id.startswith("base") else 3)
        assert p.load == {"type": "rate", "value": float(p.id.split("-")[-1])}
        assert p.engine == {"name": "llama.cpp", "version": "b9999-fake"}
        assert p.tool == {"name": "fake_client", "version": "unknown"}
        assert p.commands["server"][1] == str(kit.FAKE_SERVER) and "--k" in p.commands["server"]
        assert p.commands["client"][p.commands["client"].index("--rate") + 1] == p.id.split("-")[-1]
        assert p.started <= p.ended and p.error is None
        assert Path(p.files["log"]).name == f"{p.configuration['name']}.log"
    # the scrapes bracket each point: the requests between them are the point's, warm-up before
    for cfg in ("base", "spec-k3"):
        first, second = (next(p for p in points if p.id == f"{cfg}@rate-{r}") for r in (40, 80))
        assert _counter(first.files["metrics_before"], "fake_requests_total") == 2  # the warm-up
        for p in (first, second):
            report = json.loads(Path(p.files["report"]).read_text())
            n = report["completed"] + report["failed"]
            assert _counter(p.files["metrics_after"], "fake_requests_total") - \
                _counter(p.files["metrics_before"], "fake_requests_total") == n == 6
        assert _counter(first.files["metrics_after"], "fake_requests_total") == \
            _counter(second.files["metrics_before"], "fake_requests_total")
    # one run per point, with its configuration and load; the k = 3 server's counters give k = 3
    runs = _ingest_points(out, points).set_index("run_id")
    assert sorted(runs.index) == sorted(p.id for p in points)
    for p in points:
        row = runs.loc[p.id]
        assert row["k"] == p.configuration["k"] and row["load_type"] == "rate"
        assert row["rate_rps"] == pytest.approx(p.load["value"])
        assert row["drafter"] == p.configuration["drafter"] and row["n_requests"] > 0
    spec = runs.loc["spec-k3@rate-40"]
    assert spec["draft_tokens"] == pytest.approx(3 * spec["num_drafts"]) and spec["acceptance_length"] > 1
    assert result.counts() == {"done": 4, "failed": 0, "skipped": 0}


def test_a_server_that_never_becomes_healthy_or_dies_fails_its_points_and_the_sweep_goes_on(make_plan, kit, tmp_path):
    pid_file = tmp_path / "server.pids"
    plan = load_plan(make_plan([
        kit.config("stuck", 2, pid_file, server_command=kit.server_argv("--never-healthy")),
        kit.config("crash", 2, pid_file, server_command=kit.server_argv("--exit-at-start")),
        kit.config("good", 2, pid_file),
    ], server={"startup_timeout_s": 1.0}))
    out = tmp_path / "sweep"
    result = run_sweep(plan, out)
    points = {p.id: p for p in read_manifest(out / "manifest.json")}
    for load in ("rate-40", "rate-80"):
        stuck, crash = points[f"stuck@{load}"], points[f"crash@{load}"]
        assert stuck.status == crash.status == "failed"
        assert "not healthy within 1 s" in stuck.error and "fake server: pid" in stuck.error  # the log tail
        assert "exited with status 4" in crash.error and "exiting at start as asked" in crash.error
        assert points[f"good@{load}"].status == "done"
    assert "exiting at start" in (out / "logs" / "crash.log").read_text()
    assert not any(kit.pid_alive(p) for p in kit.pids(tmp_path))
    assert len(result.ran) == 6 and result.counts()["failed"] == 4


def test_a_server_dying_mid_sweep_fails_the_rest_of_its_configuration(make_plan, kit, tmp_path):
    pid_file = tmp_path / "server.pids"
    plan = load_plan(make_plan([kit.config("fragile", 1, pid_file, server_command=kit.server_argv(
        "--die-after", "9")), kit.config("good", 1, pid_file)], loads={"values": [40, 60, 80]}))
    out = tmp_path / "sweep"
    run_sweep(plan, out)
    points = {p.id: p for p in read_manifest(out / "manifest.json")}
    # 2 warm-up + 6 requests; the second point's second request kills it
    assert points["fragile@rate-40"].status == "done"
    assert points["fragile@rate-60"].status == "failed" and "dying after 9" in points["fragile@rate-60"].error
    assert points["fragile@rate-80"].status == "failed" and "server" in points["fragile@rate-80"].error
    assert all(points[f"good@rate-{r}"].status == "done" for r in (40, 60, 80))
    assert not any(kit.pid_alive(p) for p in kit.pids(tmp_path))


def test_a_hung_client_is_killed_at_its_hard_timeout(make_plan, kit, tmp_path):
    pid_file = tmp_path / "server.pids"
    plan = load_plan(make_plan([kit.config("hang", 0, pid_file)], client={
        "command": kit.client_argv("rate", "--hang"), "timeout_grace_s": 0.5}, loads={"values": [40],
                                                                                   "max_seconds": 0.5}))
    out = tmp_path / "sweep"
    result = run_sweep(plan, out)
    (point,) = result.points
    assert point.status == "failed" and "hard time-out of 1 s" in point.error and "fake client" in point.error
    assert result.seconds < 10


def _run_cli_in_subprocess(plan: Path, out: Path, *extra) -> subprocess.Popen:
    """`bayes-sd sweep` in a child process; only its own subcommand is registered (the full parser
    imports PyMC for other subcommands: 3 s). Ctrl-C raises KeyboardInterrupt there even when this
    test runs with SIGINT ignored (as a background job does)."""
    code = ("import argparse, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from bayes_sd.cli import sweep\n"
            "p = argparse.ArgumentParser(); sweep.add_parser(p.add_subparsers(dest='command'))\n"
            "args = p.parse_args(sys.argv[1:]); sys.exit(args.func(args))")
    return subprocess.Popen([sys.executable, "-c", code, "sweep", str(plan), "--out", str(out), "--no-progress",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _manifest_ids(out: Path, status: str = "done") -> list:
    try:
        data = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    return [p["id"] for p in data["points"] if p["status"] == status]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_resume_after_the_sweep_is_killed_mid_point_runs_only_the_missing_points(make_plan, kit, tmp_path, sig):
    # a fast first point (3 requests at 10/s), a slower second (3/s: 0.7 s), killed while its client runs
    plan_path = make_plan(loads={"max_requests": 3, "values": [10, 3]})
    out = tmp_path / "sweep"
    proc = _run_cli_in_subprocess(plan_path, out)
    try:
        second = out / "logs" / "base@rate-3.client.log"
        assert kit.wait_until(lambda: _manifest_ids(out) == ["base@rate-10"] and second.is_file() and
                              "fake client" in second.read_text(), timeout=30, every=0.005), proc.communicate()
        first = Path(out / "reports" / "base@rate-10.json")
        before = first.read_bytes(), first.stat().st_mtime_ns
        os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and "--resume" in stderr, stderr
        assert _manifest_ids(out, "failed") == ["base@rate-3"]  # the interrupted point, recorded
    else:
        assert proc.returncode == -signal.SIGKILL
    # no server outlives the sweep, even a SIGKILLed one (PR_SET_PDEATHSIG)
    assert kit.wait_until(lambda: not any(kit.pid_alive(p) for p in kit.pids(tmp_path)), timeout=10)
    assert len(kit.pids(tmp_path)) == 1

    plan = load_plan(plan_path)
    ran = []
    result = run_sweep(plan, out, resume=True, on_point=lambda p, n, s: ran.append(p.id))
    assert ran == ["base@rate-3", "spec-k3@rate-10", "spec-k3@rate-3"]
    assert result.skipped_done == ["base@rate-10"]
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    assert _manifest_ids(out) == ["base@rate-10", "base@rate-3", "spec-k3@rate-10", "spec-k3@rate-3"], \
        [p.error for p in result.points]
    assert not any(kit.pid_alive(p) for p in kit.pids(tmp_path))


def test_resume_refuses_another_sweep_and_a_second_run_needs_resume(make_plan, kit, tmp_path):
    pid_file = tmp_path / "server.pids"
    path = make_plan([kit.config("only", 2, pid_file)], loads={"values": [40]})
    out = tmp_path / "sweep"
    run_sweep(load_plan(path), out)
    with pytest.raises(PlanError, match="--resume"):
        run_sweep(load_plan(path), out)
    # nothing left to do: no server started
    result = run_sweep(load_plan(path), out, resume=True)
    assert result.ran == [] and result.skipped_done == ["only@rate-40"] and len(kit.pids(tmp_path)) == 1
    # more loads extend the same sweep
    text = path.read_text()
    path.write_text(text.replace("values = [40]", "values = [40, 80]"))
    assert run_sweep(load_plan(path), out, resume=True).ran == ["only@rate-80"]
    # another max_requests, or another k for a configuration with done points: another sweep
    path.write_text(text.replace("max_requests = 6", "max_requests = 7"))
    with pytest.raises(PlanError, match="loads.max_requests"):
        run_sweep(load_plan(path), out, resume=True)
    path.write_text(text.replace("k = 2", "k = 3"))
    with pytest.raises(PlanError, match="configuration 'only' changed .*k"):
        run_sweep(load_plan(path), out, resume=True)


def test_the_budget_stops_starting_points_and_skips_the_rest(make_plan, tmp_path):
    plan = load_plan(make_plan())
    out = tmp_path / "sweep"
    notes = []
    result = run_sweep(plan, out, budget_minutes=0.1 / 60, on_note=notes.append)
    statuses = [p.status for p in read_manifest(out / "manifest.json")]
    assert statuses == ["done", "skipped", "skipped", "skipped"]  # the first point always runs
    assert result.budget_stopped and any("budget" in n for n in notes)
    assert all("budget" in p.error for p in result.points[1:])
    # resume without a budget runs the skipped points
    assert run_sweep(plan, out, resume=True).ran == ["base@rate-80", "spec-k3@rate-40", "spec-k3@rate-80"]


def test_budget_estimates_the_next_point_from_the_points_so_far():
    b = Budget(seconds=100.0)
    assert b.allows(99.0, needs_start=True)  # nothing measured yet: no estimate
    b.points += [10.0, 20.0]
    b.starts += [30.0]
    assert b.estimate(needs_start=False) == 15.0 and b.estimate(needs_start=True) == 45.0
    assert b.allows(85.0, needs_start=False) and not b.allows(85.1, needs_start=False)
    assert not b.allows(60.0, needs_start=True)
    assert Budget(seconds=None).allows(1e9, needs_start=True)


def test_a_missing_client_program_is_refused_before_anything_starts(make_plan, kit, tmp_path):
    plan = load_plan(make_plan(client={"kind": "guidellm", "command": [], "executable": "no-such-guidellm-x",
                                       "data": "kind=synthetic_text,prompt_tokens=8,output_tokens=8"}))
    with pytest.raises(PlanError, match="no-such-guidellm-x.*not found.*bayes_sd\\[sweep\\]"):
        run_sweep(plan, tmp_path / "sweep")
    assert kit.pids(tmp_path) == [] and not (tmp_path / "sweep").exists()


def test_secrets_stay_out_of_the_manifest(make_plan, kit, tmp_path):
    pid_file = tmp_path / "server.pids"
    path = make_plan([kit.config("only", 0, pid_file, env={"MY_API_TOKEN": "tok-s3cr3t-value"})],
                     client={"command": kit.client_argv("rate", "--metadata", "auth=tok-s3cr3t-value")},
                     loads={"values": [40]})
    out = tmp_path / "sweep"
    (point,) = run_sweep(load_plan(path), out).points
    assert point.status == "done"
    text = (out / "manifest.json").read_text()
    assert "tok-s3cr3t-value" not in text and "auth=***" in text and '"MY_API_TOKEN": "***"' in text
    assert "tok-s3cr3t-value" in Path(point.files["report"]).read_text()  # it did reach the client
    assert run_sweep(load_plan(path), out, resume=True).ran == []  # the redacted plan is still the same sweep
