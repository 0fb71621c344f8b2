"""Constant versus decaying per-position acceptance on the REAL batch-1 EAGLE k-sweeps.

    python bench/acceptance_positions.py [--draws 1000] [--tune 1000] [--chains 4] [--seed 0]

Data: vLLM issue #20780 (``data/real/eagle_bs1_runs.csv``, source
``vllm_issue20780_eagle_k_sweep``): acceptance length of EAGLE-1 and EAGLE-3 drafting for
Llama-3.1-8B-Instruct at batch 1, k = 2..7. Prints, for both forms of
``bayes_sd.model.acceptance_curve``:

1. convergence (R-hat, ESS, divergences) and the posterior of a1 and decay, all k fitted;
2. PSIS-LOO comparison on all k (elpd, se, elpd difference and its se, stacking weight);
3. held-out: fit k = 2..6, predict k = 7 per drafter (error of the posterior mean, 90%
   predictive interval of a new measurement, coverage);
4. the parameterisation check behind ``bayes_sd.theory.acceptance``: least-squares fits of the
   logit-linear and the geometric (``a_j = a1 r^(j-1)``) decay, RMSE on all k and the
   k = 7 error when fitted on k <= 6.
"""

from __future__ import annotations

import argparse
import time
import warnings

import arviz as az
import numpy as np
import pandas as pd
from _machine import machine_line  # bench/ is on sys.path when a script runs
from scipy.optimize import minimize

from bayes_sd.datasets import load_eagle_bs1_runs
from bayes_sd.model import acceptance_curve as af
from bayes_sd.theory import tau_per_position
from bayes_sd.theory.acceptance import expit, tau_decaying


def _tau_geometric(a1, r, k):
    return np.array([tau_per_position(a1 * r ** np.arange(int(kk))) for kk in k])


# (logit a1, second parameter) -> tau(k); geometric r = exp(-p[1]) <= 1 keeps a_j <= a1 <= 1
_PRED = {"logit-linear": lambda p, k: tau_decaying(expit(p[0]), p[1], k),
         "geometric": lambda p, k: _tau_geometric(expit(p[0]), np.exp(-p[1]), k)}


def _least_squares(form: str, k: np.ndarray, tau: np.ndarray) -> np.ndarray:
    loss = lambda p: np.sum((_PRED[form](p, k) - tau) ** 2)  # noqa: E731
    return minimize(loss, [1.0, 0.05], method="Nelder-Mead", options=dict(xatol=1e-9, fatol=1e-14, maxiter=4000)).x


def parameterisation_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per drafter and form: least-squares a1 and decay parameter (logit units per position, or
    -log r), RMSE on all k (tokens), and the error at the largest k when fitted on the others."""
    rows = []
    for d, g in table.groupby("drafter"):
        k, tau = g["k"].to_numpy(float), g["tau"].to_numpy(float)
        train, k_top = k < k.max(), int(k.max())
        for form, pred in _PRED.items():
            p_all, p_tr = _least_squares(form, k, tau), _least_squares(form, k[train], tau[train])
            rows.append({"drafter": d, "form": form, "a1": expit(p_all[0]), "decay_param": p_all[1],
                         "rmse_all_k": np.sqrt(np.mean((pred(p_all, k) - tau) ** 2)),
                         f"err_k{k_top}_from_k<{k_top}": pred(p_tr, k[~train])[0] - tau[~train][0]})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fit_kw = dict(draws=args.draws, tune=args.tune, chains=args.chains)
    pd.set_option("display.width", 200)
    fmt = lambda x: f"{x:.4g}"  # noqa: E731
    t0 = time.perf_counter()
    print(f"{machine_line('acceptance_positions')}  {args.chains} chains x ({args.tune}+{args.draws})  "
          f"seed={args.seed}")
    table = af.acceptance_table(load_eagle_bs1_runs(), source=af.EAGLE_K_SWEEP_SOURCE)
    print(f"REAL data: {len(table)} runs from {af.EAGLE_K_SWEEP_SOURCE} (vLLM issue #20780), "
          f"drafters {sorted(table['drafter'].unique())}, k = {int(table['k'].min())}..{int(table['k'].max())}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = {form: af.fit_acceptance_curve(table, form, random_seed=args.seed + i, **fit_kw)
                for i, form in enumerate(af.FORMS)}
    print("\n1. all k fitted: convergence and posterior (90% intervals)")
    for form, idata in fits.items():
        d = af.diagnostics(idata)
        print(f"  {form:9s} max R-hat {d['max_rhat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f} / tail "
              f"{d['min_ess_tail']:.0f}, {d['divergences']} divergences, converged={d['converged']}")
        for name in ("a1", "decay") if form == "decaying" else ("a1",):
            iv = af.posterior_interval(idata, name)
            for drafter, r in iv.iterrows():
                print(f"      {name:5s} {drafter:20s} mean {r['mean']:.3f}  90% [{r['q5%']:.3f}, {r['q95%']:.3f}]")
        sr = af.posterior_draws(idata, "sigma_rel").to_numpy()
        print(f"      sigma_rel (relative noise of tau) mean {sr.mean():.4f}  90% "
              f"[{np.quantile(sr, 0.05):.4f}, {np.quantile(sr, 0.95):.4f}]")

    print("\n2. PSIS-LOO on all k (elpd_loo: higher is better)")
    cmp = af.compare_forms(fits)
    print(cmp[["rank", "elpd_loo", "se", "elpd_diff", "dse", "weight", "p_loo", "warning"]].to_string(float_format=fmt))
    for form, idata in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pk = az.loo(idata, pointwise=True).pareto_k.values
        print(f"  {form}: max Pareto k {pk.max():.2f} ({int((pk > 0.7).sum())} of {pk.size} points above 0.7)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held, held_fits = af.holdout_eval(table, random_seed=args.seed + 10, **fit_kw)
    print("\n3. held out: fit k = 2..6, predict k = 7 (tokens per step; interval = 90% predictive)")
    for form, idata in held_fits.items():
        d = af.diagnostics(idata)
        print(f"  {form:9s} fit on k <= 6: max R-hat {d['max_rhat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f} / "
              f"tail {d['min_ess_tail']:.0f}, {d['divergences']} divergences")
    print(held.to_string(index=False, float_format=fmt))
    for form, g in held.groupby("form", sort=False):
        print(f"  {form}: mean |error| {g['error'].abs().mean():.4f} tokens, coverage {g['covered'].mean():.0%}")

    print("\n4. parameterisation check (least squares, no priors)")
    print(parameterisation_check(table).to_string(index=False, float_format=fmt))
    print(f"\nwall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
