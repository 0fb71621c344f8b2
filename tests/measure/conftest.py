"""Shared by the sweep tests: the stand-in server and client, free ports, plan files, process checks."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAKE_SERVER = HERE / "fake_server.py"
FAKE_CLIENT = HERE / "fake_client.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Running: not gone, not a zombie whose threads have all exited."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        if Path("/proc").exists():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    for t in tasks:
        try:
            stat = (t / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] != "Z":
            return True
    return False


def wait_until(cond, timeout: float = 10.0, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def toml_text(plan: dict) -> str:
    lines = []
    for table in ("server", "client", "loads"):
        if table in plan:
            lines.append(f"[{table}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in plan[table].items()]
            lines.append("")
    for cfg in plan.get("configurations", []):
        lines.append("[[configurations]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in cfg.items()]
        lines.append("")
    return "\n".join(lines)


def server_argv(*extra) -> list:
    return [sys.executable, str(FAKE_SERVER), "--host", "{host}", "--port", "{port}", "--k", "{k}",
            "--pid-file", "{pid_file}", *extra]


def client_argv(load: str = "rate", *extra) -> list:
    return [sys.executable, str(FAKE_CLIENT), "--url", "{url}", f"--{load}", "{" + load + "}",
            "--max-requests", "{max_requests}", "--max-seconds", "{max_seconds}", "--output", "{output}",
            "--seed", "{seed}", "--model", "{model}", "--metadata", "sweep_point={point}", *extra]


def config(name: str, k: int, pid_file: Path, **more) -> dict:
    return {"name": name, "verifier": "fake-verifier", "drafter": "none" if k == 0 else "fake-drafter", "k": k,
            "hardware": "cpu", "dataset": "fake-words", "vars": {"pid_file": str(pid_file)}, **more}


@pytest.fixture
def make_plan(tmp_path):
    """Write a plan for the stand-in server and client; returns its path. Keyword arguments replace
    whole tables or keys of them (``server={...}`` merges into the server table)."""

    def make(configurations=None, *, server=None, client=None, loads=None, name="plan.toml") -> Path:
        pid_file = tmp_path / "server.pids"
        plan = {
            "server": {"command": server_argv(), "host": "127.0.0.1", "port": free_port(),
                       "startup_timeout_s": 15, "stop_timeout_s": 5, "warmup_requests": 2, "warmup_tokens": 4},
            "client": {"kind": "command", "command": client_argv(), "timeout_grace_s": 30},
            "loads": {"type": "rate", "values": [40, 80], "max_requests": 6, "max_seconds": 10},
            "configurations": configurations or [config("base", 0, pid_file), config("spec-k3", 3, pid_file)],
        }
        plan["server"].update(server or {})
        plan["client"].update(client or {})
        plan["loads"].update(loads or {})
        path = tmp_path / name
        path.write_text(toml_text(plan))
        return path

    return make


def pids(tmp_path: Path) -> list[int]:
    f = tmp_path / "server.pids"
    return [int(x) for x in f.read_text().split()] if f.exists() else []


@pytest.fixture
def kit():
    """The helpers above, for the test modules (which cannot import this file under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(free_port=free_port, pid_alive=pid_alive, wait_until=wait_until, toml_text=toml_text,
                           server_argv=server_argv, client_argv=client_argv, config=config, pids=pids,
                           FAKE_SERVER=FAKE_SERVER, FAKE_CLIENT=FAKE_CLIENT)
