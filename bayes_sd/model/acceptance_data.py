"""What a runs table says about acceptance: each run's acceptance length from whatever it carries,
the slope of its per-position acceptance, which runs repeat another's measurement, and where each
drafter's runs are most informative (pandas and numpy; the PyMC model reads them through
:func:`bayes_sd.model.fit_data.prepare_fit_data`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_sd.theory import implied_acceptance
from bayes_sd.theory.acceptance import decay_from_positions, information_centre
from bayes_sd.traces.validate import parse_per_position

__all__ = ["POSITION_SE_IDENTIFIED", "observed_acceptance", "replayed_acceptance", "observed_decay",
           "measured_pivot", "observed_draft_share", "draft_share", "EVERY_STEP_SHARE"]

#: Per-position counts identify a drafter's decay (logits per position) when they pin it within this
#: standard error: the spread of the drafters' decays at the population's prior centre (exp(-1.7) x 0.5,
#: ``accept_decay`` and ``accept_decay_spread`` of models/moe_roofline_per_position.toml). Looser (a
#: few hundred drafts at k = 2: about 0.17), they leave the drafter at the population's decay, which
#: they then inform, since a weakly pinned decay sampled freely sits on a curved ridge with the latent
#: acceptance (divergences on the real llama.cpp sweep).
POSITION_SE_IDENTIFIED = 0.09


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    """``runs[name]`` as floats, all NaN when the column is absent."""
    return runs[name].astype(float) if name in runs else pd.Series(np.nan, index=runs.index)


def _counted_drafts(runs: pd.DataFrame) -> pd.Series:
    """Drafts (verify steps that carried them) per run: ``num_drafts``, else ``draft_tokens / k`` (a
    chain of k drafts per step); NaN where neither is counted or k = 0."""
    k = runs["k"].astype(float)
    drafts = _column(runs, "num_drafts").where(lambda v: v > 0)
    return drafts.fillna((_column(runs, "draft_tokens") / k.where(k > 0)).where(lambda v: v > 0))


def observed_acceptance(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Acceptance length per run from whatever the run carries, with its sampling standard error.

    In order of preference: ``acceptance_length``; ``1 + accepted_tokens / num_drafts``; and, for a
    chain of k drafts per verify step (``num_drafts = draft_tokens / k``), ``1 + k * accepted_tokens /
    draft_tokens``: the acceptance rate, as vLLM's and llama.cpp's counters give it. The standard
    error is the one of a mean of ``num_drafts`` draws of accepted tokens per step, each in ``[0, k]``,
    bounded by Bhatia-Davis: ``sqrt(m (k - m) / num_drafts)`` with ``m = tau - 1`` (0 where the draft
    count is unknown: the run's scatter is then the model's ``sigma_tau_obs`` alone).

    Parameters
    ----------
    runs : pandas.DataFrame
        Canonical runs (``k``; any of ``acceptance_length``, ``accepted_tokens``, ``num_drafts``,
        ``draft_tokens``).

    Returns
    -------
    (pandas.Series, pandas.Series)
        Acceptance length (tokens per verify step, bonus token included; NaN where a run with k > 0
        carries nothing, and for k = 0) and its standard error (tokens), indexed like ``runs``.
    """
    k = runs["k"].astype(float)
    spec = k > 0
    drafts = _counted_drafts(runs)
    from_counts = 1.0 + _column(runs, "accepted_tokens") / drafts
    tau = _column(runs, "acceptance_length").fillna(from_counts).where(spec)
    m = (tau - 1.0).clip(lower=0.0)
    se = np.sqrt((m * (k - m)).clip(lower=0.0) / drafts).fillna(0.0).where(tau.notna())
    return tau, se


def replayed_acceptance(runs: pd.DataFrame) -> pd.Series:
    """True for a speculative run whose acceptance counts (``num_drafts``, ``accepted_tokens`` and
    ``per_position_acceptance``) equal an earlier run's of the same verifier, drafter, hardware, dataset
    and k: a benchmark that replays the same requests at each load with greedy decoding measures the
    same acceptance every time, one measurement however many runs repeat it. Runs without both
    counts are never flagged (an acceptance length alone can coincide by rounding)."""
    cols = ["num_drafts", "accepted_tokens"]
    if not set(cols) <= set(runs) or runs.empty:
        return pd.Series(False, index=runs.index)
    key = runs[["verifier", "drafter", "hardware", "dataset", "k", *cols]].astype(str)
    key = key.assign(_pos=runs["per_position_acceptance"].astype(str) if "per_position_acceptance" in runs else "")
    counted = runs[cols].notna().all(axis=1) & (runs["k"] > 0)
    return key.duplicated() & counted


def observed_decay(runs: pd.DataFrame, tau: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per run with ``per_position_acceptance`` at ``k >= 2``: the slope of the conditional acceptance's
    log-odds per draft position (``-decay``; :func:`bayes_sd.theory.acceptance.decay_from_positions`)
    and its standard error from the counts, NaN elsewhere.

    The drafts behind the shares are ``num_drafts``, else ``draft_tokens / k``, else estimated as the
    run's output tokens over its acceptance length ``tau`` (one draft per verify step).

    Parameters
    ----------
    runs : pandas.DataFrame
        Canonical runs (``k``, ``n_requests``, ``output_len``; ``per_position_acceptance``, ``num_drafts``,
        ``draft_tokens`` where known).
    tau : pandas.Series
        Acceptance length per run (tokens per verify step, :func:`observed_acceptance`).

    Returns
    -------
    (pandas.Series, pandas.Series)
        Slope (log-odds per position) and standard error, indexed like ``runs``.
    """
    slope = pd.Series(np.nan, index=runs.index)
    se = pd.Series(np.nan, index=runs.index)
    if "per_position_acceptance" not in runs:
        return slope, se

    k = runs["k"].astype(float)
    drafts = _counted_drafts(runs).fillna(runs["n_requests"].astype(float) * runs["output_len"].astype(float) / tau)
    for i, text, kk, n in zip(runs.index, runs["per_position_acceptance"], k, drafts):
        if kk >= 2:
            values = parse_per_position(text)
            if values.size >= 2:
                slope[i], se[i] = decay_from_positions(values, n)
    return slope, se


def measured_pivot(runs: pd.DataFrame, drafters: list[str], tau: pd.Series) -> np.ndarray:
    """Per drafter, the draft positions past the first where its runs' information about acceptance
    centres: :func:`bayes_sd.theory.acceptance.information_centre` at the measured ``k`` nearest the
    median of its runs with ``k > 0``, for the constant acceptance that their mean acceptance length
    ``tau`` (tokens, per run, :func:`observed_acceptance`) there implies, 0.75 where none is observed;
    0 for a drafter without speculative runs. The ``acceptance_pivot = "measured"`` option places the
    latent acceptance there."""
    spec = runs.assign(_tau=tau)[runs["k"] > 0]
    out = []
    for d in drafters:
        rows = spec[spec["drafter"].astype(str) == d]
        if rows.empty:
            out.append(0.0)
            continue
        k = float(rows["k"].iloc[(rows["k"] - rows["k"].median()).abs().argmin()])  # measured, nearest the median
        tau = rows.loc[rows["k"] == k, "_tau"].dropna()
        a = float(implied_acceptance(tau.mean(), k)) if len(tau) else 0.75
        out.append(float(information_centre(a, k)))
    return np.array(out)


def _drafts_and_steps(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per speculative run with its counts, the drafts (:func:`_counted_drafts`) and the decode steps of
    its requests, ``n_requests (output_len - 1) - accepted_tokens`` (a request's first token comes from
    its prefill, each decode step emits one token plus the drafts it accepted); NaN elsewhere."""
    steps = (runs["n_requests"].astype(float) * (runs["output_len"].astype(float) - 1.0)
             - _column(runs, "accepted_tokens"))
    drafts = _counted_drafts(runs)
    ok = drafts.notna() & (steps > 0) & (runs["k"] > 0)
    return drafts.where(ok), steps.where(ok)


def observed_draft_share(runs: pd.DataFrame) -> pd.Series:
    """Share of each speculative run's decode steps that carried drafts, ``drafts / decode steps``
    (dimensionless, at most 1), NaN where the run lacks the counts (``num_drafts`` or ``draft_tokens``,
    ``accepted_tokens``) or ``k = 0``.

    A drafter with weights drafts at every step (counters that also saw warm-up requests read a little
    above 1, hence the cap); a proposer without weights (n-gram / prompt lookup, suffix decoding)
    drafts only where it finds a match, and its acceptance length counts per draft
    (:func:`bayes_sd.theory.per_decode_step`)."""
    drafts, steps = _drafts_and_steps(runs)
    return (drafts / steps).clip(upper=1.0)


#: A pooled share of decode steps that carry drafts at or above this reads as 1 (every step drafts):
#: run counters that also span warm-up or trimmed requests, or that a replayed sweep repeats at every
#: load, put a drafter with weights a few per cent either side of 1 (the real llama.cpp sweep: 0.96-1.6
#: per run), while proposers that need a match draft at 0.07-0.79 of the steps (the fleets' n-gram).
EVERY_STEP_SHARE = 0.9


def draft_share(conditions: pd.DataFrame, runs: pd.DataFrame) -> np.ndarray:
    """Share of decode steps that carry drafts, per condition (dimensionless): pooled over the ``runs``
    of its drafter on its dataset (all their drafts over all their decode steps), else of its drafter
    on any dataset, else 1 (every step drafts; also for ``k = 0``, and for a pooled share of at least
    :data:`EVERY_STEP_SHARE`).

    Parameters
    ----------
    conditions : pandas.DataFrame
        ``drafter``, ``dataset``, ``k`` per condition.
    runs : pandas.DataFrame
        Canonical runs with the counts (:func:`observed_draft_share`), e.g. the fitted ones.

    Returns
    -------
    numpy.ndarray
        Share in (0, 1] per condition.
    """
    drafts, steps = _drafts_and_steps(runs)
    counted = pd.DataFrame({"drafter": runs["drafter"].astype(str), "dataset": runs["dataset"].astype(str),
                            "drafts": drafts, "steps": steps}).dropna()
    by_pair = counted.groupby(["drafter", "dataset"])[["drafts", "steps"]].sum()
    by_drafter = counted.groupby("drafter")[["drafts", "steps"]].sum()
    pair_share = (by_pair["drafts"] / by_pair["steps"]).clip(upper=1.0)
    drafter_share = (by_drafter["drafts"] / by_drafter["steps"]).clip(upper=1.0)
    key = pd.MultiIndex.from_arrays([conditions["drafter"].astype(str), conditions["dataset"].astype(str)])
    share = pd.Series(pair_share.reindex(key).to_numpy(), index=conditions.index)
    share = share.fillna(pd.Series(drafter_share.reindex(conditions["drafter"].astype(str)).to_numpy(),
                                   index=conditions.index))
    share = share.fillna(1.0).where(share < EVERY_STEP_SHARE, 1.0)
    return share.where(conditions["k"].astype(float) > 0, 1.0).to_numpy(float)
