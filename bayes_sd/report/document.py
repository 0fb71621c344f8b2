"""The posterior report: one self-contained ``report.html`` and a ``report.md`` with PNG figures.

:func:`write_report` computes each section once (numbers, a plain-language reading made from
those numbers, tables, one figure) and renders the same content twice: HTML with the figures
embedded as base64 PNG and a small inline CSS (no external assets), and Markdown linking
``figures/<section>.png``. Every file is written atomically (temporary file + ``os.replace``).
A section that cannot be computed says so in its text (and warns) instead of sinking the report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_sd._io import write_bytes, write_text
from bayes_sd._progress import progress_bar
from bayes_sd._stats import chain_agreement_text, quantile
from bayes_sd.evaluation.baselines import LABELS, error_table, in_sample_comparison
from bayes_sd.evaluation.trust import trust_reading, trust_table
from bayes_sd.model.compare import form_comparison, loo_caveat
from bayes_sd.model.conditions import load_column
from bayes_sd.model.fit_data import arrival_rate
from bayes_sd.recommend.training_runs import measured_ks
from bayes_sd.report import plots
from bayes_sd.report.plots.common import model_runs
from bayes_sd.traces.summary import data_kind

__all__ = ["SECTIONS", "Section", "build_sections", "write_report", "check_recommendations"]

#: (id, title) of the report's sections, in order: the answer and how far to trust it first, then what it
#: rests on (predictions, checks, diagnostics), the data last
SECTIONS: list[tuple[str, str]] = [
    ("recommendations", "The answer: draft length per load"), ("trust", "How much to trust this"),
    ("forms", "Which form the data support"),
    ("speedup", "Speedup versus k = 0"), ("saturation", "Saturation rate"), ("latency", "Latency versus load"),
    ("ppc", "Posterior predictive check"), ("diagnostics", "Sampler diagnostics"), ("pooling", "Partial pooling"),
    ("baselines", "Baselines: what the Bayesian model buys"), ("data", "Data overview")]
MAX_TABLE_ROWS = 40
#: columns of a recommendation table shown in the report (others are kept out of the table)
REC_COLUMNS = ["rate_rps", "concurrency", "best_k", "k_measured", "p_best", "expected_regret", "regret_se",
               "latency_mean_s",
               "latency_q05_s", "latency_q95_s", "speedup_vs_k0", "speedup_q05", "speedup_q95", "p_slower_than_k0",
               "p_saturated", "batch_size"]

CSS = ("body{font-family:system-ui,sans-serif;max-width:1050px;margin:2em auto;padding:0 1em;color:#222;"
       "line-height:1.45}\n"
       "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\n"
       "table{border-collapse:collapse;font-size:.82em;margin:.6em 0}"
       "th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}\n"
       "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}\n"
       ".reading{background:#f7f9fc;border-left:4px solid #4a78b5;padding:.5em .8em}.meta{color:#555;font-size:.85em}"
       ".alarm{background:#fdecea;border-left:4px solid #c62828;padding:.5em .8em}")


@dataclass
class Section:
    id: str
    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figure: object = None  # matplotlib Figure or None


# ---------------------------------------------------------------------------- formatting
def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "-" if np.isnan(v) else ("inf" if np.isinf(v) else f"{v:.3g}")
    return str(v)


def _cap(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if len(df) <= MAX_TABLE_ROWS:
        return df, ""
    return df.head(MAX_TABLE_ROWS), f" (first {MAX_TABLE_ROWS} of {len(df)} rows)"


def _md_table(df: pd.DataFrame) -> str:
    cells = [[_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in df.itertuples(index=False)]
    head = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in cells)


def _html_table(df: pd.DataFrame) -> str:
    return df.map(_fmt).to_html(index=False, border=0, escape=True)


def _interval(lo, hi) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


# ---------------------------------------------------------------------------- sections
def _join(v: pd.Series) -> str:
    return ", ".join(sorted(str(int(x)) if isinstance(x, (int, float, np.number)) else str(x) for x in v.unique()))


def _data(model, s: Section, ctx: dict) -> None:
    runs = model_runs(model)
    exc = model.fit_data.excluded.merge(runs[["run_id", "kind"]].drop_duplicates("run_id"), on="run_id", how="left")
    n_syn, n_sat = int((runs.kind == "synthetic").sum()), int(exc.reason.str.startswith("saturated").sum())
    per = runs.groupby(["kind", "hardware", "verifier", "drafter"]).agg(
        runs=("run_id", "size"), saturated=("saturated", "sum"), k=("k", _join), datasets=("dataset", _join),
        loads=("load_type", _join)).reset_index()
    s.text = (f"The model was given {len(runs)} runs ({len(runs) - n_syn} real, {n_syn} synthetic) of "
              f"{len(runs.drop_duplicates(['verifier', 'drafter']))} verifier/drafter pairs (drafter 'none' = no "
              f"speculation) on {runs.hardware.nunique()} hardware type(s). {model.fit_data.n_runs} runs were fitted "
              f"and {len(exc)} excluded: {n_sat} saturated (the steady-state model does not describe them) and "
              f"{len(exc) - n_sat} for other reasons; the table of excluded runs gives each reason."
              + (" Synthetic runs come from the bundled simulator, not from measurements." if n_syn else ""))
    s.tables = [("Runs per pair and hardware", per),
                ("Excluded runs",
                 exc[["run_id", "kind", "reason"]] if len(exc) else pd.DataFrame({"run_id": ["none"]}))]
    s.figure = plots.plot_data_overview(model)


def _diagnostics(model, s: Section, ctx: dict) -> None:
    d, tab = model.diagnostics(), plots.diagnostics_data(model)
    verdict = "converged" if d["converged"] else "NOT converged"
    s.text = (f"The sampler has {verdict} ({d['chains']} chains x {d['draws']} draws): max R-hat {d['max_rhat']:.3f} "
              f"(target <= 1.01, worst: {tab.loc[tab.rhat.idxmax(), 'parameter']}; {int((tab.rhat > 1.01).sum())} of "
              f"{len(tab)} parameters above 1.01), min bulk ESS {d['min_ess_bulk']:.0f} and min tail ESS "
              f"{d['min_ess_tail']:.0f} (target >= 400), {d['divergences']} divergences (target 0)."
              + (" The sampler gives no reason to distrust the intervals below." if d["converged"] else
                 " Treat every interval below as provisional: refit with more draws/tune or a higher target_accept."))
    if not d["converged"] and d["chains"] > 1:
        agreement = model.chain_agreement()
        s.text += f" Where the chains disagree: {chain_agreement_text(agreement)}."
    rows = [("max R-hat", d["max_rhat"], "<= 1.01", d["max_rhat"] <= 1.01),
            ("min bulk ESS", d["min_ess_bulk"], ">= 400", d["min_ess_bulk"] >= 400),
            ("min tail ESS", d["min_ess_tail"], ">= 400", d["min_ess_tail"] >= 400),
            ("divergences", d["divergences"], "0", d["divergences"] == 0),
            ("verdict", verdict, "converged", d["converged"])]
    s.tables = [("Convergence", pd.DataFrame(rows, columns=["quantity", "value", "target", "pass"])),
                ("Worst parameters by R-hat", tab.nlargest(8, "rhat"))]
    if not d["converged"] and d["chains"] > 1:
        group = {c: i + 1 for i, g in enumerate(agreement["groups"]) for c in g}
        s.tables.append((f"Chains on {agreement['parameter']}", pd.DataFrame({
            "chain": np.arange(1, d["chains"] + 1), "mean": agreement["chain_means"],
            "group": [group[c] for c in range(d["chains"])],
            "mean log density": agreement["chain_logp"] or [np.nan] * d["chains"]})))
    s.figure = plots.plot_diagnostics(model, data=tab)


def _ppc(model, s: Section, ctx: dict) -> None:
    tab = plots.ppc_data(model, hdi_prob=ctx["hdi_prob"])
    n_in, n, out = int(tab.inside.sum()), len(tab), tab.loc[~tab.inside, "run_id"].tolist()
    s.text = (f"PPC: {n_in} of {n} runs inside their {ctx['hdi_prob']:.0%} interval ({n_in / n:.0%}; a calibrated "
              f"model puts about {ctx['hdi_prob']:.0%} inside). Each interval is where a replicated run's mean latency "
              f"would fall; the median interval is {np.median((tab.hi_s - tab.lo_s) / tab.median_s):.0%} of the "
              "predicted latency wide." + (f" Outside: {', '.join(out[:5])}{' and more' if len(out) > 5 else ''}."
                                          if out else ""))
    s.tables = [("Runs outside their interval", tab.loc[~tab.inside].drop(columns="inside"))]
    s.figure = plots.plot_ppc(model, data=tab)


def _latency(model, s: Section, ctx: dict) -> None:
    cur = ctx["curves"] = plots.load_curves_data(model, hdi_prob=ctx["hdi_prob"], max_panels=ctx["max_panels"])
    fit = model.fit_data.runs
    fit = fit[fit.latency_mean_s.notna() & ~fit["censored"]]
    fit = fit.assign(rate_rps=arrival_rate(fit, model.open_loop_rate))  # predicted where fitted, at the fit's rate
    pred = quantile(model.predict_draws(fit, max_draws=400).latency, 0.5)
    err = pd.DataFrame({"kind": data_kind(fit.source).to_numpy(),
                        "e": np.abs(pred / fit.latency_mean_s.to_numpy() - 1)})
    s.text = (f"Across the {len(err)} fitted runs with a mean latency, the posterior median latency is within "
              f"{err.e.median():.1%} of the observed value (median absolute relative error; 90th percentile "
              f"{err.e.quantile(0.9):.1%}; " + "; ".join(f"{k} runs {g.e.median():.1%}" for k, g in err.groupby("kind"))
              + f"). The figure shows {cur.panel.nunique()} of {len(plots.load_groups(model, 10**6))} (verifier, "
              "drafter, hardware, dataset, load type) groups, each with its k = 0 baseline; lines end where the "
              "posterior puts the server past saturation.")
    s.figure = plots.plot_latency_vs_load(model, max_panels=ctx["max_panels"], data=cur)


def _speedup(model, s: Section, ctx: dict) -> None:
    cur, rows = ctx.get("curves"), []
    if cur is None:  # the latency section failed or was skipped
        cur = plots.load_curves_data(model, hdi_prob=ctx["hdi_prob"], max_panels=ctx["max_panels"])
    for (p, k), c in cur[cur.k > 0].groupby(["panel", "k"]):
        a, b, g = c.iloc[0], c.iloc[-1], cur.attrs["groups"][p]
        rows.append({"group": plots.group_title(g, g["synthetic"]), "k": k, "load_type": a.load_type,
                     "low load": a.load, "speedup low": a.speedup_med,
                     "interval low": _interval(a.speedup_lo, a.speedup_hi),
                     "high load": b.load, "speedup high": b.speedup_med,
                     "interval high": _interval(b.speedup_lo, b.speedup_hi), "P(slower) high": b.p_slower,
                     "P(slower) > 0.5 from": c.load[c.p_slower > 0.5].min()})
    if not rows:
        s.text = "No speculative run was fitted, so there is no speedup to show."
        return
    tab = pd.DataFrame(rows)
    best = tab.loc[tab["speedup low"].idxmax()]
    s.text = (f"Of {len(tab)} (group, k) curves, speculation is faster than k = 0 at the lowest load shown in "
              f"{int((tab['speedup low'] > 1).sum())} (largest median speedup {best['speedup low']:.2f}x, "
              f"{best.group}, "
              f"k={best.k}) and at the highest load in {int((tab['speedup high'] > 1).sum())}; P(slower than k = 0) "
              f"exceeds 0.5 somewhere in the load range in {int(tab['P(slower) > 0.5 from'].notna().sum())}. Speedup "
              "falls with load because speculation multiplies the per-sequence verify work while it saves iterations.")
    s.tables = [("Speedup versus k = 0 at the low and high ends of the load range", tab)]
    s.figure = plots.plot_speedup(model, max_panels=ctx["max_panels"], data=cur)


def _saturation(model, s: Section, ctx: dict) -> None:
    tab = plots.saturation_data(model, hdi_prob=ctx["hdi_prob"], max_panels=ctx["max_panels"])
    base = tab[tab.k == 0].set_index("panel").median_rps
    spec = tab[tab.k > 0].assign(ratio=lambda t: t.median_rps / base.loc[t.panel].to_numpy())
    s.text = (f"Saturation rate 1/C2: the open-loop rate (requests/s) at which queues grow without bound. Across "
              f"{tab.panel.nunique()} pair/hardware/dataset groups it ranges from {tab.median_rps.min():.3g} to "
              f"{tab.median_rps.max():.3g} requests/s (posterior medians)." + (
                  f" Speculation lowers it in {int((spec.ratio < 1).sum())} of {len(spec)} (group, k > 0) cases "
                  f"(median ratio to k = 0: {spec.ratio.median():.2f}, smallest {spec.ratio.min():.2f})."
                  if len(spec) else ""))
    s.tables = [("Saturation rate (requests/s)", tab[["group", "k", "median_rps", "lo_rps", "hi_rps"]])]
    s.figure = plots.plot_saturation(model, max_panels=ctx["max_panels"], data=tab)


def _pooling(model, s: Section, ctx: dict) -> None:
    tab = plots.shrinkage_data(model, hdi_prob=ctx["hdi_prob"])
    if tab.empty:
        s.text = "No speculative run was fitted, so there is no acceptance to pool."
        return
    move = (tab.post_mean - tab.raw).abs()
    s.text = (f"Acceptance of {len(tab)} (pair, dataset) levels, estimated from each level's own runs alone (no "
              f"pooling) and by the hierarchical model (partial pooling toward the population mean "
              f"{tab.pop_mean.iloc[0]:.3f}). The pooled posterior mean moves by a median of {move.median():.3f} "
              f"(largest {move.max():.3f}, {tab.level[move.idxmax()]}) from the own-runs estimate; latency data "
              "inform acceptance too, so a move is not pooling alone.")
    s.tables = [("Acceptance per (pair, dataset)", tab.drop(columns=["pop_mean"]))]
    s.figure = plots.plot_shrinkage(model, data=tab)


def _baselines(model, s: Section, ctx: dict) -> None:
    tab = in_sample_comparison(model, hdi_prob=ctx["hdi_prob"])
    if tab.empty:
        s.text = ("No speculative run above its group's lowest load was fitted, so the batch-1 formulas (calibrated "
                  "at the lowest load) have nothing to extrapolate to; the comparison is n/a.")
        return
    err = error_table(tab)
    for m in tab.attrs.get("not_fitted", []):
        err.loc[len(err)] = {"method": m, "runs": err["runs"].max(), "scored": 0}
    e = err.set_index("method")
    n = int(e["runs"].max())

    def said(m: str) -> str:
        if m not in e.index or not e.loc[m, "scored"]:
            return f"{LABELS[m]} n/a (no acceptance or k = 0 data to calibrate it)"
        r = e.loc[m]
        part = f" of {int(r.scored)} runs" if r.scored < n else ""
        return f"{LABELS[m]} {r.mape:.1f}%{part} (median bias {r.median_bias:+.1f}%)"

    b = e.loc["bayes"]
    s.text = (f"The same {n} fitted speculative runs above their group's lowest load, predicted four ways. Bayes and "
              "least squares are in-sample here; the batch-1 formulas are calibrated at each group's lowest load and "
              "extrapolate across load (Leviathan et al. scales the measured k = 0 latency at each load by a speedup "
              "that does not change with load; Yan et al. ignores load). Mean absolute percentage error (a negative "
              f"bias means the method predicts less latency than observed): {said('bayes')}, with "
              f"{b.cover:.0%} of runs inside the {ctx['hdi_prob']:.0%} predictive interval; {said('least_squares')}; "
              f"{said('leviathan')}; {said('yan')}. What the Bayesian model adds beyond its point prediction: an "
              "interval per prediction, and from the same posterior P(speculation is slower) and the saturation rate "
              "(sections above) and per-request tails.")
    shown = err.assign(method=err["method"].map(LABELS)).rename(columns={
        "mape": "MAPE (%)", "mape_common": "MAPE common (%)", "median_ape": "median APE (%)",
        "median_bias": "median bias (%)", "cover": f"{ctx['hdi_prob']:.0%} coverage"})
    metrics = [c for c in shown.columns if c not in ("method", "runs", "scored")]
    shown[metrics] = shown[metrics].astype(object).where(
        shown[metrics].notna() & (shown["scored"] > 0).to_numpy()[:, None], "n/a")
    s.tables = [("Error per method (runs scored = runs the method could predict)", shown)]
    s.figure = plots.plot_baselines(model, data=tab, hdi_prob=ctx["hdi_prob"])


def _trust(model, s: Section, ctx: dict) -> None:
    name = model.config.get("name", "?")
    s.text = trust_reading(name)
    table = trust_table(name)
    if table is not None:
        s.tables = [("Held out on the frozen out-of-family test set (90% cluster-bootstrap intervals)", table)]


def _forms(model, s: Section, ctx: dict) -> None:
    found = form_comparison(model)
    name = model.config.get("name", "?")
    if found is None:
        others = ",".join(n for n in ("default", "per_position", "roofline") if n != name)
        s.text = (f"Only {name} was fitted to these runs, so the report cannot say whether another form fits them "
                  f"better. To compare, fit again with `bayes-sd fit ... --config {name} --compare {others}` (any "
                  "configurations): PSIS-LOO scores each on the runs, and the file keeps the form they support.")
        caveat = loo_caveat(model)
        if caveat:
            s.text += f" This form's own elpd would not take part: {caveat}."
        return
    table, reading = found
    s.text = f"Fitted form: {name}. {reading}"
    s.tables = [("PSIS-LOO of the run-mean latencies (elpd: higher is better; dse: standard error of the best's "
                 "lead; weight: stacking)", table)]


def _segments(g: pd.DataFrame, col: str) -> str:
    g = g.sort_values(col)
    runs = (g.best_k != g.best_k.shift()).cumsum()
    return ", ".join(f"k={int(r.best_k.iloc[0])} at {', '.join(_fmt(float(v)) for v in r[col])}"
                     for _, r in g.groupby(runs)).replace(", k=", "; k=")


def _measured_k_note(model, rec: pd.DataFrame) -> str:
    """'; measured at k = ...' for the pair of ``rec`` (one verifier, drafter, hardware), and which
    recommended k were never measured for it (the answer extrapolates in k there)."""
    if not {"verifier", "drafter", "hardware"} <= set(rec) or model.runs is None:
        return ""
    first = rec.iloc[0]
    measured = sorted(measured_ks(model, first["verifier"], first["drafter"], first["hardware"]) - {0})
    if not measured:
        return "; the pair was never measured: every k > 0 extrapolates"
    unmeasured = sorted({int(k) for k in rec["best_k"] if k > 0} - set(measured))
    note = f"; measured at k = {', '.join(map(str, measured))}"
    if unmeasured:
        source = _decay_source(model, first["drafter"])
        note += f"; not at k = {', '.join(map(str, unmeasured))} (extrapolated in k{source})"
    return note


def _decay_source(model, drafter: str) -> str:
    """', along ...' naming where the model's fall of acceptance with draft position comes from for
    ``drafter`` (configurations with decaying acceptance), else ''."""
    if model.config.get("model", {}).get("acceptance_form", "constant") != "decaying" or model.fit_data is None:
        return ", at constant acceptance per position"
    table = model.fit_data.drafter_table()
    if drafter not in table.index or not table.loc[drafter, "decay_identified"]:
        return ", along the other drafters' fall of acceptance with position"
    if table.loc[drafter, "measured_ks"] >= 2:
        return ", along the fall of acceptance with position its runs at several k show"
    return ", along the fall of acceptance with position its per-position counts show"


def _where_speculation_pays(g: pd.DataFrame, col: str) -> str:
    """Where along the loads speculation stops (or starts) paying, from the chosen k per load."""
    g = g.sort_values(col)
    spec = g["best_k"].to_numpy() > 0
    loads = g[col].to_numpy(float)
    if spec.all():
        return f"speculation pays at every load asked (up to {_fmt(loads[-1])})"
    if not spec.any():
        return "speculation does not pay at any load asked"
    if spec[0] and not spec[-1]:
        first_off = int(np.argmax(~spec))
        return f"speculation stops paying between {_fmt(loads[first_off - 1])} and {_fmt(loads[first_off])}"
    return f"speculation pays at {', '.join(_fmt(v) for v in loads[spec])} only"


def _extrapolated_loads(model, g: pd.DataFrame, col: str) -> str:
    """'; loads above the largest measured (...) are extrapolated' for the pair's verifier, hardware and
    workload, or ''."""
    runs = model.runs
    if runs is None or not {"verifier", "hardware", "dataset"} <= set(g) or col not in runs:
        return ""
    first = g.iloc[0]
    mine = runs[(runs["verifier"] == first["verifier"]) & (runs["hardware"] == first["hardware"])
                & (runs["dataset"] == first["dataset"])]
    top = mine[col].max() if len(mine) else np.nan
    if not np.isfinite(top):
        return f"; this verifier, hardware and workload were never measured under {col}: every load extrapolates"
    beyond = sorted(float(v) for v in g[col] if v > top * 1.0001)
    return (f"; loads above the largest measured ({_fmt(top)}) extrapolate: {', '.join(_fmt(v) for v in beyond)}"
            if beyond else "")


def _recommendations(model, s: Section, ctx: dict) -> None:
    rec = ctx["recommendations"]
    if rec is None or len(rec) == 0:
        s.text = ("No recommendation table was given. Run the draft-length recommender (bayes_sd.recommend."
                  "recommend_k) and pass its table to write_report(recommendations=...) or --recommendations.")
        return
    keys = [c for c in ("verifier", "drafter", "hardware", "dataset") if c in rec]
    parts = []
    for key, g in (rec.groupby(keys, sort=False) if keys else [((), rec)]):
        col = load_column(g)
        name = " / ".join(map(str, key if isinstance(key, tuple) else (key,))) or "the given pair"
        sure = (f" (P(k is best) {g.p_best.min():.2f}-{g.p_best.max():.2f})" if "p_best" in g else "")
        parts.append(f"{name} ({'rate, requests/s' if col == 'rate_rps' else 'concurrency'}): {_segments(g, col)}"
                     + sure + f"; {_where_speculation_pays(g, col)}" + _measured_k_note(model, g)
                     + _extrapolated_loads(model, g, col))
    s.text = (f"Best draft length per load, chosen over the whole posterior ({len(rec)} loads). "
              + ". ".join(parts) + ".")
    if "expected_regret" in rec:
        s.text += f" The largest expected regret of a choice is {rec.expected_regret.max():.3g} (objective units)."
    s.text += " How far these numbers held on data the model never saw: the next section."
    cols = [c for c in keys if rec[c].nunique() > 1] + [c for c in REC_COLUMNS if c in rec]
    s.tables = [("Recommended draft length per load", rec[cols])]
    s.figure = plots.plot_recommendations(model, rec)


_BUILDERS = {"data": _data, "diagnostics": _diagnostics, "ppc": _ppc, "latency": _latency, "speedup": _speedup,
             "saturation": _saturation, "pooling": _pooling, "baselines": _baselines, "trust": _trust,
             "forms": _forms, "recommendations": _recommendations}


def build_sections(model, recommendations: pd.DataFrame | None = None, *, hdi_prob: float = 0.9,
                   max_panels: int = 12, progress: bool = False) -> list[Section]:
    """Compute every report section (reading, tables, figure) in :data:`SECTIONS` order
    (``progress``: a progress bar over the sections)."""
    ctx = {"hdi_prob": hdi_prob, "max_panels": max_panels, "recommendations": recommendations}
    out = []
    for sid, title in progress_bar(SECTIONS, desc="report", enabled=progress, unit="section"):
        s = Section(sid, title)
        try:
            _BUILDERS[sid](model, s, ctx)
        except Exception as exc:  # noqa: BLE001 - one failing section must not sink the report
            warnings.warn(f"report section '{title}' failed: {type(exc).__name__}: {exc}", stacklevel=2)
            s.text, s.tables, s.figure = f"This section could not be computed ({type(exc).__name__}: {exc}).", [], None
        out.append(s)
    return out


def check_recommendations(rec: pd.DataFrame) -> pd.DataFrame:
    """Raise ``ValueError`` unless ``rec`` looks like a ``recommend_k`` table; return it."""
    missing = [c for c in ("best_k", "latency_mean_s") if c not in rec] + (
        [] if {"rate_rps", "concurrency"} & set(rec) else ["rate_rps or concurrency"])
    if missing:
        raise ValueError(f"recommendations: missing columns {missing}. Fix: pass the table written by "
                         "bayes_sd.recommend.recommend_k (one row per load)")
    return rec


# ---------------------------------------------------------------------------- writing
def _convergence_alarm(model) -> str:
    """The sentence the report opens with when the posterior has not converged ('' when it has)."""
    d = model.diagnostics()
    if d["converged"]:
        return ""
    return (f"Warning: the posterior has NOT converged (max R-hat {d['max_rhat']:.3f}, min ESS bulk "
            f"{d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f}, {d['divergences']} divergences). Every number "
            "below is provisional: refit with more draws and tuning before acting on it.")


def _meta(model, hdi_prob: float) -> str:
    a, sampler = model.idata.attrs, json.loads(model.idata.attrs.get("sampler", "{}"))
    cfg = model.config
    return (f"model configuration '{cfg.get('name', '?')}' ({cfg.get('description', '').rstrip('.')}), "
            f"id {a.get('id', '?')} (bayes_sd {a.get('bayes_sd_version', '?')}), fitted {a.get('created', '?')}, "
            f"sampler {sampler.get('nuts_sampler', '?')}; intervals are central {hdi_prob:.0%} posterior intervals; "
            f"report written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}")


def write_report(model, out_dir, recommendations: pd.DataFrame | None = None, *,
                 title: str = "bayes_sd posterior report", hdi_prob: float = 0.9, max_panels: int = 12,
                 dpi: int = 90, progress: bool = False) -> dict:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/*.png``) into ``out_dir``.

    A section that cannot be computed says so in its text (and warns) instead of sinking the report.

    Parameters
    ----------
    model : LatencyModel
        A fitted model.
    out_dir : str or pathlib.Path
        Output folder (created if needed).
    recommendations : pandas.DataFrame, optional
        Table from :func:`bayes_sd.recommend.recommend_k` (one row per load; optional
        verifier/drafter/hardware/dataset columns).
    title : str, default "bayes_sd posterior report"
        Title of both documents.
    hdi_prob : float, default 0.9
        Mass of the central posterior intervals, in (0, 1).
    max_panels : int, default 12
        Most panels (pair/workload groups) per figure.
    dpi : int, default 90
        Resolution of the PNG figures.
    progress : bool, default False
        A progress bar over the sections.

    Returns
    -------
    dict
        ``{"html": path, "markdown": path, "figures": {section id: path}}`` (``pathlib.Path``).

    Raises
    ------
    ValueError
        When ``recommendations`` lacks ``best_k``, ``latency_mean_s`` or a load column.

    Examples
    --------
    >>> paths = write_report(model, "report/", recommendations=recs)  # doctest: +SKIP
    """
    if recommendations is not None:
        check_recommendations(recommendations)
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sections = build_sections(model, recommendations, hdi_prob=hdi_prob, max_panels=max_panels,
                              progress=progress)
    meta = _meta(model, hdi_prob)
    figures: dict[str, Path] = {}
    alarm = _convergence_alarm(model)
    md = ([f"# {title}\n", f"_{meta}_\n"] + ([f"**{alarm}**\n"] if alarm else []) + ["## Contents\n"]
          + [f"{i}. [{s.title}](#{s.id})" for i, s in enumerate(sections, 1)])
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class='meta'>{html.escape(meta)}</p>"]
    body += [f"<p class='alarm'><strong>{html.escape(alarm)}</strong></p>"] if alarm else []
    body += ["<ol>"]
    body += [f"<li><a href='#{s.id}'>{html.escape(s.title)}</a></li>" for s in sections] + ["</ol>"]
    for s in sections:
        md += ["", f"<a id=\"{s.id}\"></a>", f"## {s.title}", "", s.text, ""]
        body += [f"<h2 id='{s.id}'>{html.escape(s.title)}</h2>", f"<p class='reading'>{html.escape(s.text)}</p>"]
        if s.figure is not None:
            buf = io.BytesIO()
            s.figure.savefig(buf, format="png", dpi=dpi)
            png = buf.getvalue()
            figures[s.id] = out / "figures" / f"{s.id}.png"
            write_bytes(png, figures[s.id])
            md += [f"![{s.title}](figures/{s.id}.png)", ""]
            body.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,"
                        f"{base64.b64encode(png).decode()}'>")
        for caption, table in s.tables:
            shown, note = _cap(table)
            md += [f"**{caption}**{note}", "", _md_table(shown)]
            body += [f"<h3>{html.escape(caption + note)}</h3>", _html_table(shown)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>")
    paths = {"html": out / "report.html", "markdown": out / "report.md", "figures": figures}
    write_text("\n".join(md) + "\n", paths["markdown"])
    write_text(page, paths["html"])
    return paths
