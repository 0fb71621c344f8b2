"""Child processes run in their own group and are stopped as a group: SIGTERM, then SIGKILL."""

from __future__ import annotations

import sys
import time

import pytest

from bayes_sd.measure.process import group_alive, output_of, run_bounded, start_process, stop_group, tail

# a parent that ignores SIGTERM (unless told not to), starts a grandchild, prints both pids and sleeps
FAMILY = """
import signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("pids", child.pid, flush=True)
time.sleep(60)
"""


def _pids(log, kit) -> list[int]:
    assert kit.wait_until(lambda: "pids" in log.read_text(), timeout=10)
    grandchild = int(log.read_text().split("pids")[1].split()[0])
    return [grandchild]


@pytest.mark.parametrize("kind", ["polite", "stubborn"])
def test_stop_group_stops_the_process_and_its_children(tmp_path, kit, kind):
    log = tmp_path / "family.log"
    proc = start_process([sys.executable, "-c", FAMILY, kind], log)
    (grandchild,) = _pids(log, kit)
    assert group_alive(proc.pid) and kit.pid_alive(grandchild)
    t0 = time.monotonic()
    code = stop_group(proc, timeout=0.5)
    took = time.monotonic() - t0
    assert not group_alive(proc.pid) and not kit.pid_alive(proc.pid) and not kit.pid_alive(grandchild)
    if kind == "stubborn":  # SIGTERM ignored: SIGKILL after the timeout
        assert code == -9 and took >= 0.5
    else:
        assert code == -15 and took < 0.5


def test_run_bounded_kills_a_hung_command_and_its_children_at_the_timeout(tmp_path, kit):
    log = tmp_path / "client.log"
    t0 = time.monotonic()
    code, timed_out = run_bounded([sys.executable, "-c", FAMILY, "stubborn"], log, timeout=1.0, stop_timeout=0.3)
    assert timed_out and code == -9 and 1.0 <= time.monotonic() - t0 < 5
    (grandchild,) = _pids(log, kit)
    assert not kit.pid_alive(grandchild)


def test_run_bounded_returns_the_status_and_keeps_the_output(tmp_path):
    log = tmp_path / "ok.log"
    code, timed_out = run_bounded([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], log, timeout=30)
    assert (code, timed_out) == (3, False) and log.read_text() == "hello\n"
    # the log is replaced, not appended, for a client
    run_bounded([sys.executable, "-c", "print('again')"], log, timeout=30)
    assert log.read_text() == "again\n"


def test_a_missing_program_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot start 'no-such-program-x'"):
        start_process(["no-such-program-x", "--port", "1"], tmp_path / "x.log")


def test_tail_and_output_of(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing.log") == ""
    assert output_of([sys.executable, "-c", "import sys; print('v 1.2', file=sys.stderr)"]).strip() == "v 1.2"
    assert output_of(["no-such-program-x"]) is None
    assert output_of([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2) is None
