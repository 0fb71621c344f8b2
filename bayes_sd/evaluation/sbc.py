"""Simulation-based calibration (Talts et al. 2018) of a model configuration on its own generative model.

For a fixed design (the runs' conditions), each replication draws the parameters from the prior,
simulates every observed quantity from the likelihood (``pm.sample_prior_predictive``), fits the
model to that simulated data, and records the rank of each true parameter value among ``L`` posterior
draws. If the model and the sampler are right, every rank is uniform on ``0..L``; a U shape says the
posterior is too narrow, a hump too wide, a slope biased. The model is compiled once (its observed
arrays are ``pm.Data`` containers) and refitted per replication.

The design is SYNTHETIC: the conditions of :func:`bayes_sd.simulate.designs.recovery_runs` (one
verifier and drafter, k in {0, 2, 4, 7}, closed and open loop, two prompt lengths). A replication
whose prior draw puts an open-loop run of the design at or past its saturation rate is skipped and
counted, as is one whose simulated data are not finite: a benchmark flags such a run saturated and the
fit never sees it, so SBC checks the model on the prior restricted to draws that keep every design run
in steady state (a condition on the parameters alone, so the ranks stay uniform when the posterior
puts negligible mass past saturation, as it does given steady-state data).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from bayes_sd._stats import convergence
from bayes_sd.model import LatencyModel
from bayes_sd.model.fit_data import KNEE_FORMS, OPEN_LOOP_BATCHES
from bayes_sd.model.sampling import compile_nutpie, sample_compiled
from bayes_sd.simulate.designs import TRUE_COSTS, TRUE_ROOFLINE_COSTS, recovery_runs

__all__ = ["sbc_design", "run_sbc", "rank_uniformity", "SBC_RATE_SCALE"]


#: SBC's open-loop rates, as a fraction of the recovery design's: the design is fixed before the prior
#: is drawn, and at the recovery rates most prior draws put a run past saturation (7 of 10 skipped)
SBC_RATE_SCALE = 0.2


def sbc_design(config: str | dict = "default", n_requests: int = 40, seed: int = 0,
               rate_scale: float = SBC_RATE_SCALE) -> pd.DataFrame:
    """The runs whose conditions (and whose observation pattern) SBC simulates: the recovery design,
    with the knee's truth for the roofline forms (the simulated values replace every observation), its
    open-loop rates times ``rate_scale``. A roofline form whose open-loop likelihood counts the tokens
    per pass at the measured batch (``open_loop_batch = "measured"``) is not a generative model of
    open-loop runs, so its design keeps the closed-loop runs only."""
    opts = LatencyModel(config).config.get("model", {})
    form = opts.get("verifier_form", "dense")
    costs = TRUE_ROOFLINE_COSTS if form in KNEE_FORMS else TRUE_COSTS
    runs = recovery_runs(seed, n_requests=n_requests, costs=costs)
    runs = runs.assign(rate_rps=runs["rate_rps"] * rate_scale)
    if form in KNEE_FORMS and opts.get("open_loop_batch", OPEN_LOOP_BATCHES[0]) == "measured":
        runs = runs[runs["load_type"] == "concurrency"].reset_index(drop=True)
    return runs


def _scalars(values: np.ndarray, name: str, coords: list) -> dict[str, float]:
    flat = np.ravel(values)
    labels = [name] if flat.size == 1 else [f"{name}[{c}]" for c in coords]
    return dict(zip(labels, flat))


def run_sbc(config: str | dict = "default", *, runs: pd.DataFrame | None = None, n_reps: int = 10,
            draws: int = 200, tune: int = 300, chains: int = 2, thin_to: int = 99, seed: int = 0,
            params: tuple[str, ...] = ("mu_log_cost", "sigma_latency"), progress=None) -> pd.DataFrame:
    """Ranks of the true values of ``params`` among ``thin_to`` posterior draws, per replication.

    Parameters
    ----------
    config : str or dict, default "default"
        Model configuration (a name in ``models/``, a path or a dict).
    runs : pandas.DataFrame, optional
        The design (default :func:`sbc_design` of ``config``).
    n_reps : int, default 10
        Replications (the bench runs about 200; the CI smoke test 10).
    draws, tune, chains : int
        Sampling per replication (nutpie).
    thin_to : int, default 99
        Posterior draws a rank is taken among (evenly thinned): ranks run from 0 to ``thin_to``.
    seed : int, default 0
        Seed of the prior draws and of the fits.
    params : tuple of str
        Free parameters (or deterministics computed from them) whose elements are ranked.
    progress : callable, optional
        Wraps the replications (e.g. a progress bar).

    Returns
    -------
    pandas.DataFrame
        One row per (replication, parameter element): ``rep``, ``param``, ``truth``, ``rank``,
        ``L`` (= ``thin_to``), ``max_rhat`` and ``divergences`` of that replication's fit; replications
        skipped (a design run past saturation, or non-finite simulated data) are counted in
        ``attrs["skipped"]``.
    """
    lm = LatencyModel(config)
    runs = sbc_design(lm.config) if runs is None else runs
    model = lm.build(runs, observed_as_data=True)  # one graph: fit data and model together
    obs_names = [v.name for v in model.observed_RVs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(draws=n_reps, model=model, random_seed=seed)
    is_open, rate = lm.fit_data.x["is_open"] > 0, lm.fit_data.x["rate"]
    capacity = prior.prior["saturation_rps"].values[0]  # (draw, run), requests/s
    past_saturation = (is_open[None, :] & (rate[None, :] >= capacity)).any(axis=1)
    compiled = compile_nutpie(model)
    rows, skipped = [], 0
    reps = range(n_reps) if progress is None else progress(range(n_reps))
    for i in reps:
        data = {f"{name}_data": np.asarray(prior.prior_predictive[name].values[0, i], float) for name in obs_names}
        if past_saturation[i] or not all(np.all(np.isfinite(v)) for v in data.values()):
            skipped += 1
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = sample_compiled(compiled.with_data(**data), draws=draws, tune=tune, chains=chains, cores=chains,
                                   seed=seed * 1000 + i, target_accept=0.9)
        stats_ = post.sample_stats
        div = int(stats_["diverging"].sum()) if "diverging" in stats_ else 0
        rhat = convergence(post)["max_rhat"]
        for name in params:
            truth_da = prior.prior[name].isel(chain=0, draw=i)
            if name in post.posterior:
                draws_da = post.posterior[name]
            else:
                draws_da = pm.compute_deterministics(post.posterior, var_names=[name], model=model,
                                                     merge_dataset=False, progressbar=False)[name]
            flat = draws_da.stack(sample=("chain", "draw")).transpose("sample", ...).values
            flat = flat.reshape(flat.shape[0], -1)
            keep = np.linspace(0, flat.shape[0] - 1, thin_to).round().astype(int)
            coords = [str(c) for c in truth_da.coords[truth_da.dims[0]].values] if truth_da.dims else [name]
            truths = _scalars(truth_da.values, name, coords)
            for j, (label, truth) in enumerate(truths.items()):
                rows.append({"rep": i, "param": label, "truth": float(truth),
                             "rank": int((flat[keep, j] < truth).sum()), "L": thin_to, "max_rhat": rhat,
                             "divergences": div})
    out = pd.DataFrame(rows)
    out.attrs["skipped"] = skipped
    out.attrs["config"] = lm.config.get("name", "?")
    return out


def rank_uniformity(ranks: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """Per parameter: a chi-square test that its ranks are uniform (``bins`` equal bins of ``0..L``).

    Returns
    -------
    pandas.DataFrame
        ``param``, ``reps``, ``chi2``, ``p_value``, ``mean_rank_fraction`` (0.5 when unbiased) and the
        counts per bin (``bin_0`` ...).
    """
    out = []
    for param, g in ranks.groupby("param", sort=False):
        L = int(g["L"].iloc[0])
        frac = g["rank"].to_numpy() / (L + 1)
        counts = np.bincount(np.minimum((frac * bins).astype(int), bins - 1), minlength=bins)
        expected = len(g) / bins
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        out.append({"param": param, "reps": len(g), "chi2": chi2, "p_value": float(stats.chi2.sf(chi2, bins - 1)),
                    "mean_rank_fraction": float(frac.mean()),
                    **{f"bin_{b}": int(c) for b, c in enumerate(counts)}})
    return pd.DataFrame(out)

