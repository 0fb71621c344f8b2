"""Write the canonical run tables from the long-format real files in this folder.

    python data/real/make_canonical.py

reads  speculators_qwen38_27b_b200.csv -> writes b200_runs.csv
reads  vllm_eagle_bs1_k_sweeps.csv     -> writes eagle_bs1_runs.csv
with bayes_sd.traces.real.read_real_long (units to seconds, short names, saturation
flags); see SOURCES.md, section "Canonical run tables". The input files are not modified.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from a checkout without installing

from bayes_sd.traces.io import write_table  # noqa: E402
from bayes_sd.traces.real import read_real_long  # noqa: E402

PAIRS = {
    "speculators_qwen38_27b_b200.csv": "b200_runs.csv",
    "vllm_eagle_bs1_k_sweeps.csv": "eagle_bs1_runs.csv",
}


def main() -> None:
    inputs = [HERE / src for src in PAIRS]
    for src, dst in PAIRS.items():
        runs = read_real_long(HERE / src)
        write_table(runs, HERE / dst, protect=inputs)
        flagged = runs.loc[runs["saturated"], "run_id"].tolist()
        print(f"{src} -> {dst}: {len(runs)} runs, saturated: {flagged or 'none'}")


if __name__ == "__main__":
    main()
