"""Per-position acceptance pooled across drafters (``models/moe_roofline_per_position.toml``).

SYNTHETIC fleet runs (``bayes_sd.simulate``, geometric per-position decay, not the model's
logit-linear one). A drafter measured at one draft length cannot identify its own decay; it takes
the population's, so its acceptance at a k never measured must come out wide and still cover
what the held-out runs measured, while at its measured k, and for drafters measured at several k, it stays tight.
"""

import numpy as np
import pytest

from bayes_sd.datasets import load_fleet_models, load_fleet_runs
from bayes_sd.model import LatencyModel

CONFIG = "moe_roofline_per_position"
COND = ["verifier", "drafter", "hardware", "dataset", "k", "prompt_len", "output_len", "load_type", "rate_rps",
        "concurrency"]


@pytest.fixture(scope="module")
def one_k_fit():
    """llama3.1-8b on H100, two workloads; draft-1b kept at k = 4 only (eagle3-small k = 1..7, ngram k = 2, 4, 7)."""
    runs = load_fleet_runs()
    runs = runs[(runs["verifier"] == "llama3.1-8b") & (runs["hardware"] == "H100")]
    runs = runs[(runs["drafter"] != "draft-1b") | (runs["k"] == 4)].reset_index(drop=True)
    model = LatencyModel(CONFIG).fit(runs, models=load_fleet_models(), draws=500, tune=500, chains=2,
                                     random_seed=11, progressbar=False, max_tree_depth=6)
    return model, runs


def _tau_interval(model, runs, drafter, k):
    cond = runs[(runs["drafter"] == drafter) & (runs["dataset"] == "chat")][COND].head(1).assign(k=k)
    tau = model.predict_draws(cond, seed=3).acceptance_length[:, 0]
    return np.quantile(tau, [0.05, 0.5, 0.95])


def _measured_tau(drafter, k):
    """Mean acceptance length of the fleet's llama3.1-8b / H100 / chat runs at k, held out or not."""
    runs = load_fleet_runs()
    keep = ((runs["verifier"] == "llama3.1-8b") & (runs["hardware"] == "H100") & (runs["dataset"] == "chat")
            & (runs["drafter"] == drafter) & (runs["k"] == k))
    return float(runs.loc[keep, "acceptance_length"].mean())


def test_a_drafter_measured_at_one_k_takes_the_population_decay(one_k_fit):
    model, runs = one_k_fit
    assert model.diagnostics()["max_rhat"] < 1.05
    lo7, _, hi7 = _tau_interval(model, runs, "draft-1b", 7)  # never measured
    lo4, mid4, hi4 = _tau_interval(model, runs, "draft-1b", 4)  # measured
    e_lo, _, e_hi = _tau_interval(model, runs, "eagle3-small", 7)  # measured, decay identified
    assert lo7 <= _measured_tau("draft-1b", 7) <= hi7  # the held-out runs
    assert (hi7 - lo7) > 3 * (e_hi - e_lo)  # the unmeasured k is wide ...
    assert (hi4 - lo4) < (hi7 - lo7) / 3  # ... the measured one is not
    assert abs(mid4 / _measured_tau("draft-1b", 4) - 1) < 0.02
    decay = model.idata.posterior["accept_decay"]
    assert float(decay.sel(drafter="draft-1b").std()) > 3 * float(decay.sel(drafter="eagle3-small").std())
