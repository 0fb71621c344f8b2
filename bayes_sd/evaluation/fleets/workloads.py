"""Workloads: prompt lengths, output lengths that end at EOS, and how well a drafter guesses.

- **Prompts** come from a mixture of components that look like request logs rather than a smooth
  law: a fixed system prompt (one of a few template lengths) plus a user turn (gamma), long
  documents (a truncated Pareto tail), few-shot templates (a handful of fixed lengths with jitter).
- **Outputs** end when the model emits EOS. Each request has its own stopping hazard ``h`` (the
  chance that the next token is EOS: some requests want a word, some an essay), drawn from a Beta
  distribution; given ``h`` the number of tokens before EOS is geometric. The mixture (a
  beta-geometric law) has a heavy right tail; the server also stops at ``max_tokens``. The Beta's
  second parameter is solved so that the mean *after* the cut at ``max_tokens`` is the requested one.
- **Acceptance**: a request's drafter quality ``a1`` (probability that the first drafted token is
  accepted) is Beta-distributed around the pair's mean; deeper positions are accepted with
  ``a1 * r^(j - 1)`` given the ones before (``r``: the drafter's decay ratio); a request alternates
  between easy and hard stretches (a two-state Markov chain per step; hard stretches multiply the
  acceptance by ``hard_factor``). The n-gram drafter only proposes when the recent tokens match
  earlier text (probability ``match_probability`` per step, per request around the workload's).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "PromptComponent",
    "Workload",
    "AcceptanceProfile",
    "WORKLOADS",
    "prompt_lengths",
    "eos_output_lengths",
    "solve_stop_beta",
    "truncated_mean_output",
    "request_qualities",
]


@dataclass(frozen=True)
class PromptComponent:
    """One component of a prompt-length mixture.

    Parameters
    ----------
    weight : float
        Mixture weight (normalised over the components).
    kind : {"chat", "document", "template"}
        ``chat``: a system prompt (one of ``fixed`` lengths) plus a gamma user turn of mean ``mean``
        and shape ``shape``; ``document``: ``minimum`` plus a Pareto tail of index ``shape`` scaled to
        mean ``mean``; ``template``: one of ``fixed`` lengths plus a uniform jitter of +-``mean`` tokens.
    mean : float
        See ``kind``, tokens.
    shape : float
        Gamma shape or Pareto index.
    fixed : tuple of int
        Template or system-prompt lengths, tokens.
    minimum : int
        Shortest document, tokens.
    """

    weight: float
    kind: str
    mean: float = 200.0
    shape: float = 1.5
    fixed: tuple[int, ...] = (0,)
    minimum: int = 0


@dataclass(frozen=True)
class Workload:
    """A prompt set and its generation settings.

    Parameters
    ----------
    name : str
        Label written to ``runs.dataset``.
    prompt_mixture : tuple of PromptComponent
        Prompt-length mixture.
    output_mean_tokens : float
        Mean output tokens after the cut at ``max_tokens``.
    output_shape : float
        First Beta parameter of the stopping hazard (larger: output lengths closer to geometric; must
        exceed 1); smaller gives a heavier tail.
    max_tokens : int
        Generation cap, tokens.
    max_prompt_tokens : int
        Longest prompt, tokens (longer ones are cut).
    acceptance_scale : float
        Multiplies every model drafter's mean first-position acceptance on this workload.
    match_probability : float
        Mean probability per step that the n-gram drafter finds a match.
    ngram_quality : float
        Mean first-position acceptance of n-gram proposals when it does.
    """

    name: str
    prompt_mixture: tuple[PromptComponent, ...]
    output_mean_tokens: float
    output_shape: float
    max_tokens: int
    max_prompt_tokens: int = 8000
    acceptance_scale: float = 1.0
    match_probability: float = 0.4
    ngram_quality: float = 0.6


@dataclass(frozen=True)
class AcceptanceProfile:
    """How one drafter guesses one verifier's tokens on one workload.

    Parameters
    ----------
    first_mean : float
        Mean over requests of ``a1``, the probability that the first drafted token is accepted.
    concentration : float
        Beta concentration of ``a1`` over requests (``alpha + beta``; smaller: more spread).
    decay_ratio : float
        ``r``: position ``j`` is accepted with probability ``a1 * r^(j - 1)`` given positions ``< j``.
    hard_factor : float
        Acceptance multiplier in hard stretches.
    to_hard, to_easy : float
        Per-step probabilities of switching easy -> hard and hard -> easy.
    match_probability : float
        Probability per step that the drafter proposes at all (1 for model drafters).
    match_concentration : float
        Beta concentration of the per-request match probability.
    """

    first_mean: float
    concentration: float = 12.0
    decay_ratio: float = 0.92
    hard_factor: float = 0.55
    to_hard: float = 0.08
    to_easy: float = 0.25
    match_probability: float = 1.0
    match_concentration: float = 6.0

    def expected_tokens_per_step(self, k: int) -> float:
        """Mean tokens a step emits at draft length ``k`` for the mean request in the stationary
        easy/hard mix, bonus token included (``1 + sum_j prod_{i<=j} a_i``), ignoring ``max_tokens``.

        Parameters
        ----------
        k : int
            Draft length.

        Returns
        -------
        float
            Tokens per verify step (1 at ``k = 0``).
        """
        hard_share = self.to_hard / (self.to_hard + self.to_easy)
        total = 0.0
        for factor, share in ((1.0, 1.0 - hard_share), (self.hard_factor, hard_share)):
            a1 = min(self.first_mean * factor, 0.99)
            prod, acc = 1.0, 0.0
            for j in range(k):
                prod *= min(a1 * self.decay_ratio**j, 0.99)
                acc += prod
            total += share * acc
        return 1.0 + self.match_probability * total


def prompt_lengths(rng: np.random.Generator, n: int, mixture: tuple[PromptComponent, ...],
                   max_prompt_tokens: int = 8000) -> np.ndarray:
    """Draw ``n`` prompt lengths from a mixture (see :class:`PromptComponent`), tokens.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n : int
        Requests.
    mixture : tuple of PromptComponent
        The components.
    max_prompt_tokens : int, default 8000
        Longest prompt (longer ones are cut), tokens.

    Returns
    -------
    numpy.ndarray
        Integer lengths in ``[1, max_prompt_tokens]``.
    """
    weights = np.array([c.weight for c in mixture], dtype="float64")
    which = rng.choice(len(mixture), size=n, p=weights / weights.sum())
    out = np.zeros(n)
    for i, comp in enumerate(mixture):
        m = which == i
        size = int(m.sum())
        if size == 0:
            continue
        base = rng.choice(np.asarray(comp.fixed, dtype="float64"), size=size)
        if comp.kind == "chat":
            out[m] = base + rng.gamma(comp.shape, comp.mean / comp.shape, size=size)
        elif comp.kind == "document":
            # Pareto (Lomax) tail with index a > 1 has mean scale / (a - 1).
            scale = comp.mean * (comp.shape - 1.0)
            out[m] = comp.minimum + scale * rng.pareto(comp.shape, size=size)
        elif comp.kind == "template":
            out[m] = base + rng.uniform(-comp.mean, comp.mean, size=size)
        else:
            raise ValueError(f"unknown prompt component kind {comp.kind!r}: use 'chat', 'document' or 'template'")
    return np.clip(np.round(out), 1, max_prompt_tokens).astype("int64")


def truncated_mean_output(alpha: float, beta: float, max_tokens: int) -> float:
    """Mean output length of the beta-geometric stopping process cut at ``max_tokens``, tokens.

    With ``G`` the tokens before EOS (``P(G >= g) = prod_{i<g} (beta + i) / (alpha + beta + i)``
    for a Beta(alpha, beta) hazard) and output ``D = min(1 + G, max_tokens)``,
    ``E[D] = 1 + sum_{g=1}^{max_tokens - 1} P(G >= g)``.

    Parameters
    ----------
    alpha, beta : float
        Parameters of the Beta distribution of the per-request stopping hazard.
    max_tokens : int
        Generation cap, tokens.

    Returns
    -------
    float
        Mean output length, tokens.
    """
    i = np.arange(max_tokens - 1, dtype="float64")
    survive = np.cumprod((beta + i) / (alpha + beta + i))
    return float(1.0 + survive.sum())


@lru_cache(maxsize=256)
def solve_stop_beta(mean_tokens: float, alpha: float, max_tokens: int) -> float:
    """The hazard Beta's second parameter giving mean output ``mean_tokens`` after the cut.

    Parameters
    ----------
    mean_tokens : float
        Wanted mean output length, tokens (``1 < mean_tokens < max_tokens``).
    alpha : float
        First Beta parameter (> 1).
    max_tokens : int
        Generation cap, tokens.

    Returns
    -------
    float
        ``beta`` (bisection on a log scale; the truncated mean grows with ``beta``).
    """
    if not 1.0 < mean_tokens < max_tokens:
        raise ValueError(f"mean output {mean_tokens} must lie strictly between 1 and max_tokens={max_tokens}")
    lo, hi = 1e-3, 1e7
    for _ in range(100):
        mid = np.sqrt(lo * hi)
        if truncated_mean_output(alpha, mid, max_tokens) < mean_tokens:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def eos_output_lengths(rng: np.random.Generator, n: int, mean_tokens: float, shape: float,
                       max_tokens: int) -> np.ndarray:
    """Draw ``n`` output lengths from the per-request EOS process (module docstring), tokens.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n : int
        Requests.
    mean_tokens : float
        Mean length after the cut at ``max_tokens``, tokens.
    shape : float
        First Beta parameter of the stopping hazard (> 1; smaller: heavier tail).
    max_tokens : int
        Generation cap, tokens.

    Returns
    -------
    numpy.ndarray
        Integer lengths in ``[1, max_tokens]``.
    """
    beta = solve_stop_beta(mean_tokens, shape, max_tokens)
    hazard = np.clip(rng.beta(shape, beta, size=n), 1e-9, 1.0)
    before_eos = rng.geometric(hazard) - 1  # tokens generated before the EOS token
    return np.minimum(1 + before_eos, max_tokens).astype("int64")


def request_qualities(rng: np.random.Generator, n: int, profile: AcceptanceProfile) -> tuple[np.ndarray, np.ndarray]:
    """Per-request first-position acceptance ``a1`` and proposal (match) probability.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n : int
        Requests.
    profile : AcceptanceProfile
        The pair on the workload.

    Returns
    -------
    first : numpy.ndarray
        ``a1`` per request, Beta(mean ``first_mean``, concentration ``concentration``).
    match : numpy.ndarray
        Probability per step that the drafter proposes (1 for model drafters).
    """
    m, c = profile.first_mean, profile.concentration
    first = rng.beta(m * c, (1.0 - m) * c, size=n)
    if profile.match_probability >= 1.0:
        match = np.ones(n)
    else:
        mp, mc = profile.match_probability, profile.match_concentration
        match = rng.beta(mp * mc, (1.0 - mp) * mc, size=n)
    return first, match


#: Workload presets (invented; the names are labels for length and acceptance regimes).
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("chat", (PromptComponent(0.7, "chat", mean=180, shape=1.2, fixed=(0, 120, 450)),
                          PromptComponent(0.2, "template", mean=60, fixed=(900, 1400)),
                          PromptComponent(0.1, "document", mean=1500, shape=2.5, minimum=400)),
                 output_mean_tokens=260, output_shape=3.0, max_tokens=1024, acceptance_scale=1.0,
                 match_probability=0.3, ngram_quality=0.5),
        Workload("code", (PromptComponent(0.5, "document", mean=1200, shape=2.2, minimum=300),
                          PromptComponent(0.5, "chat", mean=300, shape=1.5, fixed=(200, 600))),
                 output_mean_tokens=380, output_shape=4.0, max_tokens=1536, acceptance_scale=1.08,
                 match_probability=0.6, ngram_quality=0.7),
        Workload("summarize", (PromptComponent(0.8, "document", mean=2500, shape=2.8, minimum=800),
                               PromptComponent(0.2, "template", mean=100, fixed=(1800, 3000))),
                 output_mean_tokens=150, output_shape=6.0, max_tokens=512, acceptance_scale=0.95,
                 match_probability=0.55, ngram_quality=0.75),
        Workload("reasoning", (PromptComponent(0.6, "chat", mean=250, shape=1.0, fixed=(100, 300)),
                               PromptComponent(0.4, "template", mean=80, fixed=(700, 1100, 1600))),
                 output_mean_tokens=900, output_shape=2.5, max_tokens=4096, acceptance_scale=1.04,
                 match_probability=0.2, ngram_quality=0.5),
        Workload("creative", (PromptComponent(0.9, "chat", mean=120, shape=1.5, fixed=(0, 80)),
                              PromptComponent(0.1, "template", mean=40, fixed=(500,))),
                 output_mean_tokens=450, output_shape=3.0, max_tokens=2048, acceptance_scale=0.85,
                 match_probability=0.12, ngram_quality=0.45),
    )
}
