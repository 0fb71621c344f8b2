"""A real wheel works from any directory: build it, install it (not editable) into a fresh virtual
environment, and run the main job's smoke settings from a folder outside the repository.

The fresh environment takes its dependencies (pymc, numpy, ...) from this one's site-packages
through a ``.pth`` path line, which adds the folder without running its ``.pth`` files, so the
editable install of the checkout stays invisible: only the wheel's ``bayes_sd`` can be imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, timeout=900):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONNOUSERSITE": "1"})
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_wheel_installs_and_runs_the_main_job_from_another_directory(tmp_path):
    source = tmp_path / "source"  # pip builds in the source tree: a copy keeps build/ out of the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                "__pycache__", "results", ".pytest_cache"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source], cwd=tmp_path)
    wheel = next(dist.glob("bayes_sd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("bayes_sd/data/real/b200_runs.csv", "bayes_sd/data/synthetic/fleet_runs_synthetic.csv",
                    "bayes_sd/model/configurations/default.toml", "bayes_sd/model/configurations/moe_roofline.toml"):
        assert shipped in names, f"{shipped} is not in the wheel"
    assert not any(n.endswith(".py") and n.startswith("bayes_sd/data/") and not n.endswith("__init__.py")
                   for n in names), "the data folder's scripts do not belong in the wheel"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip())
    here = [p for p in sys.path if p.endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    (site / "dependencies.pth").write_text("\n".join(here) + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--quiet", wheel], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([py, "-c", "import bayes_sd, bayes_sd.datasets as d; from bayes_sd.model import LatencyModel; "
                            "LatencyModel(); print(bayes_sd.__file__); print(len(d.load_fleet_runs()))"], elsewhere)
    module_file, n_fleet = where.stdout.split()
    assert Path(module_file).is_relative_to(venv), f"imported {module_file}, not the wheel's bayes_sd"
    assert int(n_fleet) == 670

    out = elsewhere / "results"
    done = _run([venv / "bin" / "bayes-sd", "demo", "--quick", "--out", out, "--no-progress"], elsewhere)
    for name in ("posterior.nc", "report.html", "report.md", "recommendations.csv", "data_summary.csv",
                 "vllm_config_dspark.json"):
        assert (out / name).is_file(), name
    assert "[5/5] report" in done.stdout
    assert "Sampling:" not in done.stdout + done.stderr and "FutureWarning" not in done.stderr
    assert pd.read_csv(out / "recommendations.csv")["best_k"].between(0, 7).all()
