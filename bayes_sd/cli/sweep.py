"""``bayes-sd sweep``: drive a real server through a grid of speculative configurations x loads."""

from __future__ import annotations

import argparse
import shlex
import sys

from bayes_sd.cli.common import CLIError, HelpFormatter, output_flags, say, show_progress, warn
from bayes_sd.measure.plan import PLAN_HELP

__all__ = ["add_parser", "run"]

EPILOG = f"""\
For each configuration the server is started in its own process group, waited for (HTTP 200 on
the health path) and warmed up; for each load /metrics is scraped, the client runs bounded in
requests and seconds (killed at max_seconds + timeout_grace_s), /metrics is scraped again; then
the server's process group is stopped (SIGTERM, then SIGKILL), also on Ctrl-C and on errors. A
server that does not start or dies fails its configuration's points, with its log tail, and the
sweep goes on. Servers run on this machine only (loopback hosts).

Writes into DIR: reports/<point>.json (the client's output), metrics/<point>.before.prom and
.after.prom (/metrics scrapes), logs/<configuration>.log (the server), logs/<point>.client.log,
and manifest.json (rewritten after every point: configuration, load, files, commands, tool and
engine versions, times, status, error), which `bayes-sd ingest DIR` reads. A point id is
<configuration>@<load type>-<value>, e.g. eagle3-k4@rate-2.

{PLAN_HELP}

Exit status: 0 when no point failed (points skipped by the budget included), 1 when some failed,
2 on a bad plan, 130 when interrupted (continue with --resume).

Example:
  bayes-sd sweep plan.toml --out sweep/ --dry-run            # print the commands
  bayes-sd sweep plan.toml --out sweep/ --budget-minutes 90
  bayes-sd sweep plan.toml --out sweep/ --resume              # after an interruption
  bayes-sd ingest sweep/ --out runs.csv
"""


def _dry_run(args: argparse.Namespace, plan) -> int:
    from pathlib import Path

    from bayes_sd.measure.sweep import point_commands, server_command

    out = Path(args.out)
    s = plan.server
    for cfg in plan.configurations:
        argv, env = server_command(plan, cfg)
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        print(f"# {cfg.name}: verifier {cfg.verifier}, drafter {cfg.drafter}, k {cfg.k}")
        print(f"server: {prefix + ' ' if prefix else ''}{shlex.join(argv)}")
        print(f"  health: GET {s.url}{s.health_path} until HTTP 200 (at most {s.startup_timeout_s:g} s); "
              f"{s.warmup_requests} warm-up request(s)")
        for load in plan.loads:
            from bayes_sd.measure.plan import PlannedPoint

            point = PlannedPoint(cfg, load)
            cargv, cenv = point_commands(plan, point, out)
            cprefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in cenv.items())
            print(f"  {point.id}: GET {s.url}/metrics > {out / 'metrics' / (point.id + '.before.prom')}")
            print(f"    {cprefix + ' ' if cprefix else ''}{shlex.join(cargv)}")
            print(f"    GET {s.url}/metrics > {out / 'metrics' / (point.id + '.after.prom')}")
        print(f"  stop: SIGTERM to the process group, SIGKILL after {s.stop_timeout_s:g} s")
    n = len(plan.configurations) * len(plan.loads)
    print(f"dry run: {len(plan.configurations)} configuration(s) x {len(plan.loads)} load(s) = {n} points, "
          f"each at most {plan.max_requests} requests and {plan.max_seconds:g} s")
    return 0


def run(args: argparse.Namespace) -> int:
    from bayes_sd.measure import load_plan, run_sweep

    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise CLIError(f"--budget-minutes {args.budget_minutes:g}: give a positive number of minutes")
    plan = load_plan(args.plan)
    if args.dry_run:
        return _dry_run(args, plan)
    width = max(len(c.name) for c in plan.configurations)

    def point_line(point, requests, seconds):
        load = point.load
        line = (f"{point.configuration['name']:<{width}}  {load['type']} {load['value']:<6g} {point.status:<7} "
                f"{seconds:7.1f} s {requests:6d} requests")
        if point.error and point.status != "skipped":
            line += "  " + point.error.splitlines()[0][:160]
        say(args, line)

    try:
        result = run_sweep(plan, args.out, resume=args.resume, budget_minutes=args.budget_minutes,
                           progress=show_progress(args), on_point=point_line, on_note=lambda m: say(args, m))
    except KeyboardInterrupt:
        print(f"bayes-sd sweep: interrupted; {args.out}/manifest.json holds the points so far: continue with "
              f"`bayes-sd sweep {args.plan} --out {args.out} --resume`", file=sys.stderr)
        return 130
    counts = result.counts()
    failed_now = [p for p in result.points if p.id in result.ran and p.status == "failed"]
    extra = f"; {len(result.skipped_done)} done before (--resume)" if result.skipped_done else ""
    print(f"sweep: {len(result.points)} points in {result.seconds / 60:.1f} min: {counts['done']} done, "
          f"{counts['failed']} failed, {counts['skipped']} skipped{extra}; manifest {result.manifest}")
    if result.budget_stopped:
        warn(args.command, f"the budget of {args.budget_minutes:g} min stopped the sweep: {counts['skipped']} "
                           "point(s) skipped; run again with --resume to finish them")
    return 1 if failed_now else 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sweep``; returns its parser."""
    p = subparsers.add_parser("sweep", parents=[output_flags()],
                              help="run a server through speculative configurations x loads with a load generator",
                              description="Start a real inference server per speculative configuration, run a "
                                          "load generator (GuideLLM, or any command) at each load, scrape /metrics "
                                          "around each point, stop the server, and write a manifest that "
                                          "`bayes-sd ingest DIR` reads.",
                              epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("plan", help="the sweep plan (TOML, format below)")
    p.add_argument("--out", required=True, help="output folder (reports/, metrics/, logs/, manifest.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out: skip the points done (report present), run the failed, "
                        "skipped and missing ones; refused when the plan changed what the done points measured")
    p.add_argument("--budget-minutes", type=float, metavar="M",
                   help="start no point that would end past M minutes (estimated from the points so far); the "
                        "rest are recorded skipped (exit status 0)")
    p.add_argument("--dry-run", action="store_true", help="print the commands the sweep would run, run nothing")
    p.set_defaults(func=run)
    return p
