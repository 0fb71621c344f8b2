"""``bayes-sd summary``: what was measured, where, at which loads."""

from __future__ import annotations

import argparse

from bayes_sd.cli.common import HelpFormatter, add_label_flags, output_flags
from bayes_sd.cli.ingest import read_inputs

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    from bayes_sd.traces.summary import runs_summary

    print(runs_summary(read_inputs(args).runs).to_string(index=False))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``summary``; returns its parser."""
    p = subparsers.add_parser("summary", parents=[output_flags()],
                              help="print a per-configuration summary of run tables",
                              description="Runs per verifier/drafter/hardware/dataset and load type: the draft "
                                          "lengths measured, the loads covered, saturated runs and the latency range.",
                              epilog="Example:\n  bayes-sd summary runs.csv",
                              formatter_class=HelpFormatter)
    p.add_argument("files", nargs="+", help="run tables or trace files (anything `bayes-sd ingest` reads)")
    add_label_flags(p)
    p.set_defaults(func=run)
    return p
