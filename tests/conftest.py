"""Shared test configuration.

- ``slow`` tests (statistical checks with real sampling) are skipped unless ``--run-slow``.
- Matplotlib runs headless.
- Fitted models are shared across the whole run through session-scoped fixtures
  (see ``tests/fixtures_model.py``), so sampling happens once per test run.
"""

from __future__ import annotations

import matplotlib
import pytest
from pymc.testing import mock_sample_setup_and_teardown

matplotlib.use("Agg")

SEED = sum(map(ord, "bayes_sd"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def mock_pymc_sample(monkeypatch):
    """``pm.sample`` and the nutpie path of ``sample_posterior`` both return prior draws."""
    from bayes_sd.model import sampling

    monkeypatch.setitem(sampling.SAMPLERS, "nutpie", sampling.SAMPLERS["pymc"])
    yield from mock_sample_setup_and_teardown()


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def b200_runs():
    from bayes_sd.datasets import load_b200_runs

    return load_b200_runs()


@pytest.fixture(scope="session")
def fitted_b200(b200_runs, tmp_path_factory):
    """ONE small real fit of the bundled B200 runs, shared by every test of the run (bambi style).

    Few draws: enough for plumbing and coarse accuracy checks, not for convergence claims
    (those live in bench/fit_speed.py). Saved once; tests load the file when they need I/O.
    """
    import warnings

    from bayes_sd.model import ConvergenceWarning, LatencyModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LatencyModel().fit(b200_runs, draws=150, tune=200, chains=2, random_seed=SEED, progressbar=False,
                                   max_tree_depth=6)  # the main job's cap (demo.DEMO_SAMPLING)
    path = model.save(tmp_path_factory.mktemp("fit") / "b200_posterior.nc")
    return model, path
