"""Parameter recovery: simulate runs with known service costs, fit, check interval coverage.

The design is SYNTHETIC (generated here with :mod:`bayes_sd.simulate`): one dense verifier
with one drafter on one hardware type, k in {0, 2, 4, 7}, closed loop at 1-48 streams and
open loop at 10-70 % of the saturation rate, two prompt lengths (so the fixed and per-token
prefill costs are separable) and constant per-position acceptance (so the true acceptance
is one number). For a configuration with a roofline knee (``roofline``, ``moe_roofline``, the
main job's) the truth also has a per-sequence cost and a knee (``TRUE_ROOFLINE_COSTS``), which
the closed loop at 48 streams and k = 7 (384 tokens per pass) passes.
Used by ``bench/recovery.py`` and the slow test ``tests/test_recovery.py``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from bayes_sd import theory
from bayes_sd.simulate import simulate_runs

__all__ = ["TRUE_COSTS", "TRUE_ROOFLINE_COSTS", "TRUE_ACCEPTANCE", "recovery_runs", "coverage_table", "run_recovery",
           "true_costs"]

#: the true costs (s): an 8B-class verifier with a small EAGLE-like drafter (illustrative)
TRUE_COSTS = theory.ServiceCosts(v0=6.5e-3, v1=5e-5, d0=0.45e-3, d1=1e-5, p0=15e-3, p1=6e-5, c1=2e-8)
#: the same with a per-sequence pass cost and a roofline knee (the fleet's llama3.1-8b values)
TRUE_ROOFLINE_COSTS = dataclasses.replace(TRUE_COSTS, s1=15e-6, knee_tokens=240.0, compute_share=0.7)
TRUE_ACCEPTANCE = 0.7
_VERIFIER, _DRAFTER, _HW = "sim-8b", "sim-eagle", "SIM-GPU"


def true_costs(config: str | dict = "default") -> theory.ServiceCosts:
    """The truth the recovery design simulates for a model configuration: ``TRUE_ROOFLINE_COSTS``
    for the forms with a roofline knee (they also fit ``s1``), ``TRUE_COSTS`` otherwise."""
    from bayes_sd.model.config import load_config
    from bayes_sd.model.fit_data import KNEE_FORMS

    form = load_config(config).get("model", {}).get("verifier_form", "dense")
    return TRUE_ROOFLINE_COSTS if form in KNEE_FORMS else TRUE_COSTS


def recovery_runs(seed: int, n_requests: int = 300, costs: theory.ServiceCosts = TRUE_COSTS) -> pd.DataFrame:
    """Canonical runs simulated from ``costs`` (synthetic), one design per seed."""
    from bayes_sd.presets import Preset

    preset = Preset(verifier=_VERIFIER, drafter=_DRAFTER, hardware=_HW, costs=costs,
                    acceptance={"short": (TRUE_ACCEPTANCE,) * 8, "long": (TRUE_ACCEPTANCE,) * 8},
                    description="synthetic recovery preset")
    rows = []
    for dataset, prompt_len in (("short", 256.0), ("long", 1024.0)):
        for k in (0, 2, 4, 7):
            tau = theory.tau_constant(TRUE_ACCEPTANCE, k)
            dem = theory.demand(costs, k, tau, prompt_len, 200.0)
            sat = theory.saturation_rate(dem.c2)
            base = {"preset": "recovery", "dataset": dataset, "k": k, "prompt_len": prompt_len,
                    "output_len": 200.0, "length_cv": 0.3, "n_requests": n_requests}
            for c in (1, 4, 16, 48):
                rows.append({**base, "run_id": f"rec-{dataset}-k{k}-c{c}", "load_type": "concurrency",
                             "concurrency": c})
            for frac in (0.1, 0.4, 0.7):
                rows.append({**base, "run_id": f"rec-{dataset}-k{k}-r{frac}", "load_type": "rate",
                             "rate_rps": frac * sat, "n_requests": 3 * n_requests})
    _, runs = simulate_runs(pd.DataFrame(rows), presets={"recovery": preset}, seed=seed)
    return runs


def coverage_table(model, prob: float = 0.9, costs: theory.ServiceCosts = TRUE_COSTS) -> pd.DataFrame:
    """One row per true quantity: truth, posterior interval, covered or not (costs in ms; ``s1``,
    the knee in tokens and its compute share too when the model fits them)."""
    post = model.idata.posterior
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    rows = []

    def add(quantity, truth, draws):
        x = np.asarray(draws).ravel()
        rows.append({"quantity": quantity, "truth": truth, "lo": np.quantile(x, lo_q), "hi": np.quantile(x, hi_q)})

    truth_ms = {c: getattr(costs, c) * 1000 for c in ("v0", "v1", "p0", "p1", "c1", "d0", "d1")}
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
    from bayes_sd.model import ConvergenceWarning, LatencyModel

    costs = true_costs(config)
    tables = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LatencyModel(config).fit(recovery_runs(seed, costs=costs), draws=draws, tune=tune, chains=chains,
                                             random_seed=seed, progressbar=False)
        tables.append(coverage_table(model, costs=costs).assign(seed=seed, max_rhat=model.diagnostics()["max_rhat"]))
    return pd.concat(tables, ignore_index=True)
