"""One header line naming the machine a benchmark ran on (shared by the bench scripts)."""

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
