"""A run's mean latency varies more than its requests' spread says when they queue together: the law
(theory.run_mean_inflation) against runs of the in-family simulator (synthetic), repeated by seed."""

import numpy as np
import pandas as pd
import pytest

from bayes_sd import theory
from bayes_sd.simulate.server import simulate_runs

BASE = {"preset": "llama3.1-8b+eagle3-small@H100", "dataset": "chat", "k": 3, "prompt_len": 512,
        "output_len": 256, "length_cv": 0.5, "max_num_seqs": 64}
SEEDS = 16
N_REQUESTS = 400


@pytest.fixture(scope="module")
def capacity():
    """Requests/s of a full batch (closed loop at the batch cap), as the benchmark fleets measure it."""
    full = pd.DataFrame([{**BASE, "run_id": "full", "load_type": "concurrency", "concurrency": 64,
                          "rate_rps": np.nan, "n_requests": 600}])
    return float(simulate_runs(full, seed=99)[1]["achieved_rps"].iloc[0])


def _measured_inflation(load_type, load):
    """Variance of SEEDS run means over the mean of each run's sd^2 / n: n / ESS, measured."""
    configs = pd.DataFrame([{**BASE, "run_id": f"r{s}", "load_type": load_type, "n_requests": N_REQUESTS,
                             "rate_rps": load if load_type == "rate" else np.nan,
                             "concurrency": load if load_type == "concurrency" else np.nan} for s in range(SEEDS)])
    runs = simulate_runs(configs, seed=1)[1]
    return runs["latency_mean_s"].var() / np.mean(runs["latency_sd_s"] ** 2 / runs["n_requests"])


@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_open_loop_run_means_vary_as_the_law_says(capacity, rho):
    law = float(theory.run_mean_inflation(rho / (1 - rho), True))
    measured = _measured_inflation("rate", rho * capacity)
    # 16 run means: the variance is known within about +-40%; the law must hold within that
    assert 0.5 * law <= measured <= 2.0 * law, (rho, law, measured)
    if rho == 0.8:
        assert measured > 4.0  # independent requests (inflation 1) would be far too confident


def test_closed_loop_run_means_vary_as_independent_requests():
    assert float(theory.run_mean_inflation(5.0, False)) == 1.0
    assert _measured_inflation("concurrency", 32) < 2.0
