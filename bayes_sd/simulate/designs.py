"""SYNTHETIC run designs with a known truth: parameter recovery and a drafter family.

Every table here is simulated with :mod:`bayes_sd.simulate` from ILLUSTRATIVE costs; it is
validation data (it follows the model's own cost law), never evidence about real servers.

- Parameter recovery (:func:`recovery_runs`, used by :mod:`bayes_sd.evaluation.recovery`): one
  dense verifier with one drafter on one hardware type, k in {0, 2, 4, 7}, closed loop at 1-48
  streams and open loop at 10-70 % of the saturation rate, two prompt lengths (so the fixed and
  per-token prefill costs are separable) and constant per-position acceptance (so the true
  acceptance is one number). ``TRUE_ROOFLINE_COSTS`` adds a per-sequence cost and a knee, which
  the closed loop at 48 streams and k = 7 (384 tokens per pass) passes.
- A drafter family (:func:`drafter_family_runs`): drafters of varying depth and size on one
  verifier, where depth drives draft cost as Yan et al. found (notebook 08, ``bench/drafter_design.py``).

Units: seconds, requests/s, tokens; drafter sizes in layers and billions of parameters.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bayes_sd import theory
from bayes_sd.simulate.presets import Preset
from bayes_sd.simulate.server import simulate_runs

__all__ = ["TRUE_COSTS", "TRUE_ROOFLINE_COSTS", "TRUE_ACCEPTANCE", "recovery_runs", "FAMILY_VERIFIER",
           "FAMILY_DRAFTERS", "family_true_costs", "drafter_family_runs"]

#: the true costs (s): an 8B-class verifier with a small EAGLE-like drafter (illustrative)
TRUE_COSTS = theory.ServiceCosts(v0=6.5e-3, v1=5e-5, d0=0.45e-3, d1=1e-5, p0=15e-3, p1=6e-5, c1=2e-8)
#: the same with a per-sequence pass cost and a roofline knee (the fleet's llama3.1-8b values)
TRUE_ROOFLINE_COSTS = dataclasses.replace(TRUE_COSTS, s1=15e-6, knee_tokens=240.0, compute_share=0.7)
TRUE_ACCEPTANCE = 0.7
_VERIFIER, _DRAFTER, _HW = "sim-8b", "sim-eagle", "SIM-GPU"


def recovery_runs(seed: int, n_requests: int = 300, costs: theory.ServiceCosts = TRUE_COSTS) -> pd.DataFrame:
    """Canonical runs simulated from ``costs`` (synthetic), one design per seed."""
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


#: the family's verifier: an 8B-class dense model on one H100 (ILLUSTRATIVE costs, seconds)
FAMILY_VERIFIER = theory.ServiceCosts(v0=6.6e-3, v1=45e-6, d0=0.0, d1=0.0, p0=2e-3, p1=50e-6, c1=0.04e-6)
#: SYNTHETIC drafters: name -> (layers, params_b). Depth varies more than width.
FAMILY_DRAFTERS = {
    "draft-L1-0.25b": (1, 0.25), "draft-L2-0.3b": (2, 0.3), "draft-L4-0.5b": (4, 0.5),
    "draft-L6-0.4b": (6, 0.4), "draft-L8-1b": (8, 1.0), "draft-L12-0.8b": (12, 0.8),
    "draft-L16-1.2b": (16, 1.2), "draft-L24-2b": (24, 2.0),
}


def family_true_costs(layers: float, params_b: float) -> tuple[float, float, float]:
    """True (d0 s, d1 s, per-position acceptance) of a family drafter. SYNTHETIC ground truth.

    ``d0 = 0.15 ms + 0.12 ms x layers`` (a pass runs its layers in sequence: depth drives
    latency); ``d1 = 10 us x params_b`` (per-token work grows with width); acceptance rises
    slowly with depth and size (0.55 to 0.75).
    """
    d0 = 0.15e-3 + 0.12e-3 * layers
    d1 = 10e-6 * params_b
    a = float(np.clip(0.55 + 0.035 * np.log2(layers) + 0.03 * np.log2(params_b / 0.25 + 1.0), 0.05, 0.95))
    return d0, d1, a


def drafter_family_runs(drafters: dict | None = None, *, seed: int = 0, n_requests: int = 200,
                        concurrencies=(1, 8, 32), ks=(2, 4)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SYNTHETIC closed-loop runs of the family on one verifier; returns (runs, models).

    Each drafter runs at draft lengths ``ks`` and the verifier alone (k = 0) at every
    concurrency; dataset 'chat' (prompt 512, output 256 tokens).
    """
    from bayes_sd.simulate import simulate_runs
    drafters = FAMILY_DRAFTERS if drafters is None else drafters
    presets, rows = {}, []
    for name, (layers, params) in drafters.items():
        d0, d1, a = family_true_costs(layers, params)
        costs = theory.ServiceCosts(**{**FAMILY_VERIFIER.__dict__, "d0": d0, "d1": d1})
        presets[name] = Preset("family-8b", name, "H100", costs, {"chat": (a,) * 8}, "SYNTHETIC drafter family")
        for k in ks:
            for c in concurrencies:
                rows.append({"run_id": f"family-{name}-k{k}-c{c}", "preset": name, "k": k, "concurrency": c})
    first = next(iter(drafters))
    for c in concurrencies:
        rows.append({"run_id": f"family-none-k0-c{c}", "preset": first, "k": 0, "concurrency": c})
    configs = pd.DataFrame(rows).assign(dataset="chat", load_type="concurrency", prompt_len=512.0,
                                        output_len=256.0, length_cv=0.3, n_requests=n_requests)
    _, runs = simulate_runs(configs, presets=presets, seed=seed)
    models = pd.DataFrame([{"name": n, "params_b": float(p), "layers": int(layer)}
                           for n, (layer, p) in drafters.items()]
                          + [{"name": "family-8b", "params_b": 8.0, "layers": 32}])
    return runs, models
