"""``bayes-sd compare``: which model configuration do these runs support (PSIS-LOO)?"""

from __future__ import annotations

import argparse

from bayes_sd.cli.common import HelpFormatter, add_sampler_flags, output_flags, read_traces, say, show_progress, warn

__all__ = ["add_parser", "run"]

EPILOG = """\
Each configuration is fitted to the same runs and scored by PSIS-LOO of the run-mean latencies
(az.compare): elpd_loo is the expected log predictive density of a left-out run (higher is
better), elpd_diff and dse the best's lead over each other one and its standard error; a lead
under two standard errors does not tell the two apart. weight is the stacking weight. Pareto
k > 0.7 on a run means its leave-one-out estimate is unreliable (a run the others do not predict).
Every fit's convergence is printed: an unconverged fit's elpd is not to be trusted.

A roofline configuration that counts open-loop runs' tokens per pass at their measured batch
(open_loop_batch = "measured", as in moe_roofline and moe_roofline_speculation) conditions on the
observed latency: its elpd is not comparable on open-loop runs, and the command says so. The main
job's moe_roofline_generative counts them at the batch it predicts (generative), so its elpd compares.

Example:
  bayes-sd compare runs.csv --models models.csv --configs default,moe_roofline --out loo.csv
"""


def run(args: argparse.Namespace) -> int:
    from bayes_sd.model.compare import compare_configs, loo_caveat, support_reading
    from bayes_sd.traces import write_table

    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if len(names) < 2 or len(set(names)) < len(names):
        raise ValueError(f"--configs: give two or more different configurations, got {args.configs!r}")
    runs = read_traces(args.command, args.runs).runs
    models = read_traces(args.command, args.models).models if args.models else None
    given = [f"{v} {k}" for k, v in (("chains", args.chains), ("tune", args.tune), ("draws", args.draws)) if v]
    say(args, f"fitting {len(names)} configurations to {len(runs)} runs, each with the sampling settings that "
              f"converge it{' but ' + ', '.join(given) if given else ''}")
    comparison, per_config, fitted = compare_configs(runs, None, {n: n for n in names}, models=models,
                                                     draws=args.draws, tune=args.tune, chains=args.chains,
                                                     random_seed=args.seed, nuts_sampler=args.sampler,
                                                     progressbar=show_progress(args))
    print(per_config.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    shown = comparison[["rank", "elpd_loo", "p_loo", "elpd_diff", "se", "dse", "weight", "warning"]]
    print(shown.to_string(float_format=lambda v: f"{v:.4g}"))
    print()
    print(support_reading(comparison))
    for name, model in fitted.items():
        caveat = loo_caveat(model)
        if caveat:
            warn(args.command, caveat)
        if not model.diagnostics()["converged"]:
            warn(args.command, f"{name} has not converged ({model.diagnostics_text()}): sample longer (--draws, "
                               "--tune) before reading its elpd")
    if args.out:
        table = shown.reset_index(names="config").merge(per_config, on="config", suffixes=("", "_fit"))
        write_table(table, args.out)
        say(args, f"wrote the comparison to {args.out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``compare``; returns its parser."""
    p = subparsers.add_parser(
        "compare", parents=[output_flags()], help="which model configuration the runs support (PSIS-LOO)",
        description="Fit several model configurations to the same runs and compare them by PSIS-LOO of the "
                    "run-mean latencies: which form the data support, and how strongly.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", help="run tables (or any file `bayes-sd ingest` reads)")
    p.add_argument("--models", nargs="*", help="optional models table(s): sizes of verifiers and drafters")
    p.add_argument("--configs", default="default,moe_roofline",
                   help="configurations to compare, comma-separated: names in models/ or .toml paths "
                        "(default default,moe_roofline)")
    p.add_argument("--draws", type=int, help="posterior draws per chain (default: each configuration's)")
    p.add_argument("--tune", type=int, help="tuning steps per chain (default: each configuration's)")
    p.add_argument("--chains", type=int, help="chains (default: each configuration's, 2)")
    add_sampler_flags(p)
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", help="write the comparison table here (.csv or .parquet)")
    p.set_defaults(func=run)
    return p
