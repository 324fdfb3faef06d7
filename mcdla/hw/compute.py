"""Time of a kernel on a device-node: an output-stationary PE array behind HBM.

This is the ``pe_array`` compute model, the paper's device; a real GPU preset selects
``compute_model: gpu`` (:mod:`mcdla.hw.gpu`, CTA tiles in waves over the SMs). Both
share the roofline below: time = max(compute, memory) + latency + launch.

The device (paper Table II) has ``pes`` processing elements, each with a
``macs_per_pe``-wide MAC vector (1024 x 125 at 1 GHz: 128 TMAC/s), ``sram_per_pe`` of
local buffer and an HBM of ``hbm_bw`` with ``hbm_latency``.

GEMM ``C[m x n] = A[m x k] B[k x n]`` repeated ``count`` times, output-stationary:

- Mapping. Each PE owns one output element at a time and accumulates it in place; its
  MAC vector reduces ``macs_per_pe`` terms of the dot product per cycle. The
  ``count * m * n`` outputs (independent GEMMs of a grouped conv share the array) are
  dealt to the PEs in rounds, so

      cycles = ceil(count * m * n / pes) * ceil(k / macs_per_pe)

  and utilization = MACs / (cycles * pes * macs_per_pe). The two ceilings are the
  quantization losses: a last round that leaves PEs idle, a last reduction step that
  leaves lanes idle (k = 512 on 125 lanes runs 5 steps at 82% use).
- Traffic. A kernel's compulsory traffic (``Kernel.bytes``) reads A and B and writes C
  once. That holds while C's accumulators stay on chip; half the aggregate SRAM
  (``pes * sram_per_pe / 2``, the other half double-buffers the input streams) holds
  output tiles. When C of one GEMM is larger, it is computed in tiles of Tm x Tn
  outputs (as square as the matrix allows); every tile re-reads its rows of A and
  columns of B, so A is read ceil(n / Tn) times and B ceil(m / Tm) times. The operand
  sizes are the tensors (``Kernel.operand_bytes``), not the im2col-expanded matrix.
- Time. compute = cycles / clock; memory = traffic / hbm_bw (the roofline floor);
  time = max(compute, memory) + hbm_latency, the latency paid once per kernel since
  the DMA streams are pipelined behind it.
- Calibration (real-device presets; the paper's device has none): compute is divided
  by ``gemm_efficiency`` (the fraction of peak a large GEMM attains, measured, e.g.
  cuBLAS on the real part), memory by ``hbm_efficiency`` (a stream kernel's fraction
  of the nominal bandwidth), and every kernel pays ``launch_overhead``. A device
  whose fp32 lanes differ from its low-precision (tensor) lanes (``fp32_macs_per_pe``)
  runs GEMMs on 4-byte elements on the fp32 lanes; one with FP8 lanes
  (``fp8_macs_per_pe``) runs GEMMs on 1-byte elements on them, at their own measured
  fraction (:func:`mcdla.hw.gpu.gemm_rate`).

Element-wise, pooling and normalization kernels (``gemm is None``) are memory-bound:
time = bytes / hbm_bw + hbm_latency (+ the same calibration).

Each result carries MACs, bytes, arithmetic intensity and attained MAC/s, the
coordinates of a roofline plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mcdla.config.hardware import DeviceSpec
from mcdla.hw import gpu
from mcdla.hw.layers import Gemm, Kernel, Layer, ceil_div
from mcdla.hw.memory import optimizer_passes

__all__ = ["KernelTiming", "COMPUTE_MODELS", "gemm_cycles", "traffic_bytes", "kernel_time", "kernel_seconds",
           "layer_time", "layer_timings", "optimizer_step_time"]


@dataclass(frozen=True)
class KernelTiming:
    """How long one kernel takes and why; ``bytes`` includes re-fetches."""

    time_s: float
    macs: int
    bytes: int
    intensity: float  # MAC per byte of HBM traffic
    attained_macs_per_s: float
    utilization: float  # of the PE array's peak MAC/s over the whole kernel time
    bound: str  # "compute" or "memory"


def gemm_cycles(device: DeviceSpec, gemm: Gemm, element_bytes: int = 4, lanes: int | None = None) -> int:
    """Cycles of ``gemm`` on the PE array (output-stationary mapping, see above), on
    ``lanes`` MAC lanes per PE (default: the lanes of its precision, :meth:`DeviceSpec.lanes`)."""
    rounds = ceil_div(gemm.count * gemm.m * gemm.n, device.pes)
    steps = ceil_div(gemm.k, lanes or device.lanes(element_bytes))
    return rounds * steps


def _output_tile(device: DeviceSpec, gemm: Gemm, element_bytes: int) -> tuple[int, int]:
    """The Tm x Tn output tile that fits the on-chip accumulator space."""
    capacity = max(1, int(device.pes * device.sram_per_pe / 2) // element_bytes)
    if gemm.m * gemm.n <= capacity:
        return gemm.m, gemm.n
    side = math.isqrt(capacity)
    if gemm.m <= side:
        return gemm.m, capacity // gemm.m
    if gemm.n <= side:
        return capacity // gemm.n, gemm.n
    return side, side


def traffic_bytes(device: DeviceSpec, kernel: Kernel) -> int:
    """HBM traffic of ``kernel``: compulsory, plus re-fetches when C is tiled."""
    if kernel.gemm is None or kernel.operand_bytes is None:
        return kernel.bytes
    a_bytes, b_bytes, _ = kernel.operand_bytes
    tm, tn = _output_tile(device, kernel.gemm, kernel.element_bytes)
    a_reads = ceil_div(kernel.gemm.n, tn)
    b_reads = ceil_div(kernel.gemm.m, tm)
    return kernel.bytes + (a_reads - 1) * a_bytes + (b_reads - 1) * b_bytes


def _pe_array_compute(device: DeviceSpec, kernel: Kernel) -> tuple[float, int]:
    """The paper's PE array: (compute seconds, HBM bytes with tile re-fetches)."""
    compute_s = 0.0
    if kernel.gemm is not None:
        lanes, efficiency = gpu.gemm_rate(device, kernel.element_bytes)  # FP8 lanes for 1-byte GEMMs
        compute_s = gemm_cycles(device, kernel.gemm, kernel.element_bytes, lanes) / device.clock / efficiency
    elif kernel.gemms:  # a fused kernel: its GEMMs in turn, scaled to the products it does
        full = sum(g.macs for g in kernel.gemms)
        cycles = sum(gemm_cycles(device, g, kernel.element_bytes) for g in kernel.gemms)
        compute_s = cycles * (kernel.macs / full) / device.clock / device.gemm_efficiency
    return compute_s, traffic_bytes(device, kernel)


def _gpu_compute(device: DeviceSpec, kernel: Kernel) -> tuple[float, int]:
    """A GPU (mcdla.hw.gpu): CTA tiles in waves; operand reuse is the L2's and the
    tiles', so the HBM traffic is the compulsory one."""
    return gpu.compute_seconds(device, kernel), kernel.bytes


# The compute model of each device kind, by DeviceSpec.compute_model: kernel ->
# (compute seconds, HBM bytes moved). The roofline, latency and launch cost around
# them are common (kernel_time).
COMPUTE_MODELS = {"pe_array": _pe_array_compute, "gpu": _gpu_compute}


def kernel_time(device: DeviceSpec, kernel: Kernel, nccl_hbm_Bps: float | None = None) -> KernelTiming:
    """Time of one kernel on ``device``: its compute model's GEMM time or a
    memory-bound stream, whichever is longer, plus latency and launch; ``nccl_hbm_Bps``
    given: beside NCCL's kernels taking that HBM bandwidth (and their SMs,
    :func:`mcdla.hw.gpu.nccl_contended`)."""
    compute_s, moved = COMPUTE_MODELS[device.compute_model](device, kernel)
    memory_s = moved / (device.effective_hbm_bw_Bps * kernel.stream)
    time_s = max(compute_s, memory_s) + device.hbm_latency + device.launch_overhead
    if nccl_hbm_Bps is not None:
        time_s = gpu.nccl_contended(device, time_s, moved / kernel.stream, device.hbm_latency + device.launch_overhead,
                                    nccl_hbm_Bps)
    bound = "compute" if (kernel.gemm is not None or kernel.gemms) and compute_s >= memory_s else "memory"
    attained = kernel.macs / time_s if time_s > 0 else 0.0
    return KernelTiming(
        time_s=time_s,
        macs=kernel.macs,
        bytes=moved,
        intensity=kernel.macs / moved if moved else math.inf,
        attained_macs_per_s=attained,
        utilization=attained / device.peak_macs_per_s,
        bound=bound,
    )


def layer_timings(device: DeviceSpec, layer: Layer, phase: str, batch: int, precision_bytes: int,
                  shards: int = 1) -> tuple[KernelTiming, ...]:
    """The timing of each kernel of ``layer`` in ``phase``, in launch order."""
    return tuple(kernel_time(device, k) for k in layer.kernels(phase, batch, precision_bytes, shards))


def layer_time(device: DeviceSpec, layer: Layer, phase: str, batch: int, precision_bytes: int,
               shards: int = 1, chunks: int = 1, nccl_hbm_Bps: float | None = None) -> float:
    """Seconds ``layer`` computes in ``phase`` (its kernels run one after another);
    ``chunks`` > 1: its forward and dX GEMMs in pieces (:func:`kernel_seconds`);
    ``nccl_hbm_Bps``: beside NCCL's kernels (:func:`kernel_time`)."""
    return sum(kernel_seconds(device, k, chunks, nccl_hbm_Bps)
               for k in layer.kernels(phase, batch, precision_bytes, shards))


def kernel_seconds(device: DeviceSpec, kernel: Kernel, chunks: int = 1, nccl_hbm_Bps: float | None = None) -> float:
    """Seconds of ``kernel`` (``nccl_hbm_Bps``: beside NCCL's kernels, :func:`kernel_time`);
    ``chunks`` > 1: a forward or dX GEMM split along its tokens
    (n) into that many GEMMs, one after another, as Transformer Engine's userbuffers run
    a GEMM beside its tensor-parallel communication (execution.tp_comm_overlap): each
    piece reads the whole weights (A) and its share of the rest. A weight-gradient GEMM
    (its K the tokens) and a memory-bound kernel stay whole."""
    g = kernel.gemm
    if chunks == 1 or g is None or kernel.operand_bytes is None or g.n % chunks or \
            not kernel.name.endswith((":fwd", ":dx")):
        return kernel_time(device, kernel, nccl_hbm_Bps).time_s
    a, b, c = kernel.operand_bytes
    piece = replace(kernel, macs=kernel.macs // chunks, bytes=a + (b + c) // chunks, gemm=replace(g, n=g.n // chunks),
                    operand_bytes=(a, b // chunks, c // chunks))
    return chunks * kernel_time(device, piece, nccl_hbm_Bps).time_s


def optimizer_step_time(device: DeviceSpec, workload, params: float, held: float | None = None,
                        impl: str = "fused", fp8_params: float = 0.0, nccl_hbm_Bps: float | None = None) -> float:
    """Seconds of the optimizer step over the ``params`` parameters a device updates
    (``held``: the gradients it holds, ``params`` by default; ``fp8_params``: the FP8
    weights it holds, :func:`mcdla.hw.fp8.copied_params`): its memory-bound passes one
    after another (:func:`mcdla.hw.memory.optimizer_passes`); 0 with no optimizer.
    ``nccl_hbm_Bps``: beside NCCL's kernels (:func:`kernel_time`)."""
    if params <= 0:
        return 0.0
    held = params if held is None else held
    count = {"updated": params, "held": held, "fp8": fp8_params}
    return sum(kernel_time(device, Kernel(f"optimizer:{name}", 0, math.ceil(count[over]) * per_param, None),
                           nccl_hbm_Bps).time_s
               for name, per_param, over in optimizer_passes(workload, impl, fp8_params))
