"""The out-of-family generator must not share code with the model it is meant to test.

It may import numpy, numba, scipy, pandas and the layers below it that do not model latency
(``bayes_sd.traces``, ``bayes_sd._io``), but never ``bayes_sd.theory``, ``bayes_sd.simulate`` or
``bayes_sd.model``, directly or through another bayes_sd module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "bayes_sd" / "evaluation" / "fleets"
FORBIDDEN = ("bayes_sd.theory", "bayes_sd.simulate", "bayes_sd.model")


def _module_path(module: str) -> Path | None:
    """The file of a bayes_sd module in the checkout (package __init__ or module file)."""
    base = ROOT.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imported_modules(module: str, path: Path) -> set[str]:
    """Every bayes_sd module a file imports (function-level imports included), relative imports resolved;
    for ``from X import name`` both ``X`` and ``X.name`` (the name may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bayes_sd"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "bayes_sd":
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def forbidden_imports(start_files: dict[str, Path]) -> list[tuple[str, str]]:
    """(importer, forbidden module) for every forbidden module reachable from ``start_files``, following
    imports through bayes_sd modules (and the packages above each module, whose __init__ runs first)."""
    todo = list(start_files.items())
    seen: set[str] = set()
    hits = []
    while todo:
        module, path = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for target in sorted(_imported_modules(module, path)):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN):
                hits.append((module, target))
                continue
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # the packages above run their __init__ too
                name = ".".join(parts[:i])
                file = _module_path(name)
                if file is not None and name not in seen:
                    todo.append((name, file))
    return hits


def _package_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def test_no_module_of_the_generator_reaches_the_model_code():
    files = _package_files()
    assert len(files) >= 8, f"expected the whole package, found {sorted(files)}"
    assert forbidden_imports(files) == []


def test_the_walker_catches_direct_relative_and_indirect_imports(tmp_path):
    direct = tmp_path / "direct.py"
    direct.write_text("def f():\n    from bayes_sd.theory import latency_open\n")
    relative = tmp_path / "relative.py"
    relative.write_text("from ...simulate import simulate_run\n")
    aliased = tmp_path / "aliased.py"
    aliased.write_text("import bayes_sd.model.latency_model as lm\n")
    hits = forbidden_imports({"bayes_sd.evaluation.fleets.direct": direct,
                              "bayes_sd.evaluation.fleets.relative": relative,
                              "bayes_sd.evaluation.fleets.aliased": aliased})
    for forbidden in FORBIDDEN:
        assert any(target.startswith(forbidden) for _, target in hits), (forbidden, hits)
    # indirect: a bayes_sd module that itself imports the theory is followed
    indirect = tmp_path / "indirect.py"
    indirect.write_text("from bayes_sd.evaluation import recovery\n")
    assert forbidden_imports({"bayes_sd.evaluation.fleets.indirect": indirect})


def test_importing_the_generator_loads_none_of_the_model_code():
    code = ("import sys, bayes_sd.evaluation.fleets, bayes_sd.evaluation.fleets.frozen; "
            "print(sorted(m for m in sys.modules if m.startswith(('bayes_sd.theory', 'bayes_sd.simulate', "
            "'bayes_sd.model'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
