"""The frozen out-of-family test set: generated once from a seed nobody developed with, checked by hash.

``data/frozen/`` (package ``bayes_sd.data``, folder ``frozen``) holds ``runs.csv``, ``models.csv`` and
``truth.csv`` of a few fleets of :func:`.fleet.random_fleet`, and ``README.md`` (what they are, the
generator version, the command that made them, the sha256 of each file). The set is scored only
when a change is ready, never while developing. :func:`load_frozen` refuses a file whose sha256
differs from :data:`FROZEN_SHA256`.

Regenerate (only with a new seed drawn at random, and a new generator version, if ever)::

    python -m bayes_sd.evaluation.fleets.frozen --random-seed --fleets 5 --out data/frozen
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_sd._io import write_text
from bayes_sd.traces.validate import validate_models, validate_runs

from .fleet import GENERATOR_VERSION, TRUTH_COLUMNS, fleet_summary, fleets

__all__ = ["FROZEN_FILES", "FROZEN_SHA256", "FrozenSetError", "frozen_dir", "load_frozen", "write_frozen", "main"]

#: Files of the frozen set.
FROZEN_FILES = ("runs.csv", "models.csv", "truth.csv")

#: sha256 of each file as generated (data/frozen/README.md lists the same).
FROZEN_SHA256 = {
    "runs.csv": "b944003e1de7a39956a30a558b90f69e1073140cc667f54fda0f7cfbe1a335d8",
    "models.csv": "48df4b2ed75e5a32a9d4be21cc8d79b95f38ed8d2a9d94a7b0efd82776845227",
    "truth.csv": "31436e26ab7d530dddd971dcac09f2ddf71b445386a5b9aa6c2aba45413a0477",
}

_BOOL_COLUMNS = ("past_capacity", "measured")


class FrozenSetError(ValueError):
    """A file of the frozen set is missing or differs from the one generated."""


def frozen_dir() -> Path:
    """The folder of the frozen set inside the installed package data.

    Returns
    -------
    pathlib.Path
        ``<bayes_sd.data>/frozen`` (``data/frozen`` of a checkout or an editable install).
    """
    return Path(str(resources.files("bayes_sd.data"))) / "frozen"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_frozen(directory: str | Path | None = None, *, check: bool = True
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Load the frozen test set, after checking every file against its recorded sha256.

    Parameters
    ----------
    directory : str or Path, optional
        Where the files are (default :func:`frozen_dir`).
    check : bool, default True
        Check the hashes (only a test of the check itself should turn this off).

    Returns
    -------
    runs : pandas.DataFrame
        Canonical RUNS table (times in s, rates in requests/s, lengths in tokens).
    models : pandas.DataFrame
        Canonical MODELS table.
    truth : pandas.DataFrame
        Ground truth, columns :data:`.fleet.TRUTH_COLUMNS` (latencies in s; ``inf`` past capacity;
        ``kv_cache_tokens`` empty: the set predates it).

    Raises
    ------
    FrozenSetError
        When a file is missing, or its sha256 differs from :data:`FROZEN_SHA256`; the message names the file.
    """
    folder = frozen_dir() if directory is None else Path(directory)
    for name in FROZEN_FILES:
        path = folder / name
        if not path.is_file():
            raise FrozenSetError(f"{path}: missing from the frozen set. Fix: restore it from version control "
                                 "(git checkout data/frozen) or reinstall bayes_sd")
        if check:
            if not FROZEN_SHA256.get(name):
                raise FrozenSetError(f"{path}: no recorded sha256 for it in bayes_sd.evaluation.fleets.frozen. Fix: "
                                     "record the hashes printed by write_frozen in FROZEN_SHA256")
            digest = _sha256(path)
            if digest != FROZEN_SHA256[name]:
                raise FrozenSetError(f"{path}: sha256 {digest} differs from the frozen {FROZEN_SHA256[name]}: "
                                     "the file was edited. Fix: restore it from version control (git checkout "
                                     "data/frozen); the frozen set is never changed by hand")
    runs = validate_runs(pd.read_csv(folder / "runs.csv"), str(folder / "runs.csv"), check_units=False)
    models = validate_models(pd.read_csv(folder / "models.csv"), str(folder / "models.csv"))
    truth = pd.read_csv(folder / "truth.csv")
    for column in _BOOL_COLUMNS:
        truth[column] = truth[column].astype(bool)
    # generated before the truth recorded each server's KV cache: unknown for this set
    truth = truth.reindex(columns=list(TRUTH_COLUMNS))
    return runs, models, truth


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def write_frozen(seed: int, n_fleets: int, directory: str | Path, *, command: str = "",
                 **fleet_kwargs) -> dict[str, str]:
    """Generate the frozen set and write its files and README.

    Parameters
    ----------
    seed : int
        Master seed; fleet ``i`` uses the ``i``-th child of ``numpy.random.SeedSequence(seed)``.
    n_fleets : int
        Fleets in the set.
    directory : str or Path
        Output folder.
    command : str, optional
        The command line, recorded in the README.
    **fleet_kwargs
        Passed to :func:`.fleet.random_fleet`.

    Returns
    -------
    dict
        sha256 of each written file, by name.
    """
    folder = Path(directory)
    children = np.random.SeedSequence(seed).spawn(n_fleets)
    seeds = [int(c.generate_state(1)[0]) for c in children]
    t0 = time.perf_counter()
    runs, models, truth = fleets(seeds, label="frozen", **fleet_kwargs)
    elapsed = time.perf_counter() - t0
    texts = {"runs.csv": _csv(runs), "models.csv": _csv(models), "truth.csv": _csv(truth)}
    hashes = {}
    for name, text in texts.items():
        write_text(text, folder / name)
        hashes[name] = _sha256(folder / name)
    summary = fleet_summary(runs, truth)
    write_text(_readme(seed, n_fleets, command, hashes, summary, elapsed), folder / "README.md")
    return hashes


def _readme(seed: int, n_fleets: int, command: str, hashes: dict, summary: dict, elapsed: float) -> str:
    rows = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in hashes.items())
    acc = summary["acceptance_length"]
    return f"""# Frozen out-of-family test set: SYNTHETIC, scored only when a change is ready

{n_fleets} random fleets of `bayes_sd.evaluation.fleets.random_fleet`, an out-of-family simulator written
independently of `bayes_sd.theory`, `bayes_sd.simulate` and `bayes_sd.model` (step costs from a roofline of
public spec-sheet numbers, skewed MoE routing, beta-geometric EOS lengths, per-position acceptance with easy and
hard stretches; [docs/fleets.md](../../docs/fleets.md)). Every number is simulated; the model and GPU names are
labels for illustrative shapes and presets, not measurements.

**Use:** score a model on this set only when a change is ready, once, and report the figure. Never tune on it,
never look at a model's figures on it while developing; develop on fleets with other seeds
(`bayes_sd.evaluation.fleets.fleets(range(20))`). `bayes_sd.evaluation.fleets.load_frozen()` loads it and
refuses any file whose sha256 differs from the one below (the same hashes are recorded in
`bayes_sd/evaluation/fleets/frozen.py`).

| file | what |
|---|---|
| `runs.csv` | canonical RUNS table, {summary["runs"]} runs, `source = synthetic:outfamily:frozen<i>` |
| `models.csv` | canonical MODELS table of the verifiers and drafters in the runs |
| `truth.csv` | per (condition, load) and every k in 0..7: simulated mean latency, TTFT, TPOT, acceptance \
length, capacity at that k, past_capacity, best_k, measured |

- generator version: `{GENERATOR_VERSION}`
- master seed: {seed} (drawn at random for this set; fleet i uses child i of `numpy.random.SeedSequence(seed)`)
- command: `{command}`
- generation time: {elapsed:.0f} s on one core

Summary: {summary["configurations"]} configurations, {summary["pairs"]} verifier/drafter pairs,
{summary["conditions"]} (condition, load) truths; {summary["saturated_share"]:.0%} of the runs flagged
saturated by `aggregate_runs`' rules; acceptance length {acc[0]:.2f}-{acc[1]:.2f} tokens;
k = 0 is the best draft length in {summary["no_speculation_share"]:.0%} of the (condition, load) pairs.

| file | sha256 |
|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    """Command line: write the frozen set (``--random-seed`` draws the seed and records it only in the README).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0).
    """
    parser = argparse.ArgumentParser(prog="python -m bayes_sd.evaluation.fleets.frozen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int, help="master seed (to reproduce the set from its README)")
    group.add_argument("--random-seed", action="store_true", help="draw a master seed at random")
    parser.add_argument("--fleets", type=int, default=5, help="fleets in the set (default 5)")
    parser.add_argument("--out", required=True, help="output folder (data/frozen)")
    args = parser.parse_args(argv)
    seed = secrets.randbits(62) if args.random_seed else args.seed
    command = f"python -m bayes_sd.evaluation.fleets.frozen --seed {seed} --fleets {args.fleets} --out {args.out}"
    hashes = write_frozen(seed, args.fleets, args.out, command=command)
    for name, digest in hashes.items():
        print(f"{name} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
