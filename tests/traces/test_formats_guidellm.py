"""GuideLLM reports: vLLM's per-request speculative-decoding metrics in both shapes, and the
GuideLLM version recorded per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayes_sd.traces.formats import read_format
from bayes_sd.traces.ingest import ingest_paths

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")

DATA = Path(__file__).resolve().parents[1] / "data"
DER = DATA / "derived"
TOP = DER / "guidellm-0.8.1-specdec.json"             # response_metrics.speculative_decoding, list histogram
CHOICE = DER / "guidellm-0.8.1-specdec-per-choice.json"  # response_metrics.speculative_decoding_stats, dict


def counts(path):
    row = ingest_paths([path]).runs.iloc[0]
    return row["num_drafts"], row["accepted_tokens"], row["draft_tokens"], row["acceptance_length"]


def test_the_two_shapes_give_the_same_acceptance():
    assert counts(CHOICE) == counts(TOP)
    steps, accepted, drafted, tau = counts(CHOICE)
    assert steps > 0 and drafted == 4 * steps and tau == pytest.approx(1 + accepted / steps)
    hist = json.loads(CHOICE.read_text())["benchmarks"][0]["requests"]["successful"][0]["response_metrics"]
    assert isinstance(hist["speculative_decoding_stats"]["acceptance_histogram"], dict)


def rewrite(src: Path, dst: Path, edit, indent=None) -> Path:
    tree = json.loads(src.read_text())
    for r in tree["benchmarks"][0]["requests"]["successful"]:
        edit(r)
    dst.write_text(json.dumps(tree, indent=indent))
    return dst


def _list_histogram(r):
    sd = r["response_metrics"]["speculative_decoding_stats"]
    hist = [0] * 5
    for j, c in sd["acceptance_histogram"].items():
        hist[int(j)] = c
    r["response_metrics"] = {"speculative_decoding": {"acceptance_histogram": hist, "num_spec_tokens": 4}}


def _dict_histogram_only(r):
    sd = r["response_metrics"]["speculative_decoding_stats"]
    r["response_metrics"] = {"speculative_decoding_stats": {"acceptance_histogram": sd["acceptance_histogram"],
                                                            "num_spec_tokens": 4}}


@pytest.mark.parametrize("indent", [None, 2], ids=["streamed", "plain-json"])
@pytest.mark.parametrize("edit", [_list_histogram, _dict_histogram_only], ids=["list", "dict"])
def test_histogram_alone_gives_steps_and_accepted_tokens(tmp_path, edit, indent):
    """Without the counts, the histogram (index or key j = steps accepting j drafts) gives them."""
    path = rewrite(CHOICE, tmp_path / "r.json", edit, indent)
    assert counts(path) == pytest.approx(counts(CHOICE))


def test_shapes_can_mix_within_a_run(tmp_path):
    seen = []

    def edit(r):
        seen.append(r)
        if len(seen) % 2:
            r["response_metrics"] = {"speculative_decoding": r["response_metrics"]["speculative_decoding_stats"]}
    path = rewrite(CHOICE, tmp_path / "r.json", edit)
    assert counts(path) == counts(CHOICE)


def test_version_of_guidellm_recorded_per_run():
    runs = ingest_paths([DATA / "guidellm-0.5.4-generated-benchmarks.json"],
                        labels={"verifier": "v", "drafter": "d", "k": 2, "hardware": "cpu"}).runs
    assert (runs["tool"] == "guidellm").all() and (runs["tool_version"] == "0.5.4").all()
    legacy = read_format(DATA / "guidellm-benchmarks_stripped.json")
    assert legacy.info == {"tool": "guidellm"}  # no version recorded before 0.5


def shares(path):
    cell = ingest_paths([path]).runs.iloc[0]["per_position_acceptance"]
    return [float(v) for v in cell.split(";")]


@pytest.mark.parametrize("indent", [None, 2], ids=["streamed", "plain-json"])
@pytest.mark.parametrize("edit", [_list_histogram, _dict_histogram_only], ids=["list", "dict"])
def test_histograms_give_per_position_shares_in_either_shape(tmp_path, edit, indent):
    """s_j = steps accepting at least j drafts / steps, summed over the run: 1 + sum s_j = tau."""
    s = shares(rewrite(CHOICE, tmp_path / "r.json", edit, indent))
    assert s == pytest.approx(shares(CHOICE)) and len(s) == 4
    assert all(a >= b for a, b in zip(s, s[1:]))
    assert 1 + sum(s) == pytest.approx(counts(CHOICE)[3], rel=1e-5)


def test_a_histogram_that_disagrees_with_its_step_count_is_left_out_with_a_warning():
    """The list-shaped fixture's histograms are zero placeholders beside positive step counts."""
    with pytest.warns(Warning, match="acceptance_histogram.*left out of the per-position shares"):
        row = ingest_paths([TOP]).runs.iloc[0]
    assert not isinstance(row["per_position_acceptance"], str) or not row["per_position_acceptance"]
    assert row["num_drafts"] > 0  # the counts stay
