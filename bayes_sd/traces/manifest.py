"""The sweep manifest: which file holds which run, under which speculative configuration.

``bayes-sd sweep`` (:mod:`bayes_sd.measure`) writes ``manifest.json`` at the top of its output
folder and ``bayes-sd ingest DIR`` reads it, so a folder of tens of reports, scrapes and logs is
ingested in one call without flags. A hand-made sweep can carry one too. Paths are relative to
the manifest's folder. Format (JSON)::

    {
      "bayes_sd_manifest": 1,
      "created": "2026-12-05T01:02:03+00:00",
      "points": [
        {
          "id": "eagle-k4@rate-2",                 # unique within the manifest
          "status": "done",                         # done | failed | skipped (only done is ingested)
          "configuration": {                        # the speculative configuration (labels)
            "name": "eagle-k4", "verifier": "...", "drafter": "...", "k": 4,
            "hardware": "...", "dataset": "...",
            "acceptance": "measured"                # or "pinned": the engine fixed it (cost-only data)
          },
          "load": {"type": "rate", "value": 2.0},   # rate: requests/s; concurrency: streams
          "files": {"report": "reports/eagle-k4@rate-2.json",
                    "metrics_before": "metrics/eagle-k4@rate-2.before.prom",
                    "metrics_after": "metrics/eagle-k4@rate-2.after.prom"},
          "tool": {"name": "guidellm", "version": "0.8.1"},
          "engine": {"name": "llama.cpp", "version": "b1234"},
          "commands": {"server": ["llama-server", "..."], "client": ["guidellm", "run", "..."]},
          "started": "...", "ended": "...",         # ISO 8601, UTC
          "error": null                             # what went wrong, when status is failed
        }
      ]
    }

Only ``id``, ``status``, ``configuration`` (verifier, drafter, k, and hardware/dataset unless the
report records them), ``load`` and ``files.report`` are required.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bayes_sd._io import write_json

from .schema import TraceError

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "STATUSES", "Point", "read_manifest", "write_manifest",
           "find_manifest"]

#: the manifest's file name in a sweep folder
MANIFEST_NAME = "manifest.json"
#: the format version this module reads and writes
MANIFEST_VERSION = 1
#: what happened to a point: only ``done`` points are ingested
STATUSES = ("done", "failed", "skipped")
_ACCEPTANCE = ("measured", "pinned")
_LOADS = ("rate", "concurrency")


@dataclass
class Point:
    """One (configuration, load) point of a sweep and the files it wrote.

    Parameters
    ----------
    id : str
        Unique within the manifest.
    status : str
        One of :data:`STATUSES`.
    configuration : dict
        ``verifier``, ``drafter``, ``k`` (draft tokens; 0 without speculation), ``hardware``,
        ``dataset``, optionally ``name`` and ``acceptance`` (``"measured"`` or ``"pinned"``).
    load : dict
        ``{"type": "rate" | "concurrency", "value": requests/s or streams}``.
    files : dict
        ``report`` (the load generator's output) and optionally ``metrics_before`` /
        ``metrics_after`` (``/metrics`` scrapes) and ``log``; paths relative to the manifest.
    tool, engine, commands : dict
        Name and version of the load generator and of the server; the commands run.
    started, ended : str
        ISO 8601 times (UTC).
    error : str, optional
        What went wrong, for a failed point.
    """

    id: str
    status: str
    configuration: dict
    load: dict
    files: dict
    tool: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    commands: dict = field(default_factory=dict)
    started: str = ""
    ended: str = ""
    error: str | None = None


def _check_point(raw: Any, i: int, source: str) -> Point:
    where = f"points[{i}]"
    if not isinstance(raw, dict):
        raise TraceError(source, where, "is not an object",
                         "each point is a JSON object (see bayes_sd.traces.manifest)")
    for key in ("id", "status", "configuration", "load", "files"):
        if key not in raw:
            raise TraceError(source, f"{where}.{key}", "is missing", "write every required key of a point")
    if raw["status"] not in STATUSES:
        raise TraceError(source, f"{where}.status", f"is {raw['status']!r}", f"use one of {list(STATUSES)}")
    cfg, load, files = raw["configuration"], raw["load"], raw["files"]
    for key in ("verifier", "drafter", "k"):
        if key not in cfg:
            raise TraceError(source, f"{where}.configuration.{key}", "is missing",
                             "give the speculative configuration of every point (drafter 'none' and k 0 without it)")
    if not isinstance(cfg["k"], int) or cfg["k"] < 0:
        raise TraceError(source, f"{where}.configuration.k", f"is {cfg['k']!r}",
                         "k is an integer >= 0 (draft tokens)")
    if cfg.get("acceptance", "measured") not in _ACCEPTANCE:
        raise TraceError(source, f"{where}.configuration.acceptance", f"is {cfg['acceptance']!r}",
                         f"use one of {list(_ACCEPTANCE)}")
    if load.get("type") not in _LOADS or not isinstance(load.get("value"), int | float) or not load["value"] > 0:
        raise TraceError(source, f"{where}.load", f"is {load!r}",
                         "write {\"type\": \"rate\" (requests/s) or \"concurrency\" (streams), \"value\": > 0}")
    if raw["status"] == "done" and not files.get("report"):
        raise TraceError(source, f"{where}.files.report", "is missing for a done point",
                         "name the load generator's output file, relative to the manifest")
    return Point(**{k: v for k, v in raw.items() if k in Point.__dataclass_fields__})


def read_manifest(path: str | Path) -> list[Point]:
    """Read and validate a sweep manifest.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``manifest.json`` file.

    Returns
    -------
    list of Point
        Every point, in file order, with ``files`` resolved to absolute paths.

    Raises
    ------
    TraceError
        When the file is not a manifest of a known version, a point lacks a required key or a
        value is out of range (the error names the point and the key), two points share an id, or
        a done point's report file is missing.
    """
    path = Path(path)
    source = str(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TraceError(source, None, f"cannot read it as JSON ({type(exc).__name__})",
                         "give the manifest.json written by `bayes-sd sweep`") from None
    version = data.get("bayes_sd_manifest") if isinstance(data, dict) else None
    if version != MANIFEST_VERSION:
        raise TraceError(source, "bayes_sd_manifest", f"is {version!r}",
                         f"this bayes_sd reads manifest version {MANIFEST_VERSION}")
    points = [_check_point(raw, i, source) for i, raw in enumerate(data.get("points", []))]
    ids = [p.id for p in points]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise TraceError(source, "points[].id", f"repeats {dup}", "give every point its own id")
    for p in points:
        p.files = {k: str((path.parent / v).resolve()) for k, v in p.files.items() if v}
        if p.status == "done" and not Path(p.files["report"]).is_file():
            raise TraceError(source, f"point {p.id}", f"report {p.files['report']} does not exist",
                             "keep the sweep folder whole (the manifest's paths are relative to it)")
    return points


def write_manifest(points: list[Point], path: str | Path, **extra) -> Path:
    """Write ``points`` as a manifest (atomically), ``files`` relative to the manifest's folder.

    Parameters
    ----------
    points : list of Point
        The sweep's points so far.
    path : str or pathlib.Path
        Where to write ``manifest.json``.
    **extra
        Top-level keys stored alongside (``created``, the sweep plan, ...).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    rows = []
    for p in points:
        row = asdict(p)
        row["files"] = {k: _relative(v, path.parent) for k, v in p.files.items() if v}
        rows.append(row)
    return write_json({"bayes_sd_manifest": MANIFEST_VERSION, **extra, "points": rows}, path)


def _relative(file: str, folder: Path) -> str:
    p = Path(file)
    try:
        return str(p.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(p)


def find_manifest(folder: str | Path) -> Path | None:
    """The manifest of a sweep folder (``folder/manifest.json``), or None when there is none."""
    path = Path(folder) / MANIFEST_NAME
    return path if path.is_file() else None
