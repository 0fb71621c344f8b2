"""``bayes-sd report``: write the posterior report (HTML + Markdown) of a fitted model."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_sd.cli.common import HelpFormatter, output_flags, show_progress

__all__ = ["add_parser", "run"]

EPILOG = """\
Writes DIR/report.html (self-contained: figures embedded, no external files), DIR/report.md
and DIR/figures/*.png. Sections: data overview, sampler diagnostics, posterior predictive
check, latency versus load, speedup versus k = 0, saturation rate, partial pooling and,
with --recommendations, the draft-length policy.

Example:
  bayes-sd report posterior.nc --out report/ --recommendations recs.csv
"""


def _read_recommendations(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such recommendations file. Fix: pass a table written by `bayes-sd recommend`")
    if p.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if p.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(p)
    raise ValueError(f"{p}: recommendations must be .csv or .parquet")


def run(args: argparse.Namespace) -> int:
    from bayes_sd.model import LatencyModel
    from bayes_sd.report.document import check_recommendations, write_report

    recs = check_recommendations(_read_recommendations(args.recommendations)) if args.recommendations else None
    model = LatencyModel.load(args.posterior)
    paths = write_report(model, args.out, recommendations=recs, title=args.title, hdi_prob=args.hdi_prob,
                         max_panels=args.max_panels, progress=show_progress(args))
    size = paths["html"].stat().st_size / 1e6
    print(f"wrote {paths['html']} ({size:.1f} MB, {len(paths['figures'])} figures) and {paths['markdown']}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``report``; returns its parser."""
    p = subparsers.add_parser("report", parents=[output_flags()],
                              help="write the posterior report (HTML and Markdown) of a fitted model",
                              description="Diagnostics, posterior predictive check, latency, speedup and saturation "
                                          "plots with a plain-language reading of each, as one self-contained HTML "
                                          "page and a Markdown file.",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("posterior", help="posterior file written by `bayes-sd fit`")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--recommendations", help="recommendation table (.csv/.parquet) from `bayes-sd recommend`")
    p.add_argument("--title", default="bayes_sd posterior report", help="report title")
    p.add_argument("--hdi-prob", type=float, default=0.9, help="mass of the central intervals (default 0.9)")
    p.add_argument("--max-panels", type=int, default=12, help="most groups plotted per figure (default 12)")
    p.set_defaults(func=run)
    return p
