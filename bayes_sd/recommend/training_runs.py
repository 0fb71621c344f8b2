"""What a fitted model's training runs record, for the questions asked of it: the draft lengths measured
for a pair, the server's settings (batch cap, KV cache size) and a workload's output spread."""

from __future__ import annotations

__all__ = ["measured_ks", "fitted_batch_cap", "fitted_setting", "fitted_output_spread"]


def measured_ks(model, verifier: str, drafter: str, hardware: str) -> set[int]:
    """The draft lengths the model's training runs measured for this pair on this hardware (0: the
    verifier alone)."""
    runs = model.runs
    mine = (runs["verifier"] == verifier) & (runs["hardware"] == hardware)
    spec = mine & (runs["drafter"] == drafter) & (runs["k"] > 0)
    return {int(k) for k in runs.loc[spec, "k"].unique()} | ({0} if (mine & (runs["k"] == 0)).any() else set())


def fitted_batch_cap(model, verifier: str, hardware: str) -> float | None:
    """The batch cap (``max_num_seqs``, requests in service at most) that the model's training runs
    record for ``verifier`` on ``hardware``: :func:`fitted_setting` of that column.

    Parameters
    ----------
    model, verifier, hardware
        As :func:`fitted_setting`.

    Returns
    -------
    float or None
        The cap; None where the runs record none or disagree (predictions are then uncapped).
    """
    return fitted_setting(model, verifier, hardware, "max_num_seqs")


def fitted_output_spread(model, dataset: str, output_len: float) -> float | None:
    """The standard deviation of a workload's output tokens at a mean of ``output_len``, from its training runs.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    dataset : str
        The workload.
    output_len : float
        Mean output tokens of the condition to predict.

    Returns
    -------
    float or None
        Tokens: the training runs' median ratio of ``output_len_sd`` to ``output_len``, times ``output_len``;
        None where they record no spread (outputs then taken as ended by EOS,
        :func:`bayes_sd.theory.kv_tokens_held`).
    """
    runs = model.runs
    if "output_len_sd" not in runs:
        return None
    mine = runs[runs["dataset"] == dataset]
    ratio = (mine["output_len_sd"].astype(float) / mine["output_len"].astype(float)).dropna()
    return float(ratio.median() * output_len) if len(ratio) else None


def fitted_setting(model, verifier: str, hardware: str, column: str) -> float | None:
    """A server setting of the model's training runs for this verifier on this hardware.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    verifier, hardware : str
        The verifier model and the accelerator.
    column : str
        The runs' column: ``max_num_seqs`` (requests), ``kv_cache_tokens`` (tokens of context the KV
        cache holds).

    Returns
    -------
    float or None
        The value when the runs record one and agree; None otherwise (no limit then).
    """
    runs = model.runs
    if column not in runs:
        return None
    values = runs.loc[(runs["verifier"] == verifier) & (runs["hardware"] == hardware), column].dropna().unique()
    return float(values[0]) if len(values) == 1 else None
