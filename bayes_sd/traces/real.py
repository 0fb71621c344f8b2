"""Reader for the tidy long-format real measurement files (``data/real/*.csv``).

Those files hold one row per (run, metric): run attributes (``source_id``, ``hardware``,
``verifier``, ``drafter``, ``method``, ``k``, ``load_type``, ``concurrency``, ``dataset``,
``config_label``, ...) then ``metric``, ``value``, ``unit``, ``value_kind``, ``note``.
:func:`read_real_long` pivots them into the canonical ``runs`` table: units converted
(ms -> s), names shortened (hardware ``'B200'``, drafter ``'dspark'``, dataset
``'HumanEval'``: the mappings are the dicts below, documented in ``data/real/SOURCES.md``),
saturation detected. Metrics without a canonical column (p99 TTFT, median ITL, ...) and
model inversions (``value_kind == 'model_inversion'``) are left out.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .aggregate import fill_saturation
from .io import REAL_LONG_COLUMNS, read_table
from .schema import NO_DRAFTER, RUNS, TraceError
from .validate import STAT_COLUMNS, validate_runs

__all__ = ["read_real_long", "real_long_to_runs", "long_to_runs", "METRIC_MAP", "DRAFTER_SHORT", "VERIFIER_SHORT"]

#: metric -> (canonical run column, expected unit, factor to the canonical unit).
METRIC_MAP = {
    "completed_rps": ("achieved_rps", "req/s", 1.0),
    "successful_requests": ("n_requests", "count", 1.0),
    "mean_latency_s_littles_law": ("latency_mean_s", "s", 1.0),
    "median_ttft_ms": ("ttft_p50_s", "ms", 1e-3),
    "mean_itl_ms": ("tpot_mean_s", "ms", 1e-3),  # GuideLLM ITL excludes the first token: = TPOT
    "tpot_ms": ("tpot_mean_s", "ms", 1e-3),
    "mean_prompt_tokens": ("prompt_len", "tokens", 1.0),
    "mean_output_tokens": ("output_len", "tokens", 1.0),
    "num_accepted_tokens": ("accepted_tokens", "count", 1.0),
    "num_drafts": ("num_drafts", "count", 1.0),
    "acceptance_length": ("acceptance_length", "tokens/verify step", 1.0),
    "mean_accept_len": ("acceptance_length", "tokens/step", 1.0),
    "aggregate_output_tps": ("output_tps", "tok/s", 1.0),
    "output_tok_per_s": ("output_tps", "tok/s", 1.0),
}
#: Full drafter names in the real files -> short names used as ``runs.drafter``.
DRAFTER_SHORT = {
    "RedHatAI/Qwen3.8-27B-speculator.dspark": "dspark",
    "in-checkpoint MTP head": "mtp",
    "yuhuili/EAGLE-LLaMA3.1-Instruct-8B": "eagle1-llama3.1-8b",
    "yuhuili/EAGLE-LLaMA3.1-Instruct-8B (EAGLE-1, presumed)": "eagle1-llama3.1-8b",
    "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B": "eagle3-llama3.1-8b",
    "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B (presumed)": "eagle3-llama3.1-8b",
    "lmsys/sglang-EAGLE-LLaMA3-Instruct-8B": "eagle1-llama3-8b-sglang",
}
#: Verifier names -> short forms used only inside run_id (``runs.verifier`` keeps the full name).
VERIFIER_SHORT = {
    "Qwen/Qwen3.8-27B": "qwen27b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3.1-8b",
    "Llama-3-8B-Instruct": "llama3-8b",
}
#: Long-format load types -> (canonical load_type, fixed concurrency or None).
LOAD_MAP = {
    "closed_loop_streams": ("concurrency", None),
    "batch_size_1": ("concurrency", 1.0),
    "concurrency": ("concurrency", None),
    "rate": ("rate", None),
    "open_loop_rate": ("rate", None),
    "poisson": ("rate", None),
    "constant": ("rate", None),
}
_RUN_KEY = ["source_id", "config_label", "dataset"]
_ACCEL = re.compile(r"\b(GB200|B200|B100|H200|H100|H800|H20|A100|A10G?|L40S|L4|MI300X|MI325X|MI355X"
                    r"|TPU\s?v\w+)\b", re.I)


def short_hardware(text) -> str:
    """'1x NVIDIA B200 (TP=1)' -> 'B200', '8x H100' -> '8xH100'; 'not stated ...' -> 'unknown'."""
    if not isinstance(text, str) or not text.strip() or text.strip().lower().startswith("not stated"):
        return "unknown"
    m = _ACCEL.search(text)
    if not m:
        return text.strip()
    n = re.match(r"\s*(\d+)\s*x", text)
    name = m.group(1).upper().replace(" ", "")
    return f"{n.group(1)}x{name}" if n and int(n.group(1)) > 1 else name


def short_dataset(text) -> str:
    """'RedHatAI/speculator_benchmarks HumanEval (max_tokens ...)' -> 'HumanEval';
    'MT-Bench (80 prompts)' -> 'MT-Bench'; 'not stated ...' -> 'unknown'."""
    if not isinstance(text, str) or not text.strip() or text.strip().lower().startswith("not stated"):
        return "unknown"
    head = re.sub(r"\s*\(.*$", "", text.strip())
    return head.split()[-1].split("/")[-1] if head else "unknown"


def short_drafter(name, method) -> str:
    """Readable drafter name (:data:`DRAFTER_SHORT`, else the model basename, lower case)."""
    if not isinstance(name, str) or not name.strip():
        return NO_DRAFTER if str(method).strip().lower() in ("none", "nan", "") else str(method).strip().lower()
    if name in DRAFTER_SHORT:
        return DRAFTER_SHORT[name]
    return re.sub(r"\s*\(.*$", "", name).split("/")[-1].lower()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")


def long_to_runs(long: pd.DataFrame, source: str = "real_long") -> pd.DataFrame:
    """Pivot a long-format table (one row per (run, metric)) to canonical run rows.

    Runs are keyed by (source_id, config_label, dataset). The result is not validated
    and has no saturation flags: :func:`read_real_long` does both.
    """
    need = set(REAL_LONG_COLUMNS) | {"hardware", "verifier", "drafter", "method", "k", "load_type",
                                     "concurrency", "request_rate", "dataset", "prompt_len", "output_len"}
    miss = sorted(need - set(long.columns))
    if miss:
        raise TraceError(source, miss[0], "column of the long format is missing",
                         f"the long format needs {sorted(need)}")
    long = long[long["value_kind"].fillna("measured") != "model_inversion"] if "value_kind" in long else long
    known = long[long["metric"].isin(list(METRIC_MAP))]
    for metric, unit in known[["metric", "unit"]].drop_duplicates().itertuples(index=False):
        if str(unit) != METRIC_MAP[metric][1]:
            raise TraceError(source, "unit", f"metric '{metric}' has unit '{unit}', expected '{METRIC_MAP[metric][1]}'",
                             "fix the unit column, or the value, so that the conversion to seconds is right")
    keys = long[_RUN_KEY].fillna("")
    dup = known.assign(**{c: keys.loc[known.index, c] for c in _RUN_KEY}).duplicated(_RUN_KEY + ["metric"])
    if dup.any():
        row = known[dup.to_numpy()].iloc[0]
        raise TraceError(source, "metric", f"metric '{row['metric']}' given twice for run '{row['config_label']}'",
                         "give each (source_id, config_label, dataset, metric) once")
    attrs = long.assign(**keys).drop_duplicates(_RUN_KEY).set_index(_RUN_KEY)
    conv = known.assign(**keys.loc[known.index])
    conv = conv.assign(col=conv["metric"].map(lambda m: METRIC_MAP[m][0]),
                       v=conv["value"].astype("float64") * conv["metric"].map(lambda m: METRIC_MAP[m][2]))
    wide = conv.pivot_table(index=_RUN_KEY, columns="col", values="v", aggfunc="first")
    wide = wide.reindex(attrs.index)

    runs = pd.DataFrame(index=attrs.index)
    runs["source"] = attrs.index.get_level_values("source_id")
    runs["hardware"] = attrs["hardware"].map(short_hardware).to_numpy()
    runs["verifier"] = attrs["verifier"].astype("str").str.strip().to_numpy()
    runs["drafter"] = [short_drafter(d, m) for d, m in zip(attrs["drafter"], attrs["method"])]
    runs["dataset"] = [short_dataset(d) for d in attrs.index.get_level_values("dataset")]
    runs["k"] = attrs["k"].astype("int64").to_numpy()
    lt = attrs["load_type"].astype("str").str.strip().str.lower()
    unknown = sorted(set(lt) - set(LOAD_MAP))
    if unknown:
        raise TraceError(source, "load_type", f"unknown load type '{unknown[0]}'",
                         f"use one of {sorted(LOAD_MAP)} (mapped to 'rate' or 'concurrency')")
    runs["load_type"] = lt.map(lambda x: LOAD_MAP[x][0]).to_numpy()
    fixed = lt.map(lambda x: LOAD_MAP[x][1]).astype("float64").to_numpy()
    runs["concurrency"] = np.where(np.isnan(fixed), attrs["concurrency"].astype("float64").to_numpy(), fixed)
    runs["rate_rps"] = attrs["request_rate"].astype("float64").to_numpy()
    for c in STAT_COLUMNS:
        runs[c] = wide[c].to_numpy() if c in wide.columns else np.nan
    for c in ("prompt_len", "output_len"):  # fall back to the run attributes
        runs[c] = runs[c].fillna(attrs[c].astype("float64")) if c in attrs else runs[c]
    if "mean_accept_len" in attrs:
        runs["acceptance_length"] = runs["acceptance_length"].fillna(attrs["mean_accept_len"].astype("float64"))
    runs["draft_tokens"] = runs["num_drafts"] * runs["k"]
    runs["acceptance_length"] = runs["acceptance_length"].where(runs["k"] > 0)  # not defined without drafts
    conc = runs["concurrency"].map(lambda c: f"c{c:g}" if pd.notna(c) else "cNA")
    rate = runs["rate_rps"].map(lambda r: f"r{r:g}" if pd.notna(r) else "")
    load = np.where(runs["load_type"] == "rate", rate, conc)
    vshort = runs["verifier"].map(lambda v: VERIFIER_SHORT.get(v, _slug(v.split("/")[-1]).lower()))
    runs["run_id"] = [f"{h.lower()}-{v}-{d}-k{k}-{_slug(ds)}-{ld}" for h, v, d, k, ds, ld in
                      zip(runs["hardware"], vshort, runs["drafter"], runs["k"], runs["dataset"], load)]
    dup = runs["run_id"].duplicated(keep=False)
    runs.loc[dup, "run_id"] = runs.loc[dup, "run_id"] + "-" + runs.loc[dup, "source"].map(_slug)
    cols = [c.name for c in RUNS if c.name in runs.columns]
    return runs.reset_index(drop=True)[cols]


def real_long_to_runs(long: pd.DataFrame, source: str = "real_long", *, saturation: bool = True) -> pd.DataFrame:
    """Long-format table -> validated canonical runs, sorted by run_id.

    Tables where every run has a latency measurement are validated with
    ``require_stats=True``; tables with runs that lack one (batch-1 sweeps reporting only
    TPOT and acceptance length, e.g. ``vllm_eagle_bs1_k_sweeps.csv``) keep those runs with
    ``latency_mean_s`` empty and are validated with ``require_stats=False``.

    Parameters
    ----------
    long : pandas.DataFrame
        One row per (run, metric): the run attributes, then ``metric``, ``value``, ``unit``
        (``value_kind``, ``note``).
    source : str, default "real_long"
        Name of the table, used in error messages.
    saturation : bool, default True
        Fill ``saturated`` / ``saturation_reason`` by
        :func:`~bayes_sd.traces.aggregate.detect_saturation` (run-level rules).

    Returns
    -------
    pandas.DataFrame
        Canonical runs table (units converted: ms -> s; rates in requests/s, lengths in tokens),
        sorted by ``run_id``.

    Raises
    ------
    TraceError
        When a column of the long format is missing, a metric has an unexpected unit or is given
        twice for a run, a load type is unknown, or the runs fail validation.
    """
    runs = long_to_runs(long, source)
    full = bool(runs[["latency_mean_s", "n_requests"]].notna().all(axis=None))
    runs = validate_runs(runs, source, require_stats=full)
    if saturation:
        runs = fill_saturation(runs)
    return runs.sort_values("run_id", kind="stable").reset_index(drop=True)


def read_real_long(path, *, saturation: bool = True) -> pd.DataFrame:
    """Read a long-format real file (CSV or parquet) into a validated canonical ``runs``
    table: :func:`real_long_to_runs` on the file's rows. The file is only read.

    Parameters
    ----------
    path : str or pathlib.Path
        A long-format file (``data/real/*.csv``).
    saturation : bool, default True
        Fill ``saturated`` / ``saturation_reason`` (run-level rules).

    Returns
    -------
    pandas.DataFrame
        Canonical runs table (seconds, requests/s, tokens), sorted by ``run_id``.

    Raises
    ------
    TraceError
        When the file cannot be read, is not in the long format, or its runs cannot be used
        (see :func:`real_long_to_runs`).
    """
    kind, long = read_table(path)
    if kind != "real_long":
        raise TraceError(str(path), None, f"this is a '{kind}' table, not the long real-data format",
                         "read it with read_table and the matching validate_* function")
    return real_long_to_runs(long, str(path), saturation=saturation)
