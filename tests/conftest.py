"""Shared test configuration.

- ``slow`` tests (statistical checks with real sampling) are skipped unless ``--run-slow``.
- Matplotlib runs headless.
- Fitted models are shared across the whole run through session-scoped fixtures
  (see ``tests/fixtures_model.py``), so sampling happens once per test run.
"""

from __future__ import annotations


import matplotlib
import pytest

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
def rng():
    import numpy as np

    return np.random.default_rng(SEED)
