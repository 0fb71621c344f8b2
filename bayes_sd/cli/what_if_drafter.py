"""``bayes-sd what-if-drafter``: latency of a drafter never measured, and what it needs for parity."""

from __future__ import annotations

import argparse

from bayes_sd.cli.common import HelpFormatter, add_workload_flags, output_flags, workload_loads

__all__ = ["add_parser", "run"]

EPILOG = """\
Needs a posterior fitted with drafter size predictors:
  bayes-sd fit runs.csv --models models.csv --config drafter_design --out posterior.nc
(the models table gives layers and params_b of every drafter; `bayes-sd ingest --help`).

Prints, per draft length k and load, the predicted mean latency (s) with its 90% predictive
interval and the speedup versus k = 0 for a drafter with --layers and --params-b. The interval
includes what size does not explain (a population draw) and, unless --acceptance gives the
candidate's per-position acceptance (measured offline, say), an unknown acceptance (the
drafters' population). With --parity-against DRAFTER, also prints what the candidate needs to
match that measured drafter at each load, each at its best k: the extra per-position
acceptance and the factor on its draft cost (< 1: it must draft that much faster).

Example:
  bayes-sd what-if-drafter posterior.nc --layers 12 --params-b 0.8 --verifier llama3.1-8b \\
      --hardware H100 --dataset chat --prompt-len 512 --output-len 256 --concurrency 1,8,32 \\
      --parity-against draft-1b
"""


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from bayes_sd.model import LatencyModel
    from bayes_sd.recommend.drafter import parity, what_if_drafter

    rates, concs = workload_loads(args)
    loads = dict(rates=rates) if rates is not None else dict(concurrencies=concs)
    model = LatencyModel.load(args.posterior)
    common = dict(verifier=args.verifier, hardware=args.hardware, dataset=args.dataset, prompt_len=args.prompt_len,
                  output_len=args.output_len, max_draws=args.max_draws, seed=args.seed, **loads)
    ds = what_if_drafter(model, layers=args.layers, params_b=args.params_b, ks=range(0, args.k_max + 1),
                         name=args.name, acceptance=args.acceptance, **common)
    load = "rate_rps" if rates is not None else "concurrency"
    cols = ["latency_q50_s", "latency_pred_q05_s", "latency_pred_q95_s", "speedup_vs_k0", "p_slower_than_k0"]
    table = ds[cols].to_dataframe().reset_index()[["k", load, *cols]]
    pd.set_option("display.width", 200)
    print(f"what-if drafter '{args.name}': {args.layers} layers, {args.params_b} B parameters, on {args.verifier} "
          f"@ {args.hardware} ({args.dataset})")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if args.parity_against:
        extra = pd.DataFrame([{"name": args.name, "params_b": args.params_b, "layers": args.layers}])
        par = parity(model, candidate=args.name, reference=args.parity_against, k_max=args.k_max,
                     candidate_models=extra, **common)
        print(f"parity with {args.parity_against} (each at its best k):")
        print(par.drop(columns=["candidate", "reference"]).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``what-if-drafter``; returns its parser."""
    p = subparsers.add_parser(
        "what-if-drafter", parents=[output_flags()], help="predict a drafter never measured from its depth and size",
        description="Predicted latency of a drafter with given layers and parameters (never measured), "
                    "from a posterior fitted with drafter size predictors, and optionally what it needs "
                    "to match a measured drafter.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("posterior", help="posterior file written by `bayes-sd fit --config drafter_design`")
    p.add_argument("--layers", type=int, required=True, help="transformer blocks of the candidate drafter")
    p.add_argument("--params-b", type=float, required=True, help="parameters of the candidate drafter, billions")
    p.add_argument("--name", default="what-if-drafter", help="label of the candidate (must not be a measured drafter)")
    p.add_argument("--verifier", required=True)
    p.add_argument("--hardware", required=True)
    add_workload_flags(p)
    p.add_argument("--k-max", type=int, default=7, help="largest draft length shown (default 7)")
    p.add_argument("--acceptance", type=float, help="the candidate's per-position acceptance if known (e.g. measured "
                                                     "offline); default: the drafters' population")
    p.add_argument("--parity-against", help="a measured drafter to compare with (parity analysis)")
    p.add_argument("--max-draws", type=int, default=1000, help="posterior draws used (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for draw subsampling and population draws")
    p.set_defaults(func=run)
    return p
