"""Time of one forward pass of a model shape on a device, from the roofline (no fitted cost law).

A pass over ``T`` tokens runs, in order, five groups of kernels; each group is on the roofline
(:func:`.hardware.roofline_seconds`: the slower of its arithmetic and its memory traffic):

1. **dense GEMMs** (attention projections, dense FFNs, shared experts, routers): FLOPs
   ``2 * dense params * pad(T)`` (``pad``: ``T`` rounded up to the GEMM tile), bytes: the dense
   weights once plus the activations (``activation_bytes_per_token * T``);
2. **LM head and sampler**, over the ``L`` tokens that need logits (every decode and verify token;
   the last token of a prompt that completes): the head's FLOPs ``2 * vocab * hidden * pad(L)``,
   bytes: the head once; then the sampler (softmax, rejection sampling), memory-bound on the fp32
   logits: ``12 * vocab * L`` bytes (written once, read and written by the softmax, read by sampling);
3. **routed experts** (MoE only): bytes: the experts some token touches,
   ``moe blocks * E[active experts](T) * expert bytes``; FLOPs: ``2 * expert params * moe blocks *
   E[padded rows](T)`` at 80 % of the dense GEMM throughput (grouped GEMMs over ragged token counts
   are less efficient), both from the run's :class:`~.shapes.ExpertRouting`;
4. **attention**: bytes: the KV cache of every sequence in the pass, ``kv_bytes_per_token *
   sum(context)``; FLOPs ``attention_flops_per_pair * sum(query rows x context they see)`` at the
   attention kernel's efficiency. A sequence with one query token uses the decode kernel (no
   padding); a sequence with several (a verify block, a prefill chunk) goes through a kernel that
   gives each (sequence, head) tiles of query rows, so its rows are rounded up to the tile
   (:func:`attention_query_rows`: ``k + 1 = 5`` verify tokens cost 128 rows of arithmetic under a
   128-row tile, or 64 / 4 = 16 per query head when the kernel packs the 4 query heads of a KV head);
5. **tensor-parallel all-reduces** (``tp > 1``): two per block, each ``latency + 2 (tp - 1) / tp *
   T * hidden * 2 bytes / link bandwidth`` (a ring all-reduce sends each byte twice);

plus the launch overhead ``launch + layers * per-block gap``. With ``tp`` devices the arithmetic and
the bandwidth are ``tp`` times one device's (each holds ``1/tp`` of every weight and head).

Everything a simulation step needs is packed in a float array (:class:`PassCost`) so that the
numba kernel of :mod:`.server` evaluates passes without Python objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .hardware import Device
from .shapes import ExpertRouting, ModelShape

__all__ = ["PassCost", "pass_cost", "pass_seconds", "pass_breakdown", "tensor_parallel_degree", "kv_capacity_tokens",
           "attention_query_rows"]

# Index of each coefficient in PassCost.coefficients.
DENSE_FLOPS_PER_TOKEN = 0
DENSE_BYTES = 1
ACTIVATION_BYTES_PER_TOKEN = 2
HEAD_FLOPS_PER_TOKEN = 3
HEAD_BYTES = 4
EXPERT_FLOPS_PER_ROW = 5
EXPERT_BYTES_PER_ACTIVE = 6
KV_BYTES_PER_CONTEXT_TOKEN = 7
ATTENTION_FLOPS_PER_PAIR = 8
FLOPS_PER_S = 9
BYTES_PER_S = 10
ATTENTION_FLOPS_PER_S = 11
LAUNCH_S = 12
TILE = 13
COMM_FIXED_S = 14
COMM_S_PER_TOKEN = 15
LOOKUP_S_PER_SEQUENCE = 16
HAS_WEIGHTS = 17
IS_MOE = 18
SAMPLER_BYTES_PER_LOGIT = 19
GQA_GROUP = 20
N_COEFFICIENTS = 21

#: Grouped expert GEMMs reach this fraction of the dense GEMM throughput.
EXPERT_GEMM_EFFICIENCY = 0.8
#: Token counts at which the MoE tables are tabulated (interpolated linearly between them, extrapolated
#: linearly past 16384 tokens, where every expert is active and the padded rows grow as ``top_k`` per token).
_TABLE_TOKENS = np.unique(np.concatenate([np.arange(0, 64), np.round(np.geomspace(64, 16384, 100))])).astype("float64")


@dataclass(frozen=True)
class PassCost:
    """Everything needed to time a forward pass of one model on one deployment.

    Parameters
    ----------
    coefficients : numpy.ndarray
        Float array indexed by the module constants (``DENSE_FLOPS_PER_TOKEN`` ...).
    table_tokens : numpy.ndarray
        Token counts of the MoE tables.
    active_experts : numpy.ndarray
        Mean active experts per MoE block at each ``table_tokens`` (zeros for dense models).
    padded_rows : numpy.ndarray
        Mean padded expert GEMM rows per MoE block at each ``table_tokens``.
    name, device_name : str
        The model and the device.
    tp : int
        Tensor-parallel degree (devices the model is split over).
    """

    coefficients: np.ndarray = field(repr=False)
    table_tokens: np.ndarray = field(repr=False)
    active_experts: np.ndarray = field(repr=False)
    padded_rows: np.ndarray = field(repr=False)
    name: str = ""
    device_name: str = ""
    tp: int = 1

    def seconds(self, tokens: int, logit_tokens: int | None = None, context_tokens: float = 0.0,
                query_context_pairs: float = 0.0) -> float:
        """Time of one pass.

        Parameters
        ----------
        tokens : int
            Tokens the pass's GEMMs process.
        logit_tokens : int, optional
            Tokens that need logits (default ``tokens``).
        context_tokens : float, default 0
            Sum of the sequences' context read from the KV cache, tokens.
        query_context_pairs : float, default 0
            Sum of (query rows x context) over sequences.

        Returns
        -------
        float
            Seconds (:func:`pass_seconds`).
        """
        logits = tokens if logit_tokens is None else logit_tokens
        return float(pass_seconds(self.coefficients, self.table_tokens, self.active_experts, self.padded_rows,
                                  float(tokens), float(logits), float(context_tokens), float(query_context_pairs)))


def tensor_parallel_degree(shape: ModelShape, dev: Device, extra_weight_bytes: float = 0.0,
                           kv_reserve_tokens: int = 200_000, memory_fraction: float = 0.9) -> int:
    """Fewest devices (1, 2, 4 or 8) that hold the weights and a KV cache of ``kv_reserve_tokens``.

    Parameters
    ----------
    shape : ModelShape
        The model.
    dev : Device
        The accelerator.
    extra_weight_bytes : float, default 0
        Weights of a drafter held on the same devices, bytes.
    kv_reserve_tokens : int, default 200000
        Tokens of KV cache the deployment must hold at least, tokens.
    memory_fraction : float, default 0.9
        Share of device memory the server may use (vLLM's gpu_memory_utilization).

    Returns
    -------
    int
        The degree, or 0 when even 8 devices do not fit.
    """
    need = shape.weight_bytes + extra_weight_bytes + kv_reserve_tokens * shape.kv_bytes_per_token
    for tp in (1, 2, 4, 8):
        if need <= memory_fraction * dev.memory_bytes * tp - 2e9 * tp:  # ~2 GB per device of activations, graphs
            return tp
    return 0


def kv_capacity_tokens(shape: ModelShape, dev: Device, tp: int, drafter: ModelShape | None = None,
                       memory_fraction: float = 0.9) -> int:
    """Tokens of context the deployment's KV cache holds (verifier and drafter caches together).

    ``(memory_fraction * memory * tp - 2 GB * tp - weights) / (KV bytes per token of verifier + drafter)``:
    what is left of the devices' memory after the weights and ~2 GB per device of activations and graphs.

    Parameters
    ----------
    shape : ModelShape
        The verifier.
    dev : Device
        The accelerator.
    tp : int
        Tensor-parallel degree.
    drafter : ModelShape, optional
        A drafter held on the same devices (its weights and KV cache share the memory).
    memory_fraction : float, default 0.9
        Share of device memory the server may use.

    Returns
    -------
    int
        Tokens.
    """
    weights = shape.weight_bytes + (drafter.weight_bytes if drafter is not None and drafter.has_weights else 0.0)
    per_token = shape.kv_bytes_per_token + (drafter.kv_bytes_per_token if drafter is not None else 0.0)
    free = memory_fraction * dev.memory_bytes * tp - 2e9 * tp - weights
    return int(max(free, 0.0) / per_token)


def pass_cost(shape: ModelShape, dev: Device, tp: int = 1, routing: ExpertRouting | None = None) -> PassCost:
    """Pack the per-pass coefficients of ``shape`` on ``tp`` devices ``dev``.

    Parameters
    ----------
    shape : ModelShape
        The model (an n-gram drafter gives a CPU-only cost).
    dev : Device
        The accelerator.
    tp : int, default 1
        Tensor-parallel degree.
    routing : ExpertRouting, optional
        Expert popularity of the run (MoE only; default uniform).

    Returns
    -------
    PassCost
    """
    c = np.zeros(N_COEFFICIENTS)
    c[FLOPS_PER_S] = dev.achievable_flops * tp
    c[BYTES_PER_S] = dev.achievable_bandwidth * tp
    c[ATTENTION_FLOPS_PER_S] = dev.peak_flops * dev.attention_efficiency * tp
    c[TILE] = dev.tile_tokens
    c[LOOKUP_S_PER_SEQUENCE] = shape.lookup_seconds_per_sequence
    c[HAS_WEIGHTS] = 1.0 if shape.has_weights else 0.0
    c[GQA_GROUP] = shape.heads / shape.kv_heads if shape.has_weights else 1.0
    zeros = np.zeros_like(_TABLE_TOKENS)
    if not shape.has_weights:
        return PassCost(c, _TABLE_TOKENS, zeros, zeros, shape.name, dev.name, tp)
    c[DENSE_FLOPS_PER_TOKEN] = 2.0 * shape.dense_gemm_params
    c[DENSE_BYTES] = shape.dense_weight_bytes
    c[ACTIVATION_BYTES_PER_TOKEN] = shape.activation_bytes_per_token
    c[HEAD_FLOPS_PER_TOKEN] = 2.0 * shape.lm_head_params
    c[HEAD_BYTES] = shape.lm_head_bytes
    c[SAMPLER_BYTES_PER_LOGIT] = 12.0 * shape.vocab_size
    c[KV_BYTES_PER_CONTEXT_TOKEN] = shape.kv_bytes_per_token
    c[ATTENTION_FLOPS_PER_PAIR] = shape.attention_flops_per_pair
    c[LAUNCH_S] = dev.launch_overhead_s + dev.layer_overhead_s * shape.layers
    if tp > 1:
        c[COMM_FIXED_S] = 2 * shape.layers * dev.allreduce_latency_s
        c[COMM_S_PER_TOKEN] = 2 * shape.layers * 2.0 * (tp - 1) / tp * shape.hidden_size * 2.0 / dev.link_bandwidth
    active, padded = zeros, zeros
    if shape.is_moe:
        routing = routing or ExpertRouting.uniform(shape.experts, shape.experts_per_token)
        c[IS_MOE] = 1.0
        c[EXPERT_FLOPS_PER_ROW] = 2.0 * shape.expert_params * shape.n_moe_layers / EXPERT_GEMM_EFFICIENCY
        c[EXPERT_BYTES_PER_ACTIVE] = shape.expert_bytes * shape.n_moe_layers
        active = routing.expected_active_experts(_TABLE_TOKENS)
        padded = routing.expected_padded_rows(_TABLE_TOKENS, dev.expert_tile_tokens)
    return PassCost(c, _TABLE_TOKENS, active, padded, shape.name, dev.name, tp)


@njit(cache=True)
def _interpolate(x, xs, ys):
    """Linear interpolation in a table with increasing ``xs``; linear extrapolation past the end."""
    n = xs.shape[0]
    if x <= xs[0]:
        return ys[0]
    if x >= xs[n - 1]:
        slope = (ys[n - 1] - ys[n - 2]) / (xs[n - 1] - xs[n - 2])
        return ys[n - 1] + slope * (x - xs[n - 1])
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xs[mid] <= x:
            lo = mid
        else:
            hi = mid
    w = (x - xs[lo]) / (xs[hi] - xs[lo])
    return ys[lo] * (1.0 - w) + ys[hi] * w


@njit(cache=True)
def attention_query_rows(query_tokens, group, tile_rows, packs_gqa):
    """Query rows of arithmetic the attention kernel does per query head for one sequence.

    One query token: the decode kernel, no padding (``1``). Several: each (sequence, KV head) gets
    tiles of ``tile_rows`` rows; a kernel that packs the ``group`` query heads sharing a KV head puts
    ``query_tokens * group`` rows in them, one that does not puts ``query_tokens`` rows per query head.

    Parameters
    ----------
    query_tokens : float
        Query tokens of the sequence in the pass.
    group : float
        Query heads per KV head (grouped-query attention).
    tile_rows : float
        Rows of a query tile (0: no padding).
    packs_gqa : bool
        Whether the kernel packs the query heads of a KV head into one tile.

    Returns
    -------
    float
        Rows per query head (``>= query_tokens``).
    """
    if query_tokens <= 1.0 or tile_rows <= 0.0:
        return query_tokens
    if packs_gqa:
        rows = query_tokens * group
        return math.ceil(rows / tile_rows) * tile_rows / group
    return math.ceil(query_tokens / tile_rows) * tile_rows


@njit(cache=True)
def _phase_times(c, table_tokens, active_experts, padded_rows, tokens, logit_tokens, context_tokens,
                 query_context_pairs):
    """Seconds of each kernel group and whether it is compute-bound (1.0) or memory-bound (0.0).

    Returns a (6, 2) array: rows dense, head, experts, attention, communication, overhead; columns
    seconds, compute-bound flag.
    """
    out = np.zeros((6, 2))
    if tokens <= 0.0:
        return out
    if c[HAS_WEIGHTS] == 0.0:
        out[5, 0] = c[LOOKUP_S_PER_SEQUENCE] * tokens
        return out
    tile = c[TILE]
    padded = math.ceil(tokens / tile) * tile
    f = c[DENSE_FLOPS_PER_TOKEN] * padded / c[FLOPS_PER_S]
    b = (c[DENSE_BYTES] + c[ACTIVATION_BYTES_PER_TOKEN] * tokens) / c[BYTES_PER_S]
    out[0, 0], out[0, 1] = max(f, b), 1.0 if f >= b else 0.0
    if logit_tokens > 0.0:
        padded_logits = math.ceil(logit_tokens / tile) * tile
        f = c[HEAD_FLOPS_PER_TOKEN] * padded_logits / c[FLOPS_PER_S]
        b = c[HEAD_BYTES] / c[BYTES_PER_S]
        out[1, 0], out[1, 1] = max(f, b), 1.0 if f >= b else 0.0
        out[1, 0] += c[SAMPLER_BYTES_PER_LOGIT] * logit_tokens / c[BYTES_PER_S]
    if c[IS_MOE] > 0.0:
        rows = _interpolate(tokens, table_tokens, padded_rows)
        active = _interpolate(tokens, table_tokens, active_experts)
        f = c[EXPERT_FLOPS_PER_ROW] * rows / c[FLOPS_PER_S]
        b = c[EXPERT_BYTES_PER_ACTIVE] * active / c[BYTES_PER_S]
        out[2, 0], out[2, 1] = max(f, b), 1.0 if f >= b else 0.0
    f = c[ATTENTION_FLOPS_PER_PAIR] * query_context_pairs / c[ATTENTION_FLOPS_PER_S]
    b = c[KV_BYTES_PER_CONTEXT_TOKEN] * context_tokens / c[BYTES_PER_S]
    out[3, 0], out[3, 1] = max(f, b), 1.0 if f >= b else 0.0
    out[4, 0] = c[COMM_FIXED_S] + c[COMM_S_PER_TOKEN] * tokens
    out[5, 0] = c[LAUNCH_S]
    return out


@njit(cache=True)
def pass_seconds(c, table_tokens, active_experts, padded_rows, tokens, logit_tokens, context_tokens,
                 query_context_pairs):
    """Time of one forward pass, s: the sum of its kernel groups on the roofline (module docstring).

    Parameters
    ----------
    c : numpy.ndarray
        ``PassCost.coefficients``.
    table_tokens, active_experts, padded_rows : numpy.ndarray
        The MoE tables of the ``PassCost``.
    tokens : float
        Tokens the pass's GEMMs process (decode and prefill), tokens.
    logit_tokens : float
        Tokens that need logits (LM head rows), tokens.
    context_tokens : float
        Sum over the pass's sequences of the context read from the KV cache, tokens.
    query_context_pairs : float
        Sum over sequences of (query rows x context each sees), for the attention arithmetic
        (rows from :func:`attention_query_rows`).

    Returns
    -------
    float
        Seconds (0 for an empty pass). For the n-gram drafter, ``tokens`` is the number of sequences
        looked up and the result their CPU time.
    """
    t = _phase_times(c, table_tokens, active_experts, padded_rows, tokens, logit_tokens, context_tokens,
                     query_context_pairs)
    return t[:, 0].sum()


def pass_breakdown(cost: PassCost, tokens: int, logit_tokens: int | None = None, context_tokens: float = 0.0,
                   query_context_pairs: float = 0.0) -> dict:
    """Seconds and bound of each kernel group of one pass, for inspection and tests.

    Parameters
    ----------
    cost : PassCost
        The model on its deployment.
    tokens, logit_tokens, context_tokens, query_context_pairs
        As :func:`pass_seconds` (``logit_tokens`` defaults to ``tokens``).

    Returns
    -------
    dict
        ``{group: (seconds, "compute" | "memory" | "-")}`` for dense, head, experts, attention,
        communication, overhead, and ``"total"`` (seconds).
    """
    logits = tokens if logit_tokens is None else logit_tokens
    t = _phase_times(cost.coefficients, cost.table_tokens, cost.active_experts, cost.padded_rows, float(tokens),
                     float(logits), float(context_tokens), float(query_context_pairs))
    names = ("dense", "head", "experts", "attention", "communication", "overhead")
    out = {}
    for i, name in enumerate(names):
        bound = "-" if i >= 4 or t[i, 0] == 0 else ("compute" if t[i, 1] > 0 else "memory")
        out[name] = (float(t[i, 0]), bound)
    out["total"] = float(t[:, 0].sum())
    return out
