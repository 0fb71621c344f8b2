"""The bundled catalogue of verifier and drafter sizes (bayes_sd/traces/catalogue.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bayes_sd.traces.catalogue import catalogue, lookup, models_for
from bayes_sd.traces.validate import validate_models

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["Qwen3-30B-A3B", "Qwen3-235B-A22B", "Mixtral-8x7B", "DeepSeek-V3", "gpt-oss-20b", "gpt-oss-120b",
            "Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.3-70B-Instruct", "Qwen3-8B", "Qwen3-32B",
            "EAGLE3-LLaMA3.1-Instruct-8B"]


@pytest.mark.parametrize("name", ["Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b", "QWEN/QWEN3-30B-A3B-INSTRUCT-2507",
                                  "someorg/Qwen3-30B-A3B"])
def test_qwen3_30b_a3b_is_a_moe_with_128_experts_top_8(name):
    models, unmatched = models_for([name])
    (row,) = models.to_dict("records")
    assert not unmatched and row["name"] == name  # named as the runs name it
    assert (row["params_b"], row["layers"], row["hidden_size"], row["experts"], row["experts_per_token"]) == (
        30.5, 48, 2048, 128, 8)


def test_required_architectures_are_covered_and_every_figure_has_a_source():
    names = [e["name"] for e in catalogue()]
    assert set(REQUIRED) <= set(names) and len(names) == len(set(names))
    for e in catalogue():
        figures = [f for f in ("params_b", "layers", "hidden_size", "experts", "experts_per_token") if f in e]
        assert figures and set(figures) == set(e["sources"]), e["name"]
        assert all(src.startswith("https://") for src in e["sources"].values()), e["name"]
        assert ("experts" in e) == ("experts_per_token" in e), e["name"]


def test_rows_are_valid_models_and_dense_ones_have_no_experts():
    models, _ = models_for([e["name"] for e in catalogue()])
    clean = validate_models(models, "catalogue")
    assert len(clean) == len(catalogue()) - 1  # the EAGLE-3 heads have no checked parameter count
    dense = clean.set_index("name").loc["Llama-3.1-8B"]
    assert dense["experts"] != dense["experts"] and dense["layers"] == 32  # NaN experts


def test_unknown_names_and_heads_without_a_size():
    models, unmatched = models_for(["acme/llama-9b", "none", "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", "acme/llama-9b"])
    assert unmatched == ["acme/llama-9b"] and len(models) == 0
    assert lookup("yuhuili/EAGLE3-LLaMA3.1-Instruct-8B")["layers"] == 1


def test_catalogue_ships_as_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "catalogue.toml" in pyproject["tool"]["setuptools"]["package-data"]["bayes_sd.traces"]
