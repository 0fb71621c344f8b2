"""The posterior report: sections, figures, self-contained HTML, readings computed from the model.

Everything reuses the session's shared B200 fit (``fitted_b200``); the report is written once
per module. Figures are plain ``matplotlib.figure.Figure`` objects (not registered with pyplot).
"""

import argparse
import copy
import dataclasses
import html
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bayes_sd._stats import chain_agreement_text
from bayes_sd.report import SECTIONS, document, plots, write_report


def _fake_recommendations(curves: pd.DataFrame) -> pd.DataFrame:
    """A recommend_k-shaped table from the plotted curves of the first group (best k = lowest mean)."""
    c = curves[(curves.panel == 0) & np.isfinite(curves.latency_mean_s)]
    best = c.loc[c.groupby("load").latency_mean_s.idxmin()]
    g = curves.attrs["groups"][0]
    return pd.DataFrame({
        "verifier": g["verifier"], "drafter": g["drafter"], "hardware": g["hardware"], "dataset": g["dataset"],
        "concurrency": best.load.to_numpy(), "best_k": best.k.to_numpy(),
        "latency_mean_s": best.latency_mean_s.to_numpy(),
        "latency_q05_s": best.latency_lo_s.to_numpy(), "latency_q95_s": best.latency_hi_s.to_numpy(),
        "p_best": np.linspace(0.5, 1.0, len(best)), "expected_regret": 0.01,
        "speedup_vs_k0": best.speedup_med.to_numpy(),
        "p_slower_than_k0": best.p_slower.to_numpy(), "p_saturated": 0.0, "batch_size": best.load.to_numpy()})


@pytest.fixture(scope="module")
def model(fitted_b200):
    return fitted_b200[0]


@pytest.fixture(scope="module")
def curves(model):
    return plots.load_curves_data(model, max_draws=200)


@pytest.fixture(scope="module")
def recs(curves):
    return _fake_recommendations(curves)


@pytest.fixture(scope="module")
def report(model, recs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = write_report(model, out, recommendations=recs, title="test <report>")
    return paths, paths["html"].read_text(), paths["markdown"].read_text()


def test_report_has_every_section_in_order_and_every_figure(report):
    paths, page, md = report
    # the answer and how far to trust it lead; the data overview comes last
    assert [sid for sid, _ in SECTIONS][:2] == ["recommendations", "trust"] and SECTIONS[-1][0] == "data"
    assert len(SECTIONS) == 11
    pos_html = [page.index(f"<h2 id='{sid}'>{html.escape(title)}</h2>") for sid, title in SECTIONS]
    pos_md = [md.index(f"## {title}\n") for _, title in SECTIONS]
    assert pos_html == sorted(pos_html) and pos_md == sorted(pos_md)
    assert "could not be computed" not in md
    # one figure per section (recommendations given), except the tables of held-out figures and of forms
    assert set(paths["figures"]) == {sid for sid, _ in SECTIONS} - {"trust", "forms"}
    assert "Only default was fitted to these runs" in md  # no comparison stored: how to make one
    assert page.count("<img") == len(paths["figures"]) == md.count("](figures/")
    for sid, path in paths["figures"].items():
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG" and f"](figures/{sid}.png)" in md
    assert "test &lt;report&gt;" in page  # title escaped
    assert "model configuration 'default' (Dense verifiers" in md  # which model the report is about


def test_html_is_self_contained_small_and_written_atomically(report):
    paths, page, _ = report
    assert not re.search(r"""(src|href)=['"](https?:|//)""", page) and "<link" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == len(paths["figures"])
    assert paths["html"].stat().st_size < 3e6
    assert not [p for p in paths["html"].parent.rglob("*") if p.name.endswith(".tmp")]


def test_ppc_reading_matches_a_recomputation(model, report):
    _, page, md = report
    n_in, n = map(int, re.search(r"PPC: (\d+) of (\d+) runs inside their 90% interval", md).groups())
    pp = model.sample_posterior_predictive(random_seed=0, extend_idata=False)  # the report's default seed
    sim = pp.posterior_predictive["latency_obs"].values.reshape(-1, n)
    lo, hi = np.quantile(sim, [0.05, 0.95], axis=0)
    obs = pp.observed_data["latency_obs"].values
    assert n == len(obs) <= model.fit_data.n_runs
    assert n_in == int(((obs >= lo) & (obs <= hi)).sum())
    assert f"PPC: {n_in} of {n} runs inside" in page


def test_diagnostics_and_data_readings_use_the_models_numbers(model, report):
    _, _, md = report
    d = model.diagnostics()
    verdict = "converged" if d["converged"] else "NOT converged"
    assert (f"The sampler has {verdict} ({d['chains']} chains x {d['draws']} draws): max R-hat "
            f"{d['max_rhat']:.3f}") in md
    assert f"{d['divergences']} divergences" in md and f"min bulk ESS {d['min_ess_bulk']:.0f}" in md
    if not d["converged"]:  # the worst parameter's chains, and how far apart their predictions are
        agreement = model.chain_agreement()
        assert f"Where the chains disagree: {chain_agreement_text(agreement)}." in md
        assert f"Chains on {agreement['parameter']}" in md
    n_exc = len(model.fit_data.excluded)
    assert f"The model was given {len(model.runs)} runs" in md
    assert f"{model.fit_data.n_runs} runs were fitted and {n_exc} excluded" in md
    for run_id in model.fit_data.excluded.run_id:  # the excluded-runs table names each run and its reason
        assert run_id in md


def test_speedup_and_saturation_readings_count_the_curves(model, report, curves):
    _, _, md = report
    n_curves = curves[curves.k > 0].groupby(["panel", "k"]).ngroups
    assert f"Of {n_curves} (group, k) curves" in md
    sat = plots.saturation_data(model)
    assert f"ranges from {sat.median_rps.min():.3g} to {sat.median_rps.max():.3g} requests/s" in md


def test_recommendation_reading_names_the_policy(report, recs, model):
    _, _, md = report
    assert f"({len(recs)} loads)" in md and f"k={int(recs.best_k.iloc[0])} at" in md
    assert f"(P(k is best) {recs.p_best.min():.2f}-{recs.p_best.max():.2f})" in md
    spec = recs.sort_values("concurrency")["best_k"].to_numpy() > 0
    if spec.all():
        assert "speculation pays at every load asked" in md
    elif spec[0] and not spec[-1]:
        assert "speculation stops paying between" in md
    # it says at which k the pair was measured, and which recommended k were not (extrapolated in k)
    r, runs = recs.iloc[0], model.runs
    mine = (runs.verifier == r.verifier) & (runs.drafter == r.drafter) & (runs.hardware == r.hardware)
    measured = sorted(runs.loc[mine & (runs.k > 0), "k"].unique())
    assert measured and f"measured at k = {', '.join(str(int(k)) for k in measured)}" in md
    unmeasured = sorted({int(k) for k in recs.best_k if k > 0} - {int(k) for k in measured})
    assert (f"not at k = {', '.join(map(str, unmeasured))} (extrapolated in k" in md) is bool(unmeasured)
    if unmeasured:  # and along which fall of acceptance with draft position
        decaying = model.config["model"].get("acceptance_form") == "decaying"
        assert ("(extrapolated in k, at constant acceptance per position)" in md) is not decaying


def test_baselines_reading_matches_a_recomputation(model, report):
    from bayes_sd.evaluation.baselines import error_table, in_sample_comparison

    _, page, md = report
    assert "## Baselines: what the Bayesian model buys" in md
    err = error_table(in_sample_comparison(model)).set_index("method")
    n = int(err["runs"].max())
    assert n > 0 and (err["scored"] == n).all()  # the B200 runs have acceptance and k = 0 runs: all four score
    assert f"The same {n} fitted speculative runs above their group's lowest load" in md
    for name, label in (("bayes", "Bayes (posterior mean)"), ("least_squares", "least squares"),
                        ("leviathan", "Leviathan et al."), ("yan", "Yan et al.")):
        assert f"{label} {err.loc[name, 'mape']:.1f}% (median bias {err.loc[name, 'median_bias']:+.1f}%)" in md
    # the batch-1 formulas ignore load in the speedup: they predict too little latency above batch 1
    assert (err.loc["leviathan", "median_bias"] < 0
            and err.loc["yan", "median_bias"] < err.loc["leviathan", "median_bias"])
    assert "Leviathan et al." in page and "baselines.png" in md


def test_the_answer_says_where_speculation_stops_paying_and_which_loads_extrapolate(model, recs):
    top = model.runs[(model.runs.verifier == recs.verifier.iloc[0]) & (model.runs.hardware == recs.hardware.iloc[0])
                     & (model.runs.dataset == recs.dataset.iloc[0])]["concurrency"].max()
    table = recs.iloc[:3].assign(concurrency=[1.0, 8.0, 4 * top], best_k=[4, 2, 0])
    s = document.Section("recommendations", "The answer")
    document._recommendations(model, s, {"recommendations": table})
    assert "speculation stops paying between 8 and" in s.text
    assert f"loads above the largest measured ({document._fmt(top)}) extrapolate: {document._fmt(4 * top)}" in s.text
    s2 = document.Section("recommendations", "The answer")
    document._recommendations(model, s2, {"recommendations": table.assign(best_k=0)})
    assert "speculation does not pay at any load asked" in s2.text


def test_without_recommendations_the_section_says_so(model):
    s = document.Section("recommendations", "Recommendations")
    document._recommendations(model, s, {"recommendations": None})
    assert s.figure is None and "No recommendation table was given" in s.text
    with pytest.raises(ValueError, match="best_k"):
        document.check_recommendations(pd.DataFrame({"concurrency": [1.0]}))


@pytest.mark.parametrize("name", ["plot_data_overview", "plot_diagnostics", "plot_ppc", "plot_latency_vs_load",
                                  "plot_speedup", "plot_saturation", "plot_shrinkage", "plot_recommendations",
                                  "plot_baselines"])
def test_each_plot_returns_a_figure_with_data(model, curves, recs, name):
    fn = getattr(plots, name)
    if name in ("plot_latency_vs_load", "plot_speedup"):
        fig = fn(model, data=curves)
    elif name == "plot_recommendations":
        fig = fn(model, recs)
    elif name == "plot_ppc":
        fig = fn(model, hdi_prob=0.5)
    else:
        fig = fn(model)
    assert isinstance(fig, Figure)
    assert any(ax.has_data() for ax in fig.axes)
    assert all("(" in ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes if ax.has_data())  # units or meaning
    if name == "plot_ppc":
        assert "50% interval" in fig.axes[0].get_title()
    fig.clear()


def test_synthetic_runs_are_labelled(model):
    fake = copy.copy(model)
    fake.runs = model.runs.assign(source="synthetic:test")
    fake.fit_data = dataclasses.replace(model.fit_data, runs=model.fit_data.runs.assign(source="synthetic:test"))
    assert all(g["synthetic"] for g in plots.load_groups(fake))
    fig = plots.plot_data_overview(fake)
    assert "synthetic" in fig.axes[0].get_title() and any("synthetic" in t.get_text() for t in fig.legends[0].texts)
    assert plots.group_title(plots.load_groups(fake)[0], True).endswith("(synthetic)")


def test_bad_interval_mass_is_refused(model):
    with pytest.raises(ValueError, match="hdi_prob"):
        plots.load_curves_data(model, hdi_prob=1.0)


def test_report_cli_parses_and_fails_cleanly(tmp_path):
    from bayes_sd.cli import report as report_cli

    parser = argparse.ArgumentParser(prog="bayes-sd")
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "post.nc", "--out", str(tmp_path), "--recommendations", "r.csv"])
    assert (args.posterior, args.recommendations, args.hdi_prob) == ("post.nc", "r.csv", 0.9)
    with pytest.raises(FileNotFoundError, match="r.csv"):
        args.func(args)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"k": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        args.func(parser.parse_args(["report", "post.nc", "--out", str(tmp_path), "--recommendations", str(bad)]))
