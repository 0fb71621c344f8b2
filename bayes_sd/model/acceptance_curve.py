"""A small PyMC model of acceptance length versus draft length (batch-1 k-sweeps).

Data: one row per run with a drafter, a draft length ``k >= 1`` and the measured acceptance
length ``tau`` (tokens per verify iteration, bonus token included), e.g. the real EAGLE /
EAGLE-3 sweeps k = 2..7 on Llama-3.1-8B (:data:`EAGLE_K_SWEEP_SOURCE` in
``bayes_sd.datasets.load_eagle_bs1_runs()``).

Two forms (:data:`FORMS`), both from :func:`bayes_sd.theory.acceptance.tau_decaying`:

- ``"constant"``: one acceptance ``a`` per drafter at every position (``decay = 0``);
- ``"decaying"``: ``logit a_j = logit a1 - decay (j - 1)`` with ``a1`` and ``decay`` per drafter.

Observation: ``tau_obs ~ Normal(tau(k), sd)``, ``sd = sqrt((sigma_rel tau)^2 + resolution^2 / 12)``:
a relative noise learned from the data plus the known rounding of the published numbers.

Outputs are ``az.InferenceData`` with dims ``drafter`` and ``run``, a ``log_likelihood``
group (for ``az.loo`` / ``az.compare``), the fitted rows in a ``fit_data`` group and the
form in ``attrs["acceptance_form"]``.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayes_sd._stats import convergence
from bayes_sd.model.sampling import sample_posterior
from bayes_sd.theory.acceptance import tau_decaying

__all__ = ["FORMS", "EAGLE_K_SWEEP_SOURCE", "SYNTHETIC_SOURCE", "acceptance_table", "build_acceptance_model",
           "prior_predictive", "fit_acceptance_curve", "predict_tau", "diagnostics", "compare_forms",
           "holdout_eval", "simulate_sweep", "posterior_interval", "posterior_draws"]

FORMS = ("constant", "decaying")

#: ``source`` of the real batch-1 k-sweeps (vLLM issue #20780): EAGLE-1 and EAGLE-3, k = 2..7.
EAGLE_K_SWEEP_SOURCE = "vllm_issue20780_eagle_k_sweep"

#: ``source`` of sweeps made by :func:`simulate_sweep`.
SYNTHETIC_SOURCE = "synthetic:bayes_sd.acceptance_fit"

# ---- priors (why) -------------------------------------------------------------------------
# logit a1 ~ Normal(1, 1): trained drafters (EAGLE, MTP heads, small draft models) accept the
#   first draft token 60-90% of the time in published per-position metrics; median expit(1) =
#   0.73, 90% prior interval (0.34, 0.93) also admits weak drafters such as n-gram lookup.
A1_PRIOR = (1.0, 1.0)
# decay ~ Normal(0, 0.5) logit units per position: centred on the constant model, so any
#   decay comes from the data; sd 0.5 allows a log-odds drop of ~3 over 6 positions
#   (e.g. 0.8 -> 0.2), stronger than anything reported, and rising acceptance (decay < 0).
DECAY_PRIOR = (0.0, 0.5)
# sigma_rel ~ HalfNormal(0.03): a benchmark's tau averages thousands of verify steps
#   (sampling error well under 1%), plus run-to-run differences of the generated text
#   between k values; a few percent at most, 95% prior mass below 6%.
SIGMA_REL_PRIOR = 0.03
#: The decaying model samples the log-odds at position 1 + PIVOT (see build_acceptance_model);
#: measured on the real sweeps: posterior correlation with decay 0.97 at position 1, 0.98 at
#: position 3, about 0.6 at position 2 (ESS x2.5 at equal draws).
PIVOT = 1.0


# --------------------------------------------------------------------------- data
def acceptance_table(runs: pd.DataFrame, source: str | None = None, drafters=None) -> pd.DataFrame:
    """Rows of a canonical runs table that carry an acceptance length at ``k >= 1``.

    Returns columns ``run_id, source, drafter, k, tau`` (tokens), sorted by drafter and k.
    ``source`` / ``drafters`` keep only those; a drafter seen with several verifiers or
    datasets is refused (its acceptance differs between them).
    """
    need = ["run_id", "drafter", "k", "acceptance_length"]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {missing}. Fix: pass a canonical runs table "
                         "(bayes_sd.datasets.load_eagle_bs1_runs() or bayes_sd.traces.ingest)")
    df = runs.copy()
    if "source" not in df:
        df["source"] = "unknown"
    if source is not None:
        df = df[df["source"] == source]
    if drafters is not None:
        df = df[df["drafter"].isin(list(drafters))]
    df = df[(df["k"] > 0) & df["acceptance_length"].notna()]
    if df.empty:
        raise ValueError("no run with k >= 1 and an acceptance_length" + (f" from source {source!r}" if source else "")
                         + ". Fix: check the source / drafters filter or fill the acceptance_length column")
    for col in ("verifier", "dataset"):
        if col in df:
            n = df.groupby("drafter")[col].nunique(dropna=False)
            if (n > 1).any():
                raise ValueError(f"drafter(s) {list(n[n > 1].index)} appear with several values of {col!r}. "
                                 f"Fix: filter runs to one {col} (source= or a boolean mask) before fitting")
    tau, k = df["acceptance_length"].astype(float), df["k"].astype(float)
    bad = (tau < 1.0) | (tau > k + 1.0)
    if bad.any():
        raise ValueError(f"acceptance_length must lie in [1, k + 1] tokens; runs {df.loc[bad, 'run_id'].tolist()} "
                         "do not. Fix: acceptance_length counts the bonus token (vLLM 'mean acceptance length')")
    out = pd.DataFrame({"run_id": df["run_id"].astype(str), "source": df["source"].astype(str),
                        "drafter": df["drafter"].astype(str), "k": k, "tau": tau})
    return out.sort_values(["drafter", "k"]).reset_index(drop=True)


def simulate_sweep(truth: dict, ks=range(2, 8), sigma_rel: float = 0.005, resolution: float = 0.01,
                   seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC k-sweep: runs-like rows ``run_id, source, drafter, k, acceptance_length``.

    ``truth`` maps drafter -> (a1, decay); tau = ``tau_decaying(a1, decay, k)`` times a
    Normal(1, sigma_rel) error, rounded to ``resolution`` tokens like the published numbers.
    ``source`` is :data:`SYNTHETIC_SOURCE`.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for d, (a1, decay) in truth.items():
        for k in ks:
            tau = float(tau_decaying(a1, decay, float(k))) * (1.0 + sigma_rel * rng.standard_normal())
            if resolution > 0:
                tau = round(tau / resolution) * resolution
            tau = min(max(tau, 1.0), k + 1.0)
            rows.append({"run_id": f"synthetic-{d}-k{k}", "source": SYNTHETIC_SOURCE, "drafter": d,
                         "k": int(k), "acceptance_length": tau})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- model
def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}. Fix: form='constant' or form='decaying'")


def build_acceptance_model(table: pd.DataFrame, form: str = "decaying", resolution: float = 0.01) -> pm.Model:
    """PyMC model of ``tau`` versus ``k`` for the rows of :func:`acceptance_table`.

    ``resolution`` (tokens): rounding of the published acceptance lengths (0.01 for the
    real sweeps); it adds a known ``resolution / sqrt(12)`` floor to the noise sd.
    """
    _check_form(form)
    if not resolution >= 0:
        raise ValueError(f"resolution must be >= 0 tokens, got {resolution}")
    if table["run_id"].duplicated().any():
        dup = table.loc[table["run_id"].duplicated(), "run_id"].tolist()
        raise ValueError(f"run_id must be unique; repeated: {dup}. Fix: give each measurement its own run_id")
    drafters = sorted(table["drafter"].unique())
    idx = table["drafter"].map({d: i for i, d in enumerate(drafters)}).to_numpy()
    k = table["k"].to_numpy(float)
    coords = {"drafter": drafters, "run": table["run_id"].tolist()}
    with pm.Model(coords=coords) as model:
        if form == "decaying":
            # One decay per drafter, not pooled: two drafters cannot inform a between-drafter sd,
            # each sweep pins its own decay, and the real ones differ threefold (EAGLE-1 ~0.3,
            # EAGLE-3 ~0.1 per position): a shared decay would misfit both.
            decay = pm.Normal("decay", *DECAY_PRIOR, dims="drafter")
            # Sampled: the log-odds at position 1 + PIVOT given decay, which is the same joint prior
            # as logit a1 ~ Normal(A1_PRIOR) independent of decay, in a basis far less correlated
            # with decay than logit a1 itself (a k-sweep pins the early survival, not a1 alone).
            logit_mid = pm.Normal("logit_a_mid", A1_PRIOR[0] - PIVOT * decay, A1_PRIOR[1], dims="drafter")
            logit_a1 = pm.Deterministic("logit_a1", logit_mid + PIVOT * decay, dims="drafter")
            decay_run = decay[idx]
        else:
            logit_a1 = pm.Normal("logit_a1", *A1_PRIOR, dims="drafter")
            decay_run = pt.zeros(len(k))
        a1 = pm.Deterministic("a1", pm.math.invlogit(logit_a1), dims="drafter")
        tau = pm.Deterministic("tau", tau_decaying(a1[idx], decay_run, k, xp=pt), dims="run")
        # one noise scale for all rows: same benchmark, same rounding, same kind of measurement
        sigma_rel = pm.HalfNormal("sigma_rel", SIGMA_REL_PRIOR)
        sd = pt.sqrt((sigma_rel * tau) ** 2 + resolution**2 / 12.0)
        pm.Normal("tau_obs", mu=tau, sigma=sd, observed=table["tau"].to_numpy(float), dims="run")
    return model


def prior_predictive(table: pd.DataFrame, form: str = "decaying", draws: int = 500,
                     random_seed: int | None = None, resolution: float = 0.01) -> az.InferenceData:
    """Prior predictive draws of ``tau`` and ``tau_obs`` for the rows of ``table``."""
    model = build_acceptance_model(table, form, resolution)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        return pm.sample_prior_predictive(draws=draws, model=model, random_seed=random_seed)


def fit_acceptance_curve(runs: pd.DataFrame, form: str = "decaying", draws: int = 1000, tune: int = 1000,
                         chains: int = 4, random_seed: int | None = None, *, resolution: float = 0.01,
                         target_accept: float = 0.9, nuts_sampler: str = "nutpie",
                         progressbar: bool = False) -> az.InferenceData:
    """Fit one form to a runs table (canonical runs, or the output of :func:`acceptance_table`).

    Returns ``az.InferenceData`` with posterior (``a1``, ``decay`` when decaying,
    ``sigma_rel``, ``tau`` per run), ``log_likelihood``, ``observed_data``, a ``fit_data``
    group (the fitted rows) and attrs ``acceptance_form``, ``resolution``.
    """
    _check_form(form)
    table = runs if {"tau", "drafter", "k", "run_id"} <= set(runs.columns) else acceptance_table(runs)
    model = build_acceptance_model(table, form, resolution)
    fit_ds = xr.Dataset({c: ("run", table[c].to_numpy()) for c in ("drafter", "k", "tau", "source")},
                        coords={"run": table["run_id"].to_numpy()})
    idata = sample_posterior(model, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                             nuts_sampler=nuts_sampler, target_accept=target_accept, progressbar=progressbar,
                             log_likelihood=True, groups={"fit_data": fit_ds},
                             attrs={"acceptance_form": form, "resolution": float(resolution)})
    return idata


# --------------------------------------------------------------------------- posterior use
def posterior_draws(idata: az.InferenceData, name: str) -> xr.DataArray:
    """Posterior of ``name`` with chains and draws stacked into a leading ``sample`` dim."""
    return idata.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...)


def predict_tau(idata: az.InferenceData, drafter: str, k, noise: bool = False, seed: int = 0) -> np.ndarray:
    """Posterior draws of the acceptance length (tokens) of ``drafter`` at draft length(s) ``k``
    (tokens, >= 0; any k, including ones not measured: beyond the data it is extrapolation).

    Returns shape ``(n_draws,)`` for a scalar ``k``, ``(n_draws, len(k))`` for a sequence.
    ``noise=True`` adds the observation noise (predictive draws of a new measurement).
    """
    form = idata.attrs.get("acceptance_form")
    _check_form(form)
    drafters = list(idata.posterior["drafter"].values)
    if drafter not in drafters:
        raise ValueError(f"drafter {drafter!r} was not fitted; fitted drafters: {drafters}. Fix: pass one of them")
    k_arr = np.atleast_1d(np.asarray(k, float))
    if np.any(k_arr < 0):
        raise ValueError(f"k (draft length) must be >= 0, got {k_arr.tolist()}")
    a1 = posterior_draws(idata, "a1").sel(drafter=drafter).to_numpy()[:, None]
    decay = posterior_draws(idata, "decay").sel(drafter=drafter).to_numpy()[:, None] if form == "decaying" else 0.0
    tau = tau_decaying(a1, decay, k_arr[None, :])
    if noise:
        sigma = posterior_draws(idata, "sigma_rel").to_numpy()[:, None]
        res = float(idata.attrs.get("resolution", 0.0))
        sd = np.sqrt((sigma * tau) ** 2 + res**2 / 12.0)
        tau = tau + sd * np.random.default_rng(seed).standard_normal(tau.shape)
    return tau[:, 0] if np.ndim(k) == 0 else tau


def posterior_interval(idata: az.InferenceData, name: str, prob: float = 0.9) -> pd.DataFrame:
    """Posterior mean and central ``prob`` interval of a parameter: one row per drafter for
    ``a1`` / ``decay``, one row named ``name`` for a scalar such as ``sigma_rel``."""
    x = posterior_draws(idata, name)
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    stats = {"mean": x.mean("sample"), f"q{lo:.0%}": x.quantile(lo, "sample").drop_vars("quantile"),
             f"q{hi:.0%}": x.quantile(hi, "sample").drop_vars("quantile")}
    if x.ndim == 1:
        return pd.DataFrame({c: [float(v)] for c, v in stats.items()}, index=pd.Index([name]))
    return pd.DataFrame({c: v.to_series() for c, v in stats.items()})


def diagnostics(idata: az.InferenceData) -> dict:
    """Convergence of the free parameters: :func:`bayes_sd._stats.convergence`'s figures and verdict."""
    return convergence(idata, [v for v in ("logit_a1", "logit_a_mid", "decay", "sigma_rel") if v in idata.posterior])


def compare_forms(fits: dict) -> pd.DataFrame:
    """``az.compare`` (PSIS-LOO, elpd scale) of fits keyed by form name; best first."""
    if len(fits) < 2:
        raise ValueError("compare_forms needs at least two fits, e.g. {'constant': idata_c, 'decaying': idata_d}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Pareto.*")  # reported in the 'warning' column
        return az.compare(fits, ic="loo")


def holdout_eval(runs: pd.DataFrame, holdout_k: int | None = None, forms=FORMS, prob: float = 0.9,
                 **fit_kw) -> tuple[pd.DataFrame, dict]:
    """Fit each form on ``k < holdout_k`` and predict the measured tau at ``holdout_k``.

    ``holdout_k`` defaults to the largest k in the data. Returns ``(table, fits)``: one row
    per (form, drafter) with the observed tau, posterior mean prediction, error (mean -
    observed, tokens), the central ``prob`` predictive interval of a new measurement and
    whether it covers; ``fits`` maps form -> training-fit InferenceData.
    """
    table = runs if "tau" in runs.columns else acceptance_table(runs)
    holdout_k = int(table["k"].max()) if holdout_k is None else int(holdout_k)
    train, test = table[table["k"] < holdout_k], table[table["k"] == holdout_k]
    if test.empty or train.empty:
        raise ValueError(f"holdout_k={holdout_k} leaves an empty training or test set "
                         f"(k present: {sorted(table['k'].unique())}). "
                         "Fix: choose a k that is measured, not the smallest")
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rows, fits = [], {}
    for form in forms:
        fits[form] = idata = fit_acceptance_curve(train, form, **fit_kw)
        for _, r in test.iterrows():
            mean = predict_tau(idata, r["drafter"], holdout_k).mean()
            pred = predict_tau(idata, r["drafter"], holdout_k, noise=True)
            q_lo, q_hi = np.quantile(pred, [lo, hi])
            rows.append({"form": form, "drafter": r["drafter"], "k": holdout_k, "observed": r["tau"],
                         "predicted": mean, "error": mean - r["tau"], "lo": q_lo, "hi": q_hi,
                         "covered": bool(q_lo <= r["tau"] <= q_hi)})
    return pd.DataFrame(rows), fits
