"""bayes_sd: Bayesian models of speculative-decoding latency under load.

Main entry points:

- :mod:`bayes_sd.traces`: canonical request / run / model tables, readers, validation,
  aggregation of requests into run-level sufficient statistics;
- :mod:`bayes_sd.theory`: the closed-form latency model (numpy; also used by the PyMC model);
- :mod:`bayes_sd.simulate`: a step-level continuous-batching simulator with speculation;
- :mod:`bayes_sd.model`: the hierarchical PyMC model (:class:`LatencyModel`);
- :mod:`bayes_sd.datasets`: the bundled real and synthetic data.
"""

__version__ = "0.1.0"
