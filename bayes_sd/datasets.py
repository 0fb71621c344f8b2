"""The bundled data: real public GPU runs and the synthetic fleet, as validated tables.

The files live in the repository's top-level ``data/`` folder, which ships inside the wheel as
the package ``bayes_sd.data`` and is read with :mod:`importlib.resources`, so the loaders work
from a source checkout, an editable install and a wheel alike, from any directory. Units:
seconds, requests/s, tokens (see :mod:`bayes_sd.traces.schema`).

- :func:`load_b200_runs`: 48 closed-loop runs of Qwen3.8-27B on one B200 (vLLM +
  GuideLLM): no speculation, DSpark k = 7, MTP k = 2, concurrency 1..128, two datasets.
  The two DSpark runs at concurrency 128 are flagged ``saturated``.
- :func:`load_eagle_bs1_runs`: batch-1 EAGLE / EAGLE-3 runs on Llama-3.x-8B: TPOT,
  acceptance length, output tokens/s; no latency (``latency_mean_s`` empty).
- :func:`load_fleet_runs` / :func:`load_fleet_models`: the labelled synthetic fleet.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from .traces.io import read_table
from .traces.validate import validate_models, validate_runs

__all__ = ["data_dir", "load_b200_runs", "load_eagle_bs1_runs", "load_fleet_runs", "load_fleet_models"]


def data_dir() -> Path:
    """The folder of the bundled data (``data/`` of the repository, package ``bayes_sd.data``).

    Returns
    -------
    pathlib.Path
        The folder, with subfolders ``real/`` and ``synthetic/``.

    Raises
    ------
    FileNotFoundError
        When it is missing (an installation without its package data).
    """
    d = Path(str(resources.files("bayes_sd.data")))
    if not (d / "real").is_dir():
        raise FileNotFoundError(f"bundled data folder not found at {d}. Fix: reinstall bayes_sd "
                                "(`pip install -e .` from a checkout, or the wheel)")
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
    """Real B200 runs (``data/real/b200_runs.csv``), validated canonical runs table.

    Returns
    -------
    pandas.DataFrame
        48 closed-loop runs of Qwen3.8-27B on one B200 (vLLM + GuideLLM), one row per run, with the
        columns of :data:`bayes_sd.traces.RUNS` (``k``, ``concurrency``, ``prompt_len``/``output_len`` in
        tokens, ``latency_mean_s``/``ttft_mean_s``/``tpot_mean_s`` in s, ``achieved_rps`` in requests/s,
        ``saturated``, ...).

    Raises
    ------
    FileNotFoundError
        When the bundled file is missing.

    Examples
    --------
    >>> len(load_b200_runs())
    48
    """
    return _runs(_file("real", "b200_runs.csv", made_by="data/real/make_canonical.py"))


def load_eagle_bs1_runs() -> pd.DataFrame:
    """Real batch-1 EAGLE runs (``data/real/eagle_bs1_runs.csv``): runs table validated
    with ``require_stats=False`` (TPOT / acceptance length / output tokens/s only).

    Returns
    -------
    pandas.DataFrame
        Canonical runs table: ``tpot_mean_s`` (s), ``acceptance_length`` (tokens per verify step),
        ``output_tps`` (tokens/s); ``latency_mean_s`` is empty.

    Raises
    ------
    FileNotFoundError
        When the bundled file is missing.
    """
    return _runs(_file("real", "eagle_bs1_runs.csv", made_by="data/real/make_canonical.py"), require_stats=False)


def load_fleet_runs() -> pd.DataFrame:
    """Synthetic fleet runs (``data/synthetic/fleet_runs_synthetic.csv``), validated.

    Returns
    -------
    pandas.DataFrame
        Canonical runs table (:data:`bayes_sd.traces.RUNS`; seconds, requests/s, tokens), labelled
        synthetic (``source`` starts with ``synthetic:``).

    Raises
    ------
    FileNotFoundError
        When the bundled file is missing.
    """
    return _runs(_file("synthetic", "fleet_runs_synthetic.csv", made_by="the synthetic fleet generator"))


def load_fleet_models() -> pd.DataFrame:
    """Synthetic fleet models (``data/synthetic/fleet_models_synthetic.csv``), validated.

    Returns
    -------
    pandas.DataFrame
        Canonical MODELS table (:data:`bayes_sd.traces.MODELS`): ``name``, ``params_b`` (billions of
        parameters), ``layers``, ``hidden_size``, ``experts``, ``experts_per_token``.

    Raises
    ------
    FileNotFoundError
        When the bundled file is missing.
    """
    path = _file("synthetic", "fleet_models_synthetic.csv", made_by="the synthetic fleet generator")
    kind, df = read_table(path)
    return validate_models(df, str(path))
