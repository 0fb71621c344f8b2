"""Driving real servers and load generators through a sweep: ``bayes-sd sweep``.

- :mod:`~bayes_sd.measure.plan`: the TOML plan (server command template, client, configurations,
  loads), validated whole before anything starts; loopback hosts only;
- :mod:`~bayes_sd.measure.guidellm`: the ``guidellm run`` command of one point (GuideLLM 0.8);
- :mod:`~bayes_sd.measure.process`: child processes in their own process group, stopped as a group;
- :mod:`~bayes_sd.measure.server`: one server: start, health, warm-up, ``/metrics`` scrapes,
  engine version, stop;
- :mod:`~bayes_sd.measure.sweep`: :func:`run_sweep`, the points in order into one folder with a
  ``manifest.json`` (:mod:`bayes_sd.traces.manifest`) that ``bayes-sd ingest DIR`` reads.

Names load on first use, so ``bayes_sd.measure.plan`` (the ``--help`` text) stays free of pandas.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Plan": "plan", "PlanError": "plan", "Configuration": "plan", "Load": "plan", "load_plan": "plan",
    "parse_plan": "plan", "PLAN_HELP": "plan", "guidellm_command": "guidellm", "ServerError": "server",
    "run_sweep": "sweep", "SweepResult": "sweep", "point_commands": "sweep",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
