"""One server: start, health (with the /v1/models fallback), warm-up, scrapes, engine version, stop."""

from __future__ import annotations

import re
import socket
import sys
import time

import pytest

from bayes_sd.measure.server import Server, ServerError, engine_from_command, parse_version, port_in_use


def _server(tmp_path, kit, *extra, port=None, stop_timeout=5.0) -> Server:
    port = port or kit.free_port()
    argv = [sys.executable, str(kit.FAKE_SERVER), "--port", str(port), "--k", "2", *extra]
    return Server(argv, "127.0.0.1", port, tmp_path / "logs" / "fake.log", stop_timeout=stop_timeout)


def test_start_wait_warm_up_scrape_and_stop(tmp_path, kit):
    s = _server(tmp_path, kit, "--startup-delay", "0.3")
    t0 = time.monotonic()
    s.start()
    try:
        assert s.wait_healthy("/health", timeout=10) == "/health" and time.monotonic() - t0 >= 0.3
        assert s.model() == "fake-model" and s.model("mine") == "mine"
        assert s.engine() == {"name": "llama.cpp", "version": "b9999-fake"}  # /v1/models owned_by, /props
        assert s.engine("custom", [sys.executable, "-c", "print('custom version: 2.0.1')"]) == {
            "name": "custom", "version": "2.0.1"}
        s.warm_up(3, 4, s.model())
        status, text = s.scrape()
        assert status == 200 and re.search(r"^fake_requests_total 3$", text, re.M)
        assert re.search(r"^llamacpp:spec_decode_num_draft_tokens_total \d+", text, re.M)
    finally:
        code = s.stop()
    assert code is not None and not s.alive() and not kit.pid_alive(s.pid)
    assert "stopped (status" in s.log.read_text() and "GET /health" in s.log.read_text()


def test_a_health_path_the_server_lacks_falls_back_to_v1_models(tmp_path, kit):
    s = _server(tmp_path, kit)
    s.start()
    try:
        assert s.wait_healthy("/no-such-health", timeout=10) == "/v1/models"
    finally:
        s.stop()


def test_never_healthy_and_exiting_servers_raise_with_the_log_tail(tmp_path, kit):
    s = _server(tmp_path, kit, "--never-healthy")
    s.start()
    try:
        with pytest.raises(ServerError, match=r"(?s)not healthy within 0.5 s \(last answer HTTP 503.*fake server: pid"):
            s.wait_healthy("/health", timeout=0.5)
    finally:
        s.stop()
    assert not kit.pid_alive(s.pid)
    s = _server(tmp_path, kit, "--exit-at-start")
    s.start()
    with pytest.raises(ServerError, match=r"(?s)exited with status 4.*exiting at start as asked"):
        s.wait_healthy("/health", timeout=10)
    s.stop()


def test_a_busy_port_is_refused_and_a_missing_program_is_a_server_error(tmp_path, kit):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        t0 = time.monotonic()
        with pytest.raises(ServerError, match=f"already listens on 127.0.0.1:{port}"):
            _server(tmp_path, kit, port=port, stop_timeout=0.3).start()  # waits that long for it to free
        assert 0.3 <= time.monotonic() - t0 < 3
    assert not port_in_use("127.0.0.1", port)
    with pytest.raises(ServerError, match="cannot start 'no-such-server-x'"):
        Server(["no-such-server-x"], "127.0.0.1", kit.free_port(), tmp_path / "x.log").start()


def test_no_metrics_endpoint_scrapes_as_404(tmp_path, kit):
    s = _server(tmp_path, kit, "--no-metrics")
    s.start()
    try:
        s.wait_healthy("/health", timeout=10)
        assert s.scrape()[0] == 404
    finally:
        s.stop()


@pytest.mark.parametrize(("text", "version"), [
    ("guidellm version: 0.8.1\n", "0.8.1"),
    ("version: 6500 (a1b2c3d)\nbuilt with GNU 12.2.0 for Linux x86_64\n", "6500 (a1b2c3d)"),
    ("INFO 12-05 some log\n0.11.0\n", "0.11.0"),
    ("", "unknown"),
    (None, "unknown"),
])
def test_parse_version(text, version):
    assert parse_version(text) == version


@pytest.mark.parametrize(("argv", "name"), [
    (["vllm", "serve", "m"], "vllm"),
    (["/opt/bin/llama-server", "-m", "x.gguf"], "llama.cpp"),
    (["python3", "-m", "sglang.launch_server", "--model-path", "m"], "sglang"),
    (["python", "-m", "vllm.entrypoints.openai.api_server"], "vllm"),
    (["python", "fake_server.py"], ""),
])
def test_engine_from_command(argv, name):
    got, cmd = engine_from_command(argv)
    assert got == name and (cmd is None) == (name == "")
