"""Turn a canonical run table into the arrays, indices and coords the PyMC model needs.

Pure pandas/numpy, no PyMC. One row per fitted run; requests never appear here (runs are
sufficient statistics), so fit cost grows with the number of runs only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_sd.theory import COEFS, DRAFTER_COEFS, VERIFIER_COEFS, arrival_cv2_of, kv_tokens_held
from bayes_sd.traces.schema import NO_DRAFTER

from .acceptance_data import (
    POSITION_SE_IDENTIFIED,
    draft_share,
    measured_pivot,
    observed_acceptance,
    observed_decay,
    observed_draft_share,
    replayed_acceptance,
)

__all__ = ["FitData", "prepare_fit_data", "arrival_rate", "OPEN_LOOP_RATES", "OPEN_LOOP_BATCHES", "ARRIVALS",
           "VERIFIER_FORMS", "MOE_FORMS", "KNEE_FORMS", "DRAFTER_PREDICTORS", "drafter_predictor_matrix",
           "moe_log_q", "VERIFIER_COEFS", "DRAFTER_COEFS", "COEFS", "TAIL_QUANTILES", "EFFECTS",
           "CONFIGURATION_EFFECTS", "LOAD_TRENDS", "OTHER_POOLED_LEVELS", "SPECULATION_COSTS",
           "speculation_identified", "pair_label", "level_label", "deployment_label", "configuration_effects",
           "configuration_level_label", "fixed_scale", "observed_acceptance", "observed_decay",
           "replayed_acceptance", "measured_pivot", "acceptance_pivot", "arrivals", "ACCEPTANCE_PIVOTS",
           "SATURATED_RUNS", "batch_cap", "recompute_tokens", "POSITION_SE_IDENTIFIED", "closed_loop_load",
           "draft_share", "observed_draft_share"]

log = logging.getLogger(__name__)

#: The model's zero-mean effects: name -> (grouping dim, scale prior, dims of the scale prior,
#: coefficients it acts on or None for a scalar effect). Shared by the PyMC build and the numpy
#: predictor, so both compose the same structure.
EFFECTS: dict[str, tuple[str, str, str | None, tuple[str, ...] | None]] = {
    "hardware": ("hardware", "sigma_hardware", "coef", COEFS),
    "verifier": ("verifier", "sigma_verifier", "vcoef", VERIFIER_COEFS),
    "verifier_hw": ("verifier_hw", "sigma_level", "coef", VERIFIER_COEFS),
    "drafter": ("drafter", "sigma_drafter", "dcoef", DRAFTER_COEFS),
    "drafter_hw": ("drafter_hw", "sigma_level", "coef", DRAFTER_COEFS),
    "spec_pair": ("spec_pair", "sigma_pair", "dcoef", DRAFTER_COEFS),
    "accept_drafter": ("drafter", "sigma_accept_drafter", None, None),
    "accept_dataset": ("dataset", "sigma_accept_dataset", None, None),
    "accept_pair": ("pair_dataset", "sigma_accept_pair", None, None),
    # a deployment (pair x dataset on one hardware) departs from its pair x dataset's acceptance, zero-sum
    # within it: the same pair on one workload served elsewhere (sampling settings, engine, template)
    "accept_deployment": ("deployment", "sigma_accept_deployment", None, None),
    "tail_pair": ("pair", "sigma_tail_pair", None, None),
    # a configuration's departure from the cost law, shared by its runs at every load: on its
    # load-independent demand C1 and on its per-request load cost C2 (see CONFIGURATION_EFFECTS)
    "config_level": ("configuration", "sigma_config_level", None, None),
    "config_load": ("configuration", "sigma_config_load", None, None),
    # how that departure of C2 bends with load: its slope per log-load from the configuration's
    # measured loads (load_range.load_offset), so predictions widen with distance from them
    "config_load_trend": ("configuration", "sigma_config_load_trend", None, None),
    # the same bend shared by every configuration of a verifier x hardware (offset from the server's loads)
    "server_load_trend": ("verifier_hw", "sigma_server_load_trend", None, None),
}
#: a configuration's departures from the cost law: the model has those its ``[model]
#: configuration_effects`` lists (each needs its scale's prior)
CONFIGURATION_EFFECTS = ("config_level", "config_load", "config_load_trend", "server_load_trend")
#: the departures that bend C2 with load: name -> whose measured loads centre the offset (load_range.load_offset)
LOAD_TRENDS = {"config_load_trend": "configuration", "server_load_trend": "server"}
#: The per-verifier x hardware costs of a step that speculates, whatever its draft length, with the
#: ``theory.ServiceCosts`` field each fills (``[model] speculation_cost = true``; server_costs.speculation_costs).
SPECULATION_COSTS = {"speculation_step": "e0", "speculation_sequence": "e1"}
#: partially pooled levels built outside ``EFFECTS`` (by their own code in build.py) whose scale
#: follows the same policy (``FitData.learns_scale``): name -> grouping dim
OTHER_POOLED_LEVELS = {"sequence_cost": "verifier_hw", "accept_decay": "drafter", "speculation_step": "verifier_hw",
                       "speculation_sequence": "verifier_hw"}
#: groups with fewer levels than this get a fixed scale (the prior's) instead of a learned one:
#: with under five groups a population scale is barely estimable and only adds a funnel
MIN_LEVELS_FOR_SCALE = 5
#: effects whose population scale is learned by default: the pair levels, which have many
#: levels and drive predictions for unmeasured pairs. The scales of main effects and
#: hardware interactions stay at their prior values (two or three hardware types or
#: verifiers say little about a population scale, and learning it there only adds funnels).
DEFAULT_LEARNED_SCALES = ("accept_pair", "accept_deployment", "tail_pair")
#: per-request latency quantiles whose run-level values inform the tail model
TAIL_QUANTILES = {"latency_p50_s": 0.5, "latency_p90_s": 0.9, "latency_p99_s": 0.99}


#: Drafter-design predictors of drafter pass costs (Yan et al.: depth drives draft latency),
#: computed from the MODELS table and centred at fixed reference sizes (4 layers, 0.5 B
#: parameters) so a drafter never seen in training gets the same transform.
DRAFTER_PREDICTORS = {
    "log_layers": lambda m: np.log(m["layers"].astype(float)) - np.log(4.0),
    # +0.01 B keeps weightless proposers (n-gram lookup, params_b = 0) finite
    "log_params_b": lambda m: np.log(m["params_b"].astype(float) + 0.01) - np.log(0.51),
}


def drafter_predictor_matrix(drafters: list[str], models: pd.DataFrame | None, predictors: list[str],
                             source: str = "models") -> np.ndarray:
    """(drafter, predictor) matrix of :data:`DRAFTER_PREDICTORS` for ``drafters`` from a MODELS table.

    Raises a ValueError naming the drafters that have no row in ``models``.
    """
    unknown = [p for p in predictors if p not in DRAFTER_PREDICTORS]
    if unknown:
        raise ValueError(f"model option drafter_predictors: unknown {unknown}. Fix: use {sorted(DRAFTER_PREDICTORS)}")
    if not predictors or not drafters:
        return np.zeros((len(drafters), len(predictors)))
    table = (models if models is not None else pd.DataFrame(columns=["name"])).drop_duplicates("name").set_index("name")
    missing = [d for d in drafters if d not in table.index]
    if missing:
        raise ValueError(f"{source}: no row for drafter(s) {missing}, needed by drafter_predictors {predictors}. "
                         "Fix: add them to the models table (name, params_b, layers) or pass models=")
    rows = table.loc[drafters]
    return np.column_stack([DRAFTER_PREDICTORS[p](rows).to_numpy(float) for p in predictors])


def moe_log_q(verifiers: list[str], models: pd.DataFrame | None) -> np.ndarray:
    """``log(1 - top_k / E)`` per verifier from a MODELS table; NaN for a dense (or unlisted) verifier."""
    out = np.full(len(verifiers), np.nan)
    if models is None or "experts" not in models:
        return out
    table = models.drop_duplicates("name").set_index("name")
    for i, v in enumerate(verifiers):
        if v in table.index and pd.notna(table.at[v, "experts"]):
            e, top = float(table.at[v, "experts"]), float(table.at[v, "experts_per_token"])
            if not 0 < top < e:
                raise ValueError(f"models, row '{v}': experts_per_token ({top}) must be between 0 and experts ({e}). "
                                 "Fix: give the routed experts per layer and the top-k")
            out[i] = np.log1p(-top / e)
    return out


def speculation_identified(fit: pd.DataFrame, levels: list[str]) -> np.ndarray:
    """Per verifier x hardware level (``levels``, labels of :func:`level_label`), 1.0 where its runs can
    tell what turning speculation on costs from the drafters' per-k costs: runs without speculation,
    and one pair at two or more draft lengths (its step cost's intercept in ``k``), else 0.0."""
    label = pd.Series([level_label(v, h) for v, h in zip(fit["verifier"], fit["hardware"])], index=fit.index)
    spec = fit["k"] > 0
    baseline = set(label[~spec])
    ks = fit[spec].groupby([label[spec], fit.loc[spec, "drafter"].astype(str)])["k"].nunique()
    several = {vh for (vh, _), n in ks.items() if n >= 2}
    return np.array([float(vh in baseline and vh in several) for vh in levels])


def fixed_scale(cfg: dict, prior: str) -> float:
    """The scale of a HalfNormal / Exponential scale prior, used as a fixed scale."""
    spec = cfg["priors"][prior]
    return float(spec["sigma"]) if "sigma" in spec else 1.0 / float(spec["lam"])


def model_free_keep(cfg: dict, drafters) -> np.ndarray:
    """1.0 per drafter name, 0.0 for those the configuration lists in ``model_free_drafters``.

    A model-free drafter (prompt lookup / n-gram, suffix decoding) runs no network: its draft step
    costs a per-step overhead ``d0`` but no per-token GPU work, so its ``d1`` is fixed at 0
    (multiplied by this). Left free, ``d1`` of such a drafter is a few per cent of the verifier's
    ``v1`` and the data pin only their sum ``v1 + d1``: a curved ridge in log space.
    """
    free = set(cfg.get("model", {}).get("model_free_drafters", ()))
    return np.array([0.0 if str(d) in free else 1.0 for d in drafters])


def pair_label(verifier: str, drafter: str) -> str:
    return f"{verifier} / {drafter}"


def level_label(name: str, hardware: str) -> str:
    return f"{name} @ {hardware}"


def deployment_label(pair_dataset: str, hardware: str) -> str:
    """A pair on one dataset served on one hardware: ``'<verifier> / <drafter> | <dataset> @ <hardware>'``."""
    return level_label(pair_dataset, hardware)


def configuration_effects(cfg: dict) -> list[str]:
    """The departures from the cost law a model configuration has (``[model] configuration_effects``)."""
    return list(cfg.get("model", {}).get("configuration_effects", []))


#: Where the pooled latent acceptance sits with a per-position decay: at the first draft position,
#: or at the position each drafter's runs are most informative about (:func:`measured_pivot`).
ACCEPTANCE_PIVOTS = ("first", "measured")


def arrivals(cfg: dict) -> str:
    """The configuration's ``[model] arrivals`` (one of :data:`ARRIVALS`)."""
    return str(cfg.get("model", {}).get("arrivals", ARRIVALS[0]))


def acceptance_pivot(cfg: dict) -> str:
    """The configuration's ``[model] acceptance_pivot`` (one of :data:`ACCEPTANCE_PIVOTS`)."""
    return str(cfg.get("model", {}).get("acceptance_pivot", ACCEPTANCE_PIVOTS[0]))


def configuration_level_label(verifier: str, drafter: str, hardware: str, dataset: str, k) -> str:
    """One server configuration: pair, hardware, workload and draft length (open and closed loop alike)."""
    return f"{pair_label(verifier, drafter)} @ {hardware} | {dataset} | k={int(k)}"


@dataclass
class FitData:
    """Run-level arrays (one entry per fitted run) plus level indices and coords."""

    runs: pd.DataFrame  # the fitted runs, in model order
    excluded: pd.DataFrame  # run_id, reason
    coords: dict[str, list[str]]
    idx: dict[str, np.ndarray]  # integer index arrays (run -> level, level -> parent level)
    x: dict[str, np.ndarray]  # numeric run arrays (and drafter_z: drafter x predictor)
    obs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (run rows, values)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def drafter_table(self) -> pd.DataFrame:
        """Per fitted drafter: ``pivot`` (draft positions past the first where its latent acceptance
        sits, :func:`measured_pivot`), ``measured_ks`` (how many draft lengths its runs cover),
        ``position_runs`` (its runs with per-position acceptance at ``k >= 2``), ``position_se`` (the
        standard error of its decay from their counts alone, logits per position; inf without them)
        and ``decay_identified`` (whether its runs say how its acceptance falls with position: several
        draft lengths, or per-position counts that pin the decay within :data:`POSITION_SE_IDENTIFIED`)."""
        table = pd.DataFrame({"pivot": self.x["drafter_pivot"], "measured_ks": self.x["drafter_ks"],
                              "position_runs": self.x["drafter_position_runs"],
                              "position_se": self.x["drafter_position_se"]},
                             index=pd.Index(self.coords["drafter"], name="drafter"))
        return table.assign(decay_identified=(table["measured_ks"] >= 2)
                            | (table["position_se"] < POSITION_SE_IDENTIFIED))

    def learns_scale(self, effect: str, learned: tuple[str, ...] = DEFAULT_LEARNED_SCALES) -> bool:
        """Whether ``effect`` has a learned scale (else the prior's scale, fixed).

        Only effects listed in ``learned`` (the configuration's ``model.learned_scales``) with
        at least ``MIN_LEVELS_FOR_SCALE`` levels learn their scale.
        """
        if effect in OTHER_POOLED_LEVELS:
            return effect in learned and len(self.coords[OTHER_POOLED_LEVELS[effect]]) >= MIN_LEVELS_FOR_SCALE
        return (effect in learned and self.uses(effect)
                and len(self.coords[EFFECTS[effect][0]]) >= MIN_LEVELS_FOR_SCALE)

    @property
    def has_drafters(self) -> bool:
        return len(self.coords["drafter"]) > 0

    def uses(self, effect: str) -> bool:
        """Whether the model gives ``effect`` its own parameters.

        An effect is identifiable from the data only if its grouping has more levels than
        what it refines (one hardware type: no hardware effect, it is part of ``mu``; a
        drafter measured on one hardware only: no drafter x hardware deviation). Dropped
        effects keep their scale parameter (sampled from its prior), so predictions for an
        unseen level still carry the population spread.
        """
        n = {name: len(levels) for name, levels in self.coords.items()}
        rules = {
            "verifier": n["verifier"] > 1,
            "hardware": n["hardware"] > 1,
            "verifier_hw": n["verifier_hw"] > max(n["verifier"], n["hardware"]),
            "drafter": n["drafter"] > 1,
            "drafter_hw": n["drafter_hw"] > max(n["drafter"], n["hardware"]),
            "spec_pair": n["spec_pair"] > n["drafter"],
            "accept_drafter": n["drafter"] > 1,
            "accept_dataset": n["dataset"] > 1,
            "accept_pair": n["pair_dataset"] > max(n["drafter"], n["dataset"]),
            "accept_deployment": n["deployment"] > n["pair_dataset"],
            "tail_pair": n["pair"] > 1,
            "config_level": n["configuration"] > 1,
            "config_load": n["configuration"] > 1,
            "config_load_trend": n["configuration"] > 1,
            "server_load_trend": True,  # a departure from zero slope: identified by one server's loads
        }
        return rules[effect]


#: ``[model] open_loop_rate``: which rate of an open-loop run the model takes as its arrival rate
OPEN_LOOP_RATES = ("offered", "achieved")  # the first is the default everywhere
#: ``[model] saturated_runs``: a saturated open-loop run is left out of the fit, or enters it as what it
#: says (its offered rate exceeded the server's capacity); the first is the default
SATURATED_RUNS = ("excluded", "censored")
#: ``[model] arrivals``: every open loop taken as Poisson, or as its runs record (``arrival_cv2``;
#: ``theory.arrivals``); the first is the default
ARRIVALS = ("poisson", "as_recorded")
#: how a roofline form counts an open-loop run's tokens per pass in the likelihood (model.build:
#: _knee_open_latency); the first is the default
OPEN_LOOP_BATCHES = ("measured", "iterated")
#: Verify-pass forms (``[model] verifier_form``): every pass reads all weights ("dense"), an MoE
#: pass reads the experts its tokens touch ("moe"), a pass turns compute-bound past a knee in its
#: tokens ("roofline"), or both ("moe_roofline": an MoE verifier's knee sits ``E / top_k`` times
#: further out, since its pass reads every expert but computes with the active ones only).
VERIFIER_FORMS = ("dense", "moe", "roofline", "moe_roofline")
#: the forms with expert coverage, and those with a roofline knee
MOE_FORMS, KNEE_FORMS = ("moe", "moe_roofline"), ("roofline", "moe_roofline")


def arrival_rate(runs: pd.DataFrame, source: str = OPEN_LOOP_RATES[0]) -> pd.Series:
    """Open-loop arrival rate of each run (requests/s), NaN for closed-loop runs that have no rate.

    ``source="offered"`` (the default model's): ``rate_rps`` where configured, else
    ``achieved_rps``. ``source="achieved"``: ``achieved_rps`` where measured, else the
    configured ``rate_rps``. The configured rate is the rate of the arrival process, which the
    steady-state formulas take; the achieved rate is measured over a finite window that still
    holds the warm-up transient near saturation. In the synthetic fleet it averages 0.97 of the
    configured rate at 70 % of saturation and 0.89 at 88 %, while in runs ten times longer it
    is 0.99-1.00 and the closed form at the configured rate matches the simulator (31.1 vs
    31.0 s at 88 %; at the achieved rate of a fleet-length run it says 23.7 s against 32.5 s).
    A fit to achieved rates reads that shortfall as a larger per-sequence cost and over-predicts
    near saturation at a configured rate (``bench/accuracy.py``, ``models/achieved_rate.toml``).
    """
    if source not in OPEN_LOOP_RATES:
        raise ValueError(f"open_loop_rate '{source}' unknown. Fix: use one of {', '.join(OPEN_LOOP_RATES)}")
    nan = pd.Series(np.nan, index=runs.index)
    achieved, offered = runs.get("achieved_rps", nan), runs.get("rate_rps", nan)
    first, second = (achieved, offered) if source == "achieved" else (offered, achieved)
    return first.fillna(second).astype(float)


def _codes(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Position of each value in ``levels`` (-1 where absent)."""
    return pd.Index(levels).get_indexer(pd.Series(values).to_numpy()).astype("int64")


def exclusion_reasons(runs: pd.DataFrame) -> pd.Series:
    """Why each run is left out of the steady-state likelihood ('' = kept)."""
    reason = pd.Series("", index=runs.index, dtype=object)
    if "saturated" in runs:
        sat = runs["saturated"].fillna(False).astype(bool)
        why = runs.get("saturation_reason", pd.Series("", index=runs.index)).fillna("")
        reason[sat] = "saturated: " + why[sat].astype(str)
    no_lat = runs["latency_mean_s"].isna()
    no_tpot = runs["tpot_mean_s"].isna() if "tpot_mean_s" in runs else pd.Series(True, index=runs.index)
    reason[(reason == "") & no_lat & no_tpot] = "no latency or TPOT measurement"
    return reason


def batch_cap(runs: pd.DataFrame) -> pd.Series:
    """Each run's batch cap, requests in service at most (``inf`` where unknown): the engine's
    ``max_num_seqs``, or the sequences its KV cache holds, whichever is smaller:
    ``kv_cache_tokens / held``, with ``held`` (tokens, :func:`bayes_sd.theory.kv_tokens_held`) the context
    a running sequence holds on average (an engine admits no request its KV cache cannot hold; those
    wait, as for a slot)."""
    return _caps(runs)[0]


def recompute_tokens(runs: pd.DataFrame) -> np.ndarray:
    """Per run, the prompt tokens prefilled again per request once its batch is full
    (:func:`bayes_sd.theory.preemption_recompute`): the mean output where the KV cache sets the cap,
    0 where ``max_num_seqs`` does or neither is known."""
    cap, kv_cap = _caps(runs)
    return np.where(np.isfinite(kv_cap) & (kv_cap <= cap), runs["output_len"].to_numpy(float), 0.0)


def _caps(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(the batch cap, the KV cache's cap), requests; ``inf`` where unknown."""
    cap = pd.Series(np.inf, index=runs.index)
    kv_cap = pd.Series(np.inf, index=runs.index)
    if "max_num_seqs" in runs:
        cap = runs["max_num_seqs"].astype(float).fillna(np.inf)
    if "kv_cache_tokens" in runs:
        sd = runs["output_len_sd"].astype(float) if "output_len_sd" in runs else np.nan
        held = kv_tokens_held(runs["prompt_len"].astype(float), runs["output_len"].astype(float), sd)
        kv_cap = (runs["kv_cache_tokens"].astype(float) / held).fillna(np.inf)
    return np.minimum(cap, kv_cap), kv_cap


def closed_loop_load(runs: pd.DataFrame) -> pd.Series:
    """The load of each closed-loop run (requests in flight, itself included; NaN for open-loop runs):
    ``in_flight_seen``, what its requests saw, where measured, else its ``concurrency``.

    A benchmark that sends a fixed number of requests through N streams (vllm bench serve's
    ``--num-prompts`` with ``--max-concurrency``) drains at the end: its last requests run with ever
    fewer others, and its mean latency is that of a lighter load than N (out-of-family fleets with
    2.5 N requests: down to 0.71 N at 128-384 streams, where such runs measured 20-27 % faster than the
    steady state). Taken at N, those runs read as cheaper load costs. A time-limited run (GuideLLM)
    sees N. The value is kept within ``[1, concurrency]``."""
    closed = runs["load_type"] == "concurrency"
    conc = runs["concurrency"].astype(float) if "concurrency" in runs else pd.Series(np.nan, index=runs.index)
    seen = runs["in_flight_seen"].astype(float) if "in_flight_seen" in runs else pd.Series(np.nan, index=runs.index)
    load = seen.clip(lower=1.0).clip(upper=conc).fillna(conc)
    return load.where(closed)


def prepare_fit_data(runs: pd.DataFrame, models: pd.DataFrame | None = None,
                     drafter_predictors: list[str] | tuple = (), open_loop_rate: str = OPEN_LOOP_RATES[0],
                     saturated_runs: str = SATURATED_RUNS[0]) -> FitData:
    """Select the runs to fit and build the model's index arrays.

    Saturated runs are excluded (logged with their reason): the closed form describes steady
    state only. With ``saturated_runs = "censored"``, a saturated open-loop run with an offered
    rate is kept as a censored run instead (column ``censored``; ``x['sat_rate']``, its offered
    rate, and ``obs['saturated']``): its latencies and tails are not observed (their rows are left
    out, and it is given rate 0 so nothing in the graph overflows for it), but that its rate
    exceeded capacity is, and its acceptance too. Runs with neither mean latency nor TPOT have nothing
    to fit. ``models`` (a
    MODELS table) gives MoE verifiers their experts and top-k (``coords['moe_verifier']``,
    ``x['moe_log_q']``) and drafters their design predictors (``x['drafter_z']``).
    ``open_loop_rate``: the rate of open-loop runs in ``x['rate']`` (see :func:`arrival_rate`).
    A run's batch cap (columns ``max_num_seqs``, ``kv_cache_tokens``; :func:`batch_cap`) goes to ``x['slots']`` and
    ``x['has_cap']``; a closed-loop run flagged saturated at more streams than its cap is kept (its
    requests wait for slots in steady state, which :mod:`bayes_sd.theory.batch_cap` describes), logged.
    A closed-loop run is fitted at the load its requests saw (:func:`closed_loop_load`); drained runs are logged.
    """
    if saturated_runs not in SATURATED_RUNS:
        raise ValueError(f"saturated_runs must be one of {SATURATED_RUNS}, got {saturated_runs!r}")
    runs = runs.reset_index(drop=True)
    reasons = exclusion_reasons(runs)
    censor = pd.Series(False, index=runs.index)
    if saturated_runs == "censored" and "rate_rps" in runs:
        offered = runs["rate_rps"].astype(float)
        censor = reasons.str.startswith("saturated") & (runs["load_type"] == "rate") & (offered > 0)
        reasons[censor] = ""
    # a closed loop past a known batch cap is steady state with a queue, which the capped law describes
    slots = batch_cap(runs)
    queued = (reasons.str.startswith("saturated") & (runs["load_type"] == "concurrency")
              & (runs.get("concurrency", np.nan) > slots))
    for row in runs.loc[queued].itertuples():
        log.info("keeping run %s, flagged saturated: a closed loop of %g streams past its batch cap of %g "
                 "(max_num_seqs or the KV cache) waits for slots in steady state", row.run_id, row.concurrency,
                 slots[row.Index])
    reasons[queued] = ""
    excluded = pd.DataFrame({"run_id": runs.loc[reasons != "", "run_id"], "reason": reasons[reasons != ""]})
    for row in excluded.itertuples():
        log.info("excluding run %s: %s", row.run_id, row.reason)
    fit = runs.loc[reasons == ""].copy()
    fit["censored"] = censor[reasons == ""].to_numpy()
    fit = fit.reset_index(drop=True)
    if fit.empty:
        raise ValueError("no run left to fit: every run is saturated or has no latency. Fix: add steady-state runs")
    fit["drafter"] = fit["drafter"].where(fit["k"] > 0, NO_DRAFTER)
    spec = fit["k"] > 0

    verifiers = sorted(fit["verifier"].unique())
    drafters = sorted(fit.loc[spec, "drafter"].unique())
    hardware = sorted(fit["hardware"].unique())
    datasets = sorted(fit["dataset"].unique())
    fit["_vh"] = [level_label(v, h) for v, h in zip(fit["verifier"], fit["hardware"])]
    fit["_dh"] = [level_label(d, h) for d, h in zip(fit["drafter"], fit["hardware"])]
    fit["_pair"] = [pair_label(v, d) for v, d in zip(fit["verifier"], fit["drafter"])]
    fit["_pd"] = fit["_pair"] + " | " + fit["dataset"]
    fit["_dep"] = [deployment_label(p, h) for p, h in zip(fit["_pd"], fit["hardware"])]
    vh = sorted(fit["_vh"].unique())
    dh = sorted(fit.loc[spec, "_dh"].unique())
    pairs = sorted(fit["_pair"].unique())  # all pairs, k = 0 baselines included (tails)
    spec_pairs = sorted(fit.loc[spec, "_pair"].unique())
    pds = sorted(fit.loc[spec, "_pd"].unique())
    deployments = sorted(fit.loc[spec, "_dep"].unique())
    fit["_cfg"] = [configuration_level_label(*row) for row in
                   zip(fit["verifier"], fit["drafter"], fit["hardware"], fit["dataset"], fit["k"])]
    configurations = sorted(fit["_cfg"].unique())

    first = lambda col, key, levels: fit.drop_duplicates(key).set_index(key).loc[levels, col]  # noqa: E731
    idx = {
        "run_vh": _codes(fit["_vh"], vh),
        "verifier_hw_verifier": _codes(first("verifier", "_vh", vh), verifiers),
        "verifier_hw_hardware": _codes(first("hardware", "_vh", vh), hardware),
        "run_pair": _codes(fit["_pair"], pairs),
        "run_configuration": _codes(fit["_cfg"], configurations),
    }
    # Runs without speculation point at level 0 of the drafter arrays; k = 0 zeroes every
    # drafter term, so those levels receive no information from them.
    sub = fit.loc[spec]
    idx["run_dh"] = np.where(spec, np.maximum(_codes(fit["_dh"], dh), 0), 0)
    idx["run_spec_pair"] = np.where(spec, np.maximum(_codes(fit["_pair"], spec_pairs), 0), 0)
    idx["run_pd"] = np.where(spec, np.maximum(_codes(fit["_pd"], pds), 0), 0)
    idx["run_deployment"] = np.where(spec, np.maximum(_codes(fit["_dep"], deployments), 0), 0)
    if len(sub):
        idx["drafter_hw_drafter"] = _codes(first("drafter", "_dh", dh), drafters)
        idx["drafter_hw_hardware"] = _codes(first("hardware", "_dh", dh), hardware)
        idx["pd_dataset"] = _codes(first("dataset", "_pd", pds), datasets)
        idx["pd_drafter"] = _codes(first("drafter", "_pd", pds), drafters)
        idx["spec_pair_drafter"] = _codes(first("drafter", "_pair", spec_pairs), drafters)
        idx["deployment_pair_dataset"] = _codes(first("_pd", "_dep", deployments), pds)

    log_q = moe_log_q(verifiers, models)
    moe_verifiers = [v for v, q in zip(verifiers, log_q) if np.isfinite(q)]
    run_v = _codes(fit["verifier"], verifiers)
    idx["run_moe"] = np.maximum(_codes(fit["verifier"], moe_verifiers), 0)

    is_open = (fit["load_type"] == "rate").to_numpy()
    rate = arrival_rate(fit, open_loop_rate)
    x = {
        "k": fit["k"].to_numpy(float),
        "prompt_len": fit["prompt_len"].to_numpy(float),
        "output_len": fit["output_len"].to_numpy(float),
        "is_open": is_open.astype(float),
        "rate": np.where(is_open, rate.to_numpy(float), 0.0),
        "concurrency": np.where(is_open, 1.0, closed_loop_load(fit).to_numpy(float)),
    }
    streams = fit["concurrency"].to_numpy(float)
    drained = ~is_open & (x["concurrency"] < 0.95 * streams)
    if drained.any():
        share = x["concurrency"][drained] / streams[drained]
        log.info(f"{int(drained.sum())} closed-loop runs drained at the end: their requests saw {share.min():.2f}-"
                 f"{share.max():.2f} of their streams in flight (in_flight_seen), the load they are fitted at, e.g. "
                 f"{fit['run_id'].to_numpy()[drained][0]}")
    x["moe_on"] = np.isfinite(log_q[run_v]).astype(float)
    x["moe_log_q"] = np.where(np.isfinite(log_q[run_v]), log_q[run_v], np.log(0.5))  # dense rows: any finite value
    x["drafter_z"] = drafter_predictor_matrix(drafters, models, list(drafter_predictors))
    tau, tau_se = observed_acceptance(fit)
    replayed = replayed_acceptance(fit)
    if replayed.any():
        log.info(f"{int(replayed.sum())} runs repeat another run's acceptance counts of the same configuration "
                 f"exactly (the same requests replayed at another load): their acceptance counts once, e.g. "
                 f"{fit['run_id'].to_numpy()[replayed.to_numpy()][0]}")
        tau = tau.mask(replayed)
    x["acceptance_replayed"] = replayed.to_numpy(float)
    # acceptance counts per draft; a proposer that drafts at only some decode steps speeds up the rest less
    x["draft_share"] = draft_share(fit, fit)
    sparse = fit.assign(_share=x["draft_share"])[(fit["k"] > 0) & (x["draft_share"] < 1.0)]
    if not sparse.empty:
        shares = sparse.groupby(sparse["drafter"].astype(str))["_share"].agg(["min", "max"])
        log.info("drafters that draft at only some decode steps (no match found at the others; acceptance counts "
                 "per draft): " + ", ".join(f"{d} {r['min']:.2f}-{r['max']:.2f}" for d, r in shares.iterrows()))
    x["drafter_pivot"] = measured_pivot(fit, drafters, tau)
    spec_ks = fit[fit["k"] > 0].groupby(fit["drafter"].astype(str))["k"].nunique()
    x["drafter_ks"] = np.array([float(spec_ks.get(d, 0)) for d in drafters])  # draft lengths measured
    x["speculation_identified"] = speculation_identified(fit, vh)
    x["rate"] = np.nan_to_num(x["rate"])
    x["concurrency"] = np.nan_to_num(x["concurrency"], nan=1.0)
    censored = fit["censored"].to_numpy(bool)
    cap = batch_cap(fit).to_numpy(float)
    x["has_cap"] = np.isfinite(cap).astype(float)
    x["slots"] = np.where(np.isfinite(cap), cap, 1.0)
    x["recompute"] = recompute_tokens(fit)
    x["arrival_cv2"] = arrival_cv2_of(fit["arrival_cv2"] if "arrival_cv2" in fit else np.full(len(fit), np.nan))
    x["sat_rate"] = np.where(censored, fit["rate_rps"].to_numpy(float) if "rate_rps" in fit else 0.0, 0.0)
    x["rate"] = np.where(censored, 0.0, x["rate"])

    obs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def add(name: str, values: pd.Series, steady_only: bool = True) -> None:
        v = values.to_numpy(float)
        rows = np.flatnonzero(np.isfinite(v) & (v > 0) & ~(censored & steady_only))
        if rows.size:
            obs[name] = (rows, v[rows])

    add("latency", fit["latency_mean_s"])
    # relative standard error of each run mean where the run's own spread is known (has_spread): from
    # its requests' autocorrelation (latency_se_s) where given, else as if they were independent; the
    # model gives the others one from its per-request tail shape and n_requests
    sd = fit["latency_sd_s"] if "latency_sd_s" in fit else pd.Series(np.nan, index=fit.index)
    se = sd / fit["latency_mean_s"] / np.sqrt(fit["n_requests"])
    if "latency_se_s" in fit:
        se = (fit["latency_se_s"].astype(float) / fit["latency_mean_s"]).fillna(se)
    se = se.to_numpy(float)
    x["has_spread"] = np.isfinite(se).astype(float)
    x["latency_rel_se"] = np.nan_to_num(se)
    x["n_requests"] = fit["n_requests"].to_numpy(float)
    ttft = fit["ttft_mean_s"] if "ttft_mean_s" in fit else pd.Series(np.nan, index=fit.index)
    if "ttft_p50_s" in fit:
        ttft = ttft.fillna(fit["ttft_p50_s"])
    add("ttft", ttft)
    if "prefill_ms_per_token" in fit:
        add("prefill", fit["prefill_ms_per_token"])
    if "tpot_mean_s" in fit:
        add("tpot", fit["tpot_mean_s"].where(fit["latency_mean_s"].isna()))
    add("tau", tau, steady_only=False)  # acceptance is a per-token rate: a saturated run measures it too
    slope, slope_se = observed_decay(fit, tau)
    slope = slope.mask(replayed)
    if (rows := np.flatnonzero(np.isfinite(slope.to_numpy()))).size:
        obs["decay"] = (rows, slope.to_numpy()[rows])
    x["decay_se"] = slope_se.fillna(0.0).to_numpy(float)
    per_drafter = fit.assign(_pos=slope.notna(), _precision=(1.0 / slope_se**2).where(slope.notna(), 0.0))[
        fit["k"] > 0].groupby(fit["drafter"].astype(str))
    runs_with, precision = per_drafter["_pos"].sum(), per_drafter["_precision"].sum()
    x["drafter_position_runs"] = np.array([float(runs_with.get(d, 0)) for d in drafters])
    with np.errstate(divide="ignore"):
        x["drafter_position_se"] = 1.0 / np.sqrt(np.array([float(precision.get(d, 0.0)) for d in drafters]))
    add("saturated", pd.Series(censored.astype(float)), steady_only=False)
    x["tau_se"] = tau_se.fillna(0.0).to_numpy(float)
    if "latency_sd_s" in fit:
        add("tail_cv", fit["latency_sd_s"] / fit["latency_mean_s"])
    for col in TAIL_QUANTILES:
        if col in fit:
            add(col, fit[col] / fit["latency_mean_s"])

    coords = {
        "run": fit["run_id"].astype(str).tolist(),
        "verifier": verifiers,
        "drafter": drafters,
        "hardware": hardware,
        "dataset": datasets,
        "verifier_hw": vh,
        "drafter_hw": dh,
        "pair": pairs,
        "spec_pair": spec_pairs,
        "pair_dataset": pds,
        "deployment": deployments,
        "configuration": configurations,
        "coef": list(COEFS),
        "vcoef": list(VERIFIER_COEFS),
        "dcoef": list(DRAFTER_COEFS),
        "moe_verifier": moe_verifiers,
        "drafter_predictor": list(drafter_predictors),
    }
    return FitData(runs=fit.drop(columns=["_vh", "_dh", "_pair", "_pd", "_dep", "_cfg"]), excluded=excluded,
                   coords=coords, idx=idx, x=x, obs=obs)
