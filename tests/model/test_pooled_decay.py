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
    # plausible starts, as the main job's: from nutpie's jittered ones a chain can stay stuck (R-hat 2.2)
    model = LatencyModel(CONFIG).fit(runs, models=load_fleet_models(), draws=500, tune=500, chains=2,
                                     random_seed=11, progressbar=False, max_tree_depth=6, start="plausible")
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


#: a decay far from the population's (centre 0.18): what an MTP head's per-position counters show
STEEP = 0.6


@pytest.fixture(scope="module")
def one_k_positions_fit():
    """As ``one_k_fit``, with draft-1b's k = 4 runs carrying per-position acceptance that falls by
    ``STEEP`` logits per position (first-position acceptance set so that the shares sum to each
    run's measured acceptance length minus 1, as a vLLM run's counters would)."""
    from bayes_sd.theory.acceptance import implied_a1, survival
    from bayes_sd.traces.validate import format_per_position

    runs = load_fleet_runs()
    runs = runs[(runs["verifier"] == "llama3.1-8b") & (runs["hardware"] == "H100")]
    runs = runs[(runs["drafter"] != "draft-1b") | (runs["k"] == 4)].reset_index(drop=True)
    mine = runs["drafter"] == "draft-1b"
    a1 = implied_a1(runs.loc[mine, "acceptance_length"].to_numpy(float), 4.0, STEEP)
    runs["per_position_acceptance"] = None
    runs.loc[mine, "per_position_acceptance"] = [format_per_position(survival(a, STEEP, 4)) for a in a1]
    model = LatencyModel(CONFIG).fit(runs, models=load_fleet_models(), draws=500, tune=1000, chains=2,
                                     random_seed=11, progressbar=False, max_tree_depth=6, start="plausible")
    chat = (runs.loc[mine, "dataset"] == "chat").to_numpy()
    return model, runs, float(np.mean(a1[chat]))


def test_per_position_acceptance_identifies_a_one_k_drafters_decay(one_k_fit, one_k_positions_fit):
    from bayes_sd.theory.acceptance import tau_decaying

    model, runs, a1 = one_k_positions_fit  # a1: the chat runs' mean first-position acceptance
    assert model.diagnostics()["max_rhat"] < 1.05
    table = model.fit_data.drafter_table()
    assert bool(table.loc["draft-1b", "decay_identified"]) and table.loc["draft-1b", "measured_ks"] == 1
    decay = model.idata.posterior["accept_decay"].sel(drafter="draft-1b")
    assert 0.45 < float(decay.mean()) < 0.75  # the counts' decay, not the population's (0.18)
    before = one_k_fit[0].idata.posterior["accept_decay"].sel(drafter="draft-1b")
    assert float(decay.std()) < float(before.std()) / 2
    lo7, mid7, hi7 = _tau_interval(model, runs, "draft-1b", 7)
    b_lo, _, b_hi = _tau_interval(one_k_fit[0], one_k_fit[1], "draft-1b", 7)
    assert abs(mid7 / float(tau_decaying(a1, STEEP, 7)) - 1) < 0.05  # k = 7 follows the counts' curve
    assert hi7 - lo7 < (b_hi - b_lo) / 2  # and is known better than from the population alone


def test_the_report_says_where_a_drafters_decay_comes_from(one_k_fit, one_k_positions_fit):
    from bayes_sd.report.document import _decay_source

    assert "per-position counts" in _decay_source(one_k_positions_fit[0], "draft-1b")
    assert "other drafters" in _decay_source(one_k_fit[0], "draft-1b")
    assert "several k" in _decay_source(one_k_fit[0], "eagle3-small")
