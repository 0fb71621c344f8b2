"""Summaries over posterior draws shared by every part of the package.

- :func:`quantile`: quantiles over draws that stay right when draws are infinite (an open-loop
  server past its saturation rate has infinite latency); :func:`interval_bounds`: the two
  quantiles of a central interval.
- :func:`convergence`: R-hat, effective sample sizes and divergences of a posterior, judged
  against :data:`CONVERGENCE` (one set of thresholds for every PyMC model of the package);
  :func:`chain_groups`: where chains that did not mix disagree, and which chains agree.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

__all__ = ["CONVERGENCE", "CONVERGENCE_FIGURES", "quantile", "interval_bounds", "convergence_stats", "convergence",
           "convergence_text", "chain_groups", "chain_agreement_text"]

#: What a trustworthy posterior shows (Vehtari et al. 2021, "Rank-normalization, folding, and
#: localization"): R-hat at most 1.01, bulk and tail ESS at least 400, no divergent transition.
CONVERGENCE = {"max_rhat": 1.01, "min_ess": 400, "max_divergences": 0}


def quantile(x, q, axis: int | None = 0, *, skipna: bool = False):
    """The ``q`` quantile(s) of ``x`` over draws (``axis``), without interpolation.

    ``method="inverted_cdf"`` returns an observed draw, so a quantile that falls on a saturated
    (``inf``) draw is ``inf``, and never ``inf - inf = NaN`` as interpolation would give.
    ``skipna=True`` ignores NaN draws (NaN where every draw is NaN).
    """
    x = np.asarray(x, float)
    if not skipna:
        return np.quantile(x, q, axis=axis, method="inverted_cdf")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        return np.nanquantile(x, q, axis=axis, method="inverted_cdf")


def interval_bounds(prob: float) -> tuple[float, float]:
    """The quantiles ``((1 - prob) / 2, (1 + prob) / 2)`` of a central ``prob`` interval;
    ValueError unless ``0 < prob < 1``."""
    if not 0 < prob < 1:
        raise ValueError(f"hdi_prob must be in (0, 1), got {prob}")
    return (1 - prob) / 2, (1 + prob) / 2


def convergence_stats(posterior: xr.Dataset) -> dict[str, xr.Dataset]:
    """R-hat and bulk/tail ESS of every element of ``posterior`` (``rhat``, ``ess_bulk``,
    ``ess_tail``: datasets shaped like it, without chain and draw). An element that never
    moves (a deviation fixed at 0) has no R-hat: NaN."""
    import arviz as az

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"rhat": az.rhat(posterior), "ess_bulk": az.ess(posterior, method="bulk"),
                "ess_tail": az.ess(posterior, method="tail")}


def _flat(ds: xr.Dataset) -> np.ndarray:
    values = [np.ravel(v.values) for v in ds.data_vars.values()]
    return np.concatenate(values) if values else np.array([])


#: the figures :func:`convergence` returns
CONVERGENCE_FIGURES = ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "chains", "draws", "converged")


def convergence(idata, var_names: list[str] | None = None) -> dict:
    """Convergence figures of ``idata``'s posterior (``var_names``, default every variable).

    Returns ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` over the elements that have an
    R-hat (elements that never move are left out), ``divergences``, ``chains``, ``draws`` and
    ``converged``: every figure within :data:`CONVERGENCE`.
    """
    post = idata.posterior if var_names is None else idata.posterior[list(var_names)]
    stats = convergence_stats(post)
    r, eb, et = (_flat(stats[key]) for key in ("rhat", "ess_bulk", "ess_tail"))
    ok = np.isfinite(r)
    sample_stats = idata.sample_stats if "sample_stats" in idata.groups() else {}
    div = int(sample_stats["diverging"].sum()) if "diverging" in sample_stats else 0
    out = {
        "max_rhat": float(np.max(r[ok])) if ok.any() else float("nan"),
        "min_ess_bulk": float(np.nanmin(eb[ok])) if ok.any() else float("nan"),
        "min_ess_tail": float(np.nanmin(et[ok])) if ok.any() else float("nan"),
        "divergences": div,
        "chains": int(post.sizes["chain"]),
        "draws": int(post.sizes["draw"]),
    }
    out["converged"] = bool(out["max_rhat"] <= CONVERGENCE["max_rhat"]
                            and min(out["min_ess_bulk"], out["min_ess_tail"]) >= CONVERGENCE["min_ess"]
                            and div <= CONVERGENCE["max_divergences"])
    return out


def convergence_text(d: dict) -> str:
    """One line from :func:`convergence`'s figures: converged or not, R-hat, ESS, divergences."""
    return (f"{'converged' if d['converged'] else 'NOT converged'}: {d['chains']} chains x {d['draws']} draws; "
            f"max R-hat {d['max_rhat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f}, tail {d['min_ess_tail']:.0f}; "
            f"{d['divergences']} divergences")


def chain_groups(posterior: xr.Dataset, rhat: xr.Dataset | None = None, separation: float = 4.0) -> dict:
    """Where the chains of ``posterior`` disagree most, and which of them agree there.

    The element with the largest R-hat (``rhat``: :func:`convergence_stats`' ``"rhat"``, computed when
    None); its per-chain means, sorted, start a new group wherever two neighbours are more than
    ``separation`` within-chain sds (the largest chain's sd) apart. Chains in separate modes of a
    multimodal posterior form separate groups; chains that mix slowly around one mode form one.

    Returns
    -------
    dict
        ``parameter`` (``"name[label, ...]"``), ``chain_means`` (one per chain, in chain order) and
        ``groups`` (lists of chain indices, ordered by their mean); ``parameter`` is None when no
        element has an R-hat (a single chain).
    """
    rhat = convergence_stats(posterior)["rhat"] if rhat is None else rhat
    best, where = -np.inf, None
    for name, da in rhat.data_vars.items():
        values = np.asarray(da.values, float)
        if values.size and np.isfinite(values).any() and np.nanmax(values) > best:
            best, where = float(np.nanmax(values)), (name, np.unravel_index(int(np.nanargmax(values)), values.shape))
    chains = list(range(posterior.sizes["chain"]))
    if where is None:
        return {"parameter": None, "chain_means": [], "groups": [chains]}
    name, index = where
    dims = rhat[name].dims
    x = posterior[name].isel(dict(zip(dims, index)))
    labels = [str(posterior[d].values[i]) if d in posterior.coords else str(i) for d, i in zip(dims, index)]
    means, sds = x.mean("draw").values, x.std("draw").values
    order = np.argsort(means)
    scale = max(float(np.max(sds)), 1e-12)
    groups, current = [], [int(order[0])]
    for prev, nxt in zip(order[:-1], order[1:]):
        if means[nxt] - means[prev] > separation * scale:
            groups.append(current)
            current = []
        current.append(int(nxt))
    groups.append(current)
    return {"parameter": f"{name}[{', '.join(labels)}]" if labels else name,
            "chain_means": [float(m) for m in means], "groups": [sorted(g) for g in groups]}


def chain_agreement_text(agreement: dict) -> str:
    """One clause from a model's chain agreement (``LatencyModel.chain_agreement``): the parameter the
    chains disagree on most, their groups, and how far apart their predictions of the fitted runs are."""
    if agreement["parameter"] is None:
        return "one chain: no chain to compare"
    groups = agreement["groups"]
    means = "/".join(f"{m:.3g}" for m in agreement["chain_means"])
    listed = " | ".join(",".join(str(c + 1) for c in g) for g in groups)  # chains numbered from 1
    where = f"the chains split into {len(groups)} groups ({listed})" if len(groups) > 1 else \
        "the chains overlap but mix slowly"
    text = f"{where} on {agreement['parameter']} (chain means {means})"
    if np.isfinite(agreement.get("latency_spread_max", np.nan)):
        text += (f"; the fitted runs' mean latency differs between chains by up to "
                 f"{100 * agreement['latency_spread_max']:.1f}% "
                 f"(median {100 * agreement['latency_spread_median']:.1f}%)")
    return text
