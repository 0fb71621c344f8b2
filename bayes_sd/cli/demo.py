"""``bayes-sd demo``: the main job on the bundled data (fit, report, recommendations)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_sd.cli.common import HelpFormatter, add_sampler_flags, output_flags, say, show_progress
from bayes_sd.demo import MAIN_MODEL

__all__ = ["add_parser", "run"]

EPILOG = """\
Writes into DIR: data_summary.csv (what the bundled data covers), posterior.nc (posterior,
training runs and configuration; `bayes-sd predict`, `recommend` and `report` read it),
recommendations.csv (best draft length per load for three pairs, with P(k is best), expected
regret, speedup versus k = 0 and P(speculation is slower)), vllm_config_dspark.json (the
recommendation for the real DSpark pair as vLLM configuration), report.html and report.md.
The diagnostics line says whether the posterior converged.

Example:
  bayes-sd demo --out results
  bayes-sd demo --quick --out smoke        # a smoke run in about two minutes; not for conclusions
"""


def run(args: argparse.Namespace) -> int:
    from bayes_sd.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=show_progress(args), nuts_sampler=args.sampler,
             model_config=args.model, echo=lambda line: say(args, line))
    print(f"done: {Path(args.out) / 'report.html'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``demo``; returns its parser."""
    p = subparsers.add_parser("demo", parents=[output_flags()],
                              help="the main job: fit the bundled data, write the report and recommendations",
                              description="Fit the bundled real B200 runs and the synthetic fleet with the main "
                                          "job's model, and write the posterior, the report and draft-length "
                                          "recommendations.",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small sampling settings on the real runs and the synthetic llama3.1-8b "
                        "pairs on H100 (under 2 minutes on 2 cores; not for conclusions)")
    add_sampler_flags(p)
    p.add_argument("--model", default=MAIN_MODEL,
                   help=f"model configuration: a name in models/ or a .toml path (default: {MAIN_MODEL}, the "
                        "roofline knee, per-sequence cost, MoE expert coverage and acceptance decaying with draft "
                        "position; 'default' is the dense base "
                        "model). A configuration's [sampling] table sets the draws it needs")
    p.set_defaults(func=run)
    return p
