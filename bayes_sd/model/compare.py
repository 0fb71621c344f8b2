"""Compare model configurations (variants in ``models/``) on the same runs: LOO and held-out error.

Used to decide whether a variant (MoE verifiers, drafter predictors, per-position acceptance)
earns its extra structure on a data set: each configuration is fitted to the same training
runs, compared by PSIS-LOO of the run-mean latencies (``az.compare``), and scored on held-out
runs by the error of its posterior median and the coverage of its 90% predictive interval.
"""

from __future__ import annotations

import time
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd._stats import quantile
from bayes_sd.model.conditions import CONDITION_COLUMNS as COND
from bayes_sd.model.fit_data import KNEE_FORMS, OPEN_LOOP_BATCHES, arrival_rate
from bayes_sd.model.latency_model import ConvergenceWarning, LatencyModel

__all__ = ["hold_out_highest_load", "score_held_out", "compare_configs", "loo_caveat", "support_reading",
           "choose_form", "compare_forms", "attach_comparison", "form_comparison", "FORM_GROUP"]

#: the group of a saved posterior that holds the comparison of the forms fitted to its runs
FORM_GROUP = "form_comparison"
#: columns of the comparison table kept with the posterior and shown in the report
FORM_COLUMNS = ["rank", "elpd_loo", "se", "elpd_diff", "dse", "weight", "warning", "converged", "comparable"]
#: a lead of at least this many standard errors of the elpd difference switches away from the requested form
SWITCH_Z = 2.0
#: an elpd difference under this is small whatever its standard error (Vehtari's cross-validation FAQ: the
#: normal approximation of its error is poor there, and the forms predict alike)
SMALL_ELPD = 4.0


def hold_out_highest_load(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the test runs are the highest load level of every configuration."""
    key = ["verifier", "drafter", "hardware", "dataset", "k", "load_type"]
    load = runs["rate_rps"].fillna(runs["concurrency"])
    top = load == load.groupby([runs[c] for c in key]).transform("max")
    return runs[~top].reset_index(drop=True), runs[top].reset_index(drop=True)


def score_held_out(model: LatencyModel, test: pd.DataFrame, max_draws: int = 1000) -> dict:
    """Error of the posterior median of mean latency on steady-state ``test`` runs, and 90% coverage.

    Returns ``runs``, ``mape`` (fraction), ``max_ape`` and ``cover90`` (fraction of runs whose
    observed mean lies inside the 90% predictive interval of a new run's mean).
    """
    ok = ~test["saturated"].fillna(False).astype(bool) & test["latency_mean_s"].notna()
    test = test[ok].reset_index(drop=True)
    y = test["latency_mean_s"].to_numpy(float)
    dr = model.predict_draws(test[COND], max_draws=max_draws, seed=0, models=None)
    q = {p: quantile(dr.latency_pred, p) for p in (0.05, 0.5, 0.95)}
    ape = np.abs(q[0.5] / y - 1.0)
    return {"runs": len(test), "mape": float(np.mean(ape)), "max_ape": float(np.max(ape)),
            "cover90": float(np.mean((y >= q[0.05]) & (y <= q[0.95])))}


def compare_configs(train: pd.DataFrame, test: pd.DataFrame | None, configs: dict[str, str | dict], *,
                    models: pd.DataFrame | None = None, draws: int | None = None, tune: int | None = None,
                    chains: int | None = None, random_seed: int = 1, nuts_sampler: str = "nutpie",
                    progressbar: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, LatencyModel]]:
    """Fit every configuration to ``train``; return (LOO comparison, per-config table, fitted models).

    Each is sampled with the settings that converge it (:meth:`LatencyModel.fit`: its ``[sampling]``
    table), ``draws``, ``tune`` and ``chains`` overriding them where given. The LOO table is
    ``az.compare`` over run-mean latencies (rank 0 = best expected log predictive density). The
    per-config table has fit time (s), convergence, and the held-out scores of :func:`score_held_out`
    when ``test`` is given.
    """
    fitted, rows = {}, []
    for name, cfg in configs.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = LatencyModel(cfg).fit(train, models=models, draws=draws, tune=tune, chains=chains,
                                      random_seed=random_seed, progressbar=progressbar, nuts_sampler=nuts_sampler)
        fit_s = time.perf_counter() - t0
        d = m.diagnostics()
        row = {"config": name, "fit_s": fit_s, "max_rhat": d["max_rhat"], "min_ess_bulk": d["min_ess_bulk"],
               "divergences": d["divergences"], "elpd_loo": None, "pareto_k_over_0.7": None}  # from the LOO below
        if test is not None and len(test):
            row.update({f"held_out_{k}": v for k, v in score_held_out(m, test).items()})
        rows.append(row)
        fitted[name] = m
    comparison, loos = _loo_compare(fitted)
    for row in rows:  # Pareto-k warnings are reported in the table
        loo = loos[row["config"]]
        row.update({"elpd_loo": float(loo.elpd_loo), "pareto_k_over_0.7": int(np.sum(np.asarray(loo.pareto_k) > 0.7))})
    return comparison, pd.DataFrame(rows), fitted


def _loo_compare(fitted: dict[str, LatencyModel]) -> tuple[pd.DataFrame, dict]:
    """``az.compare`` of the fitted models' run-mean latencies (PSIS-LOO) and each one's pointwise
    ``az.loo``, after checking that every one scores the same runs."""
    rows = {n: tuple(m.fit_data.coords["run"][r] for r in m.fit_data.obs["latency"][0]) for n, m in fitted.items()}
    if len(set(rows.values())) > 1:
        raise ValueError("the configurations fit different runs' latencies, so their elpd does not compare. Fix: "
                         "give them the same saturated_runs rule and runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto-k warnings are in the table's warning column
        loos = {n: m.loo(pointwise=True) for n, m in fitted.items()}
        return az.compare(loos), loos


def choose_form(pointwise: dict[str, np.ndarray], converged: dict[str, bool], comparable: dict[str, bool],
                requested: str) -> tuple[str, str]:
    """The form to keep, and why, from pointwise PSIS-LOO elpd of the same runs (``loo_i`` per form).

    The requested form stays unless another one that is comparable (:func:`loo_caveat`) and has
    converged at least as well leads it by :data:`SWITCH_Z` standard errors of the pairwise elpd
    difference and by :data:`SMALL_ELPD` at least, or unless the requested form has not converged and
    another has: then the best converged one by elpd (the first given where none compares), whatever
    its lead and whether or not the requested form's elpd compares: an unconverged posterior's answers
    are not to be trusted, and convergence needs no elpd.
    A form whose elpd is not comparable is otherwise never chosen over another, nor is the requested
    one left for it.
    """
    def lead(name: str) -> tuple[float, float]:
        d = np.asarray(pointwise[name]) - np.asarray(pointwise[requested])
        return float(d.sum()), float(np.sqrt(len(d) * np.var(d)))

    def elpd(name: str) -> float:
        return float(np.sum(pointwise[name]))

    settled = [n for n in pointwise if n != requested and converged[n]]
    if settled and not converged[requested]:
        scored = [n for n in settled if comparable[n]]
        best = max(scored, key=elpd) if scored else settled[0]
        why = f"{requested} did not converge and {best} did, so {best} is the fitted form"
        if comparable[requested] and comparable[best]:
            diff, se = lead(best)
            return best, f"{why} (its elpd {diff:+.1f} +- {se:.1f} against {requested})."
        return best, f"{why}."
    if not comparable[requested]:
        return requested, (f"{requested}'s elpd does not compare with the others' (see its caveat), so it stays "
                           "the fitted form.")
    rivals = [n for n in pointwise if n != requested and comparable[n] and converged[n] >= converged[requested]]
    if not rivals:
        return requested, f"{requested} stays the fitted form: no other comparable form converged as well."

    best = max(rivals, key=elpd)
    diff, se = lead(best)
    if diff >= max(SWITCH_Z * se, SMALL_ELPD):
        return best, (f"{best} leads {requested} by {diff:.1f} +- {se:.1f} elpd ({diff / se if se else np.inf:.1f} "
                      f"standard errors, at least {SWITCH_Z:g}), so {best} is the fitted form.")
    if diff < 0:
        return requested, (f"{requested} stays the fitted form: it leads the best other, {best}, by {-diff:.1f} +- "
                           f"{se:.1f} elpd.")
    return requested, (f"{requested} stays the fitted form: the best other, {best}, is ahead by {diff:.1f} +- "
                       f"{se:.1f} elpd, under {SWITCH_Z:g} standard errors or {SMALL_ELPD:g} elpd.")


def compare_forms(fitted: dict[str, LatencyModel], requested: str) -> tuple[pd.DataFrame, str, str]:
    """Compare forms fitted to the same runs; return (table, the form to keep, a reading).

    The table is ``az.compare``'s (index: form) with ``converged`` and ``comparable`` (no
    :func:`loo_caveat`); the form to keep follows :func:`choose_form`; the reading says which form the
    runs support and how strongly (:func:`support_reading`), every caveat and convergence failure, and
    which form was kept and why.
    """
    if requested not in fitted:
        raise ValueError(f"the requested form {requested!r} is not among the fitted {sorted(fitted)}")
    comparison, loos = _loo_compare(fitted)
    caveats = {n: loo_caveat(m) for n, m in fitted.items()}
    converged = {n: bool(m.diagnostics()["converged"]) for n, m in fitted.items()}
    pointwise = {n: np.asarray(loo.loo_i) for n, loo in loos.items()}
    chosen, why = choose_form(pointwise, converged, {n: c is None for n, c in caveats.items()}, requested)
    table = comparison.assign(converged=[converged[n] for n in comparison.index],
                              comparable=[caveats[n] is None for n in comparison.index])[FORM_COLUMNS]
    notes = [c for c in caveats.values() if c]
    notes += [f"{n} has not converged: its elpd is not to be trusted." for n, ok in converged.items() if not ok]
    scored = [n for n in comparison.index if caveats[n] is None]  # a form whose elpd does not compare grades none
    if len(scored) == len(comparison):
        support = support_reading(comparison)
    elif len(scored) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            support = support_reading(az.compare({n: loos[n] for n in scored}))
    else:
        support = "No two of these forms' elpd compare, so PSIS-LOO cannot say which form the runs support."
    return table, chosen, " ".join([support, *notes, why])


def attach_comparison(model: LatencyModel, table: pd.DataFrame, reading: str) -> None:
    """Keep a form comparison (:func:`compare_forms`) in ``model.idata`` (group :data:`FORM_GROUP`), so it is
    saved with the posterior and the report shows it."""
    model._require_fit()
    ds = xr.Dataset({c: ("form", table[c].to_numpy(dtype=float)) for c in FORM_COLUMNS},
                    coords={"form": [str(n) for n in table.index]}, attrs={"reading": reading})
    if FORM_GROUP in model.idata.groups():
        delattr(model.idata, FORM_GROUP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a group outside ArviZ's schema, like fit_data
        model.idata.add_groups({FORM_GROUP: ds})


def form_comparison(model: LatencyModel) -> tuple[pd.DataFrame, str] | None:
    """(table, reading) of the forms compared on the model's runs (:func:`attach_comparison`), or None."""
    if model.idata is None or FORM_GROUP not in model.idata.groups():
        return None
    ds = getattr(model.idata, FORM_GROUP)
    table = ds.to_dataframe()[FORM_COLUMNS]
    table = table.astype({"rank": int, "warning": bool, "converged": bool, "comparable": bool})
    table.index = table.index.astype(str)
    return table, str(ds.attrs.get("reading", ""))


def loo_caveat(model: LatencyModel) -> str | None:
    """Why ``model``'s PSIS-LOO cannot be compared with another configuration's on its runs, or None.

    A roofline form that counts an open-loop run's tokens per pass at its measured batch
    (``open_loop_batch = "measured"``, rate x observed latency) puts the observed latency inside its
    own mean: its log-likelihood is not the density of a generative model, and its elpd is not on the
    same footing as a generative configuration's.
    """
    opts = model.config.get("model", {})
    if opts.get("verifier_form") not in KNEE_FORMS or opts.get("open_loop_batch", OPEN_LOOP_BATCHES[0]) != "measured":
        return None
    rows = model.fit_data.obs.get("latency", (np.array([], int),))[0]
    n_open = int((model.fit_data.x["is_open"][rows] > 0).sum())
    if n_open == 0:
        return None
    return (f"{model.config.get('name', '?')}: {n_open} open-loop runs enter with their tokens per pass counted at the "
            "measured batch (open_loop_batch = 'measured'), so the observed latency sits inside its own mean and its "
            "elpd is not comparable. Fix: compare on closed-loop runs, or set [model] open_loop_batch = 'iterated'")


def support_reading(comparison: pd.DataFrame) -> str:
    """One paragraph from ``az.compare``'s table: which configuration the data support, and how strongly.

    The best is compared with each other one by the elpd difference and its standard error: a
    difference under :data:`SMALL_ELPD` or under :data:`SWITCH_Z` standard errors does not tell them apart.
    """
    best = comparison.index[0]
    parts = []
    for name, row in comparison.iloc[1:].iterrows():
        diff, dse = float(row["elpd_diff"]), float(row["dse"])
        z = diff / dse if dse > 0 else np.inf
        strength = ("not distinguishable" if z < SWITCH_Z or diff < SMALL_ELPD
                    else "clearly" if z >= 4 else "moderately")
        parts.append(f"over {name} by {diff:.1f} +- {dse:.1f} elpd ({strength}; {z:.1f} standard errors)")
    weights = ", ".join(f"{n} {w:.2f}" for n, w in comparison["weight"].items())
    warn = [n for n, w in comparison["warning"].items() if bool(w)]
    text = (f"The runs support {best} " + "; ".join(parts) + f". Stacking weights: {weights}."
            if parts else f"Only {best} was compared.")
    if warn:
        text += (f" PSIS-LOO warns for {', '.join(warn)} (Pareto k > 0.7 on some runs): its elpd is uncertain "
                 "beyond its standard error.")
    return text


def tokens_per_pass(runs: pd.DataFrame) -> pd.Series:
    """Mean tokens in a verify pass of each run, ``B (k + 1)``, with ``B`` the concurrency (closed
    loop) or achieved rate x mean latency (open loop, Little's law over the run's window, where the
    completions per second are the achieved rate)."""
    rate = arrival_rate(runs, "achieved")
    batch = np.where(runs["load_type"] == "rate", rate * runs["latency_mean_s"], runs["concurrency"])
    return pd.Series(batch * (runs["k"].to_numpy(float) + 1.0), index=runs.index, name="tokens_per_pass")


def elpd_difference_by_tokens(fitted: dict[str, LatencyModel], better: str, worse: str,
                              bins=(0, 8, 32, 128, np.inf)) -> pd.DataFrame:
    """Where one configuration predicts better: pointwise PSIS-LOO elpd of ``better`` minus
    ``worse`` on run-mean latency, summed and averaged per bin of tokens per verify pass."""
    a, b = fitted[better], fitted[worse]
    la, lb = a.loo(pointwise=True), b.loo(pointwise=True)
    runs = a.fit_data.runs
    rows = a.idata.log_likelihood["latency_obs"].coords["latency_run"].values
    t = tokens_per_pass(runs.set_index("run_id").loc[rows].reset_index())
    diff = pd.Series(np.asarray(la.loo_i) - np.asarray(lb.loo_i), name="elpd_diff")
    group = pd.cut(t, bins=list(bins), right=False)
    out = diff.groupby(group, observed=True).agg(["count", "sum", "mean"])
    out.index = out.index.astype(str)
    out.index.name = "tokens per verify pass"
    return out.rename(columns={"count": "runs", "sum": f"elpd {better} - {worse}", "mean": "per run"})
