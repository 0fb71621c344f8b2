"""Does a qualifier pay? The best PyramidSD cascade against the best plain SD, per load.

For every posterior draw (of :func:`bayes_sd.cascade.model.posterior_params`, or any dict of
the same shape) and every load, the mean latency (s) of

- plain drafter -> verifier SD for each ``k`` in ``0..k_max`` (the two-stage baseline: the
  same verifier/drafter costs and the drafter -> verifier acceptance ``a_dv``), and
- the cascade for each ``(k_draft, k_qual)`` in ``1..k_draft_max x 1..k_qual_max``

comes from :mod:`bayes_sd.cascade.theory`. Each family's configuration is chosen by *expected*
mean latency over the draws (never at the posterior mean); a configuration that saturates
in some draws has infinite expected latency, and ties (all saturated) go to the lower
P(saturated). The verdict compares the two chosen configurations by expected latency:
"qualifier pays" when the cascade's is lower. ``p_cascade_faster`` is the share of draws
in which the chosen cascade beats the chosen plain configuration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_sd._stats import quantile
from bayes_sd.cascade import theory as pyr
from bayes_sd.model.conditions import load_axis

__all__ = ["PAYS", "DOES_NOT_PAY", "compare_pyramid", "qualifier_stops_paying"]

PAYS = "qualifier pays"
DOES_NOT_PAY = "qualifier does not pay"


def _draw_array(x, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, float)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}, expected a scalar or ({n},) draws. "
                         "Fix: give one value per posterior draw, or one number")
    return a


def _params(idata, params, a_dv, max_draws, seed) -> dict:
    if (idata is None) == (params is None):
        raise ValueError("give exactly one of idata (from pyramid_fit.fit_pyramid) or params "
                         "(dict with costs, qcosts, a_dq, a_qv, a_dv)")
    if idata is not None:
        from bayes_sd.cascade.model import posterior_params
        params = posterior_params(idata, max_draws=max_draws, seed=seed)
    p = dict(params)
    for key in ("costs", "qcosts", "a_dq", "a_qv"):
        if key not in p:
            raise ValueError(f"params lacks '{key}'. Fix: pass the dict of pyramid_fit.posterior_params")
    n = np.size(p["a_dq"])
    if a_dv is not None:
        p["a_dv"] = a_dv
    if p.get("a_dv") is None:
        raise ValueError("no drafter -> verifier acceptance a_dv: the fit had no plain runs. "
                         "Fix: pass a_dv= (a number or one value per draw), or fit with plain runs")
    for key in ("a_dq", "a_qv", "a_dv"):
        p[key] = _draw_array(p[key], n, key)
    p["n"] = n
    return p


def _col(x):
    """Draws along axis 0, loads and configurations along the trailing axes."""
    return np.asarray(x, float).reshape(-1, 1, 1)


def _choose(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per load, the option with the lowest expected latency (ties: lower P(saturated)).

    ``lat`` is (draw, load, option); returns (index, expected latency, P(saturated)) per load.
    """
    mean = lat.mean(axis=0)
    p_sat = (~np.isfinite(lat)).mean(axis=0)
    best = np.array([np.lexsort((p_sat[i], mean[i]))[0] for i in range(mean.shape[0])], dtype=int)
    idx = np.arange(mean.shape[0])
    return best, mean[idx, best], p_sat[idx, best]


def compare_pyramid(idata=None, *, params: dict | None = None, prompt_len: float, output_len: float,
                    rates=None, concurrencies=None, k_max: int = 8, k_draft_max: int = 6, k_qual_max: int = 6,
                    a_dv=None, max_draws: int | None = 1000, seed: int = 0, prob: float = 0.9) -> pd.DataFrame:
    """One row per load: the best plain SD and the best cascade, and whether the qualifier pays.

    Parameters
    ----------
    idata : arviz.InferenceData, optional
        From :func:`bayes_sd.cascade.model.fit_pyramid`; give exactly one of ``idata`` and ``params``.
    params : dict, optional
        ``costs``, ``qcosts``, ``a_dq``, ``a_qv``, ``a_dv`` as numbers or per-draw arrays.
    prompt_len, output_len : float
        Mean prompt and output length, tokens.
    rates : array-like of float, optional
        Open-loop request rates, requests/s.
    concurrencies : array-like of float, optional
        Closed-loop streams; give exactly one of ``rates`` and ``concurrencies``.
    k_max : int, default 8
        Plain SD draft lengths ``0..k_max`` (tokens).
    k_draft_max, k_qual_max : int, default 6
        Cascade configurations ``1..k_draft_max x 1..k_qual_max``.
    a_dv : float or array-like, optional
        Overrides or supplies the drafter -> verifier acceptance (needed when the fit had no plain runs).
    max_draws : int or None, default 1000
        Posterior draws used (with ``idata``).
    seed : int, default 0
        Seed of the draw subset.
    prob : float, default 0.9
        Mass of the central latency intervals, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        Columns: the load (``rate_rps`` in requests/s or ``concurrency``), ``best_plain_k``,
        ``plain_latency_mean_s`` with its central ``prob`` interval (``_lo_s``, ``_hi_s``; s),
        ``best_k_draft``, ``best_k_qual``, ``cascade_latency_mean_s`` (``_lo_s``, ``_hi_s``; s),
        ``speedup`` (plain / cascade expected latency), ``p_cascade_faster``, ``verdict``
        (``"qualifier pays"`` or ``"qualifier does not pay"``).

    Raises
    ------
    ValueError
        Unless exactly one of ``idata``/``params`` and of ``rates``/``concurrencies`` is given; for bad
        ``k`` bounds or ``prob``, a ``params`` dict lacking a key, no ``a_dv``, or per-draw arrays of the
        wrong shape.
    """
    load_col, _, loads = load_axis(rates, concurrencies)
    if min(k_max, k_draft_max, k_qual_max) < 0 or min(k_draft_max, k_qual_max) < 1:
        raise ValueError("need k_max >= 0, k_draft_max >= 1 and k_qual_max >= 1 (draft lengths in tokens)")
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    p = _params(idata, params, a_dv, max_draws, seed)
    load_kw = {"rate" if rates is not None else "concurrency": loads.reshape(1, -1, 1)}
    costs, qc = p["costs"], p["qcosts"]
    c_draw = type(costs)(**{f: (_col(getattr(costs, f)) if getattr(costs, f) is not None else None)
                            for f in costs.__dataclass_fields__})
    q_draw = pyr.PyramidCosts(q0=_col(qc.q0), q1=_col(qc.q1))

    ks = np.arange(k_max + 1, dtype=float).reshape(1, 1, -1)
    plain = pyr.plain_latency(c_draw, ks, _col(p["a_dv"]), prompt_len, output_len, **load_kw)
    grid = [(kd, kq) for kd in range(1, k_draft_max + 1) for kq in range(1, k_qual_max + 1)]
    kd = np.array([g[0] for g in grid], float).reshape(1, 1, -1)
    kq = np.array([g[1] for g in grid], float).reshape(1, 1, -1)
    casc = pyr.pyramid_latency(c_draw, q_draw, kd, kq, _col(p["a_dq"]), _col(p["a_qv"]), prompt_len,
                               output_len, **load_kw)
    plain = np.broadcast_to(plain, (p["n"], loads.size, ks.size))
    casc = np.broadcast_to(casc, (p["n"], loads.size, len(grid)))

    with np.errstate(invalid="ignore"):
        bp, mp, sp = _choose(plain)
        bc, mc, sc = _choose(casc)
    idx = np.arange(loads.size)
    lp, lc = plain[:, idx, bp], casc[:, idx, bc]
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        speedup = np.where(np.isfinite(mc), mp / mc, np.where(np.isfinite(mp), 0.0, np.nan))
    pays = (mc < mp) | ((mc == mp) & (sc < sp))
    return pd.DataFrame({
        load_col: loads,
        "best_plain_k": bp.astype(int),
        "plain_latency_mean_s": mp, "plain_latency_lo_s": quantile(lp, lo), "plain_latency_hi_s": quantile(lp, hi),
        "best_k_draft": [grid[j][0] for j in bc], "best_k_qual": [grid[j][1] for j in bc],
        "cascade_latency_mean_s": mc, "cascade_latency_lo_s": quantile(lc, lo),
        "cascade_latency_hi_s": quantile(lc, hi),
        "speedup": speedup, "p_cascade_faster": (lc < lp).mean(axis=0),
        "verdict": np.where(pays, PAYS, DOES_NOT_PAY),
    })


def qualifier_stops_paying(table: pd.DataFrame):
    """The lowest load in a :func:`compare_pyramid` table from which on the qualifier no longer
    pays (every higher load says so too), or None when it pays at the highest load."""
    load_col = "rate_rps" if "rate_rps" in table.columns else "concurrency"
    t = table.sort_values(load_col)
    pays = (t["verdict"] == PAYS).to_numpy()
    if pays[-1]:
        return None
    last_pay = np.flatnonzero(pays)
    start = last_pay[-1] + 1 if last_pay.size else 0
    return float(t[load_col].iloc[start])
