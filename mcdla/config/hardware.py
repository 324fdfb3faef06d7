"""Specifications of the hardware building blocks: device-node, memory-node, host, link.

Values come from presets (``topologies/presets/hardware.yaml``, paper Table II) that a
topology names and may override field by field. These are pure data; the models that
turn them into times live in :mod:`mcdla.hw`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from mcdla.config.schema import (
    Bandwidth,
    Fraction,
    Frequency,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Quantity,
    Size,
    Time,
)

__all__ = ["AttentionKernel", "AttentionRates", "DeviceSpec", "MemoryNodeSpec", "HostSpec", "LinkSpec", "SwitchSpec", "NvmeSpec"]

DeviceCycles = Annotated[float, Quantity("time", inclusive=True, clock="clock")]

# The fused attention kernels a device may hold measured rates for (its
# ``attention_kernels``; a run names one with training.attention_kernel; docs/model.md,
# "Attention by kernel"): flash2, FlashAttention-2 (Dao 2023; flash-attn 2.x, Transformer
# Engine's flash-attn backend); flash3, FlashAttention-3 (Shah et al. 2024; flash-attn's
# hopper build); cudnn, cuDNN's fused attention (Transformer Engine's FusedAttention,
# F16_arbitrary_seqlen). The loader refuses any other name (a Literal key).
AttentionKernel = Literal["flash2", "flash3", "cudnn"]


@dataclass(frozen=True)
class AttentionRates:
    """One fused attention kernel's measured rate on a device (mcdla.hw.gpu.attention_seconds):
    the fraction of peak at long sequences (forward, backward), the keys a query block
    visits at which each reaches half of it, and the query rows of one CTA. The
    defaults, the peak itself, are a device without a measurement (the paper's)."""

    efficiency: tuple[Fraction, Fraction] = (1.0, 1.0)
    half_seq: tuple[PositiveFloat, PositiveFloat] = (1.0, 1.0)
    block: PositiveInt = 128


@dataclass(frozen=True)
class DeviceSpec:
    """A device-node (paper Table II): a PE array with output-stationary GEMM and HBM."""

    pes: PositiveInt
    macs_per_pe: PositiveInt
    clock: Frequency
    sram_per_pe: Size
    hbm_bw: Bandwidth
    hbm_latency: DeviceCycles
    hbm_capacity: Size
    links: PositiveInt  # N high-bandwidth links; their bandwidth B is the link type's (links:)
    dma_engines: PositiveInt = 2
    # Achievable fractions measured by microbenchmarks (1 and 0: the paper's idealized
    # device): of hbm_bw by a stream kernel, of the peak MAC rate by a large GEMM; and
    # the fixed cost of launching one kernel.
    hbm_efficiency: Fraction = 1.0
    gemm_efficiency: Fraction = 1.0
    launch_overhead: Time = 0.0
    # A CUDA graph replayed (mcdla serve's serving.cuda_graphs): one launch of the whole
    # graph, then a device-side cost per kernel node in place of launch_overhead (None:
    # no graph measurement for the device).
    graph_launch_overhead: Time | None = None
    graph_node_overhead: Time | None = None
    # MAC lanes per PE for fp32 GEMMs where they differ from ``macs_per_pe`` (the
    # low-precision tensor lanes of a real GPU; None: one rate for every precision,
    # as the paper's device). Kernels on 2-byte elements use ``macs_per_pe``.
    fp32_macs_per_pe: PositiveInt | None = None
    # MAC lanes per PE for GEMMs on 1-byte (FP8) operands, weights and activations
    # both (Hopper's and later tensor cores: twice the 16-bit rate; None: the device
    # has none, an FP8 GEMM runs on the 16-bit lanes), and the fraction of that peak a
    # large FP8 GEMM attains (None: gemm_efficiency). mcdla.hw.gpu.gemm_rate chooses.
    fp8_macs_per_pe: PositiveInt | None = None
    fp8_gemm_efficiency: Fraction | None = None
    # How kernel times are computed (mcdla.hw.compute.COMPUTE_MODELS): ``pe_array``,
    # the paper's output-stationary array; ``gpu``, CTA tiles in waves over ``sms``
    # streaming multiprocessors and fused attention at its kernel's measured rate
    # (mcdla.hw.gpu). The gpu model reads the fields below; the PE array ignores them.
    compute_model: Literal["pe_array", "gpu"] = "pe_array"
    sms: PositiveInt | None = None
    gemm_tiles: tuple[tuple[PositiveInt, PositiveInt], ...] = ((128, 256), (128, 128))  # CTA tiles (Tm, Tn)
    # The time a CTA tile spends outside its main loop (filling its pipeline, storing its
    # C tile): the intercept of a GEMM's time per wave against K, from a per-shape
    # microbenchmark (mcdla.hw.gpu.gemm_seconds). With it, gemm_efficiency is the main
    # loop's fraction of peak (0: none, gemm_efficiency the ceiling of every GEMM).
    gemm_tile_overhead: Time = 0.0
    # Fused attention: the rates of each kernel the device measured, by name
    # (AttentionKernel), and the one a run uses when it names none (None: no kernel
    # measured; attention then runs at AttentionRates' defaults). A mapping, left out of
    # the hash (equality still compares it).
    attention_kernels: dict[AttentionKernel, AttentionRates] = field(default_factory=dict, hash=False)
    attention_kernel: AttentionKernel | None = None
    # cuDNN's rate for a 3x3 stride-1 convolution (Winograd's class, mcdla.hw.gpu.conv_class_seconds):
    # of the peak MAC rate, counted in the direct convolution's MACs (above 1 where Winograd
    # multiplies less), forward, backward-data, backward-filter; None: such a convolution
    # is its im2col GEMM at gemm_efficiency, as every other.
    conv3x3_efficiency: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    # cuDNN's rate for an ungrouped 1x1 convolution of any stride (ResNet's pointwise and
    # projection class), as above: forward, backward-data, backward-filter; None: its GEMM's.
    conv1x1_efficiency: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    # The same two classes on 4-byte elements of a device whose fp32 lanes are separate
    # (fp32_macs_per_pe): cuDNN runs other kernels there (a V100's FP32 Winograd beside its
    # tensor-core implicit GEMM), so each precision has its own measured rates, of its own
    # lanes' peak; None: such a convolution is its GEMM's.
    fp32_conv3x3_efficiency: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    fp32_conv1x1_efficiency: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    # SMs a running NCCL collective holds (one CTA per channel), taken from compute
    # started while it runs (mcdla.hw.gpu.sm_contended); 0: no contention.
    nccl_sms: NonNegativeInt = 0
    # CUDA compute capability (7.0 Volta, 8.0 Ampere, 9.0 Hopper): which of a
    # version's per-architecture constants NCCL uses (mcdla.hw.nccl.nccl_tuning).
    compute_capability: PositiveFloat | None = None

    def __post_init__(self):
        if self.compute_model == "gpu" and self.sms is None:
            raise ValueError("compute_model gpu needs sms (the streaming multiprocessors)")
        for name in ("fp32_conv3x3_efficiency", "fp32_conv1x1_efficiency"):
            if getattr(self, name) is not None and self.fp32_macs_per_pe is None:
                raise ValueError(f"{name} needs fp32_macs_per_pe (separate FP32 lanes); a device with one kind "
                                 f"of lanes gives its rates as {name[len('fp32_'):]}")
        if not (self.attention_kernel in self.attention_kernels
                or self.attention_kernel is None and not self.attention_kernels):
            raise ValueError(f"attention_kernel ({self.attention_kernel}) must name one of attention_kernels "
                             f"({', '.join(self.attention_kernels) or 'none'}): the kernel a run uses by default")
        if self.sms is not None and self.nccl_sms >= self.sms:
            raise ValueError(f"nccl_sms ({self.nccl_sms}) must be fewer than sms ({self.sms})")

    def lanes(self, element_bytes: int) -> int:
        """MAC lanes per PE for GEMMs on elements of ``element_bytes``."""
        if element_bytes >= 4 and self.fp32_macs_per_pe is not None:
            return self.fp32_macs_per_pe
        return self.macs_per_pe

    def attention_rates(self, kernel: str | None = None) -> AttentionRates:
        """The rates of fused attention kernel ``kernel`` (None: the device's default;
        AttentionRates' defaults on a device without any)."""
        name = kernel or self.attention_kernel
        return AttentionRates() if name is None else self.attention_kernels[name]

    @property
    def peak_macs_per_s(self) -> float:
        return self.pes * self.macs_per_pe * self.clock

    @property
    def effective_hbm_bw_Bps(self) -> float:
        return self.hbm_bw * self.hbm_efficiency


@dataclass(frozen=True)
class MemoryNodeSpec:
    """A memory-node (paper Section III-A): DIMMs behind a DMA engine and N links.

    Its links, DMA engine and DIMM bandwidth are split into ``groups`` equal shares,
    one per client device-node.
    """

    dimms: PositiveInt
    dimm_capacity: Size
    dimm_power_W: PositiveFloat
    mem_bw: Bandwidth
    clock: Frequency
    mem_latency: DeviceCycles
    links: PositiveInt  # N links; their bandwidth B is the link type's (links:)
    groups: PositiveInt = 2
    # The memory tier these nodes form (mcdla.hw.tiers): memory-nodes on the device
    # fabric, or CXL type-3 expanders behind PCIe switches (``cxl``).
    tier: Literal["memory_node", "cxl"] = "memory_node"

    @property
    def capacity_bytes(self) -> float:
        return self.dimms * self.dimm_capacity

    @property
    def power_W(self) -> float:
        return self.dimms * self.dimm_power_W


@dataclass(frozen=True)
class HostSpec:
    """The CPU sockets: host memory is the backing store of DC-DLA and HC-DLA."""

    sockets: PositiveInt
    socket_mem_bw: Bandwidth
    socket_mem_capacity: Size


@dataclass(frozen=True)
class NvmeSpec:
    """An NVMe SSD (a drive of the ``nvme`` memory tier): its capacity, the sequential
    rates its datasheet gives, which differ by direction (a drive writes slower than it
    reads), and its access latencies."""

    capacity: Size
    read_bw: Bandwidth
    write_bw: Bandwidth
    read_latency: Annotated[float, Quantity("time", inclusive=True)]
    write_latency: Annotated[float, Quantity("time", inclusive=True)]


@dataclass(frozen=True)
class LinkSpec:
    """One physical link type; full duplex, so each direction has ``bw`` on its own.

    ``efficiency`` is the fraction of the nominal bandwidth a bulk DMA attains
    (protocol overheads); the simulator uses ``bw * efficiency``.
    """

    bw: Bandwidth
    latency: Annotated[float, Quantity("time", inclusive=True)]
    efficiency: Fraction = 1.0
    # A device's host interface (PCIe, NVLink-C2C to its own CPU) is not one of its
    # ``device.links`` high-bandwidth links, so the link budget does not count it.
    host_interface: bool = False

    @property
    def effective_bw_Bps(self) -> float:
        return self.bw * self.efficiency


@dataclass(frozen=True)
class SwitchSpec:
    """A fabric switch (NVSwitch-like) that devices and memory-nodes link to.

    ``chips`` switch chips act as one non-blocking switch (DGX H100's four NVSwitch
    chips as one plane set): ``ports`` and ``reduction_bw`` are per chip. A port passes
    at most ``port_bw`` per direction, so a link through it is the slower of the two.
    ``reduction_bw`` is the in-switch reduction engine's throughput (NVLink SHARP:
    reduced bytes out per second); absent, the switch only forwards.
    """

    ports: PositiveInt
    port_bw: Bandwidth
    latency: Annotated[float, Quantity("time", inclusive=True)]
    reduction_bw: Bandwidth | None = None
    chips: PositiveInt = 1

    @property
    def total_ports(self) -> int:
        return self.ports * self.chips

    @property
    def reduction_Bps(self) -> float | None:
        return None if self.reduction_bw is None else self.reduction_bw * self.chips
