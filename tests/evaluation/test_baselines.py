"""Baselines: the batch-1 formulas of Leviathan et al. and Yan et al. as latency predictors.

SYNTHETIC data throughout (bayes_sd.simulate with hand-set costs), except the bench scoring test,
which uses the real B200 runs with a mocked sampler (plumbing only, no accuracy claim).
"""

import dataclasses
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_sd import theory
from bayes_sd.evaluation.baselines import BASELINES, error_table, fit_baselines, in_sample_comparison, predictions_table
from bayes_sd.evaluation.batch1 import calibrate, fit_leviathan, fit_yan
from bayes_sd.simulate import simulate_runs
from bayes_sd.simulate.designs import TRUE_COSTS
from bayes_sd.simulate.presets import Preset

#: costs under which the closed form has no load term and no prefill: the Leviathan limit
PURE = theory.ServiceCosts(v0=10e-3, v1=0.0, d0=1e-3, d1=0.0, p0=0.0, p1=0.0, c1=0.0)
ACCEPT = 0.75


def _simulate(costs, design, a, seed=0):
    """SYNTHETIC closed-loop runs, one per (k, concurrency) in ``design``, constant acceptance ``a``."""
    pre = Preset("sim-v", "sim-d", "SIM", costs, {"w": (a,) * 8}, "synthetic test preset")
    rows = [{"run_id": f"k{k}-c{c}", "preset": "p", "dataset": "w", "k": k, "load_type": "concurrency",
             "concurrency": c, "n_requests": max(60, 8 * c), "prompt_len": 128.0, "output_len": 256.0}
            for k, c in design]
    return simulate_runs(pd.DataFrame(rows), presets={"p": pre}, seed=seed)[1]


@pytest.fixture(scope="module")
def batch1_runs():
    return _simulate(PURE, [(0, 1), (2, 1), (4, 1), (6, 1)], ACCEPT)


@pytest.fixture(scope="module")
def load_runs():
    return _simulate(TRUE_COSTS, [(0, 1), (0, 8), (0, 32), (4, 1), (4, 8), (4, 32)], 0.7, seed=1)


@pytest.mark.parametrize("a", [0.5, 0.8])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_closed_form_reduces_to_the_leviathan_ratio(a, k):
    """No load term, no prefill: k = 0 decode time over speculative decode time IS the Leviathan speedup."""
    D, c = 500.0, PURE.d0 / PURE.v0
    tau = theory.tau_constant(a, k)

    def decode(kk, tt):  # latency minus the first (prefill) iteration, alone on the server
        dem = theory.demand(PURE, kk, tt, 100.0, D)
        return theory.latency_closed(dem.c1, dem.c2, 1.0) - (PURE.v0 + kk * PURE.d0)

    assert decode(0, 1.0) / decode(k, tau) == pytest.approx(theory.leviathan_speedup(a, k, c), rel=1e-12)
    # a load term breaks it: with v1 > 0 the closed form's speedup falls with concurrency
    costs = theory.ServiceCosts(v0=10e-3, v1=1e-4, d0=1e-3, d1=1e-5, p0=0.0, p1=0.0, c1=0.0)
    s1, s64 = (theory.speedup(costs, k, tau, 100.0, D, concurrency=b) for b in (1.0, 64.0))
    assert s64 < s1


def test_calibration_recovers_acceptance_and_cost_ratio(batch1_runs):
    cal = calibrate(batch1_runs[batch1_runs.k < 6])
    assert cal.acceptance["a"].to_numpy() == pytest.approx([ACCEPT, ACCEPT], abs=0.03)
    assert cal.draft["c"].iloc[0] == pytest.approx(PURE.d0 / PURE.v0, rel=0.1)
    assert cal.verify["t_verify_s"].iloc[0] == pytest.approx(PURE.v0, rel=0.03)


def test_leviathan_and_yan_are_exact_at_batch_1_for_an_unseen_k(batch1_runs):
    """Calibrated on k = 0, 2, 4 at batch 1, both predict k = 6 at batch 1 (constant acceptance carries over)."""
    train, test = batch1_runs[batch1_runs.k < 6], batch1_runs[batch1_runs.k == 6]
    lev, yan = fit_leviathan(train, extrapolate=False), fit_yan(train)
    d = lev.details(test)
    assert d["k0_source"].iloc[0] == "measured"
    assert d["speedup"].iloc[0] == pytest.approx(theory.leviathan_speedup(d["a"].iloc[0], 6, d["c"].iloc[0]))
    obs = test["latency_mean_s"].iloc[0]
    assert lev.predict(test)[0] == pytest.approx(obs, rel=0.03)
    assert yan.predict(test)[0] == pytest.approx(obs, rel=0.03)
    # and the simulated decode speedup itself is the Leviathan speedup with the true a and c
    t0 = train[train.k == 0].iloc[0]
    dec = [(r.latency_mean_s - r.ttft_mean_s) / (r.output_len - 1) for r in (t0, test.iloc[0])]
    assert dec[0] / dec[1] == pytest.approx(theory.leviathan_speedup(ACCEPT, 6, PURE.d0 / PURE.v0), rel=0.04)


def test_batch1_formulas_under_predict_latency_under_load(load_runs):
    """Speculation's benefit shrinks with load (the closed form's C2 grows with k); the batch-1 speedup
    does not, so Leviathan under-predicts speculative latency more the higher the load, and Yan
    (no load term at all) even more."""
    train = load_runs[(load_runs.k == 0) | (load_runs.concurrency == 1)]
    test = load_runs[load_runs.k == 4].sort_values("concurrency").reset_index(drop=True)
    k0 = load_runs[load_runs.k == 0].set_index("concurrency").latency_mean_s
    observed_speedup = k0.loc[test.concurrency].to_numpy() / test.latency_mean_s.to_numpy()
    assert observed_speedup[2] < observed_speedup[1] < observed_speedup[0]
    lev, yan = fit_leviathan(train), fit_yan(train)
    rel_lev = lev.predict(test) / test.latency_mean_s.to_numpy() - 1
    rel_yan = yan.predict(test) / test.latency_mean_s.to_numpy() - 1
    assert abs(rel_lev[0]) < 0.03 and abs(rel_yan[0]) < 0.03  # calibrated at batch 1
    assert rel_lev[2] < rel_lev[1] < -0.05  # under-predicts, more so at 32 streams than at 8
    assert rel_yan[2] < rel_lev[2]
    assert (lev.details(test)["k0_source"] == "measured").all()


def test_k0_reference_interpolates_and_extrapolates_by_the_documented_rule(load_runs):
    train = load_runs[(load_runs.k == 0) & (load_runs.concurrency != 8)]
    cond = load_runs[load_runs.k == 4].assign(concurrency=[1.0, 8.0, 64.0])
    no_ls = fit_leviathan(pd.concat([train, load_runs[load_runs.k == 4].head(1)]), extrapolate=False)
    ref = no_ls.calibration.k0_reference(cond)
    assert ref["source"].tolist() == ["measured", "interpolated", "none"]
    lo, hi = (train.set_index("concurrency").latency_mean_s.loc[c] for c in (1.0, 32.0))
    lat8 = ref["prefill_s"].iloc[1] + (cond.output_len.iloc[1] - 1) * ref["decode_s"].iloc[1]
    assert lo < lat8 < hi
    assert np.isnan(no_ls.predict(cond)[2])
    with_ls = fit_leviathan(pd.concat([train, load_runs[load_runs.k == 4].head(1)]))
    assert with_ls.calibration.k0_reference(cond, with_ls.ls)["source"].iloc[2] == "least squares"
    assert np.isfinite(with_ls.predict(cond)).all()


def test_nan_where_a_baseline_cannot_predict_and_scoring_counts_it(load_runs):
    train = load_runs[load_runs.k == 0]  # no speculative run: no acceptance, no draft cost
    test = load_runs[load_runs.k == 4]
    fits = fit_baselines(train)
    for name in ("leviathan", "yan"):
        assert np.isnan(fits[name].predict(test)).all()
    assert np.isfinite(fits["least_squares"].predict(test)).all()  # LS falls back to population means
    err = error_table(predictions_table(test, baselines=fits)).set_index("method")
    assert err.loc["leviathan", "scored"] == 0 and err.loc["least_squares", "scored"] == len(test)
    assert np.isnan(err.loc["leviathan", "mape"]) and np.isnan(err.loc["least_squares", "mape_common"])
    # acceptance known only from a different dataset: still NaN (acceptance depends on the workload)
    other = test.assign(dataset="other")
    assert np.isnan(fit_yan(load_runs).predict(other)).all()


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="latency_mean_s"):
        fit_yan(pd.DataFrame({"verifier": ["v"], "k": [0]}))
    with pytest.raises(ValueError, match="unknown.*bayes"):
        fit_baselines(pd.DataFrame(), methods=["bayes"])
    with pytest.raises(ValueError, match="latency_mean_s"):
        predictions_table(pd.DataFrame({"k": [0]}), baselines={})


def _accuracy_module():
    path = Path(__file__).resolve().parents[2] / "bench" / "accuracy.py"
    spec = importlib.util.spec_from_file_location("bench_accuracy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def mocked_b200(mock_pymc_sample, b200_runs):
    from bayes_sd.model import ConvergenceWarning, LatencyModel

    train = b200_runs[b200_runs.concurrency <= 16]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel().fit(train, draws=20, tune=10, chains=1, nuts_sampler="pymc", progressbar=False)
    return model, train, b200_runs[b200_runs.concurrency.isin([32, 64])]


def test_bench_scoring_returns_every_method_side_by_side(mocked_b200):
    model, train, test = mocked_b200
    acc = _accuracy_module()
    rows = acc.score(model, fit_baselines(train), test)
    assert [r["method"] for r in rows] == ["bayes", *BASELINES]
    n = int((~test.saturated).sum())
    for r in rows:
        assert r["runs"] == n and r["scored"] == n  # every method can predict the real split
        assert {"mape", "mape_common", "crps", "crps_common"} <= set(r)
    bayes = rows[0]
    assert {"cover90", "mape_median", "draws_saturated"} <= set(bayes)
    lev = rows[2]
    assert lev["crps"] == pytest.approx(np.mean(np.abs(
        fit_leviathan(train).predict(test) - test.latency_mean_s.to_numpy())))
    # without a model the bench scores the baselines alone
    assert [r["method"] for r in acc.score(None, fit_baselines(train, ["yan"]), test)] == ["yan"]


def test_report_comparison_survives_data_without_acceptance_or_k0(mocked_b200):
    from bayes_sd.report import document

    model = mocked_b200[0]
    tab = in_sample_comparison(model, max_draws=20)
    assert set(tab.method) == {"bayes", *BASELINES} and (tab.k > 0).all()
    stripped = model.fit_data.runs.drop(columns=["acceptance_length", "accepted_tokens", "num_drafts"])
    model.fit_data = dataclasses.replace(model.fit_data, runs=stripped[stripped.k > 0])
    s = document.Section("baselines", "Baselines")
    document._baselines(model, s, {"hdi_prob": 0.9})
    table = s.tables[0][1].set_index("method")
    assert table.loc["Leviathan et al.", "scored"] == 0 and table.loc["Leviathan et al.", "MAPE (%)"] == "n/a"
    assert "Yan et al. n/a" in s.text and s.figure is not None
