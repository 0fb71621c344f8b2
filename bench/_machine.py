"""Helpers shared by the bench scripts: the header line naming the machine, sampling defaults."""

import datetime as dt
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(name: str) -> str:
    """``name  date  nproc=N  cpu='...'  python=X.Y.Z``."""
    return (f"{name}  {dt.datetime.now():%Y-%m-%d %H:%M}  nproc={os.cpu_count()}  cpu={cpu_model()!r}  "
            f"python={platform.python_version()}")


def fill_sampling_defaults(args, settings: dict) -> None:
    """Set each sampling option left unset on the command line (None) from ``settings``, the main
    job's for the chosen configuration (``bayes_sd.demo.demo_sampling``); where those do not say,
    ``LatencyModel.fit``'s own: trees to depth 10, nutpie's jittered starts."""
    from bayes_sd.model.config import SAMPLING_KEYS

    fit_defaults = {"max_tree_depth": 10, "start": "jittered"}
    for key in SAMPLING_KEYS:
        if hasattr(args, key) and getattr(args, key) is None:
            setattr(args, key, settings.get(key, fit_defaults.get(key)))
