"""One inference server of a sweep: started, waited for, warmed up, scraped and stopped.

HTTP goes to loopback only (the plan refuses other hosts); every request has a time-out. A server
that exits or never answers 200 on its health path raises :class:`ServerError` with the tail of its
log, which the sweep records on the configuration's points.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .process import output_of, start_process, stop_group, tail

__all__ = ["ServerError", "Server", "http_get", "http_post_json", "port_in_use", "engine_from_command",
           "parse_version"]


class ServerError(RuntimeError):
    """The server did not start, did not become healthy, or died; the message ends with its log tail."""


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; status 0 when nothing answers (connection refused, time-out).

    Parameters
    ----------
    url : str
        A loopback URL (proxies are never used).
    timeout : float
        Seconds.
    """
    try:
        with _NO_PROXY.open(urllib.request.Request(url), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read() if e.fp else b""
    except (OSError, ValueError):
        return 0, b""


def http_post_json(url: str, payload: dict, timeout: float = 60.0) -> tuple[int, bytes]:
    """``(status, body)`` of a JSON POST; status 0 when nothing answers.

    Parameters
    ----------
    url : str
        A loopback URL.
    payload : dict
        The JSON body.
    timeout : float
        Seconds.
    """
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read() if e.fp else b""
    except (OSError, ValueError):
        return 0, b""


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port``.

    Parameters
    ----------
    host : str
        Loopback host.
    port : int
        TCP port.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.settimeout(1.0)
            if s.connect_ex(addr) == 0:
                return True
    return False


_VERSION = re.compile(r"version:?\s*(\S+(?:\s+\([^)]*\))?)", re.I)
_SEMVER = re.compile(r"\b(\d+\.\d+(?:\.\d+)?(?:[.+-][0-9A-Za-z.+-]+)?)\b")


def parse_version(text: str | None) -> str:
    """A version string from a ``--version`` output (``"guidellm version: 0.8.1"`` -> ``0.8.1``,
    llama.cpp's ``"version: 6500 (abc123)"`` -> ``6500 (abc123)``), or ``"unknown"``.

    Parameters
    ----------
    text : str or None
        The command's output.
    """
    if not text or not text.strip():
        return "unknown"
    m = _VERSION.search(text)
    if m:
        return m.group(1).strip()[:80]
    m = _SEMVER.search(text)
    if m:
        return m.group(1)[:80]
    return text.strip().splitlines()[0][:80]


def engine_from_command(argv: list[str]) -> tuple[str, list[str] | None]:
    """``(engine name, version command)`` guessed from a server command (``("", None)`` if unknown).

    Parameters
    ----------
    argv : list of str
        The rendered server command.
    """
    if not argv:
        return "", None
    exe = Path(argv[0]).name
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if exe == "vllm" or module.startswith("vllm"):
        return "vllm", ([argv[0], "--version"] if exe == "vllm" else [argv[0], "-c", "import vllm; "
                                                                          "print(vllm.__version__)"])
    if exe.startswith("llama-server") or exe == "llama-cpp-server":
        return "llama.cpp", [argv[0], "--version"]
    if module.startswith("sglang"):
        return "sglang", [argv[0], "-c", "import sglang; print(sglang.__version__)"]
    if exe == "sglang":
        return "sglang", [argv[0], "version"]
    if exe.startswith("trtllm-serve"):
        return "tensorrt-llm", [argv[0], "--version"]
    return "", None


_OWNERS = {"vllm": "vllm", "llamacpp": "llama.cpp", "sglang": "sglang"}


class Server:
    """A server process of one configuration.

    Parameters
    ----------
    argv : list of str
        The rendered command.
    host, port : str, int
        Where it listens.
    log : pathlib.Path
        Its stdout and stderr (appended: one log per configuration).
    env : dict, optional
        Variables added to its environment.
    stop_timeout : float
        Seconds between SIGTERM and SIGKILL when it is stopped.
    """

    def __init__(self, argv: list[str], host: str, port: int, log: Path, env: dict | None = None,
                 stop_timeout: float = 30.0):
        self.argv, self.host, self.port, self.log = argv, host, port, log
        self.env, self.stop_timeout = env or {}, stop_timeout
        self.proc: subprocess.Popen | None = None
        h = f"[{host}]" if ":" in host else host
        self.url = f"http://{h}:{port}"
        self._model: str | None = None

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the process (after checking that the port is free)."""
        deadline = time.monotonic() + min(10.0, self.stop_timeout)  # a previous server may still be exiting
        while port_in_use(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if port_in_use(self.host, self.port):
            raise ServerError(f"something already listens on {self.host}:{self.port} (a server left running?): "
                              "stop it or give [server] port another value")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as fh:
            fh.write(f"\n=== bayes-sd sweep: {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(self.argv)}\n")
        try:
            self.proc = start_process(self.argv, self.log, self.env)
        except OSError as e:
            raise ServerError(str(e)) from None

    @property
    def pid(self) -> int | None:
        """The server's process (and process group) id."""
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def died(self, what: str) -> ServerError:
        """A ServerError for a server that exited, with its exit status and log tail."""
        code = self.proc.returncode if self.proc else None
        return ServerError(f"{what}: the server exited with status {code}; {self.log.name} ends with:\n"
                           f"{tail(self.log)}")

    def wait_healthy(self, path: str, timeout: float) -> str:
        """Poll until ``path`` answers 200 (a 404 there: ``/v1/models``); returns the path that did.

        Parameters
        ----------
        path : str
            The health path.
        timeout : float
            Seconds from now.

        Raises
        ------
        ServerError
            When the process exits first or the time is up (with the log tail).
        """
        deadline = time.monotonic() + timeout
        delay, paths = 0.05, [path]
        last = 0
        while True:
            if not self.alive():
                raise self.died("not started")
            for p in list(paths):
                status, _ = http_get(self.url + p, timeout=min(5.0, max(0.5, timeout)))
                last = status
                if status == 200:
                    return p
                if status == 404 and p == path and "/v1/models" not in paths:
                    paths.append("/v1/models")
            if time.monotonic() >= deadline:
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 1.0)
        seen = f"last answer HTTP {last}" if last else "nothing answered"
        raise ServerError(f"not healthy within {timeout:g} s ({seen} on {self.url}{' or '.join(paths)}); "
                          f"{self.log.name} ends with:\n{tail(self.log)}")

    def stop(self) -> int | None:
        """Stop the server's process group (SIGTERM, wait, SIGKILL); returns its exit status."""
        if self.proc is None:
            return None
        code = stop_group(self.proc, self.stop_timeout)
        with open(self.log, "a") as fh:
            fh.write(f"=== bayes-sd sweep: {time.strftime('%Y-%m-%dT%H:%M:%S')} stopped (status {code})\n")
        return code

    # --------------------------------------------------------------------------------- requests
    def model(self, default: str = "") -> str:
        """The model to name in requests: ``default`` if given, else the first of ``/v1/models``."""
        if default:
            return default
        if self._model is None:
            status, body = http_get(self.url + "/v1/models")
            self._model = ""
            if status == 200:
                try:
                    data = json.loads(body).get("data") or []
                    self._model = str(data[0].get("id", "")) if data else ""
                except (ValueError, AttributeError, IndexError):
                    pass
        return self._model

    def warm_up(self, n: int, max_tokens: int, model: str) -> None:
        """Send ``n`` completions (not recorded); ServerError on a failure.

        Parameters
        ----------
        n : int
            Requests, one after another.
        max_tokens : int
            Tokens each.
        model : str
            Model name for the request ('' leaves it out).
        """
        for i in range(n):
            payload = {"prompt": f"Warm-up request {i + 1}: say something.", "max_tokens": max_tokens,
                       "temperature": 0, "stream": False}
            if model:
                payload["model"] = model
            status, body = http_post_json(self.url + "/v1/completions", payload, timeout=300)
            if status != 200:
                if not self.alive():
                    raise self.died("warm-up")
                raise ServerError(f"warm-up request {i + 1} of {n} to {self.url}/v1/completions got "
                                  f"{'HTTP ' + str(status) if status else 'no answer'}: "
                                  f"{body[:200].decode('utf-8', 'replace')}")

    def scrape(self) -> tuple[int, str]:
        """``(status, text)`` of ``GET /metrics``."""
        status, body = http_get(self.url + "/metrics", timeout=10)
        return status, body.decode("utf-8", "replace")

    def engine(self, name: str = "", version_command: list[str] | None = None) -> dict:
        """``{"name", "version"}`` of the engine: from the plan, the command (``vllm --version``,
        ``llama-server --version``), then the server (``/version``, ``/props``, ``/get_server_info``,
        ``/v1/models``' ``owned_by``); ``"unknown"`` where nothing tells.

        Parameters
        ----------
        name : str
            The plan's ``[server] engine``.
        version_command : list of str, optional
            The plan's ``[server] version_command`` (rendered).
        """
        guess, cmd = engine_from_command(self.argv)
        name = name or guess
        version = "unknown"
        if version_command or cmd:
            version = parse_version(output_of(version_command or cmd, timeout=120, env=self.env))
        if version == "unknown":
            for path, key in (("/version", "version"), ("/props", "build_info"), ("/get_server_info", "version")):
                status, body = http_get(self.url + path, timeout=5)
                if status != 200:
                    continue
                try:
                    value = json.loads(body).get(key)
                except (ValueError, AttributeError):
                    continue
                if isinstance(value, str | int | float) and str(value).strip():
                    version = str(value).strip()[:80]
                    break
        if not name:
            status, body = http_get(self.url + "/v1/models", timeout=5)
            try:
                owner = str(json.loads(body)["data"][0].get("owned_by", "")) if status == 200 else ""
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                owner = ""
            name = _OWNERS.get(owner.lower(), "")
        return {"name": name or "unknown", "version": version}
