"""The small PyMC model of acceptance length versus k (bayes_sd.model.acceptance_curve) on SYNTHETIC
and REAL sweeps, and its plot (the math of per-position acceptance: tests/theory/test_acceptance.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from bayes_sd import theory as th
from bayes_sd.model import acceptance_curve as af

SETTINGS = settings(max_examples=40, deadline=None)
FIT = dict(draws=300, tune=300, chains=2)
E1, E3 = "eagle1-llama3.1-8b", "eagle3-llama3.1-8b"


def fl(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- data table
@pytest.fixture(scope="module")
def real_table():
    from bayes_sd.datasets import load_eagle_bs1_runs

    return af.acceptance_table(load_eagle_bs1_runs(), source=af.EAGLE_K_SWEEP_SOURCE)


def test_real_table_is_the_eagle_k_sweep(real_table):
    assert len(real_table) == 12
    assert sorted(real_table["drafter"].unique()) == [E1, E3]
    for _, g in real_table.groupby("drafter"):
        assert g["k"].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    # the constant-acceptance inversion falls with k (the reason for this module)
    for _, g in real_table.groupby("drafter"):
        a = th.implied_acceptance(g["tau"].to_numpy(), g["k"].to_numpy())
        assert np.all(np.diff(a) < 0)


def test_acceptance_table_refuses_bad_input(real_table):
    runs = real_table.rename(columns={"tau": "acceptance_length"})
    with pytest.raises(ValueError, match="acceptance_length"):
        af.acceptance_table(runs.drop(columns="acceptance_length"))
    bad = runs.copy()
    bad.loc[0, "acceptance_length"] = 3.5  # k = 2 allows at most 3 tokens
    with pytest.raises(ValueError, match=r"\[1, k \+ 1\]"):
        af.acceptance_table(bad)
    mixed = runs.assign(verifier=["v1"] * 11 + ["v2"])
    with pytest.raises(ValueError, match="verifier"):
        af.acceptance_table(mixed)
    with pytest.raises(ValueError, match="source"):
        af.acceptance_table(runs, source="nope")
    with pytest.raises(ValueError, match="form"):
        af.build_acceptance_model(real_table, form="geometric")


# --------------------------------------------------------------------------- prior predictive
@pytest.mark.parametrize("form", af.FORMS)
def test_prior_predictive_is_plausible(real_table, form):
    pp = af.prior_predictive(real_table, form, draws=1000, random_seed=1)
    tau = pp.prior["tau"].stack(s=("chain", "draw")).transpose("s", "run").to_numpy()
    obs = pp.prior_predictive["tau_obs"].stack(s=("chain", "draw")).transpose("s", "run").to_numpy()
    k = real_table["k"].to_numpy()
    assert np.all(tau >= 1.0 - 1e-9) and np.all(tau <= k + 1.0 + 1e-9)  # latent tau is physical
    assert np.mean((obs < 0.9) | (obs > k + 1.1)) < 0.01  # noise rarely leaves the physical range
    # the prior is wide enough to contain every measurement in its central 98%, and is not
    # already concentrated on the data (its 90% width spans at least a token at k >= 4)
    lo, hi = np.quantile(obs, [0.01, 0.99], axis=0)
    assert np.all((lo < real_table["tau"]) & (real_table["tau"] < hi))
    width = np.diff(np.quantile(tau, [0.05, 0.95], axis=0), axis=0)[0]
    assert np.all(width[k >= 4] > 1.0)


# --------------------------------------------------------------------------- recovery (SYNTHETIC)
def test_recovery_on_synthetic_sweep():
    truth = {"fast-decay": (0.70, 0.30), "slow-decay": (0.80, 0.08)}
    runs = af.simulate_sweep(truth, ks=range(1, 9), sigma_rel=0.005, seed=3)
    assert runs["source"].eq(af.SYNTHETIC_SOURCE).all()
    idata = af.fit_acceptance_curve(runs, "decaying", random_seed=5, **FIT)
    d = af.diagnostics(idata)
    assert d["divergences"] == 0 and d["max_rhat"] < 1.05
    for name, col in (("a1", 0), ("decay", 1)):
        iv = af.posterior_interval(idata, name, prob=0.9)
        for drafter, values in truth.items():
            assert iv.loc[drafter, "q5%"] <= values[col] <= iv.loc[drafter, "q95%"], (name, drafter, iv)
    # the two drafters' decays are told apart
    dec = af.posterior_interval(idata, "decay", prob=0.9)
    assert dec.loc["slow-decay", "q95%"] < dec.loc["fast-decay", "q5%"]


# --------------------------------------------------------------------------- REAL data fits
@pytest.fixture(scope="module")
def real_fits(real_table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {form: af.fit_acceptance_curve(real_table, form, random_seed=11, **FIT) for form in af.FORMS}


@pytest.fixture(scope="module")
def holdout(real_table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return af.holdout_eval(real_table, random_seed=12, **FIT)


def test_fit_output_structure(real_fits):
    idata = real_fits["decaying"]
    assert {"posterior", "log_likelihood", "observed_data", "fit_data"} <= set(idata.groups())
    assert idata.attrs["acceptance_form"] == "decaying"
    assert list(idata.posterior["drafter"].values) == [E1, E3]
    assert idata.log_likelihood["tau_obs"].dims[-1] == "run"
    assert "decay" not in real_fits["constant"].posterior
    for form, fit in real_fits.items():
        d = af.diagnostics(fit)
        assert d["divergences"] == 0 and d["max_rhat"] < 1.05, (form, d)


def test_real_decay_is_positive_and_stronger_for_eagle1(real_fits):
    dec = af.posterior_interval(real_fits["decaying"], "decay", prob=0.9)
    assert (dec["q5%"] > 0).all()  # acceptance decays with position for both drafters
    assert dec.loc[E3, "q95%"] < dec.loc[E1, "q5%"]


def test_predict_tau(real_fits):
    idata = real_fits["decaying"]
    n = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    assert predict_shape(idata, 3) == (n,)
    assert predict_shape(idata, [0, 1, 7]) == (n, 3)
    np.testing.assert_array_equal(af.predict_tau(idata, E1, [0])[:, 0], 1.0)
    latent, noisy = af.predict_tau(idata, E3, 7), af.predict_tau(idata, E3, 7, noise=True)
    assert noisy.std() > latent.std()
    with pytest.raises(ValueError, match="drafter"):
        af.predict_tau(idata, "nope", 3)


def predict_shape(idata, k):
    return af.predict_tau(idata, E1, k).shape


def test_loo_prefers_decaying_acceptance(real_fits):
    cmp = af.compare_forms(real_fits)
    assert set(cmp.index) == set(af.FORMS)
    assert cmp.index[0] == "decaying"
    assert cmp.loc["constant", "elpd_diff"] > 2 * cmp.loc["constant", "dse"]  # measured: ~17 vs dse ~1.3


def test_holdout_largest_k(holdout):
    table, fits = holdout
    assert set(fits) == set(af.FORMS) and (table["k"] == 7).all() and len(table) == 4
    t = table.set_index(["form", "drafter"])
    for d in (E1, E3):
        # measured (300 draws x 2 chains): |error| decaying 0.02-0.03 tokens, constant 0.09-0.11
        assert abs(t.loc[("decaying", d), "error"]) < abs(t.loc[("constant", d), "error"])
        assert t.loc[("constant", d), "error"] > 0  # constant acceptance over-predicts tau at large k
        width = lambda form, d=d: t.loc[(form, d), "hi"] - t.loc[(form, d), "lo"]  # noqa: E731
        assert width("decaying") < width("constant")
    assert t.loc[("decaying", E3), "covered"]


def test_plot_acceptance_curve(holdout, real_table):
    from matplotlib.figure import Figure

    from bayes_sd.report.plots.acceptance import plot_acceptance_curve

    _, fits = holdout
    fig = plot_acceptance_curve(fits, real_table, holdout_k=7)
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    assert "REAL data" in axes[0].get_title()
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert any("held out" in lab for lab in labels) and any("decaying" in lab for lab in labels)
    assert len(plot_acceptance_curve(fits, real_table, positions=False).axes) == 2
    with pytest.raises(ValueError, match="hdi_prob"):
        plot_acceptance_curve(fits, real_table, hdi_prob=1.5)


def test_plot_tpot_vs_k_marks_each_forms_best_k():
    from bayes_sd.report.plots.acceptance import plot_tpot_vs_k

    ks = np.arange(1, 9)
    sim = pd.concat([pd.DataFrame({"drafter": "d", "form": form, "k": ks, "scenario": sc,
                                   "tpot_s": 1e-3 * (5 + 0.1 * (ks - best) ** 2)})
                     for form, best in (("constant", 6), ("decaying", 4)) for sc in ("as measured", "cheap")])
    fig = plot_tpot_vs_k(sim, measured=pd.DataFrame({"drafter": ["d"], "k": [4], "tpot_s": [5e-3]}))
    axes = fig.axes
    assert len(axes) == 2 and "SYNTHETIC" in axes[0].get_title() and "cheap" in axes[1].get_title()
    markers = {tuple(line.get_xdata()) for line in axes[0].lines if line.get_marker() == "v"}
    assert markers == {(6,), (4,)}
    with pytest.raises(ValueError, match="tpot_s"):
        plot_tpot_vs_k(sim.drop(columns="tpot_s"))
