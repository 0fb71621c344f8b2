"""Population means of a cost pair sampled along and across the ridge that a small sweep leaves them on.

Two costs often enter the data only through one sum, ``a + b R``:

- prefill: a run's time to first token and its prefill load carry ``p0 + p1 P`` (ms; ``P`` prompt
  tokens, ``p0`` per request, ``p1`` per prompt token). A sweep at one prompt length pins that sum.
- verification: a verify pass of ``T`` tokens costs ``v0 + v1 T`` (ms; ``v0`` per pass, ``v1`` per
  sequence-token). A first sweep of one server at a few draft lengths and light loads carries passes of
  a few tokens each, and the drafters' per-step costs grow with ``k`` as ``v1`` does: the sum at the
  runs' typical tokens per pass is pinned, ``v1`` is bounded only from above.

On the log scale either posterior is an L-shaped ridge: ``log a`` pinned while ``log b`` runs off low
into its prior, and ``log b`` pinned while ``log a`` does. NUTS with a diagonal metric crosses the corner
slowly (the real llama.cpp sweep at 65-token prompts: R-hat 1.30, bulk ESS 6, chains at p1 = 1.0 and
0.1 ms; with p1 measured, bulk ESS 116-365 on ``v1`` in five seeds).

The same prior is sampled in coordinates along and across the ridge instead, at a reference ``R``::

    t = log(exp(log a) + exp(log b) R)      log cost at R (what the data pin)
    u = log b + log R - log a               log-odds of the per-unit share of it

and back ``log a = t - softplus(u)``, ``log b = t + u - softplus(u) - log R``. The Jacobian determinant
of the map is 1, so the prior (and the posterior) on the two means is unchanged; only where the sampler
walks is. Used where the ridge is: the fit has one verifier x hardware, whose costs are these means
(with several, each level's costs sit around the means, hierarchically centred, and split means would tie
them through a curve), and both priors are Normal; for prefill also prompt lengths within
:data:`RIDGE_PROMPT_SPREAD` (varied prompts split p0 from p1 themselves: on prompts of 470-820 tokens, a
synthetic single-server fleet, the split gave a notebook's short fit a stuck chain), and for verification
the dense verifier form (the knee and MoE forms put ``v0`` in a pass's tokens otherwise).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

__all__ = ["CostSplit", "prefill_means", "verify_means", "reference_prompt_len", "reference_tokens_per_pass",
           "RIDGE_PROMPT_SPREAD"]

#: largest / smallest prompt length up to which the fitted runs count as one prompt length (tokenizers and
#: templates move it a little), which cannot split p0 from p1
RIDGE_PROMPT_SPREAD = 1.25


class CostSplit(Transform):
    """``(log a, log b)`` on the last axis <-> ``(log(a + b R), logit of the share b R / (a + b R))``.

    Parameters
    ----------
    log_ref : float
        ``log R``: log of the reference units (prompt tokens, tokens per verify pass).
    """

    name = "costsplit"  # no underscore: PyMC strips the last "_<name>__" to find the variable

    def __init__(self, log_ref: float):
        self.log_ref = float(log_ref)

    def forward(self, value, *inputs):
        log_a, log_b_ref = value[..., 0], value[..., 1] + self.log_ref
        total = pt.logaddexp(log_a, log_b_ref)
        return pt.stack([total, log_b_ref - log_a], axis=-1)

    def backward(self, value, *inputs):
        total, share_logit = value[..., 0], value[..., 1]
        log_a = total - pt.softplus(share_logit)
        return pt.stack([log_a, log_a + share_logit - self.log_ref], axis=-1)

    def log_jac_det(self, value, *inputs):
        return pt.zeros_like(value)


def _geometric_mean(units: np.ndarray) -> float:
    units = np.maximum(np.asarray(units, dtype=float), 1.0)
    return float(np.exp(np.mean(np.log(units)))) if units.size else 1.0


def reference_prompt_len(prompt_len: np.ndarray) -> float:
    """``P_ref`` (tokens): the geometric mean of the fitted runs' prompt lengths, at least 1."""
    return _geometric_mean(prompt_len)


def reference_tokens_per_pass(k: np.ndarray, is_open: np.ndarray, rate: np.ndarray, concurrency: np.ndarray,
                              latency: np.ndarray) -> float:
    """``T_ref`` (tokens): the geometric mean over runs of a verify pass's tokens, ``B (k + 1)``, with the
    batch ``B`` the concurrency (closed loop) or, by Little's law, rate (requests/s) x mean latency (s)
    (open loop; 1 where the latency is missing), at least 1."""
    batch = np.where(np.asarray(is_open) > 0, np.nan_to_num(np.asarray(rate) * np.asarray(latency), nan=1.0),
                     np.asarray(concurrency, dtype=float))
    return _geometric_mean(np.maximum(batch, 1.0) * (np.asarray(k, dtype=float) + 1.0))


def _split_means(cfg: dict, coefs: tuple[str, str], name: str, dim: str, log_ref: float):
    specs = [cfg["priors"][f"mu_{c}"] for c in coefs]
    if any(spec.get("dist") != "Normal" for spec in specs):
        return None
    model = pm.modelcontext(None)
    if dim not in model.coords:
        model.add_coord(dim, list(coefs))
    joint = pm.Normal(name, mu=[float(s["mu"]) for s in specs], sigma=[float(s["sigma"]) for s in specs],
                      dims=dim, transform=CostSplit(log_ref))
    return pm.Deterministic(f"mu_{coefs[0]}", joint[0]), pm.Deterministic(f"mu_{coefs[1]}", joint[1])


def prefill_means(cfg: dict, prompt_len: np.ndarray, levels: int):
    """``(mu_p0, mu_p1)``, log ms, inside a model context: one variable ``mu_prefill`` (dim ``pcoef``)
    sampled through :class:`CostSplit` at ``P_ref``, stored as ``mu_p0`` and ``mu_p1``, when the fit has one
    verifier x hardware (``levels``), prompt lengths (tokens) within :data:`RIDGE_PROMPT_SPREAD` of each
    other and both priors Normal; else ``None`` (the caller samples them as configured)."""
    prompt = np.maximum(np.asarray(prompt_len, dtype=float), 1.0)
    if levels != 1 or (prompt.size and prompt.max() > RIDGE_PROMPT_SPREAD * prompt.min()):
        return None
    return _split_means(cfg, ("p0", "p1"), "mu_prefill", "pcoef", np.log(reference_prompt_len(prompt)))


def verify_means(cfg: dict, levels: int, tokens_per_pass: float):
    """``(mu_v0, mu_v1)``, log ms, inside a model context: one variable ``mu_verify`` (dim ``vsplit``)
    sampled through :class:`CostSplit` at ``tokens_per_pass`` (:func:`reference_tokens_per_pass`), stored
    as ``mu_v0`` and ``mu_v1``, when the fit has one verifier x hardware (``levels``), the configuration's
    verifier form is dense and both priors are Normal; else ``None``."""
    if levels != 1 or cfg.get("model", {}).get("verifier_form", "dense") != "dense":
        return None
    return _split_means(cfg, ("v0", "v1"), "mu_verify", "vsplit", np.log(max(tokens_per_pass, 1.0)))
