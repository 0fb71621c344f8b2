"""Simulation-based calibration, smoke size: the main job's model on its own generative model (the
recovery design, closed and open loop: its open loop is generative).

A dozen replications cannot show a subtle miscalibration; they do catch a gross one (a posterior
systematically on one side of the truth, or far too narrow), which is what these bounds test.
`python bench/sbc.py` runs the full check (200 replications).
"""

import numpy as np
import pandas as pd
import pytest

from bayes_sd.demo import MAIN_MODEL
from bayes_sd.evaluation.sbc import rank_uniformity, run_sbc, sbc_design


def test_rank_uniformity_flags_biased_ranks():
    rng = np.random.default_rng(0)
    fair = pd.DataFrame({"param": "a", "rank": rng.integers(0, 100, 200), "L": 99})
    biased = pd.DataFrame({"param": "b", "rank": rng.integers(80, 100, 200), "L": 99})
    table = rank_uniformity(pd.concat([fair, biased])).set_index("param")
    assert table.loc["a", "p_value"] > 0.01 and table.loc["b", "p_value"] < 1e-6
    assert table.loc["b", "mean_rank_fraction"] > 0.8


@pytest.fixture(scope="module")
def ranks():
    runs = sbc_design(MAIN_MODEL, n_requests=40)
    assert (runs["load_type"] == "rate").any()  # open-loop runs too: the generative open loop (sbc_design)
    return run_sbc(MAIN_MODEL, runs=runs, n_reps=12, draws=200, tune=1000, chains=2, thin_to=49, seed=7,
                   params=("mu_log_cost", "sigma_latency", "knee_tokens", "accept_decay", "speculation_step_ms"))


def test_main_jobs_model_is_calibrated_on_its_own_generative_model(ranks):
    fits = ranks.drop_duplicates("rep")
    # 3 of these 12 prior draws put an open-loop run of the design past saturation: skipped (run_sbc)
    assert len(fits) + ranks.attrs["skipped"] == 12 and len(fits) >= 8
    assert fits["max_rhat"].median() < 1.1  # short chains: near the target, not at it
    frac = ranks["rank"] / (ranks["L"] + 1)
    # pooled over every parameter element (9 reps x 11 elements), ranks are near uniform
    assert 0.35 < frac.mean() < 0.65
    assert ((frac < 0.05) | (frac > 0.95)).mean() < 0.3  # not piled at the ends (too narrow a posterior)
    per_param = rank_uniformity(ranks)
    assert per_param["mean_rank_fraction"].between(0.1, 0.9).all(), per_param.to_string()


def test_sbc_plumbing_refits_one_compiled_model_and_accounts_for_every_replication():
    """Tiny settings, not a calibration claim: every replication is either fitted (one rank per
    parameter element, within 0..L) or counted as skipped."""
    runs = sbc_design("default", n_requests=40)
    runs = runs[runs["dataset"] == "short"].reset_index(drop=True)
    ranks = run_sbc("default", runs=runs, n_reps=4, draws=30, tune=30, chains=1, thin_to=9, seed=7,
                    params=("sigma_latency",))
    assert ranks["rep"].nunique() >= 1 and ranks["rep"].nunique() + ranks.attrs["skipped"] == 4
    assert ranks["rank"].between(0, 9).all() and (ranks["L"] == 9).all()
    assert ranks.groupby("rep").size().eq(1).all()  # one scalar parameter: one rank per fitted replication
