"""The speculative configuration of a run: sidecar files: patterns and the extra fields."""

from __future__ import annotations

import pytest

from bayes_sd.traces.formats.labels import Sidecar, file_override, load_sidecar, normalize, resolve
from bayes_sd.traces.schema import TraceError


def test_files_section_matches_names_then_patterns_in_order(tmp_path):
    side = tmp_path / "spec.yaml"
    side.write_text("files:\n"
                    "  rate_8.json: {k: 8}\n"
                    '  "eagle/k2/*.json": {k: 2}\n'
                    '  "eagle/*": {k: 4}\n'
                    '  "*.json": {k: 1}\n')
    car = load_sidecar(side)
    for rel, k in (("eagle/k2/rate_8.json", 8), ("eagle/k2/rate_1.json", 2), ("eagle/k5/rate_1.json", 4),
                   ("other/x.json", 1), ("other/x.prom", None)):
        path = tmp_path / rel
        assert file_override(car, str(path)).get("k") == k, rel
    # a sidecar given without a path matches patterns on the file name
    assert file_override(Sidecar(files={"*_k3.json": {"k": 3}}), "/any/where/sweep_k3.json") == {"k": 3}


def test_extra_fields_resolve_like_the_configuration():
    spec = resolve(source="r.json", run_id="r:0", names=["0"], file_labels={"acceptance": "pinned"}, run_labels={},
                   recorded={"verifier": "v", "dataset": "d"}, inferred={}, flags={"drafter": "x", "k": 2,
                                                                                   "hardware": "h"},
                   sidecar=Sidecar(defaults={"engine": "vllm"}), sink=[], forced={"engine_version": "0.11.0"},
                   info={"tool": "guidellm", "engine": "sglang"})
    assert spec["acceptance"] == "pinned" and spec["engine"] == "vllm"  # the sidecar over what the file says
    assert spec["engine_version"] == "0.11.0" and spec["tool"] == "guidellm"


@pytest.mark.parametrize("value,expect", [("pinned", "pinned"), ("Synthetic", "pinned"), ("measured", "measured")])
def test_acceptance_values(value, expect):
    assert normalize({"acceptance": value}, "s", "sidecar", strict=True) == {"acceptance": expect}


def test_synthetic_rejection_sampler_in_a_speculative_config_means_pinned():
    cfg = '{"method": "eagle3", "num_speculative_tokens": 3, "rejection_sample_method": "synthetic"}'
    assert normalize({"speculative_config": cfg}, "s", "label") == {"drafter": "eagle3", "k": 3,
                                                                     "acceptance": "pinned"}
    with pytest.raises(TraceError, match="acceptance = 'sometimes'"):
        normalize({"acceptance": "sometimes"}, "s", "sidecar", strict=True)
