"""The population means of the prefill costs, sampled where a sweep of one prompt length can find them.

A run's time to first token and its prefill load carry ``p0 + p1 P`` (ms; ``P`` prompt tokens). A
sweep at one prompt length pins that sum and leaves the split between ``p0`` (per request) and ``p1``
(per prompt token) to the priors: on the log scale the posterior is an L-shaped ridge, ``log p0``
pinned while ``log p1`` runs off low, and ``log p1`` pinned while ``log p0`` does. NUTS with a
diagonal metric crosses the corner of that L slowly (the real llama.cpp sweep at 65-token prompts:
R-hat 1.30, bulk ESS 6, chains at p1 = 1.0 and 0.1 ms).

The same prior is sampled in coordinates along and across the ridge instead, at the fitted runs'
geometric-mean prompt length ``P_ref``::

    t = log(exp(log p0) + exp(log p1) P_ref)      log prefill at P_ref (what the data pin)
    u = log p1 + log P_ref - log p0               log-odds of the per-token share of it

and back ``log p0 = t - softplus(u)``, ``log p1 = t + u - softplus(u) - log P_ref``. The Jacobian
determinant of the map is 1, so the prior (and the posterior) on ``mu_p0``, ``mu_p1`` is unchanged;
only where the sampler walks is. Used where the ridge is: the fit has one verifier x hardware, whose
prefill costs are these means, its prompt lengths span less than :data:`RIDGE_PROMPT_SPREAD`, and both
priors are Normal. With several servers each level's costs sit around the means (hierarchically
centred) and split means would tie them through a curve; with prompt lengths that vary the data split
the two themselves. Where it was used on prompts of 470-820 tokens (a synthetic single-server fleet, a
notebook's short fit) a chain got stuck (78 divergences, against none).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

__all__ = ["PrefillSplit", "prefill_means", "reference_prompt_len", "RIDGE_PROMPT_SPREAD"]

#: largest / smallest prompt length up to which the fitted runs count as one prompt length (tokenizers and
#: templates move it a little), which cannot split p0 from p1
RIDGE_PROMPT_SPREAD = 1.25


class PrefillSplit(Transform):
    """``(log p0, log p1)`` on the last axis <-> ``(log prefill at P_ref, logit of its per-token share)``.

    Parameters
    ----------
    log_ref_prompt : float
        ``log P_ref``, log tokens.
    """

    name = "prefillsplit"  # no underscore: PyMC strips the last "_<name>__" to find the variable

    def __init__(self, log_ref_prompt: float):
        self.log_ref_prompt = float(log_ref_prompt)

    def forward(self, value, *inputs):
        log_p0, log_per_token = value[..., 0], value[..., 1] + self.log_ref_prompt
        total = pt.logaddexp(log_p0, log_per_token)
        return pt.stack([total, log_per_token - log_p0], axis=-1)

    def backward(self, value, *inputs):
        total, share_logit = value[..., 0], value[..., 1]
        log_p0 = total - pt.softplus(share_logit)
        return pt.stack([log_p0, log_p0 + share_logit - self.log_ref_prompt], axis=-1)

    def log_jac_det(self, value, *inputs):
        return pt.zeros_like(value)


def reference_prompt_len(prompt_len: np.ndarray) -> float:
    """``P_ref`` (tokens): the geometric mean of the fitted runs' prompt lengths, at least 1."""
    prompt = np.maximum(np.asarray(prompt_len, dtype=float), 1.0)
    return float(np.exp(np.mean(np.log(prompt)))) if prompt.size else 1.0


def prefill_means(cfg: dict, prompt_len: np.ndarray, levels: int):
    """``(mu_p0, mu_p1)``, log ms, inside a model context: one variable ``mu_prefill`` (dim ``pcoef``)
    sampled through :class:`PrefillSplit`, stored as ``mu_p0`` and ``mu_p1``, when the fit has one
    verifier x hardware (``levels``), prompt lengths (tokens) within :data:`RIDGE_PROMPT_SPREAD` of each
    other and both priors Normal; else ``None`` (the caller samples them as configured)."""
    specs = [cfg["priors"][name] for name in ("mu_p0", "mu_p1")]
    prompt = np.maximum(np.asarray(prompt_len, dtype=float), 1.0)
    if levels != 1 or (prompt.size and prompt.max() > RIDGE_PROMPT_SPREAD * prompt.min()):
        return None
    if any(spec.get("dist") != "Normal" for spec in specs):
        return None
    model = pm.modelcontext(None)
    if "pcoef" not in model.coords:
        model.add_coord("pcoef", ["p0", "p1"])
    joint = pm.Normal("mu_prefill", mu=[float(s["mu"]) for s in specs], sigma=[float(s["sigma"]) for s in specs],
                      dims="pcoef", transform=PrefillSplit(np.log(reference_prompt_len(prompt_len))))
    return pm.Deterministic("mu_p0", joint[0]), pm.Deterministic("mu_p1", joint[1])
