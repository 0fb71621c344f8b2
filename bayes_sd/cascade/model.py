"""Bayesian fit of the PyramidSD qualifier stage: its pass costs and the acceptance rates.

Given the verifier and drafter service costs (known numbers, e.g. posterior medians of the
main latency model, optionally with lognormal uncertainty on some of them), fit from
cascade runs (and optionally plain drafter -> verifier runs of the same pair):

- ``qual_cost_ms[qcoef]``: qualifier fixed cost per pass ``q0`` and per sequence-token ``q1`` (ms);
- ``acceptance[stage]``: per-position acceptance ``dq`` (qualifier accepts a drafter token),
  ``qv`` (verifier accepts a qualified token) and, when plain runs are given, ``dv``
  (verifier accepts a drafter token directly: the two-stage baseline);
- ``sigma_model``: relative discrepancy between the closed form and the server.

Likelihood: each run's log mean latency is normal (lognormal latency) around the log of
:func:`bayes_sd.cascade.theory.config_demand`'s latency, with scale ``sqrt(se_rel^2 + sigma^2)``
(``se_rel``: the run's own relative standard error); acceptance counts, when present, enter
exactly as ``a^accepted (1 - a)^rejected`` (a binomial kernel; see
:mod:`bayes_sd.cascade.simulate`). Saturated runs (column ``saturated`` true) are left out.

Runs table columns: ``run_id``, ``mode`` ('cascade' | 'plain'), ``k_draft``, ``k_qual``
(0 for plain), ``load_type`` ('rate' | 'concurrency'), ``rate_rps`` or ``concurrency``,
``prompt_len``, ``output_len`` (tokens), ``latency_mean_s``, and ``latency_se_s`` (or
``latency_sd_s`` with ``n_requests``); optionally ``dq_accepted``, ``dq_rejected``,
``qv_accepted``, ``qv_rejected``. :func:`bayes_sd.cascade.simulate.simulate_pyramid_runs`
produces exactly this.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayes_sd import theory
from bayes_sd._stats import convergence, convergence_text
from bayes_sd.cascade.theory import PyramidCosts, config_demand
from bayes_sd.model.sampling import sample_posterior

__all__ = ["prepare_runs", "build_pyramid_model", "prior_predictive", "fit_pyramid", "diagnostics",
           "diagnostics_text", "posterior_params", "fitted_runs", "UNCERTAIN_COEFS"]

#: verifier/drafter coefficients that may be given lognormal uncertainty (``cost_sd``)
UNCERTAIN_COEFS = theory.COEFS
_REQUIRED = ("run_id", "mode", "k_draft", "k_qual", "load_type", "prompt_len", "output_len", "latency_mean_s")
_COUNTS = ("dq_accepted", "dq_rejected", "qv_accepted", "qv_rejected")

# Priors (why):
# - log q0, log q1 ~ Normal(log of the geometric mean of the drafter's and the verifier's
#   coefficient, 1.0): a qualifier is sized between the two, and pass costs grow roughly with
#   model size, so the geometric mean is the neutral centre; sd 1 (a factor e either way)
#   puts both neighbours' costs within about 1.3 sd.
# - logit acceptance ~ Normal(1.0, 1.0): median 0.73, 90% prior interval about 0.40-0.93,
#   the range measured for real drafters (presets, vLLM EAGLE sweeps); fuzzy acceptance
#   sits at its upper end, still well inside.
# - sigma_model ~ HalfNormal(0.05): the closed form matches the step simulator within a few
#   percent below half of saturation (tests/test_simulate.py, tests/test_pyramid.py). The
#   mismatch is systematic (e.g. the last iteration's capped output), not an outlier, so a
#   normal discrepancy on the log scale, not a heavy-tailed one, is what lets it widen the
#   intervals instead of being absorbed by q0 / q1.
Q_PRIOR_SD = 1.0
LOGIT_ACCEPT_PRIOR = (1.0, 1.0)
SIGMA_MODEL_PRIOR = 0.05


def _fail(column: str, problem: str, fix: str):
    raise ValueError(f"pyramid runs, column '{column}': {problem}. Fix: {fix}")


def prepare_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of a cascade runs table with ``latency_se_s`` filled; saturated rows dropped."""
    if not isinstance(runs, pd.DataFrame) or runs.empty:
        raise ValueError("pyramid runs: need a non-empty DataFrame. Fix: pass the runs table of "
                         "simulate_pyramid_runs or one with the columns listed in bayes_sd.cascade.model")
    for col in _REQUIRED:
        if col not in runs.columns:
            _fail(col, "missing", f"add the column (required: {', '.join(_REQUIRED)})")
    r = runs.copy()
    if "saturated" in r.columns:
        r = r[~r["saturated"].fillna(False).astype(bool)].copy()
    if not r["mode"].isin(["cascade", "plain"]).all():
        _fail("mode", f"values {sorted(set(r['mode']) - {'cascade', 'plain'})}", "use 'cascade' or 'plain'")
    if not r["load_type"].isin(["rate", "concurrency"]).all():
        _fail("load_type", "values other than 'rate' / 'concurrency'", "use 'rate' (open loop) or 'concurrency'")
    for col in ("k_draft", "k_qual"):
        k = pd.to_numeric(r[col], errors="coerce")
        if k.isna().any() or (k < 0).any() or (k != np.round(k)).any():
            _fail(col, "needs non-negative integers", "give draft lengths as whole numbers of tokens")
    if ((r["mode"] == "plain") & (r["k_qual"] != 0)).any():
        _fail("k_qual", "plain rows with k_qual != 0", "plain (drafter -> verifier) rows have no qualifier: k_qual = 0")
    if not (r["mode"] == "cascade").any():
        _fail("mode", "no cascade rows", "the qualifier can only be fitted from runs that use it")
    for col, lt in (("rate_rps", "rate"), ("concurrency", "concurrency")):
        rows = r["load_type"] == lt
        if rows.any() and (col not in r or not (pd.to_numeric(r.loc[rows, col], errors="coerce") > 0).all()):
            _fail(col, f"missing or not > 0 on load_type '{lt}' rows", f"give {col} for every {lt} run")
    if not (pd.to_numeric(r["latency_mean_s"], errors="coerce") > 0).all():
        _fail("latency_mean_s", "missing or not > 0", "give each run's mean request latency in seconds")
    if "latency_se_s" not in r.columns:
        if not {"latency_sd_s", "n_requests"} <= set(r.columns):
            _fail("latency_se_s", "missing (and no latency_sd_s with n_requests)",
                  "give the standard error of each run's mean latency in seconds, or latency_sd_s and n_requests")
        r["latency_se_s"] = r["latency_sd_s"] / np.sqrt(r["n_requests"])
    if not (pd.to_numeric(r["latency_se_s"], errors="coerce") >= 0).all():
        _fail("latency_se_s", "missing or negative", "give a standard error >= 0 in seconds")
    for col in _COUNTS:
        if col in r.columns and (pd.to_numeric(r[col], errors="coerce") < 0).any():
            _fail(col, "negative counts", "give token counts >= 0")
    return r.reset_index(drop=True)


def _costs_dict(costs: theory.ServiceCosts) -> dict:
    if costs.experts is not None:
        raise ValueError("costs.experts is set: the pyramid fit handles dense verifiers only. "
                         "Fix: pass ServiceCosts without experts")
    return {k: float(v) for k, v in asdict(costs).items() if k in UNCERTAIN_COEFS}


def build_pyramid_model(runs: pd.DataFrame, costs: theory.ServiceCosts, *, cost_sd: dict | None = None,
                        q_prior: dict | None = None) -> pm.Model:
    """The PyMC model for a cascade runs table (see the module docstring).

    ``costs``: the verifier/drafter coefficients (s), fixed unless named in ``cost_sd``
    (coefficient -> sd of its log: lognormal prior centred on the given value).
    ``q_prior``: optional ``{"q0": median_s, "q1": median_s}`` replacing the default prior
    centres (the geometric mean of the drafter's and verifier's coefficients).
    """
    r = prepare_runs(runs)
    base = _costs_dict(costs)
    cost_sd = dict(cost_sd or {})
    bad = sorted(set(cost_sd) - set(UNCERTAIN_COEFS))
    if bad:
        raise ValueError(f"cost_sd names {bad}. Fix: use coefficients from {UNCERTAIN_COEFS}")
    centre = {"q0": np.sqrt(base["d0"] * base["v0"]), "q1": np.sqrt(base["d1"] * base["v1"])}
    centre.update({k: float(v) for k, v in (q_prior or {}).items() if k in centre})
    plain = (r["mode"] == "plain").to_numpy()
    stages = ["dq", "qv"] + (["dv"] if plain.any() else [])
    coords = {"run": r["run_id"].astype(str).to_numpy(), "qcoef": ["q0", "q1"], "stage": stages}
    kd, kq = r["k_draft"].to_numpy(float), r["k_qual"].to_numpy(float)
    is_open = (r["load_type"] == "rate").to_numpy()
    rate = (np.where(is_open, pd.to_numeric(r.get("rate_rps"), errors="coerce"), 0.0)
            if is_open.any() else np.zeros(len(r)))
    conc = (np.where(~is_open, pd.to_numeric(r.get("concurrency"), errors="coerce"), 1.0)
            if (~is_open).any() else np.ones(len(r)))
    lat_obs = r["latency_mean_s"].to_numpy(float)
    se_rel = r["latency_se_s"].to_numpy(float) / lat_obs
    if cost_sd:
        coords["kcoef"] = list(cost_sd)

    with pm.Model(coords=coords) as model:
        log_q = pm.Normal("log_qual_cost", mu=np.log([centre["q0"], centre["q1"]]), sigma=Q_PRIOR_SD, dims="qcoef")
        q = pt.exp(log_q)
        pm.Deterministic("qual_cost_ms", 1e3 * q, dims="qcoef")
        logit_a = pm.Normal("logit_acceptance", *LOGIT_ACCEPT_PRIOR, dims="stage")
        acc = pm.Deterministic("acceptance", pm.math.invlogit(logit_a), dims="stage")
        vals = dict(base)
        if cost_sd:
            log_c = pm.Normal("log_known_cost", mu=np.log([base[c] for c in cost_sd]),
                              sigma=np.array(list(cost_sd.values()), float), dims="kcoef")
            pm.Deterministic("known_cost_ms", 1e3 * pt.exp(log_c), dims="kcoef")
            for i, c in enumerate(cost_sd):
                vals[c] = pt.exp(log_c[i])
        c_t = replace(costs, **vals)
        a_dv = acc[2] if plain.any() else acc[1]  # unused when there are no plain rows
        dem = config_demand(c_t, PyramidCosts(q[0], q[1]), plain, kd, kq, acc[0], acc[1], a_dv,
                            r["prompt_len"].to_numpy(float), r["output_len"].to_numpy(float), xp=pt)
        lat = pt.where(is_open, theory.latency_open(dem.c1, dem.c2, rate, xp=pt),
                       theory.latency_closed(dem.c1, dem.c2, conc))
        pm.Deterministic("latency_s", lat, dims="run")
        sigma = pm.HalfNormal("sigma_model", SIGMA_MODEL_PRIOR)
        pm.Normal("log_latency_obs", mu=pt.log(lat), sigma=pt.sqrt(se_rel**2 + sigma**2),
                  observed=np.log(lat_obs), dims="run")
        _acceptance_likelihood(r, plain, acc)
    return model


def _acceptance_likelihood(r: pd.DataFrame, plain: np.ndarray, acc) -> None:
    """Binomial kernels ``a^accepted (1 - a)^rejected`` for the rows that carry counts."""
    if not set(_COUNTS) <= set(r.columns):
        return
    cnt = r[list(_COUNTS)].apply(pd.to_numeric, errors="coerce")
    dq_n = cnt["dq_accepted"] + cnt["dq_rejected"]
    rows = np.flatnonzero((~plain) & (r["k_draft"].to_numpy() > 0) & (dq_n > 0).to_numpy())
    if rows.size:
        model = pm.modelcontext(None)
        model.add_coord("dq_run", r["run_id"].astype(str).to_numpy()[rows])
        pm.Binomial("dq_accepted_obs", n=dq_n.to_numpy(int)[rows], p=acc[0],
                    observed=cnt["dq_accepted"].to_numpy(int)[rows], dims="dq_run")
    qv_n = cnt["qv_accepted"] + cnt["qv_rejected"]
    rows = np.flatnonzero((qv_n > 0).to_numpy())
    if rows.size:
        model = pm.modelcontext(None)
        model.add_coord("qv_run", r["run_id"].astype(str).to_numpy()[rows])
        p = pt.where(plain[rows], acc[2], acc[1]) if plain.any() else acc[1]
        pm.Binomial("qv_accepted_obs", n=qv_n.to_numpy(int)[rows], p=p,
                    observed=cnt["qv_accepted"].to_numpy(int)[rows], dims="qv_run")


def prior_predictive(runs: pd.DataFrame, costs: theory.ServiceCosts, *, draws: int = 500, random_seed=None,
                     **kw) -> az.InferenceData:
    """Prior predictive draws of every observed quantity (and ``latency_s`` per run)."""
    model = build_pyramid_model(runs, costs, **kw)
    return pm.sample_prior_predictive(draws=draws, model=model, random_seed=random_seed)


def fit_pyramid(runs: pd.DataFrame, costs: theory.ServiceCosts, *, draws: int = 500, tune: int = 500,
                chains: int = 2, random_seed: int | None = None, target_accept: float = 0.9,
                nuts_sampler: str = "nutpie", progressbar: bool = False, cost_sd: dict | None = None,
                q_prior: dict | None = None) -> az.InferenceData:
    """Fit the qualifier stage by NUTS (nutpie by default); return ``az.InferenceData``.

    Saturated runs (column ``saturated`` true) are left out.

    Parameters
    ----------
    runs : pandas.DataFrame
        Cascade runs table (see the module docstring; :func:`bayes_sd.cascade.simulate_pyramid_runs`
        produces it): ``mode``, ``k_draft``, ``k_qual``, ``load_type`` with ``rate_rps`` (requests/s) or
        ``concurrency``, ``prompt_len``/``output_len`` (tokens), ``latency_mean_s`` and ``latency_se_s``
        (s), optionally the acceptance counts.
    costs : ServiceCosts
        The verifier/drafter coefficients (s; dense verifiers only), fixed unless named in ``cost_sd``.
    draws : int, default 500
        Posterior draws per chain, after warm-up.
    tune : int, default 500
        Warm-up steps per chain.
    chains : int, default 2
        Number of chains.
    random_seed : int, optional
        Seed of the sampler (a fresh one when None).
    target_accept : float, default 0.9
        NUTS target acceptance probability.
    nuts_sampler : {"nutpie", "pymc"}, default "nutpie"
        NUTS implementation.
    progressbar : bool, default False
        Show the sampler's progress bar.
    cost_sd : dict, optional
        Coefficient name -> sd of its log: a lognormal prior centred on the given value.
    q_prior : dict, optional
        ``{"q0": median_s, "q1": median_s}`` replacing the default prior centres of the qualifier's
        costs (s; default: the geometric mean of the drafter's and verifier's coefficients).

    Returns
    -------
    arviz.InferenceData
        Groups: ``posterior`` (``qual_cost_ms[qcoef]`` in ms, ``acceptance[stage]``, ``sigma_model``,
        ``latency_s[run]`` in s, ``known_cost_ms[kcoef]`` when ``cost_sd`` is given),
        ``log_likelihood``, ``observed_data``, ``fit_data`` (the fitted runs, dim ``run``).
        attrs: ``costs_json`` (the given verifier/drafter costs, s), ``cost_sd_json``.

    Raises
    ------
    ValueError
        When the runs table cannot be used (the message names the column and the fix), ``costs`` has
        experts, ``cost_sd`` names an unknown coefficient, or ``nuts_sampler`` is unknown.

    Examples
    --------
    >>> idata = fit_pyramid(runs, costs, random_seed=1)  # doctest: +SKIP
    """
    r = prepare_runs(runs)
    model = build_pyramid_model(r, costs, cost_sd=cost_sd, q_prior=q_prior)
    cols = [c for c in r.columns if r[c].dtype.kind in "biuf" or c in ("mode", "load_type", "source")]
    fit_ds = xr.Dataset({c: ("run", r[c].to_numpy()) for c in cols if c != "run_id"},
                        coords={"run": r["run_id"].astype(str).to_numpy()})
    idata = sample_posterior(model, draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                             random_seed=random_seed, nuts_sampler=nuts_sampler, target_accept=target_accept,
                             progressbar=progressbar, log_likelihood=True, groups={"fit_data": fit_ds},
                             attrs={"costs_json": json.dumps(_costs_dict(costs)),
                                    "cost_sd_json": json.dumps(cost_sd or {})})
    return idata


def diagnostics(idata: az.InferenceData) -> dict:
    """Convergence of the parameters (every posterior variable without a ``run`` dim):
    :func:`bayes_sd._stats.convergence`'s figures and verdict."""
    return convergence(idata, [v for v in idata.posterior.data_vars if "run" not in idata.posterior[v].dims])


def diagnostics_text(idata: az.InferenceData) -> str:
    """One line: converged or not, R-hat, ESS, divergences."""
    return convergence_text(diagnostics(idata))


def posterior_params(idata: az.InferenceData, *, max_draws: int | None = None, seed: int = 0) -> dict:
    """Flat posterior draws for the recommender: ``costs`` (ServiceCosts of arrays, s),
    ``qcosts`` (PyramidCosts of arrays, s), ``a_dq``, ``a_qv`` and ``a_dv`` (None without plain runs)."""
    post = idata.posterior.stack(sample=("chain", "draw"))
    n = post.sizes["sample"]
    idx = np.arange(n)
    if max_draws is not None and n > max_draws:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_draws, replace=False))
    qc = post["qual_cost_ms"].transpose("qcoef", "sample").values[:, idx] / 1e3
    acc = post["acceptance"]
    stages = list(acc.coords["stage"].values)
    a = acc.transpose("stage", "sample").values[:, idx]
    vals = {k: np.full(idx.size, v) for k, v in json.loads(idata.attrs["costs_json"]).items()}
    if "known_cost_ms" in post:
        kc = post["known_cost_ms"]
        for c in kc.coords["kcoef"].values:
            vals[str(c)] = kc.sel(kcoef=c).values[idx] / 1e3
    return {"costs": theory.ServiceCosts(**vals), "qcosts": PyramidCosts(q0=qc[0], q1=qc[1]),
            "a_dq": a[stages.index("dq")], "a_qv": a[stages.index("qv")],
            "a_dv": a[stages.index("dv")] if "dv" in stages else None}


def fitted_runs(idata: az.InferenceData, prob: float = 0.9) -> pd.DataFrame:
    """Per fitted run: observed mean latency (s) and the posterior mean and central ``prob``
    interval of the closed-form latency (s), with the run's mode and draft lengths."""
    lat = idata.posterior["latency_s"].stack(sample=("chain", "draw")).transpose("run", "sample").values
    fd = idata.fit_data
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    out = pd.DataFrame({"run_id": fd["run"].values, "mode": fd["mode"].values, "k_draft": fd["k_draft"].values,
                        "k_qual": fd["k_qual"].values, "load_type": fd["load_type"].values,
                        "observed_s": fd["latency_mean_s"].values, "predicted_s": lat.mean(axis=1),
                        "lo_s": np.quantile(lat, lo, axis=1), "hi_s": np.quantile(lat, hi, axis=1)})
    for col in ("rate_rps", "concurrency"):
        if col in fd:
            out[col] = fd[col].values
    return out
