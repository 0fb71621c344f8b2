"""How much to trust a configuration's numbers: its held-out figures on the frozen test set.

``bench/calibration.py --frozen --summary-out data/frozen/results.csv`` scores the configurations on
the frozen out-of-family test set (``data/frozen``, never used to shape the model) and writes one row
per (configuration, split kind, lengths, figure) with its 90% cluster-bootstrap interval, the date and
the commit. The report's "How much to trust this" section and ``docs/evaluation.md`` state those rows.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["RESULTS_FILE", "frozen_results", "trust_table", "trust_reading"]

#: where the frozen set's scores are kept, in the bundled data
RESULTS_FILE = "frozen/results.csv"
_FIGURES = {"mape_median": "MAPE of the median", "coverage_50": "50% interval coverage",
            "coverage_90": "90% interval coverage", "infinite_mean_share": "runs with an infinite predictive mean",
            "brier": "Brier score of P(saturated)", "mape_tau": "acceptance length error",
            "coverage_tau_90": "acceptance length 90% coverage"}


def frozen_results(path: str | Path | None = None) -> pd.DataFrame | None:
    """The frozen set's scores (``data/frozen/results.csv``), or None when they were never measured."""
    p = Path(path) if path is not None else Path(str(resources.files("bayes_sd.data"))) / RESULTS_FILE
    return pd.read_csv(p) if p.is_file() else None


def trust_table(config: str, results: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The key held-out figures of ``config`` on the frozen set: one row per split kind (at the
    workload's training lengths), columns per figure as ``estimate [low, high]``; None when the
    configuration was not scored."""
    results = frozen_results() if results is None else results
    if results is None:
        return None
    mine = results[(results["config"] == config) & (results["lengths"] == "training")
                   & results["figure"].isin(list(_FIGURES))]
    if mine.empty:
        return None

    def cell(r):
        pct = r.figure != "brier"
        f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.3f}")
        if not np.isfinite(r.estimate):  # a finite run whose predictive median is infinite (saturated)
            return "infinite"
        return f"{f(r.estimate)} [{f(r.low)}, {f(r.high)}]" if np.isfinite([r.low, r.high]).all() else f(r.estimate)

    table = mine.assign(value=[cell(r) for r in mine.itertuples()]).pivot_table(
        index="kind", columns="figure", values="value", aggfunc="first")
    table = table[[f for f in _FIGURES if f in table.columns]].rename(columns=_FIGURES)
    return table.reset_index().rename(columns={"kind": "held out"})


def trust_reading(config: str, results: pd.DataFrame | None = None) -> str:
    """One paragraph saying what the frozen-set figures mean for ``config``'s predictions."""
    results = frozen_results() if results is None else results
    if results is None or results[results["config"] == config].empty:
        return (f"The configuration '{config}' has not been scored on the frozen out-of-family test set: how far "
                "its intervals hold out of sample is unknown (see docs/evaluation.md).")
    mine = results[(results["config"] == config) & (results["lengths"] == "training")]
    first = mine.iloc[0]
    cov = mine[mine["figure"] == "coverage_90"].set_index("kind")["estimate"]
    worst = cov.idxmin() if len(cov) else "?"
    return (f"On the frozen out-of-family test set (synthetic fleets from a simulator that does not share the "
            f"model's closed form; scored {first.get('measured', '?')} at commit {first.get('commit', '?')}), "
            f"the 90% predictive intervals of '{config}' held {100 * cov.min():.0f}-{100 * cov.max():.0f}% of the "
            f"held-out runs depending on what was held out (least where {worst.replace('_', ' ')} were). Read the "
            "intervals in this report with that in mind: where the frozen set says they are too narrow, so are "
            "these, most when a prediction extrapolates in load or in k. Those fits knew each server's batch cap "
            "(max_num_seqs); near capacity, predictions without it (no max_num_seqs column in the runs) are "
            "less sure than these figures say.")
