"""Content-based format detection, the streaming GuideLLM reader and the configuration labels."""

from __future__ import annotations

import gzip
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayes_sd.traces.formats import detect_format
from bayes_sd.traces.formats._guidellm_json import FIELDS, stream_report
from bayes_sd.traces.formats.labels import Sidecar, normalize, resolve
from bayes_sd.traces.ingest import ingest_paths
from bayes_sd.traces.schema import TraceError

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")

DATA = Path(__file__).resolve().parents[1] / "data"
DER = DATA / "derived"
FLAGS = {"verifier": "v", "drafter": "eagle3", "k": 4, "hardware": "H100"}

EXPECTED = {
    "guidellm-benchmarks_stripped.json": "guidellm_json", "guidellm-0.8.1-generated-benchmarks.csv": "guidellm_csv",
    "vllm-0.32.0-generated-bench-serve-detailed.json": "vllm_bench",
    "derived/guidellm-0.8.1-sync.yaml": "guidellm_yaml",
    "derived/sglang-bench-serving.jsonl": "sglang", "derived/vllm-appended-specdec.jsonl": "vllm_bench",
    "derived/vllm-metrics-before.prom": "prometheus", "derived/vllm-v0-serve.log": "vllm_log",
    "derived/vllm-0.33-serve.log": "vllm_log", "derived/sidecar.yaml": "sidecar",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detection_ignores_the_file_name(name, tmp_path):
    odd = tmp_path / "benchmarks.csv"  # a misleading name and extension
    shutil.copy(DATA / name, odd)
    assert detect_format(DATA / name) == detect_format(odd) == EXPECTED[name]


def test_gzip_and_canonical_tables(tmp_path):
    src = DATA / "guidellm-0.8.1-generated-benchmarks.json"
    gz = tmp_path / "report.json.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert detect_format(gz) == "guidellm_json"
    a = ingest_paths([src], labels=FLAGS).runs
    b = ingest_paths([gz], labels=FLAGS).runs
    assert np.allclose(a["latency_mean_s"], b["latency_mean_s"])
    out = tmp_path / "runs.parquet"
    a.to_parquet(out)
    assert detect_format(out) == "table"
    assert len(ingest_paths([out]).runs) == 3  # a canonical table goes through read_table
    tsv = tmp_path / "runs.tsv"
    a.to_csv(tsv, sep="\t", index=False)
    assert detect_format(tsv) == "table" and len(ingest_paths([tsv]).runs) == 3


def _columns(tree, batches):
    """All request columns of the report, in order, whatever path produced them."""
    from bayes_sd.traces.formats.guidellm import _columns as cols

    parts = [cols(b["requests"]["successful"], batches, "t", "x") for b in tree["benchmarks"]]
    return {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}


@pytest.mark.parametrize("name", ["guidellm-0.8.1-generated-benchmarks.json",
                                  "guidellm-0.5.4-generated-benchmarks.json",
                                  "derived/guidellm-0.8.1-specdec.json"])
@pytest.mark.parametrize("chunk", [1000, 4096, 1 << 16, 1 << 25])
def test_streaming_reader_equals_plain_json(name, chunk):
    raw = (DATA / name).read_bytes()
    ref_tree, ref_b = stream_report(io.BytesIO(raw.replace(b'{"type_": "generative', b'{"type_":  "generative')),
                                    "ref")  # marker broken: every record goes through Python's json
    assert ref_b == []
    tree, batches = stream_report(io.BytesIO(raw), "t", chunk=chunk)
    assert batches  # the fast path was used
    a, b = _columns(ref_tree, ref_b), _columns(tree, batches)
    for k in FIELDS:
        if a[k].dtype == object:
            assert list(a[k]) == list(b[k]), k
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert tree["benchmarks"][0]["config"] == ref_tree["benchmarks"][0]["config"]


def test_indented_report_equals_compact():
    a = ingest_paths([DER / "guidellm-0.8.1-specdec.json"]).runs
    b = ingest_paths([DER / "guidellm-0.8.1-specdec-indented.json"]).runs
    cols = ["latency_mean_s", "ttft_mean_s", "tpot_mean_s", "accepted_tokens", "num_drafts", "rate_rps"]
    assert np.allclose(a[cols].to_numpy(float), b[cols].to_numpy(float))


def test_label_aliases_and_speculative_config():
    got = normalize({"GPU": "H100", "draft-model": "eagle", "num_speculative_tokens": "3", "other": "x"}, "f", "label")
    assert got == {"hardware": "H100", "drafter": "eagle", "k": 3}
    got = normalize({"speculative_config": '{"method": "eagle3", "model": "org/head", "num_speculative_tokens": 5}'},
                    "f", "label")
    assert got == {"drafter": "org/head", "k": 5}
    with pytest.raises(TraceError, match="whole number"):
        normalize({"k": 2.5}, "f", "label")


def test_precedence_run_override_file_override_flags_sidecar_labels():
    side = Sidecar(defaults={"hardware": "A100", "k": 1, "drafter": "d0"}, runs={"2": {"k": 7}},
                   files={"f.json": {"drafter": "d-file"}})
    kw = dict(source="dir/f.json", run_id="f:2:x", recorded={"verifier": "model-from-file"}, inferred={},
              sidecar=side)
    sink: list = []
    out = resolve(names=["2"], file_labels={"k": "3", "hardware": "B200"}, run_labels={},
                  flags={"k": 4}, sink=sink, **kw)
    assert out == {"verifier": "model-from-file", "drafter": "d-file", "k": 7, "hardware": "A100",
                   "dataset": "unknown"}
    assert any("the file says k = 3" in w for w in sink) and any("the file says hardware = 'B200'" in w for w in sink)
    out = resolve(names=["1"], file_labels={"k": "0", "gpu": "L4"}, run_labels={}, flags={}, sink=[],
                  **{**kw, "sidecar": Sidecar()})
    assert out["k"] == 0 and out["drafter"] == "none"  # k = 0 from a label implies no drafter


def test_k_inferred_from_acceptance_positions():
    runs = ingest_paths([DER / "vllm-0.32.0-summary.json", DER / "vllm-metrics-two-scrapes.prom"],
                        labels={**FLAGS, "k": None}).runs
    assert runs["k"].iloc[0] == 4


def test_warnings_are_collected_once_per_message():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ingest_paths([DER / "vllm-0.32.0-summary.json"], labels={**FLAGS, "verifier": "Qwen/Qwen3-8B"})
    assert len(res.warnings) == len(set(res.warnings)) == 1 and "'dataset'" in res.warnings[0]
    assert res.formats == {str(DER / "vllm-0.32.0-summary.json"): "vllm_bench"}


@pytest.mark.parametrize("old,new", [(b'[{"type_": "generative', b'[ {"type_": "generative'),
                                     (b'}, {"type_": "generative', b'},  {"type_": "generative')])
def test_irregular_layout_falls_back_to_plain_json(old, new):
    raw = (DATA / "guidellm-0.8.1-generated-benchmarks.json").read_bytes()
    tree, batches = stream_report(io.BytesIO(raw.replace(old, new)), "t", chunk=4096)
    assert batches == []
    ref, ref_b = stream_report(io.BytesIO(raw), "t")
    a, b = _columns(tree, batches), _columns(ref, ref_b)
    np.testing.assert_array_equal(a["t_first_token"], b["t_first_token"])
