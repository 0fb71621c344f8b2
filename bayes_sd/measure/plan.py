"""The sweep plan: a TOML file naming the server, the load generator, the speculative
configurations and the loads of a ``bayes-sd sweep`` (the format is in ``docs/sweep.md`` and
:data:`PLAN_HELP`).

A plan is validated whole before anything starts: unknown keys (typos), a non-loopback host, a
placeholder no configuration defines, k and drafter that disagree, duplicate names. Command
templates are argument lists; a string is split like a shell line (``shlex``) *before* the
placeholders are filled, so a value with spaces stays one argument and JSON braces
(``'{"method": "eagle3", "num_speculative_tokens": {k}}'``) need no escaping: only
``{identifier}`` is a placeholder, and an unknown one is an error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayes_sd.measure.plan_help import PLAN_EXAMPLE, PLAN_HELP
from bayes_sd.measure.templates import (
    PlanError,
    format_value,
    placeholders,
    redact,
    render,
    secrets,
    split_command,
)

__all__ = ["PlanError", "Plan", "ServerSpec", "ClientSpec", "Configuration", "Load", "PlannedPoint",
           "LOOPBACK", "load_plan", "parse_plan", "render", "placeholders", "secrets", "redact", "PLAN_HELP",
           "PLAN_EXAMPLE"]

#: the only hosts a sweep drives: this machine
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ACCEPTANCE = ("measured", "pinned")
_LOAD_TYPES = ("rate", "concurrency")
#: placeholders of the client command, beside the configuration's
CLIENT_PLACEHOLDERS = ("url", "host", "port", "rate", "concurrency", "max_requests", "max_seconds", "output",
                       "seed", "model", "point")

@dataclass(frozen=True)
class ServerSpec:
    """``[server]``: how one server is started, checked and stopped.

    Parameters
    ----------
    command : tuple of str
        The command template (arguments); a configuration's ``server_command`` replaces it.
    host, port : str, int
        Where it listens (loopback only).
    health_path : str
        HTTP 200 there means ready; a 404 falls back to ``/v1/models``.
    startup_timeout_s, stop_timeout_s : float
        Seconds to wait for health after the start, and for the process group to exit after
        SIGTERM (then SIGKILL).
    warmup_requests : int
        Requests sent after each start, before the first point, not recorded.
    warmup_tokens : int
        ``max_tokens`` of each warm-up request.
    env : dict
        Environment variables set for the server (templates).
    engine : str
        Engine name for the manifest (default: from the command or ``/v1/models``).
    version_command : tuple of str
        Prints the engine's version (default: from the command, e.g. ``vllm --version``).
    """

    command: tuple = ()
    host: str = "127.0.0.1"
    port: int = 8000
    health_path: str = "/health"
    startup_timeout_s: float = 600.0
    stop_timeout_s: float = 30.0
    warmup_requests: int = 0
    warmup_tokens: int = 16
    env: dict = field(default_factory=dict)
    engine: str = ""
    version_command: tuple = ()

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ClientSpec:
    """``[client]``: the load generator run once per point.

    Parameters
    ----------
    kind : str
        ``"guidellm"`` (GuideLLM ``guidellm run``) or ``"command"`` (any template).
    executable : str
        GuideLLM's executable.
    data : str or dict
        GuideLLM ``--data`` (as on its command line, or a table).
    model, request_format : str
        GuideLLM backend ``model`` (default: the server's) and ``request_format``.
    backend : dict
        More GuideLLM backend keys (``extras``, ``api_key``, ``timeout`` ...).
    args : tuple of str
        More arguments appended to the GuideLLM command (templates).
    command : tuple of str
        The template of a ``command`` client.
    output_ext : str
        File extension of its report (``json``).
    tool, version_command : str, tuple
        Name of a ``command`` client's tool and a command printing its version.
    seed : int
        Random seed passed to the client.
    timeout_grace_s : float
        Seconds past ``max_seconds`` before a client is killed (its hard timeout).
    env : dict
        Environment variables set for the client (templates).
    """

    kind: str = "guidellm"
    executable: str = "guidellm"
    data: Any = "kind=synthetic_text,prompt_tokens=256,output_tokens=128"
    model: str = ""
    request_format: str = ""
    backend: dict = field(default_factory=dict)
    args: tuple = ()
    command: tuple = ()
    output_ext: str = "json"
    tool: str = ""
    version_command: tuple = ()
    seed: int = 42
    timeout_grace_s: float = 120.0
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Configuration:
    """One ``[[configurations]]`` entry: a speculative configuration and its template variables.

    Parameters
    ----------
    name : str
        Unique; used in point ids and file names (letters, digits, ``.``, ``_``, ``-``).
    verifier, drafter : str
        Target model and draft model or method (``"none"`` exactly when ``k`` is 0).
    k : int
        Draft tokens per step (0 = no speculation).
    hardware, dataset : str
        Labels of the runs.
    acceptance : str
        ``"measured"``, or ``"pinned"`` when the engine fixes the acceptance (cost-only data).
    vars : dict
        More placeholders for the templates.
    server_command : tuple of str
        Replaces ``[server] command`` for this configuration (e.g. the k = 0 baseline).
    env : dict
        Environment variables for its server, over ``[server] env``.
    """

    name: str
    verifier: str
    drafter: str
    k: int
    hardware: str
    dataset: str
    acceptance: str = "measured"
    vars: dict = field(default_factory=dict)
    server_command: tuple = ()
    env: dict = field(default_factory=dict)

    def labels(self) -> dict:
        """The configuration as a manifest point records it."""
        return {"name": self.name, "verifier": self.verifier, "drafter": self.drafter, "k": self.k,
                "hardware": self.hardware, "dataset": self.dataset, "acceptance": self.acceptance}

    def variables(self) -> dict:
        """Placeholders this configuration defines."""
        return {**self.labels(), "k_plus_1": self.k + 1, **self.vars}

    def definition(self) -> dict:
        """Everything that makes its runs what they are (compared on ``--resume``)."""
        return {**self.labels(), "vars": dict(self.vars), "server_command": list(self.server_command),
                "env": dict(self.env)}


@dataclass(frozen=True)
class Load:
    """One load level: ``type`` ``"rate"`` (requests/s) or ``"concurrency"`` (streams), ``value``."""

    type: str
    value: float

    @property
    def label(self) -> str:
        """``rate-2``, ``concurrency-8``: the load part of a point id."""
        return f"{self.type}-{format_value(self.value)}"

    def record(self) -> dict:
        """The manifest's ``load`` entry."""
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True)
class PlannedPoint:
    """One (configuration, load) point of a plan, with its id (``<configuration>@<load>``)."""

    configuration: Configuration
    load: Load

    @property
    def id(self) -> str:
        return f"{self.configuration.name}@{self.load.label}"


@dataclass(frozen=True)
class Plan:
    """A validated sweep plan (see :func:`load_plan`).

    Parameters
    ----------
    server : ServerSpec
    client : ClientSpec
    configurations : tuple of Configuration
    loads : tuple of Load
    max_requests : int
        Requests per point at most.
    max_seconds : float
        Seconds per point at most.
    arrivals : str
        ``"constant"`` (evenly spaced requests at each rate) or ``"poisson"`` (exponential gaps with the
        rate as mean): rate loads only, GuideLLM clients only.
    raw : dict
        The TOML as read (stored in the manifest).
    source : str
        The plan file.
    """

    server: ServerSpec
    client: ClientSpec
    configurations: tuple
    loads: tuple
    max_requests: int
    max_seconds: float
    arrivals: str = "constant"
    raw: dict = field(default_factory=dict)
    source: str = "plan"

    @property
    def load_type(self) -> str:
        return self.loads[0].type

    def points(self) -> list[PlannedPoint]:
        """Every point, configuration by configuration, loads in the plan's order."""
        return [PlannedPoint(c, load) for c in self.configurations for load in self.loads]

    def shared(self) -> dict:
        """The settings every point shares and that change what it measures (hashed)."""
        s, c = self.server, self.client
        return {"server": {"command": list(s.command), "env": dict(s.env), "warmup_requests": s.warmup_requests,
                           "warmup_tokens": s.warmup_tokens},
                "client": {"kind": c.kind, "executable": c.executable, "data": c.data, "model": c.model,
                           "request_format": c.request_format, "backend": dict(c.backend), "args": list(c.args),
                           "command": list(c.command), "output_ext": c.output_ext, "seed": c.seed,
                           "env": dict(c.env)},
                "loads": {"type": self.load_type, "max_requests": self.max_requests,
                          "max_seconds": self.max_seconds,
                          # constant arrivals leave the hash of plans written before the option as it was
                          **({"arrivals": self.arrivals} if self.arrivals != "constant" else {})}}

    def hash(self) -> str:
        """``sha256:...`` of :meth:`shared`: equal hashes, comparable points. The list of
        configurations and load values, time-outs and the host/port are left out: adding a load or a
        configuration extends a sweep; a changed configuration is checked on its own."""
        text = json.dumps(self.shared(), sort_keys=True, separators=(",", ":"), default=str)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------- parsing
_SERVER_KEYS = {"command", "host", "port", "health_path", "startup_timeout_s", "stop_timeout_s", "warmup_requests",
                "warmup_tokens", "env", "engine", "version_command"}
_CLIENT_KEYS = {"kind", "executable", "data", "model", "request_format", "backend", "args", "command", "output_ext",
                "tool", "version_command", "seed", "timeout_grace_s", "env"}
_LOADS_KEYS = {"type", "values", "max_requests", "max_seconds", "arrivals"}
_ARRIVALS = ("constant", "poisson")
_CONFIG_KEYS = {"name", "verifier", "drafter", "k", "hardware", "dataset", "acceptance", "vars", "server_command",
                "env"}


def _table(d: dict, key: str, src: str, required: bool = True) -> dict:
    t = d.get(key)
    if t is None and not required:
        return {}
    if not isinstance(t, dict):
        raise PlanError(f"{src}: [{key}] is {'missing' if t is None else 'not a table'}; see `bayes-sd sweep --help`")
    return t


def _known(t: dict, keys: set, where: str, src: str) -> None:
    bad = sorted(set(t) - keys)
    if bad:
        raise PlanError(f"{src}: unknown key {where}.{bad[0]}; use {', '.join(sorted(keys))}")


def _number(t: dict, key: str, where: str, src: str, default=None, *, integer=False, positive=True):
    v = t.get(key, default)
    if v is None:
        raise PlanError(f"{src}: {where}.{key} is missing")
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (not integer or float(v).is_integer()) and (v > 0 if positive else v >= 0)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise PlanError(f"{src}: {where}.{key} = {v!r}; give {kind} {'> 0' if positive else '>= 0'}")
    return int(v) if integer else float(v)


def _string(t: dict, key: str, where: str, src: str, default=None) -> str:
    v = t.get(key, default)
    if v is None:
        raise PlanError(f"{src}: {where}.{key} is missing")
    if not isinstance(v, str):
        raise PlanError(f"{src}: {where}.{key} = {v!r}; give a string")
    return v


def _strings(t: dict, key: str, where: str, src: str) -> tuple:
    v = t.get(key)
    if v is None:
        return ()
    return tuple(split_command(v, f"{src}: {where}.{key}"))


def _env(t: dict, where: str, src: str) -> dict:
    env = t.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str | int | float) for v in env.values()):
        raise PlanError(f"{src}: {where}.env must be a table of strings, e.g. env = {{ CUDA_VISIBLE_DEVICES = \"0\" }}")
    return {str(k): str(v) for k, v in env.items()}


def _check_host(host: str, src: str) -> str:
    bare = host.strip("[]")
    if bare not in LOOPBACK:
        raise PlanError(f"{src}: server.host = {host!r} is not a loopback address: bayes-sd sweep only drives "
                        f"servers on this machine ({', '.join(LOOPBACK)})")
    return bare


def _server(d: dict, src: str) -> ServerSpec:
    t = _table(d, "server", src)
    _known(t, _SERVER_KEYS, "server", src)
    health = _string(t, "health_path", "server", src, "/health")
    if not health.startswith("/"):
        raise PlanError(f"{src}: server.health_path = {health!r}; give a path starting with '/' (e.g. /health)")
    return ServerSpec(
        command=_strings(t, "command", "server", src), host=_check_host(_string(t, "host", "server", src, "127.0.0.1"),
                                                                         src),
        port=_number(t, "port", "server", src, 8000, integer=True), health_path=health,
        startup_timeout_s=_number(t, "startup_timeout_s", "server", src, 600.0),
        stop_timeout_s=_number(t, "stop_timeout_s", "server", src, 30.0),
        warmup_requests=_number(t, "warmup_requests", "server", src, 0, integer=True, positive=False),
        warmup_tokens=_number(t, "warmup_tokens", "server", src, 16, integer=True),
        env=_env(t, "server", src), engine=_string(t, "engine", "server", src, ""),
        version_command=_strings(t, "version_command", "server", src))


def _client(d: dict, src: str) -> ClientSpec:
    t = _table(d, "client", src, required=False)
    _known(t, _CLIENT_KEYS, "client", src)
    kind = _string(t, "kind", "client", src, "guidellm")
    if kind not in ("guidellm", "command"):
        raise PlanError(f"{src}: client.kind = {kind!r}; use 'guidellm' or 'command'")
    command = _strings(t, "command", "client", src)
    if kind == "command" and not command:
        raise PlanError(f"{src}: client.kind = 'command' needs client.command, a template with {{url}}, {{output}} "
                        "and {rate} or {concurrency}")
    if kind == "guidellm" and command:
        raise PlanError(f"{src}: client.command is for kind = 'command'; GuideLLM's command is built by the sweep "
                        "(add arguments with client.args)")
    data = t.get("data", ClientSpec.data)
    if not (isinstance(data, str) and data.strip()) and not (isinstance(data, dict) and data.get("kind")):
        raise PlanError(f"{src}: client.data = {data!r}; give GuideLLM's --data, e.g. "
                        "\"kind=synthetic_text,prompt_tokens=256,output_tokens=128\" or a table with a kind")
    backend = t.get("backend", {})
    if not isinstance(backend, dict):
        raise PlanError(f"{src}: client.backend must be a table of GuideLLM backend keys")
    ext = _string(t, "output_ext", "client", src, "json").lstrip(".")
    if not _NAME.match(ext):
        raise PlanError(f"{src}: client.output_ext = {ext!r}; give a file extension such as json")
    return ClientSpec(
        kind=kind, executable=_string(t, "executable", "client", src, "guidellm"), data=data,
        model=_string(t, "model", "client", src, ""), request_format=_string(t, "request_format", "client", src, ""),
        backend=dict(backend), args=_strings(t, "args", "client", src), command=command, output_ext=ext,
        tool=_string(t, "tool", "client", src, ""), version_command=_strings(t, "version_command", "client", src),
        seed=_number(t, "seed", "client", src, 42, integer=True, positive=False),
        timeout_grace_s=_number(t, "timeout_grace_s", "client", src, 120.0), env=_env(t, "client", src))


def _loads(d: dict, src: str) -> tuple[tuple, int, float, str]:
    t = _table(d, "loads", src)
    _known(t, _LOADS_KEYS, "loads", src)
    kind = _string(t, "type", "loads", src)
    if kind not in _LOAD_TYPES:
        raise PlanError(f"{src}: loads.type = {kind!r}; use 'rate' (requests/s) or 'concurrency' (streams)")
    values = t.get("values")
    if not isinstance(values, list) or not values:
        raise PlanError(f"{src}: loads.values is missing; give a list, e.g. values = [1, 2, 4]")
    loads = []
    for i, v in enumerate(values):
        num = _number({"v": v}, "v", f"loads.values[{i}]", src, integer=kind == "concurrency")
        loads.append(Load(kind, num))
    labels = [x.label for x in loads]
    if len(set(labels)) != len(labels):
        raise PlanError(f"{src}: loads.values repeats a value ({values}); give each load once")
    arrivals = _string(t, "arrivals", "loads", src, default="constant")
    if arrivals not in _ARRIVALS:
        raise PlanError(f"{src}: loads.arrivals = {arrivals!r}; use 'constant' (evenly spaced) or 'poisson'")
    if arrivals == "poisson" and kind != "rate":
        raise PlanError(f"{src}: loads.arrivals = 'poisson' needs loads.type = 'rate' (a concurrency has no "
                        "arrival process)")
    return (tuple(loads), _number(t, "max_requests", "loads", src, integer=True),
            _number(t, "max_seconds", "loads", src), arrivals)


def _configuration(t: Any, i: int, src: str) -> Configuration:
    where = f"configurations[{i}]"
    if not isinstance(t, dict):
        raise PlanError(f"{src}: {where} is not a table; write [[configurations]] entries")
    _known(t, _CONFIG_KEYS, where, src)
    name = _string(t, "name", where, src)
    if not _NAME.match(name) or "@" in name:
        raise PlanError(f"{src}: {where}.name = {name!r}; use letters, digits, '.', '_' and '-' (it names files)")
    where = f"configuration {name!r}"
    k = t.get("k")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise PlanError(f"{src}: {where}: k = {k!r}; give the draft tokens per step, an integer >= 0 (0 = none)")
    drafter = _string(t, "drafter", where, src)
    if (k == 0) != (drafter == "none"):
        raise PlanError(f"{src}: {where}: k = {k} with drafter {drafter!r}; k = 0 exactly when drafter = 'none'")
    acceptance = _string(t, "acceptance", where, src, "measured")
    if acceptance not in _ACCEPTANCE:
        raise PlanError(f"{src}: {where}: acceptance = {acceptance!r}; use 'measured' or 'pinned'")
    variables = t.get("vars", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                                                  for v in variables.values()):
        raise PlanError(f"{src}: {where}: vars must be a table of strings and numbers")
    clash = sorted(set(variables) & ({"host", "port", "k_plus_1", *CLIENT_PLACEHOLDERS} | _CONFIG_KEYS))
    if clash:
        raise PlanError(f"{src}: {where}: vars.{clash[0]} is a built-in placeholder; rename it")
    return Configuration(name=name, verifier=_string(t, "verifier", where, src), drafter=drafter, k=k,
                         hardware=_string(t, "hardware", where, src), dataset=_string(t, "dataset", where, src),
                         acceptance=acceptance, vars=dict(variables),
                         server_command=_strings(t, "server_command", where, src), env=_env(t, where, src))


def parse_plan(data: dict, source: str = "plan") -> Plan:
    """Validate a plan given as a dict (the parsed TOML); see :func:`load_plan`.

    Parameters
    ----------
    data : dict
        The plan's tables.
    source : str
        Its name in error messages.
    """
    src = source
    if not isinstance(data, dict):
        raise PlanError(f"{src}: a plan is a TOML document with [server], [client], [loads] and [[configurations]]")
    _known(data, {"server", "client", "loads", "configurations"}, "plan", src)
    server, client = _server(data, src), _client(data, src)
    loads, max_requests, max_seconds, arrivals = _loads(data, src)
    raw = data.get("configurations")
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"{src}: no [[configurations]]; give at least one (name, verifier, drafter, k, hardware, "
                        "dataset)")
    configurations = tuple(_configuration(t, i, src) for i, t in enumerate(raw))
    names = [c.name for c in configurations]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError(f"{src}: configuration name {dup[0]!r} is used twice; give each its own name")
    if arrivals != "constant" and client.kind != "guidellm":
        raise PlanError(f"{src}: loads.arrivals applies to the GuideLLM client; with client.command, set the "
                        "arrival process in the command itself")
    plan = Plan(server=server, client=client, configurations=configurations, loads=loads,
                max_requests=max_requests, max_seconds=max_seconds, arrivals=arrivals, raw=data, source=src)
    _check_templates(plan)
    return plan


def server_variables(plan: Plan, cfg: Configuration) -> dict:
    """Placeholders of a configuration's server command and environment."""
    return {**cfg.variables(), "host": plan.server.host, "port": plan.server.port}


def client_variables(plan: Plan, cfg: Configuration, load: Load, output: str, model: str) -> dict:
    """Placeholders of a client command at one point (only the load type in use is defined)."""
    v = {**server_variables(plan, cfg), "url": plan.server.url, "max_requests": plan.max_requests,
         "max_seconds": plan.max_seconds, "output": output, "seed": plan.client.seed, "model": model,
         "point": PlannedPoint(cfg, load).id}
    v[load.type] = int(load.value) if load.type == "concurrency" else load.value
    return v


def _check_templates(plan: Plan) -> None:
    src = plan.source
    for cfg in plan.configurations:
        command = cfg.server_command or plan.server.command
        if not command:
            raise PlanError(f"{src}: no server command for configuration {cfg.name!r}; give [server] command (or "
                            "the configuration's server_command)")
        sv = server_variables(plan, cfg)
        where = f"{src}: configuration {cfg.name!r}"
        render(command, sv, f"{where}: server command")
        for key, val in {**plan.server.env, **cfg.env}.items():
            render([val], sv, f"{where}: env {key}")
        render(plan.server.version_command, sv, f"{where}: server.version_command")
        cv = client_variables(plan, cfg, plan.loads[0], "OUTPUT", "MODEL")
        other = "concurrency" if plan.load_type == "rate" else "rate"
        for name, template in (("client.command", plan.client.command), ("client.args", plan.client.args)):
            if other in placeholders(template):
                raise PlanError(f"{src}: {name} uses {{{other}}} but loads.type is {plan.load_type!r}; use "
                                f"{{{plan.load_type}}}")
            render(template, cv, f"{where}: {name}")
        for key, val in plan.client.env.items():
            render([val], cv, f"{where}: client.env {key}")
    if plan.client.kind == "command":
        why = {"url": "where the server is", "output": "where to write its report", plan.load_type: "the load"}
        missing = [p for p in why if p not in placeholders(plan.client.command)]
        if missing:
            raise PlanError(f"{src}: client.command has no {{{missing[0]}}}; the client must be told {why[missing[0]]}")
        if "max_requests" not in placeholders(plan.client.command) and \
                "max_seconds" not in placeholders(plan.client.command):
            raise PlanError(f"{src}: client.command has neither {{max_requests}} nor {{max_seconds}}; bound every "
                            "point in requests or seconds")


def load_plan(path: str | Path) -> Plan:
    """Read and validate a sweep plan (TOML).

    Parameters
    ----------
    path : str or pathlib.Path
        The plan file; its format is :data:`PLAN_HELP` (and ``docs/sweep.md``).

    Returns
    -------
    Plan

    Raises
    ------
    PlanError
        On anything that would stop the sweep later: a missing table or key, an unknown key, a
        non-loopback host, an unknown placeholder, k and drafter that disagree, duplicate names or loads.
    FileNotFoundError
        When the file does not exist.
    """
    path = Path(path)
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{path}: not valid TOML ({e})") from None
    return parse_plan(data, str(path))
