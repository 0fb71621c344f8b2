"""A small bundled catalogue of verifier and drafter sizes (``catalogue.toml``, package data).

The MoE and drafter-design variants need a models table (:data:`bayes_sd.traces.schema.MODELS`):
total parameters, layers, hidden width, routed experts and top-k. :func:`models_for` builds one
for the model names of a runs table from the catalogue, so common architectures (Qwen3 dense and
MoE, Mixtral, DeepSeek-V3/R1, gpt-oss, Llama 3.1/3.3, the EAGLE-3 heads for Llama-3.1-8B) need
no hand-written table. Names match case-insensitively, with or without the organisation prefix
(``Qwen/Qwen3-30B-A3B`` and ``qwen3-30b-a3b`` alike); each row is named as the runs name the
model. Every figure in the catalogue carries its source (model card or ``config.json``); a
figure that was not checked is absent, and a model without ``params_b`` or ``layers`` gives no
row (the MODELS table requires both).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources

import pandas as pd

from .schema import MODELS, NO_DRAFTER

__all__ = ["catalogue", "lookup", "models_for"]

_FIGURES = ("params_b", "layers", "hidden_size", "experts", "experts_per_token")


def _keys(name: str) -> set[str]:
    low = str(name).strip().lower()
    return {low, low.rsplit("/", 1)[-1]}


@lru_cache(maxsize=1)
def catalogue() -> tuple[dict, ...]:
    """The catalogue's entries (``name``, ``aliases``, figures, ``sources``), in file order."""
    text = resources.files("bayes_sd.traces").joinpath("catalogue.toml").read_text(encoding="utf-8")
    return tuple(tomllib.loads(text)["model"])


def lookup(name: str) -> dict | None:
    """The catalogue entry whose name or alias matches ``name`` (case-insensitive, organisation
    prefix optional), or None."""
    want = _keys(name)
    for entry in catalogue():
        keys = set().union(*(_keys(a) for a in [entry["name"], *entry.get("aliases", [])]))
        if want & keys:
            return entry
    return None


def models_for(names) -> tuple[pd.DataFrame, list[str]]:
    """A models table for ``names`` (runs' verifiers and drafters) from the catalogue.

    Parameters
    ----------
    names : iterable of str
        Model names as the runs give them; ``'none'`` and repeats are ignored.

    Returns
    -------
    models : pandas.DataFrame
        One row per name that matches a catalogue entry with ``params_b`` and ``layers``, named as
        given, with the entry's figures (MODELS columns; absent figures empty).
    unmatched : list of str
        The names that match no entry, in order.
    """
    rows, unmatched = [], []
    for name in dict.fromkeys(str(n) for n in names):
        if name.lower() == NO_DRAFTER:
            continue
        entry = lookup(name)
        if entry is None:
            unmatched.append(name)
        elif entry.get("params_b") is not None and entry.get("layers") is not None:
            rows.append({"name": name, **{f: entry.get(f) for f in _FIGURES}})
    cols = [c.name for c in MODELS]
    return pd.DataFrame(rows, columns=cols), unmatched
