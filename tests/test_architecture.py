"""The shape of the package: imports point one way, no cycles, no private names borrowed across
modules, every package declared for the wheel, and the code passes the linter.

Layers, lowest first (docs/architecture.md): a module may import from its own layer or below.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bayes_sd"

#: top-level module or package of bayes_sd -> layer
LAYERS = {
    "_io": 0, "_stats": 0, "_progress": 0, "_compat": 0,
    "traces": 1, "theory": 1,
    "simulate": 2, "model": 2, "datasets": 2,
    "recommend": 3, "evaluation": 3, "cascade": 3, "measure": 3,
    "report": 4,
    "cli": 5, "demo": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported bayes_sd module, name taken from it or None, line) for every import in the file,
    function-level imports included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "bayes_sd"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, path.name == "__init__.py", node)
            if target.split(".")[0] != "bayes_sd":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_layer():
    missing = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(LAYERS))
    assert not missing, f"give these a layer in LAYERS (and docs/architecture.md): {missing}"


def test_imports_point_down():
    upward = []
    for name, path in MODULES.items():
        if name == "bayes_sd":  # the front door loads its names lazily
            continue
        mine = _layer(name)
        for target, _, line in _imports(name, path):
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} (layer {theirs} > {mine})")
    assert not upward, "imports must point down the layers:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = {name: {t for t, _, _ in _imports(name, path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_private_name_is_imported_from_another_module():
    borrowed = [f"{path.relative_to(ROOT)}:{line} takes {taken} from {target}"
                for name, path in MODULES.items() for target, taken, line in _imports(name, path)
                if taken and taken.startswith("_") and not taken.startswith("__")]
    assert not borrowed, "a private name used elsewhere should be public:\n" + "\n".join(borrowed)


def test_the_wheel_declares_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    on_disk = {_module_name(p.parent) for p in PACKAGE.rglob("__init__.py")}
    assert on_disk <= declared, f"add to [tool.setuptools] packages: {sorted(on_disk - declared)}"
    for package, folder in config["package-dir"].items():
        assert (ROOT / folder / "__init__.py").is_file(), f"{package} maps to {folder}/, which needs an __init__.py"
    assert declared - on_disk == set(config["package-dir"]), "a declared package has no folder"


def test_ruff_passes():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# ---------------------------------------------------------------------------- public API docstrings
#: modules whose ``__all__`` is public API (``_EXPORTS`` for the lazy ``bayes_sd.cascade``)
API_MODULES = ("bayes_sd", "bayes_sd.datasets", "bayes_sd.model", "bayes_sd.recommend", "bayes_sd.simulate",
               "bayes_sd.traces", "bayes_sd.report", "bayes_sd.report.plots", "bayes_sd.cascade")
#: public names of modules whose ``__all__`` is wider than the documented API (or missing)
API_NAMES = {
    "bayes_sd.model.config": ("load_config",),
    "bayes_sd.evaluation.baselines": ("fit_baselines", "predictions_table", "error_table", "in_sample_comparison"),
    "bayes_sd.theory": ("ServiceCosts", "demand", "latency_open", "latency_closed", "latency_at_load",
                        "saturation_rate", "ttft", "tpot", "speedup", "tau_constant", "tau_per_position",
                        "iterations"),
}
LATENCY_MODEL_METHODS = ("build", "prior_predictive", "fit", "summary", "convergence_stats", "diagnostics",
                         "check_convergence", "diagnostics_text", "predict_draws", "predict", "predict_table",
                         "predict_grid", "sample_posterior_predictive", "loo", "save", "load")
#: a numpydoc ``Parameters`` heading: the word on its own line, underlined with dashes
_PARAMETERS_SECTION = re.compile(r"^[ \t]*Parameters[ \t]*\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)


def _public_api() -> dict[str, object]:
    """Qualified name -> every public function, class and ``LatencyModel`` method in the documented scope."""
    api = {}
    for module_name in API_MODULES + tuple(API_NAMES):
        module = importlib.import_module(module_name)
        names = API_NAMES.get(module_name) or getattr(module, "_EXPORTS", None) or module.__all__
        for name in names:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                api[f"{obj.__module__}.{obj.__qualname__}"] = obj
    model = importlib.import_module("bayes_sd.model").LatencyModel
    api.update({f"{model.__module__}.{model.__qualname__}.{m}": getattr(model, m) for m in LATENCY_MODEL_METHODS})
    return api


def _takes_parameters(obj) -> bool:
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # exceptions and other classes without a Python signature
        return False
    return any(p not in ("self", "cls") for p in params)


def test_public_api_documents_its_parameters():
    api = _public_api()
    assert len(api) > 80, f"the public API looks truncated: {len(api)} names"
    missing = sorted(name for name, obj in api.items()
                     if _takes_parameters(obj) and not _PARAMETERS_SECTION.search(inspect.getdoc(obj) or ""))
    assert not missing, ("public functions, methods and classes that take parameters need a numpydoc "
                         "'Parameters' section:\n" + "\n".join(missing))
