"""Accelerators as a roofline: peak dense FLOP/s, memory bandwidth, what kernels reach of each.

A forward pass is a sequence of kernels. Each kernel moves some bytes between HBM and the chip and
does some floating-point operations; it cannot finish before either is done, so its time is at
least ``max(FLOPs / achievable FLOP/s, bytes / achievable bytes/s)`` (the roofline). Kernels with few
FLOPs per byte (a decode pass reading every weight once for a handful of tokens) are
*memory-bound*; kernels with many (a pass over hundreds of tokens) are *compute-bound*. The
crossover, the ridge point, is ``achievable FLOP/s / achievable bytes/s`` FLOPs per byte.

Tensor cores work on tiles: a GEMM's token dimension (M) is cut into tiles of ``tile_tokens``
rows and a partial tile costs as much as a full one, so a pass over 129 tokens does the
arithmetic of 256 when the tile is 128.

The presets below carry public spec-sheet numbers (dense, without 2:4 sparsity); each field says
where its number comes from. They are **illustrative**, not measurements: the efficiencies and
overheads are plausible round values, not fitted to any benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["Device", "DEVICES", "device", "roofline_seconds", "padded_tokens"]


@dataclass(frozen=True)
class Device:
    """One accelerator, as the roofline sees it.

    Parameters
    ----------
    name : str
        Label written to ``runs.hardware`` (e.g. ``"H100"``).
    peak_flops : float
        Peak dense fp16/bf16 tensor-core throughput, FLOP/s.
    memory_bandwidth : float
        Peak HBM (or GDDR) bandwidth, bytes/s.
    memory_bytes : float
        Memory capacity, bytes.
    link_bandwidth : float
        GPU-to-GPU bandwidth per direction, bytes/s (NVLink, or PCIe without it); used by
        tensor-parallel all-reduces.
    compute_efficiency : float, default 0.7
        Fraction of ``peak_flops`` a large dense GEMM reaches.
    bandwidth_efficiency : float, default 0.85
        Fraction of ``memory_bandwidth`` a streaming kernel (weight or KV read) reaches.
    attention_efficiency : float, default 0.4
        Fraction of ``peak_flops`` the attention kernel reaches on its arithmetic (softmax and
        irregular shapes keep it below a GEMM).
    launch_overhead_s : float, default 25e-6
        Fixed cost of one forward pass, s: graph launch, synchronisation, the first kernel's latency.
    layer_overhead_s : float, default 1.5e-6
        Per transformer block of a pass, s: the gaps between that block's kernels.
    tile_tokens : int, default 128
        M-tile of the dense GEMMs, tokens: a GEMM over ``T`` tokens costs the arithmetic of
        ``ceil(T / tile) * tile``.
    expert_tile_tokens : int, default 32
        M-tile of the grouped expert GEMMs of an MoE layer (smaller: MoE kernels pick small blocks
        because each expert sees few tokens), tokens.
    allreduce_latency_s : float, default 8e-6
        Latency of one all-reduce across the tensor-parallel group, s.
    source : str
        Where the spec-sheet numbers come from.
    """

    name: str
    peak_flops: float
    memory_bandwidth: float
    memory_bytes: float
    link_bandwidth: float
    compute_efficiency: float = 0.7
    bandwidth_efficiency: float = 0.85
    attention_efficiency: float = 0.4
    launch_overhead_s: float = 25e-6
    layer_overhead_s: float = 1.5e-6
    tile_tokens: int = 128
    expert_tile_tokens: int = 32
    allreduce_latency_s: float = 8e-6
    source: str = ""

    def __post_init__(self):
        for field in ("peak_flops", "memory_bandwidth", "memory_bytes", "link_bandwidth"):
            if not getattr(self, field) > 0:
                raise ValueError(f"Device {self.name!r}: {field} must be positive, got {getattr(self, field)!r}")
        for field in ("compute_efficiency", "bandwidth_efficiency", "attention_efficiency"):
            if not 0 < getattr(self, field) <= 1:
                raise ValueError(f"Device {self.name!r}: {field} must be in (0, 1], got {getattr(self, field)!r}")
        if self.tile_tokens < 1 or self.expert_tile_tokens < 1:
            raise ValueError(f"Device {self.name!r}: tile sizes must be at least 1 token")

    @property
    def achievable_flops(self) -> float:
        """FLOP/s a large dense GEMM reaches: ``peak_flops * compute_efficiency``."""
        return self.peak_flops * self.compute_efficiency

    @property
    def achievable_bandwidth(self) -> float:
        """Bytes/s a streaming read reaches: ``memory_bandwidth * bandwidth_efficiency``."""
        return self.memory_bandwidth * self.bandwidth_efficiency

    @property
    def ridge_flops_per_byte(self) -> float:
        """Arithmetic intensity (FLOPs per byte moved) above which a kernel is compute-bound."""
        return self.achievable_flops / self.achievable_bandwidth

    def with_(self, **changes) -> Device:
        """A copy with some fields changed (e.g. a slower ``compute_efficiency``).

        Parameters
        ----------
        **changes
            Fields and their new values.

        Returns
        -------
        Device
        """
        return replace(self, **changes)


def roofline_seconds(flops: float, bytes_moved: float, flops_per_s: float, bytes_per_s: float) -> float:
    """Time of one kernel on the roofline, s.

    The kernel cannot finish before its arithmetic is done nor before its bytes have crossed the
    memory bus; with both overlapped, the slower of the two sets the time.

    Parameters
    ----------
    flops : float
        Floating-point operations of the kernel.
    bytes_moved : float
        Bytes it reads and writes in memory.
    flops_per_s, bytes_per_s : float
        Achievable arithmetic throughput (FLOP/s) and bandwidth (bytes/s).

    Returns
    -------
    float
        ``max(flops / flops_per_s, bytes_moved / bytes_per_s)``, s.
    """
    return max(flops / flops_per_s, bytes_moved / bytes_per_s)


def padded_tokens(tokens: int, tile: int) -> int:
    """Tokens a GEMM does the arithmetic of: ``tokens`` rounded up to a multiple of ``tile``.

    Parameters
    ----------
    tokens : int
        Rows of the GEMM (tokens in the pass), tokens.
    tile : int
        M-tile of the kernel, tokens.

    Returns
    -------
    int
        ``ceil(tokens / tile) * tile`` (0 for 0 tokens).
    """
    return int(math.ceil(tokens / tile)) * tile if tokens > 0 else 0


_GB = 1e9
_TB = 1e12

#: Spec-sheet presets (dense fp16/bf16; illustrative, not measurements).
DEVICES: dict[str, Device] = {
    "H100": Device(
        name="H100",
        # NVIDIA H100 Tensor Core GPU datasheet (SXM5): BF16 tensor 1,979 TFLOPS with sparsity,
        # i.e. 989 TFLOPS dense; HBM3 3.35 TB/s; 80 GB; NVLink 900 GB/s (bidirectional: 450 GB/s per direction).
        peak_flops=989e12, memory_bandwidth=3.35 * _TB, memory_bytes=80 * _GB, link_bandwidth=450 * _GB,
        compute_efficiency=0.6, tile_tokens=128, source="NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
    ),
    "A100": Device(
        name="A100",
        # NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): BF16 tensor 312 TFLOPS dense (624 with sparsity);
        # HBM2e 2,039 GB/s; 80 GB; NVLink 600 GB/s (300 GB/s per direction).
        peak_flops=312e12, memory_bandwidth=2.039 * _TB, memory_bytes=80 * _GB, link_bandwidth=300 * _GB,
        compute_efficiency=0.7, tile_tokens=128, layer_overhead_s=2.0e-6, launch_overhead_s=30e-6,
        source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM)",
    ),
    "L40S": Device(
        name="L40S",
        # NVIDIA L40S datasheet: BF16 tensor 362.05 TFLOPS dense (733 with sparsity); 48 GB GDDR6 at 864 GB/s;
        # no NVLink, PCIe Gen4 x16 64 GB/s bidirectional (32 GB/s per direction).
        peak_flops=362.05e12, memory_bandwidth=0.864 * _TB, memory_bytes=48 * _GB, link_bandwidth=32 * _GB,
        compute_efficiency=0.6, bandwidth_efficiency=0.8, tile_tokens=64, allreduce_latency_s=25e-6,
        layer_overhead_s=2.0e-6, source="NVIDIA L40S datasheet",
    ),
    "B200": Device(
        name="B200",
        # NVIDIA HGX B200 specifications (1,000 W configuration): FP16/BF16 tensor 4.5 PFLOPS with sparsity,
        # i.e. 2.25 PFLOPS dense per GPU; HBM3e 8 TB/s; 180 GB; NVLink 5 1.8 TB/s (900 GB/s per direction).
        peak_flops=2.25e15, memory_bandwidth=8.0 * _TB, memory_bytes=180 * _GB, link_bandwidth=900 * _GB,
        compute_efficiency=0.55, tile_tokens=128, expert_tile_tokens=64, source="NVIDIA HGX B200 specifications",
    ),
}


def device(name: str) -> Device:
    """The preset named ``name`` (one of :data:`DEVICES`).

    Parameters
    ----------
    name : str
        ``"H100"``, ``"A100"``, ``"L40S"`` or ``"B200"``.

    Returns
    -------
    Device

    Raises
    ------
    KeyError
        For an unknown name; the message lists the presets.
    """
    try:
        return DEVICES[name]
    except KeyError:
        raise KeyError(f"unknown device {name!r}; presets: {', '.join(DEVICES)}") from None
