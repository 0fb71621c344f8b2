"""The frozen out-of-family test set: it loads, its hash check fires on an edited copy, and its truth has
enough conditions where speculation does not pay."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from bayes_sd.evaluation.fleets.fleet import TRUTH_COLUMNS, no_speculation_share
from bayes_sd.evaluation.fleets.frozen import FROZEN_FILES, FROZEN_SHA256, FrozenSetError, frozen_dir, load_frozen

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def frozen():
    return load_frozen()


def test_the_frozen_set_loads(frozen):
    runs, models, truth = frozen
    assert runs["source"].str.startswith("synthetic:outfamily:frozen").all()
    assert runs["source"].nunique() >= 5
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert set(runs["verifier"]) <= set(models["name"])
    assert models["experts"].notna().any()  # MoE verifiers are in it
    assert set(truth["k"]) == set(range(8))
    assert sum(p.stat().st_size for p in frozen_dir().iterdir()) < 2.5e6


def test_an_edited_copy_is_refused(tmp_path):
    for name in (*FROZEN_FILES, "README.md"):
        shutil.copy(frozen_dir() / name, tmp_path / name)
    load_frozen(tmp_path)  # an exact copy loads
    text = (tmp_path / "truth.csv").read_text()
    (tmp_path / "truth.csv").write_text(text.replace("0.", "1.", 1))
    with pytest.raises(FrozenSetError, match="truth.csv.*edited"):
        load_frozen(tmp_path)
    (tmp_path / "models.csv").unlink()
    with pytest.raises(FrozenSetError, match="models.csv.*missing"):
        load_frozen(tmp_path)


def test_readme_records_the_hashes_and_the_wheel_ships_the_set():
    readme = (frozen_dir() / "README.md").read_text()
    for name in FROZEN_FILES:
        assert FROZEN_SHA256[name] and FROZEN_SHA256[name] in readme, name
    assert "scored only when a change is ready" in readme.lower() or "only when a change is ready" in readme
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"frozen/*.csv", "frozen/*.md"} <= set(globs["bayes_sd.data"])


def test_no_speculation_is_best_in_a_quarter_of_the_conditions_or_more(frozen):
    _, _, truth = frozen
    share = no_speculation_share(truth)
    assert share >= 0.25, share
    # and speculation is best in many others: the set is not one-sided
    assert share <= 0.75, share
