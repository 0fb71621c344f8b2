"""Named service-cost and acceptance presets for the simulator and the synthetic fleet.

ILLUSTRATIVE, NOT MEASUREMENTS. The numbers below are hand-set to plausible magnitudes
(seconds per pass, per sequence-token, per prompt token, per context token) so that the
simulator produces realistic-looking data; they are not fitted to, and must not be
quoted as, measurements of the named models or accelerators. What anchors them:

- Llama-3.1-8B on one H100: batch-1 TPOT about 7 ms (vLLM issue #20780), so v0 = 6.6 ms;
  EAGLE-3 batch-1 TPOT at k = 2..7 implies about 1.2 ms per draft pass including
  overhead; acceptance length 2.4 (k = 2) to 3.5 (k = 7), i.e. per-position acceptance
  decaying from about 0.78 (``shared/data/real/vllm_eagle_bs1_k_sweeps.csv``).
- A 27B dense model on one B200: about 11 ms per step alone, about 0.1 ms per extra stream
  (``shared/data/real/speculators_qwen38_27b_b200.csv``); the 70B on H100 (TP = 4) is set
  at v0 = 27 ms, v1 = 0.15 ms.
- MoE verifier (128 experts, top-8): v0 = 16 ms is the full-coverage pass (all expert
  weights read); 75 % of it scales with the fraction of experts touched, so a pass
  with one token costs about 4.8 ms, with 5 tokens 7.3 ms, with 64 tokens the full 16 ms.
- A100 versus H100: fixed (bandwidth-bound) costs x1.65, per-token (compute-bound) costs
  x1.9, attention x1.7, per-request prefill overhead x1.5.
- Roofline knee (``knee_tokens``, ``compute_share``): a dense bf16 pass over T tokens does about
  T FLOP per weight byte, so it turns compute-bound where T reaches the GPU's achieved FLOP/byte:
  240 tokens on H100 (peak 989 TFLOP/s / 3.35 TB/s = 295) and 130 on A100 (312 / 2.0 = 156),
  whatever the dense model's size. An MoE pass reads all experts but each token runs only 8 of
  128, so it turns compute-bound about 16 times later (3800 tokens: beyond every fleet run). The
  compute share is the weight-read share of ``v0`` (at the knee compute time equals it): 8B on
  H100 reads 16 GB in 4.8 ms of 6.6 (0.7); the 70B at TP = 4, 35 GB per GPU in 10.5 of 27 ms (0.4).
  The real B200 runs need such a knee (``models/roofline.toml``).
- Per-sequence cost per pass ``s1`` (sampler, scheduler bookkeeping): 15 us, and 20 us for the
  MoE (routing metadata), on any GPU: host-side work that does not scale with bandwidth.

Costs are per verifier on a hardware plus per drafter for that verifier (an EAGLE-3 head
is sized to its verifier's hidden width, so its cost depends on the verifier: a pair
deviation; an independent 1B draft model or an n-gram proposer costs the same for all).
Speculation stops paying at high load with these numbers: ``C2`` grows with ``k`` (more
verified tokens per sequence per pass than iterations saved), so the saturation rate
falls with ``k`` and the speedup over ``k = 0`` drops below 1 near saturation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_sd.theory import ServiceCosts

__all__ = ["Preset", "PRESETS", "VERIFIERS", "DRAFTERS", "HARDWARE", "WORKLOADS",
           "preset_name", "models_table"]

MS = 1e-3
US = 1e-6

#: Workloads (datasets) with acceptance in every preset, and their mean lengths (tokens).
WORKLOADS = {"chat": {"prompt_len": 512, "output_len": 256},
             "code": {"prompt_len": 768, "output_len": 384}}

#: Verifiers: H100 costs (v0, v1, p0, p1, c1, s1 in s), roofline knee (tokens per verify pass) and
#: compute share (of v0), and MODELS-table sizes.
VERIFIERS = {
    "llama3.1-8b": dict(v0=6.6 * MS, v1=45 * US, p0=2 * MS, p1=50 * US, c1=0.04 * US,
                        s1=15 * US, knee_tokens=240.0, compute_share=0.7,
                        params_b=8.03, layers=32, hidden_size=4096),
    "llama3.3-70b": dict(v0=27 * MS, v1=150 * US, p0=5 * MS, p1=180 * US, c1=0.06 * US,
                         s1=15 * US, knee_tokens=240.0, compute_share=0.4,
                         params_b=70.6, layers=80, hidden_size=8192),
    "qwen3-30b-a3b": dict(v0=16 * MS, v1=25 * US, p0=3 * MS, p1=30 * US, c1=0.03 * US,
                          s1=20 * US, knee_tokens=3800.0, compute_share=0.75,
                          params_b=30.5, layers=48, hidden_size=2048,
                          experts=128, experts_per_token=8, expert_share=0.75),
}

#: Drafters: MODELS-table sizes. ``ngram`` (prompt lookup) has no weights: params_b = 0
#: and a nominal single layer (the schema requires layers >= 1).
DRAFTERS = {
    "eagle3-small": dict(params_b=0.5, layers=1, hidden_size=4096),
    "draft-1b": dict(params_b=1.24, layers=16, hidden_size=2048),
    "ngram": dict(params_b=0.0, layers=1, hidden_size=None),
}

#: H100 drafter costs (d0, d1 in s) per (drafter, verifier) pair.
_DRAFT_COSTS = {
    ("eagle3-small", "llama3.1-8b"): (1.2 * MS, 5 * US),
    ("eagle3-small", "llama3.3-70b"): (2.0 * MS, 12 * US),
    ("eagle3-small", "qwen3-30b-a3b"): (1.0 * MS, 4 * US),
    ("draft-1b", "llama3.1-8b"): (2.2 * MS, 12 * US),
    ("draft-1b", "llama3.3-70b"): (2.2 * MS, 12 * US),
    ("draft-1b", "qwen3-30b-a3b"): (2.2 * MS, 12 * US),
    ("ngram", "llama3.1-8b"): (0.05 * MS, 0.5 * US),
    ("ngram", "llama3.3-70b"): (0.05 * MS, 0.5 * US),
    ("ngram", "qwen3-30b-a3b"): (0.05 * MS, 0.5 * US),
}

#: Hardware multipliers on the H100 costs, per coefficient.
HARDWARE = {
    "H100": dict(v0=1.0, d0=1.0, v1=1.0, d1=1.0, p1=1.0, c1=1.0, p0=1.0, s1=1.0, knee_tokens=1.0),
    "A100": dict(v0=1.65, d0=1.65, v1=1.9, d1=1.9, p1=1.9, c1=1.7, p0=1.5, s1=1.0, knee_tokens=130 / 240),
}

#: Per-position acceptance: first-position rate a1 and geometric decay per position,
#: per (drafter, verifier) and workload. Code is more predictable than chat.
_ACCEPT = {
    ("eagle3-small", "llama3.1-8b"): {"chat": (0.78, 0.96), "code": (0.84, 0.97)},
    ("eagle3-small", "llama3.3-70b"): {"chat": (0.76, 0.96), "code": (0.82, 0.97)},
    ("eagle3-small", "qwen3-30b-a3b"): {"chat": (0.74, 0.95), "code": (0.80, 0.96)},
    ("draft-1b", "llama3.1-8b"): {"chat": (0.72, 0.97), "code": (0.78, 0.98)},
    ("draft-1b", "llama3.3-70b"): {"chat": (0.68, 0.97), "code": (0.75, 0.98)},
    ("draft-1b", "qwen3-30b-a3b"): {"chat": (0.66, 0.96), "code": (0.73, 0.97)},
    ("ngram", "llama3.1-8b"): {"chat": (0.35, 0.88), "code": (0.55, 0.92)},
    ("ngram", "llama3.3-70b"): {"chat": (0.34, 0.88), "code": (0.54, 0.92)},
    ("ngram", "qwen3-30b-a3b"): {"chat": (0.33, 0.88), "code": (0.52, 0.92)},
}
K_MAX = 8


@dataclass(frozen=True)
class Preset:
    """One verifier/drafter pair on one hardware: illustrative costs and acceptance.

    ``acceptance[dataset]`` is the per-position acceptance ``a_1..a_8`` (decaying).
    """

    verifier: str
    drafter: str
    hardware: str
    costs: ServiceCosts
    acceptance: dict[str, tuple[float, ...]] = field(default_factory=dict)
    description: str = ""


def preset_name(verifier: str, drafter: str, hardware: str) -> str:
    """Key of a preset in :data:`PRESETS`: ``'<verifier>+<drafter>@<hardware>'``."""
    return f"{verifier}+{drafter}@{hardware}"


def _build() -> dict[str, Preset]:
    out = {}
    for (drafter, verifier), (d0, d1) in _DRAFT_COSTS.items():
        v = VERIFIERS[verifier]
        for hw, f in HARDWARE.items():
            costs = ServiceCosts(
                v0=v["v0"] * f["v0"], v1=v["v1"] * f["v1"], d0=d0 * f["d0"], d1=d1 * f["d1"],
                p0=v["p0"] * f["p0"], p1=v["p1"] * f["p1"], c1=v["c1"] * f["c1"], s1=v["s1"] * f["s1"],
                knee_tokens=v["knee_tokens"] * f["knee_tokens"], compute_share=v["compute_share"],
                experts=v.get("experts"), experts_per_token=v.get("experts_per_token"),
                expert_share=v.get("expert_share", 0.0),
            )
            acc = {ds: tuple(round(a1 * decay**j, 4) for j in range(K_MAX))
                   for ds, (a1, decay) in _ACCEPT[(drafter, verifier)].items()}
            moe = " (MoE)" if v.get("experts") else ""
            out[preset_name(verifier, drafter, hw)] = Preset(
                verifier, drafter, hw, costs, acc,
                f"ILLUSTRATIVE (not measured): {verifier}{moe} verified, {drafter} drafting, on {hw}",
            )
    return out


#: All presets, keyed by :func:`preset_name`. ILLUSTRATIVE numbers, not measurements.
PRESETS: dict[str, Preset] = _build()


def models_table() -> pd.DataFrame:
    """Canonical MODELS table (name, params_b, layers, hidden_size, experts,
    experts_per_token) for every verifier and drafter named in :data:`PRESETS`."""
    rows = []
    for name, v in {**VERIFIERS, **DRAFTERS}.items():
        rows.append({"name": name, "params_b": float(v["params_b"]), "layers": int(v["layers"]),
                     "hidden_size": v["hidden_size"],
                     "experts": float(v["experts"]) if "experts" in v else np.nan,
                     "experts_per_token": float(v["experts_per_token"]) if "experts" in v else np.nan})
    df = pd.DataFrame(rows)
    df["hidden_size"] = df["hidden_size"].astype("Int64")
    return df
