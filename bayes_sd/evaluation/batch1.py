"""The batch-1 formulas of Leviathan et al. and Yan et al. as latency predictors (baselines).

Both formulas describe one request decoding alone on the server; neither has a load term.
Each is turned here into the mean-latency predictor (s) a practitioner would build from the
same TRAINING runs the Bayesian model sees, so ``bench/accuracy.py``, the report and
notebook 06 can show what modelling load and uncertainty buys.

Per training run (saturated runs and runs without a mean latency are skipped):

- ``prefill_s`` (s): ``ttft_mean_s``, else ``ttft_p50_s``, else 0 (then all latency is decode);
- ``decode_s`` (s per output token after the first): ``(latency_mean_s - prefill_s) / (D - 1)``,
  so that ``prefill_s + (D - 1) decode_s`` gives back the run's own mean latency;
- ``tau`` (tokens per verify step): ``acceptance_length``, else ``1 + accepted_tokens / num_drafts``;
- ``in_flight`` (requests): the concurrency (closed loop), or achieved (else offered) rate
  times mean latency (open loop, Little's law). The run with the fewest requests in flight is
  the one closest to batch 1.

Calibration (:func:`calibrate`):

- ``a`` per (verifier, drafter, dataset, k): :func:`bayes_sd.theory.implied_acceptance` of the
  mean ``tau`` of that k's runs; a k without runs gets the mean ``a`` of the pair's other k
  (constant per-position acceptance carried across k); no run of the pair and dataset: NaN;
- ``t_verify`` (s per verify pass, batch 1) and the batch-1 prefill per (verifier, hardware,
  dataset): ``decode_s`` and ``prefill_s`` of the k = 0 run with the fewest requests in flight
  (falling back to the median over the verifier's other datasets on that hardware);
- ``t_draft`` (s per draft pass) and ``c = t_draft / t_verify`` per (verifier, drafter,
  hardware): for each (dataset, k), its run with the fewest requests in flight gives
  ``t_draft = (decode_s * tau - t0) / k`` where ``t0`` is the k = 0 decode time at the same
  load (reference rule below), then the median over (dataset, k), clipped at 0.

k = 0 reference at a load (Leviathan): per (verifier, hardware, dataset, load type), the k = 0
training runs' ``prefill_s`` and ``decode_s`` at that load when measured, linearly interpolated
in log(load) (``decode_s`` in log space) inside the measured range, and outside it (or for a
group with no k = 0 run) the least-squares fit's k = 0 latency with the prefill of the
nearest measured load (``source`` column: measured / interpolated / least squares). Where the
least-squares fit puts the k = 0 server past saturation at that rate, there is no k = 0 latency
to scale and the prediction is NaN (``source``: 'least squares: k=0 saturated').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_sd import theory
from bayes_sd.evaluation.least_squares import fit_least_squares
from bayes_sd.traces.schema import NO_DRAFTER

__all__ = ["Batch1Calibration", "LeviathanFit", "YanFit", "calibrate", "fit_leviathan", "fit_yan",
           "condition_load"]

VH, PAIR = ["verifier", "hardware"], ["verifier", "drafter", "hardware"]
GROUP0 = ["verifier", "hardware", "dataset", "load_type"]
_NEED_TRAIN = ("verifier", "drafter", "hardware", "dataset", "k", "load_type", "output_len", "latency_mean_s")
_NEED_COND = ("verifier", "drafter", "hardware", "dataset", "k", "load_type", "prompt_len", "output_len")


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name].astype(float) if name in df else pd.Series(np.nan, index=df.index)


def _require(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}. Fix: give a canonical runs table "
                         "(bayes_sd.traces.schema.RUNS), e.g. from bayes_sd.datasets or bayes-sd ingest")


def condition_load(df: pd.DataFrame) -> np.ndarray:
    """Load level of each row: ``rate_rps`` (requests/s) for open loop, ``concurrency`` (streams) for closed."""
    return np.where(df["load_type"] == "rate", _col(df, "rate_rps"), _col(df, "concurrency")).astype(float)


def _clean(conditions: pd.DataFrame) -> pd.DataFrame:
    c = conditions.reset_index(drop=True).copy()
    for col in ("rate_rps", "concurrency"):
        if col not in c:
            c[col] = np.nan
    c["k"] = c["k"].astype(int)
    c["drafter"] = c["drafter"].fillna(NO_DRAFTER).astype(str).where(c["k"] > 0, NO_DRAFTER)
    c["load"] = condition_load(c)
    return c


def training_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Steady-state runs with ``load``, ``in_flight``, ``prefill_s``, ``decode_s`` and ``tau`` (see module doc)."""
    _require(runs, _NEED_TRAIN, "training runs")
    r = _clean(runs)
    sat = r["saturated"].fillna(False).astype(bool) if "saturated" in r else False
    r = r[~sat & r["latency_mean_s"].notna() & (r["output_len"] > 1) & np.isfinite(r["load"])].copy()
    lat = r["latency_mean_s"].astype(float)
    r["prefill_s"] = _col(r, "ttft_mean_s").fillna(_col(r, "ttft_p50_s")).fillna(0.0)
    r["decode_s"] = (lat - r["prefill_s"]) / (r["output_len"] - 1.0)
    tau = _col(r, "acceptance_length").fillna(1.0 + _col(r, "accepted_tokens") / _col(r, "num_drafts"))
    r["tau"] = tau.where(r["k"] > 0)
    rate = _col(r, "achieved_rps").fillna(_col(r, "rate_rps"))
    r["in_flight"] = np.where(r["load_type"] == "rate", rate * lat, _col(r, "concurrency"))
    return r[r["decode_s"] > 0].reset_index(drop=True)


@dataclass
class Batch1Calibration:
    """What the batch-1 formulas take from the training runs (tables; times in seconds)."""

    k0: pd.DataFrame  # k = 0 runs: GROUP0 + load, prefill_s, decode_s (mean per load)
    verify: pd.DataFrame  # verifier, hardware, dataset -> t_verify_s, prefill_s, in_flight
    acceptance: pd.DataFrame  # verifier, drafter, dataset, k -> tau, a, runs
    draft: pd.DataFrame  # verifier, drafter, hardware -> t_draft_s, c, estimates

    def k0_reference(self, cond: pd.DataFrame, ls=None) -> pd.DataFrame:
        """k = 0 ``prefill_s`` and ``decode_s`` at each condition's load, with ``source`` (module doc rule)."""
        c = _clean(cond)
        n = len(c)
        pre, dec, src = np.full(n, np.nan), np.full(n, np.nan), np.full(n, "none", dtype=object)
        groups = {key: (np.log(g["load"].to_numpy()), g) for key, g in self.k0.groupby(GROUP0)}
        keys, loads = list(c[GROUP0].itertuples(index=False, name=None)), c["load"].to_numpy(float)
        need_ls = np.zeros(n, bool)
        for i, (key, load) in enumerate(zip(keys, loads)):
            x, g = groups.get(key, (None, None))
            if g is None or not np.isfinite(load) or load <= 0:
                need_ls[i] = True
                continue
            lx = np.log(load)
            if x[0] - 1e-9 <= lx <= x[-1] + 1e-9:
                dec[i] = np.exp(np.interp(lx, x, np.log(g["decode_s"].to_numpy())))
                pre[i] = np.interp(lx, x, g["prefill_s"].to_numpy())
                src[i] = "measured" if np.min(np.abs(x - lx)) < 1e-9 else "interpolated"
            else:
                pre[i] = g["prefill_s"].iloc[int(np.argmin(np.abs(x - lx)))]
                need_ls[i] = True
        if ls is not None and need_ls.any():
            rows = c[need_ls].assign(k=0, drafter=NO_DRAFTER)
            lat0 = np.asarray(ls.predict(rows), float)
            pre[need_ls] = np.nan_to_num(pre[need_ls])
            D = rows["output_len"].to_numpy(float)
            ok = np.isfinite(lat0) & (D > 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                dec[need_ls] = np.where(ok, (lat0 - pre[need_ls]) / (D - 1.0), np.nan)
            src[need_ls] = np.where(ok, "least squares", "least squares: k=0 saturated")
        return pd.DataFrame({"prefill_s": pre, "decode_s": dec, "source": src})


def _first_per(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The row with the fewest requests in flight per ``keys`` group (closest to batch 1)."""
    return df.sort_values("in_flight").groupby(keys, as_index=False).head(1)


def calibrate(train: pd.DataFrame) -> Batch1Calibration:
    """Calibration tables of the batch-1 formulas from training runs (module doc)."""
    r = training_table(train)
    zero, spec = r[r["k"] == 0], r[(r["k"] > 0) & r["tau"].notna()]
    k0 = (zero.groupby(GROUP0 + ["load"], as_index=False)[["prefill_s", "decode_s"]].mean()
          .sort_values(GROUP0 + ["load"]).reset_index(drop=True))
    verify = _first_per(zero, VH + ["dataset"]).rename(columns={"decode_s": "t_verify_s"})[
        VH + ["dataset", "t_verify_s", "prefill_s", "in_flight"]].reset_index(drop=True)
    acc = spec.groupby(["verifier", "drafter", "dataset", "k"], as_index=False).agg(
        tau=("tau", "mean"), runs=("tau", "size"))
    acc["a"] = theory.implied_acceptance(acc["tau"].to_numpy(float), acc["k"].to_numpy(float)) if len(acc) else []
    cal = Batch1Calibration(k0=k0, verify=verify, acceptance=acc, draft=pd.DataFrame())
    first = _first_per(spec, PAIR + ["dataset", "k"]).reset_index(drop=True)
    t0 = cal.k0_reference(first)["decode_s"].to_numpy()
    tv = _lookup_verify(verify, first)
    t0 = np.where(np.isfinite(t0), t0, tv)  # no k = 0 run at that load type: the batch-1 verify time
    first = first.assign(t_draft_s=(first["decode_s"] * first["tau"] - t0) / first["k"], c=np.nan)
    first["c"] = first["t_draft_s"] / t0
    draft = first.dropna(subset=["c"]).groupby(PAIR, as_index=False).agg(
        t_draft_s=("t_draft_s", "median"), c=("c", "median"), estimates=("c", "size"))
    draft[["t_draft_s", "c"]] = draft[["t_draft_s", "c"]].clip(lower=0.0)
    cal.draft = draft
    return cal


def _lookup_verify(verify: pd.DataFrame, c: pd.DataFrame, col: str = "t_verify_s") -> np.ndarray:
    """``col`` of the (verifier, hardware, dataset) level, else the median over the verifier's datasets."""
    exact = c[VH + ["dataset"]].merge(verify, on=VH + ["dataset"], how="left")[col].to_numpy(float)
    pooled = c[VH].merge(verify.groupby(VH, as_index=False)[col].median(), on=VH, how="left")[col].to_numpy(float)
    return np.where(np.isfinite(exact), exact, pooled)


def _acceptance(cal: Batch1Calibration, c: pd.DataFrame) -> np.ndarray:
    """Constant per-position acceptance per condition (same k, else the pair-dataset mean over k)."""
    key = ["verifier", "drafter", "dataset"]
    same = c[key + ["k"]].merge(cal.acceptance[key + ["k", "a"]], on=key + ["k"], how="left")["a"].to_numpy(float)
    anyk = c[key].merge(cal.acceptance.groupby(key, as_index=False)["a"].mean(), on=key, how="left")["a"]
    a = np.where(np.isfinite(same), same, anyk.to_numpy(float))
    return np.where(c["k"].to_numpy() > 0, a, 0.0)  # k = 0: tau = 1 whatever a is


def _draft(cal: Batch1Calibration, c: pd.DataFrame, col: str) -> np.ndarray:
    d = c[PAIR].merge(cal.draft, on=PAIR, how="left")[col].to_numpy(float)
    return np.where(c["k"].to_numpy() > 0, d, 0.0)


@dataclass
class LeviathanFit:
    """Leviathan et al.: latency = k0 prefill + (D - 1) k0 decode time at this load / S(a, k, c).

    ``S = (1 - a^(k+1)) / ((1 - a)(k c + 1))`` does not change with load: the k = 0 latency
    follows load, the speedup does not.
    """

    calibration: Batch1Calibration
    ls: object = None  # LeastSquaresFit for the k = 0 reference outside the measured loads

    def details(self, conditions: pd.DataFrame) -> pd.DataFrame:
        """Per condition: ``a``, ``c``, ``speedup``, the k = 0 reference and ``latency_s`` (NaN: cannot predict)."""
        _require(conditions, _NEED_COND, "conditions")
        c = _clean(conditions)
        a, cc = _acceptance(self.calibration, c), _draft(self.calibration, c, "c")
        k = c["k"].to_numpy(float)
        ref = self.calibration.k0_reference(c, self.ls)
        s = theory.leviathan_speedup(a, k, cc)
        D = c["output_len"].to_numpy(float)
        lat = ref["prefill_s"].to_numpy(float) + (D - 1.0) * ref["decode_s"].to_numpy(float) / s
        return pd.DataFrame({"a": a, "c": cc, "speedup": s, "k0_prefill_s": ref["prefill_s"],
                             "k0_decode_s": ref["decode_s"], "k0_source": ref["source"], "latency_s": lat})

    def predict(self, conditions: pd.DataFrame) -> np.ndarray:
        """Mean latency (s) per condition row; NaN where the formula lacks an input."""
        return self.details(conditions)["latency_s"].to_numpy(float)


@dataclass
class YanFit:
    """Yan et al.: per-sequence throughput ``tau / (t_verify + k t_draft)`` (tokens/s) at batch 1.

    Latency = batch-1 prefill + (D - 1) / throughput; load never enters.
    """

    calibration: Batch1Calibration

    def details(self, conditions: pd.DataFrame) -> pd.DataFrame:
        """Per condition: ``tau``, ``t_verify_s``, ``t_draft_s``, ``throughput_tps``, ``latency_s``."""
        _require(conditions, _NEED_COND, "conditions")
        c = _clean(conditions)
        a, k = _acceptance(self.calibration, c), c["k"].to_numpy(float)
        tau = np.where(k > 0, theory.tau_constant(a, k), 1.0)
        tv, td = _lookup_verify(self.calibration.verify, c), _draft(self.calibration, c, "t_draft_s")
        thr = theory.yan_throughput(tau, tv, k * td)
        pre = _lookup_verify(self.calibration.verify, c, "prefill_s")
        lat = pre + (c["output_len"].to_numpy(float) - 1.0) / thr
        return pd.DataFrame({"tau": tau, "t_verify_s": tv, "t_draft_s": td, "throughput_tps": thr,
                             "prefill_s": pre, "latency_s": lat})

    def predict(self, conditions: pd.DataFrame) -> np.ndarray:
        """Mean latency (s) per condition row; NaN where the formula lacks an input."""
        return self.details(conditions)["latency_s"].to_numpy(float)


def fit_leviathan(train: pd.DataFrame, *, ls=None, extrapolate: bool = True) -> LeviathanFit:
    """Calibrate the Leviathan predictor on ``train``.

    ``ls``: a :class:`~bayes_sd.evaluation.least_squares.LeastSquaresFit` for the k = 0 reference outside the
    measured loads; fitted on ``train`` when None and ``extrapolate`` (else such rows are NaN).
    """
    if ls is None and extrapolate:
        ls = fit_least_squares(train)
    return LeviathanFit(calibrate(train), ls if extrapolate else None)


def fit_yan(train: pd.DataFrame) -> YanFit:
    """Calibrate the Yan et al. predictor on ``train`` (batch-1 verify and draft pass times)."""
    return YanFit(calibrate(train))
