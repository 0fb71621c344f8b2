"""SYNTHETIC servers: a step-level continuous-batching simulator with speculative decoding.

- :mod:`.server`: :func:`simulate_run` (one run, its request table) and :func:`simulate_runs`
  (many runs, requests and aggregated run statistics), on the one scheduler kernel;
- :mod:`.requests`: one run's requests before scheduling (lengths, send times, acceptance, seeds);
- :mod:`.presets`: ILLUSTRATIVE service costs and acceptance per verifier/drafter/hardware;
- :mod:`.designs`: run designs with a known truth (parameter recovery, a drafter family).

Everything it returns is synthetic and labelled so (``source`` starts with ``synthetic:``).
"""

from bayes_sd.simulate.requests import acceptance_vector, theory_tau
from bayes_sd.simulate.server import SOURCE, simulate_run, simulate_runs

__all__ = ["simulate_run", "simulate_runs", "SOURCE", "acceptance_vector", "theory_tau"]
