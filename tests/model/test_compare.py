"""Which configuration the runs support (PSIS-LOO), sampled for real at small settings on the REAL B200 runs."""

import pandas as pd
import pytest

from bayes_sd.cli import main
from bayes_sd.model import LatencyModel
from bayes_sd.model.compare import loo_caveat, support_reading


def test_the_real_b200_runs_support_the_roofline_knee_over_the_dense_form(b200_runs, tmp_path, capsys):
    """The k = 7 runs past 32 streams bend upward (a verify pass turning compute-bound): the dense closed
    form cannot follow them, so PSIS-LOO must rank roofline first, by more than two standard errors."""
    path = tmp_path / "runs.csv"
    b200_runs.to_csv(path, index=False)
    out = tmp_path / "loo.csv"
    assert main(["compare", str(path), "--configs", "default,roofline", "--draws", "200", "--tune", "300",
                 "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out).set_index("config")
    assert table["rank"].idxmin() == "roofline", table
    lead = table.loc["default", "elpd_diff"]
    assert lead > 2 * table.loc["default", "dse"], table  # told apart, not a coin toss
    assert table["weight"].sum() == pytest.approx(1.0)
    assert "The runs support roofline over default by" in printed


def test_support_reading_grades_the_lead_by_its_standard_error():
    comparison = pd.DataFrame({"rank": [0, 1, 2], "elpd_diff": [0.0, 3.0, 30.0], "dse": [0.0, 2.0, 5.0],
                               "weight": [0.7, 0.3, 0.0], "warning": [False, True, False]},
                              index=["a", "b", "c"])
    text = support_reading(comparison)
    assert text.startswith("The runs support a over b by 3.0 +- 2.0 elpd (not distinguishable; 1.5 standard")
    assert "over c by 30.0 +- 5.0 elpd (clearly; 6.0 standard errors)" in text
    assert "PSIS-LOO warns for b" in text


def test_a_measured_batch_roofline_is_not_comparable_on_open_loop_runs(b200_runs):
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
