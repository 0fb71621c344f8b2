"""Parameter recovery: simulate runs with known service costs, fit, check interval coverage.

The runs are SYNTHETIC, from :func:`bayes_sd.simulate.designs.recovery_runs`. For a configuration
with a roofline knee (``roofline``, ``moe_roofline``, the main job's) the truth also has a
per-sequence cost and a knee (``TRUE_ROOFLINE_COSTS``). Used by ``bench/recovery.py`` and the
slow test ``tests/evaluation/test_recovery.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayes_sd import theory
from bayes_sd.model import ConvergenceWarning, LatencyModel
from bayes_sd.model.config import load_config
from bayes_sd.model.fit_data import KNEE_FORMS
from bayes_sd.simulate.designs import (
    TRUE_ACCEPTANCE,
    TRUE_COSTS,
    TRUE_ROOFLINE_COSTS,
    recovery_runs,
)

__all__ = ["coverage_table", "run_recovery", "true_costs"]


def true_costs(config: str | dict = "default") -> theory.ServiceCosts:
    """The truth the recovery design simulates for a model configuration: ``TRUE_ROOFLINE_COSTS``
    for the forms with a roofline knee (they also fit ``s1``), ``TRUE_COSTS`` otherwise."""
    form = load_config(config).get("model", {}).get("verifier_form", "dense")
    return TRUE_ROOFLINE_COSTS if form in KNEE_FORMS else TRUE_COSTS


def coverage_table(model, prob: float = 0.9, costs: theory.ServiceCosts = TRUE_COSTS) -> pd.DataFrame:
    """One row per true quantity: truth, posterior interval, covered or not (costs in ms; ``s1``,
    the knee in tokens and its compute share too when the model fits them)."""
    post = model.idata.posterior
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    rows = []

    def add(quantity, truth, draws):
        x = np.asarray(draws).ravel()
        rows.append({"quantity": quantity, "truth": truth, "lo": np.quantile(x, lo_q), "hi": np.quantile(x, hi_q)})

    truth_ms = {c: getattr(costs, c) * 1000 for c in theory.COEFS}
    for var, dim in (("verifier_cost_ms", "vcoef"), ("drafter_cost_ms", "dcoef")):
        da = post[var]
        for coef in da.coords[dim].values:
            add(str(coef), truth_ms[coef], da.sel({dim: coef}).values)
    for var, quantity, truth in (("sequence_cost_ms", "s1", costs.s1 * 1000),
                                 ("knee_tokens", "knee_tokens", costs.knee_tokens),
                                 ("knee_compute_share", "compute_share", costs.compute_share)):
        if var in post:  # one verifier x hardware level
            add(quantity, truth, post[var].values)
    acc = post["acceptance"].values.reshape(-1, post["acceptance"].shape[-1])
    for j, name in enumerate(post["acceptance"].coords["pair_dataset"].values):
        rows.append({"quantity": f"acceptance[{name.split('|')[-1].strip()}]", "truth": TRUE_ACCEPTANCE,
                     "lo": np.quantile(acc[:, j], lo_q), "hi": np.quantile(acc[:, j], hi_q)})
    out = pd.DataFrame(rows)
    out["covered"] = (out["truth"] >= out["lo"]) & (out["truth"] <= out["hi"])
    return out


def run_recovery(seeds, *, draws: int = 300, tune: int = 300, chains: int = 2,
                 config: str | dict = "default") -> pd.DataFrame:
    """Fit ``config`` to every seed's design (simulated from :func:`true_costs` of it) and stack the
    coverage tables (column ``seed``)."""
    costs = true_costs(config)
    tables = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LatencyModel(config).fit(recovery_runs(seed, costs=costs), draws=draws, tune=tune, chains=chains,
                                             random_seed=seed, progressbar=False)
        tables.append(coverage_table(model, costs=costs).assign(seed=seed, max_rhat=model.diagnostics()["max_rhat"]))
    return pd.concat(tables, ignore_index=True)
