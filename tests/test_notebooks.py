"""Execute every notebook in ``notebooks/`` top to bottom and check its key outputs.

Each notebook runs in a temporary copy (outputs are never written back into ``notebooks/``)
with ``BAYES_SD_NOTEBOOK_QUICK=1``, so its first code cell picks small sampling settings.
The kernel is ipykernel's default ``python3`` spec of the running environment (jupyter_client
starts it with this interpreter), so nothing has to be installed or registered.
Quick runs take well under two minutes per notebook on two cores (numba compile included).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 600

#: notebook -> (minimum number of figures, strings that must appear in its text outputs)
EXPECTED = {
    "01_quickstart_b200.ipynb": (6, [
        "48 runs, REAL data", "b200-qwen27b-dspark-k7-HumanEval-c128", "DIAGNOSTICS:", "Verdict:",
        "PPC:", "DSpark stops beating MTP at about", "round trip OK", "model id"]),
    "02_partial_pooling_unseen_pair.ipynb": (2, [
        "all SYNTHETIC", "(HELD OUT)", "DIAGNOSTICS:", "90% interval coverage:", "least squares",
        "median relative 90% width", "acceptance length", "model id"]),
    "03_choosing_draft_length.ipynb": (3, [
        "REAL data", "DIAGNOSTICS:", "RECOMMENDATION", "best_k", "objectives disagree at", "RANKING",
        "num_speculative_tokens_per_batch_size", "--speculative-config", "model id"]),
    "04_per_position_acceptance.ipynb": (2, [
        "12 runs, REAL data", "PRIOR PREDICTIVE", "DIAGNOSTICS", "LOO comparison", "HELD-OUT k=7", "mean |error|",
        "SYNTHETIC best k", "SYNTHETIC regret"]),
    "05_pyramid_cascade.ipynb": (2, [
        "all SYNTHETIC", "PRIOR PREDICTIVE", "DIAGNOSTICS:", "RECOVERY", "LOO (run mean latencies)",
        "COMPARISON", "qualifier stops paying at", "HELD-OUT", "held-out prediction error"]),
    "06_what_the_bayesian_model_buys.ipynb": (2, [
        "48 runs, REAL data", "provenance: repo vllm-project/speculators", "DIAGNOSTICS:", "BATCH-1 CALIBRATION",
        "ERRORS ON HELD-OUT RUNS", "Leviathan et al.", "Yan et al.", "SPEEDUP AT THE HELD-OUT LOADS",
        "WHAT BAYES ADDS", "SUMMARY (held-out, REAL data): MAPE", "model id"]),
    "07_moe_verifiers.ipynb": (1, [
        "of experts touched", "SYNTHETIC:", "DIAGNOSTICS dense:", "DIAGNOSTICS moe:", "LOO COMPARISON",
        "expert_share: posterior mean", "held-out MAPE: dense", "WHEN IT MATTERS"]),
    "08_drafter_design.ipynb": (2, [
        "SYNTHETIC runs; held-out drafter", "DIAGNOSTICS:", "beta_drafter_design", "WHAT-IF draft-L12-0.8b",
        "90% interval coverage", "WHAT-IF WITH ACCEPTANCE GIVEN", "PARITY draft-L1-0.25b vs draft-L24-2b"]),
}


#: notebook -> (pattern with one number, a bound it must meet, what it is): the conclusions each notebook
#: prints must hold in the quick run too, generously: a broken model misses them, sampling noise does not
NUMBERS = {
    "01_quickstart_b200.ipynb": [(r"PPC: (\d+)% of \d+ fitted runs inside", lambda v: v >= 60,
                                  "in-sample runs inside their 90% predictive interval (%)")],
    "02_partial_pooling_unseen_pair.ipynb": [(r"90% interval coverage: (\d+)%", lambda v: v >= 50,
                                              "held-out 90% coverage of the unseen pair (%)")],
    "04_per_position_acceptance.ipynb": [(r"decaying : mean \|error\| ([\d.]+) tokens", lambda v: v < 0.2,
                                          "held-out k = 7 acceptance-length error, decaying form (tokens)")],
    "05_pyramid_cascade.ipynb": [(r"held-out prediction error: largest ([\d.]+)%", lambda v: v < 25,
                                  "largest held-out cascade latency error (%)")],
    "06_what_the_bayesian_model_buys.ipynb": [(r"MAPE Bayes \(posterior mean\) ([\d.]+)%", lambda v: v < 25,
                                               "held-out MAPE of the Bayesian model on the real runs (%)")],
    "07_moe_verifiers.ipynb": [(r"held-out MAPE: dense [\d.]+%, moe ([\d.]+)%", lambda v: v < 30,
                                "held-out MAPE of the MoE variant (%)")],
    "08_drafter_design.ipynb": [(r"90% interval coverage (\d+)% over", lambda v: v >= 50,
                                 "held-out 90% coverage of the drafter never measured (%)")],
}


def _texts(nb) -> str:
    """All stream and plain-text outputs of an executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def _n_figures(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), \
        f"{name} is stored with outputs. Fix: clear outputs before committing (e.g. jupyter nbconvert --clear-output)"
    assert "BAYES_SD_NOTEBOOK_QUICK" in code[0].source and "DRAWS, TUNE, CHAINS" in code[0].source, \
        f"{name}: the first code cell must set DRAWS, TUNE, CHAINS from BAYES_SD_NOTEBOOK_QUICK"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYES_SD_NOTEBOOK_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # let the kernel use its inline backend (figures as PNG)
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # this environment's python3 kernel before any user-level one
    copy = tmp_path / name
    shutil.copyfile(NOTEBOOKS / name, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell, on any error

    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    min_figures, needles = EXPECTED[name]
    assert _n_figures(nb) >= min_figures, f"{name}: {_n_figures(nb)} figures, expected at least {min_figures}"
    text = _texts(nb)
    missing = [s for s in needles if s not in text]
    assert not missing, f"{name}: expected output not found: {missing}"
    for pattern, ok, what in NUMBERS.get(name, []):
        found = re.search(pattern, text)
        assert found, f"{name}: no line matching {pattern!r}"
        assert ok(float(found.group(1))), f"{name}: {what} is {found.group(1)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], f"{name} left files behind: {list(tmp_path.iterdir())}"
