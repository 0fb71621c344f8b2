"""The bundled data: real public GPU runs and the synthetic fleet, as validated tables.

Files live in the repository's top-level ``data/`` folder (next to the ``bayes_sd``
package), so they are found from a source checkout or an editable install
(``pip install -e .``); a plain wheel install does not carry them and :func:`data_dir`
says so. Units: seconds, requests/s, tokens (see :mod:`bayes_sd.traces.schema`).

- :func:`load_b200_runs`: 48 closed-loop runs of Qwen3.8-27B on one B200 (vLLM +
  GuideLLM): no speculation, DSpark k = 7, MTP k = 2, concurrency 1..128, two datasets.
  The two DSpark runs at concurrency 128 are flagged ``saturated``.
- :func:`load_eagle_bs1_runs`: batch-1 EAGLE / EAGLE-3 runs on Llama-3.x-8B: TPOT,
  acceptance length, output tokens/s; no latency (``latency_mean_s`` empty).
- :func:`load_fleet_runs` / :func:`load_fleet_models`: the labelled synthetic fleet.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .traces.io import read_table
from .traces.validate import validate_models, validate_runs

__all__ = ["data_dir", "load_b200_runs", "load_eagle_bs1_runs", "load_fleet_runs", "load_fleet_models"]


def data_dir() -> Path:
    """The repository's ``data/`` folder (``<repo>/data``, beside the ``bayes_sd`` package).

    Raises FileNotFoundError when it is missing, e.g. after a non-editable install.
    """
    d = Path(__file__).resolve().parent.parent / "data"
    if not (d / "real").is_dir():
        raise FileNotFoundError(
            f"bundled data folder not found at {d}: bayes_sd's data/ lives in the source repository; "
            "install from a checkout with `pip install -e .` (or run from the repository root)")
    return d


def _file(*parts: str, made_by: str) -> Path:
    p = data_dir().joinpath(*parts)
    if not p.is_file():
        raise FileNotFoundError(f"bundled data file {p} is missing; it is made by {made_by}")
    return p


def _runs(path: Path, require_stats: bool = True) -> pd.DataFrame:
    kind, df = read_table(path)
    return validate_runs(df, str(path), require_stats=require_stats)


def load_b200_runs() -> pd.DataFrame:
    """Real B200 runs (``data/real/b200_runs.csv``), validated canonical runs table."""
    return _runs(_file("real", "b200_runs.csv", made_by="data/real/make_canonical.py"))


def load_eagle_bs1_runs() -> pd.DataFrame:
    """Real batch-1 EAGLE runs (``data/real/eagle_bs1_runs.csv``): runs table validated
    with ``require_stats=False`` (TPOT / acceptance length / output tokens/s only)."""
    return _runs(_file("real", "eagle_bs1_runs.csv", made_by="data/real/make_canonical.py"), require_stats=False)


def load_fleet_runs() -> pd.DataFrame:
    """Synthetic fleet runs (``data/synthetic/fleet_runs_synthetic.csv``), validated."""
    return _runs(_file("synthetic", "fleet_runs_synthetic.csv", made_by="the synthetic fleet generator"))


def load_fleet_models() -> pd.DataFrame:
    """Synthetic fleet models (``data/synthetic/fleet_models_synthetic.csv``), validated."""
    path = _file("synthetic", "fleet_models_synthetic.csv", made_by="the synthetic fleet generator")
    kind, df = read_table(path)
    return validate_models(df, str(path))
