"""Where a condition's load sits relative to the loads its configuration (or server) was measured at.

The load-trend discrepancy (``config_load_trend``, MODEL.md: structural error) bends a
configuration's per-request load cost C2 by ``exp(b * offset)``, with ``offset`` the log of the
load (concurrency in streams, or request rate in requests/s) minus the mean log load of the
configuration's measured runs of the same load type. A fitted configuration's slope ``b`` is pinned
by how its runs depart from the cost law across their loads; a condition far from them carries its
uncertainty times the distance, so predictions widen the further they extrapolate in load. The
server-level trend (``server_load_trend``) bends every configuration of a verifier x hardware alike,
its offset from the server's measured loads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_sd.model.fit_data import configuration_level_label, level_label
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["log_load", "load_offset"]


def log_load(runs: pd.DataFrame) -> np.ndarray:
    """Natural log of each run's load: of ``rate_rps`` (requests/s) for an open loop, else of
    ``concurrency`` (streams); NaN where that load is missing or not positive."""
    is_open = (runs["load_type"] == "rate").to_numpy()
    rate = runs["rate_rps"].to_numpy(float) if "rate_rps" in runs else np.full(len(runs), np.nan)
    conc = runs["concurrency"].to_numpy(float) if "concurrency" in runs else np.full(len(runs), np.nan)
    load = np.where(is_open, rate, conc)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(load) & (load > 0), np.log(load), np.nan)


def _keys(runs: pd.DataFrame) -> pd.DataFrame:
    drafter = runs["drafter"].fillna(NO_DRAFTER).astype(str).where(runs["k"].astype(float) > 0, NO_DRAFTER)
    verifier, hardware = runs["verifier"].astype(str), runs["hardware"].astype(str)
    dataset = runs["dataset"].fillna("unseen").astype(str) if "dataset" in runs else pd.Series("unseen", runs.index)
    return pd.DataFrame({
        "configuration": [configuration_level_label(*row) for row in
                          zip(verifier, drafter, hardware, dataset, runs["k"].astype(float))],
        "server": [level_label(v, h) for v, h in zip(verifier, hardware)],
        "load_type": runs["load_type"].astype(str),
        "log_load": log_load(runs),
    }, index=runs.index)


def load_offset(conditions: pd.DataFrame, runs: pd.DataFrame, by: str = "configuration") -> np.ndarray:
    """Log-load offset of each condition from its configuration's (or server's) measured loads
    (dimensionless).

    The centre is the mean log load of the ``runs`` of the condition's configuration (pair, hardware,
    dataset, k) under its load type; for a configuration never measured (or with ``by="server"``),
    that of its verifier x hardware's runs under the load type, else of every run under it; with no
    run of that load type the offset is 0 (no trend can be learned for it).

    Parameters
    ----------
    conditions : pandas.DataFrame
        ``verifier``, ``drafter``, ``hardware``, ``dataset``, ``k``, ``load_type`` and ``rate_rps`` or
        ``concurrency`` per condition.
    runs : pandas.DataFrame
        The measured runs (e.g. the fitted ones), with the same columns.
    by : {"configuration", "server"}
        Whose measured loads centre the offset.

    Returns
    -------
    numpy.ndarray
        ``log(load) - centre`` per condition; 0 where the condition's load is missing.
    """
    if by not in ("configuration", "server"):
        raise ValueError(f"by = {by!r}: 'configuration' or 'server'")
    cond, fitted = _keys(conditions), _keys(runs).dropna(subset=["log_load"])
    centre = pd.Series(np.nan, index=cond.index)
    for level in (("configuration",) if by == "configuration" else ()) + ("server", None):
        keys = ["load_type"] if level is None else [level, "load_type"]
        means = fitted.groupby(keys)["log_load"].mean()
        found = pd.MultiIndex.from_frame(cond[keys]) if len(keys) > 1 else pd.Index(cond["load_type"])
        centre = centre.fillna(pd.Series(means.reindex(found).to_numpy(), index=cond.index))
    return np.nan_to_num((cond["log_load"] - centre).to_numpy(float))
