"""The report's "How much to trust this": it states the frozen set's figures, or says they are missing."""

import pandas as pd

from bayes_sd.evaluation.trust import trust_reading, trust_table


def _results():
    rows = []
    for kind, cov in (("highest_loads", 0.62), ("leave_one_pair_out", 0.81)):
        for fig, est in (("coverage_90", cov), ("mape_median", 0.12), ("brier", 0.05)):
            rows.append({"config": "moe_roofline", "kind": kind, "lengths": "training", "figure": fig,
                         "estimate": est, "low": est - 0.05, "high": est + 0.05, "runs": 40,
                         "measured": "2026-12-05", "commit": "abc1234"})
    return pd.DataFrame(rows)


def test_trust_table_states_each_split_with_its_interval():
    table = trust_table("moe_roofline", _results()).set_index("held out")
    assert table.loc["highest_loads", "90% interval coverage"] == "62% [57%, 67%]"
    assert table.loc["leave_one_pair_out", "Brier score of P(saturated)"] == "0.050 [0.000, 0.100]"
    assert trust_table("default", _results()) is None


def test_trust_reading_names_the_range_and_the_worst_split_or_the_gap():
    text = trust_reading("moe_roofline", _results())
    assert "62-81%" in text and "highest loads" in text and "abc1234" in text
    assert "has not been scored" in trust_reading("default", _results())


def test_an_infinite_figure_reads_as_such():
    res = _results()
    res.loc[(res["kind"] == "highest_loads") & (res["figure"] == "mape_median"), ["estimate", "high"]] = float("inf")
    table = trust_table("moe_roofline", res).set_index("held out")
    assert table.loc["highest_loads", "MAPE of the median"] == "infinite"
    assert table.loc["leave_one_pair_out", "MAPE of the median"] == "12% [7%, 17%]"


def test_acceptance_figures_are_stated_when_scored():
    res = _results()
    assert "acceptance length error" not in trust_table("moe_roofline", res).columns  # not scored: no column
    extra = res[res["figure"] == "brier"].assign(figure="coverage_tau_90", estimate=0.9, low=0.87, high=0.93)
    table = trust_table("moe_roofline", pd.concat([res, extra])).set_index("held out")
    assert table.loc["highest_loads", "acceptance length 90% coverage"] == "90% [87%, 93%]"


def test_the_main_jobs_configuration_says_how_far_to_trust_it():
    from bayes_sd.demo import MAIN_MODEL
    from bayes_sd.evaluation.trust import frozen_results
    from bayes_sd.model.config import load_config

    bundled = frozen_results()
    for name in bundled["config"].unique():  # every scored configuration still exists under its name
        assert load_config(name)["name"] == name
    table = trust_table(MAIN_MODEL, bundled).set_index("held out")
    assert set(table.index) == {"highest_loads", "leave_one_pair_out"}
    assert table["90% interval coverage"].str.fullmatch(r"\d+% \[\d+%, \d+%\]").all()
    assert "has not been scored" not in trust_reading(MAIN_MODEL, bundled)
