"""``LatencyModel``: the user-facing hierarchical latency model (fit, diagnose, predict, save, load).

Shaped after pymc-marketing's model builders: a configuration (priors) loaded by name from
``models/``, ``fit`` on a canonical run table, predictions as ``xr.Dataset``, and one netCDF
file holding the posterior, the training runs (group ``fit_data``) and the configuration,
checked by an id on load. Convergence and chain agreement come from the mixin
:mod:`.diagnostics`, saving and loading from :mod:`.persistence`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bayes_sd.model.build import build_model
from bayes_sd.model.conditions import (
    CONDITION_COLUMNS,
    condition_grid,
    validate_conditions,
)
from bayes_sd.model.config import config_id, load_config, merge_config, sampling_settings
from bayes_sd.model.diagnostics import ConvergenceWarning, PosteriorDiagnostics
from bayes_sd.model.fit_data import (
    LOAD_TRENDS,
    MOE_FORMS,
    OPEN_LOOP_RATES,
    SATURATED_RUNS,
    FitData,
    configuration_effects,
    draft_share,
    prepare_fit_data,
)
from bayes_sd.model.load_range import load_offset
from bayes_sd.model.persistence import DifferentModelError, SavedPosterior
from bayes_sd.model.predict import condition_draws, stack_posterior, summarise
from bayes_sd.model.sampling import sample_until_converged, sampled_attempts
from bayes_sd.traces.schema import NO_DRAFTER
from bayes_sd.traces.validate import validate_models, validate_runs

__all__ = ["LatencyModel", "DifferentModelError", "ConvergenceWarning", "CONDITION_COLUMNS"]

log = logging.getLogger(__name__)

#: run-level deterministics recomputed on demand rather than stored with every draw
_RUN_LEVEL = ("latency_s", "saturation_rps", "tail_shape")


class LatencyModel(PosteriorDiagnostics, SavedPosterior):
    """Hierarchical Bayesian model of speculative-decoding latency under load.

    Parameters
    ----------
    config : str, pathlib.Path or dict, default "default"
        Name of a configuration in ``models/`` (``"default"``), a path to a ``.toml`` file,
        or a configuration dict.
    overrides : dict, optional
        Changes to the configuration, e.g. ``{"priors": {"mu_v0": {"mu": 3.0}}}``.

    Raises
    ------
    ModelConfigError
        When the configuration is not found, is not valid TOML, or an override names an unknown prior.

    Examples
    --------
    >>> from bayes_sd.datasets import load_b200_runs
    >>> model = LatencyModel().fit(load_b200_runs(), draws=500, tune=500)  # doctest: +SKIP
    >>> model.predict_table(conditions)                                      # doctest: +SKIP
    """

    model_type = "bayes_sd.LatencyModel"
    version = "1"

    def __init__(self, config: str | Path | dict = "default", overrides: dict | None = None):
        self.config = merge_config(load_config(config), overrides)
        self.runs: pd.DataFrame | None = None
        self.models: pd.DataFrame | None = None
        self.fit_data: FitData | None = None
        self.model: pm.Model | None = None
        self.idata: az.InferenceData | None = None
        self.sampler_settings: dict = {}

    # ------------------------------------------------------------------ building and fitting
    @property
    def id(self) -> str:
        """16 hex digits identifying the configuration and model version."""
        return config_id(self.config, self.version)

    @property
    def open_loop_rate(self) -> str:
        """Which rate of an open-loop run the model takes: ``"offered"`` (default) or ``"achieved"``
        (``[model] open_loop_rate``; see :func:`bayes_sd.model.fit_data.arrival_rate`)."""
        return self.config.get("model", {}).get("open_loop_rate", OPEN_LOOP_RATES[0])

    def build(self, runs: pd.DataFrame, models: pd.DataFrame | None = None, *,
              observed_as_data: bool = False) -> pm.Model:
        """Validate ``runs`` (and ``models``), select the steady-state runs and build the PyMC model.

        Parameters
        ----------
        runs : pandas.DataFrame
            Canonical runs table (:data:`bayes_sd.traces.RUNS`: seconds, requests/s, tokens).
        models : pandas.DataFrame, optional
            Canonical MODELS table (:data:`bayes_sd.traces.MODELS`): sizes of verifiers and drafters,
            experts of MoE verifiers.
        observed_as_data : bool, default False
            Hold the observations in ``pm.Data`` containers (``<variable>_data``), so a compiled
            model can be refitted to other observations of the same runs (simulation-based calibration).

        Returns
        -------
        pymc.Model
            The model, also kept as ``self.model`` (with ``self.runs``, ``self.models`` and ``self.fit_data``).

        Raises
        ------
        TraceError
            When ``runs`` or ``models`` is not a valid canonical table.
        ValueError
            When no run is left to fit (every run saturated or without latency), or ``models`` lacks a
            row the configuration's ``drafter_predictors`` need.
        """
        self.runs = validate_runs(runs, "runs")
        self.models = None if models is None else validate_models(models, "models")
        self.fit_data = self._prepare(self.runs, self.models)
        self.model = build_model(self.fit_data, self.config, observed_as_data=observed_as_data)
        return self.model

    def _prepare(self, runs: pd.DataFrame, models: pd.DataFrame | None) -> FitData:
        opts = self.config.get("model", {})
        fd = prepare_fit_data(runs, models, opts.get("drafter_predictors", []), self.open_loop_rate,
                              opts.get("saturated_runs", SATURATED_RUNS[0]))
        if opts.get("verifier_form") in MOE_FORMS and not fd.coords["moe_verifier"]:
            listed = set() if models is None else set(models["name"])
            unknown = [v for v in fd.coords["verifier"] if v not in listed]
            # a verifier the models table lists without experts is dense by the user's word: nothing to warn of
            (log.warning if unknown else log.info)(
                f"verifier_form = {opts['verifier_form']!r} but no fitted verifier has experts in the models table: "
                "every verifier is fitted dense" + (f" ({', '.join(unknown)} not in it: give a models table with "
                                                    "their experts if they are MoE)" if unknown else ""))
        spec = fd.runs["k"].to_numpy() > 0
        blind = spec & ~np.isin(np.arange(fd.n_runs), fd.obs.get("tau", (np.array([], int),))[0])
        blind &= fd.x["acceptance_replayed"] == 0  # counted once, at the run they repeat
        if blind.any():
            log.warning(f"{int(blind.sum())} of {int(spec.sum())} speculative runs carry no acceptance (no "
                        "acceptance_length, accepted_tokens with num_drafts or draft_tokens): their acceptance is "
                        f"inferred from latency and the population, e.g. {fd.runs['run_id'].to_numpy()[blind][0]}")
        if "decay" in fd.obs and opts.get("acceptance_form", "constant") != "decaying":
            log.warning(f"{len(fd.obs['decay'][0])} runs carry per-position acceptance, which this configuration "
                        f"({self.config.get('name')!r}, constant acceptance per position) does not use: fit "
                        "moe_roofline_per_position (or another acceptance_form = 'decaying' configuration) to learn "
                        "how acceptance falls with draft position from them")
        return fd

    def prior_predictive(self, runs: pd.DataFrame, draws: int = 500, random_seed=None,
                         models: pd.DataFrame | None = None) -> az.InferenceData:
        """Prior predictive draws of every observed quantity (and run latencies) for ``runs``.

        Parameters
        ----------
        runs : pandas.DataFrame
            Canonical runs table, as in :meth:`build`.
        draws : int, default 500
            Number of prior draws.
        random_seed : int, optional
            Seed of the draws.
        models : pandas.DataFrame, optional
            Canonical MODELS table, as in :meth:`build`.

        Returns
        -------
        arviz.InferenceData
            Groups ``prior`` (parameters and run latencies, s) and ``prior_predictive`` (the observed
            quantities), with ``observed_data``.

        Raises
        ------
        TraceError, ValueError
            As :meth:`build`.
        """
        model = self.build(runs, models)
        return pm.sample_prior_predictive(draws=draws, model=model, random_seed=random_seed)

    def fit(self, runs: pd.DataFrame, *, models: pd.DataFrame | None = None, draws: int | None = None,
            tune: int | None = None, chains: int | None = None, cores: int | None = None,
            nuts_sampler: str = "nutpie", target_accept: float | None = None, random_seed: int | None = None,
            progressbar: bool = True, low_rank_mass_matrix: bool = True, max_tree_depth: int | None = None,
            retries: int = 0, retry_time_limit: float | None = None, start: str | None = None) -> LatencyModel:
        """Fit the model to a canonical run table by NUTS; returns ``self``.

        Saturated runs are excluded from the likelihood (see ``fit_data.excluded``). The sampling
        settings left at None are those that converge the configuration
        (:func:`bayes_sd.model.config.sampling_settings`: its ``[sampling]`` table, else 2 chains x
        (700 tune + 3500 draws) at target acceptance 0.9, trees up to depth 10, jittered starts).

        Parameters
        ----------
        runs : pandas.DataFrame
            Canonical runs table (:data:`bayes_sd.traces.RUNS`: seconds, requests/s, tokens).
        models : pandas.DataFrame, optional
            MODELS table (sizes of verifiers/drafters, experts of MoE verifiers), used by the variants
            that need it (``models/moe.toml``, ``models/drafter_design.toml``) and kept with the
            posterior for prediction.
        draws : int, optional
            Posterior draws per chain, after warm-up.
        tune : int, optional
            Warm-up (tuning) steps per chain, discarded.
        chains : int, optional
            Number of chains.
        cores : int, optional
            Chains run in parallel (default: the number of chains, at most the CPUs).
        nuts_sampler : {"nutpie", "pymc"}, default "nutpie"
            ``"nutpie"`` (compiled with numba) or ``"pymc"``.
        target_accept : float, optional
            NUTS target acceptance probability, in (0, 1).
        random_seed : int, optional
            Seed of the sampler (a fresh one when None; the seed used is in ``sampler_settings``).
        progressbar : bool, default True
            Show the sampler's progress bar.
        low_rank_mass_matrix : bool, default True
            nutpie only: nutpie's low-rank mass-matrix adaptation, for the correlations left between
            grand means and the effects that add to them (``bench/fit_speed.py``: with hierarchical
            centring, trees of depth 4 after warm-up).
        max_tree_depth : int, optional
            NUTS trees stop at ``2**max_tree_depth - 1`` leapfrog steps (the samplers' own default is 10).
        start : {"jittered", "plausible"}, optional
            nutpie only: where chains start: nutpie's jittered prior centres, or ``"plausible"``:
            a start whose log density is not finite or below -50 nats per observed value is replaced
            by the best of 20 jittered points moved 10 L-BFGS steps uphill
            (:func:`bayes_sd.model.sampling.start_near_the_data`; for whole fleets, whose jittered
            starts can leave both chains stuck past saturation).
            A lower cap mostly trims the early warm-up, before the mass matrix is adapted, where trees
            run to the cap (``bench/fit_speed.py --max-tree-depth``).
        retries : int, default 0
            When the posterior has not converged, sample again up to this many times: more chains
            (pooled with the earlier ones) where only the effective sample size fell short, else a
            longer warm-up, a higher target acceptance and the next seed; keeps the first attempt or
            pool that converges, else the best attempt (the policy:
            :func:`bayes_sd.model.sampling.sample_until_converged`); every attempt is listed in
            :attr:`fit_attempts`. ``bayes-sd fit`` retries twice.
        retry_time_limit : float, optional
            Seconds: no retry starts once the attempts have sampled this long in all (a started one runs
            to its end); None (the default) for no limit. A retry of a large sweep (hundreds of runs, tens
            of pairs) at trees up to depth 10 can take tens of minutes; :meth:`diagnostics_text` says
            when the limit stopped the retries.

        Returns
        -------
        LatencyModel
            ``self``, fitted: ``idata`` holds the posterior, the training runs (group ``fit_data``)
            and the configuration.

        Raises
        ------
        TraceError, ValueError
            As :meth:`build`; ValueError also for an unknown ``nuts_sampler``.

        Warns
        -----
        ConvergenceWarning
            When R-hat, ESS or divergences say the posterior is not to be trusted yet
            (:meth:`check_convergence`).

        Examples
        --------
        >>> model = LatencyModel().fit(load_b200_runs(), draws=500, tune=500, random_seed=1)  # doctest: +SKIP
        """
        settings = sampling_settings(self.config, draws=draws, tune=tune, chains=chains, target_accept=target_accept,
                                     max_tree_depth=max_tree_depth, start=start)
        draws, tune, chains = settings["draws"], settings["tune"], settings["chains"]
        target_accept, max_tree_depth, start = settings["target_accept"], settings["max_tree_depth"], settings["start"]
        model = self.build(runs, models)
        self.idata, attempts = sample_until_converged(
            model, retries=retries, draws=draws, tune=tune, chains=chains, cores=cores, nuts_sampler=nuts_sampler,
            target_accept=target_accept, random_seed=random_seed, progressbar=progressbar,
            low_rank_mass_matrix=low_rank_mass_matrix, max_tree_depth=max_tree_depth, start=start,
            var_names=self._stored_var_names(model), groups=self._data_groups(), attrs=self._attrs(),
            retry_time_limit=retry_time_limit)
        self.idata.attrs["fit_attempts"] = json.dumps(attempts, default=float)
        sampled = sampled_attempts(attempts)
        if retry_time_limit is not None and not attempts[-1]["converged"] and len(sampled) < retries + 1:
            self.idata.attrs["fit_retries_stopped"] = (
                f"no further retry: the retry time limit ({retry_time_limit:.0f} s) was reached after "
                f"{sum(a['seconds'] for a in sampled):.0f} s of sampling")
        self.sampler_settings = json.loads(self.idata.attrs["sampler"])
        self._remember_diagnostics(next(a for a in attempts if a["kept"]))
        self.check_convergence()
        return self

    @staticmethod
    def _stored_var_names(model: pm.Model) -> list[str]:
        free = [v.name for v in model.free_RVs]
        det = [v.name for v in model.deterministics if v.name not in _RUN_LEVEL]
        return free + det

    # ------------------------------------------------------------------ diagnostics
    def _require_fit(self) -> None:
        if self.idata is None:
            raise ValueError("the model is not fitted. Fix: call fit(runs) or LatencyModel.load(path)")

    # ------------------------------------------------------------------ prediction
    def predict_draws(self, conditions: pd.DataFrame, *, max_draws: int | None = 1000, seed: int = 0,
                      models: pd.DataFrame | None = None, acceptance=None):
        """Posterior draws (sample, condition) for each condition row (see ``predict.Draws``).

        Parameters
        ----------
        conditions : pandas.DataFrame
            One row per condition, with the canonical run columns :data:`CONDITION_COLUMNS`
            (``verifier``, ``hardware``, ``k``, ``prompt_len`` and ``output_len`` in tokens, ``load_type``
            and ``rate_rps`` in requests/s or ``concurrency`` in streams; ``drafter`` defaults to
            ``'none'``, ``dataset`` to ``'unseen'``).
        max_draws : int or None, default 1000
            Posterior draws used, a random subset of them (None: all).
        seed : int, default 0
            Seed of the subset and of the effects drawn for levels never seen in the fit.
        models : pandas.DataFrame, optional
            Extra MODELS rows (e.g. a drafter never measured, for the drafter-design variant) added to
            the ones the model was fitted with (an extra row replaces a fitted one of the same name).
        acceptance : array-like of float, optional
            A per-position acceptance probability per condition (NaN: the model's) replacing the
            model's, e.g. measured offline for a drafter never served.

        Returns
        -------
        bayes_sd.model.predict.Draws
            Arrays (sample, condition): ``latency``, ``latency_pred`` (a new run's mean; of a run of
            ``n_requests`` requests where the conditions give that column, which in open loop near
            capacity is below the steady state: a run ends before its backlog builds up),
            ``latency_p50``/``latency_p90``/``latency_p99``, ``ttft``, ``latency_k0`` (s), ``tpot``
            (s/token), ``saturation_rps`` (requests/s), ``batch_size`` (requests in flight) and
            ``acceptance_length`` (tokens per verify step).

        Raises
        ------
        ValueError
            When the model is not fitted, or a condition lacks a column or a load.
        """
        self._require_fit()
        post = stack_posterior(self.idata.posterior, max_draws=max_draws, seed=seed)
        return self._draws(post, validate_conditions(conditions), seed, models, acceptance)

    def _draws(self, post: dict, conditions: pd.DataFrame, seed: int, models: pd.DataFrame | None = None,
               acceptance=None):
        return condition_draws(post, self.config, self.fit_data.coords, conditions, seed=seed,
                               models=self.models if models is None else _merge_models(self.models, models),
                               acceptance=acceptance, fitted_drafters=self.fit_data.drafter_table(),
                               draft_share=draft_share(conditions, self.fit_data.runs),
                               load_offsets=self._load_offsets(conditions))

    def _load_offsets(self, conditions: pd.DataFrame) -> dict[str, np.ndarray] | None:
        """Per load trend, the conditions' log-load offsets from their configuration's (server's) fitted
        loads, then those of the same conditions without speculation (``load_range.load_offset``); None
        for a model without load trends."""
        trends = {t: by for t, by in LOAD_TRENDS.items() if t in configuration_effects(self.config)}
        if not trends:
            return None
        k0, runs = conditions.assign(k=0, drafter=NO_DRAFTER), self.fit_data.runs
        return {t: np.concatenate([load_offset(conditions, runs, by), load_offset(k0, runs, by)])
                for t, by in trends.items()}

    def predict(self, conditions: pd.DataFrame, *, max_draws: int | None = 1000, seed: int = 0,
                models: pd.DataFrame | None = None, acceptance=None) -> xr.Dataset:
        """Posterior predictive summaries per condition: an ``xr.Dataset`` with dim ``condition``.

        Parameters
        ----------
        conditions : pandas.DataFrame
            One row per condition, as in :meth:`predict_draws`.
        max_draws : int or None, default 1000
            Posterior draws used, a random subset of them (None: all).
        seed : int, default 0
            Seed of the subset and of the effects drawn for unseen levels.
        models : pandas.DataFrame, optional
            As in :meth:`predict_draws`.
        acceptance : array-like of float, optional
            As in :meth:`predict_draws`.

        Returns
        -------
        xarray.Dataset
            Dim ``condition``, with the condition columns as coordinates on it. Variables: mean latency
            (``latency_mean_s`` and the 5/50/95% quantiles ``latency_q05_s``, ``latency_q50_s``,
            ``latency_q95_s``, s), the predictive interval of a new run's mean (of ``n_requests`` requests,
            with their sampling error inflated by queueing, and near capacity the backlog such a run can
            build, where the conditions give it; ``latency_pred_q05_s`` ..
            ``latency_pred_q95_s``, s), per-request ``latency_p50_s``/``latency_p90_s``/``latency_p99_s``
            (s), ``ttft_s`` (s), ``tpot_s`` (s/token), speedup versus k = 0 with its interval
            (``speedup_vs_k0``, ``speedup_q05``, ``speedup_q95``), P(speculation is slower)
            (``p_slower_than_k0``), saturation rate (``saturation_rps`` and its interval, requests/s),
            P(saturated) (``p_saturated``), ``batch_size`` (requests in flight) and ``acceptance_length``
            (tokens per verify step).

        Raises
        ------
        ValueError
            When the model is not fitted, or a condition lacks a column or a load.

        Examples
        --------
        >>> model.predict(conditions)["latency_mean_s"]  # doctest: +SKIP
        """
        cond = validate_conditions(conditions)
        return summarise(self.predict_draws(cond, max_draws=max_draws, seed=seed, models=models,
                                            acceptance=acceptance), cond)

    def predict_table(self, conditions: pd.DataFrame, **kw) -> pd.DataFrame:
        """``predict`` as a DataFrame: the condition columns followed by the predictions.

        Parameters
        ----------
        conditions : pandas.DataFrame
            One row per condition, as in :meth:`predict_draws`.
        **kw
            ``max_draws``, ``seed``, ``models``, ``acceptance``: passed to :meth:`predict`.

        Returns
        -------
        pandas.DataFrame
            One row per condition: the condition columns, then the variables of :meth:`predict`
            (``latency_mean_s``, ``latency_p90_s``, ``ttft_s`` in s, ``speedup_vs_k0``,
            ``saturation_rps`` in requests/s, ...).

        Raises
        ------
        ValueError
            As :meth:`predict`.
        """
        ds = self.predict(conditions, **kw)
        return ds.to_dataframe().reset_index(drop=True)

    def predict_grid(self, *, verifier: str, drafter: str, hardware: str, dataset: str, ks, prompt_len: float,
                     output_len: float, rates=None, concurrencies=None, **kw) -> xr.Dataset:
        """Predictions on a (k, load) grid: an ``xr.Dataset`` with dims ``k`` and ``rate_rps`` or ``concurrency``.

        Parameters
        ----------
        verifier : str
            The verifier model.
        drafter : str
            The pair's drafter; rows with ``k = 0`` get ``drafter = 'none'``.
        hardware, dataset : str
            The accelerator and the workload.
        ks : iterable of int
            Draft lengths (0 = no speculation).
        prompt_len, output_len : float
            Mean prompt and output length, tokens.
        rates : array-like of float, optional
            Open-loop request rates, requests/s.
        concurrencies : array-like of float, optional
            Closed-loop streams in flight; give exactly one of ``rates`` and ``concurrencies``.
        **kw
            ``max_draws``, ``seed``, ``models``, ``acceptance``: passed to :meth:`predict`.

        Returns
        -------
        xarray.Dataset
            The variables of :meth:`predict` on dims ``k`` and ``rate_rps`` (requests/s) or
            ``concurrency``.

        Raises
        ------
        ValueError
            Unless exactly one of ``rates`` and ``concurrencies`` is given and every load is a positive
            finite number; when the model is not fitted.

        Examples
        --------
        >>> model.predict_grid(verifier="Qwen/Qwen3.8-27B", drafter="dspark", hardware="B200", dataset="HumanEval",
        ...                    ks=range(8), prompt_len=150, output_len=500, concurrencies=[1, 8, 32])  # doctest: +SKIP
        """
        grid, load_col, _ = condition_grid(verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset,
                                           ks=ks, prompt_len=prompt_len, output_len=output_len, rates=rates,
                                           concurrencies=concurrencies)
        ds = self.predict(grid, **kw)
        ds = ds.drop_vars([c for c in ds.coords if c not in ("k", load_col)])
        return ds.set_index(condition=["k", load_col]).unstack("condition")

    def sample_posterior_predictive(self, random_seed=None, extend_idata: bool = True) -> az.InferenceData:
        """Replicated observations for the training runs (posterior predictive check).

        Parameters
        ----------
        random_seed : int, optional
            Seed of the draws.
        extend_idata : bool, default True
            Replace the ``posterior_predictive`` and ``observed_data`` groups of ``self.idata`` by the new ones.

        Returns
        -------
        arviz.InferenceData
            Groups ``posterior_predictive`` (one draw of every observed quantity per posterior draw) and
            ``observed_data``.

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        self._require_fit()
        if self.model is None:
            self.model = build_model(self.fit_data, self.config)
        pp = pm.sample_posterior_predictive(self.idata, model=self.model, random_seed=random_seed,
                                            extend_inferencedata=False, progressbar=False)
        if extend_idata:
            for group in ("posterior_predictive", "observed_data"):
                if group in self.idata.groups():
                    delattr(self.idata, group)
            self.idata.extend(pp)
        return pp

    def loo(self, var_name: str = "latency_obs", pointwise: bool = True):
        """PSIS-LOO (``az.loo``) of the observations ``var_name`` (default: run-mean latencies).

        Two configurations fitted to the same runs compare with ``az.compare({...})`` on the
        ``log_likelihood`` this adds to ``idata``.

        Parameters
        ----------
        var_name : str, default "latency_obs"
            The observed variable whose pointwise log-likelihood is used.
        pointwise : bool, default True
            Also return the pointwise values (``loo_i``, ``pareto_k``).

        Returns
        -------
        arviz.ELPDData
            ``elpd_loo``, its standard error ``se``, ``p_loo`` and, when ``pointwise``, ``loo_i`` and
            the Pareto shapes ``pareto_k``.

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        self._require_fit()
        if self.model is None:
            self.model = build_model(self.fit_data, self.config)
        if "log_likelihood" not in self.idata.groups() or var_name not in self.idata.log_likelihood:
            ll = pm.compute_log_likelihood(self.idata, model=self.model, var_names=[var_name],
                                           extend_inferencedata=False, progressbar=False)  # an xr.Dataset
            if "log_likelihood" in self.idata.groups():
                self.idata.log_likelihood[var_name] = ll[var_name]
            else:
                self.idata.add_groups({"log_likelihood": ll})
        return az.loo(self.idata, var_name=var_name, pointwise=pointwise)

# ---------------------------------------------------------------------- helpers
def _merge_models(fitted: pd.DataFrame | None, extra: pd.DataFrame) -> pd.DataFrame:
    """Fitted MODELS rows plus ``extra`` ones (validated; an extra row replaces a fitted one of the same name)."""
    extra = validate_models(extra, "models")
    if fitted is None:
        return extra
    return pd.concat([fitted[~fitted["name"].isin(extra["name"])], extra], ignore_index=True)
