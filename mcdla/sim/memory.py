"""Memory as the driver sees it: a device's memory (a capacity whose allocations wait
for room), the backing stores (what each holds against its capacity), and a device's
copy engines, which move feature maps and model state between the two."""

from __future__ import annotations

import simpy

from mcdla.errors import InfeasibleError
from mcdla.hw.tiers import state_routes
from mcdla.sim import fit
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.liveness import FIT_SLACK
from mcdla.sim.records import DeviceRecord, OffloadPlan, RunInputs, Span

__all__ = ["DeviceMemory", "BackingStores", "DmaEngine", "stripe"]


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
            raise InfeasibleError(f"backing store {store} would hold {fit.size(used)}, over its capacity of "
                                  f"{fit.size(capacity)}; {fit.store_way_out()}")
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
        routes = state_routes(self.inputs.topology, self.inputs.execution, "activations", self.name, direction)
        start = self.env.now
        if direction == "offload":
            for sub in routes:
                self.stores.add(sub.store, sub.share * size, self.copies)
        yield self.env.all_of(stripe(self.net, routes, size, f"{direction}/{self.name}/{tensor}",
                                     copies=self.copies))
        self.memory.record.virtualization.append(
            Span(start, self.env.now, f"{direction} {self.inputs.workload.layers[tensor].name}", direction))
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
