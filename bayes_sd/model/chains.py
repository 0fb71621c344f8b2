"""Chains that did not mix, one at a time: what each chain (or group of chains) of a fitted
:class:`~bayes_sd.model.LatencyModel` predicts for the runs it was fitted on, and the model with some
chains only. ``LatencyModel.chain_agreement`` and ``LatencyModel.with_chains`` are the entry points."""

from __future__ import annotations

import copy

import numpy as np

from bayes_sd._stats import chain_groups
from bayes_sd.model.conditions import CONDITION_COLUMNS, validate_conditions
from bayes_sd.model.predict import stack_posterior

__all__ = ["chain_agreement", "with_chains"]


def chain_agreement(model, max_draws: int = 200, seed: int = 0) -> dict:
    """``LatencyModel.chain_agreement``'s figures, computed (the method caches them per posterior)."""
    post = model.idata.posterior
    out = chain_groups(post, model.convergence_stats()["rhat"])
    stats = model.idata.sample_stats if "sample_stats" in model.idata.groups() else {}
    logp = next((stats[n] for n in ("logp", "lp") if n in stats), None)
    out["chain_logp"] = None if logp is None else [float(x) for x in logp.mean("draw").values]
    runs = model.fit_data.runs
    cond = validate_conditions(runs[[c for c in CONDITION_COLUMNS if c in runs and c != "n_requests"]])
    medians = np.stack([np.median(model._draws(stack_posterior(post.isel(chain=[c]), max_draws, seed), cond,
                                               seed).latency, axis=0) for c in range(post.sizes["chain"])])
    ok = np.all(np.isfinite(medians), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = (medians.max(0) - medians.min(0))[ok] / np.median(medians, axis=0)[ok]
    out["latency_spread_max"] = float(spread.max()) if spread.size else float("nan")
    out["latency_spread_median"] = float(np.median(spread)) if spread.size else float("nan")
    return out


def with_chains(model, chains: list[int]):
    """A shallow copy of the fitted ``model`` whose posterior and sample stats hold ``chains`` only."""
    other = copy.copy(model)
    other.idata = copy.copy(model.idata)
    for group in ("posterior", "sample_stats"):
        if group in model.idata.groups():
            setattr(other.idata, group, getattr(model.idata, group).isel(chain=list(chains)))
    other._diagnostics = other._agreement = None
    return other
