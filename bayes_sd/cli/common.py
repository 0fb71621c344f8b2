"""What every ``bayes-sd`` subcommand shares: output flags, the speculative-configuration and
workload flags, the sampler flags, comma-separated numbers, and how output is kept quiet.

A subcommand module has ``add_parser(subparsers)`` (registers it, ``func=run``) and
``run(args) -> int``; it raises :class:`CLIError`, ``ValueError`` or ``TraceError`` with a
one-line message for a user error, which :func:`bayes_sd.cli.main` prints as one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import warnings

__all__ = ["HelpFormatter", "CLIError", "CHATTY_LOGGERS", "output_flags", "configure_output", "show_progress",
           "add_label_flags", "labels", "saturation_options", "add_workload_flags", "workload_loads",
           "add_sampler_flags", "floats", "say", "warn", "read_traces"]

#: loggers of the libraries underneath, silenced below WARNING unless --verbose
CHATTY_LOGGERS = ("pymc", "pytensor", "arviz", "numba", "nutpie", "matplotlib", "h5py")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps one-line paragraphs (descriptions) to the terminal; keeps hand-laid text (epilogs with
    examples and tables) as written."""

    def _fill_text(self, text, width, indent):
        out = []
        for paragraph in text.split("\n\n"):
            if "\n" in paragraph or paragraph.startswith(" "):
                out.append(super()._fill_text(paragraph, width, indent))
            else:
                out.append(textwrap.fill(paragraph, width, initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def output_flags() -> argparse.ArgumentParser:
    """Parent parser of every subcommand: --quiet, --verbose, --no-progress."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="print only results and errors (no progress)")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also show the libraries' log lines and warnings (PyMC, PyTensor, ArviZ, numba)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars, keep the other output")
    return p


class _OneLine(logging.Formatter):
    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        return f"bayes-sd {self.command}: {record.levelname.lower()}: {record.getMessage()}"


def configure_output(args: argparse.Namespace) -> logging.Handler:
    """Quiet by default: the libraries' INFO logs (PyMC's "Sampling: [...]") and their warnings
    (ArviZ's refactor notice, PyTensor's BLAS notice) are hidden unless ``--verbose``; bayes_sd's
    own log messages print as ``bayes-sd COMMAND: warning: ...`` lines. Returns the handler added
    to the ``bayes_sd`` logger (the caller removes it)."""
    verbose = getattr(args, "verbose", False)
    level = logging.INFO if verbose else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(getattr(args, "command", "")))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    own = logging.getLogger("bayes_sd")
    own.addHandler(handler)
    own.setLevel(min(own.level or logging.WARNING, handler.level))
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"arviz(\..*)?")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(numpy|pandas|arviz|xarray)(\..*)?")
    return handler


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with --quiet or --no-progress."""
    return not (getattr(args, "quiet", False) or getattr(args, "no_progress", False))


def say(args: argparse.Namespace, line: str) -> None:
    """Print a progress line (stdout) unless --quiet."""
    if not getattr(args, "quiet", False):
        print(line, flush=True)


def warn(command: str, message: str) -> None:
    """One warning line on stderr."""
    print(f"bayes-sd {command}: warning: {message}", file=sys.stderr, flush=True)


def read_traces(command: str, paths, **options):
    """``bayes_sd.traces.ingest_paths(paths, **options)`` with its warnings printed once each, as one line
    (:func:`warn`), instead of as Python warnings naming a source line."""
    from bayes_sd.traces import ingest_paths
    from bayes_sd.traces.formats.base import TraceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        result = ingest_paths(paths, **options)
    for line in result.warnings:
        warn(command, line)
    return result


def warn_if_unconverged(command: str, model) -> None:
    """Say first, on stderr, when the posterior a command answers from has not converged."""
    d = model.diagnostics()
    if not d["converged"]:
        warn(command, f"the posterior has NOT converged (max R-hat {d['max_rhat']:.3f}, min ESS bulk "
                      f"{d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f}, {d['divergences']} divergences): "
                      "these numbers are provisional; refit with more --draws/--tune")


def floats(text: str, name: str) -> list[float]:
    """Comma-separated numbers of the flag ``name``; ValueError with a one-line message otherwise."""
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got '{text}'") from None
    if not vals:
        raise ValueError(f"{name}: give at least one value")
    return vals


def add_label_flags(p: argparse.ArgumentParser) -> None:
    """The speculative configuration of benchmark files that do not record it, and the overrides of
    the saturation check (``--no-saturation-check``, ``--keep-run``, ``--drop-run``)."""
    g = p.add_argument_group("speculative configuration (when the files do not record it)")
    g.add_argument("--verifier", help="target model served")
    g.add_argument("--drafter", help="draft model or method ('none' without speculation)")
    g.add_argument("--k", type=int, help="draft length num_speculative_tokens (0 = none)")
    g.add_argument("--hardware", help="accelerator, e.g. H100")
    g.add_argument("--dataset", help="workload name")
    g.add_argument("--max-num-seqs", type=int, metavar="N",
                   help="the server's batch cap, requests in service at most (vLLM --max-num-seqs, SGLang "
                        "--max-running-requests, llama.cpp --parallel); read from a sweep manifest's server command "
                        "when it sets one. The model then knows where requests start to queue")
    g.add_argument("--kv-cache-tokens", type=int, metavar="N",
                   help="tokens of context the server's KV cache holds: requests it cannot hold wait, as for a "
                        "batch slot. Read from a vLLM log ('GPU KV cache size: N tokens') or /metrics scrape "
                        "(vllm:cache_config_info) among the inputs, or a sweep manifest's server command (SGLang "
                        "--max-total-tokens, llama-server -c), when they say it; this flag wins")
    g.add_argument("--sidecar", help="YAML with verifier, drafter, k, hardware, dataset (and per-run overrides)")
    g.add_argument("--attach-to", help="run id that acceptance-only files (Prometheus, logs) belong to")
    s = p.add_argument_group("saturation check (bayes_sd.traces.aggregate.detect_saturation)")
    s.add_argument("--no-saturation-check", action="store_true",
                   help="flag nothing (saturated values given in the inputs are kept)")
    s.add_argument("--keep-run", action="append", default=[], metavar="ID",
                   help="never flag this run saturated (repeatable); reported if a rule would have")
    s.add_argument("--drop-run", action="append", default=[], metavar="ID",
                   help="leave this run out of the output (repeatable); reported as a warning")


def labels(args: argparse.Namespace) -> dict:
    """The flags of :func:`add_label_flags` as ``ingest_paths``' ``labels``."""
    return {"verifier": args.verifier, "drafter": args.drafter, "k": args.k, "hardware": args.hardware,
            "dataset": args.dataset, "max_num_seqs": getattr(args, "max_num_seqs", None),
            "kv_cache_tokens": getattr(args, "kv_cache_tokens", None), "attach_to": args.attach_to}


def saturation_options(args: argparse.Namespace) -> dict:
    """The saturation flags of :func:`add_label_flags` as ``ingest_paths`` keyword arguments."""
    return {"saturation_check": not getattr(args, "no_saturation_check", False),
            "keep_runs": list(getattr(args, "keep_run", None) or []),
            "drop_runs": list(getattr(args, "drop_run", None) or [])}


def add_workload_flags(p: argparse.ArgumentParser) -> None:
    """The workload and load flags shared by ``recommend`` and ``what-if-drafter``."""
    g = p.add_argument_group("workload and load")
    g.add_argument("--dataset", default="unseen", help="workload (acceptance); an unseen one uses the population")
    g.add_argument("--prompt-len", type=float, required=True, help="mean prompt tokens")
    g.add_argument("--output-len", type=float, required=True, help="mean output tokens")
    g.add_argument("--rate-rps", help="open-loop request rates, comma-separated (requests/s)")
    g.add_argument("--concurrency", help="closed-loop concurrent streams, comma-separated")


def workload_loads(args: argparse.Namespace) -> tuple[list[float] | None, list[float] | None]:
    """(rates, concurrencies) from the flags of :func:`add_workload_flags`; exactly one is given."""
    if (args.rate_rps is None) == (args.concurrency is None):
        raise ValueError(f"{args.command} needs exactly one of --rate-rps R1,R2,... or --concurrency N1,N2,...")
    rates = floats(args.rate_rps, "--rate-rps") if args.rate_rps is not None else None
    concs = floats(args.concurrency, "--concurrency") if args.concurrency is not None else None
    return rates, concs


def add_sampler_flags(p: argparse.ArgumentParser) -> None:
    """--sampler (NUTS implementation)."""
    p.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc"],
                   help="NUTS implementation (default nutpie, compiled with numba; pymc as fallback)")
