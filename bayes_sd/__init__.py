"""bayes_sd: Bayesian models of speculative-decoding latency under load.

Should speculative decoding be on, with which drafter and which draft length, at my load?

>>> from bayes_sd import LatencyModel, load_b200_runs, recommend_k       # doctest: +SKIP
>>> model = LatencyModel("moe_roofline").fit(load_b200_runs())          # doctest: +SKIP

The packages, lowest layer first (a module imports only from its own layer or below):

- :mod:`bayes_sd.traces`: canonical request / run / model tables, the readers of benchmark
  outputs, validation, aggregation of requests into run-level sufficient statistics;
- :mod:`bayes_sd.theory`: the closed-form latency model (numpy, and pytensor inside the model);
- :mod:`bayes_sd.simulate`: SYNTHETIC continuous-batching servers with speculation;
- :mod:`bayes_sd.model`: the hierarchical PyMC model (:class:`LatencyModel`);
- :mod:`bayes_sd.recommend`: draft-length decisions and engine configuration;
- :mod:`bayes_sd.evaluation`: baselines and parameter recovery;
- :mod:`bayes_sd.cascade`: the PyramidSD three-model cascade, whole;
- :mod:`bayes_sd.report`: the posterior report (HTML and Markdown) and its figures;
- :mod:`bayes_sd.cli` and :mod:`bayes_sd.demo`: the ``bayes-sd`` command and its main job;
- :mod:`bayes_sd.datasets`: the bundled real and synthetic data.

The names below load their package on first use, so ``import bayes_sd`` is cheap.
"""

from importlib import import_module

from bayes_sd import _compat

__version__ = "0.1.0"

_EXPORTS = {
    "LatencyModel": "bayes_sd.model",
    "recommend_k": "bayes_sd.recommend",
    "vllm_config": "bayes_sd.recommend",
    "write_report": "bayes_sd.report",
    "load_b200_runs": "bayes_sd.datasets",
    "load_eagle_bs1_runs": "bayes_sd.datasets",
    "load_fleet_runs": "bayes_sd.datasets",
    "load_fleet_models": "bayes_sd.datasets",
}
__all__ = ["__version__", *_EXPORTS]

_compat.install()


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
