"""``bayes-sd fit``: fit the hierarchical latency model to run tables and save the posterior."""

from __future__ import annotations

import argparse

from bayes_sd.cli.common import HelpFormatter, add_sampler_flags, output_flags, read_traces, say, show_progress
from bayes_sd.demo import MAIN_MODEL

#: what --config is compared with unless --compare says otherwise: the dense base, the simpler form a small
#: sweep identifies when the main job's model does not converge on it
FALLBACK_MODEL = "default"

#: --retry-minutes' default: a typical sweep's fit with its retries takes a few minutes; a fleet of 400+ runs
#: took 10-60 min to retry three times without converging (bench/LOG.md)
RETRY_MINUTES = 20.0

__all__ = ["add_parser", "run"]

EPILOG = """\
Sampling: the settings that converge the configuration (its [sampling] table in models/; without
one 2 chains x (700 tune + 3500 draws) at target acceptance 0.9, trees up to depth 10, nutpie's
jittered starts; moe_roofline_generative and moe_roofline_speculation: 1000 tune + 2000 draws
from where the data are plausible), each overridden by its flag.

The posterior file (netCDF, ArviZ) holds the posterior draws, the training runs (group
fit_data), the models table (fit_models) and the configuration, so `bayes-sd predict`,
`recommend` and `report` need nothing else. The line printed after sampling says whether the
posterior converged (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences). When it has not,
fit has already sampled again (--retries, default twice: more chains, pooled with the first, when
the only shortfall is effective sample size; otherwise twice the warm-up, target acceptance 0.95,
the next seed) and the line lists what it tried, then where the chains disagree most (the
parameter, which chains agree on it) and how far apart their predictions of the fitted runs are;
if it still has not, sample longer (--draws, --tune) before trusting it: predict, recommend and
report say so first until then, and recommend says where the chains' modes would choose another k.

Forms compared (--compare): by default the main job's configuration (--config,
moe_roofline_generative) and the dense base (default) are both fitted as above, then scored by
PSIS-LOO of the run-mean latencies (elpd: the expected log density of a run left out; az.compare).
The file keeps --config's posterior unless another form that converged at least as well leads it by
two standard errors of the elpd difference and by 4 elpd or more (smaller leads: the forms predict
alike), or --config did not converge and another form did (then that form, whatever the elpd says:
on a small first sweep the dense base is what the runs identify). A roofline form that counts an
open-loop run's tokens per pass at its measured batch (open_loop_batch = "measured": moe_roofline,
moe_roofline_speculation) is never chosen by elpd on open-loop runs (its elpd does not compare), and
the default fallback is not fitted where it could not be chosen: such a --config converged. The
comparison table, its reading and the choice are printed, stored in the posterior file (group
form_comparison) and shown by `bayes-sd report`. --compare none fits --config alone.

Configurations: moe_roofline_generative (the default and the main job's: roofline knee,
per-sequence cost, MoE expert coverage, acceptance decaying with draft position, the decay pooled
across drafters, what a speculating step and each sequence in it cost whatever k, and an open loop
costed at the batch the model predicts; pass --models so it knows the MoE verifiers), default (dense
verifiers, constant acceptance per position), moe_roofline_speculation (the main job's with the open
loop costed at the measured batch), moe_roofline_per_position (without the cost of speculating),
moe_roofline (constant acceptance), moe, roofline, per_position, moe_per_position, drafter_design,
achieved_rate, or a .toml path.

Example:
  bayes-sd fit runs.csv --models models.csv --out posterior.nc
  bayes-sd fit runs.csv --config default --compare none --out posterior.nc
  bayes-sd fit runs.csv --config default --compare per_position,roofline --out posterior.nc
"""


def _fit(args: argparse.Namespace, config: str, runs, models, progress: bool):
    from bayes_sd.model import LatencyModel
    from bayes_sd.model.config import sampling_settings

    model = LatencyModel(config)
    settings = sampling_settings(model.config, draws=args.draws, tune=args.tune, chains=args.chains,
                                 target_accept=args.target_accept)
    starts = "where the data are plausible" if settings["start"] == "plausible" else "jittered"
    say(args, f"fitting {model.config['name']} to {len(runs)} runs: {settings['chains']} chains x "
              f"({settings['tune']} tune + {settings['draws']} draws) at target acceptance "
              f"{settings['target_accept']:g}, chains started {starts}")
    model.fit(runs, models=models, nuts_sampler=args.sampler, random_seed=args.seed, progressbar=progress,
              retries=args.retries, retry_time_limit=60.0 * args.retry_minutes, **settings)
    print(model.diagnostics_text())
    return model


def _candidates(args: argparse.Namespace) -> list[str]:
    """--config first, then the forms to compare it with: --compare's, or by default FALLBACK_MODEL (none
    when --config is that form, or --compare is 'none')."""
    from bayes_sd.model.config import load_config

    if args.compare is None:
        extra = [] if load_config(args.config)["name"] == FALLBACK_MODEL else [FALLBACK_MODEL]
    elif args.compare.strip().lower() == "none":
        extra = []
    else:
        extra = [c.strip() for c in args.compare.split(",") if c.strip()]
    given = [args.config, *extra]
    names = [load_config(c)["name"] for c in given]
    if len(set(names)) < len(names):
        raise ValueError(f"--compare {args.compare!r}: give configurations other than --config {args.config!r}, "
                         f"each once (their names: {', '.join(names)})")
    return given


def _fallback_moot(model) -> bool:
    """Whether the default fallback could not be chosen over ``model`` (the requested form): it converged, and
    its elpd does not compare (:func:`bayes_sd.model.compare.choose_form` then keeps it), so fitting the
    fallback would only cost time."""
    from bayes_sd.model.compare import loo_caveat

    return bool(model.diagnostics()["converged"]) and loo_caveat(model) is not None


def run(args: argparse.Namespace) -> int:
    progress = show_progress(args)
    names = _candidates(args)  # checked before any sampling
    runs = read_traces(args.command, args.runs, progress=progress).runs
    models = read_traces(args.command, args.models).models if args.models else None
    fitted = {}
    for name in names:
        if fitted and args.compare is None and _fallback_moot(next(iter(fitted.values()))):
            say(args, f"not fitting {name}: {next(iter(fitted))} converged, and its elpd does not compare on these "
                      "runs, so the fallback could not be chosen")
            break
        model = _fit(args, name, runs, models, progress)
        fitted[model.config["name"]] = model
    requested = next(iter(fitted))  # --config's name
    model = fitted[requested]
    if len(fitted) > 1:
        from bayes_sd.model.compare import attach_comparison, compare_forms

        table, chosen, reading = compare_forms(fitted, requested)
        print()
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        print(reading)
        model = fitted[chosen]
        attach_comparison(model, table, reading)
    path = model.save(args.out)
    print(f"wrote posterior to {path}" + (f" ({model.config['name']})" if len(fitted) > 1 else ""))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``fit``; returns its parser."""
    p = subparsers.add_parser("fit", parents=[output_flags()], help="fit the hierarchical latency model to run tables",
                              description="Fit the Bayesian latency model (NUTS; nutpie by default) to canonical "
                                          "runs and save the posterior, the training runs and the configuration "
                                          "to one netCDF file.",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", help="run tables (or any file `bayes-sd ingest` reads)")
    p.add_argument("--models", nargs="*", help="optional models table(s): sizes of verifiers and drafters")
    p.add_argument("--config", default=MAIN_MODEL,
                   help=f"model configuration: a name in models/ or a .toml path (default: {MAIN_MODEL}, the main "
                        "job's)")
    p.add_argument("--out", required=True, help="posterior file (.nc)")
    p.add_argument("--compare", metavar="CONFIGS",
                   help="also fit these configurations (comma-separated) to the same runs, compare them with "
                        "--config by PSIS-LOO of the run-mean latencies, and save the form the runs support "
                        f"(see below; default: {FALLBACK_MODEL}, unless --config is; 'none': fit --config only)")
    p.add_argument("--draws", type=int, help="posterior draws per chain (default: the configuration's)")
    p.add_argument("--tune", type=int, help="tuning steps per chain (default: the configuration's)")
    p.add_argument("--chains", type=int, help="chains (default: the configuration's, 2; more where cores allow)")
    p.add_argument("--target-accept", type=float,
                   help="NUTS target acceptance in (0, 1) (default: the configuration's, 0.9)")
    add_sampler_flags(p)
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--retries", type=int, default=2,
                   help="when the posterior has not converged, sample again up to this many times: after an "
                        "attempt without divergences (R-hat <= 1.05) more chains with its settings and the next "
                        "seed, pooled with the earlier attempts without divergences; otherwise twice the warm-up, "
                        "a higher target acceptance (0.95, then 0.98) and the next seed; keeps the first attempt "
                        "or pool that converges, else the best (default 2; 0: sample once)")
    p.add_argument("--retry-minutes", type=float, default=RETRY_MINUTES,
                   help="no retry starts once the attempts have sampled this many minutes in all (a started one "
                        "runs to its end): on a sweep of hundreds of runs a retry at trees of depth 10 can take "
                        f"tens of minutes (default {RETRY_MINUTES:g}; the line after sampling says when it stopped "
                        "the retries)")
    p.set_defaults(func=run)
    return p
