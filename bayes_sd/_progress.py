"""Progress bars for long work (ingest of many files, report sections, predictive draws).

One place decides how they look: tqdm on stderr (a widget in Jupyter), removed when done, and
off unless the caller asks for them; the command line asks unless ``--quiet`` or
``--no-progress``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["progress_bar"]


def progress_bar(items: Iterable[T], *, desc: str, enabled: bool, total: int | None = None,
             unit: str = "it") -> Iterator[T]:
    """``items`` with a progress bar labelled ``desc`` when ``enabled``, else ``items`` unchanged."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
