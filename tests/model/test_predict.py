"""Prediction for unseen levels from a posterior with learned scalar scales (no sampling)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_sd import theory
from bayes_sd.model.config import load_config
from bayes_sd.model.predict import condition_draws

#: log ms of each cost coefficient in the fake posterior
LOG_MS = {"v0": 2.0, "v1": -3.0, "d0": -0.5, "d1": -4.6, "p0": 3.0, "p1": -4.0, "c1": -10.4}


def _posterior(n=50, seed=0):
    rng = np.random.default_rng(seed)
    coef = list(theory.COEFS)
    s = ("chain", "draw")
    post = xr.Dataset({
        "mu_log_cost": (s + ("coef",), np.tile([LOG_MS[c] for c in coef], (1, n, 1))),
        "mu_accept": (s, np.full((1, n), 0.5)),
        "sigma_accept_pair": (s, np.abs(rng.normal(0.3, 0.05, (1, n)))),  # learned scalar scale
        "effect_accept_pair": (s + ("pair_dataset",), rng.normal(0.2, 0.01, (1, n, 2))),  # well measured
        "mu_tail": (s, np.full((1, n), -1.2)),
        "tail_load_slope": (s, np.zeros((1, n))),
        "sigma_latency": (s, np.full((1, n), 0.05)),
    }, coords={"coef": coef, "pair_dataset": ["v / d | a", "v / d | b"]})
    return {k: v.stack(sample=("chain", "draw")).transpose("sample", ...) for k, v in post.data_vars.items()}


def test_unseen_pair_dataset_with_learned_scalar_scale():
    post = _posterior(n=400)
    cond = pd.DataFrame({"verifier": "v", "drafter": ["d", "d", "none"], "hardware": "h", "dataset": ["a", "c", "a"],
                         "k": [2, 2, 0], "prompt_len": 100.0, "output_len": 100.0, "load_type": "concurrency",
                         "rate_rps": np.nan, "concurrency": 4.0})
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    cfg = load_config("default")
    cfg["model"]["configuration_effects"] = []  # no configuration departures: the closed form alone
    dr = condition_draws(post, cfg, fit_coords, cond, seed=1)
    assert dr.latency.shape == (400, 3) and np.isfinite(dr.latency).all()
    # the seen pair/dataset keeps its fitted acceptance; the unseen dataset spreads wider
    assert dr.acceptance_length[:, 1].std() > dr.acceptance_length[:, 0].std()
    # without speculation the prediction is centred on the closed form at the posterior's costs, computed
    # here (the draws spread around it: the hardware and verifier effects the posterior lacks are drawn)
    costs = theory.ServiceCosts(**{c: np.exp(LOG_MS[c]) / 1000.0 for c in theory.COEFS})
    dem = theory.demand(dataclasses.replace(costs, d0=0.0, d1=0.0), 0, 1.0, 100.0, 100.0)
    assert np.median(dr.latency[:, 2]) == pytest.approx(theory.latency_closed(dem.c1, dem.c2, 4.0), rel=0.05)
