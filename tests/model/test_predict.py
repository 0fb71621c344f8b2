"""Prediction for unseen levels from a posterior with learned scalar scales (no sampling)."""

import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd.model.config import load_config
from bayes_sd.model.predict import condition_draws


def _posterior(n=50, seed=0):
    rng = np.random.default_rng(seed)
    coef = ["v0", "v1", "d0", "d1", "p0", "p1", "c1"]
    s = ("chain", "draw")
    post = xr.Dataset({
        "mu_log_cost": (s + ("coef",), np.tile([2.0, -3.0, -0.5, -4.6, 3.0, -4.0, -10.4], (1, n, 1))),
        "mu_accept": (s, np.full((1, n), 0.5)),
        "sigma_accept_pair": (s, np.abs(rng.normal(0.3, 0.05, (1, n)))),  # learned scalar scale
        "effect_accept_pair": (s + ("pair_dataset",), rng.normal(0.2, 0.01, (1, n, 2))),  # well measured
        "mu_tail": (s, np.full((1, n), -1.2)),
        "tail_load_slope": (s, np.zeros((1, n))),
        "sigma_latency": (s, np.full((1, n), 0.05)),
    }, coords={"coef": coef, "pair_dataset": ["v / d | a", "v / d | b"]})
    return {k: v.stack(sample=("chain", "draw")).transpose("sample", ...) for k, v in post.data_vars.items()}


def test_unseen_pair_dataset_with_learned_scalar_scale():
    post = _posterior()
    cond = pd.DataFrame({"verifier": "v", "drafter": ["d", "d", "none"], "hardware": "h", "dataset": ["a", "c", "a"],
                         "k": [2, 2, 0], "prompt_len": 100.0, "output_len": 100.0, "load_type": "concurrency",
                         "rate_rps": np.nan, "concurrency": 4.0})
    fit_coords = {"pair_dataset": ["v / d | a", "v / d | b"], "hardware": ["h"], "verifier": ["v"], "drafter": ["d"]}
    dr = condition_draws(post, load_config("default"), fit_coords, cond, seed=1)
    assert dr.latency.shape == (50, 3) and np.isfinite(dr.latency).all()
    # the seen pair/dataset keeps its fitted acceptance; the unseen dataset spreads wider
    assert dr.acceptance_length[:, 1].std() > dr.acceptance_length[:, 0].std()
    assert np.all(dr.acceptance_length[:, 2] == 1.0)  # k = 0
