"""Model configurations: named prior sets stored as TOML files in ``models/``.

A configuration is a plain dict::

    {"name": ..., "description": ..., "model": {...options...},
     "priors": {prior_name: {"dist": "Normal", "mu": ..., "sigma": ..., "why": ...}}}

It is loaded by name (``"default"`` -> ``models/default.toml``) or from a path, merged with
user overrides (``{"priors": {"mu_v0": {"mu": 2.0}}}``), and stored as JSON in the
posterior's attributes so a saved model rebuilds with exactly the priors it was fitted with.
A variant file may start with ``extends = "default"`` and list only what it adds or changes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import pymc as pm

from bayes_sd.model.fit_data import (
    ACCEPTANCE_PIVOTS,
    ARRIVALS,
    CONFIGURATION_EFFECTS,
    EFFECTS,
    KNEE_FORMS,
    MOE_FORMS,
    OPEN_LOOP_BATCHES,
    OPEN_LOOP_RATES,
    OTHER_POOLED_LEVELS,
    SPECULATION_COSTS,
    VERIFIER_FORMS,
    acceptance_pivot,
    arrivals,
)
from bayes_sd.model.sampling import STARTS

__all__ = ["ModelConfigError", "load_config", "merge_config", "config_id", "make_prior", "models_dir", "SAMPLING",
           "sampling_settings"]

#: Distributions a prior may name, with the parameters each accepts.
_ALLOWED = {
    "Normal": {"mu", "sigma"},
    "HalfNormal": {"sigma"},
    "Exponential": {"lam"},
    "LogNormal": {"mu", "sigma"},
    "Gamma": {"alpha", "beta"},
    "StudentT": {"nu", "mu", "sigma"},
    "Beta": {"alpha", "beta"},
}


class ModelConfigError(ValueError):
    """A model configuration that cannot be used."""


def models_dir() -> Path:
    """The folder of the named configurations: the repository's ``models/``, which ships inside the
    wheel as the package ``bayes_sd.model.configurations`` (read with :mod:`importlib.resources`)."""
    return Path(str(resources.files("bayes_sd.model.configurations")))


def load_config(name_or_path: str | Path | dict = "default") -> dict[str, Any]:
    """Load a configuration by name (a file in ``models/``), by path, or pass a dict through.

    A variant file that starts with ``extends = "<name>"`` is read on top of its base.

    Parameters
    ----------
    name_or_path : str, pathlib.Path or dict, default "default"
        Name of a configuration in ``models/`` (``"default"`` -> ``models/default.toml``), the path of
        a ``.toml`` file, or a configuration dict (copied).

    Returns
    -------
    dict
        The configuration: ``name``, ``description``, ``model`` (options) and ``priors``
        (``{prior_name: {"dist": ..., <parameters>, "why": ...}}``), checked.

    Raises
    ------
    ModelConfigError
        When the file is not found (the message lists the known names), is not valid TOML, or the
        configuration cannot be used (no ``[priors]``, an unknown option value, a prior a variant needs).

    Examples
    --------
    >>> sorted(load_config("default"))
    ['description', 'model', 'name', 'priors']
    """
    if isinstance(name_or_path, dict):
        cfg = copy.deepcopy(name_or_path)
    else:
        path = Path(name_or_path)
        if path.suffix != ".toml":
            path = models_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = sorted(p.stem for p in models_dir().glob("*.toml"))
            raise ModelConfigError(
                f"model configuration '{name_or_path}' not found ({path}). "
                f"Fix: use one of {known} or the path of a .toml file"
            )
        try:
            cfg = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ModelConfigError(f"{path}: not valid TOML ({exc}). Fix: check the line it names") from exc
        if "extends" in cfg:
            cfg = _extend(load_config(cfg.pop("extends")), cfg)
    _check(cfg)
    return cfg


def _extend(base: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    """A variant file (``extends = "default"``) on top of its base: its priors and model options
    replace or add to the base's; its other keys (name, description) replace the base's."""
    cfg = copy.deepcopy(base)
    for key, value in variant.items():
        if key in ("priors", "model"):
            cfg.setdefault(key, {})
            for name, spec in value.items():
                cfg[key][name] = copy.deepcopy(spec)
        else:
            cfg[key] = copy.deepcopy(value)
    return cfg


def merge_config(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Merge user overrides into a configuration (one level deep for ``priors`` and ``model``).

    Unknown prior names raise (a typo would otherwise silently keep the default prior).
    """
    cfg = copy.deepcopy(base)
    if not overrides:
        return cfg
    for key, value in overrides.items():
        if key == "priors":
            for pname, spec in value.items():
                if pname not in cfg["priors"]:
                    raise ModelConfigError(
                        f"unknown prior '{pname}'. Fix: use one of {sorted(cfg['priors'])}"
                    )
                if "dist" in spec and spec["dist"] != cfg["priors"][pname].get("dist"):
                    cfg["priors"][pname] = dict(spec)
                else:
                    cfg["priors"][pname].update(spec)
        elif key == "model":
            unknown = set(value) - set(cfg.get("model", {}))
            if unknown:
                warnings.warn(f"unknown model options {sorted(unknown)} are ignored", UserWarning, stacklevel=2)
            cfg.setdefault("model", {}).update({k: v for k, v in value.items() if k not in unknown})
        else:
            cfg[key] = value
    _check(cfg)
    return cfg


def config_id(cfg: dict[str, Any], model_version: str) -> str:
    """First 16 hex digits of a SHA-256 over the configuration and model version."""
    payload = json.dumps({"config": cfg, "version": model_version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_prior(cfg: dict[str, Any], name: str, **kwargs):
    """Create the PyMC random variable ``name`` from its prior spec (inside a model context)."""
    spec = cfg["priors"][name]
    params = {k: v for k, v in spec.items() if k not in ("dist", "why")}
    return getattr(pm, spec["dist"])(name, **params, **kwargs)


def _check(cfg: dict[str, Any]) -> None:
    if "priors" not in cfg or not isinstance(cfg["priors"], dict):
        raise ModelConfigError("configuration has no [priors] table. Fix: start from models/default.toml")
    rate = cfg.get("model", {}).get("open_loop_rate", OPEN_LOOP_RATES[0])
    if rate not in OPEN_LOOP_RATES:
        raise ModelConfigError(f"model option open_loop_rate = {rate!r}. Fix: use one of {', '.join(OPEN_LOOP_RATES)}")
    if arrivals(cfg) not in ARRIVALS:
        raise ModelConfigError(f"model option arrivals = {arrivals(cfg)!r}. Fix: use one of {', '.join(ARRIVALS)}")
    if cfg["priors"].get("arrival_irregularity", {}).get("dist", "Beta") != "Beta":
        raise ModelConfigError("prior 'arrival_irregularity' must be Beta (a share in [0, 1]; predictions draw it "
                               "from its prior where the fit had no such runs). Fix: set dist = \"Beta\"")
    batch = cfg.get("model", {}).get("open_loop_batch", OPEN_LOOP_BATCHES[0])
    if batch not in OPEN_LOOP_BATCHES:
        raise ModelConfigError(f"model option open_loop_batch = {batch!r}. "
                               f"Fix: use one of {', '.join(OPEN_LOOP_BATCHES)}")
    iterations = cfg.get("model", {}).get("open_loop_iterations", 4)
    if not isinstance(iterations, int) or not 1 <= iterations <= 20:
        raise ModelConfigError(f"model option open_loop_iterations = {iterations!r}. Fix: an integer from 1 to 20")
    if acceptance_pivot(cfg) not in ACCEPTANCE_PIVOTS:
        raise ModelConfigError(f"model option acceptance_pivot = {acceptance_pivot(cfg)!r}. "
                               f"Fix: use one of {', '.join(ACCEPTANCE_PIVOTS)}")
    form = cfg.get("model", {}).get("verifier_form", VERIFIER_FORMS[0])
    if form not in VERIFIER_FORMS:
        raise ModelConfigError(f"model option verifier_form = {form!r}. Fix: use one of {', '.join(VERIFIER_FORMS)}")
    if form in KNEE_FORMS and not {"knee_tokens", "knee_compute_share"} <= set(cfg["priors"]):
        raise ModelConfigError(f"verifier_form = {form!r} needs priors knee_tokens and knee_compute_share. "
                               "Fix: extend models/roofline.toml")
    if form in MOE_FORMS and "expert_share" not in cfg["priors"]:
        raise ModelConfigError(f"verifier_form = {form!r} needs the prior expert_share. Fix: extend models/moe.toml")
    if cfg.get("model", {}).get("sequence_cost", False) and "sequence_cost_ms" not in cfg["priors"]:
        raise ModelConfigError("sequence_cost = true needs the prior sequence_cost_ms. "
                               "Fix: extend models/roofline.toml")
    speculation_levels = tuple(f"{effect}_ms" for effect in SPECULATION_COSTS)  # priors of the pooled centres
    speculation = (*speculation_levels, *(f"{effect}_spread" for effect in SPECULATION_COSTS))
    if cfg.get("model", {}).get("speculation_cost", False) and not set(speculation) <= set(cfg["priors"]):
        raise ModelConfigError(f"speculation_cost = true needs the priors {', '.join(speculation)}. "
                               "Fix: extend models/moe_roofline_speculation.toml")
    for name, effect in (("sequence_cost_spread", "sequence_cost"), ("accept_decay_spread", "accept_decay"),
                         *((f"{effect}_spread", effect) for effect in SPECULATION_COSTS)):
        spread = cfg["priors"].get(name)
        if spread is not None and spread.get("dist") not in ("HalfNormal", "Exponential"):
            raise ModelConfigError(f"prior '{name}' must be HalfNormal or Exponential (a scale, fixed at its "
                                   f"prior's unless learned_scales lists {effect}). Fix: set dist = \"HalfNormal\"")
    if "accept_decay_spread" in cfg["priors"] and cfg["priors"].get("accept_decay", {}).get("dist") != "LogNormal":
        raise ModelConfigError("a pooled decay (prior 'accept_decay_spread') needs 'accept_decay' LogNormal (the prior "
                               "of its centre). Fix: set [priors.accept_decay] dist = \"LogNormal\" with mu and "
                               "sigma on the log scale")
    for pname in ("knee_tokens", "knee_compute_share", "sequence_cost_ms", *speculation_levels):  # lognormal levels
        if pname in cfg["priors"] and cfg["priors"][pname].get("dist") != "LogNormal":
            raise ModelConfigError(f"prior '{pname}' must be LogNormal (a positive quantity per verifier x hardware). "
                                   "Fix: set dist = \"LogNormal\" with mu and sigma on the log scale")
    departures = cfg.get("model", {}).get("configuration_effects", [])
    if not isinstance(departures, list) or not set(departures) <= set(CONFIGURATION_EFFECTS):
        raise ModelConfigError(f"model option configuration_effects = {departures!r}. Fix: a list drawn from "
                               f"{list(CONFIGURATION_EFFECTS)} ([] for none)")
    for name in departures:
        if EFFECTS[name][1] not in cfg["priors"]:
            raise ModelConfigError(f"configuration_effects lists {name!r}, which needs the prior {EFFECTS[name][1]!r}. "
                                   "Fix: extend models/default.toml, which has it")
    learnable = (*EFFECTS, *OTHER_POOLED_LEVELS)
    unknown = sorted(set(cfg.get("model", {}).get("learned_scales", ())) - set(learnable))
    if unknown:
        raise ModelConfigError(f"model option learned_scales names {unknown}, which have no scale. "
                               f"Fix: use names from {list(learnable)}")
    free = cfg.get("model", {}).get("model_free_drafters", [])
    if not isinstance(free, list) or not all(isinstance(d, str) for d in free):
        raise ModelConfigError(f"model option model_free_drafters = {free!r}. Fix: a list of drafter names as in "
                               "the runs' drafter column, e.g. [\"ngram\"]")
    _check_sampling(cfg.get("sampling", {}))
    for pname, spec in cfg["priors"].items():
        dist = spec.get("dist")
        if dist not in _ALLOWED:
            raise ModelConfigError(
                f"prior '{pname}': distribution '{dist}' is not supported. Fix: use one of {sorted(_ALLOWED)}"
            )
        params = set(spec) - {"dist", "why"}
        if params != _ALLOWED[dist]:
            raise ModelConfigError(
                f"prior '{pname}' ({dist}) has parameters {sorted(params)}; it needs {sorted(_ALLOWED[dist])}"
            )


#: what a configuration's [sampling] table may set: the settings that converge this model (`bayes-sd fit`
#: and the main job sample with them unless told otherwise), as integers except target_accept (a number)
#: and start (one of :data:`bayes_sd.model.sampling.STARTS`: where the chains start)
SAMPLING_KEYS = ("draws", "tune", "chains", "target_accept", "max_tree_depth", "start")

#: the sampling settings of a configuration without a [sampling] table (bench/README.md, fit_speed): at the
#: offered rate the drafters' per-token costs d1 mix slowly, and 700 tune + 3500 draws at target acceptance
#: 0.9 converged the default model on all bundled data in ten seeds of ten (with the main job's trees capped at
#: depth 6, ``bayes_sd.demo.DEMO_SAMPLING``); 2 chains, one per core of the 2-core machines the figures are
#: measured on; trees up to the samplers' own depth, 10 (capped at 6, the real llama.cpp sweep's first attempt
#: had 4 divergences: docs/evaluation.md).
SAMPLING = {"draws": 3500, "tune": 700, "chains": 2, "target_accept": 0.9, "max_tree_depth": 10,
            "start": "jittered"}


def _check_sampling(sampling: dict[str, Any]) -> None:
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise ModelConfigError(f"[sampling] has unknown settings {unknown}. Fix: use only {list(SAMPLING_KEYS)}")
    for key, value in sampling.items():
        if key == "start":
            if value not in STARTS:
                raise ModelConfigError(f"[sampling] start = {value!r}. Fix: one of {', '.join(map(repr, STARTS))}")
        elif key == "target_accept":
            if not isinstance(value, float) or not 0.0 < value < 1.0:
                raise ModelConfigError(f"[sampling] target_accept = {value!r}. Fix: a number between 0 and 1, e.g. 0.9")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"[sampling] {key} = {value!r}. Fix: a positive whole number")


def sampling_settings(config: str | Path | dict, defaults: dict[str, Any] | None = None,
                      **given: Any) -> dict[str, Any]:
    """The sampling settings that converge a configuration: ``defaults`` updated by its own ``[sampling]``
    table (a variant whose posterior mixes at another rate says there what converges it), then by the
    settings ``given`` that are not None.

    Parameters
    ----------
    config : str, pathlib.Path or dict
        A name in ``models/``, a path to a TOML file, or a loaded configuration.
    defaults : dict, optional
        What a configuration without a table samples with (default :data:`SAMPLING`; the main job adds
        its own to it, ``bayes_sd.demo.DEMO_SAMPLING``).
    **given
        Settings of :data:`SAMPLING_KEYS` chosen by the caller; None leaves the configuration's.

    Returns
    -------
    dict
        ``draws``, ``tune``, ``chains``, ``target_accept``, ``max_tree_depth`` and ``start``: keyword
        arguments of :meth:`bayes_sd.model.LatencyModel.fit`.
    """
    unknown = sorted(set(given) - set(SAMPLING_KEYS))
    if unknown:
        raise TypeError(f"unknown sampling settings {unknown}; they are {list(SAMPLING_KEYS)}")
    cfg = config if isinstance(config, dict) else load_config(config)
    return {**(SAMPLING if defaults is None else defaults), **cfg.get("sampling", {}),
            **{k: v for k, v in given.items() if v is not None}}
