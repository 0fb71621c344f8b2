"""Drafter design: the SYNTHETIC family, what_if_drafter and parity (plumbing with a mocked sampler,
and the parity arithmetic checked against the closed form)."""

import numpy as np
import pandas as pd
import pytest

from bayes_sd import theory
from bayes_sd.model import LatencyModel
from bayes_sd.recommend.drafter import parity, what_if_drafter
from bayes_sd.simulate.designs import FAMILY_DRAFTERS, drafter_family_runs, family_true_costs

SMALL = {n: FAMILY_DRAFTERS[n] for n in ("draft-L1-0.25b", "draft-L4-0.5b", "draft-L16-1.2b")}


@pytest.fixture(scope="module")
def family():
    return drafter_family_runs(SMALL, seed=0, n_requests=60, concurrencies=(1, 16), ks=(2,))


def test_family_depth_drives_draft_cost():
    d0 = [family_true_costs(layers, p)[0] for layers, p in FAMILY_DRAFTERS.values()]
    layers = [layer for layer, _ in FAMILY_DRAFTERS.values()]
    assert np.corrcoef(layers, d0)[0, 1] > 0.99
    # a deeper drafter is slower per pass even when it is narrower (Yan et al.)
    assert family_true_costs(6, 0.4)[0] > family_true_costs(4, 0.5)[0]


def test_family_runs_are_labelled_synthetic_and_complete(family):
    runs, models = family
    assert runs["source"].str.startswith("synthetic").all()
    assert set(runs.loc[runs["k"] > 0, "drafter"]) == set(SMALL)
    assert set(SMALL) | {"family-8b"} == set(models["name"])
    assert runs["latency_mean_s"].gt(0).all()


def test_what_if_needs_a_design_model(family, mock_pymc_sample):
    runs, models = family
    m = LatencyModel().fit(runs, models=models, draws=10, tune=0, chains=1, nuts_sampler="pymc", progressbar=False,
                           random_seed=1)
    with pytest.raises(ValueError, match="drafter predictors.*Fix"):
        what_if_drafter(m, layers=8, params_b=1.0, verifier="family-8b", hardware="H100", dataset="chat",
                        prompt_len=512, output_len=256, concurrencies=[1])


def test_what_if_and_parity_plumbing(family, mock_pymc_sample):
    runs, models = family
    m = LatencyModel("drafter_design").fit(runs, models=models, draws=30, tune=0, chains=1, nuts_sampler="pymc",
                                           progressbar=False, random_seed=1)
    ds = what_if_drafter(m, layers=8, params_b=1.0, verifier="family-8b", hardware="H100", dataset="chat",
                         prompt_len=512, output_len=256, ks=[0, 2, 4], concurrencies=[1, 16])
    assert dict(ds.sizes) == {"k": 3, "concurrency": 2}
    # k = 0 is the verifier alone: what_if_drafter's k = 0 column is the model's own prediction for it
    alone = m.predict_table(pd.DataFrame([{"verifier": "family-8b", "drafter": "none", "hardware": "H100",
                                           "dataset": "chat", "k": 0, "prompt_len": 512, "output_len": 256,
                                           "load_type": "concurrency", "concurrency": c} for c in (1, 16)]))
    np.testing.assert_allclose(ds["latency_q50_s"].sel(k=0).values, alone["latency_q50_s"], rtol=1e-9)
    # a drafter that predicts nothing faster than the verifier alone cannot show a speedup at k = 0 either
    np.testing.assert_allclose(ds["speedup_vs_k0"].sel(k=0).values, 1.0)
    with pytest.raises(ValueError, match="measured drafter"):
        what_if_drafter(m, layers=8, params_b=1.0, verifier="family-8b", hardware="H100", dataset="chat",
                        prompt_len=512, output_len=256, concurrencies=[1], name="draft-L4-0.5b")
    table = parity(m, candidate="draft-L1-0.25b", reference="draft-L16-1.2b", verifier="family-8b",
                   hardware="H100", dataset="chat", prompt_len=512, output_len=256, concurrencies=[1, 16],
                   k_max=4)
    assert len(table) == 2
    # the shallow candidate drafts faster but is accepted less: what it must add is the gap in acceptance,
    # and a candidate that is already better in most draws needs no extra acceptance in the median
    for _, row in table.iterrows():
        if row["p_candidate_already_better"] > 0.5:
            assert row["extra_acceptance"] <= 0 or np.isnan(row["extra_acceptance"])
        if row["p_cannot_match_by_acceptance"] == 0:
            assert row["acceptance_needed"] == pytest.approx(row["candidate_acceptance"] + row["extra_acceptance"],
                                                             abs=0.05)


@pytest.mark.parametrize("seed", [2, 3])  # (prior) draws where cost parity exists (2) and where it does not (3)
def test_parity_solves_the_closed_form(family, mock_pymc_sample, seed):
    """At the parity cost factor the candidate's best latency equals the reference's; where no factor
    down to 1/1000 suffices, parity says so instead of returning the bracket's end."""
    runs, models = family
    m = LatencyModel("drafter_design").fit(runs, models=models, draws=20, tune=0, chains=1, nuts_sampler="pymc",
                                           progressbar=False, random_seed=seed)
    kw = dict(verifier="family-8b", hardware="H100", dataset="chat", prompt_len=512.0, output_len=256.0,
              concurrencies=[4.0], k_max=3, max_draws=1)  # one draw: its median is the draw
    row = parity(m, candidate="draft-L1-0.25b", reference="draft-L4-0.5b", **kw).iloc[0]
    matchable = row["p_cannot_match_by_draft_cost"] == 0
    assert matchable == np.isfinite(row["draft_cost_factor"])
    cond = pd.DataFrame([{"verifier": "family-8b", "drafter": d, "hardware": "H100", "dataset": "chat", "k": k,
                          "prompt_len": 512.0, "output_len": 256.0, "load_type": "concurrency", "concurrency": 4.0}
                         for d in ("draft-L4-0.5b", "draft-L1-0.25b") for k in range(4)])
    dr = m.predict_draws(cond, max_draws=1, seed=0)  # the same draw
    ref_best = np.median(dr.latency[:, :4].min(axis=1))
    assert row["reference_best_latency_s"] == pytest.approx(ref_best, rel=1e-9)
    # rebuild the candidate's best latency at the parity cost factor with theory directly
    c = {n: dr.inputs["cost"][n][:, 4:] for n in dr.inputs["cost"]}
    a = dr.inputs["acceptance"][:, 4:]
    lat = []
    for k in range(1, 4):
        tau = theory.tau_constant(a[:, k], k)
        factor = row["draft_cost_factor"] if matchable else 1e-3
        costs = theory.ServiceCosts(**{n: c[n][:, k] * (factor if n[0] == "d" else 1.0) for n in c})
        dem = theory.demand(costs, k, tau, 512.0, 256.0, tau_sq=theory.tau_sq_constant(a[:, k], k)).scaled(
            *(f[:, 4 + k] for f in dr.inputs["configuration"]))  # the configuration's departure from the law
        lat.append(theory.latency_closed(dem.c1, dem.c2, 4.0))
    cand_at_parity = np.median(np.min(lat, axis=0))
    if matchable:
        assert cand_at_parity == pytest.approx(ref_best, rel=1e-6)
    else:  # even drafting 1000x faster leaves the candidate slower
        assert cand_at_parity > ref_best


def test_what_if_drafter_cli(family, mock_pymc_sample, tmp_path, capsys):
    from bayes_sd.cli import main

    runs, models = family
    m = LatencyModel("drafter_design").fit(runs, models=models, draws=20, tune=0, chains=1, nuts_sampler="pymc",
                                           progressbar=False, random_seed=1)
    post = m.save(tmp_path / "design.nc")
    args = ["what-if-drafter", str(post), "--layers", "8", "--params-b", "1.0", "--verifier", "family-8b",
            "--hardware", "H100", "--dataset", "chat", "--prompt-len", "512", "--output-len", "256",
            "--concurrency", "1,16", "--k-max", "3", "--parity-against", "draft-L16-1.2b", "--max-draws", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "8 layers, 1.0 B parameters" in out and "parity with draft-L16-1.2b" in out
    assert "draft_cost_factor" in out and "latency_pred_q95_s" in out
    assert main(args[:-4] + ["--rate-rps", "1"]) == 2  # both loads given: a one-line error


def test_given_acceptance_replaces_the_population(family, mock_pymc_sample):
    runs, models = family
    m = LatencyModel("drafter_design").fit(runs, models=models, draws=40, tune=0, chains=1, nuts_sampler="pymc",
                                           progressbar=False, random_seed=1)
    kw = dict(layers=8, params_b=1.0, verifier="family-8b", hardware="H100", dataset="chat", prompt_len=512,
              output_len=256, ks=[0, 4], concurrencies=[1])
    pop = what_if_drafter(m, **kw)
    given = what_if_drafter(m, acceptance=0.7, **kw)
    assert float(given["acceptance_length"].sel(k=4, concurrency=1)) == pytest.approx(
        float(theory.tau_constant(0.7, 4)))
    assert float(pop["acceptance_length"].sel(k=4, concurrency=1)) != pytest.approx(float(theory.tau_constant(0.7, 4)))
    with pytest.raises(ValueError, match="acceptance"):
        what_if_drafter(m, acceptance=1.5, **kw)
