"""Atomic file output: every file bayes_sd writes goes through :func:`atomic_write`.

The content is written to a temporary file in the destination's folder and moved into place
with ``os.replace``, so a reader (or an interrupted run) never sees a half-written file, and
the file gets the normal ``0o644`` permissions instead of ``mkstemp``'s ``0o600``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_bytes", "write_json", "write_text"]


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit move it onto ``path``.

    The caller writes the whole file to the yielded path (any writer that takes a file name:
    ``DataFrame.to_parquet``, ``InferenceData.to_netcdf``, ``Figure.savefig``). The parent
    folder is created if missing. On an exception the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(text.encode("utf-8"), path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (with a final newline) to ``path`` atomically; returns ``path``."""
    return write_text(json.dumps(obj, indent=2) + "\n", path)
