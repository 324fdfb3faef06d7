"""Compute time of a kernel on a GPU: CTA tiles dealt in waves over the SMs.

The paper's device is a PE array (:mod:`mcdla.hw.compute`); a real GPU runs a GEMM
as cuBLAS does: the output ``m x n`` is cut into CTA tiles of ``Tm x Tn`` (a tile
shape of ``device.gemm_tiles``), each tile runs on one SM, and the tiles are dealt to
the ``device.sms`` SMs in waves (NVIDIA, *Matrix Multiplication Background User's
Guide*: tile quantization and wave quantization). So

    tiles = ceil(m / Tm) * ceil(n / Tn) * count,   waves = ceil(tiles / sms)
    compute = waves * (Tm * Tn * k / (sm_rate * gemm_efficiency) + gemm_tile_overhead)

where ``sm_rate`` is one SM's share of the peak MAC rate, ``gemm_efficiency`` the
fraction of it a tile's main loop sustains and ``gemm_tile_overhead`` the fixed time
a tile spends outside that loop (filling its pipeline with the first K slices,
storing its C tile), the intercept of a GEMM's time per wave against K in a per-shape
microbenchmark (presets: OpenXLA's H100 table; on A100 cuBLASLt on random data run back
to back, the rate a power-limited board sustains, docs/model.md). A device
without that measurement has no overhead, and ``gemm_efficiency`` is then the ceiling
every tile runs at (a large GEMM's rate). A GEMM whose tiles fill whole waves exactly
runs at the main loop's rate less the overhead's share, ``k / (k + k0)`` with ``k0``
the K depth the overhead would compute: a short K (a row-parallel layer's h / TP, the
attention scores' head dimension) runs further below it than a long one. A small
dimension wastes the padded part of its tiles (m = 64 in a 128-row tile computes 128
rows), and a last partial wave leaves SMs idle. Of the device's tile shapes the
fastest is taken (cuBLAS's heuristics choose among its kernels; the model takes the
best, docs/model.md). A GEMM with fewer tiles than SMs and a long K (a weight
gradient: small M x N, K = the batch's positions) is split along K over the idle SMs,
as cuBLAS's split-K kernels do (each slice a CTA that pays the overhead). A GEMM too
short in K to keep the SMs busy is also memory-bound: the roofline in
:func:`mcdla.hw.compute.kernel_time` charges its traffic.

Fused attention (FlashAttention, a kernel with ``Kernel.gemms``) runs at the fraction
of peak its kernel attains, from the kernel's own published throughput by direction:

    efficiency(s) = efficiency[dir] * s / (s + half_seq[dir])

the per-CTA prologue and epilogue (load Q, write O and the statistics) amortized over
the ``s`` keys each query block visits (``s / 2`` on average under a causal mask); both constants fit the kernel's measured
TFLOP/s against sequence length at head dimension 128 (sources in the presets). Its
CTAs (``block`` query rows of one head) are dealt in waves as tiles are. A device holds
these rates per kernel (``attention_kernels``: FlashAttention-2, FlashAttention-3,
cuDNN's), one its default; a run names another with ``training.attention_kernel``
(:func:`with_attention_kernel`).

While a collective of the device runs, its NCCL kernels hold ``nccl_sms`` SMs (one CTA
per channel, never shared with a compute kernel): compute started then runs on the
others, ``sms / (sms - nccl_sms)`` times longer (:func:`sm_contended`; decided when a
layer's compute starts). Those kernels also read and write HBM (:mod:`mcdla.hw.nccl_hbm`):
compute beside them streams at the bandwidth they leave (:func:`hbm_left_Bps`), so a
kernel takes the longer of its time on the SMs left and its HBM traffic at the
bandwidth left plus its fixed costs on those SMs (:func:`nccl_contended`).

A 3x3 stride-1 convolution on a device that measured cuDNN's rate for that class
(``conv3x3_efficiency``: Winograd's, by direction), and a 1x1 convolution on one that
measured that class (``conv1x1_efficiency``), runs its im2col GEMM's tiles and waves at
that rate instead of the GEMM ceiling (:func:`conv_class_seconds`). A device with
separate FP32 lanes has the rates of each precision (``fp32_conv3x3_efficiency``,
``fp32_conv1x1_efficiency`` for 4-byte kernels): cuDNN runs other algorithms on them.

Memory-bound kernels stream at the measured achievable bandwidth (``hbm_efficiency``
of the nominal, a stream benchmark) and every kernel pays ``launch_overhead``; both
are charged by :func:`mcdla.hw.compute.kernel_time`, shared with the PE array.
"""

from __future__ import annotations

import dataclasses

from mcdla.config.hardware import DeviceSpec
from mcdla.errors import InputError
from mcdla.hw.layers import Gemm, Kernel, ceil_div

# The K extent of one step of a CTA's main loop (CUTLASS's 64-deep K tile for 16-bit
# tensor-core GEMMs): a split-K slice is at least this deep.
SPLIT_K_STEP = 64

__all__ = ["gemm_rate", "gemm_seconds", "conv_class_rates", "conv_class_seconds", "attention_seconds",
           "compute_seconds", "waves", "sm_contended", "hbm_left_Bps", "nccl_contended", "with_attention_kernel"]

# The directions of a convolution's kernels, in the order of DeviceSpec.conv3x3_efficiency.
CONV_DIRECTIONS = ("fwd", "dx", "dw")
# The convolution classes a device may have measured: the Kernel field naming a kernel's
# direction in that class, the DeviceSpec field holding the class's rates (its ``fp32_``
# twin for FP32 kernels on separate FP32 lanes, conv_class_rates).
CONV_CLASSES = (("conv3x3", "conv3x3_efficiency"), ("conv1x1", "conv1x1_efficiency"))


def waves(blocks: int, sms: int) -> int:
    """Waves that ``blocks`` CTAs take on ``sms`` SMs (one resident CTA per SM)."""
    return ceil_div(blocks, sms)


def gemm_rate(device: DeviceSpec, element_bytes: int) -> tuple[int, float]:
    """MAC lanes per PE and the fraction of their peak a large GEMM attains, for a GEMM
    on elements of ``element_bytes``: 1-byte (FP8) operands on the FP8 lanes where the
    device has them (``fp8_macs_per_pe``, at ``fp8_gemm_efficiency``), every other GEMM
    on the lanes of its precision (:meth:`DeviceSpec.lanes`) at ``gemm_efficiency``.
    Fused attention keeps the 16-bit lanes (:func:`attention_seconds`): FP8 weights
    and KV cache, attention computed in BF16, as vLLM and TensorRT-LLM run it by
    default (docs/serving.md)."""
    if element_bytes == 1 and device.fp8_macs_per_pe is not None:
        efficiency = device.fp8_gemm_efficiency
        return device.fp8_macs_per_pe, device.gemm_efficiency if efficiency is None else efficiency
    return device.lanes(element_bytes), device.gemm_efficiency


def gemm_seconds(device: DeviceSpec, gemm: Gemm, element_bytes: int) -> float:
    """Compute seconds of ``gemm``: the fastest of the device's CTA tile shapes, its
    tiles in waves over the SMs, each its main loop at the rate of its precision
    (:func:`gemm_rate`) and the tile's fixed overhead (see the module docstring)."""
    lanes, efficiency = gemm_rate(device, element_bytes)
    rate = device.pes * lanes * device.clock / device.sms * efficiency  # one SM's share
    best = None
    for tm, tn in device.gemm_tiles:
        tiles = ceil_div(gemm.m, tm) * ceil_div(gemm.n, tn) * gemm.count
        # Split-K: too few tiles for the SMs share the reduction out in slices of at
        # least one K step each, their partial sums added after (not charged).
        split = max(1, min(device.sms // tiles, ceil_div(gemm.k, SPLIT_K_STEP)))
        tile_s = tm * tn * ceil_div(gemm.k, split) / rate + device.gemm_tile_overhead
        seconds = waves(tiles * split, device.sms) * tile_s
        best = seconds if best is None else min(best, seconds)
    return best


def conv_class_rates(device: DeviceSpec, device_field: str, element_bytes: int):
    """A convolution class's measured rates for a kernel's precision: on a device with
    separate FP32 lanes (``fp32_macs_per_pe``, as :meth:`DeviceSpec.lanes` picks them) a
    4-byte kernel reads the ``fp32_`` field, of those lanes' peak; None where unmeasured."""
    if element_bytes >= 4 and device.fp32_macs_per_pe is not None:
        device_field = f"fp32_{device_field}"
    return getattr(device, device_field)


def conv_class_seconds(device: DeviceSpec, kernel: Kernel, seconds: float) -> float:
    """``seconds`` of a convolution's im2col GEMM, rescaled from the GEMM ceiling to the
    rate cuDNN's kernels measured for its class (``CONV_CLASSES``: 3x3 stride-1, whose
    Winograd multiplies less, so its rate in direct-convolution MACs may exceed 1; 1x1),
    by direction and precision (:func:`conv_class_rates`); its tiles and waves stay the
    GEMM's. Unchanged for any other kernel, or on a device without that class's
    measurement."""
    for kernel_field, device_field in CONV_CLASSES:
        direction = getattr(kernel, kernel_field)
        rates = conv_class_rates(device, device_field, kernel.element_bytes)
        if direction is not None and rates is not None:
            _, ceiling = gemm_rate(device, kernel.element_bytes)
            return seconds * ceiling / rates[CONV_DIRECTIONS.index(direction)]
    return seconds


def attention_seconds(device: DeviceSpec, kernel: Kernel, forward: bool) -> float:
    """Compute seconds of a fused attention kernel (see the module docstring)."""
    scores = kernel.gemms[0]  # S = Q K^T: (seq x seq), reduction head_dim, count = heads x batch
    seq = scores.m
    # The keys a query block visits: all of them, or on average half under a causal
    # mask (the kernel's MACs are then half its GEMMs' full squares).
    keys = seq * kernel.macs / sum(g.macs for g in kernel.gemms)
    which = 0 if forward else 1
    rates = device.attention_rates(kernel.attention)
    efficiency = rates.efficiency[which] * keys / (keys + rates.half_seq[which])
    ctas = ceil_div(seq, rates.block) * scores.count
    filled = ctas / (waves(ctas, device.sms) * device.sms)
    peak = device.pes * device.lanes(kernel.element_bytes) * device.clock
    return kernel.macs / (peak * efficiency * filled)


def compute_seconds(device: DeviceSpec, kernel: Kernel) -> float:
    """Compute seconds of ``kernel`` on a GPU (0 for a memory-bound kernel)."""
    if kernel.gemm is not None:
        return conv_class_seconds(device, kernel, gemm_seconds(device, kernel.gemm, kernel.element_bytes))
    if kernel.gemms:
        # The fused forward runs 2 GEMMs (S, O), backward 5 (S again, dV, dP, dQ, dK).
        return attention_seconds(device, kernel, forward=len(kernel.gemms) <= 2)
    return 0.0


def sm_contended(device: DeviceSpec, seconds: float) -> float:
    """``seconds`` of compute run on the SMs a concurrent NCCL collective leaves free
    (unchanged on a device without ``nccl_sms``, the paper's PE array among them)."""
    if not device.nccl_sms or device.sms is None:
        return seconds
    return seconds * device.sms / (device.sms - device.nccl_sms)


def hbm_left_Bps(device: DeviceSpec, nccl_hbm_Bps: float) -> float:
    """The HBM bandwidth compute has while NCCL's kernels take ``nccl_hbm_Bps`` of it: the
    achievable bandwidth (``hbm_bw * hbm_efficiency``) less NCCL's share. The memory
    controllers serve both kinds of kernel's requests; a memory-bound kernel asks for all
    the bandwidth, so where NCCL asks for more than half of it the two are taken to share
    it evenly (max-min fairness): NCCL's share is clamped at half (docs/model.md, "NCCL's
    HBM traffic")."""
    achievable = device.effective_hbm_bw_Bps
    return achievable - min(nccl_hbm_Bps, achievable / 2)


def nccl_contended(device: DeviceSpec, seconds: float, hbm_bytes: float, fixed_s: float,
                   nccl_hbm_Bps: float) -> float:
    """Seconds of a kernel that takes ``seconds`` alone, run beside NCCL's kernels: on the
    SMs they leave (:func:`sm_contended`, the whole kernel), or its ``hbm_bytes`` streamed
    at the bandwidth they leave (:func:`hbm_left_Bps`) and its ``fixed_s`` (latency and
    launch) on those SMs, whichever is longer. A memory-bound kernel and a GEMM whose
    roofline memory term the contention lifts above its compute take the second; with
    nothing taken from HBM it is :func:`sm_contended`'s. Unchanged on a device without
    ``nccl_sms`` (the paper's PE array among them): no NCCL kernels are modelled there."""
    if not device.nccl_sms or device.sms is None:
        return seconds
    return max(sm_contended(device, seconds),
               hbm_bytes / hbm_left_Bps(device, nccl_hbm_Bps) + sm_contended(device, fixed_s))


def with_attention_kernel(workload, kernel: str | None, device: DeviceSpec, where: str):
    """``workload`` with its fused attention run by ``kernel`` (training.attention_kernel;
    None: the device's default, the workload unchanged). Refuses a kernel ``device``
    (``where`` names it) has no rates for: its time would be a guess."""
    if kernel is None:
        return workload
    if kernel not in device.attention_kernels:
        known = ", ".join(device.attention_kernels)
        way_out = (f"name one it has or leave the key unset for its default, {device.attention_kernel}" if known
                   else "leave the key unset")
        raise InputError(f"{where} has no measured rates for attention kernel {kernel!r} "
                         f"(it has: {known or 'none'}); {way_out}", key="training.attention_kernel")
    layers = tuple(dataclasses.replace(l, attention=dataclasses.replace(l.attention, kernel=kernel))
                   if l.attention is not None and l.attention.flash else l for l in workload.layers)
    return dataclasses.replace(workload, layers=layers)
