"""Held-out splits of a runs table: what a model is asked to predict that it did not see.

Each split function returns a list of :class:`Split` (train rows, test rows, a label). The five
kinds answer five questions a user asks of a fit:

- :func:`highest_loads`: extrapolation in load. Per configuration (verifier, drafter, hardware,
  dataset, k, load type) its highest load is held out (all of them in one split).
- :func:`leave_one_pair_out`: a verifier/drafter pair never measured, one split per pair (its k = 0
  runs stay in training: the verifier alone was measured).
- :func:`leave_one_k_out`: interpolation in k. For every pair measured at three or more draft
  lengths, one split per middle k held out.
- :func:`one_k_measured`: extrapolation in k. For every pair measured at two or more draft lengths,
  training keeps one k (the most common in practice: the smallest) and tests the others.
- :func:`one_k_per_drafter`: extrapolation in k for a drafter measured at one k anywhere (as a new
  drafter usually is). For every drafter measured at two or more draft lengths, training keeps one k
  on all its pairs and tests its other k.

Held-out runs measured saturated stay in the test rows (a score must count them; see
:mod:`bayes_sd.evaluation.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["Split", "CONFIGURATION", "configuration_label", "highest_loads", "leave_one_pair_out",
           "leave_one_k_out", "one_k_measured", "one_k_per_drafter", "SPLITS"]

#: the columns that make one configuration (a cluster for the bootstrap)
CONFIGURATION = ["verifier", "drafter", "hardware", "dataset", "k", "load_type"]


@dataclass
class Split:
    """Train and test rows of one held-out split (``label`` says what was held out)."""

    kind: str
    label: str
    train: pd.DataFrame
    test: pd.DataFrame


def configuration_label(runs: pd.DataFrame) -> pd.Series:
    """One string per run naming its configuration (``verifier|drafter|hardware|dataset|k|load``)."""
    return runs[CONFIGURATION].astype(str).agg("|".join, axis=1)


def _load(runs: pd.DataFrame) -> pd.Series:
    return runs["rate_rps"].where(runs["load_type"] == "rate", runs["concurrency"]).astype(float)


def highest_loads(runs: pd.DataFrame) -> list[Split]:
    """One split: every configuration's highest-load run held out (configurations with two or more loads)."""
    load = _load(runs)
    cfg = configuration_label(runs)
    n = cfg.map(cfg.value_counts())
    top = load == load.groupby(cfg).transform("max")
    test = top & (n >= 2)
    return [Split("highest_loads", "highest load of each configuration", runs[~test], runs[test])]


def _pairs(runs: pd.DataFrame) -> pd.Series:
    return runs["verifier"].astype(str) + " + " + runs["drafter"].astype(str)


def leave_one_pair_out(runs: pd.DataFrame) -> list[Split]:
    """One split per speculative pair: its k >= 1 runs held out, everything else trained on."""
    spec = runs["k"] > 0
    pairs = _pairs(runs)
    out = []
    for pair in sorted(pairs[spec].unique()):
        test = spec & (pairs == pair)
        out.append(Split("leave_one_pair_out", pair, runs[~test], runs[test]))
    return out


def leave_one_k_out(runs: pd.DataFrame) -> list[Split]:
    """One split per (pair, middle k) for pairs measured at three or more draft lengths."""
    spec = runs["k"] > 0
    pairs = _pairs(runs)
    out = []
    for pair in sorted(pairs[spec].unique()):
        ks = sorted(runs.loc[spec & (pairs == pair), "k"].unique())
        for k in ks[1:-1]:
            test = spec & (pairs == pair) & (runs["k"] == k)
            out.append(Split("leave_one_k_out", f"{pair} at k = {k}", runs[~test], runs[test]))
    return out


def one_k_measured(runs: pd.DataFrame) -> list[Split]:
    """One split per pair measured at two or more draft lengths: train on its smallest k only."""
    spec = runs["k"] > 0
    pairs = _pairs(runs)
    out = []
    for pair in sorted(pairs[spec].unique()):
        mine = spec & (pairs == pair)
        ks = sorted(runs.loc[mine, "k"].unique())
        if len(ks) < 2:
            continue
        test = mine & (runs["k"] != ks[0])
        out.append(Split("one_k_measured", f"{pair}: k = {ks[0]} measured", runs[~test], runs[test]))
    return out


def one_k_per_drafter(runs: pd.DataFrame) -> list[Split]:
    """One split per drafter measured at two or more draft lengths: training keeps it at one k on every
    pair (the k measured on the most of its pairs, the smallest on a tie), so that no run says how its
    acceptance changes with k; its runs at the other k, on the pairs measured at the kept one, are
    tested (its pairs not measured at that k are in neither)."""
    spec = runs["k"] > 0
    pairs = _pairs(runs)
    out = []
    for drafter in sorted(runs.loc[spec, "drafter"].astype(str).unique()):
        mine = spec & (runs["drafter"].astype(str) == drafter)
        if runs.loc[mine, "k"].nunique() < 2:
            continue
        per_k = pairs[mine].groupby(runs.loc[mine, "k"]).nunique()
        kept = int(per_k[per_k == per_k.max()].index.min())
        at_kept = set(pairs[mine & (runs["k"] == kept)])
        others = mine & (runs["k"] != kept)
        test = others & pairs.isin(at_kept)
        out.append(Split("one_k_per_drafter", f"{drafter}: k = {kept} measured", runs[~others], runs[test]))
    return out


#: split kinds by name
SPLITS = {"highest_loads": highest_loads, "leave_one_pair_out": leave_one_pair_out,
          "leave_one_k_out": leave_one_k_out, "one_k_measured": one_k_measured,
          "one_k_per_drafter": one_k_per_drafter}
