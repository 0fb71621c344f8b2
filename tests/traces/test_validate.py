"""Validation of the canonical tables: every error names the file and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_sd.traces.schema import MODELS, REQUESTS, RUNS, TraceError
from bayes_sd.traces.validate import empty_table, validate_models, validate_requests, validate_runs

SRC = "trace_file.csv"


def make_requests(n: int = 6) -> pd.DataFrame:
    start = np.arange(n, dtype=float)
    return pd.DataFrame({
        "run_id": ["r1"] * n, "request_id": [f"q{i}" for i in range(n)],
        "start_s": start, "first_token_s": start + 0.1, "end_s": start + 2.0,
        "prompt_tokens": [100] * n, "output_tokens": [50] * n,
    })


def make_runs() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["a", "b", "c"], "source": "test", "hardware": "H100", "verifier": "v",
        "drafter": ["none", "d", "d"], "dataset": "x", "k": [0, 3, 3],
        "load_type": ["concurrency", "concurrency", "rate"], "rate_rps": [np.nan, np.nan, 2.0],
        "concurrency": [4.0, 4.0, np.nan], "prompt_len": 100.0, "output_len": 200.0, "n_requests": 50,
        "latency_mean_s": [4.0, 3.0, 3.5], "latency_p50_s": [3.9, 2.9, 3.4], "latency_p90_s": [5.0, 4.0, 4.5],
        "latency_p99_s": [6.0, 5.0, 5.5], "ttft_mean_s": 0.05, "tpot_mean_s": [0.02, 0.015, 0.017],
    })


def make_models() -> pd.DataFrame:
    return pd.DataFrame({"name": ["v", "d"], "params_b": [8.0, 0.5], "layers": [32, 1],
                         "experts": [np.nan, np.nan], "experts_per_token": [np.nan, np.nan]})


def expect_error(fn, df, column, *args, **kw):
    with pytest.raises(TraceError) as e:
        fn(df, SRC, *args, **kw)
    msg = str(e.value)
    assert SRC in msg and f"'{column}'" in msg, msg
    assert "Fix:" in msg
    assert e.value.column == column
    return msg


def test_valid_tables_clean_to_canonical_order_and_dtypes():
    req = validate_requests(make_requests(), SRC)
    assert list(req.columns) == [c.name for c in REQUESTS]
    assert req["prompt_tokens"].dtype == "int64" and req["start_s"].dtype == "float64"
    assert req["draft_tokens"].isna().all()  # absent optional column added, empty
    runs = validate_runs(make_runs(), SRC)
    assert list(runs.columns) == [c.name for c in RUNS]
    assert runs["k"].dtype == "int64" and runs["n_requests"].dtype == "int64"
    assert runs["saturation_reason"].eq("").all()
    mods = validate_models(make_models(), SRC)
    assert list(mods.columns) == [c.name for c in MODELS]


def test_caller_dataframe_not_modified():
    cases = ((validate_requests, make_requests()), (validate_runs, make_runs()), (validate_models, make_models()))
    for fn, df in cases:
        before = df.copy(deep=True)
        out = fn(df, SRC)
        pd.testing.assert_frame_equal(df, before)
        assert out is not df


def test_drafter_missing_becomes_none_for_k0():
    df = make_runs()
    df["drafter"] = [np.nan, "d", "d"]
    assert validate_runs(df, SRC)["drafter"].tolist() == ["none", "d", "d"]
    df["drafter"] = ["", "d", "d"]
    assert validate_runs(df, SRC)["drafter"].iloc[0] == "none"


def test_require_stats_false_accepts_metadata():
    meta = make_runs()[["run_id", "source", "hardware", "verifier", "drafter", "dataset", "k", "load_type",
                        "rate_rps", "concurrency"]]
    out = validate_runs(meta, SRC, require_stats=False)
    assert out["latency_mean_s"].isna().all() and len(out) == 3
    expect_error(validate_runs, meta, "prompt_len")  # require_stats=True: statistics are required


def test_misspelt_and_wrong_unit_column_names():
    df = make_runs().rename(columns={"latency_mean_s": "latency_mean_ms"})
    df["latency_mean_ms"] *= 1000
    msg = expect_error(validate_runs, df, "latency_mean_ms")
    assert "did you mean 'latency_mean_s'" in msg and "divide by 1000" in msg
    msg = expect_error(validate_requests, make_requests().rename(columns={"start_s": "strat_s"}), "strat_s")
    assert "'start_s'" in msg
    msg = expect_error(validate_runs, make_runs().rename(columns={"tpot_mean_s": "tpot_mean_ms"}), "tpot_mean_ms")
    assert "tpot_mean_s" in msg  # optional column, still caught as a unit variant
    # an unrelated extra column is dropped, not an error
    assert "notes" not in validate_runs(make_runs().assign(notes="x"), SRC).columns


def _set(col, value, row=0):
    def f(df):
        df = df.copy()
        if col not in df.columns:
            df[col] = np.nan
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df
    return f


REQUEST_CASES = {
    "missing column": (lambda d: d.drop(columns="end_s"), "end_s"),
    "NaN in required": (_set("prompt_tokens", np.nan), "prompt_tokens"),
    "negative time": (lambda d: d.assign(start_s=d.start_s - 10, first_token_s=d.first_token_s - 10,
                                         end_s=d.end_s - 10), "start_s"),
    "first token before start": (_set("first_token_s", -0.5 + 0.0, row=1), "first_token_s"),
    "end before first token": (_set("end_s", 1.05, row=1), "end_s"),
    "times in ms": (lambda d: d.assign(start_s=d.start_s * 1000, first_token_s=d.first_token_s * 1000,
                                       end_s=d.end_s * 1000), "end_s"),
    "duplicate request": (_set("request_id", "q1", row=0), "request_id"),
    "out of range": (_set("output_tokens", 0), "output_tokens"),
    "not a number": (_set("prompt_tokens", "abc"), "prompt_tokens"),
    "non-integer count": (_set("output_tokens", 2.5), "output_tokens"),
    "accepted > drafted": (lambda d: d.assign(draft_tokens=10, accepted_tokens=11), "accepted_tokens"),
}


@pytest.mark.parametrize("case", sorted(REQUEST_CASES))
def test_request_errors(case):
    mutate, column = REQUEST_CASES[case]
    expect_error(validate_requests, mutate(make_requests()), column)


RUN_CASES = {
    "missing column": (lambda d: d.drop(columns="verifier"), "verifier"),
    "NaN in required": (_set("latency_mean_s", np.nan), "latency_mean_s"),
    "duplicate run_id": (_set("run_id", "b"), "run_id"),
    "k>0 without drafter": (_set("drafter", "none", row=1), "drafter"),
    "k>0 empty drafter": (_set("drafter", np.nan, row=1), "drafter"),
    "k==0 with drafter": (_set("drafter", "d", row=0), "drafter"),
    "unknown load_type": (_set("load_type", "closed_loop"), "load_type"),
    "rate without rate_rps": (_set("rate_rps", np.nan, row=2), "rate_rps"),
    "concurrency missing": (_set("concurrency", np.nan, row=1), "concurrency"),
    "k out of range": (_set("k", 100, row=1), "k"),
    "negative rate": (_set("rate_rps", -1.0, row=2), "rate_rps"),
    "latency in ms": (lambda d: d.assign(latency_mean_s=d.latency_mean_s * 1000, latency_p50_s=np.nan,
                                         latency_p90_s=np.nan, latency_p99_s=np.nan), "latency_mean_s"),
    "tpot in ms": (_set("tpot_mean_s", 20.0), "tpot_mean_s"),
    "ttft above latency": (_set("ttft_mean_s", 50.0), "ttft_mean_s"),
    "percentiles swapped": (_set("latency_p90_s", 7.0), "latency_p90_s"),
    "acceptance above k+1": (_set("acceptance_length", 5.0, row=1), "acceptance_length"),
    "acceptance below 1": (_set("acceptance_length", 0.5, row=1), "acceptance_length"),
    "bad saturated flag": (lambda d: d.assign(saturated=["yes", "maybe", "no"]), "saturated"),
    "per-position not numbers": (_set("per_position_acceptance", "0.8;high;0.4", row=1), "per_position_acceptance"),
    "per-position count is not k": (_set("per_position_acceptance", "0.8;0.6", row=1), "per_position_acceptance"),
    "per-position in percent": (_set("per_position_acceptance", "80;60;40", row=1), "per_position_acceptance"),
    "per-position conditional": (_set("per_position_acceptance", "0.8;0.75;0.78", row=1), "per_position_acceptance"),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_errors(case):
    mutate, column = RUN_CASES[case]
    expect_error(validate_runs, mutate(make_runs()), column)


MODEL_CASES = {
    "missing layers": (lambda d: d.drop(columns="layers"), "layers"),
    "duplicate name": (_set("name", "d"), "name"),
    "raw parameter count": (lambda d: d.assign(params_b=d.params_b * 1e9), "params_b"),
    "experts_per_token > experts": (lambda d: d.assign(experts=[8.0, np.nan], experts_per_token=[16.0, np.nan]),
                                    "experts_per_token"),
    "zero layers": (_set("layers", 0), "layers"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_errors(case):
    mutate, column = MODEL_CASES[case]
    expect_error(validate_models, mutate(make_models()), column)


def test_empty_and_non_dataframe_inputs():
    with pytest.raises(TraceError, match=SRC):
        validate_runs(make_runs().iloc[:0], SRC)
    with pytest.raises(TraceError, match=SRC):
        validate_runs([1, 2], SRC)
    assert list(empty_table("runs").columns) == [c.name for c in RUNS]


def test_bool_and_string_parsing():
    df = make_runs().assign(saturated=["true", "0", ""], k=["0", "3", "3"])
    out = validate_runs(df, SRC)
    assert out["saturated"].dtype == "boolean" and out["saturated"].isna().iloc[2]
    assert out["saturated"].iloc[0] and out["k"].tolist() == [0, 3, 3]


def test_pinned_runs_lose_their_acceptance_evidence():
    nan = np.nan
    df = make_runs().assign(acceptance_pinned=["", "true", "false"], acceptance_length=[nan, 2.5, 2.0],
                            draft_tokens=[nan, 400.0, 400.0], accepted_tokens=[nan, 150.0, 100.0],
                            num_drafts=[nan, 100.0, 100.0])
    out = validate_runs(df, SRC)
    assert out["acceptance_pinned"].tolist() == [False, True, False] and out["acceptance_pinned"].dtype == bool
    assert out["pinned_acceptance_length"].tolist()[1] == 2.5 and out["pinned_acceptance_length"][[0, 2]].isna().all()
    for col in ("acceptance_length", "draft_tokens", "accepted_tokens", "num_drafts"):
        assert np.isnan(out[col].iloc[1]) and out[col].iloc[2] > 0, col
    shares = validate_runs(df.assign(per_position_acceptance=[None, "0.7;0.5;0.3", "0.6;0.4;0.2"]), SRC)
    assert shares["per_position_acceptance"].isna().tolist() == [True, True, False]
    pd.testing.assert_frame_equal(validate_runs(out, SRC), out)  # idempotent
    # a given pinned value is kept; like acceptance_length it is at most k + 1
    kept = validate_runs(df.assign(pinned_acceptance_length=[nan, 3.0, nan]), SRC)
    assert kept["pinned_acceptance_length"].iloc[1] == 3.0
    expect_error(validate_runs, df.assign(pinned_acceptance_length=[nan, 9.0, nan]), "pinned_acceptance_length")


def test_tool_and_engine_columns_default_to_empty_text():
    out = validate_runs(make_runs(), SRC)
    for col in ("tool", "tool_version", "engine", "engine_version", "saturation_reason"):
        assert (out[col] == "").all(), col
    assert not out["acceptance_pinned"].any()


def test_per_position_acceptance_cells_round_trip():
    from bayes_sd.traces.validate import format_per_position, parse_per_position

    out = validate_runs(make_runs().assign(per_position_acceptance=["", "0.8; 0.6;0.45", None]), SRC)
    assert out["per_position_acceptance"].isna().tolist() == [True, False, True]
    values = parse_per_position(out["per_position_acceptance"].iloc[1])
    assert values.tolist() == [0.8, 0.6, 0.45]
    assert parse_per_position(format_per_position(values)).tolist() == values.tolist()
