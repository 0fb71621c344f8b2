"""``run_sweep``: every (configuration, load) point of a plan against a real server, into one folder.

Per configuration: start the server in its own process group, wait for health, warm up; then per
load: scrape ``/metrics`` (``metrics/<point>.before.prom``), run the client bounded in requests and
seconds under a hard time-out, scrape again (``.after.prom``), check that the report reads, record
the point; then stop the server's process group (SIGTERM, wait, SIGKILL), also on Ctrl-C, SIGTERM
and errors. A server that does not start or dies fails its configuration's points (with the log
tail, ``logs/<configuration>.log``) and the sweep goes on. ``manifest.json``
(:mod:`bayes_sd.traces.manifest`) is rewritten atomically after every point; ``resume=True`` runs
only the points not done, after checking that the plan still describes the same sweep.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bayes_sd._io import write_text
from bayes_sd._progress import progress_bar
from bayes_sd.traces.manifest import MANIFEST_NAME, MANIFEST_VERSION, Point, write_manifest

from .guidellm import guidellm_command
from .plan import (
    Configuration,
    Plan,
    PlanError,
    PlannedPoint,
    client_variables,
    parse_plan,
    redact,
    render,
    secrets,
    server_variables,
)
from .process import output_of, run_bounded, tail
from .server import Server, ServerError, parse_version

__all__ = ["run_sweep", "SweepResult", "Budget", "point_commands", "count_requests"]

log = logging.getLogger(__name__)

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Budget:
    """Stop starting points once the next would end past ``seconds``.

    The next point is estimated as the mean duration of the points run so far, plus the mean
    start-up time of a server when it needs one; before any point has run, nothing is estimated.

    Parameters
    ----------
    seconds : float or None
        The budget (None: unlimited).
    """

    seconds: float | None
    points: list = field(default_factory=list)
    starts: list = field(default_factory=list)

    def estimate(self, needs_start: bool) -> float:
        """Seconds the next point is expected to take."""
        est = sum(self.points) / len(self.points) if self.points else 0.0
        if needs_start and self.starts:
            est += sum(self.starts) / len(self.starts)
        return est

    def allows(self, elapsed: float, needs_start: bool) -> bool:
        """Whether a point may start ``elapsed`` s into the sweep."""
        if self.seconds is None:
            return True
        return elapsed + self.estimate(needs_start) <= self.seconds


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Parameters
    ----------
    points : list of Point
        Every point of the manifest, in plan order.
    ran : list of str
        Ids of the points run now (done or failed).
    skipped_done : list of str
        Ids already done (``resume``), not run again.
    budget_stopped : bool
        Whether the budget stopped the sweep.
    manifest : pathlib.Path
        The manifest written.
    seconds : float
        Wall time.
    """

    points: list
    ran: list
    skipped_done: list
    budget_stopped: bool
    manifest: Path
    seconds: float

    def counts(self) -> dict:
        """Points per status."""
        out = {"done": 0, "failed": 0, "skipped": 0}
        for p in self.points:
            out[p.status] = out.get(p.status, 0) + 1
        return out


def _paths(out: Path, pid: str, ext: str) -> dict:
    return {"report": out / "reports" / f"{pid}.{ext}", "metrics_before": out / "metrics" / f"{pid}.before.prom",
            "metrics_after": out / "metrics" / f"{pid}.after.prom", "client_log": out / "logs" / f"{pid}.client.log"}


def server_command(plan: Plan, cfg: Configuration) -> tuple[list[str], dict]:
    """The rendered server command and environment of a configuration."""
    v = server_variables(plan, cfg)
    argv = render(cfg.server_command or plan.server.command, v, f"configuration {cfg.name!r}: server command")
    env = {k: render([val], v, f"env {k}")[0] for k, val in {**plan.server.env, **cfg.env}.items()}
    return argv, env


def point_commands(plan: Plan, point: PlannedPoint, out: Path, model: str = "") -> tuple[list[str], dict]:
    """The client command (and its environment) of one point.

    Parameters
    ----------
    plan : Plan
    point : PlannedPoint
    out : pathlib.Path
        The sweep folder (the report goes to ``reports/<point>.<ext>``).
    model : str
        The model name requests use ('' : GuideLLM asks the server).
    """
    cfg, load, c = point.configuration, point.load, plan.client
    report = (out / "reports" / f"{point.id}.{c.output_ext}").absolute()
    v = client_variables(plan, cfg, load, str(report), model)
    env = {k: render([val], v, f"client.env {k}")[0] for k, val in c.env.items()}
    if c.kind == "command":
        return render(c.command, v, f"configuration {cfg.name!r}: client.command"), env
    labels = {k: cfg.labels()[k] for k in ("verifier", "drafter", "k", "hardware", "dataset")}
    if cfg.acceptance != "measured":
        labels["acceptance"] = cfg.acceptance
    labels["sweep_point"] = point.id
    return guidellm_command(target=plan.server.url, load_type=load.type, load_value=load.value,
                            max_requests=plan.max_requests, max_seconds=plan.max_seconds, data=c.data,
                            output=str(report), seed=c.seed, executable=c.executable, model=c.model,
                            request_format=c.request_format, backend=c.backend, labels=labels,
                            extra_args=render(c.args, v, "client.args"), arrivals=plan.arrivals), env


def count_requests(report: Path) -> int:
    """Successful requests in a report, read as ``bayes-sd ingest`` reads it.

    Parameters
    ----------
    report : pathlib.Path
        The client's output.

    Raises
    ------
    TraceError
        When the ingest cannot read it.
    """
    import warnings

    from bayes_sd.traces.formats import TraceWarning, read_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        parsed = read_format(report)
    n = 0
    for run in parsed.runs:
        if run.requests is not None:
            n += len(run.requests)
        else:
            v = run.stats.get("n_requests", 0)
            n += int(v) if isinstance(v, int | float) and math.isfinite(v) else 0
    return n


def _tool(plan: Plan) -> dict:
    c = plan.client
    if c.kind == "guidellm":
        return {"name": "guidellm", "version": parse_version(output_of([c.executable, "--version"], timeout=120))}
    name = c.tool
    if not name:
        argv = list(c.command)
        name = Path(argv[0]).name
        if name.startswith("python") and len(argv) > 1:
            name = argv[2] if argv[1] == "-m" and len(argv) > 2 else Path(argv[1]).stem
    version = parse_version(output_of(list(c.version_command), timeout=120)) if c.version_command else "unknown"
    return {"name": name, "version": version}


def _check_client(plan: Plan, out: Path, todo: list) -> None:
    """PlanError before anything starts when the client program is not there."""
    if not todo:
        return
    argv, _ = point_commands(plan, todo[0], out)
    if shutil.which(argv[0]) is None:
        hint = ' (pip install "bayes_sd[sweep]")' if plan.client.kind == "guidellm" else ""
        raise PlanError(f"{plan.source}: the client program {argv[0]!r} is not found{hint}")


# ------------------------------------------------------------------------------------------ resume
def _load_previous(path: Path, plan: Plan) -> tuple[dict, dict]:
    """Top-level keys and points (by id, files absolute) of an existing manifest, checked against
    ``plan``; PlanError when they are another sweep."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"{path}: cannot read the manifest ({e}); move it away to start anew") from None
    if not isinstance(data, dict) or data.get("bayes_sd_manifest") != MANIFEST_VERSION:
        raise PlanError(f"{path}: not a manifest this bayes_sd writes (version {MANIFEST_VERSION})")
    hidden = secrets(plan.raw)
    same = parse_plan(redact(plan.raw, hidden), plan.source)  # as the manifest stores it
    if data.get("plan_hash") and data["plan_hash"] != plan.hash():
        try:
            old = parse_plan(data.get("plan", {}), f"{path} (its plan)").shared()
        except PlanError:
            old = {}
        new = same.shared()
        diff = [f"{sec}.{k}" for sec in new for k in new[sec] if old.get(sec, {}).get(k) != new[sec][k]]
        raise PlanError(f"{path.parent}: the plan changed ({', '.join(diff) or 'its shared settings'}): the points "
                        "there are another sweep; give another --out (or restore the plan)")
    records = {}
    for raw in data.get("points", []):
        if not isinstance(raw, dict) or "id" not in raw:
            continue
        pt = Point(**{k: v for k, v in raw.items() if k in Point.__dataclass_fields__})
        pt.files = {k: str(path.parent / v) for k, v in (pt.files or {}).items() if v}
        records[pt.id] = pt
    old_defs = {}
    try:
        old_defs = {c.name: c.definition() for c in parse_plan(data.get("plan", {}), str(path)).configurations}
    except PlanError:
        pass
    for cfg in same.configurations:
        done = [p for p in records.values() if p.status == "done" and p.configuration.get("name") == cfg.name]
        before = old_defs.get(cfg.name)
        if done and before is not None and before != cfg.definition():
            keys = sorted(k for k in cfg.definition() if before.get(k) != cfg.definition()[k])
            raise PlanError(f"{path.parent}: configuration {cfg.name!r} changed ({', '.join(keys)}) since its "
                            f"{len(done)} done point(s): they are another sweep; rename the configuration or give "
                            "another --out")
    return data, records


def _is_done(p: Point | None) -> bool:
    return p is not None and p.status == "done" and bool(p.files.get("report")) and Path(p.files["report"]).is_file()


# ------------------------------------------------------------------------------------------- the run
class _Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupt(signum, frame):
    raise _Interrupted(f"signal {signal.Signals(signum).name}")


def run_sweep(plan: Plan, out: str | Path, *, resume: bool = False, budget_minutes: float | None = None,
              progress: bool = False, on_point: Callable[[Point, int, float], None] | None = None,
              on_note: Callable[[str], None] | None = None) -> SweepResult:
    """Run every point of ``plan`` into ``out`` (``reports/``, ``metrics/``, ``logs/``, ``manifest.json``).

    Parameters
    ----------
    plan : Plan
        From :func:`~bayes_sd.measure.plan.load_plan`.
    out : str or pathlib.Path
        The sweep folder.
    resume : bool, default False
        Continue the sweep in ``out``: skip the points done (report present), run the others. Without
        it, a folder that already holds a manifest is refused.
    budget_minutes : float, optional
        Start no point that would end past this many minutes (estimated from the points so far); the
        rest are recorded ``skipped``.
    progress : bool, default False
        A progress bar over the points.
    on_point : callable, optional
        Called with each point recorded, its number of successful requests and its seconds.
    on_note : callable, optional
        Called with one-line notes worth a user's attention (no ``/metrics``, the budget reached);
        server starts are logged at INFO on ``bayes_sd.measure.sweep``.

    Returns
    -------
    SweepResult

    Raises
    ------
    PlanError
        When ``out`` holds a manifest and ``resume`` is not set, or holds another sweep.
    KeyboardInterrupt
        On Ctrl-C or SIGTERM, after the point in progress is recorded failed and the server stopped.
    """
    t0 = time.monotonic()
    out = Path(out)
    mpath = out / MANIFEST_NAME
    note = on_note or (lambda line: None)
    top, records = {}, {}
    if mpath.exists():
        if not resume:
            raise PlanError(f"{out} already holds a sweep ({MANIFEST_NAME}): pass --resume to continue it, or give "
                            "another --out")
        top, records = _load_previous(mpath, plan)
    planned = plan.points()
    planned_ids = {p.id for p in planned}
    done_ids = [p.id for p in planned if _is_done(records.get(p.id))]
    todo = [p for p in planned if p.id not in done_ids]
    _check_client(plan, out, todo)
    for sub in ("reports", "metrics", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    created = top.get("created") or _now()
    hidden = secrets(plan.raw)  # never written: the manifest's plan and commands show ***

    def save() -> None:
        order = [records[p.id] for p in planned if p.id in records]
        order += [r for i, r in records.items() if i not in planned_ids]
        write_manifest(order, mpath, created=created, updated=_now(), plan_hash=plan.hash(),
                       plan_file=str(Path(plan.source).name), plan=redact(plan.raw, hidden))

    budget = Budget(budget_minutes * 60 if budget_minutes is not None else None)
    tool = _tool(plan) if todo else {}
    ran: list[str] = []
    budget_stopped = False
    server: Server | None = None
    current: Configuration | None = None
    failure: str | None = None  # why the current configuration's points cannot run
    engine: dict = {}
    model = ""
    in_progress: dict | None = None
    warned: set = set()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            handlers[sig] = signal.signal(sig, _raise_interrupt)

    def record(pp: PlannedPoint, status: str, *, files=None, commands=None, started="", error=None, n=0,
               seconds=0.0):
        pt = Point(id=pp.id, status=status, configuration=pp.configuration.labels(), load=pp.load.record(),
                   files={k: str(v) for k, v in (files or {}).items() if v}, tool=dict(tool),
                   engine=dict(engine) if status != "skipped" else {}, commands=redact(commands or {}, hidden),
                   started=started or _now(), ended=_now(), error=error)
        records[pp.id] = pt
        save()
        if status != "skipped":
            ran.append(pp.id)
        if on_point:
            on_point(pt, n, seconds)

    def stop_server() -> None:
        nonlocal server
        if server is not None:
            server.stop()
            server = None

    try:
        for pp in progress_bar(todo, desc="points", enabled=progress, total=len(todo), unit="point"):
            cfg = pp.configuration
            needs_start = cfg is not current
            if budget_stopped or not budget.allows(time.monotonic() - t0, needs_start):
                if not budget_stopped:
                    budget_stopped = True
                    note(f"budget of {budget_minutes:g} min reached after {(time.monotonic() - t0) / 60:.1f} min "
                         f"(next point estimated at {budget.estimate(needs_start) / 60:.1f} min): the rest is "
                         "skipped")
                record(pp, "skipped", error=f"budget: {budget_minutes:g} min would be exceeded (elapsed "
                       f"{(time.monotonic() - t0) / 60:.1f} min, next point estimated "
                       f"{budget.estimate(needs_start) / 60:.1f} min); run again with --resume")
                continue
            srv_argv, srv_env = server_command(plan, cfg)
            if needs_start:
                stop_server()
                current, failure, engine, model = cfg, None, {}, ""
                ts = time.monotonic()
                server = Server(srv_argv, plan.server.host, plan.server.port, out / "logs" / f"{cfg.name}.log",
                                srv_env, plan.server.stop_timeout_s)
                try:
                    server.start()
                    server.wait_healthy(plan.server.health_path, plan.server.startup_timeout_s)
                    engine = server.engine(plan.server.engine,
                                           render(plan.server.version_command, server_variables(plan, cfg),
                                                  "server.version_command") or None)
                    model = server.model(plan.client.model)
                    server.warm_up(plan.server.warmup_requests, plan.server.warmup_tokens, model)
                    log.info(f"{cfg.name}: server up in {time.monotonic() - ts:.1f} s (pid {server.pid}, "
                             f"{engine['name']} {engine['version']}, model {model or '?'})")
                except ServerError as e:
                    failure = f"server: {e}"
                    stop_server()
                budget.starts.append(time.monotonic() - ts)
            cli_argv, cli_env = point_commands(plan, pp, out, model)
            commands = {"server": srv_argv, "client": cli_argv}
            if failure is not None:
                record(pp, "failed", commands=commands, error=failure, files={"log": out / "logs" /
                                                                                f"{cfg.name}.log"})
                continue
            in_progress = {"point": pp, "commands": commands, "started": _now()}
            tp = time.monotonic()
            status, error, files, n = _run_point(plan, pp, server, out, cli_argv, cli_env, note, warned)
            budget.points.append(time.monotonic() - tp)
            if server is not None and not server.alive():
                failure = f"server: {server.died('during point ' + pp.id)}"
                if status == "done":
                    status, error = "failed", failure
                stop_server()
            record(pp, status, files=files, commands=commands, started=in_progress["started"], error=error, n=n,
                   seconds=budget.points[-1])
            in_progress = None
    except KeyboardInterrupt as e:
        if in_progress is not None:
            pp = in_progress["point"]
            files = {**_paths(out, pp.id, plan.client.output_ext), "log": out / "logs" / f"{pp.configuration.name}.log"}
            files = {k: v for k, v in files.items() if Path(v).is_file()}
            record(pp, "failed", files=files, commands=in_progress["commands"], started=in_progress["started"],
                   error=f"interrupted ({e or 'Ctrl-C'}): run again with --resume")
        raise
    finally:
        if handlers:  # a second Ctrl-C / SIGTERM must not cut the server's stop short
            handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stop_server()
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)
    if not mpath.exists():
        save()
    return SweepResult(points=[records[p.id] for p in planned if p.id in records], ran=ran, skipped_done=done_ids,
                       budget_stopped=budget_stopped, manifest=mpath, seconds=time.monotonic() - t0)


def _run_point(plan: Plan, pp: PlannedPoint, server: Server, out: Path, argv: list[str], env: dict,
               note: Callable[[str], None], warned: set) -> tuple[str, str | None, dict, int]:
    """Scrape, client, scrape, check: ``(status, error, files, requests)``."""
    paths = _paths(out, pp.id, plan.client.output_ext)
    files = {"report": paths["report"], "log": server.log, "client_log": paths["client_log"]}
    for stale in (paths["report"], paths["metrics_before"], paths["metrics_after"]):
        stale.unlink(missing_ok=True)
    scraped = _scrape(server, paths["metrics_before"], note, pp, warned)
    if scraped:
        files["metrics_before"] = paths["metrics_before"]
    timeout = plan.max_seconds + plan.client.timeout_grace_s
    try:
        code, timed_out = run_bounded(argv, paths["client_log"], timeout, env)
    except OSError as e:
        return "failed", f"client: {e}", files, 0
    if scraped and _scrape(server, paths["metrics_after"], note, pp, warned):
        files["metrics_after"] = paths["metrics_after"]
    elif "metrics_before" in files:
        del files["metrics_before"]
        paths["metrics_before"].unlink(missing_ok=True)
    if timed_out:
        return "failed", (f"client: killed after its hard time-out of {timeout:g} s (max_seconds "
                          f"{plan.max_seconds:g} + timeout_grace_s {plan.client.timeout_grace_s:g}); "
                          f"{paths['client_log'].name} ends with:\n{tail(paths['client_log'])}"), files, 0
    if code != 0:
        return "failed", (f"client: exited with status {code}; {paths['client_log'].name} ends with:\n"
                          f"{tail(paths['client_log'])}"), files, 0
    if not paths["report"].is_file():
        return "failed", (f"client: exited 0 but wrote no report at {paths['report']}; "
                          f"{paths['client_log'].name} ends with:\n{tail(paths['client_log'])}"), files, 0
    from bayes_sd.traces.schema import TraceError

    try:
        n = count_requests(paths["report"])
    except TraceError as e:
        return "failed", f"report: bayes-sd ingest cannot read it: {str(e).splitlines()[0]}", files, 0
    if n == 0:
        return "failed", "report: no successful request", files, 0
    return "done", None, files, n


def _scrape(server: Server, path: Path, note: Callable[[str], None], pp: PlannedPoint, warned: set) -> bool:
    status, text = server.scrape()
    if status == 200 and text.strip():
        write_text(text, path)
        return True
    if pp.configuration.name not in warned:
        warned.add(pp.configuration.name)
        note(f"{pp.configuration.name}: GET /metrics answered {('HTTP ' + str(status)) if status else 'nothing'}: "
             "no counters scraped (llama-server needs --metrics, SGLang --enable-metrics)")
    return False
