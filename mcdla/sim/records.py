"""What a simulated iteration records, typed: what summary, trace and invariants read.

Each component writes its own part: a device its :class:`Span` intervals (a kernel or
a transfer, each with its kind) and memory over time; a communicator its collectives
(each with its parallel axis); the driver assembles the :class:`IterationRecord`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from mcdla.config.execution import ExecutionSpec
from mcdla.hw.parallelism import TensorSplit, tensor_split
from mcdla.sim.collectives import CollectiveRecord
from mcdla.sim.expert import ExpertSplit
from mcdla.sim.flowstats import NetworkStats

__all__ = ["Span", "COMPUTE_KINDS", "TRANSFER_KINDS", "AXES", "DeviceRecord", "ClassRecords", "OffloadPlan",
           "RunInputs", "IterationRecord"]


class Span(NamedTuple):
    """A busy interval of a device: a kernel on its compute stream, or a transfer of its
    copy engines. ``kind`` says what it was, so summaries never parse ``label``."""

    start_s: float
    end_s: float
    label: str  # what people read: "fwd conv1", "offload relu3", "optimizer step"
    kind: str  # compute: fwd, bwd, recompute, step; copy engines: offload, prefetch


# Span kinds, by the stream that runs them.
COMPUTE_KINDS = ("fwd", "bwd", "recompute", "step")
TRANSFER_KINDS = ("offload", "prefetch")


# The parallel axes communication is counted on (``comm_s`` of a result): data,
# tensor (the paper's model-parallel mode included), pipeline and expert (the MoE
# all-to-alls; the experts' gradient reductions are data-parallel).
AXES = ("dp", "tp", "pp", "ep")


@dataclass
class DeviceRecord:
    """What one device did: busy intervals, memory over time, bytes it moved."""

    name: str
    compute: list[Span] = field(default_factory=list)  # its kernels
    virtualization: list[Span] = field(default_factory=list)  # its copy engines' transfers
    memory: list[tuple[float, float]] = field(default_factory=list)  # (time, bytes in use)
    memory_bytes: float = 0.0
    memory_peak_bytes: float = 0.0
    offloaded_bytes: float = 0.0
    prefetched_bytes: float = 0.0
    offloads: dict[int, int] = field(default_factory=dict)  # tensor -> times offloaded
    prefetches: dict[int, int] = field(default_factory=dict)  # tensor -> times prefetched
    prefetch_ready: dict[int, float] = field(default_factory=dict)  # tensor -> time in device memory
    backward_start: dict[int, float] = field(default_factory=dict)  # layer -> backward start time

    def allocate(self, now: float, size_bytes: float) -> None:
        self.memory_bytes += size_bytes
        self.memory_peak_bytes = max(self.memory_peak_bytes, self.memory_bytes)
        self.memory.append((now, self.memory_bytes))

    def free(self, now: float, size_bytes: float) -> None:
        self.memory_bytes -= size_bytes
        self.memory.append((now, self.memory_bytes))


class ClassRecords(Sequence):
    """Every device's record, by index, with rank symmetry: a simulated device's own, and
    another member's a copy of its class's first's under its own name, made when first
    asked (a 131,072-device ring simulates one device; copying its record to the others
    up front was a pass over every device that most runs never read)."""

    def __init__(self, names: Sequence[str], classes, own: dict[int, DeviceRecord]) -> None:
        self._names, self._own = names, dict(own)
        self._first = [0] * len(names)  # device -> its class's first
        for group in classes:
            for d in group:
                self._first[d] = group[0]

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, d):
        if isinstance(d, slice):
            return [self[i] for i in range(*d.indices(len(self)))]
        if d < 0:
            d += len(self)
        found = self._own.get(d)
        if found is None:
            if not 0 <= d < len(self):
                raise IndexError(d)
            found = self._own[d] = replace(self._own[self._first[d]], name=self._names[d])
        return found


@dataclass(frozen=True)
class OffloadPlan:
    """What the driver precomputes once per run (identical for every device)."""

    fwd_s: tuple[float, ...]
    bwd_s: tuple[float, ...]
    tensor_bytes: tuple[float, ...]  # what one device holds of each feature map
    offloaded: tuple[bool, ...]
    recomputed: tuple[bool, ...]
    last_fwd_use: tuple[int, ...]
    bwd_needs: tuple[tuple[int, ...], ...]  # layer -> tensors its backward reads
    bwd_order: tuple[int, ...]
    first_need: dict[int, int]  # offloaded tensor -> first backward step that needs it
    frees: tuple[tuple[int, ...], ...]  # backward step -> tensors last read by it
    read_in_bwd: frozenset[int]
    # Model-parallel: backward layer -> the tensors whose partial dX it completes (it is
    # their last consumer in backward order), reduce-scattered once per tensor.
    partial_dx: dict[int, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # (tensor, bytes)
    # Model-parallel: layer -> the tensors it reads whole, all-gathered before its forward
    # unless an earlier layer gathered them.
    gathers: dict[int, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # (tensor, bytes)
    step_s: float = 0.0  # the optimizer step over the weights one device updates
    tp: TensorSplit = field(default_factory=lambda: tensor_split((), 1))
    # weight group -> its weights' bytes on a device (its gradients': mcdla.hw.memory.gradient_bytes)
    group_bytes: dict[str, float] = field(default_factory=dict)
    group_full_bytes: tuple[float, ...] = ()  # feature map -> bytes whole over the tensor group
    weight_order: tuple[str, ...] = ()  # weight groups in forward order
    group_first: dict[str, int] = field(default_factory=dict)  # weight group -> its first layer
    group_last: dict[str, int] = field(default_factory=dict)  # weight group -> its last layer
    updated_params: float = 0.0  # the parameters this device's optimizer step updates
    # Tensor -> freed at its last forward use without an offload: recomputed, or never
    # read again while virtualizing (a map a policy keeps stays until backward frees it).
    dropped: tuple[bool, ...] = ()
    ep: ExpertSplit | None = None  # expert parallelism (mcdla.sim.expert); None without
    # Full checkpointing: layer -> the layers of its block rerun before its backward beyond
    # the recompute closure's (mcdla.sim.offload.replayed), their outputs not kept.
    replays: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # TP communication overlap: the layers whose tensor-parallel collectives run beside
    # their kernel, their GEMMs timed in pieces (mcdla.sim.tensor.overlapping); none without.
    overlapping: frozenset[int] = frozenset()
    # Feature map -> the bytes an element of it takes as a device holds it: the workload's
    # precision, but for the maps FP8 training keeps as Transformer Engine saves them
    # (mcdla.sim.plan.element_bytes); its gradient keeps the workload's precision.
    element_bytes: tuple[float, ...] = ()
    # (layer, phase, NCCL's HBM rate or None) -> the layer's seconds beside NCCL's kernels
    # taking that much of the HBM bandwidth (None: alone); layer None: the optimizer step
    # (mcdla.sim.plan.make_plan; mcdla.hw.gpu.nccl_contended). None: no such timing.
    beside_nccl: Callable[[int | None, str, float | None], float] | None = None

    def moved_bytes(self, tensor: int, element_bytes: float) -> float:
        """The bytes a collective moves carrying map ``tensor`` at ``element_bytes`` an
        element: its bytes on a device, rescaled from the bytes an element takes as held
        (the same but where FP8 training holds the map otherwise)."""
        return self.group_full_bytes[tensor] * (element_bytes / self.element_bytes[tensor])


@dataclass(frozen=True)
class RunInputs:
    """The three inputs of a run, as built: hardware, workload, execution."""

    topology: Any
    workload: Any
    execution: ExecutionSpec


@dataclass
class IterationRecord:
    """The outcome of one simulated iteration: what summary, trace and invariants read."""

    inputs: RunInputs
    iteration_time_s: float
    devices: Sequence[DeviceRecord]  # by device index (ClassRecords with rank symmetry)
    collectives: list[CollectiveRecord]
    store_peak_bytes: dict[str, float]
    store_end_bytes: dict[str, float]
    events: int
    network: NetworkStats
    capacities_Bps: dict[str, float]  # every resource of the flow network, reduction units too
    overload: tuple[float, str, float, float] | None
    timeline: dict[str, list[tuple[float, float]]] | None
    port_peak_Bps: dict[str, float]  # CPU socket DRAM port -> its peak load (Fig. 12)
    plan: OffloadPlan
    model_state_bytes: float
    virtualize: bool
    rings: dict = field(default_factory=dict)  # every ring a communicator used, by name
    device_state_bytes: tuple[float, ...] = ()  # per device, where stages hold different weights
    transfers: tuple = ()  # (path, bytes) besides collectives and feature maps: pipeline stages', model state's
    store_resident_bytes: dict = field(default_factory=dict)  # backing store -> what it keeps across iterations
    groups: dict = field(default_factory=dict)  # tensor/data groups and stages by device name (t or p > 1)
    # Classes of equivalent devices (rank symmetry), the first of each simulated; their
    # members' records are copies of the first's. Empty: every device its own class.
    rank_classes: tuple[tuple[int, ...], ...] = ()
    # A simulated communicator's ring names -> those of every group it stands for.
    equivalent_rings: dict = field(default_factory=dict)
    # Device -> what it ran (mcdla.sim.passes.DeviceWork: its schedule and passes).
    device_work: tuple[Any, ...] = ()
    # With rank symmetry: each resource of a class of more than one -> the class's first
    # (mcdla.hw.symmetry.Symmetry.resources); the invariants check channels per class.
    resource_classes: dict = field(default_factory=dict)
    # The translation whose orbits those classes are unions of (Symmetry.translation), or
    # None: a ring bound by period under it is checked by one period (mcdla.sim.invariants).
    class_orbits: Any = None
    # Its orbits of resources (Symmetry.orbits: each one's first member, its members), or ().
    resource_orbits: tuple = ()
    # (start, end) of each point-to-point send between pipeline stages (the pp axis).
    pipeline_sends: tuple[tuple[float, float], ...] = ()

    def distinct_devices(self):
        """(a device's index, its record, how many devices did the same): once per class."""
        if not self.rank_classes:
            return [(n, d, 1) for n, d in enumerate(self.devices)]
        return [(c[0], self.devices[c[0]], len(c)) for c in self.rank_classes]
