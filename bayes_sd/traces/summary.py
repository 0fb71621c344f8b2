"""Plain-table summaries of canonical run tables (what was measured, where, at which loads)."""

from __future__ import annotations

import pandas as pd

__all__ = ["runs_summary", "data_kind"]


def data_kind(source: pd.Series) -> pd.Series:
    """'synthetic' for simulator-generated runs (source starts with 'synthetic:'), else 'real'."""
    return source.astype(str).str.startswith("synthetic:").map({True: "synthetic", False: "real"})


def _fmt_range(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "-"
    lo, hi = v.min(), v.max()
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"


def runs_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (data kind, hardware, verifier, drafter, dataset, load type).

    Columns: runs, saturated runs, draft lengths k measured, offered rates (requests/s) or
    concurrencies covered, and the mean latency range (s).
    """
    df = runs.assign(data=data_kind(runs["source"]))
    keys = ["data", "hardware", "verifier", "drafter", "dataset", "load_type"]
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        load = g["rate_rps"] if key[-1] == "rate" else g["concurrency"]
        rows.append({
            **dict(zip(keys, key)),
            "runs": len(g),
            "saturated": int(g["saturated"].fillna(False).astype(bool).sum()) if "saturated" in g else 0,
            "k": ",".join(str(int(k)) for k in sorted(g["k"].unique())),
            "load": _fmt_range(load),
            "latency_s": _fmt_range(g["latency_mean_s"]),
        })
    return pd.DataFrame(rows)
