"""One training iteration over D device-nodes, as components that own SimPy processes.

- :class:`DeviceCompute`, one per device: computes its layers in order (forward, then
  backward in reverse), asks memory for room, hands feature maps to its DMA engines
  and joins collectives;
- :class:`DmaEngine`, one or two per device: moves feature maps between device memory
  and the backing store, one tensor at a time, in FIFO order;
- :class:`DeviceMemory`, one per device: a capacity whose allocations wait for room;
- :class:`BackingStores`: what each backing store holds, against its capacity;
- :class:`CollectiveStream`: the communicator; collectives run one at a time in
  launch order (one NCCL stream), each when every device has joined it, by the
  execution's collective algorithm.
Each component writes its own part of the typed :class:`IterationRecord`; the
summary, the trace and the invariants read that record, never the driver.

Data-parallel (paper Fig. 3(a)): each device holds the whole model and batch/D
samples; a weight group's dW is all-reduced as soon as every device has finished the
backward of the group's last layer, overlapping the rest of backward.
Model-parallel (Fig. 3(b), Krizhevsky-style): each device holds the whole batch and
1/D of every layer's output features; the input feature maps of each weighted layer
are all-gathered before its forward, and its partial dX is all-reduced after its
backward; dW stays local. Cheap layers run on the device's feature shard.

Memory virtualization: the execution's offload policy (:mod:`mcdla.sim.offload`;
vDNN offload-all by default) says which feature maps leave the device after their last
forward use; each is prefetched back ``lookahead`` layers ahead of the backward layer
that first needs it, and that layer waits for its prefetch. Recomputed maps are rebuilt
in backward from their nearest offloaded ancestors, charged to compute.

The components decide *when*; how long a kernel takes comes from
:mod:`mcdla.hw.compute` and how long a transfer takes from the flow network.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import simpy

from mcdla.config.execution import ExecutionSpec
from mcdla.errors import InfeasibleError, InputError
from mcdla.hw.compute import layer_time, optimizer_step_time
from mcdla.hw.fusion import inplace_workload
from mcdla.hw.memory import model_state_bytes, optimizer_state_bytes, step_bytes_per_param, with_precision
from mcdla.hw.network import p2p_paths, reduce_unit, sub_ring
from mcdla.hw.parallelism import TensorSplit, device_share, tensor_split
from mcdla.hw.symmetry import Symmetry, line_up, rank_classes
from mcdla.sim.collectives import COLLECTIVES, CollectiveRecord
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork, NetworkStats
from mcdla.sim.invariants import check_iteration
from mcdla.sim.liveness import FIT_SLACK, backward_needs, closure, schedule
from mcdla.sim.offload import OFFLOADS

__all__ = ["Iteration", "IterationRecord", "DeviceRecord", "OffloadPlan", "RunInputs",
           "DeviceMemory", "DmaEngine", "BackingStores", "CollectiveStream", "DeviceCompute"]

# The label of a kernel that rebuilds a feature map in backward (summaries count them).
RECOMPUTE = "recompute "

# Collective algorithms whose flows treat every rank of a ring alike (rank symmetry
# holds for them, tested against exact runs); a tree singles out its root. (In-switch
# reduction was once excluded after the channel-byte invariant caught uneven loads; with
# the refinement seeing every link a ring's switch algorithms take, it holds, tested.)
# NCCL's tuner may pick a tree across machines: ``nccl`` is symmetric only where it cannot
# (nccl_collectives.picks_a_tree).
SYMMETRIC_COLLECTIVES = ("ring", "nccl", "nccl_ring", "nvls", "direct", "hierarchical", "in_switch")

# ZeRO-Offload's state moves through device buffers of this size: DeepSpeed's
# offload_optimizer.buffer_size default, 1e8 fp32 elements.
OPTIMIZER_CHUNK_BYTES = 4e8


@dataclass
class DeviceRecord:
    """What one device did: busy intervals, memory over time, bytes it moved."""

    name: str
    compute: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, kernel)
    virtualization: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, transfer)
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


@dataclass(frozen=True)
class OffloadPlan:
    """What the driver precomputes once per run (identical for every device)."""

    fwd_s: tuple[float, ...]
    bwd_s: tuple[float, ...]
    tensor_bytes: tuple[float, ...]  # what one device holds of each feature map
    full_bytes: tuple[float, ...]  # the whole feature map, over the whole batch
    offloaded: tuple[bool, ...]
    recomputed: tuple[bool, ...]
    last_fwd_use: tuple[int, ...]
    bwd_needs: tuple[tuple[int, ...], ...]  # layer -> tensors its backward reads
    bwd_order: tuple[int, ...]
    first_need: dict[int, int]  # offloaded tensor -> first backward step that needs it
    frees: tuple[tuple[int, ...], ...]  # backward step -> tensors last read by it
    read_in_bwd: frozenset[int]
    # Model-parallel: backward layer -> the tensors whose partial dX it completes (it is
    # their last weighted consumer in backward order), all-reduced once per tensor.
    partial_dx: dict[int, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # (tensor, bytes)
    step_s: float = 0.0  # the optimizer step over the weights one device updates
    tp: TensorSplit = field(default_factory=lambda: tensor_split((), 1))
    group_bytes: dict[str, float] = field(default_factory=dict)  # weight group -> its gradient bytes on a device
    group_full_bytes: tuple[float, ...] = ()  # feature map -> bytes whole over the tensor group
    weight_order: tuple[str, ...] = ()  # weight groups in forward order
    group_first: dict[str, int] = field(default_factory=dict)  # weight group -> its first layer
    group_last: dict[str, int] = field(default_factory=dict)  # weight group -> its last layer
    updated_params: float = 0.0  # the parameters this device's optimizer step updates
    # Tensor -> freed at its last forward use without an offload: recomputed, or never
    # read again while virtualizing (a map a policy keeps stays until backward frees it).
    dropped: tuple[bool, ...] = ()


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
    devices: list[DeviceRecord]
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

    def distinct_devices(self):
        """(a device's index, its record, how many devices did the same): once per class."""
        if not self.rank_classes:
            return [(n, d, 1) for n, d in enumerate(self.devices)]
        return [(c[0], self.devices[c[0]], len(c)) for c in self.rank_classes]


class DeviceMemory:
    """One device's memory: a capacity whose allocations wait for room, as vDNN stalls.

    Not a ``simpy.Container``: a Container serves waiting puts strictly in order, so a
    large waiting allocation would block a smaller one that fits; here every waiter
    retries on each free, in the order it started waiting, and takes room if it fits.
    """

    def __init__(self, env: simpy.Environment, record: DeviceRecord, capacity_bytes: float):
        self.env, self.record, self.capacity_bytes = env, record, capacity_bytes
        self._room: simpy.Event | None = None
        self.waiting: dict[str, float] = {}  # what waits for room -> bytes asked

    def hold(self, size_bytes: float) -> None:
        """Allocates at once (the resident model state and the input batch)."""
        self.record.allocate(self.env.now, size_bytes)

    def reserve(self, size_bytes: float, what: str):
        """Allocates ``size_bytes``, waiting until they fit (a generator to yield from)."""
        record = self.record
        while record.memory_bytes + size_bytes > self.capacity_bytes * (1 + FIT_SLACK):
            if self._room is None:
                self._room = self.env.event()
            self.waiting[what] = size_bytes
            yield self._room
        self.waiting.pop(what, None)
        record.allocate(self.env.now, size_bytes)

    def free(self, size_bytes: float) -> None:
        self.record.free(self.env.now, size_bytes)
        room, self._room = self._room, None
        if room is not None:
            room.succeed()


class BackingStores:
    """What every backing store holds while the iteration runs, against its capacity."""

    def __init__(self, topology, classes: dict[str, str] | None = None):
        self.topology = topology
        # Rank symmetry: a store stands for its class (store -> the class's first); what
        # ``copies`` devices put in stores of a class of k is ``copies / k`` per store.
        self.classes = classes or {}
        self._size: dict[str, int] = {}
        for first in self.classes.values():
            self._size[first] = self._size.get(first, 0) + 1
        self.used: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.resident: dict[str, float] = {}  # what stays across iterations (ZeRO-Offload's state)
        self.moved: list[tuple[tuple[str, ...], float]] = []  # (path, bytes) of model-state transfers

    def _in(self, store: str, size_bytes: float, copies: int) -> tuple[str, float]:
        """The store that stands for ``store`` and what each of its class receives."""
        first = self.classes.get(store, store)
        if copies == 1 and first == store:
            return store, size_bytes
        return first, size_bytes * copies / self._size.get(first, 1)

    def hold(self, store: str, size_bytes: float, copies: int = 1) -> None:
        """Stores ``size_bytes`` for good (it is there when the iteration starts and ends)."""
        self.add(store, size_bytes, copies)
        store, size_bytes = self._in(store, size_bytes, copies)
        self.resident[store] = self.resident.get(store, 0.0) + size_bytes

    def add(self, store: str, size_bytes: float, copies: int = 1) -> None:
        store, size_bytes = self._in(store, size_bytes, copies)
        used = self.used.get(store, 0.0) + size_bytes
        capacity = self.topology.memory_capacity(store)
        if used > capacity * (1 + FIT_SLACK):
            raise InfeasibleError(
                f"backing store {store} would hold {used:.4g} bytes, over its capacity of "
                f"{capacity:.4g} bytes"
            )
        self.used[store] = used
        self.peak[store] = max(self.peak.get(store, 0.0), used)

    def remove(self, store: str, size_bytes: float, copies: int = 1) -> None:
        store, size_bytes = self._in(store, size_bytes, copies)
        self.used[store] -= size_bytes

    def expanded(self, by_store: dict[str, float]) -> dict[str, float]:
        """``by_store`` for every store, members of a class included, sorted by name."""
        if not self.classes:
            return dict(sorted(by_store.items()))
        members = [s for s, first in self.classes.items() if first in by_store]
        out = {s: by_store[self.classes[s]] for s in members}
        out.update((s, v) for s, v in by_store.items() if s not in self.classes)
        return dict(sorted(out.items()))


class DmaEngine:
    """One copy engine of a device: serves transfers in FIFO order, one tensor at a time.

    An offload moves a feature map to the backing store and frees its device memory; a
    prefetch first reserves room, then moves it back. ``gate`` (a prefetch's offload)
    must have finished before a transfer starts.
    """

    def __init__(self, env, net: FlowNetwork, inputs: RunInputs, device: int, memory: DeviceMemory,
                 stores: BackingStores, plan: OffloadPlan, copies: int = 1):
        self.env, self.net, self.inputs, self.device = env, net, inputs, device
        self.memory, self.stores, self.plan = memory, stores, plan
        self.copies = copies  # the devices this one stands for (rank symmetry)
        self.name = inputs.topology.devices[device]
        self._queue: simpy.Store = simpy.Store(env)
        env.process(self._serve())

    def submit(self, tensor: int, direction: str, gate: simpy.Event | None = None) -> simpy.Event:
        """Queues a transfer; the returned event fires when it is done."""
        done = self.env.event()
        self._queue.put((tensor, direction, gate, done))
        return done

    def _serve(self):
        record = self.memory.record
        plan, layers = self.plan, self.inputs.workload.layers
        while True:
            tensor, direction, gate, done = yield self._queue.get()
            if gate is not None:
                yield gate
            size = plan.tensor_bytes[tensor]
            if direction == "prefetch":
                yield from self.memory.reserve(size, f"the prefetch of {layers[tensor].name}")
            yield from self._move(tensor, direction)
            if direction == "offload":
                self.memory.free(size)
                record.offloads[tensor] = record.offloads.get(tensor, 0) + 1
                record.offloaded_bytes += size
            else:
                record.prefetches[tensor] = record.prefetches.get(tensor, 0) + 1
                record.prefetched_bytes += size
                record.prefetch_ready[tensor] = self.env.now
            done.succeed()

    def _move(self, tensor: int, direction: str):
        """Moves one feature map between device memory and the backing store; a
        compressing DMA engine (cDMA) moves and stores it ``training.compression`` times
        smaller, and restores it whole in device memory."""
        size = self.plan.tensor_bytes[tensor] / self.inputs.execution.training.compression
        routes = self.inputs.topology.backing_routes(self.name, self.inputs.execution.policy, direction)
        start = self.env.now
        if direction == "offload":
            for sub in routes:
                self.stores.add(sub.store, sub.share * size, self.copies)
        yield self.env.all_of(stripe(self.net, routes, size, f"{direction}/{self.name}/{tensor}",
                                     copies=self.copies))
        self.memory.record.virtualization.append(
            (start, self.env.now, f"{direction} {self.inputs.workload.layers[tensor].name}"))
        if direction == "prefetch":
            for sub in routes:
                self.stores.remove(sub.store, sub.share * size, self.copies)


def stripe(net: FlowNetwork, routes, size_bytes: float, tag: str, ports_only: bool = False,
           log: list | None = None, copies: int = 1) -> list[simpy.Event]:
    """Starts ``size_bytes`` over a device's backing-store routes, one flow per stripe
    at its share (``ports_only``: through the stores' memory ports alone, a pass over
    data already there); ``log`` collects (path, bytes) for the invariants. ``copies``:
    the devices of a class doing the same (rank symmetry)."""
    flows = []
    for sub in routes:
        path = sub.path[-1:] if ports_only else sub.path
        if log is not None:
            log.append((path, sub.share * size_bytes))
        flows.append(net.transfer(sub.share * size_bytes, path, 0.0 if ports_only else sub.latency_s, tag=tag,
                                  copies=copies))
    return flows


class CollectiveStream:
    """A communicator: collectives of one group of devices, in launch order, one at a time.

    Every device of the group calls :meth:`join` for the same collective; the last
    arrival queues it, and the stream runs it over the group's ``rings`` (all the
    topology's rings, or their restriction to a tensor- or data-parallel group) with
    the execution's collective algorithm. Communicators of different groups run
    concurrently, sharing the network.
    """

    def __init__(self, env, net: FlowNetwork, inputs: RunInputs, reduce_Bps: float, rings=None,
                 devices: int | None = None, *, weights: dict[int, int] | None = None, copies: int = 1):
        self.env, self.net, self.inputs, self.reduce_Bps = env, net, inputs, reduce_Bps
        # Rank symmetry: a simulated device's join counts for the devices of its class in
        # the group (``weights``), and the collectives stand for ``copies`` alike groups.
        self.weights, self.copies = weights or {}, copies
        self.devices = len(inputs.topology.devices) if devices is None else devices
        self.rings = inputs.topology.rings if rings is None else rings
        launch_s = inputs.topology.device.launch_overhead
        self.algorithm = COLLECTIVES.get(inputs.execution.collective, key="execution.collective")(launch_s)
        # A group's communicator whose rings the algorithm cannot run (hierarchical on a
        # group spread unevenly over the nodes, direct on rings between nodes) runs the
        # ring, as NCCL picks per communicator; the design's own rings are refused instead.
        self.fallback = ""
        if rings is not None:
            try:  # (no algorithm's check depends on the operation but the tree's, stricter for all-reduce)
                self.algorithm.check("all_reduce", self.rings, net.capacities_Bps)
            except InputError:
                self.fallback = "ring"
                self.algorithm = COLLECTIVES.get("ring")(launch_s)
        self.records: list[CollectiveRecord] = []
        self._queue: simpy.Store = simpy.Store(env)
        self._barriers: dict[tuple, list] = {}  # collective key -> [devices arrived, done event]
        env.process(self._serve())

    def join(self, key: tuple, op: str, size_bytes: float, device: int | None = None) -> simpy.Event:
        """``device`` joins a collective (with symmetry, for the devices of its class here)."""
        if key not in self._barriers:
            self._barriers[key] = [0, self.env.event()]
        barrier = self._barriers[key]
        barrier[0] += self.weights.get(device, 1)
        done = barrier[1]
        if barrier[0] == self.devices:
            if self.devices == 1 or size_bytes <= 0:
                done.succeed()
            else:
                self._queue.put((op, size_bytes, done, "/".join(map(str, key))))
        return done

    def unfinished(self) -> bool:
        return any(not event.triggered for _, event in self._barriers.values())

    def _serve(self):
        chunk = self.inputs.execution.training.chunk
        while True:
            op, size_bytes, done, label = yield self._queue.get()
            kwargs = {"reduce_Bps": self.reduce_Bps, "tag": label}
            if self.copies > 1:
                kwargs["copies"] = self.copies
            if chunk is not None:
                kwargs["chunk_bytes"] = chunk
            record = yield self.algorithm.start(self.env, self.net, self.rings, op, size_bytes, **kwargs)
            self.records.append(replace(record, algorithm=self.fallback) if self.fallback else record)
            done.succeed()


class DeviceCompute:
    """One device's compute stream: forward, then backward, over the plan."""

    def __init__(self, env, net: FlowNetwork, inputs: RunInputs, device: int, plan: OffloadPlan,
                 memory: DeviceMemory, stores: BackingStores, stream: CollectiveStream,
                 model_state_bytes: float, virtualize: bool, tensor_stream: CollectiveStream | None = None,
                 members: tuple[int, ...] = ()):
        self.env, self.net, self.inputs, self.device, self.plan = env, net, inputs, device, plan
        # Rank symmetry: the devices of this one's class (it first), which do what it does.
        self.members = members or (device,)
        self.copies = len(self.members)
        # ``stream``: the data-parallel group's communicator (every device, without
        # tensor parallelism); ``tensor_stream``: the tensor-parallel group's.
        self.memory, self.stores, self.stream, self.tensor_stream = memory, stores, stream, tensor_stream
        self.model_state_bytes, self.virtualize = model_state_bytes, virtualize
        groups: dict[str, int] = {}
        for layer in inputs.workload.layers:
            if layer.weight_group is not None:
                groups[layer.weight_group] = groups.get(layer.weight_group, 0) + 1
        self._groups_left = groups
        self._reductions: list[simpy.Event] = []  # the gradient all-reduces this device joined
        self._bucket: list[str] = []  # weight groups waiting in the open bucket
        self._bucket_bytes = 0.0
        # ZeRO 2 and 3 keep 1/dp of the gradients: a reduce-scatter leaves each its shard.
        self._gradient_op = "reduce_scatter" if inputs.execution.zero >= 2 else "all_reduce"
        self.process = env.process(self._run())

    def _gather_weights(self, group: str, phase: str):
        """ZeRO-3: all-gathers a weight group's shards into a buffer (the event, which
        fires when the weights are whole); the buffer is freed by :meth:`_drop_weights`.
        With the weights in the backing store (ZeRO-Infinity), each device first fetches
        its shard from there, while the compute goes on."""
        size = self.plan.group_bytes[group]
        yield from self.memory.reserve(size, f"the gathered weights of {group}")
        if not self.inputs.execution.offload_params:
            return self.stream.join(("W", phase, group), "all_gather", size, device=self.device)

        def fetch_then_gather():
            yield from self._to_store(size / self.stream.devices, "prefetch", f"weights of {group} in")
            yield self.stream.join(("W", phase, group), "all_gather", size, device=self.device)

        return self.env.process(fetch_then_gather())

    def _weights_ready(self, group: str, phase: str, order: tuple, weights: dict):
        """ZeRO-3: waits for ``group``'s weights, gathering them and, one ahead, the next
        group's in ``order`` (``weights``: the gathers issued in this pass)."""
        k = order.index(group)
        for g in order[k:k + 2]:
            if g not in weights:
                weights[g] = yield from self._gather_weights(g, phase)
        yield weights[group]

    def _drop_weights(self, group: str) -> None:
        self.memory.free(self.plan.group_bytes[group])

    # Tensor parallelism around layer i (hw/parallelism.tensor_split); ``tag`` tells
    # apart the micro-batches of a pipeline.
    def _tp_before_forward(self, i: int, tag: tuple = ()):
        plan = self.plan
        for p in plan.tp.gathers.get(i, ()):  # split inputs the layer needs whole
            yield self.tensor_stream.join(("tp-gather", *tag, i, p), "all_gather", plan.group_full_bytes[p], device=self.device)

    def _tp_after_forward(self, i: int, tag: tuple = ()):
        plan = self.plan
        if i in plan.tp.reduce_out:  # a row-parallel layer's partial output, summed over the group
            yield self.tensor_stream.join(("tp-out", *tag, i), plan.tp.out_op(), plan.group_full_bytes[i], device=self.device)

    def _tp_before_backward(self, i: int, tag: tuple = ()):
        plan = self.plan
        if plan.tp.sequence and i in plan.tp.reduce_out:  # dY arrives as token shards
            yield self.tensor_stream.join(("tp-dY", *tag, i), "all_gather", plan.group_full_bytes[i], device=self.device)

    def _tp_after_backward(self, i: int, tag: tuple = ()):
        plan = self.plan
        for p in plan.tp.partial_dx.get(i, ()):  # column-parallel consumers' partial dX, summed
            yield self.tensor_stream.join(("tp-dX", *tag, p), plan.tp.dx_op(p), plan.group_full_bytes[p], device=self.device)

    def _offloaded_step(self):
        """ZeRO-Offload's step where the optimizer state lives (docs/model.md)."""
        workload, topology = self.inputs.workload, self.inputs.topology
        params = self.plan.updated_params
        # With the weights in the backing store too (ZeRO-Infinity), the gradients are
        # already there and the updated weights stay there.
        in_store = self.inputs.execution.offload_params
        if topology.backing == "host":
            if not in_store:
                yield from self._to_store(params * workload.precision_bytes, "offload", "gradients to the host")
            # The CPU's step is a memory-bound pass over the state in its socket's DRAM:
            # a flow on the DRAM port, which every device that socket serves shares.
            yield from self._to_store(params * step_bytes_per_param(workload), "offload", "optimizer step on the host",
                                      ports_only=True)
            if not in_store:
                yield from self._to_store(params * workload.precision_bytes, "prefetch", "weights from the host")
            return
        # Memory-nodes have no processor: the state (and, ZeRO-Infinity, the gradient in
        # and the updated weights out) comes to the device in chunks, each stepped while
        # the next arrives and the last goes back (double-buffered).
        state = optimizer_state_bytes(workload, params) + (params * workload.precision_bytes if in_store else 0.0)
        chunks = max(1, math.ceil(state / OPTIMIZER_CHUNK_BYTES))
        size, step_s = state / chunks, self.plan.step_s / chunks
        env = self.env

        def fetch(k):
            yield from self.memory.reserve(size, f"optimizer state chunk {k}")
            yield from self._to_store(size, "prefetch", "optimizer state in")

        def write_back():
            yield from self._to_store(size, "offload", "optimizer state out")
            self.memory.free(size)

        arriving = env.process(fetch(0))
        written = []
        for k in range(chunks):
            yield arriving
            if k + 1 < chunks:
                arriving = env.process(fetch(k + 1))
            yield from self._compute(step_s, "optimizer step")
            written.append(env.process(write_back()))
        yield env.all_of(written)

    def _to_store(self, size_bytes: float, direction: str, label: str, ports_only: bool = False):
        """Moves ``size_bytes`` between this device and its backing stores, striped as
        feature maps are (or, ``ports_only``, streams them through the stores' memory)."""
        topology, execution = self.inputs.topology, self.inputs.execution
        routes = topology.backing_routes(topology.devices[self.device], execution.policy, direction)
        start = self.env.now
        moved = self.stores.moved
        for other in self.members[1:]:  # the class's other devices move the same over their routes
            for sub in topology.backing_routes(topology.devices[other], execution.policy, direction):
                moved.append((sub.path[-1:] if ports_only else sub.path, sub.share * size_bytes))
        yield self.env.all_of(stripe(self.net, routes, size_bytes, f"{label}/{self.device}", ports_only,
                                     moved, self.copies))
        if not ports_only:  # the device's copy engines are busy; the host's step is not the device's
            self.memory.record.virtualization.append((start, self.env.now, label))

    def _gradient_ready(self, group: str, size_bytes: float) -> None:
        """A weight group's gradient is complete: all-reduced at once (the paper's), or
        added to the open bucket, which is all-reduced once it reaches the bucket size."""
        bucket = self.inputs.execution.training.bucket
        if bucket is None:
            self._reductions.append(self._reduce_gradient(("dW", group), size_bytes))
            return
        self._bucket.append(group)
        self._bucket_bytes += size_bytes
        if self._bucket_bytes >= bucket:
            self._flush_bucket()

    def _flush_bucket(self) -> None:
        if self._bucket:
            key = ("bucket", *self._bucket)  # the same groups in the same order on every device
            self._reductions.append(self._reduce_gradient(key, self._bucket_bytes))
            self._bucket, self._bucket_bytes = [], 0.0

    def _reduce_gradient(self, key: tuple, size_bytes: float) -> simpy.Event:
        """Joins a gradient reduction; with the weights in the backing store, the
        device's reduced shard then goes there (the event fires when it has)."""
        reduced = self.stream.join(key, self._gradient_op, size_bytes, device=self.device)
        if not self.inputs.execution.offload_params:
            return reduced

        def then_store():
            yield reduced
            yield from self._to_store(size_bytes / self.stream.devices, "offload", "gradients out")

        return self.env.process(then_store())

    def _compute(self, duration_s: float, label: str):
        if duration_s > 0:
            start = self.env.now
            yield self.env.timeout(duration_s)
            self.memory.record.compute.append((start, self.env.now, label))

    def _run(self):
        plan, env, memory = self.plan, self.env, self.memory
        workload, execution = self.inputs.workload, self.inputs.execution
        layers, training = workload.layers, execution.training
        record = memory.record
        model = execution.parallel == "model"
        engine_args = (env, self.net, self.inputs, self.device, memory, self.stores, plan, self.copies)
        offloader = DmaEngine(*engine_args)
        prefetcher = offloader if self.inputs.topology.device.dma_engines < 2 else DmaEngine(*engine_args)
        offloaded_done: dict[int, simpy.Event] = {}

        # Forward.
        memory.hold(self.model_state_bytes)  # resident for the whole iteration
        memory.hold(plan.tensor_bytes[0])  # the input batch
        gathered: set[int] = {0}  # every device loads the whole input batch
        zero3 = execution.zero == 3 and self.stream.devices > 1
        weights = {}  # ZeRO-3: weight group -> its gather, issued one group ahead
        order = plan.weight_order
        for i in range(1, len(layers)):
            layer = layers[i]
            if model and layer.weighted:  # a GEMM reads all input features; BN stays on its shard
                for p in layer.inputs:
                    if p not in gathered:
                        gathered.add(p)
                        yield self.stream.join(("fwd", p), "all_gather", plan.full_bytes[p], device=self.device)
            yield from self._tp_before_forward(i)
            group = layer.weight_group
            if zero3 and group is not None and plan.group_first[group] == i:
                yield from self._weights_ready(group, "fwd", order, weights)
            # The output buffer exists while the layer computes.
            yield from memory.reserve(plan.tensor_bytes[i], f"the output of {layer.name}")
            yield from self._compute(plan.fwd_s[i], f"fwd {layer.name}")
            if zero3 and group is not None and plan.group_last[group] == i:
                self._drop_weights(group)
            yield from self._tp_after_forward(i)
            for p in (*layer.inputs, i):
                if plan.last_fwd_use[p] != i:
                    continue
                if plan.offloaded[p]:
                    offloaded_done[p] = offloader.submit(p, "offload")
                elif plan.dropped[p]:  # recomputed in backward, or never read again
                    memory.free(plan.tensor_bytes[p])

        # Backward.
        prefetched: dict[int, simpy.Event] = {}
        pending = deque(sorted(plan.first_need, key=lambda t: (plan.first_need[t], t)))
        recomputed: set[int] = set()  # recomputed tensors held for backward

        def issue_prefetches(step: int) -> None:
            while pending and plan.first_need[pending[0]] <= step + training.lookahead:
                t = pending.popleft()
                prefetched[t] = prefetcher.submit(t, "prefetch", offloaded_done[t])

        weights = {}
        order = order[::-1]
        for step, i in enumerate(plan.bwd_order):
            issue_prefetches(step)
            group = layers[i].weight_group
            if zero3 and group is not None and plan.group_last[group] == i:
                yield from self._weights_ready(group, "bwd", order, weights)
            for t in reversed(closure(plan.bwd_needs[i], layers, plan.recomputed)):
                if plan.offloaded[t]:
                    yield prefetched[t]
                elif plan.recomputed[t] and t not in recomputed:
                    recomputed.add(t)
                    yield from memory.reserve(plan.tensor_bytes[t], f"the recompute of {layers[t].name}")
                    yield from self._compute(plan.fwd_s[t], f"{RECOMPUTE}{layers[t].name}")
            if model and training.regather and layers[i].weight_group is not None:
                for p in layers[i].inputs:
                    if p != 0:
                        yield self.stream.join(("regather", i, p), "all_gather", plan.full_bytes[p], device=self.device)
            yield from self._tp_before_backward(i)
            record.backward_start[i] = env.now
            yield from self._compute(plan.bwd_s[i], f"bwd {layers[i].name}")
            for t in plan.frees[step]:
                memory.free(plan.tensor_bytes[t])  # in memory now: prefetched, recomputed or kept
            if zero3 and group is not None and plan.group_first[group] == i:
                self._drop_weights(group)
            yield from self._tp_after_backward(i)
            if model:
                # Each weighted consumer leaves a partial dX of its input; the partials
                # of all consumers are summed locally and the tensor's dX is all-reduced
                # once, after its last weighted consumer's backward.
                for p, size in plan.partial_dx.get(i, ()):
                    yield self.stream.join(("dX", p), "all_reduce", size, device=self.device)
            elif group is not None:
                self._groups_left[group] -= 1
                if self._groups_left[group] == 0:
                    self._gradient_ready(group, plan.group_bytes[group])
        if not model:
            self._flush_bucket()
        if self.plan.step_s > 0 or execution.zero in (1, 2):
            # The optimizer step updates every weight once all its gradients are reduced.
            yield env.all_of(self._reductions)
            if execution.offload_optimizer:
                yield from self._offloaded_step()
            else:
                yield from self._compute(self.plan.step_s, "optimizer step")
        if execution.zero in (1, 2):
            # Each device updated its 1/dp of the weights: all-gather them for the next iteration.
            yield self.stream.join(("W", "step"), "all_gather", sum(plan.group_bytes.values()), device=self.device)
        if not self.virtualize:
            # Without virtualization, maps that backward never reads are dropped at the end.
            for t in range(len(layers)):
                if t not in plan.read_in_bwd and not plan.dropped[t]:
                    memory.free(plan.tensor_bytes[t])


def make_plan(inputs: RunInputs, virtualize: bool, micro_batch: int | None = None,
              dp: int | None = None) -> OffloadPlan:
    """The per-layer times and the offload plan, identical for every device: of one
    replica's share of the batch, or (pipelines) of one ``micro_batch`` of samples on a
    stage, ``dp`` data-parallel replicas sharing the optimizer state under ZeRO."""
    topology, workload, execution = inputs.topology, inputs.workload, inputs.execution
    layers = workload.layers
    prec = workload.precision_bytes
    devices = len(topology.devices)
    degree = execution.tensor_parallel
    if micro_batch is None:
        local_batch, shards = device_share(execution.parallel, execution.batch, devices // degree)
    else:  # a pipeline stage's pass (data-parallel training)
        local_batch, shards = micro_batch, 1
    tp = tensor_split(layers, degree, execution.sequence_parallel)
    layer_shards = tp.shards if degree > 1 else (shards,) * len(layers)
    device = topology.device
    fwd = tuple(0.0 if i == 0 else layer_time(device, l, "fwd", local_batch, prec, layer_shards[i])
                for i, l in enumerate(layers))
    bwd = tuple(0.0 if i == 0 else layer_time(device, l, "bwd", local_batch, prec, layer_shards[i])
                for i, l in enumerate(layers))
    # The bytes of each feature map a device holds: batch/D samples in data-parallel
    # training; in model-parallel training, the whole batch but 1/D of the output
    # features (docs/model.md), except the input batch, which every device loads whole.
    full_bytes = tuple(float(l.out_elems_per_sample * execution.batch * prec) for l in layers)
    group_full = tuple(float(l.out_elems_per_sample * local_batch * prec) for l in layers)
    if execution.parallel == "model":
        tensor_bytes = (full_bytes[0],) + tuple(b / devices for b in full_bytes[1:])
    else:  # batch/D samples; a tensor-parallel rank holds 1/t of each split map
        tensor_bytes = tuple(b / degree if tp.split[i] else b for i, b in enumerate(group_full))
    group_params = device_group_params(workload, layer_shards)
    if dp is None:
        dp = devices // degree if execution.parallel == "data" else 1
    policy = OFFLOADS.get(execution.offload, key="execution.offload")()
    decision = policy.decide(layers, virtualize=virtualize, recompute_cheap=execution.training.recompute_cheap,
                             checkpoint=execution.training.checkpoint, lookahead=execution.training.lookahead,
                             tensor_bytes=tensor_bytes, fwd_s=fwd, bwd_s=bwd, memory_bytes=topology.device_memory_bytes,
                             resident_bytes=device_model_state(workload, execution, devices, group_params),
                             dma_Bps=topology.virtualization_rate_Bps(execution.policy) if virtualize else 0.0)
    recomputed, offloaded = decision.recomputed, decision.offloaded
    bwd_needs = backward_needs(layers)
    bwd_order = tuple(range(len(layers) - 1, 0, -1))
    sched = schedule(layers, recomputed)  # when each map is used (the policies' derivation too)
    last_fwd_use, last_bwd_use = sched.last_fwd_use, sched.last_bwd_use
    first_need = {t: s for t, s in sched.first_bwd_use.items() if offloaded[t]}
    frees: list[list[int]] = [[] for _ in bwd_order]
    for t, step in sorted(last_bwd_use.items()):
        frees[step].append(t)
    partial_dx: dict[int, list[tuple[int, float]]] = {}
    if execution.parallel == "model":
        # Only a GEMM's dX (W^T dY over sharded output features) is a partial sum; a
        # per-channel layer (batch norm, element-wise) computes its dX on its shard.
        completes: dict[int, tuple[int, int]] = {}  # tensor -> (last GEMM consumer, dX elements)
        for i in bwd_order:
            low = layers[i].lowering
            if low is not None and low.dx_elems:
                for p in layers[i].inputs:
                    if p != 0:  # the input batch needs no dX (a recurrent step's x_t slice of it)
                        completes[p] = (i, max(low.dx_elems, completes.get(p, (0, 0))[1]))
        for p, (i, elems) in sorted(completes.items()):
            partial_dx.setdefault(i, []).append((p, float(elems * execution.batch * prec)))
    updated = sum(group_params.values()) / (dp if execution.zero else 1)  # ZeRO: each its 1/dp
    step_s = optimizer_step_time(device, workload, updated)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, layer in enumerate(layers):
        if layer.weight_group is not None:
            first.setdefault(layer.weight_group, i)
            last[layer.weight_group] = i
    dropped = tuple(not o and (r or (virtualize and t not in last_bwd_use))
                    for t, (o, r) in enumerate(zip(offloaded, recomputed)))
    return OffloadPlan(fwd, bwd, tensor_bytes, full_bytes, offloaded, recomputed, last_fwd_use,
                       bwd_needs, bwd_order, first_need, tuple(tuple(f) for f in frees),
                       frozenset(last_bwd_use), {i: tuple(ps) for i, ps in partial_dx.items()}, step_s,
                       tp, {g: n * prec for g, n in group_params.items()}, group_full,
                       tuple(sorted(first, key=first.get)), first, last, updated, dropped)


def _rank_order(order: str | None, topology) -> tuple[int, ...]:
    """Rank -> device index: the topology's device order, or ``order`` (device names,
    a permutation of the topology's devices, comma-separated)."""
    names = topology.devices
    if order is None:
        return tuple(range(len(names)))
    given = [n.strip() for n in order.split(",")]
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in given if n not in index]
    if unknown or len(given) != len(names) or len(set(given)) != len(given):
        what = f"unknown device {unknown[0][:40]!r}" if unknown else "each device once"
        first = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(f"expected a permutation of the {len(names)} devices of {topology.name}, {first} "
                         f"({what})",
                         key="execution.rank_order")
    return tuple(index[n] for n in given)


def device_model_state(workload, execution: ExecutionSpec, devices: int, group_params) -> float:
    """The model state one device keeps for the whole iteration (without pipeline
    stages): 1/D of it in model-parallel training; its tensor-parallel share of the
    weights, with the execution's ZeRO stage and ZeRO-Offload, in data-parallel."""
    if execution.parallel == "model":
        return model_state_bytes(workload, devices)
    if execution.offload_params:  # ZeRO-Infinity: nothing stays; weights come in per group
        return 0.0
    return model_state_bytes(workload, params=sum(group_params.values()), zero=execution.zero,
                             dp=devices // execution.tensor_parallel, offload_optimizer=execution.offload_optimizer)


def device_group_params(workload, layer_shards) -> dict[str, float]:
    """Weight group -> the parameters one device holds of it: a group is split as the
    layer that owns its parameters (1/shards)."""
    held = {g: float(n) for g, n in workload.weight_groups.items()}
    for layer, shards in zip(workload.layers, layer_shards):
        if layer.weight_group is not None and layer.params and shards > 1:
            held[layer.weight_group] = workload.weight_groups[layer.weight_group] / shards
    return held


class Iteration:
    """Builds the components of one iteration; :meth:`run` simulates it."""

    def __init__(self, topology, workload, execution: ExecutionSpec, *, record_timeline: bool = False):
        training = execution.training
        # The workload as this execution trains it: its precision, in-place and fused layers.
        workload = inplace_workload(with_precision(workload, training.precision), inplace=training.inplace,
                                    fuse_bn_relu=training.fuse_bn_relu)
        self.inputs = RunInputs(topology, workload, execution)
        devices = len(topology.devices)
        t, pp = execution.tensor_parallel, execution.pipeline_parallel
        if devices % (t * pp):
            key = "execution.tensor_parallel" if devices % t else "execution.pipeline_parallel"
            raise InputError(f"tensor x pipeline degrees {t} x {pp} do not divide the {devices} devices of "
                             f"{topology.name}", key=key)
        dp = devices // (t * pp)
        # One replica's share of the batch (refuses a batch the replicas cannot split evenly).
        self.share = device_share(execution.parallel, execution.batch, dp)
        micro = training.micro_batches
        if execution.batch % (dp * micro):
            raise InputError(f"{execution.batch} is not divisible by {dp} data-parallel replicas x {micro} "
                             "micro-batches", key="batch")
        # Rank placement (Megatron's order): tensor groups are t consecutive devices (the
        # topology's order puts neighbours next to each other, so a tensor group shares
        # the fastest links), then data-parallel replicas, then pipeline stages; a
        # data-parallel group takes one device of each tensor group of its stage.
        # ``execution.rank_order`` overrides which device each rank runs on.
        self.rank_device = _rank_order(execution.rank_order, topology)
        on = self.rank_device
        self.tensor_groups = tuple(tuple(on[r] for r in range(k, k + t)) for k in range(0, devices, t))
        self.data_groups = tuple(tuple(on[s * dp * t + k * t + r] for k in range(dp))
                                 for s in range(pp) for r in range(t))
        self.stage_of = {on[r]: r // (dp * t) for r in range(devices)}
        self.group_rings = self._group_rings()
        # Pipeline peers: device -> (the previous stage's device, the next stage's), by rank.
        width = devices // pp
        rank_of = {d: r for r, d in enumerate(on)}
        self.peers = {d: (on[rank_of[d] - width] if self.stage_of[d] > 0 else None,
                          on[rank_of[d] + width] if self.stage_of[d] < pp - 1 else None) for d in range(devices)}
        self.env = CountingEnvironment()
        self._record_timeline = record_timeline
        self.socket_ports = tuple(p.id for p in topology.ports.values() if p.node in topology.sockets)
        self.virtualize = execution.training.virtualization and topology.backing != "none"
        self.pipe = None
        if pp > 1:
            if self.virtualize:
                raise InputError("pipeline parallelism keeps feature maps on the device; set "
                                 "training.virtualization=false", key="training.virtualization")
            # Each pass runs one micro-batch: the plan's per-layer times and sizes are a micro-batch's.
            self.plan = make_plan(self.inputs, False, micro_batch=execution.batch // (dp * micro), dp=dp)
            from mcdla.sim.pipeline import pipeline_plan

            self.pipe = pipeline_plan(self.plan, self.inputs, dp)
        else:
            self.plan = make_plan(self.inputs, self.virtualize)
        # Weights, gradients and optimizer state stay in device memory (1/D of them per
        # device in model-parallel training); the steady state an iteration returns to.
        self.device_state_bytes: tuple[float, ...] = ()
        if self.pipe is not None:  # each device holds its stage's weights
            per_stage = [model_state_bytes(workload, params=w / workload.precision_bytes, zero=execution.zero, dp=dp)
                         for w in self.pipe.stage_weight_bytes]
            self.device_state_bytes = tuple(per_stage[self.stage_of[d]] for d in range(devices))
            self.model_state_bytes = max(per_stage)
        else:
            params = {g: b / workload.precision_bytes for g, b in self.plan.group_bytes.items()}
            self.model_state_bytes = device_model_state(workload, execution, devices, params)
        if execution.offload_optimizer and topology.backing == "none":
            raise InputError(f"{topology.name} has no backing store to keep the optimizer state in",
                             key="execution.offload_optimizer")
        self.reduce_Bps = topology.device.effective_hbm_bw_Bps / 3.0  # a reduction reads two operands, writes one

    # The classes and the flow network are built when first asked (simulate asks for the
    # classes to check the work budget, run for the network): a planner that only
    # estimates an iteration from its plan pays for neither.
    @cached_property
    def _classes(self):
        return self._symmetry()

    @property
    def symmetry(self) -> Symmetry:
        return self._classes[0]

    @property
    def stream_weights(self):
        return self._classes[1]

    @cached_property
    def net(self) -> FlowNetwork:
        topology = self.inputs.topology
        classes = dict(self.symmetry.resources)
        for group in self.symmetry.device_classes:  # a device's reduction unit is in its class
            if len(group) > 1:
                first = reduce_unit(topology.devices[group[0]])
                classes.update((reduce_unit(topology.devices[d]), first) for d in group)
        net = FlowNetwork(self.env, topology.capacities(), on_rates=self._on_rates,
                          record_timeline=self._record_timeline, classes=classes, also=topology.nic_ports)
        # Peak load of each CPU socket's DRAM port (Fig. 12), seen at every rate change
        # (with symmetry, on the port that stands for its class).
        self.port_peak_Bps = {port: 0.0 for port in dict.fromkeys(map(net.representative, self.socket_ports))}
        return net

    def _symmetry(self):
        """Which devices are simulated once for their class (mcdla.hw.symmetry), and each
        communicator's weights: what a simulated device's join counts for (the devices
        of its class in the group) and how many groups the communicator stands for.
        Every device is its own class with ``execution.exact``, with collective
        algorithms whose flows single out ranks, and where the groups do not line up
        with the classes (below)."""
        execution, topology = self.inputs.execution, self.inputs.topology
        names = topology.devices
        pp = execution.pipeline_parallel
        supported = not execution.exact and execution.collective in SYMMETRIC_COLLECTIVES
        if supported and execution.collective == "nccl":
            from mcdla.sim.nccl_collectives import picks_a_tree

            supported = not picks_a_tree(topology.rings, topology.capacities())
        links = []
        if pp > 1 and supported:
            links = [(kind, names[d], names[peer],
                      p2p_paths(topology.rings, names[d], names[peer], topology.reverse_of, topology.channels))
                     for d, pair in self.peers.items() for kind, peer in zip(("prev", "next"), pair)
                     if peer is not None]
        # With communicators of groups, the topology's own rings carry nothing, nor do a
        # group of one's (it never communicates): only the groups' sub-rings tell
        # devices apart.
        symmetry = rank_classes(topology, execution.policy, supported,
                                colours=[self.stage_of[d] for d in range(len(names))] if pp > 1 else (),
                                groups=[(kind, [names[d] for d in group], rings if len(group) > 1 else ())
                                        for kind, _, group, rings in self.group_rings], links=links,
                                rings=() if self.group_rings else topology.rings)
        if not self.group_rings:  # one communicator over every device
            return symmetry, [({group[0]: len(group) for group in symmetry.device_classes}, 1, ())]
        groups = [(kind, group) for kind, _, group, _ in self.group_rings]
        lined = line_up(symmetry, groups, self.rank_device, self.peers)
        if lined is None:
            lined = line_up(Symmetry.exact(len(names)), groups, self.rank_device, self.peers)
        return lined

    @property
    def topology(self):
        return self.inputs.topology

    @property
    def workload(self):
        return self.inputs.workload

    def _on_rates(self, now_s: float, load_Bps: dict[str, float]) -> None:
        for port in self.port_peak_Bps:
            load = load_Bps.get(port, 0.0)
            if load > self.port_peak_Bps[port]:
                self.port_peak_Bps[port] = load

    def _groups(self) -> dict:
        """The rank placement by device name, when there is more than data parallelism."""
        if len(self.data_groups) == 1:
            return {}
        names = self.topology.devices
        stages: dict[int, list[str]] = {}
        for d, s in sorted(self.stage_of.items(), key=lambda item: (item[1], self.rank_device.index(item[0]))):
            stages.setdefault(s, []).append(names[d])
        return {"tensor": [[names[d] for d in g] for g in self.tensor_groups],
                "data": [[names[d] for d in g] for g in self.data_groups],
                "stages": list(stages.values())}

    def _group_rings(self) -> list[tuple[str, int, tuple[int, ...], tuple]]:
        """The communicators of tensor and pipeline parallelism: (kind, number, devices,
        their rings: each topology ring through them restricted to them); none without."""
        topology = self.inputs.topology
        if len(self.data_groups) == 1:
            return []
        found = []
        for kind, groups in (("dp", self.data_groups), ("tp", self.tensor_groups)):
            for n, group in enumerate(groups):
                members = {topology.devices[d] for d in group}
                group_rings = tuple(sub_ring(ring, members, f"{ring.name}/{kind}{n}", topology.reverse_of(ring),
                                             topology.channels)
                                    for ring in topology.rings if members <= ring.position.keys())
                if not group_rings:
                    raise InputError(f"no ring of {topology.name} passes through all devices of {kind} group {n}",
                                     key="execution.tensor_parallel")
                found.append((kind, n, group, group_rings))
        return found

    def _communicators(self):
        """Device -> (its data-parallel communicator, its tensor-parallel one or None),
        every ring they use by name, and each communicator's rings -> the rings of every
        group it stands for (rank symmetry). Without tensor or pipeline parallelism there
        is one communicator over the topology's rings, the paper's. With symmetry only
        the groups of simulated devices get one, standing for their alike groups."""
        topology = self.topology
        rings = {ring.name: ring for ring in topology.rings}
        if not self.group_rings:  # no tensor or pipeline parallelism
            weights, _, _ = self.stream_weights[0]
            stream = CollectiveStream(self.env, self.net, self.inputs, self.reduce_Bps, weights=weights)
            return [(stream, None)] * len(topology.devices), rings, {}
        streams: list[list] = [[None, None] for _ in topology.devices]
        stands: dict[tuple, tuple] = {}
        for (kind, _, group, group_rings), plan in zip(self.group_rings, self.stream_weights):
            rings.update((r.name, r) for r in group_rings)
            if plan is None:  # no simulated device in it: another group stands for it
                continue
            weights, copies, alike = plan
            stream = CollectiveStream(self.env, self.net, self.inputs, self.reduce_Bps, group_rings, len(group),
                                      weights=weights, copies=copies)
            for d in group:
                streams[d][0 if kind == "dp" else 1] = stream
            stands[tuple(r.name for r in group_rings)] = tuple(tuple(r.name for r in self.group_rings[k][3])
                                                               for k in alike)
        return [tuple(pair) for pair in streams], rings, stands

    def run(self) -> IterationRecord:
        env, inputs, topology = self.env, self.inputs, self.inputs.topology
        capacity = topology.device_memory_bytes
        records = [DeviceRecord(d) for d in topology.devices]
        resident = self.model_state_bytes + self.plan.tensor_bytes[0]  # weights, gradients, input
        if resident > capacity:  # the same on every device
            raise InfeasibleError(
                f"device {records[0].name}: the model state (weights, gradients, optimizer) and the input batch need "
                f"{resident:.6g} bytes, over its memory of {capacity:.6g} bytes")
        stores = BackingStores(topology, self.symmetry.stores)
        simulated = [c[0] for c in self.symmetry.device_classes]  # one device per class
        if inputs.execution.offload_optimizer:  # ZeRO-Offload: every device's state, stored for good
            state = optimizer_state_bytes(inputs.workload, self.plan.updated_params)
            if inputs.execution.offload_params:  # ZeRO-Infinity: its shard of the weights and gradients too
                state += 2 * self.plan.updated_params * inputs.workload.precision_bytes
            for group in self.symmetry.device_classes:
                for sub in topology.backing_routes(topology.devices[group[0]], inputs.execution.policy, "offload"):
                    stores.hold(sub.store, sub.share * state, len(group))
        streams, rings, stands = self._communicators()
        memories = {d: DeviceMemory(env, records[d], capacity) for d in simulated}
        links = None
        if self.pipe is None:
            devices = [DeviceCompute(env, self.net, inputs, group[0], self.plan, memories[group[0]], stores,
                                     streams[group[0]][0], self.model_state_bytes, self.virtualize,
                                     streams[group[0]][1], members=group).process
                       for group in self.symmetry.device_classes]
        else:
            from mcdla.sim.pipeline import PipelineStage, PipeLinks

            links = PipeLinks(env, self.net, topology)
            names = topology.devices
            devices = []
            for group in self.symmetry.device_classes:
                d = group[0]
                peers = tuple(names[p] if p is not None else None for p in self.peers[d])
                # Each device of the class sends to its own peers (PipeLinks: one flow for all).
                pairs = tuple(tuple((names[e], names[self.peers[e][k]]) for e in group) if self.peers[d][k] is not None
                              else () for k in (0, 1))
                devices.append(PipelineStage(env, self.net, inputs, d, self.plan, memories[d], stores, streams[d][0],
                                             self.device_state_bytes[d], False, streams[d][1], stage=self.stage_of[d],
                                             pipe=self.pipe, links=links, peers=peers, pairs=pairs,
                                             members=group).process)
        communicators = list(dict.fromkeys(s for pair in streams for s in pair if s is not None))
        done = env.all_of(devices)
        # Runs until nothing is scheduled: devices done, and every collective and DMA
        # they launched has finished (the engines then wait on empty queues).
        env.run()
        waiting = [(d, what, size) for d, m in memories.items() for what, size in m.waiting.items()]
        if not done.triggered and waiting:
            device, what, size = min(waiting)
            record = records[device]
            how = "even with virtualization" if self.virtualize else "with virtualization off"
            raise InfeasibleError(
                f"device {record.name} cannot fit {what} ({size:.6g} bytes) beside the "
                f"{record.memory_bytes:.6g} bytes it holds, within its memory of "
                f"{capacity:.6g} bytes, {how}")
        if not done.triggered or any(c.unfinished() for c in communicators):
            raise RuntimeError("simulation deadlocked: a device or collective never finished")
        classes = self.symmetry.device_classes
        for group in classes:  # a class's other devices did what its first did
            first = records[group[0]]
            for d in group[1:]:
                records[d] = replace(first, name=topology.devices[d])
        ports = self.port_peak_Bps
        record = IterationRecord(
            inputs=inputs,
            iteration_time_s=env.now,
            devices=records,
            collectives=[r for c in communicators for r in c.records],
            store_peak_bytes=stores.expanded(stores.peak),
            store_end_bytes=stores.expanded(stores.used),
            events=env.events_processed,
            network=self.net.stats(),
            capacities_Bps=dict(self.net.capacities_Bps),
            overload=self.net.overload,
            timeline=self.net.timeline,
            port_peak_Bps={port: ports[self.net.representative(port)] for port in self.socket_ports},
            plan=self.plan,
            model_state_bytes=self.model_state_bytes,
            virtualize=self.virtualize,
            rings=rings,
            device_state_bytes=self.device_state_bytes,
            transfers=(tuple(links.sent) if links is not None else ()) + tuple(stores.moved),
            store_resident_bytes=stores.expanded(stores.resident),
            groups=self._groups(),
            rank_classes=classes if len(classes) < len(records) else (),
            equivalent_rings=stands if len(classes) < len(records) else {},
        )
        check_iteration(record)  # conservation laws; raises on a bug
        return record
