"""NUTS for every PyMC model of the package: sample, add the log-likelihood, attach the data.

:func:`sample_posterior` is the one path from a ``pm.Model`` to an ``az.InferenceData`` used by
:class:`~bayes_sd.model.LatencyModel`, the acceptance curves (:mod:`.acceptance_curve`) and the
cascade (:mod:`bayes_sd.cascade.model`). nutpie compiles only the log density of the free
variables; the deterministics are computed afterwards, in numpy (numba would spend more time
compiling them than sampling).

Tests replace the samplers through :data:`SAMPLERS` (``tests/conftest.py``: ``mock_pymc_sample``
sends both to :func:`pymc.testing.mock_sample`).
"""

from __future__ import annotations

import json
import os
import warnings

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from pymc.backends.arviz import coords_and_dims_for_inferencedata, dict_to_dataset, find_observations

from bayes_sd._stats import convergence

__all__ = ["SAMPLERS", "sample_posterior", "sample_until_converged", "RETRY_TARGET_ACCEPT", "compile_nutpie",
           "sample_compiled"]

#: target acceptance of the first and later retries of an unconverged fit (:func:`sample_until_converged`)
RETRY_TARGET_ACCEPT = (0.95, 0.98)


def compile_nutpie(model: pm.Model):
    """``model``'s log density compiled by nutpie (numba), free variables only. A model built with
    ``pm.Data`` containers can then be refitted to other data without recompiling
    (``compiled.with_data(name=values)``)."""
    import nutpie

    return nutpie.compile_pymc_model(model, var_names=[v.name for v in model.free_RVs])


def sample_compiled(compiled, *, draws, tune, chains, cores, seed, target_accept, progressbar=False,
                    low_rank_mass_matrix=False, max_tree_depth=10) -> az.InferenceData:
    """NUTS on a :func:`compile_nutpie` model (the free variables' draws only)."""
    import nutpie

    return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                         target_accept=target_accept, progress_bar=progressbar,
                         low_rank_modified_mass_matrix=low_rank_mass_matrix, maxdepth=max_tree_depth)


def _sample_nutpie(model: pm.Model, *, draws, tune, chains, cores, seed, target_accept, progressbar,
                   low_rank_mass_matrix, max_tree_depth, var_names) -> az.InferenceData:
    free = [v.name for v in model.free_RVs]
    idata = sample_compiled(compile_nutpie(model), draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                            target_accept=target_accept, progressbar=progressbar,
                            low_rank_mass_matrix=low_rank_mass_matrix, max_tree_depth=max_tree_depth)
    wanted = [d.name for d in model.deterministics] if var_names is None else var_names
    dets = [n for n in wanted if n not in free]
    if dets:
        computed = pm.compute_deterministics(idata.posterior, var_names=dets, model=model, merge_dataset=False,
                                             progressbar=False)
        idata.posterior = idata.posterior.merge(computed)
    if "observed_data" not in idata.groups():  # as pm.sample gives it (posterior predictive checks, LOO)
        coords, dims = coords_and_dims_for_inferencedata(model)
        idata.add_groups(observed_data=dict_to_dataset(find_observations(model), library=pm, coords=coords,
                                                       dims=dims, default_dims=[]))
    return idata


def _sample_pymc(model: pm.Model, *, draws, tune, chains, cores, seed, target_accept, progressbar,
                 low_rank_mass_matrix, max_tree_depth, var_names) -> az.InferenceData:
    return pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                     target_accept=target_accept, progressbar=progressbar, model=model, var_names=var_names,
                     compute_convergence_checks=False, max_treedepth=max_tree_depth)


#: NUTS implementations by name: ``nutpie`` (compiled with numba; the default) and ``pymc``.
SAMPLERS = {"nutpie": _sample_nutpie, "pymc": _sample_pymc}


def sample_posterior(model: pm.Model, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
                     cores: int | None = None, nuts_sampler: str = "nutpie", target_accept: float = 0.9,
                     random_seed: int | None = None, progressbar: bool = False,
                     low_rank_mass_matrix: bool = False, max_tree_depth: int = 10,
                     var_names: list[str] | None = None, log_likelihood: bool = False,
                     groups: dict[str, xr.Dataset] | None = None, attrs: dict | None = None) -> az.InferenceData:
    """Sample ``model`` by NUTS and return its posterior as ``az.InferenceData``.

    ``nuts_sampler``: a key of :data:`SAMPLERS`. ``random_seed``: an int (a fresh one when None).
    ``low_rank_mass_matrix``: nutpie's low-rank mass-matrix adaptation (nutpie only).
    ``max_tree_depth``: trees stop at ``2**max_tree_depth - 1`` leapfrog steps. ``var_names``:
    the free variables and deterministics kept (default: all). ``log_likelihood``: add the
    pointwise log-likelihood of every observed variable (for PSIS-LOO). ``groups``: extra
    groups (the training data) and ``attrs``: attributes, both stored with the posterior, as
    is ``attrs["sampler"]``: the sampler settings as JSON, the seed included.
    """
    if nuts_sampler not in SAMPLERS:
        raise ValueError(f"unknown nuts_sampler '{nuts_sampler}'. Fix: use one of {', '.join(SAMPLERS)}")
    cores = cores or min(chains, os.cpu_count() or 1)
    seed = int(np.random.default_rng().integers(2**31)) if random_seed is None else int(random_seed)
    settings = {"draws": draws, "tune": tune, "chains": chains, "nuts_sampler": nuts_sampler,
                "target_accept": target_accept, "random_seed": seed, "max_tree_depth": max_tree_depth,
                "low_rank_mass_matrix": bool(low_rank_mass_matrix and nuts_sampler == "nutpie")}
    with warnings.catch_warnings():  # the graphs are elementwise: BLAS is irrelevant to them
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        idata = SAMPLERS[nuts_sampler](model, cores=cores, seed=seed, progressbar=progressbar, var_names=var_names,
                                       **{k: v for k, v in settings.items()
                                          if k not in ("nuts_sampler", "random_seed")})
        if log_likelihood and "log_likelihood" not in idata.groups():
            pm.compute_log_likelihood(idata, model=model, progressbar=False)
    if groups:
        idata.add_groups(groups, warn_on_custom_groups=False)
    idata.attrs.update({"sampler": json.dumps(settings), **(attrs or {})})
    return idata


def sample_until_converged(model: pm.Model, *, retries: int = 0, tune: int = 1000, target_accept: float = 0.9,
                           max_tree_depth: int = 10, random_seed: int | None = None,
                           **kwargs) -> tuple[az.InferenceData, list[dict]]:
    """:func:`sample_posterior`, then up to ``retries`` more times while the posterior has not converged
    (``bayes_sd._stats.convergence``), as an analyst would: each retry doubles the warm-up (at least
    200 steps), raises the target acceptance (:data:`RETRY_TARGET_ACCEPT`), lifts the tree cap to 10
    and takes the next seed. Returns the best attempt (the first that converges, else the lowest max
    R-hat) and every attempt's settings and diagnostics, in order. ``kwargs`` go to
    :func:`sample_posterior`.
    """
    if int(retries) != retries or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, got {retries}")
    settings = {"tune": int(tune), "target_accept": float(target_accept), "max_tree_depth": int(max_tree_depth),
                "random_seed": random_seed}
    attempts, best = [], None
    for attempt in range(int(retries) + 1):
        if attempt:
            settings = {"tune": max(2 * settings["tune"], 200),
                        "target_accept": max(settings["target_accept"], RETRY_TARGET_ACCEPT[min(attempt, 2) - 1]),
                        "max_tree_depth": max(settings["max_tree_depth"], 10),
                        "random_seed": None if random_seed is None else int(random_seed) + attempt}
        idata = sample_posterior(model, **settings, **kwargs)
        d = convergence(idata)
        attempts.append({**settings, "random_seed": json.loads(idata.attrs["sampler"])["random_seed"],
                         "converged": d["converged"], "max_rhat": d["max_rhat"], "min_ess_bulk": d["min_ess_bulk"],
                         "divergences": d["divergences"]})
        if best is None or d["converged"] or d["max_rhat"] < best[1]["max_rhat"]:
            best = (idata, d)
        if d["converged"]:
            break
    return best[0], attempts
