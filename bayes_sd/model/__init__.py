"""The hierarchical Bayesian latency model (PyMC).

- :class:`LatencyModel`: fit / predict / save / load (``latency_model.py``); whether its posterior can be
  trusted (``diagnostics.py``, with ``chains.py`` for chains that did not mix); its netCDF file
  (``persistence.py``);
- ``config.py``: named prior configurations in ``models/*.toml``;
- ``fit_data.py``: run table -> arrays, indices, coords (pure pandas/numpy);
- ``build.py``: the PyMC graph (calls :mod:`bayes_sd.theory` with pytensor tensors), with the per-server
  terms in ``server_costs.py``;
- ``predict.py``: numpy posterior prediction for arbitrary conditions.
"""

from bayes_sd.model.config import ModelConfigError, load_config
from bayes_sd.model.diagnostics import ConvergenceWarning
from bayes_sd.model.latency_model import LatencyModel
from bayes_sd.model.persistence import DifferentModelError

__all__ = ["LatencyModel", "DifferentModelError", "ConvergenceWarning", "ModelConfigError", "load_config"]
