"""The PyramidSD cascade: drafter -> qualifier -> verifier, as one self-contained family.

- :mod:`.theory`: its closed form (block length, demand, latency; ``k_draft = 0`` is plain SD);
- :mod:`.simulate`: SYNTHETIC cascade runs on the scheduler kernel of :mod:`bayes_sd.simulate`;
- :mod:`.model`: a PyMC fit of the qualifier's costs and the acceptance rates (:func:`fit_pyramid`);
- :mod:`.recommend`: whether the qualifier pays, at which load (:func:`compare_pyramid`);
- :mod:`.plots`: its figures.

The names below load their module on first use, so ``bayes_sd.cascade.theory`` stays free of PyMC.
"""

from importlib import import_module

_EXPORTS = {"PyramidCosts": "theory", "simulate_pyramid_run": "simulate", "simulate_pyramid_runs": "simulate",
            "fit_pyramid": "model", "compare_pyramid": "recommend"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
