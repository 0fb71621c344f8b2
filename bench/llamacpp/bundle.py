"""Copy a finished `bayes-sd sweep` folder into data/real/ as the package bundles it.

    python bench/llamacpp/bundle.py SWEEP_DIR data/real/llamacpp_cpu_sweep

Keeps the manifest, the GuideLLM reports (gzipped, byte-reproducible: no name or time in the
gzip header) and the /metrics scrapes; leaves out the server and client logs, which no reader
needs. The manifest's file paths are rewritten to the gzipped names; nothing else in it changes.
The source folder is not modified.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

DROPPED_FILES = ("log", "client_log")


def bundle(src: Path, dest: Path) -> dict:
    """Write the bundle of sweep folder ``src`` to ``dest`` (created); returns the new manifest."""
    manifest = json.loads((src / "manifest.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for point in manifest["points"]:
        files = point["files"]
        for key in DROPPED_FILES:
            files.pop(key, None)
        for key, rel in list(files.items()):
            if not rel:
                continue
            out_rel = rel + ".gz" if key == "report" else rel
            out = dest / out_rel
            out.parent.mkdir(parents=True, exist_ok=True)
            data = (src / rel).read_bytes()
            if key == "report":
                with open(out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", filename="", mtime=0) as gz:
                    gz.write(data)
            else:
                shutil.copyfile(src / rel, out)
            files[key] = out_rel
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the sweep's --out folder (with manifest.json)")
    parser.add_argument("dest", type=Path, help="the bundle folder, e.g. data/real/llamacpp_cpu_sweep")
    args = parser.parse_args()
    manifest = bundle(args.src, args.dest)
    done = sum(p["status"] == "done" for p in manifest["points"])
    print(f"{done} done points of {len(manifest['points'])} bundled in {args.dest}")


if __name__ == "__main__":
    main()
