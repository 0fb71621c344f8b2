"""Child processes in their own process group, stopped as a group: a server or a client of a
sweep never outlives it.

Each child starts a new session (so the terminal's Ctrl-C reaches only the sweep, which then stops
it in order) and, on Linux, asks the kernel for SIGTERM should the sweep itself die
(``PR_SET_PDEATHSIG``), so even a SIGKILLed sweep leaves no server behind. :func:`stop_group`
sends SIGTERM to the group, waits, then SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["start_process", "stop_group", "group_alive", "run_bounded", "tail", "output_of"]

_PR_SET_PDEATHSIG = 1
#: held back while a child is forked (a Ctrl-C inside the fork would be lost), delivered right after
_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _child_setup() -> None:  # runs in the child between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start_process(argv: Sequence[str], log: Path, env: dict | None = None, append: bool = True) -> subprocess.Popen:
    """Start ``argv`` in a new process group, stdout and stderr to ``log``.

    Parameters
    ----------
    argv : sequence of str
        The command.
    log : pathlib.Path
        File receiving its output (created with its folder).
    env : dict, optional
        Variables added to this process's environment.
    append : bool, default True
        Append to ``log`` instead of replacing it.

    Raises
    ------
    OSError
        When the program cannot be started (not found, not executable); the message names it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    posix = hasattr(signal, "pthread_sigmask")
    proc = None
    with open(log, "ab" if append else "wb") as fh:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD) if posix else None
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    env=full_env, start_new_session=True,
                                    preexec_fn=_child_setup if posix else None)
        except OSError as e:
            raise OSError(f"cannot start {argv[0]!r}: {e.strerror or e}") from None
        finally:
            if posix:
                try:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a held signal is raised here
                except BaseException:
                    if proc is not None:
                        stop_group(proc, 10.0)
                    raise
    return proc


def _state(stat: str) -> tuple[str, int]:
    """(state, process group) from a /proc stat line."""
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0], int(fields[2])


def _running(pid_dir: Path, state: str) -> bool:
    """Not a zombie; a zombie leader whose other threads still exit counts as running (they hold its
    sockets until the last one is gone)."""
    if state != "Z":
        return True
    try:
        tasks = list((pid_dir / "task").iterdir())
    except OSError:
        return False
    for t in tasks:
        try:
            if _state((t / "stat").read_text())[0] != "Z":
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _members(pgid: int) -> list[int] | None:
    """Running processes of a group, from /proc; None where /proc is not available."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    out = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            state, group = _state((d / "stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
        if group == pgid and _running(d, state):
            out.append(int(d.name))
    return out


def group_alive(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` still runs (zombies do not count)."""
    members = _members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """Stop ``proc`` and every process of its group: SIGTERM, wait up to ``timeout`` s, SIGKILL.

    Parameters
    ----------
    proc : subprocess.Popen
        A process started by :func:`start_process` (its pid is its group id).
    timeout : float
        Seconds granted after SIGTERM.

    Returns
    -------
    int or None
        The leader's exit status (None if it could not be reaped).
    """
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_alive(pgid):
            return proc.returncode
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return None
    deadline = time.monotonic() + 10
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.returncode


def run_bounded(argv: Sequence[str], log: Path, timeout: float, env: dict | None = None,
                stop_timeout: float = 10.0) -> tuple[int | None, bool]:
    """Run ``argv`` to the end in its own process group, killed (group-wide) after ``timeout`` s.

    Parameters
    ----------
    argv : sequence of str
        The command.
    log : pathlib.Path
        Its stdout and stderr (replaced).
    timeout : float
        Hard limit in seconds.
    env : dict, optional
        Variables added to the environment.
    stop_timeout : float
        Seconds between SIGTERM and SIGKILL when it is stopped.

    Returns
    -------
    (returncode, timed_out)
        On KeyboardInterrupt the group is stopped and the interrupt re-raised.
    """
    proc = start_process(argv, log, env, append=False)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc, stop_timeout)
        return proc.returncode, True
    except BaseException:
        stop_group(proc, stop_timeout)
        raise
    if group_alive(proc.pid):  # the client returned but left children behind
        stop_group(proc, stop_timeout)
    return proc.returncode, False


def tail(path: Path, lines: int = 15, chars: int = 2000) -> str:
    """The last ``lines`` lines of a log (at most ``chars`` characters), '' if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    out = "\n".join(line.rstrip() for line in text.splitlines()[-lines:] if line.strip())
    return out[-chars:]


def output_of(argv: Sequence[str], timeout: float = 60.0, env: dict | None = None) -> str | None:
    """stdout and stderr of a short command (a ``--version``), or None when it fails or hangs."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, **(env or {})}, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    text = (done.stdout or "") + (done.stderr or "")
    return text if done.returncode == 0 or text.strip() else None
