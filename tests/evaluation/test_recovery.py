"""Parameter recovery on simulated runs with known costs (slow: run with --run-slow)."""

import numpy as np
import pytest

from bayes_sd.evaluation.recovery import coverage_table, run_recovery, true_costs
from bayes_sd.model import LatencyModel
from bayes_sd.simulate.designs import TRUE_ACCEPTANCE, TRUE_COSTS, TRUE_ROOFLINE_COSTS, recovery_runs


def test_recovery_design_is_steady_state_and_speculative():
    runs = recovery_runs(seed=0, n_requests=60)
    assert len(runs) == 56 and runs["source"].str.startswith("synthetic:").all()
    spec = runs[runs["k"] > 0]
    # the simulator's acceptance length matches the constant acceptance it was given
    from bayes_sd.theory import tau_constant

    rel = spec["acceptance_length"] / tau_constant(TRUE_ACCEPTANCE, spec["k"]) - 1
    assert rel.abs().max() < 0.05


def test_coverage_table_scores_each_truth_against_its_own_posterior(mock_pymc_sample):
    """The main job's model is scored against a truth with s1 and a knee: each row's interval comes from
    that quantity's draws (in ms where costs are), and covered says whether the truth is inside it.
    Plumbing (prior draws stand in for the posterior); recovery itself is the slow test below."""
    assert true_costs("default") is TRUE_COSTS and true_costs("moe_roofline") is TRUE_ROOFLINE_COSTS
    runs = recovery_runs(seed=0, n_requests=60, costs=TRUE_ROOFLINE_COSTS)
    model = LatencyModel("moe_roofline").fit(runs, draws=50, tune=20, chains=1, nuts_sampler="pymc",
                                             progressbar=False)
    table = coverage_table(model, costs=TRUE_ROOFLINE_COSTS).set_index("quantity")
    post = model.idata.posterior
    expected = {"v0": (post["verifier_cost_ms"].sel(vcoef="v0"), 1e3 * TRUE_ROOFLINE_COSTS.v0),
                "d1": (post["drafter_cost_ms"].sel(dcoef="d1"), 1e3 * TRUE_ROOFLINE_COSTS.d1),
                "s1": (post["sequence_cost_ms"], 15e-3),
                "knee_tokens": (post["knee_tokens"], 240.0),
                "compute_share": (post["knee_compute_share"], 0.7)}
    for quantity, (draws, truth) in expected.items():
        x = np.asarray(draws).ravel()
        row = table.loc[quantity]
        assert row["truth"] == pytest.approx(truth)
        assert (row["lo"], row["hi"]) == pytest.approx((np.quantile(x, 0.05), np.quantile(x, 0.95)))
        assert row["covered"] == (row["lo"] <= truth <= row["hi"])


@pytest.mark.slow
@pytest.mark.parametrize("config", ["default", "moe_roofline"])
def test_90pct_intervals_cover_the_true_costs_across_seeds(config):
    """bench/recovery.py's design and settings (default: 93%, 25 of 27, on 2026-11-22; moe_roofline,
    the main job's model, whose truth has a per-sequence cost and a knee: see bench/README.md)."""
    table = run_recovery([0, 1, 2], draws=500, tune=500, chains=2, config=config)
    coverage = table["covered"].mean()
    # nominal 90%; with 27 intervals, below 70% would be a clear miscalibration
    assert coverage >= 0.7, table.to_string()
