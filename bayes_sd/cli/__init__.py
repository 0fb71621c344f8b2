"""The ``bayes-sd`` command line: one module per subcommand, shared flags in :mod:`.common`.

Every subcommand turns a user error (bad file, unknown name, bad option) into one clear line on
stderr and exit status 2, never a traceback (``BAYES_SD_DEBUG=1`` shows tracebacks). Output is
quiet by default: results, one line per stage of long work and progress bars; ``--quiet`` keeps
the results only, ``--verbose`` adds the libraries' log lines and warnings.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from bayes_sd import __version__
from bayes_sd.cli import compare, demo, fit, ingest, predict, recommend, report, summary, sweep, what_if_drafter
from bayes_sd.cli.common import CHATTY_LOGGERS, CLIError, HelpFormatter, configure_output
from bayes_sd.traces.schema import TraceError

__all__ = ["main", "build_parser", "CLIError"]

#: the subcommands, in the order ``bayes-sd --help`` lists them
SUBCOMMANDS = (sweep, ingest, summary, fit, compare, predict, recommend, what_if_drafter, report, demo)

DESCRIPTION = """\
Bayesian models of speculative-decoding latency under load: should speculation be on, with which
drafter and which draft length, at my load? Ingest benchmark traces (GuideLLM, vllm bench serve,
SGLang, vLLM metrics and logs), fit a hierarchical latency model, predict latency with
uncertainty, choose the draft length and export it as vLLM configuration."""

EPILOG = """\
Typical use:
  bayes-sd sweep plan.toml --out sweep/       # drive a server through configurations x loads
  bayes-sd ingest sweep/ --out runs.csv
  bayes-sd fit runs.csv --out posterior.nc
  bayes-sd recommend posterior.nc --verifier V --drafter D --hardware H --prompt-len 300 \\
      --output-len 250 --rate-rps 1,4,8 --vllm-config vllm.json
  bayes-sd report posterior.nc --out report/
  bayes-sd demo --out results          # the whole job on the bundled data

`bayes-sd COMMAND --help` documents each command."""


def build_parser() -> argparse.ArgumentParser:
    """The ``bayes-sd`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="bayes-sd", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"bayes-sd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``bayes-sd`` with ``argv`` (default: the process arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    levels = {name: logging.getLogger(name).level for name in (*CHATTY_LOGGERS, "bayes_sd")}
    handler = None
    try:
        with warnings.catch_warnings():
            handler = configure_output(args)
            return args.func(args)
    except (TraceError, CLIError, FileNotFoundError, ValueError, KeyError) as exc:
        if os.environ.get("BAYES_SD_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"bayes-sd {args.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("bayes_sd").removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
