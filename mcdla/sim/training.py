"""One training iteration over D device-nodes, as SimPy processes.

Each device-node runs one process that computes its layers in order (forward, then
backward in reverse), and owns DMA engines that move feature maps to and from its
backing store. Collectives run on the shared flow network, in launch order (one
communicator stream, as NCCL does), so collective traffic and memory-virtualization
traffic contend on the links they share.

Data-parallel (paper Fig. 3(a)): each device holds the whole model and batch/D
samples; a weight group's dW is all-reduced as soon as every device has finished the
backward of the group's last layer, overlapping the rest of backward.
Model-parallel (Fig. 3(b), Krizhevsky-style): each device holds the whole batch and
1/D of every layer's output features; the input feature maps of each weighted layer
are all-gathered before its forward, and its partial dX is all-reduced after its
backward; dW stays local. Cheap layers run on the device's feature shard.

Memory virtualization (vDNN offload-all, paper Section IV): every feature map that a
later layer reads is offloaded after its last forward use, and prefetched back
``lookahead`` layers ahead of the backward layer that first needs it; that layer waits
for its prefetch. Outputs of cheap layers are recomputed in backward from their
nearest offloaded ancestors instead, and the recompute time is charged to compute.

The process decides *when*; how long a kernel takes comes from :mod:`mcdla.hw.compute`
and how long a transfer takes from the flow network.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import simpy

from mcdla.errors import InfeasibleError
from mcdla.hw.compute import layer_time
from mcdla.hw.parallelism import device_share
from mcdla.sim.collectives import CollectiveRecord, collective
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.invariants import check_iteration

__all__ = ["Iteration", "IterationRecord", "NO_INPUT_NEEDED"]

# Layer kinds whose backward needs none of their input feature maps (a sum or a
# concatenation passes gradients through), so nothing is prefetched or recomputed for them.
NO_INPUT_NEEDED = frozenset({"add", "concat"})


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


@dataclass
class IterationRecord:
    """The raw outcome of one simulated iteration, before it is summarized."""

    iteration_time_s: float
    devices: list[DeviceRecord]
    collectives: list[CollectiveRecord]
    store_peak_bytes: dict[str, float]
    events: int


@dataclass(frozen=True)
class _Plan:
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


class Iteration:
    """Builds the processes of one iteration; :meth:`run` simulates it."""

    def __init__(self, topology, workload, training, *, policy: str, parallel: str, batch: int,
                 record_timeline: bool = False):
        self.topology, self.workload, self.training = topology, workload, training
        self.policy, self.parallel, self.batch = policy, parallel, batch
        self.D = len(topology.devices)
        self.share = device_share(parallel, batch, self.D)  # refuses a batch D does not divide
        self.env = CountingEnvironment()
        # Peak load of each CPU socket's DRAM port (Fig. 12), seen at every rate change.
        self.socket_ports = tuple(p.id for p in topology.ports.values() if p.node in topology.sockets)
        self.port_peak_Bps = {port: 0.0 for port in self.socket_ports}
        self.net = FlowNetwork(self.env, topology.capacities(), on_rates=self._on_rates,
                               record_timeline=record_timeline)
        self.virtualize = training.virtualization and topology.backing != "none"
        self.plan = self._plan()
        self.records = [DeviceRecord(d) for d in topology.devices]
        self.collectives: list[CollectiveRecord] = []
        self._stream: simpy.Store = simpy.Store(self.env)
        self._barriers: dict[tuple, list] = {}  # collective key -> [devices arrived, done event]
        groups = self._group_counts()
        self._groups_left = [dict(groups) for _ in range(self.D)]
        self.store_bytes: dict[str, float] = {}
        # Device memory is a capacity: an allocation that does not fit waits for a free
        # (an offload finishing, a layer releasing its inputs), as vDNN stalls.
        self._room: list[simpy.Event | None] = [None] * self.D
        self._waiting: dict[tuple[int, str], float] = {}  # (device, what) -> bytes asked
        self.store_peak: dict[str, float] = {}
        self.reduce_Bps = topology.device.hbm_bw / 3.0  # a reduction reads two operands, writes one
        # Weights and their gradients stay in device memory (1/D of them per device in
        # model-parallel training); this is the steady state an iteration returns to.
        shard = self.D if parallel == "model" else 1
        self.model_state_bytes = 2.0 * workload.weight_bytes / shard

    def _on_rates(self, now_s: float, load_Bps: dict[str, float]) -> None:
        for port in self.socket_ports:
            load = load_Bps.get(port, 0.0)
            if load > self.port_peak_Bps[port]:
                self.port_peak_Bps[port] = load

    # ----------------------------------------------------------------- planning
    def _plan(self) -> _Plan:
        layers = self.workload.layers
        prec = self.workload.precision_bytes
        model = self.parallel == "model"
        local_batch, shards = self.share
        device = self.topology.device
        fwd = tuple(0.0 if i == 0 else layer_time(device, l, "fwd", local_batch, prec, shards)
                    for i, l in enumerate(layers))
        bwd = tuple(0.0 if i == 0 else layer_time(device, l, "bwd", local_batch, prec, shards)
                    for i, l in enumerate(layers))
        # The bytes of each feature map a device holds: batch/D samples in data-parallel
        # training; in model-parallel training, the whole batch but 1/D of the output
        # features (docs/model.md), except the input batch, which every device loads whole.
        full_bytes = tuple(float(l.out_elems_per_sample * self.batch * prec) for l in layers)
        if model:
            tensor_bytes = (full_bytes[0],) + tuple(b / self.D for b in full_bytes[1:])
        else:
            tensor_bytes = tuple(l.out_elems_per_sample * local_batch * prec for l in layers)
        last_fwd_use = [i for i in range(len(layers))]
        for i, layer in enumerate(layers):
            for p in layer.inputs:
                last_fwd_use[p] = max(last_fwd_use[p], i)
        recomputed = tuple(self.virtualize and self.training.recompute_cheap and l.cheap and i > 0
                           for i, l in enumerate(layers))
        bwd_needs = tuple(() if (i == 0 or l.kind in NO_INPUT_NEEDED) else tuple(l.inputs)
                          for i, l in enumerate(layers))
        bwd_order = tuple(range(len(layers) - 1, 0, -1))
        first_need: dict[int, int] = {}
        last_bwd_use: dict[int, int] = {}
        for step, i in enumerate(bwd_order):
            for t in self._closure(bwd_needs[i], layers, recomputed):
                last_bwd_use[t] = step
                first_need.setdefault(t, step)
        # Offload-all: a feature map goes to the backing store when backward reads it
        # again and it is not recomputed; one that backward never reads is dropped.
        offloaded = tuple(self.virtualize and not recomputed[t] and t in first_need
                          for t in range(len(layers)))
        first_need = {t: s for t, s in first_need.items() if offloaded[t]}
        frees: list[list[int]] = [[] for _ in bwd_order]
        for t, step in sorted(last_bwd_use.items()):
            frees[step].append(t)
        return _Plan(fwd, bwd, tensor_bytes, full_bytes, offloaded, recomputed, tuple(last_fwd_use),
                     bwd_needs, bwd_order, first_need, tuple(tuple(f) for f in frees),
                     frozenset(last_bwd_use))

    @staticmethod
    def _closure(needs, layers, recomputed) -> list[int]:
        """The tensors read to materialize ``needs``: recomputed ones pull in their inputs."""
        seen: list[int] = []
        stack = list(needs)
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.append(t)
            if recomputed[t]:
                stack.extend(layers[t].inputs)
        return seen

    def _group_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.workload.layers:
            if layer.weight_group is not None:
                counts[layer.weight_group] = counts.get(layer.weight_group, 0) + 1
        return counts

    # --------------------------------------------------------------- collectives
    def _stream_process(self):
        """Runs collectives one at a time in launch order (one NCCL stream)."""
        chunk = self.training.chunk
        while True:
            op, size_bytes, done, label = yield self._stream.get()
            kwargs = {"reduce_Bps": self.reduce_Bps, "tag": label}
            if chunk is not None:
                kwargs["chunk_bytes"] = chunk
            record = yield collective(self.env, self.net, self.topology.rings, op, size_bytes, **kwargs)
            self.collectives.append(record)
            done.succeed()

    def _join(self, key: tuple, op: str, size_bytes: float) -> simpy.Event:
        """Every device calls this for the same collective; the last arrival launches it."""
        if key not in self._barriers:
            self._barriers[key] = [0, self.env.event()]
        barrier = self._barriers[key]
        barrier[0] += 1
        done = barrier[1]
        if barrier[0] == self.D:
            if self.D == 1 or size_bytes <= 0:
                done.succeed()
            else:
                self._stream.put((op, size_bytes, done, "/".join(map(str, key))))
        return done

    # ------------------------------------------------------------ device memory
    def _reserve(self, device: int, size_bytes: float, what: str):
        """Allocates ``size_bytes`` of device memory, waiting until they fit."""
        record = self.records[device]
        capacity = self.topology.device_memory_bytes
        while record.memory_bytes + size_bytes > capacity * (1 + 1e-12):
            if self._room[device] is None:
                self._room[device] = self.env.event()
            self._waiting[(device, what)] = size_bytes
            yield self._room[device]
        self._waiting.pop((device, what), None)
        record.allocate(self.env.now, size_bytes)

    def _free(self, device: int, size_bytes: float) -> None:
        self.records[device].free(self.env.now, size_bytes)
        room, self._room[device] = self._room[device], None
        if room is not None:
            room.succeed()

    # --------------------------------------------------------------------- DMA
    def _move(self, device: int, tensor: int, direction: str):
        """Moves one feature map between device memory and the backing store."""
        name = self.topology.devices[device]
        size = self.plan.tensor_bytes[tensor]
        record = self.records[device]
        routes = self.topology.backing_routes(name, self.policy, direction)
        start = self.env.now
        if direction == "offload":
            for sub in routes:
                self._store_add(sub.store, sub.share * size)
        flows = [self.net.transfer(sub.share * size, sub.path, sub.latency_s,
                                   tag=f"{direction}/{name}/{tensor}") for sub in routes]
        yield self.env.all_of(flows)
        record.virtualization.append((start, self.env.now, f"{direction} {self.workload.layers[tensor].name}"))
        if direction == "prefetch":
            for sub in routes:
                self.store_bytes[sub.store] -= sub.share * size

    def _store_add(self, store: str, size_bytes: float) -> None:
        used = self.store_bytes.get(store, 0.0) + size_bytes
        capacity = self.topology.memory_capacity(store)
        if used > capacity * (1 + 1e-12):
            raise InfeasibleError(
                f"backing store {store} would hold {used:.4g} bytes, over its capacity of "
                f"{capacity:.4g} bytes"
            )
        self.store_bytes[store] = used
        self.store_peak[store] = max(self.store_peak.get(store, 0.0), used)

    def _dma_engine(self, device: int, queue: simpy.Store):
        """One copy engine: serves transfers in FIFO order, one tensor at a time."""
        record = self.records[device]
        while True:
            tensor, direction, gate, done = yield queue.get()
            if gate is not None:
                yield gate
            if direction == "prefetch":
                yield from self._reserve(device, self.plan.tensor_bytes[tensor],
                                         f"the prefetch of {self.workload.layers[tensor].name}")
            yield from self._move(device, tensor, direction)
            if direction == "offload":
                self._free(device, self.plan.tensor_bytes[tensor])
                record.offloads[tensor] = record.offloads.get(tensor, 0) + 1
                record.offloaded_bytes += self.plan.tensor_bytes[tensor]
            else:
                record.prefetches[tensor] = record.prefetches.get(tensor, 0) + 1
                record.prefetched_bytes += self.plan.tensor_bytes[tensor]
                record.prefetch_ready[tensor] = self.env.now
            done.succeed()

    # ------------------------------------------------------------------ device
    def _compute(self, device: int, duration_s: float, label: str):
        if duration_s > 0:
            start = self.env.now
            yield self.env.timeout(duration_s)
            self.records[device].compute.append((start, self.env.now, label))

    def _device(self, device: int):
        plan, layers, env = self.plan, self.workload.layers, self.env
        record = self.records[device]
        model = self.parallel == "model"
        offload_q = simpy.Store(env)
        prefetch_q = offload_q if self.topology.device.dma_engines < 2 else simpy.Store(env)
        env.process(self._dma_engine(device, offload_q))
        if prefetch_q is not offload_q:
            env.process(self._dma_engine(device, prefetch_q))
        offloaded_done: dict[int, simpy.Event] = {}

        # Forward.
        record.allocate(env.now, self.model_state_bytes)  # resident for the whole iteration
        record.allocate(env.now, plan.tensor_bytes[0])  # the input batch
        gathered: set[int] = {0}  # every device loads the whole input batch
        for i in range(1, len(layers)):
            layer = layers[i]
            if model and layer.weight_group is not None:
                for p in layer.inputs:
                    if p not in gathered:
                        gathered.add(p)
                        yield self._join(("fwd", p), "all_gather", plan.full_bytes[p])
            # The output buffer exists while the layer computes.
            yield from self._reserve(device, plan.tensor_bytes[i], f"the output of {layer.name}")
            yield from self._compute(device, plan.fwd_s[i], f"fwd {layer.name}")
            for p in (*layer.inputs, i):
                if plan.last_fwd_use[p] != i:
                    continue
                if plan.offloaded[p]:
                    offloaded_done[p] = env.event()
                    offload_q.put((p, "offload", None, offloaded_done[p]))
                elif self.virtualize:  # recomputed in backward, or never read again
                    self._free(device, plan.tensor_bytes[p])

        # Backward.
        prefetched: dict[int, simpy.Event] = {}
        pending = deque(sorted(plan.first_need, key=lambda t: (plan.first_need[t], t)))
        recomputed: set[int] = set()  # recomputed tensors held for backward

        def issue_prefetches(step: int) -> None:
            while pending and plan.first_need[pending[0]] <= step + self.training.lookahead:
                t = pending.popleft()
                prefetched[t] = env.event()
                prefetch_q.put((t, "prefetch", offloaded_done[t], prefetched[t]))

        for step, i in enumerate(plan.bwd_order):
            issue_prefetches(step)
            for t in reversed(self._closure(plan.bwd_needs[i], layers, plan.recomputed)):
                if plan.offloaded[t]:
                    yield prefetched[t]
                elif plan.recomputed[t] and t not in recomputed:
                    recomputed.add(t)
                    yield from self._reserve(device, plan.tensor_bytes[t], f"the recompute of {layers[t].name}")
                    yield from self._compute(device, plan.fwd_s[t], f"recompute {layers[t].name}")
            if model and self.training.regather and layers[i].weight_group is not None:
                for p in layers[i].inputs:
                    if p != 0:
                        yield self._join(("regather", i, p), "all_gather", plan.full_bytes[p])
            record.backward_start[i] = env.now
            yield from self._compute(device, plan.bwd_s[i], f"bwd {layers[i].name}")
            for t in plan.frees[step]:
                if plan.offloaded[t] or t in recomputed or not self.virtualize:
                    self._free(device, plan.tensor_bytes[t])
            group = layers[i].weight_group
            if model:
                if layers[i].weight_group is not None and layers[i].inputs != (0,):
                    in_bytes = layers[i].in_elems_per_sample * self.batch * self.workload.precision_bytes
                    yield self._join(("bwd", i), "all_reduce", in_bytes)
            elif group is not None:
                self._groups_left[device][group] -= 1
                if self._groups_left[device][group] == 0:
                    size = self.workload.weight_groups[group] * self.workload.precision_bytes
                    self._join(("dW", group), "all_reduce", size)
        if not self.virtualize:
            # Without virtualization, maps that backward never reads are dropped at the end.
            for t in range(len(layers)):
                if t not in plan.read_in_bwd:
                    self._free(device, plan.tensor_bytes[t])

    # --------------------------------------------------------------------- run
    def run(self) -> IterationRecord:
        env = self.env
        resident = self.model_state_bytes + self.plan.tensor_bytes[0]  # weights, gradients, input
        if resident > self.topology.device_memory_bytes:  # the same on every device
            raise InfeasibleError(
                f"device {self.records[0].name}: weights, gradients and the input batch need "
                f"{resident:.6g} bytes, over its memory of {self.topology.device_memory_bytes:.6g} bytes")
        env.process(self._stream_process())
        devices = [env.process(self._device(d)) for d in range(self.D)]
        done = env.all_of(devices)
        # Runs until nothing is scheduled: devices done, and every collective and DMA
        # they launched has finished (the engines then wait on empty queues).
        env.run()
        if not done.triggered and self._waiting:
            (device, what), size = min(self._waiting.items())
            record = self.records[device]
            raise InfeasibleError(
                f"device {record.name} cannot fit {what} ({size:.6g} bytes) beside the "
                f"{record.memory_bytes:.6g} bytes it holds, within its memory of "
                f"{self.topology.device_memory_bytes:.6g} bytes, even with virtualization")
        if not done.triggered or any(not e.triggered for _, e in self._barriers.values()):
            raise RuntimeError("simulation deadlocked: a device or collective never finished")
        record = IterationRecord(
            iteration_time_s=env.now,
            devices=self.records,
            collectives=self.collectives,
            store_peak_bytes=dict(sorted(self.store_peak.items())),
            events=env.events_processed,
        )
        check_iteration(self, record)  # conservation laws; raises on a bug or out of HBM
        return record
