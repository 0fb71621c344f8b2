"""The main job (``bayes-sd demo``): bundled data -> summary -> fit -> report -> recommendations.

Each stage writes its outputs atomically into the output folder, so an interrupted run
never leaves a half-written file behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bayes_sd import datasets
from bayes_sd._io import write_json
from bayes_sd.traces import write_table
from bayes_sd.traces.summary import runs_summary

__all__ = ["MAIN_MODEL", "run_demo", "bundled_runs", "bundled_models", "demo_recommendations", "demo_sampling"]

log = logging.getLogger(__name__)


def bundled_runs() -> pd.DataFrame:
    """The package's default data: real B200 runs plus the synthetic fleet (labelled by source)."""
    return pd.concat([datasets.load_b200_runs(), datasets.load_fleet_runs()], ignore_index=True)


def bundled_models() -> pd.DataFrame:
    """MODELS table of the bundled data (experts of MoE verifiers, drafter sizes), for the variants
    that use it (``moe``, ``moe_roofline``, ``drafter_design``): the synthetic fleet's; the real
    B200 verifiers are dense and need no row."""
    return datasets.load_fleet_models()


#: what the demo recommends for: (verifier, drafter, hardware, dataset, prompt, output, load kind, loads)
DEMO_DECISIONS = (
    ("Qwen/Qwen3.8-27B", "dspark", "B200", "HumanEval", 190.0, 760.0, "concurrency", (1, 4, 16, 32, 64)),
    ("Qwen/Qwen3.8-27B", "mtp", "B200", "math_reasoning", 112.0, 280.0, "concurrency", (1, 4, 16, 32, 64)),
    ("llama3.1-8b", "eagle3-small", "H100", "chat", 512.0, 256.0, "rate", (2.0, 6.0, 10.0, 14.0, 18.0)),
)

#: the main job's model configuration: moe_roofline (the most accurate held out; bench/README.md,
#: accuracy) with acceptance that decays with draft position, its decay pooled across drafters, so that
#: a k never measured for a pair is predicted with the population's doubt, with what turning
#: speculation on costs whatever k, without which it chose slower speculation in a third of the
#: development fleets' conditions (docs/variants.md), and with an open loop costed at the batch the
#: model predicts rather than the measured one, so that it is a generative model of every run (SBC and
#: PSIS-LOO hold; bayes-sd fit compares it with the dense base by elpd); on all bundled data it converges
#: in 80-103 s on 2 cores with its own [sampling] table (chains started where the data are plausible;
#: bench/README.md, fit_speed); models/default.toml is the dense base that the variants extend, and what
#: LatencyModel() fits when given no name
MAIN_MODEL = "moe_roofline_generative"

#: sampling settings of the main job beyond what converges its configuration
#: (:func:`bayes_sd.model.config.sampling_settings`): full, trees capped at depth 6 (63 leapfrog steps: on all
#: bundled data only the first warm-up draws, before the mass matrix is adapted, ran deeper, to depth 8-10,
#: and no posterior draw goes past depth 5; bench/README.md, fit_speed) and one retry (an unconverged fit
#: samples once more with twice the warm-up at target acceptance 0.95); --quick, a smoke run on the real runs
#: plus the synthetic llama3.1-8b pairs on H100, not for conclusions
DEMO_SAMPLING = {"full": {"max_tree_depth": 6, "retries": 1}, "quick": {"draws": 150, "tune": 200, "chains": 2}}


def demo_sampling(model_config: str | Path | dict = MAIN_MODEL, quick: bool = False) -> dict:
    """Sampling settings of the main job for ``model_config`` (a name in ``models/``, a path, or a
    loaded configuration): what converges it (:func:`bayes_sd.model.config.sampling_settings`, whose
    defaults ``DEMO_SAMPLING["full"]`` extends; the configuration's own table still wins), or
    ``DEMO_SAMPLING["quick"]`` for the smoke run.
    """
    from bayes_sd.model.config import SAMPLING, sampling_settings

    if quick:
        return dict(DEMO_SAMPLING["quick"])
    return sampling_settings(model_config, defaults={**SAMPLING, **DEMO_SAMPLING["full"]})


def demo_recommendations(model, decisions=DEMO_DECISIONS, k_max: int = 7) -> tuple[pd.DataFrame, dict]:
    """Draft-length recommendations (objective: mean latency) for the demo's pairs and loads, and per
    drafter the rows an engine should serve (:func:`~bayes_sd.recommend.schedule_check`: the static k
    where changing k with load does not pay for the schedule's own cost)."""
    from bayes_sd.recommend import chosen_rows, evaluate_k, schedule_check, static_recommendations

    tables, served = [], {}
    for verifier, drafter, hardware, dataset, p, d, kind, loads in decisions:
        load = {"concurrencies": loads} if kind == "concurrency" else {"rates": loads}
        table = evaluate_k(model, verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset,
                           prompt_len=p, output_len=d, k_max=k_max, **load)
        recs = chosen_rows(table, model)
        check = schedule_check(table)
        rows = recs if check["use_schedule"] else static_recommendations(table, check["static_k"])
        rows.attrs = {**recs.attrs, "schedule_check": check}
        served[drafter] = rows
        tables.append(recs.assign(verifier=verifier, drafter=drafter, hardware=hardware, dataset=dataset))
    return pd.concat(tables, ignore_index=True), served


def run_demo(out: Path, *, quick: bool = False, progress: bool = True, seed: int = 20261122,
             nuts_sampler: str = "nutpie", model_config: str | Path = MAIN_MODEL,
             echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the main job on the bundled data and return the files written.

    1. data summary; 2. fit of ``model_config`` (a name in ``models/`` or a path; nutpie) with
    :func:`demo_sampling`; 3. posterior saved to netCDF; 4. draft-length recommendations and a
    vLLM configuration for the real DSpark pair; 5. the report. ``echo`` receives one line per
    stage (and the diagnostics line); ``progress``: progress bars while sampling and reporting.
    """
    import time
    import warnings

    from bayes_sd.model import ConvergenceWarning, LatencyModel
    from bayes_sd.recommend import vllm_config
    from bayes_sd.report import write_report

    t0 = time.perf_counter()
    elapsed = lambda: f"({time.perf_counter() - t0:.0f} s)"  # noqa: E731
    out.mkdir(parents=True, exist_ok=True)
    runs = bundled_runs()
    if quick:  # the real runs and the synthetic llama3.1-8b pairs on H100 (the pair recommended below)
        keep = (runs["hardware"] == "B200") | ((runs["hardware"] == "H100") & (runs["verifier"] == "llama3.1-8b"))
        runs = runs[keep].reset_index(drop=True)
    written: dict[str, Path] = {}
    summary = runs_summary(runs)
    written["summary"] = write_table(summary, out / "data_summary.csv")
    n_syn = int(runs["source"].str.startswith("synthetic:").sum())
    echo(f"[1/5] bundled data: {len(runs)} runs ({len(runs) - n_syn} real, {n_syn} synthetic) -> {written['summary']}")
    latency_model = LatencyModel(model_config)
    settings = demo_sampling(latency_model.config, quick)
    echo(f"[2/5] fitting the hierarchical model ({latency_model.config['name']}): {settings['chains']} chains x "
         f"({settings['tune']} tune + {settings['draws']} draws){' (quick: not for conclusions)' if quick else ''}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = latency_model.fit(runs, models=bundled_models(), random_seed=seed, progressbar=progress,
                                  nuts_sampler=nuts_sampler, **settings)
    echo(f"      {model.diagnostics_text()} {elapsed()}")
    for w in caught:
        if issubclass(w.category, ConvergenceWarning) and not quick:
            echo(f"      warning: {w.message}")
    written["posterior"] = model.save(out / "posterior.nc")
    echo(f"[3/5] posterior -> {written['posterior']} {elapsed()}")
    recs, served = demo_recommendations(model)
    written["recommendations"] = write_table(recs, out / "recommendations.csv")
    dspark = served["dspark"]
    cfg = vllm_config(dspark, method="dspark", drafter_model="RedHatAI/Qwen3.8-27B-speculator.dspark")
    cfg["schedule_check"] = dspark.attrs["schedule_check"]
    path = out / "vllm_config_dspark.json"
    write_json(cfg, path)
    written["vllm_config"] = path
    echo(f"[4/5] recommendations -> {written['recommendations']}; vLLM config -> {path} {elapsed()}")
    paths = write_report(model, out, recommendations=recs, progress=progress)
    written.update({"report_html": Path(paths["html"]), "report_md": Path(paths["markdown"])})
    echo(f"[5/5] report -> {paths['html']} and {paths['markdown']} {elapsed()}")
    return written
