"""Which configuration the runs support (PSIS-LOO): `fit --compare` sampled for real at small settings on the REAL
B200 runs; the choice rule and `bayes-sd compare` on made-up elpd and prior draws."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bayes_sd.cli import main
from bayes_sd.demo import MAIN_MODEL
from bayes_sd.model import LatencyModel
from bayes_sd.model.compare import choose_form, form_comparison, loo_caveat, support_reading
from bayes_sd.report import document


def test_fit_compare_keeps_the_form_the_real_b200_runs_support_and_the_report_says_so(b200_runs, tmp_path, capsys):
    """The k = 7 runs past 32 streams bend upward (a verify pass turning compute-bound): the dense closed
    form cannot follow them, so PSIS-LOO must rank roofline first by more than two standard errors, and
    `fit --config default --compare roofline` must save roofline's posterior with the comparison."""
    path = tmp_path / "runs.csv"
    b200_runs.to_csv(path, index=False)
    out = tmp_path / "posterior.nc"
    assert main(["fit", str(path), "--config", "default", "--compare", "roofline", "--draws", "200", "--tune", "300",
                 "--retries", "0", "--seed", "1", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "The runs support roofline over default by" in printed
    model = LatencyModel.load(out)
    assert model.config["name"] == "roofline"
    table, reading = form_comparison(model)
    assert list(table.index) == ["roofline", "default"] and table["rank"].tolist() == [0, 1]
    lead = table.loc["default", "elpd_diff"]
    assert lead > 2 * table.loc["default", "dse"], table  # told apart, not a coin toss
    assert table["weight"].sum() == pytest.approx(1.0) and table["comparable"].all()
    assert "is the fitted form" in reading and reading in printed
    section = document.Section("forms", "Which form the data support")
    document._forms(model, section, {})  # the report's section alone (the whole report: tests/report)
    assert section.text == f"Fitted form: roofline. {reading}"
    assert section.tables[0][1].equals(table)


def test_compare_writes_every_configuration_and_warns_of_unconverged_fits(b200_runs, tmp_path, capsys,
                                                                          mock_pymc_sample):
    """Plumbing of `bayes-sd compare` (prior draws stand in for the posterior, so nothing converges)."""
    path = tmp_path / "runs.csv"
    b200_runs.to_csv(path, index=False)
    out = tmp_path / "loo.csv"
    assert main(["compare", str(path), "--configs", "default,per_position", "--draws", "50", "--tune", "10",
                 "--sampler", "pymc", "--no-progress", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(out).set_index("config")
    assert set(table.index) == {"default", "per_position"} and sorted(table["rank"]) == [0, 1]
    assert table["weight"].sum() == pytest.approx(1.0)
    assert "has not converged" in captured.err and "The runs support" in captured.out


def _pointwise(lead_per_run: float, spread: float, n: int = 40) -> np.ndarray:
    """Pointwise elpd differences of n runs with mean ``lead_per_run`` and alternating +-``spread``."""
    return lead_per_run + spread * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


@pytest.mark.parametrize(("lead", "converged", "comparable", "kept"), [
    (0.5, (True, True), (True, True), "b"),     # 20 +- 6.3 elpd: more than two standard errors
    (0.1, (True, True), (True, True), "a"),     # 4 +- 6.3: not told apart, the requested form stays
    (-0.5, (False, True), (True, True), "b"),   # worse, but the requested did not converge and b did
    (0.5, (True, False), (True, True), "a"),    # ahead, but unconverged: never over a converged form
    (0.5, (True, True), (True, False), "a"),    # ahead, but its elpd does not compare
    (0.5, (True, True), (False, True), "a"),    # the requested's elpd does not compare: nothing to choose by
    (-0.5, (False, True), (False, True), "b"),  # ... but it did not converge and b did: convergence needs no elpd
    (-0.5, (False, True), (True, False), "b"),  # b's elpd does not compare, yet b converged and a did not
    (-0.5, (False, False), (True, True), "a"),  # neither converged and b is worse: nothing to switch for
    (0.5, (False, False), (True, True), "b"),   # neither converged, b clearly ahead
])
def test_choose_form_switches_only_on_a_clear_lead_among_forms_that_compare(lead, converged, comparable, kept):
    a = np.zeros(40)
    chosen, why = choose_form({"a": a, "b": a + _pointwise(lead, 1.0)}, dict(zip("ab", converged)),
                              dict(zip("ab", comparable)), "a")
    assert chosen == kept, why
    assert ("is the fitted form" in why) == (kept == "b")


def test_choose_form_keeps_the_requested_form_for_a_lead_under_four_elpd_however_sure():
    a = np.zeros(40)
    chosen, why = choose_form({"a": a, "b": a + _pointwise(0.09, 0.01)}, {"a": True, "b": True},
                              {"a": True, "b": True}, "a")  # 3.6 +- 0.06 elpd: 57 standard errors, still small
    assert chosen == "a" and "under 2 standard errors or 4 elpd" in why


def test_choose_form_says_the_requested_form_leads_when_every_other_is_behind():
    a = np.zeros(40)
    chosen, why = choose_form({"a": a, "b": a + _pointwise(-0.12, 0.05)}, {"a": True, "b": True},
                              {"a": True, "b": True}, "a")  # b behind by 4.8 elpd
    assert chosen == "a" and why.endswith("it leads the best other, b, by 4.8 +- 0.3 elpd.")


def test_support_reading_grades_the_lead_by_its_standard_error():
    comparison = pd.DataFrame({"rank": [0, 1, 2, 3, 4], "elpd_diff": [0.0, 3.0, 30.0, 12.0, 0.3],
                               "dse": [0.0, 2.0, 5.0, 4.0, 0.1], "weight": [0.7, 0.3, 0.0, 0.0, 0.0],
                               "warning": [False, True, False, False, False]}, index=["a", "b", "c", "d", "e"])
    text = support_reading(comparison)
    assert text.startswith("The runs support a over b by 3.0 +- 2.0 elpd (not distinguishable; 1.5 standard")
    assert "over c by 30.0 +- 5.0 elpd (clearly; 6.0 standard errors)" in text
    assert "over d by 12.0 +- 4.0 elpd (moderately; 3.0 standard errors)" in text
    assert "over e by 0.3 +- 0.1 elpd (not distinguishable; 3.0 standard errors)" in text  # under 4 elpd
    assert "PSIS-LOO warns for b" in text


def test_a_measured_batch_roofline_is_not_comparable_on_open_loop_runs_and_the_main_jobs_generative_one_is(b200_runs):
    closed = LatencyModel("moe_roofline")
    closed.build(b200_runs)
    assert loo_caveat(closed) is None  # the B200 runs are closed loop
    open_runs = b200_runs.assign(load_type="rate", rate_rps=b200_runs["concurrency"] / 10.0, concurrency=float("nan"))
    opened = LatencyModel("moe_roofline")
    opened.build(open_runs)
    assert "not comparable" in loo_caveat(opened) and "open_loop_batch" in loo_caveat(opened)
    dense = LatencyModel("default")
    dense.build(open_runs)
    assert loo_caveat(dense) is None
    main_job = LatencyModel(MAIN_MODEL)  # a roofline whose open loop is generative: comparable by elpd
    main_job.build(open_runs)
    assert main_job.config["model"]["verifier_form"] == "moe_roofline" and loo_caveat(main_job) is None


def test_fit_compare_refuses_the_same_form_twice_before_sampling(tmp_path, capsys):
    code = main(["fit", str(tmp_path / "never_read.csv"), "--config", "default", "--compare", "per_position,default",
                 "--out", str(tmp_path / "p.nc")])
    err = capsys.readouterr().err
    assert code == 2 and "each once (their names: default, per_position, default)" in err
    assert not (tmp_path / "p.nc").exists()


def _fake_fit(name: str, loglik: np.ndarray, converged: bool = True):
    """What compare_forms reads of a fitted model: its name, runs, pointwise log-likelihood and convergence."""
    import arviz as az

    idata = az.from_dict(posterior={"theta": np.zeros(loglik.shape[:2])}, log_likelihood={"latency_obs": loglik})
    n_runs = loglik.shape[-1]
    runs = SimpleNamespace(coords={"run": np.arange(n_runs)}, obs={"latency": (np.arange(n_runs),)})
    return SimpleNamespace(config={"name": name}, idata=idata, fit_data=runs,
                           loo=lambda pointwise=True: az.loo(idata, pointwise=pointwise),
                           diagnostics=lambda: {"converged": converged})


def test_a_form_whose_elpd_does_not_compare_grades_no_other_in_the_reading(monkeypatch):
    from bayes_sd.model import compare

    rng = np.random.default_rng(0)
    base = rng.normal(-1.0, 0.3, size=(2, 200, 30))
    fitted = {"main": _fake_fit("main", base + 5.0, converged=False),  # far ahead, but its elpd does not compare
              "a": _fake_fit("a", base), "b": _fake_fit("b", base + 1.0)}  # b leads a by 30 elpd
    monkeypatch.setattr(compare, "loo_caveat", lambda m: "main: not comparable" if m.config["name"] == "main" else None)
    table, chosen, reading = compare.compare_forms(fitted, "main")
    assert chosen == "b"  # main did not converge; b is the best that did
    assert reading.startswith("The runs support b over a by 30.0") and "support main" not in reading
    assert not table.loc["main", "comparable"] and table.loc["b", "comparable"]
    del fitted["b"]
    _, chosen, reading = compare.compare_forms(fitted, "main")
    assert chosen == "a" and reading.startswith("No two of these forms' elpd compare")

