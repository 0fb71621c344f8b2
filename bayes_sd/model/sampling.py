"""NUTS for every PyMC model of the package: sample, add the log-likelihood, attach the data.

:func:`sample_posterior` is the one path from a ``pm.Model`` to an ``az.InferenceData`` used by
:class:`~bayes_sd.model.LatencyModel`, the acceptance curves (:mod:`.acceptance_curve`) and the
cascade (:mod:`bayes_sd.cascade.model`). nutpie compiles only the log density of the free
variables; the deterministics are computed afterwards, in numpy (numba would spend more time
compiling them than sampling), once per model: a retry samples the compiled density again. Its
chains start at nutpie's jittered prior centres, or with ``start="plausible"`` where the data are
plausible (:func:`start_near_the_data`).

Tests replace the samplers through :data:`SAMPLERS` (``tests/conftest.py``: ``mock_pymc_sample``
sends both to :func:`pymc.testing.mock_sample`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
import weakref

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from pymc.backends.arviz import coords_and_dims_for_inferencedata, dict_to_dataset, find_observations

from bayes_sd._stats import convergence

__all__ = ["SAMPLERS", "sample_posterior", "sample_until_converged", "pool_chains", "RETRY_TARGET_ACCEPT",
           "compile_nutpie", "sample_compiled", "start_near_the_data", "INIT_CANDIDATES", "INIT_STEPS",
           "INIT_FLOOR_PER_OBSERVATION", "STARTS", "sampled_attempts"]

#: target acceptance of the first and later retries of an unconverged fit (:func:`sample_until_converged`)
RETRY_TARGET_ACCEPT = (0.95, 0.98)

#: jittered starting points scored per chain, and L-BFGS iterations from the best (:func:`start_near_the_data`)
INIT_CANDIDATES, INIT_STEPS = 20, 10
#: nutpie's own start is kept unless its log density is below minus this many nats per observed value
INIT_FLOOR_PER_OBSERVATION = 50.0

#: where chains start: ``jittered`` (nutpie's own: the prior's centre jittered by U(-1, 1); the default)
#: or ``plausible`` (:func:`start_near_the_data`: implausible jittered starts replaced)
STARTS = ("jittered", "plausible")


#: each model's nutpie compilation, reused while its variables and data stay the same (:func:`_compiled_once`)
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compile_nutpie(model: pm.Model):
    """``model``'s log density compiled by nutpie (numba), free variables only. A model built with
    ``pm.Data`` containers can then be refitted to other data without recompiling
    (``compiled.with_data(name=values)``)."""
    import nutpie

    return nutpie.compile_pymc_model(model, var_names=[v.name for v in model.free_RVs])


def _compiled_once(model: pm.Model):
    """:func:`compile_nutpie` of ``model``, compiled on its first sampling only: a retry of an
    unconverged fit (:func:`sample_until_converged`) samples the same model again, and compiling it
    takes about 20 s for the main job's. Compiled anew if variables were added or data set since (the
    compiled density holds a copy of the data)."""
    key = (tuple(v.name for v in model.free_RVs), tuple(v.name for v in model.observed_RVs),
           tuple(v.name for v in model.potentials),
           tuple(hash(np.asarray(d.get_value()).tobytes()) for d in model.data_vars))
    cached = _COMPILED.get(model)
    if cached is None or cached[0] != key:
        cached = _COMPILED[model] = (key, compile_nutpie(model))
    return cached[1]


def sample_compiled(compiled, *, draws, tune, chains, cores, seed, target_accept, progressbar=False,
                    low_rank_mass_matrix=False, max_tree_depth=10) -> az.InferenceData:
    """NUTS on a :func:`compile_nutpie` model (the free variables' draws only)."""
    import nutpie

    return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                         target_accept=target_accept, progress_bar=progressbar,
                         low_rank_modified_mass_matrix=low_rank_mass_matrix, maxdepth=max_tree_depth)


def start_near_the_data(compiled, floor: float = -np.inf, candidates: int = INIT_CANDIDATES,
                        steps: int = INIT_STEPS):
    """``compiled`` (:func:`compile_nutpie`) whose chains start where the data are plausible.

    nutpie starts each chain at the prior's centre jittered by U(-1, 1) on every unconstrained
    parameter. For a whole fleet's hierarchical costs that puts many runs past saturation: in a
    development fleet 7 of 8 such points had log density -inf and the finite ones -3e4 to -1e6,
    against about +500 in the typical set, and a warm-up of a few hundred steps could leave both
    chains there (R-hat 3.6, 800 divergences). Each chain starts instead at the best of
    ``candidates`` jittered points, moved uphill by at most ``steps`` L-BFGS iterations on the same
    compiled log density: still apart (different jitters, an optimisation stopped early, not a
    mode), but in the region the data allow. Few steps on purpose: 100 took one chain of a
    development fit past the typical set into a funnel (log density 935 against 856, every draw
    divergent), 10 and 30 did not. ``steps = 0``: the best candidate as it is.

    Only a start below ``floor`` (log density; ``sample_posterior(start="plausible")`` sets
    ``-INIT_FLOOR_PER_OBSERVATION`` per observed value) or not finite is replaced: a plausible one is
    nutpie's own, since on the small real B200 fit a selected start mixed worse at short warm-ups
    (R-hat 1.05-1.15 against 1.04-1.08 over four seeds). Not the default: a small fleet fit of the
    tests mixed worse with it too (bench/LOG.md, fit_speed).
    """
    import dataclasses
    import threading

    from scipy.optimize import minimize

    jittered, logp_and_grad = compiled.initial_point_func, getattr(compiled, "logp_func", None)
    if logp_and_grad is None:  # a nutpie without the compiled PyTensor (logp, grad): its own starts
        return compiled
    lock = threading.Lock()  # nutpie starts its chains from threads; a compiled PyTensor function is not re-entrant

    def downhill(x):
        logp, grad = logp_and_grad(x)
        if not (np.isfinite(logp) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(x)
        return -float(logp), -np.asarray(grad, float)

    def initial_point(seed):
        with lock:
            return _start(seed)

    def _start(seed):
        own = jittered(seed)
        own_value = downhill(own)[0]
        if np.isfinite(own_value) and -own_value >= floor:
            return own
        rng = np.random.default_rng(seed)
        points = [own] + [jittered(int(rng.integers(2**31))) for _ in range(candidates - 1)]
        values = [own_value] + [downhill(p)[0] for p in points[1:]]
        best = int(np.argmin(values))
        x, value = points[best], values[best]
        if steps and np.isfinite(value):
            with np.errstate(all="ignore"):
                res = minimize(downhill, x, jac=True, method="L-BFGS-B", options={"maxiter": steps})
            if np.isfinite(res.fun) and res.fun <= value:
                x = res.x
        return x

    return dataclasses.replace(compiled, initial_point_func=initial_point)


def _sample_nutpie(model: pm.Model, *, draws, tune, chains, cores, seed, target_accept, progressbar,
                   low_rank_mass_matrix, max_tree_depth, var_names, start="jittered") -> az.InferenceData:
    free = [v.name for v in model.free_RVs]
    compiled = _compiled_once(model)
    if start == "plausible":
        n_observed = sum(np.size(v) for v in find_observations(model).values())
        compiled = start_near_the_data(compiled, floor=-INIT_FLOOR_PER_OBSERVATION * n_observed)
    idata = sample_compiled(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
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
                 low_rank_mass_matrix, max_tree_depth, var_names, start="jittered") -> az.InferenceData:
    return pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                     target_accept=target_accept, progressbar=progressbar, model=model, var_names=var_names,
                     compute_convergence_checks=False, max_treedepth=max_tree_depth)


#: NUTS implementations by name: ``nutpie`` (compiled with numba; the default) and ``pymc``.
SAMPLERS = {"nutpie": _sample_nutpie, "pymc": _sample_pymc}


def sample_posterior(model: pm.Model, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
                     cores: int | None = None, nuts_sampler: str = "nutpie", target_accept: float = 0.9,
                     random_seed: int | None = None, progressbar: bool = False,
                     low_rank_mass_matrix: bool = False, max_tree_depth: int = 10, start: str = "jittered",
                     var_names: list[str] | None = None, log_likelihood: bool = False,
                     groups: dict[str, xr.Dataset] | None = None, attrs: dict | None = None) -> az.InferenceData:
    """Sample ``model`` by NUTS and return its posterior as ``az.InferenceData``.

    ``nuts_sampler``: a key of :data:`SAMPLERS`. ``random_seed``: an int (a fresh one when None).
    ``low_rank_mass_matrix``: nutpie's low-rank mass-matrix adaptation (nutpie only).
    ``max_tree_depth``: trees stop at ``2**max_tree_depth - 1`` leapfrog steps. ``start``: where
    chains start, one of :data:`STARTS` (nutpie only). ``var_names``:
    the free variables and deterministics kept (default: all). ``log_likelihood``: add the
    pointwise log-likelihood of every observed variable (for PSIS-LOO). ``groups``: extra
    groups (the training data) and ``attrs``: attributes, both stored with the posterior, as
    is ``attrs["sampler"]``: the sampler settings as JSON, the seed included.
    """
    if nuts_sampler not in SAMPLERS:
        raise ValueError(f"unknown nuts_sampler '{nuts_sampler}'. Fix: use one of {', '.join(SAMPLERS)}")
    if start not in STARTS:
        raise ValueError(f"unknown start '{start}'. Fix: use one of {', '.join(STARTS)}")
    cores = cores or min(chains, os.cpu_count() or 1)
    seed = int(np.random.default_rng().integers(2**31)) if random_seed is None else int(random_seed)
    settings = {"draws": draws, "tune": tune, "chains": chains, "nuts_sampler": nuts_sampler,
                "target_accept": target_accept, "random_seed": seed, "max_tree_depth": max_tree_depth,
                "low_rank_mass_matrix": bool(low_rank_mass_matrix and nuts_sampler == "nutpie"), "start": start}
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


def pool_chains(attempts: list[az.InferenceData]) -> az.InferenceData:
    """The chains of several samplings of one model as one ``InferenceData`` (chains renumbered from 0).

    Each sampling is a set of valid Markov chains of the same posterior, whatever its warm-up, target
    acceptance or seed, so together they are that many more chains: R-hat over all of them checks that
    they agree, and their effective sample sizes add. The draws per chain must match; warm-up groups are
    kept only where their lengths match too. Other groups and the attributes are the first attempt's.
    """
    if len({a.posterior.sizes["draw"] for a in attempts}) > 1:
        raise ValueError("pooled samplings must have the same number of draws per chain")
    first = attempts[0]
    groups = {}
    for name in first.groups():
        parts = [getattr(a, name) for a in attempts if name in a.groups()]
        if "chain" not in parts[0].dims:
            groups[name] = parts[0]
        elif len(parts) == len(attempts) and len({p.sizes.get("draw") for p in parts}) == 1:
            pooled = xr.concat(parts, dim="chain", combine_attrs="drop_conflicts")
            groups[name] = pooled.assign_coords(chain=np.arange(pooled.sizes["chain"]))
    out = az.InferenceData(**groups)
    out.attrs.update(first.attrs)
    return out


def _more_chains(d: dict) -> bool:
    """Whether an unconverged attempt's chains only fell short of ESS: no divergence and R-hat within
    what short chains of one posterior show (<= 1.05), so what it needs is more chains, not smaller steps."""
    return d["divergences"] == 0 and d["max_rhat"] <= 1.05


def sampled_attempts(attempts: list[dict]) -> list[dict]:
    """The attempts of :func:`sample_until_converged` that sampled: all but the pools of earlier ones."""
    return [a for a in attempts if "pooled" not in a]


def sample_until_converged(model: pm.Model, *, retries: int = 0, tune: int = 1000, target_accept: float = 0.9,
                           max_tree_depth: int = 10, random_seed: int | None = None,
                           retry_time_limit: float | None = None, **kwargs) -> tuple[az.InferenceData, list[dict]]:
    """:func:`sample_posterior`, then up to ``retries`` more times while the posterior has not converged
    (``bayes_sd._stats.convergence``), as an analyst would. After an attempt with no divergence and
    R-hat <= 1.05, whose only shortfall is effective sample size, a retry samples more chains with the
    same settings and the next seed; otherwise it doubles the warm-up (at least 200 steps), raises the
    target acceptance (:data:`RETRY_TARGET_ACCEPT`), lifts the tree cap to 10 and takes the next seed.
    The attempts without divergences are pooled (:func:`pool_chains`) and the pool is checked like an
    attempt. Returns the best (the first attempt or pool that converges, else the attempt with the
    lowest max R-hat) and every attempt's settings and convergence figures, in order, a converged pool last
    (``pooled``: the indices of the attempts it holds); the one returned has ``kept`` True, so a caller
    need not compute its figures again; ``seconds``: how long each attempt sampled. No retry starts once
    the attempts have taken ``retry_time_limit`` seconds in all (None: no limit); one started runs to its
    end, so the limit bounds the start of the last attempt, not the fit's end. ``kwargs`` go to
    :func:`sample_posterior`.
    """
    if int(retries) != retries or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, got {retries}")
    if retry_time_limit is not None and not retry_time_limit >= 0:
        raise ValueError(f"retry_time_limit must be a number of seconds >= 0 or None, got {retry_time_limit}")
    settings = {"tune": int(tune), "target_accept": float(target_accept), "max_tree_depth": int(max_tree_depth),
                "random_seed": random_seed}
    attempts, best, clean, d = [], None, [], {}  # best: (idata, its index in attempts)
    for attempt in range(int(retries) + 1):
        sampled_s = sum(a["seconds"] for a in sampled_attempts(attempts))
        if attempt and retry_time_limit is not None and sampled_s >= retry_time_limit:
            break
        if attempt:
            seed = None if random_seed is None else int(random_seed) + attempt
            if _more_chains(d):
                settings = {**settings, "random_seed": seed}
            else:
                settings = {"tune": max(2 * settings["tune"], 200),
                            "target_accept": max(settings["target_accept"],
                                                 RETRY_TARGET_ACCEPT[min(attempt, 2) - 1]),
                            "max_tree_depth": max(settings["max_tree_depth"], 10), "random_seed": seed}
        t0 = time.perf_counter()
        idata = sample_posterior(model, **settings, **kwargs)
        d = convergence(idata)
        attempts.append({**_attempt(settings, idata, d), "seconds": time.perf_counter() - t0})
        if best is None or d["converged"] or d["max_rhat"] < attempts[best[1]]["max_rhat"]:
            best = (idata, len(attempts) - 1)
        if d["converged"]:
            break
        if d["divergences"] == 0:
            clean.append((attempt, idata))
        if len(clean) > 1:
            pooled = pool_chains([i for _, i in clean])
            dp = convergence(pooled)
            if dp["converged"]:
                attempts.append({**_attempt(settings, pooled, dp), "pooled": [a for a, _ in clean]})
                best = (pooled, len(attempts) - 1)
                break
    for i, a in enumerate(attempts):
        a["kept"] = i == best[1]
    return best[0], attempts


def _attempt(settings: dict, idata: az.InferenceData, d: dict) -> dict:
    """One attempt's settings and its figures of :func:`bayes_sd._stats.convergence`."""
    return {**settings, "random_seed": json.loads(idata.attrs["sampler"])["random_seed"], **d}
