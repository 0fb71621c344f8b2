"""Saturation (bayes_sd.traces.aggregate.detect_saturation): every rule fires on a run built to trip
it and names itself and its numbers; runs at light load are never flagged, whatever their shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_sd.traces.aggregate import aggregate_runs, configurations, detect_saturation, fill_saturation
from bayes_sd.traces.schema import TraceError

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")


def runs_table(**cols) -> pd.DataFrame:
    """One configuration (unless columns say otherwise); lists give one value per run."""
    n = max(len(v) for v in cols.values() if isinstance(v, list))
    base = dict(run_id=[f"r{i}" for i in range(n)], source="sweep", hardware="h", verifier="v", drafter="d",
                dataset="x", k=3, load_type="rate", latency_mean_s=1.0, ttft_p50_s=0.1, tpot_mean_s=0.01)
    base.update(cols)
    return pd.DataFrame(base)


def open_loop(latency, ttft=None, tpot=None, rates=(1.0, 4.0, 6.0, 8.0), achieved=None):
    rates = list(rates)
    return runs_table(rate_rps=rates, achieved_rps=list(achieved or rates), latency_mean_s=list(latency),
                      ttft_p50_s=list(ttft or [0.1] * len(rates)), tpot_mean_s=list(tpot or [0.01] * len(rates)))


def requests(start, latency, run="r1") -> pd.DataFrame:
    start, latency = np.asarray(start, float), np.asarray(latency, float)
    return pd.DataFrame({"run_id": run, "request_id": [f"{run}-{i}" for i in range(len(start))], "start_s": start,
                         "first_token_s": start + 0.05, "end_s": start + latency, "prompt_tokens": 100,
                         "output_tokens": 11})


def meta(run_ids, **kw) -> pd.DataFrame:
    base = dict(source="test", hardware="H100", verifier="v", drafter="d", dataset="x", k=3, load_type="rate",
                rate_rps=1.0)
    base.update(kw)
    return pd.DataFrame([{"run_id": r, **base} for r in run_ids])


# --- each rule fires, and stays below its threshold --------------------------------------------

def test_rate_shortfall_names_rule_and_numbers():
    runs = runs_table(rate_rps=[1.0, 2.0, 10.0], achieved_rps=[1.0, 2.0, 6.0])
    sat, why = detect_saturation(runs)
    assert sat.tolist() == [False, False, True]
    assert why[2] == "rate shortfall: achieved 6 req/s < 0.9 x offered 10 req/s"


def test_latency_trend_fires_on_a_growing_queue_not_on_a_step_that_levels_off():
    rng = np.random.default_rng(0)
    start = np.sort(rng.uniform(0, 100, 200))
    growing = requests(start, 1 + 0.1 * start + rng.uniform(0, 0.5, 200), run="grow")
    # a step up half-way that levels off (a change of conditions, not overload): last third 2.5x the first
    step = requests(start, np.where(start < 50, 1.0, 2.5) + rng.uniform(0, 0.3, 200) - 0.004 * (start - 50).clip(0),
                    run="step")
    req = pd.concat([growing, step], ignore_index=True)
    runs = aggregate_runs(req, meta(["grow", "step"], hardware=["a", "b"])).set_index("run_id")
    assert runs.loc["grow", "saturated"]
    assert runs.loc["grow", "saturation_reason"].startswith("latency trend: last third")
    assert "still rising over the last half" in runs.loc["grow", "saturation_reason"]
    assert not runs.loc["step", "saturated"], runs.loc["step", "saturation_reason"]
    # the old rule (last third 1.5x the first, rank correlation 0.5) would have flagged the step
    s = step.sort_values("start_s")
    lat = (s["end_s"] - s["start_s"]).to_numpy()
    assert lat[-66:].mean() > 1.5 * lat[:66].mean()


def test_queueing_latency_beyond_what_the_load_allows():
    # capacity 8 req/s; the run at 6 req/s has rho 0.75: processor sharing allows 3 / 0.25 = 12x
    sat, why = detect_saturation(open_loop([1.0, 1.5, 13.0, 2.0]))
    assert sat.tolist() == [False, False, True, False]
    assert why[2] == ("queueing: mean latency 13 s = 13x the 1 s at the lightest load (rho 0.75); "
                      "queueing allows at most 12x")
    sat, _ = detect_saturation(open_loop([1.0, 1.5, 11.0, 2.0]))
    assert not sat.any()


def test_admission_wait_ttft_beyond_what_the_load_allows():
    # TTFT 0.1 s -> 1.5 s (15x) at rho 0.75 (allowed 12x), the extra wait 1.4 s > 0.1 x latency
    runs = open_loop([1.0, 1.1, 2.0, 2.2], ttft=[0.1, 0.1, 1.5, 0.2], tpot=[0.01, 0.01, 0.02, 0.02])
    sat, why = detect_saturation(runs)
    assert sat.tolist() == [False, False, True, False]
    assert why[2].startswith("admission wait: median TTFT 1.5 s = 15x the 0.1 s at the lightest load (rho 0.75)")
    # same growth, but immaterial (a 14 ms wait on a 2 s request): not flagged
    runs = open_loop([1.0, 1.1, 2.0, 2.2], ttft=[0.001, 0.001, 0.015, 0.002])
    assert not detect_saturation(runs)[0].any()


def test_admission_wait_ttft_outruns_tpot_at_full_throughput():
    # the run at the highest throughput (rho = 1) has no queueing limit: TTFT 30x while TPOT 2x
    runs = open_loop([1.0, 1.2, 1.5, 4.0], ttft=[0.1, 0.1, 0.12, 3.0], tpot=[0.01, 0.011, 0.013, 0.02])
    sat, why = detect_saturation(runs)
    assert sat.tolist() == [False, False, False, True]
    assert why[3] == ("admission wait: median TTFT 3 s = 30x the 0.1 s at the lightest load while TPOT grew 2.0x "
                      "(TTFT may grow at most 5x faster than TPOT)")
    # TTFT 8x with TPOT 2x: within 5x of TPOT's growth
    runs = open_loop([1.0, 1.2, 1.5, 4.0], ttft=[0.1, 0.1, 0.12, 0.8], tpot=[0.01, 0.011, 0.013, 0.02])
    assert not detect_saturation(runs)[0].any()
    # the mean TTFT stands in for a missing median
    runs = open_loop([1.0, 1.2, 1.5, 4.0], tpot=[0.01, 0.011, 0.013, 0.02]).drop(columns="ttft_p50_s")
    sat, why = detect_saturation(runs.assign(ttft_mean_s=[0.1, 0.1, 0.12, 3.0]))
    assert sat.tolist() == [False, False, False, True] and "mean TTFT 3 s" in why[3]


def test_closed_loop_throughput_plateau_within_a_configuration():
    runs = runs_table(load_type="concurrency", concurrency=[1.0, 2.0, 4.0, 8.0, 4.0],
                      achieved_rps=[1.0, 2.0, 2.03, 3.0, 2.03], drafter=["d", "d", "d", "d", "other"])
    sat, why = detect_saturation(runs)
    assert sat.tolist() == [False, False, True, False, False]
    assert why[2] == ("throughput plateau: 2.03 req/s at concurrency 4 not above 1.02 x 2 req/s at concurrency 2")


# --- guards --------------------------------------------------------------------------------------

def test_never_flagged_at_a_third_of_capacity_or_less():
    # capacity 9 req/s; the run offered 3 req/s (a third) trips the rate-shortfall and TTFT rules
    runs = runs_table(rate_rps=[1.0, 3.0, 9.0], achieved_rps=[1.0, 2.0, 9.0], latency_mean_s=[1.0, 1.5, 2.0],
                      ttft_p50_s=[0.1, 1.2, 0.2], tpot_mean_s=[0.01, 0.01, 0.02])
    notes: list = []
    sat, why = detect_saturation(runs, notes=notes)
    assert not sat.any() and (why == "").all()
    assert len(notes) == 1 and notes[0].startswith("run r1: not flagged saturated at 33% of its configuration's "
                                                   "capacity (light-load guard), although: rate shortfall")
    # just above a third (offered 3.1 of 9): flagged
    sat, why = detect_saturation(runs.assign(rate_rps=[1.0, 3.1, 9.0]))
    assert sat.tolist() == [False, True, False] and why[1].startswith("rate shortfall")
    # the guard off (light_frac 0): the same run is flagged on both rules
    sat, why = detect_saturation(runs, light_frac=0.0)
    assert sat[1] and "rate shortfall" in why[1] and "admission wait" in why[1]


def test_a_single_run_configuration_meets_only_the_absolute_rules():
    # prefill is 90 % of the request (long prompt, short output): the old TTFT-share rule fired here
    one = runs_table(run_id=["only"], rate_rps=[2.0], achieved_rps=[1.95], latency_mean_s=[1.0],
                     ttft_p50_s=[0.9])
    sat, why = detect_saturation(one)
    assert not sat[0] and why[0] == ""
    sat, why = detect_saturation(one.assign(achieved_rps=[1.5]))
    assert sat[0] and why[0].startswith("rate shortfall")


def test_configurations_are_judged_apart():
    runs = open_loop([1.0, 1.5, 13.0, 2.0])
    # the slow run is alone in its configuration (another data set): no reference, no flag
    assert not detect_saturation(runs.assign(dataset=["x", "x", "y", "x"]))[0].any()
    # files of one folder are one sweep; other folders are other sweeps
    src = ["s/rate_1.json", "s/rate_4.json", "s/rate_6.json", "s/rate_8.json"]
    assert detect_saturation(runs.assign(source=src))[0].tolist() == [False, False, True, False]
    codes = configurations(runs.assign(source=["s/a.json", "s/b.json", "t/a.json", "bundle"]))
    assert codes[0] == codes[1] and len({codes[0], codes[2], codes[3]}) == 3


def test_simulated_light_load_long_prompts_and_speculation_are_not_flagged():
    """Long prompts with 16-token outputs (prefill 60-90 % of every request) and speculative decoding
    (k = 4) at 10-70 % of capacity: the old rule (median TTFT above 0.2 x mean latency) flags all the
    long-prompt runs; none is saturated, and no rule fires. Past capacity (1.2x) they are flagged."""
    from bayes_sd import theory
    from bayes_sd.simulate import simulate_runs, theory_tau
    from bayes_sd.simulate.presets import PRESETS

    name = "llama3.1-8b+eagle3-small@H100"
    pre = PRESETS[name]
    rows = []
    for tag, prompt, out, k in (("long", 4000, 16, 4), ("spec", 512, 256, 4), ("long-k0", 4000, 16, 0)):
        tau = theory_tau(pre.acceptance["chat"], k) if k else 1.0
        cap = float(theory.saturation_rate(theory.demand(pre.costs, k, tau, prompt, out).c2))
        for frac in (0.1, 0.3, 0.5, 0.7, 1.2):
            rows.append(dict(run_id=f"{tag}-r{frac}", preset=name, dataset="chat", k=k, load_type="rate",
                             rate_rps=frac * cap, n_requests=300, prompt_len=prompt, output_len=out, length_cv=0.3))
    req, runs = simulate_runs(pd.DataFrame(rows), seed=3)
    runs = runs.assign(dataset=[r.rsplit("-r", 1)[0] for r in runs["run_id"]]).set_index("run_id", drop=False)
    light = [r for r in runs.index if not r.endswith("-r1.2")]
    long_light = [r for r in light if r.startswith("long")]
    assert (runs.loc[long_light, "ttft_p50_s"] > 0.2 * runs.loc[long_light, "latency_mean_s"]).all()
    sat, why = detect_saturation(runs, req)
    assert not sat[light].any(), why[light][sat[light]].tolist()
    assert sat[[r for r in runs.index if r.endswith("-r1.2")]].all()


def test_the_real_llamacpp_run_at_4_rps_is_not_flagged():
    """A real GuideLLM run of a speculative llama.cpp server (tests/data): latency steps up mid-run
    and levels off; the old trend rule (first third 0.35 s, last third 0.88 s) flagged it."""
    from pathlib import Path

    from bayes_sd.traces.ingest import ingest_paths

    path = Path(__file__).resolve().parents[1] / "data" / "guidellm-0.8.1-llamacpp-speculative.json"
    res = ingest_paths([path], labels={"verifier": "v", "drafter": "d", "k": 4, "hardware": "cpu"})
    row = res.runs.iloc[0]
    assert row["rate_rps"] == 4.0 and not row["saturated"] and row["saturation_reason"] == ""
    assert row["ttft_p50_s"] < row["latency_mean_s"]


# --- filling and overrides ---------------------------------------------------------------------

def test_fill_saturation_keeps_given_flags():
    runs = runs_table(rate_rps=[10.0, 10.0], achieved_rps=[5.0, 5.0])
    runs["saturated"] = pd.array([False, pd.NA], dtype="boolean")
    out = fill_saturation(runs)
    assert out["saturated"].tolist() == [False, True]
    assert out["saturated"].dtype == bool


def test_keep_runs_unflags_and_reports():
    runs = runs_table(rate_rps=[1.0, 2.0, 10.0], achieved_rps=[1.0, 2.0, 6.0])
    notes: list = []
    out = fill_saturation(runs, keep=["r2"], notes=notes)
    assert not out["saturated"].any() and (out["saturation_reason"] == "").all()
    assert notes == ["run r2: kept as steady state by --keep-run, although flagged: rate shortfall: achieved 6 "
                     "req/s < 0.9 x offered 10 req/s"]
    with pytest.raises(TraceError, match="no run 'r9'"):
        fill_saturation(runs, keep=["r9"])
