"""Whether a fitted :class:`~bayes_sd.model.LatencyModel`'s posterior can be trusted: its sampling
attempts, R-hat, ESS and divergences, and, where the chains did not mix, where they disagree and how
much that moves the predictions. A mixin of ``LatencyModel``: it reads ``idata``, ``fit_data`` and
``_require_fit`` of the model."""

from __future__ import annotations

import json
import warnings
from typing import Self

import arviz as az
import pandas as pd
import xarray as xr

from bayes_sd._stats import (
    CONVERGENCE,
    CONVERGENCE_FIGURES,
    chain_agreement_text,
    convergence,
    convergence_stats,
    convergence_text,
)
from bayes_sd.model import chains as _chains
from bayes_sd.model.sampling import sampled_attempts

__all__ = ["ConvergenceWarning", "PosteriorDiagnostics"]


class ConvergenceWarning(UserWarning):
    """R-hat, effective sample size or divergences say the posterior is not to be trusted yet."""


class PosteriorDiagnostics:
    """Convergence and chain-agreement methods of :class:`~bayes_sd.model.LatencyModel`."""

    @property
    def fit_attempts(self) -> list[dict]:
        """The sampling attempts of :meth:`fit` (one unless ``retries`` was used): per attempt its
        ``tune``, ``target_accept``, ``max_tree_depth``, ``random_seed``, its figures of :meth:`diagnostics`,
        ``seconds`` of sampling and ``kept`` (whether the posterior is this attempt's, or a pool's: ``pooled``)."""
        self._require_fit()
        return json.loads(self.idata.attrs.get("fit_attempts", "[]"))

    def summary(self, var_names: list[str] | None = None) -> pd.DataFrame:
        """``az.summary`` of the named parameters (default: every stored parameter).

        Parameters
        ----------
        var_names : list of str, optional
            Parameters to summarise (default: every stored parameter).

        Returns
        -------
        pandas.DataFrame
            One row per parameter element; columns ``mean``, ``sd``, ``hdi_3%``, ``hdi_97%``,
            ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``.

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        self._require_fit()
        return az.summary(self.idata, var_names=var_names)

    def convergence_stats(self) -> dict[str, xr.Dataset]:
        """R-hat and bulk/tail ESS of every stored parameter element.

        An element fixed at 0 (the cost deviation of a drafter with a single verifier) has no R-hat: NaN.

        Returns
        -------
        dict of str to xarray.Dataset
            ``rhat``, ``ess_bulk``, ``ess_tail``: datasets shaped like the posterior (without chain and draw).

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        self._require_fit()
        return convergence_stats(self.idata.posterior)

    def diagnostics(self) -> dict:
        """Convergence figures: max R-hat, min bulk/tail ESS, divergences, draws, and whether all pass.

        Returns
        -------
        dict
            ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` (over the elements that have an R-hat),
            ``divergences``, ``chains``, ``draws`` (per chain) and ``converged``: every figure within
            the thresholds of :data:`bayes_sd._stats.CONVERGENCE`. Computed once per posterior (R-hat
            and ESS of every element take seconds on a large one).

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        self._require_fit()
        cached = getattr(self, "_diagnostics", None)
        if cached is None or cached[0] is not self.idata.posterior:
            cached = self._diagnostics = (self.idata.posterior, convergence(self.idata))
        return dict(cached[1])

    def _remember_diagnostics(self, figures: dict) -> None:
        """Cache ``figures``, :func:`~bayes_sd._stats.convergence` of the current posterior computed elsewhere
        (the sampling loop), as :meth:`diagnostics`' answer: R-hat and ESS of every element again would take
        seconds on a large posterior."""
        self._diagnostics = (self.idata.posterior, {key: figures[key] for key in CONVERGENCE_FIGURES})

    def check_convergence(self) -> dict:
        """Warn (``ConvergenceWarning``) when any diagnostic is off; return the diagnostics.

        Returns
        -------
        dict
            The figures of :meth:`diagnostics`.

        Raises
        ------
        ValueError
            When the model is not fitted.

        Warns
        -----
        ConvergenceWarning
            When any figure is outside :data:`bayes_sd._stats.CONVERGENCE`; the message names the fix.
        """
        d = self.diagnostics()
        if not d["converged"]:
            warnings.warn(
                f"posterior not yet trustworthy: max R-hat {d['max_rhat']:.3f} (want <= {CONVERGENCE['max_rhat']}), "
                f"min ESS bulk {d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f} "
                f"(want >= {CONVERGENCE['min_ess']}), "
                f"{d['divergences']} divergences (want {CONVERGENCE['max_divergences']}). "
                "Fix: more draws/tune, or a higher target_accept",
                ConvergenceWarning, stacklevel=2)
        return d

    def chain_agreement(self, max_draws: int = 200, seed: int = 0) -> dict:
        """Where the chains disagree most, and what it does to the fitted runs' predicted latency.

        Chains that did not mix (a multimodal posterior, or a chain stuck apart) may still agree on
        what matters: :func:`bayes_sd._stats.chain_groups` names the worst parameter and the groups of
        chains that agree on it; each chain's posterior median of every fitted run's mean latency then
        says how far apart the chains' predictions are.

        Parameters
        ----------
        max_draws : int, default 200
            Draws per chain for the predictions (a random subset).
        seed : int, default 0
            Seed of the subset.

        Returns
        -------
        dict
            ``parameter``, ``chain_means`` and ``groups`` of :func:`~bayes_sd._stats.chain_groups`;
            ``chain_logp``: each chain's mean log density (None when the sampler does not store it);
            ``latency_spread_max`` and ``latency_spread_median``: over the fitted runs finite in every
            chain, (largest - smallest chain median) / median of the chain medians (a share; 0 with
            one chain).

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        self._require_fit()
        cached = getattr(self, "_agreement", None)
        if cached is None or cached[0] is not self.idata.posterior or cached[1] != (max_draws, seed):
            cached = self._agreement = (self.idata.posterior, (max_draws, seed),
                                        _chains.chain_agreement(self, max_draws, seed))
        return dict(cached[2])

    def with_chains(self, chains: list[int]) -> Self:
        """This fitted model with only the posterior's ``chains`` (indices from 0): what each group of
        chains that did not mix says on its own (:meth:`chain_agreement`). Shares the training data."""
        self._require_fit()
        return _chains.with_chains(self, chains)

    def diagnostics_text(self) -> str:
        """One line: converged or not, R-hat, ESS, divergences, runs fitted and excluded; when not
        converged, where the chains disagree and how much it moves the fitted runs' predictions
        (:meth:`chain_agreement`).

        Returns
        -------
        str
            E.g. ``"converged: 4 chains x 1000 draws; max R-hat 1.003, ...; 46 runs fitted, 2 excluded"``.

        Raises
        ------
        ValueError
            When the model is not fitted.
        """
        n_censored = int(self.fit_data.runs["censored"].sum()) if "censored" in self.fit_data.runs else 0
        d = self.diagnostics()
        text = (f"{convergence_text(d)}; {self.fit_data.n_runs} runs fitted"
                + (f" ({n_censored} of them saturated, as censored)" if n_censored else "")
                + f", {len(self.fit_data.excluded)} excluded")
        tried = self.fit_attempts
        if len(tried) > 1:
            text += "; tried " + ", then ".join(
                f"tune {a['tune']} at target acceptance {a['target_accept']:g} (max R-hat {a['max_rhat']:.3f}"
                + (f", {a['seconds']:.0f} s)" if "seconds" in a else ")") for a in sampled_attempts(tried))
            pooled = [a for a in tried if "pooled" in a]
            if pooled:
                text += (f"; pooled the chains of attempts {', '.join(str(i + 1) for i in pooled[0]['pooled'])} "
                         f"(none diverged): {pooled[0]['chains']} chains")
        if "fit_retries_stopped" in self.idata.attrs:
            text += "; " + self.idata.attrs["fit_retries_stopped"]
        if not d["converged"] and d["chains"] > 1:
            text += "; " + chain_agreement_text(self.chain_agreement())
        return text
