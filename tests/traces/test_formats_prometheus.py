"""/metrics scrapes of llama.cpp and SGLang (vLLM's are in test_formats_fixtures / test_formats_bad), and llama.cpp's
prompt counters read into a run's prefill time per prompt token."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayes_sd.traces.formats import detect_format, read_format
from bayes_sd.traces.formats.prometheus import prefill_between, prefill_timing
from bayes_sd.traces.ingest import ingest_paths
from bayes_sd.traces.schema import TraceError

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")

DATA = Path(__file__).resolve().parents[1] / "data"
DER = DATA / "derived"
LLAMA = DATA / "guidellm-0.8.1-llamacpp-speculative.json"
FLAGS = {"verifier": "v", "drafter": "d", "hardware": "cpu"}


def llamacpp(drafts, draft_tokens, accepted, fmt=str) -> str:
    return ("# HELP llamacpp:spec_decode_num_drafts_total Speculative: Total speculative decoding verification steps\n"
            "# TYPE llamacpp:spec_decode_num_drafts_total counter\n"
            f"llamacpp:spec_decode_num_drafts_total {fmt(drafts)}\n"
            f"llamacpp:spec_decode_num_draft_tokens_total {fmt(draft_tokens)}\n"
            f"llamacpp:spec_decode_num_accepted_tokens_total {fmt(accepted)}\n")


@pytest.mark.parametrize("name,engine", [("llamacpp-metrics-before.prom", "llama.cpp"),
                                         ("sglang-metrics-after.prom", "sglang")])
def test_scrapes_of_other_engines_are_detected(name, engine):
    assert detect_format(DER / name) == "prometheus"
    assert read_format(DER / name).info == {"engine": engine}


def test_llamacpp_pair_gives_the_runs_acceptance_and_k():
    res = ingest_paths([LLAMA, DER / "llamacpp-metrics-before.prom", DER / "llamacpp-metrics-after.prom"],
                       labels=FLAGS)
    row = res.runs.iloc[0]
    # before: 7000 drafts, 28000 draft tokens, 15400 accepted; after: 7800, 31200, 17160
    assert row["num_drafts"] == 800 and row["draft_tokens"] == 3200 and row["accepted_tokens"] == 1760
    assert row["acceptance_length"] == pytest.approx(1 + 1760 / 800) and row["k"] == 4
    assert row["engine"] == "llama.cpp" and row["tool"] == "guidellm" and row["tool_version"] == "0.8.1"
    assert not any("llamacpp" in w for w in res.warnings)


def test_llamacpp_both_scrapes_in_one_file(tmp_path):
    both = tmp_path / "both.prom"
    both.write_text((DER / "llamacpp-metrics-before.prom").read_text()
                    + (DER / "llamacpp-metrics-after.prom").read_text())
    acc = read_format(both).acceptance
    assert acc["acceptance_length"] == pytest.approx(3.2) and acc["k"] == 4 and acc["num_drafts"] == 800


def test_llamacpp_variable_draft_lengths_round_k_and_say_so(tmp_path):
    p = tmp_path / "m.prom"
    p.write_text(llamacpp(0, 0, 0) + llamacpp(100, 370, 150))
    parsed = read_format(p)
    assert parsed.acceptance["k"] == 4 and parsed.acceptance["acceptance_length"] == pytest.approx(2.5)
    assert any("3.7 draft tokens per draft" in w and "--draft-max" in w for w in parsed.warnings)


def test_llamacpp_rounded_counters_are_reported(tmp_path):
    p = tmp_path / "m.prom"
    p.write_text(llamacpp(1.0e6, 4.0e6, 2.0e6, fmt=lambda v: f"{v:g}")
                 + llamacpp(1.00001e6, 4.00004e6, 2.00002e6, fmt=lambda v: f"{v:g}"))
    parsed = read_format(p)
    assert any("six significant digits" in w for w in parsed.warnings)


def test_llamacpp_counter_reset_names_the_llamacpp_counter(tmp_path):
    p = tmp_path / "m.prom"
    p.write_text(llamacpp(800, 3200, 1760) + llamacpp(10, 40, 20))
    with pytest.raises(TraceError, match="llamacpp:spec_decode_num_") as e:
        read_format(p)
    assert "went down" in str(e.value) and "m.prom" in str(e.value)


def test_sglang_gauge_is_read_from_the_later_scrape_with_a_warning():
    files = [DER / "vllm-0.32.0-summary.json", DER / "sglang-metrics-before.prom", DER / "sglang-metrics-after.prom"]
    res = ingest_paths(files, labels={**FLAGS, "k": 3})
    row = res.runs.iloc[0]
    assert row["acceptance_length"] == pytest.approx(2.94)  # the after scrape's gauge (before: 2.71)
    assert row["engine"] == "sglang" and row["num_drafts"] != row["num_drafts"]  # no counts: NaN
    assert any("only as a gauge" in w and "end of the run" in w for w in res.warnings)
    # k is not inferred from a gauge
    with pytest.raises(TraceError, match="missing k"):
        ingest_paths(files, labels=FLAGS)


def test_sglang_idle_gauge_gives_no_acceptance(tmp_path):
    p = tmp_path / "after.prom"
    p.write_text((DER / "sglang-metrics-after.prom").read_text().replace("} 2.94", "} 0.0"))
    res = ingest_paths([DER / "vllm-0.32.0-summary.json", DER / "sglang-metrics-before.prom", p],
                       labels={**FLAGS, "k": 3})
    assert res.runs["acceptance_length"].isna().all()
    assert any("no speculative step" in w for w in res.warnings)


def test_scrape_of_two_engines_is_refused(tmp_path):
    p = tmp_path / "mixed.prom"
    p.write_text((DER / "llamacpp-metrics-before.prom").read_text() + (DER / "vllm-metrics-before.prom").read_text())
    with pytest.raises(TraceError, match="several engines"):
        read_format(p)

BEFORE = "llamacpp:prompt_tokens_total 78\nllamacpp:prompt_seconds_total 0.289749\n"
AFTER = "llamacpp:prompt_tokens_total 3263\nllamacpp:prompt_seconds_total 9.28465\n"


def test_prefill_time_per_token_between_two_scrapes():
    got = prefill_between(BEFORE, AFTER, "run")["prefill_ms_per_token"]
    assert got == pytest.approx(1000 * (9.28465 - 0.289749) / (3263 - 78))
    assert prefill_between(AFTER, AFTER, "run") == {}  # no prompt between the scrapes: nothing measured
    assert prefill_timing({"prompt_seconds": 1.0}) == {}  # one counter alone: nothing


def test_a_counter_that_went_down_names_the_fix():
    with pytest.raises(TraceError, match="went down.*scrape the same server process"):
        prefill_between(AFTER, BEFORE, "run")
