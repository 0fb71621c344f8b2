"""Out-of-family fleets: a second simulator, written independently of the model, to score it on.

The package's own simulator (:mod:`bayes_sd.simulate`) plays the model's cost law, so figures on its
fleets are validation, not evidence. This package times every forward pass from how hardware works
instead, and never imports :mod:`bayes_sd.theory`, :mod:`bayes_sd.simulate` or :mod:`bayes_sd.model`
(``tests/evaluation/fleets/test_independence.py`` walks its imports):

- :mod:`.hardware`: devices as a roofline (peak dense FLOP/s, bandwidth, achievable fractions, launch
  overheads, GEMM tiles), presets H100, A100, L40S, B200 from public spec sheets;
- :mod:`.shapes`: dense and MoE transformer shapes (weights, FLOPs and KV bytes per pass; skewed
  expert routing), EAGLE-style heads, small standalone drafters, the n-gram drafter;
- :mod:`.costs`: the time of one forward pass, kernel group by kernel group, on the roofline;
- :mod:`.workloads`: prompt-length mixtures, EOS output lengths, per-request acceptance;
- :mod:`.server`: a continuous-batching server with chunked prefill, a batch cap, KV-cache
  preemption and speculative decoding (numba), returning the canonical REQUESTS table;
- :mod:`.fleet`: random fleets (runs, models, and the ground truth of the best draft length);
- :mod:`.frozen`: the frozen test set in ``data/frozen`` and its hash-checked loader.

Everything it produces is **synthetic** (``source`` starts with ``synthetic:outfamily:``); the presets
are illustrative. Design and measurements: ``docs/fleets.md``.
"""

from .costs import PassCost, pass_breakdown, pass_cost, pass_seconds
from .fleet import GENERATOR_VERSION, TRUTH_COLUMNS, fleet_summary, fleets, no_speculation_share, random_fleet
from .hardware import DEVICES, Device
from .models import STANDALONE_DRAFTERS, VERIFIERS, eagle_head, ngram_drafter
from .server import RunResult, ServerSettings, simulate_run
from .shapes import ExpertRouting, ModelShape
from .workloads import WORKLOADS, AcceptanceProfile, Workload

__all__ = [
    "Device", "DEVICES",
    "ModelShape", "ExpertRouting", "VERIFIERS", "STANDALONE_DRAFTERS", "eagle_head", "ngram_drafter",
    "PassCost", "pass_cost", "pass_seconds", "pass_breakdown",
    "Workload", "AcceptanceProfile", "WORKLOADS",
    "ServerSettings", "RunResult", "simulate_run",
    "random_fleet", "fleets", "no_speculation_share", "fleet_summary", "TRUTH_COLUMNS", "GENERATOR_VERSION",
    "load_frozen", "FrozenSetError",
]


def __getattr__(name: str):
    # the frozen-set loader loads on first use, so that `python -m bayes_sd.evaluation.fleets.frozen` runs the
    # module once (no runpy warning about a module imported by its own package)
    if name in ("load_frozen", "FrozenSetError"):
        from . import frozen

        return getattr(frozen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
