"""``LatencyModel``: the user-facing hierarchical latency model (fit, diagnose, predict, save, load).

Shaped after pymc-marketing's model builders: a configuration (priors) loaded by name from
``models/``, ``fit`` on a canonical run table, predictions as ``xr.Dataset``, and one netCDF
file holding the posterior, the training runs (group ``fit_data``) and the configuration,
checked by an id on load.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bayes_sd import __version__
from bayes_sd.model.build import build_model
from bayes_sd.model.config import config_id, load_config, merge_config
from bayes_sd.model.fit_data import MOE_FORMS, OPEN_LOOP_RATES, FitData, prepare_fit_data
from bayes_sd.model.predict import condition_draws, stack_posterior, summarise
from bayes_sd.traces.validate import validate_models, validate_runs

__all__ = ["LatencyModel", "DifferentModelError", "ConvergenceWarning", "CONDITION_COLUMNS"]

log = logging.getLogger(__name__)

#: the canonical run columns that describe a condition to predict
CONDITION_COLUMNS = ["verifier", "drafter", "hardware", "dataset", "k", "prompt_len", "output_len", "load_type",
                     "rate_rps", "concurrency"]
#: run-level deterministics recomputed on demand rather than stored with every draw
_RUN_LEVEL = ("latency_s", "saturation_rps", "tail_shape")


class DifferentModelError(ValueError):
    """A saved posterior does not match the model that tries to load it."""


class ConvergenceWarning(UserWarning):
    """R-hat, effective sample size or divergences say the posterior is not to be trusted yet."""


class LatencyModel:
    """Hierarchical Bayesian model of speculative-decoding latency under load.

    Parameters
    ----------
    config:
        Name of a configuration in ``models/`` (``"default"``), a path to a ``.toml`` file,
        or a configuration dict.
    overrides:
        Changes to the configuration, e.g. ``{"priors": {"mu_v0": {"mu": 3.0}}}``.

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

    def build(self, runs: pd.DataFrame, models: pd.DataFrame | None = None) -> pm.Model:
        """Validate ``runs`` (and ``models``), select the steady-state runs and build the PyMC model."""
        self.runs = validate_runs(runs, "runs")
        self.models = None if models is None else validate_models(models, "models")
        self.fit_data = self._prepare(self.runs, self.models)
        self.model = build_model(self.fit_data, self.config)
        return self.model

    def _prepare(self, runs: pd.DataFrame, models: pd.DataFrame | None) -> FitData:
        opts = self.config.get("model", {})
        fd = prepare_fit_data(runs, models, opts.get("drafter_predictors", []), self.open_loop_rate)
        if opts.get("verifier_form") in MOE_FORMS and not fd.coords["moe_verifier"]:
            log.warning(f"verifier_form = {opts['verifier_form']!r} but no fitted verifier has experts in the "
                        "models table: every verifier is fitted dense")
        return fd

    def prior_predictive(self, runs: pd.DataFrame, draws: int = 500, random_seed=None,
                         models: pd.DataFrame | None = None) -> az.InferenceData:
        """Prior predictive draws of every observed quantity (and run latencies) for ``runs``."""
        model = self.build(runs, models)
        return pm.sample_prior_predictive(draws=draws, model=model, random_seed=random_seed)

    def fit(self, runs: pd.DataFrame, *, models: pd.DataFrame | None = None, draws: int = 1000,
            tune: int = 1000, chains: int = 4, cores: int | None = None, nuts_sampler: str = "nutpie",
            target_accept: float = 0.9, random_seed: int | None = None, progressbar: bool = True,
            low_rank_mass_matrix: bool = True, max_tree_depth: int = 10) -> LatencyModel:
        """Fit the model to a canonical run table by NUTS; returns ``self``.

        ``nuts_sampler``: ``"nutpie"`` (default; compiled with numba) or ``"pymc"``.
        ``models`` (MODELS table: sizes of verifiers/drafters, experts of MoE verifiers) is used by
        the variants that need it (``models/moe.toml``, ``models/drafter_design.toml``) and kept
        with the posterior for prediction.
        ``low_rank_mass_matrix`` (nutpie only, default on): nutpie's low-rank mass-matrix
        adaptation, for the correlations left between grand means and the effects that add to
        them (``bench/fit_speed.py``: with hierarchical centring, trees of depth 4 after warm-up).
        ``max_tree_depth``: NUTS trees stop at ``2**max_tree_depth - 1`` leapfrog steps (10, the
        samplers' default). A lower cap mostly trims the early warm-up, before the mass matrix is
        adapted, where trees run to the cap (``bench/fit_speed.py --max-tree-depth``).
        Saturated runs are excluded from the likelihood (see ``fit_data.excluded``).
        """
        model = self.build(runs, models)
        names = self._stored_var_names(model)
        cores = cores or min(chains, os.cpu_count() or 1)
        seed = int(np.random.default_rng(random_seed).integers(2**31)) if random_seed is None else random_seed
        if nuts_sampler == "nutpie":
            import nutpie

            # nutpie compiles only the log density of the free variables; the deterministics are
            # computed afterwards (numba would spend more time compiling them than sampling).
            free = [v.name for v in model.free_RVs]
            compiled = nutpie.compile_pymc_model(model, var_names=free)
            idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                                  target_accept=target_accept, progress_bar=progressbar,
                                  low_rank_modified_mass_matrix=low_rank_mass_matrix, maxdepth=max_tree_depth)
            dets = [n for n in names if n not in free]
            if dets:
                with warnings.catch_warnings():  # elementwise graph: BLAS is irrelevant to it
                    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
                    computed = pm.compute_deterministics(idata.posterior, var_names=dets, model=model,
                                                         merge_dataset=False, progressbar=False)
                idata.posterior = idata.posterior.merge(computed)
        elif nuts_sampler == "pymc":
            idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                              target_accept=target_accept, progressbar=progressbar, model=model,
                              var_names=names, compute_convergence_checks=False, max_treedepth=max_tree_depth)
            low_rank_mass_matrix = False
        else:
            raise ValueError(f"unknown nuts_sampler '{nuts_sampler}'. Fix: use 'nutpie' or 'pymc'")
        self.idata = idata
        self.sampler_settings = {"draws": draws, "tune": tune, "chains": chains, "nuts_sampler": nuts_sampler,
                                 "target_accept": target_accept, "random_seed": seed, "max_tree_depth": max_tree_depth,
                                 "low_rank_mass_matrix": low_rank_mass_matrix}
        self._attach_metadata()
        self.check_convergence()
        return self

    @staticmethod
    def _stored_var_names(model: pm.Model) -> list[str]:
        free = [v.name for v in model.free_RVs]
        det = [v.name for v in model.deterministics if v.name not in _RUN_LEVEL]
        return free + det

    def _attach_metadata(self) -> None:
        groups = {"fit_data": _runs_to_dataset(self.runs)}
        if self.models is not None:
            groups["fit_models"] = _runs_to_dataset(self.models).rename({"fit_run": "fit_model"})
        self.idata.add_groups(groups, warn_on_custom_groups=False)
        self.idata.attrs.update({
            "model_type": self.model_type,
            "model_version": self.version,
            "id": self.id,
            "config": json.dumps(self.config),
            "sampler": json.dumps(self.sampler_settings),
            "bayes_sd_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })

    # ------------------------------------------------------------------ diagnostics
    def _require_fit(self) -> None:
        if self.idata is None:
            raise ValueError("the model is not fitted. Fix: call fit(runs) or LatencyModel.load(path)")

    def summary(self, var_names: list[str] | None = None) -> pd.DataFrame:
        """``az.summary`` of the named parameters (default: every stored parameter)."""
        self._require_fit()
        return az.summary(self.idata, var_names=var_names)

    def convergence_stats(self) -> dict[str, xr.Dataset]:
        """R-hat and bulk/tail ESS of every stored parameter element (``rhat``, ``ess_bulk``,
        ``ess_tail``: datasets shaped like the posterior). An element fixed at 0 (the cost deviation
        of a drafter with a single verifier) has no R-hat: NaN."""
        self._require_fit()
        post = self.idata.posterior
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"rhat": az.rhat(post), "ess_bulk": az.ess(post, method="bulk"),
                    "ess_tail": az.ess(post, method="tail")}

    def diagnostics(self) -> dict:
        """Convergence figures: max R-hat, min bulk/tail ESS, divergences, draws, and whether all pass.

        Thresholds (Vehtari et al. 2021): R-hat <= 1.01, bulk and tail ESS >= 400, no divergences.
        """
        conv = self.convergence_stats()
        post = self.idata.posterior
        flat = lambda ds: np.concatenate([np.ravel(v.values) for v in ds.data_vars.values()])  # noqa: E731
        r, eb, et = flat(conv["rhat"]), flat(conv["ess_bulk"]), flat(conv["ess_tail"])
        ok = np.isfinite(r)
        stats = self.idata.sample_stats if "sample_stats" in self.idata.groups() else {}
        div = int(stats["diverging"].sum()) if "diverging" in stats else 0
        out = {
            "max_rhat": float(np.nanmax(r[ok])) if ok.any() else float("nan"),
            "min_ess_bulk": float(np.nanmin(eb[ok])) if ok.any() else float("nan"),
            "min_ess_tail": float(np.nanmin(et[ok])) if ok.any() else float("nan"),
            "divergences": div,
            "chains": int(post.sizes["chain"]),
            "draws": int(post.sizes["draw"]),
        }
        out["converged"] = bool(out["max_rhat"] <= 1.01 and out["min_ess_bulk"] >= 400
                                and out["min_ess_tail"] >= 400 and div == 0)
        return out

    def check_convergence(self) -> dict:
        """Warn (``ConvergenceWarning``) when any diagnostic is off; return the diagnostics."""
        d = self.diagnostics()
        if not d["converged"]:
            warnings.warn(
                f"posterior not yet trustworthy: max R-hat {d['max_rhat']:.3f} (want <= 1.01), "
                f"min ESS bulk {d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f} (want >= 400), "
                f"{d['divergences']} divergences (want 0). Fix: more draws/tune, or a higher target_accept",
                ConvergenceWarning, stacklevel=2)
        return d

    def diagnostics_text(self) -> str:
        d = self.diagnostics()
        status = "converged" if d["converged"] else "NOT converged"
        return (f"{status}: {d['chains']} chains x {d['draws']} draws; max R-hat {d['max_rhat']:.3f}, "
                f"min ESS bulk {d['min_ess_bulk']:.0f}, tail {d['min_ess_tail']:.0f}; {d['divergences']} divergences; "
                f"{self.fit_data.n_runs} runs fitted, {len(self.fit_data.excluded)} excluded")

    # ------------------------------------------------------------------ prediction
    def predict_draws(self, conditions: pd.DataFrame, *, max_draws: int | None = 1000, seed: int = 0,
                      models: pd.DataFrame | None = None, acceptance=None):
        """Posterior draws (sample, condition) for each condition row (see ``predict.Draws``).

        ``models``: extra MODELS rows (e.g. a drafter never measured, for the drafter-design
        variant) added to the ones the model was fitted with. ``acceptance``: a per-position
        acceptance per condition (NaN: the model's) replacing the model's, e.g. measured offline
        for a drafter never served.
        """
        self._require_fit()
        post = stack_posterior(self.idata.posterior, max_draws=max_draws, seed=seed)
        return condition_draws(post, self.config, self.fit_data.coords, _conditions(conditions), seed=seed,
                               models=self.models if models is None else _merge_models(self.models, models),
                               acceptance=acceptance)

    def predict(self, conditions: pd.DataFrame, *, max_draws: int | None = 1000, seed: int = 0,
                models: pd.DataFrame | None = None, acceptance=None) -> xr.Dataset:
        """Posterior predictive summaries per condition: an ``xr.Dataset`` with dim ``condition``.

        Variables: mean latency (posterior mean and 5/50/95% quantiles, s), the predictive
        interval of a new run's mean, per-request p50/p90/p99 (s), TTFT, TPOT, speedup versus
        k = 0 with its interval, P(speculation is slower), saturation rate (requests/s) and
        P(saturated). The condition columns are coordinates on ``condition``. ``models`` and
        ``acceptance``: as in :meth:`predict_draws`.
        """
        cond = _conditions(conditions)
        return summarise(self.predict_draws(cond, max_draws=max_draws, seed=seed, models=models,
                                            acceptance=acceptance), cond)

    def predict_table(self, conditions: pd.DataFrame, **kw) -> pd.DataFrame:
        """``predict`` as a DataFrame: the condition columns followed by the predictions."""
        ds = self.predict(conditions, **kw)
        return ds.to_dataframe().reset_index(drop=True)

    def predict_grid(self, *, verifier: str, drafter: str, hardware: str, dataset: str, ks, prompt_len: float,
                     output_len: float, rates=None, concurrencies=None, **kw) -> xr.Dataset:
        """Predictions on a (k, load) grid: an ``xr.Dataset`` with dims ``k`` and ``rate_rps`` or ``concurrency``."""
        if (rates is None) == (concurrencies is None):
            raise ValueError("give exactly one of rates= or concurrencies=")
        load_col = "rate_rps" if rates is not None else "concurrency"
        loads = list(rates if rates is not None else concurrencies)
        grid = pd.DataFrame([
            {"verifier": verifier, "drafter": drafter if k > 0 else "none", "hardware": hardware,
             "dataset": dataset, "k": int(k), "prompt_len": prompt_len, "output_len": output_len,
             "load_type": "rate" if rates is not None else "concurrency", load_col: float(x)}
            for k in ks for x in loads])
        ds = self.predict(grid, **kw)
        ds = ds.drop_vars([c for c in ds.coords if c not in ("k", load_col)])
        return ds.set_index(condition=["k", load_col]).unstack("condition")

    def sample_posterior_predictive(self, random_seed=None, extend_idata: bool = True) -> az.InferenceData:
        """Replicated observations for the training runs (posterior predictive check)."""
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

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> Path:
        """Write posterior, training runs and configuration to one netCDF file, atomically."""
        self._require_fit()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self.idata.to_netcdf(tmp, engine="h5netcdf")
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a posterior is a normal shared file
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, check: bool = True) -> LatencyModel:
        """Load a model saved by :meth:`save`, rebuilding it from the stored runs and config."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such posterior file. Fix: run `bayes-sd fit ... --out {path}`")
        try:
            idata = az.from_netcdf(path, engine="h5netcdf")
        except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
            raise ValueError(f"{path}: not a readable netCDF posterior ({type(exc).__name__}). "
                             "Fix: pass a file written by `bayes-sd fit`") from exc
        attrs = idata.attrs
        if attrs.get("model_type") != cls.model_type or "config" not in attrs:
            raise DifferentModelError(f"{path}: not a bayes_sd LatencyModel posterior. Fix: pass a file written by `bayes-sd fit`")
        model = cls(json.loads(attrs["config"]))
        if check and (attrs.get("id") != model.id or attrs.get("model_version") != cls.version):
            raise DifferentModelError(
                f"{path}: saved model id {attrs.get('id')} (version {attrs.get('model_version')}) does not match "
                f"the rebuilt one {model.id} (version {cls.version}). Fix: refit with this bayes_sd version")
        if "fit_data" not in idata.groups():
            raise DifferentModelError(f"{path}: has no fit_data group (training runs). Fix: refit and save again")
        model.runs = validate_runs(_dataset_to_runs(idata.fit_data), f"{path} fit_data")
        if "fit_models" in idata.groups():
            models = _dataset_to_runs(idata.fit_models)
            model.models = validate_models(models.astype({c: float for c in models if c != "name"}),
                                           f"{path} fit_models")
        model.fit_data = model._prepare(model.runs, model.models)
        if check:
            for dim, levels in model.fit_data.coords.items():
                if dim in idata.posterior.coords and list(idata.posterior.coords[dim].values) != list(levels):
                    raise DifferentModelError(f"{path}: the stored runs rebuild different '{dim}' levels than "
                                              "the posterior's. Fix: refit and save again")
        model.idata = idata
        model.sampler_settings = json.loads(attrs.get("sampler", "{}"))
        return model


# ---------------------------------------------------------------------- helpers
def _conditions(conditions: pd.DataFrame) -> pd.DataFrame:
    """Validate a conditions table (canonical run columns describing what to predict)."""
    need = ["verifier", "hardware", "k", "prompt_len", "output_len", "load_type"]
    missing = [c for c in need if c not in conditions]
    if missing:
        raise ValueError(f"conditions: missing columns {missing}. Fix: give canonical run columns "
                         "(verifier, drafter, hardware, dataset, k, prompt_len, output_len, load_type, rate_rps or concurrency)")
    cond = conditions.copy()
    for col, default in (("drafter", "none"), ("dataset", "unseen"), ("rate_rps", np.nan), ("concurrency", np.nan)):
        if col not in cond:
            cond[col] = default
    bad = ~cond["load_type"].isin(["rate", "concurrency"])
    if bad.any():
        raise ValueError("conditions, column 'load_type': must be 'rate' or 'concurrency'")
    no_load = ((cond["load_type"] == "rate") & cond["rate_rps"].isna()) | (
        (cond["load_type"] == "concurrency") & cond["concurrency"].isna())
    if no_load.any():
        raise ValueError("conditions: rate_rps (for load_type 'rate') or concurrency (for 'concurrency') is missing")
    return cond[CONDITION_COLUMNS].reset_index(drop=True)


def _merge_models(fitted: pd.DataFrame | None, extra: pd.DataFrame) -> pd.DataFrame:
    """Fitted MODELS rows plus ``extra`` ones (validated; an extra row replaces a fitted one of the same name)."""
    extra = validate_models(extra, "models")
    if fitted is None:
        return extra
    return pd.concat([fitted[~fitted["name"].isin(extra["name"])], extra], ignore_index=True)


def _runs_to_dataset(runs: pd.DataFrame) -> xr.Dataset:
    """A run table as an ``xr.Dataset`` on dim ``fit_run`` (strings as str, numbers as float)."""
    data = {}
    for col in runs.columns:
        s = runs[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            data[col] = ("fit_run", s.astype(object).where(s.notna(), "").astype(str).to_numpy(dtype=object))
        else:
            data[col] = ("fit_run", s.astype(float).to_numpy())
    return xr.Dataset(data)


def _dataset_to_runs(ds: xr.Dataset) -> pd.DataFrame:
    df = pd.DataFrame({name: ds[name].values for name in ds.data_vars})
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].replace("", np.nan)
    if "saturated" in df:
        df["saturated"] = df["saturated"].map({"True": True, "False": False})
    return df
