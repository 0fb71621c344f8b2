"""Import paths of modules that moved into the domain packages, kept for one release.

``import bayes_sd.pyramid`` still works: it warns once (``FutureWarning``) and gives a module that
re-exports every name of the new module(s) (two for a module that was split). Remove an entry,
and this file with the last one, in the release after the move.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from importlib import import_module

#: old module path -> new module path(s)
MOVED: dict[str, tuple[str, ...]] = {
    "bayes_sd.acceptance": ("bayes_sd.theory.acceptance",),
    "bayes_sd.acceptance_fit": ("bayes_sd.model.acceptance_curve",),
    "bayes_sd.baselines": ("bayes_sd.evaluation.baselines",),
    "bayes_sd.baselines_batch1": ("bayes_sd.evaluation.batch1",),
    "bayes_sd.drafter_design": ("bayes_sd.recommend.drafter", "bayes_sd.simulate.designs"),
    "bayes_sd.drafter_cli": ("bayes_sd.cli.what_if_drafter",),
    "bayes_sd.pipeline": ("bayes_sd.demo",),
    "bayes_sd.presets": ("bayes_sd.simulate.presets",),
    "bayes_sd.pyramid": ("bayes_sd.cascade.theory",),
    "bayes_sd.pyramid_fit": ("bayes_sd.cascade.model",),
    "bayes_sd.pyramid_recommend": ("bayes_sd.cascade.recommend",),
    "bayes_sd.recommend_cli": ("bayes_sd.cli.recommend",),
    "bayes_sd.recovery": ("bayes_sd.evaluation.recovery", "bayes_sd.simulate.designs"),
    "bayes_sd.report_cli": ("bayes_sd.cli.report",),
    "bayes_sd.report.acceptance_plots": ("bayes_sd.report.plots.acceptance",),
    "bayes_sd.report.pyramid_plots": ("bayes_sd.cascade.plots",),
    "bayes_sd.report.variant_plots": ("bayes_sd.report.plots.variants",),
    "bayes_sd.simulate_pyramid": ("bayes_sd.cascade.simulate",),
    "bayes_sd.summary": ("bayes_sd.traces.summary",),
}


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec):
        targets = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {' and '.join(targets)}; the old path goes in the next release",
                      FutureWarning, stacklevel=2)
        module = types.ModuleType(spec.name, f"Moved to {' and '.join(targets)}.")
        names = []
        for target in targets:
            new = import_module(target)
            module.__dict__.update({n: v for n, v in vars(new).items() if not n.startswith("__")})
            names += getattr(new, "__all__", [n for n in vars(new) if not n.startswith("_")])
        module.__all__ = names
        return module

    def exec_module(self, module):
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` and loads their new modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _MovedLoader())
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
