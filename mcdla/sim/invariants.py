"""Conservation laws checked at the end of every simulated iteration.

A discrete-event model can be wrong quietly: a flow that never delivers its last
bytes, a ring that sends one step too few, a tensor offloaded twice, a link that
carries more than it can. None of those crash; they just give a plausible number.
So every iteration ends with :func:`check_iteration`, which checks what must hold
whatever the input:

- flow network: every flow started was finished, and the bytes delivered equal the
  bytes sent; no channel or memory port carried more than its capacity at any
  instant (the network compares every load it computes with the capacity, see
  :attr:`~mcdla.sim.flownet.FlowNetwork.overload`);
- bytes on every channel: what the flow network actually carried on each channel
  (integrated from the flows' rates over time) equals what the iteration was meant
  to move there: each collective's steps as its algorithm defines them
  (:meth:`~mcdla.sim.collectives.CollectiveAlgorithm.channel_bytes`, written step by
  step), plus every planned offload and prefetch over its routes. A dropped,
  repeated or shortened step or transfer changes some channel's bytes. With rank
  symmetry the check is per class of alike channels (the class's bytes in all), at the
  cost of the classes, not of every channel (:func:`expected_class_bytes`);
  ``--exact`` checks every channel;
- collectives: each ends after it starts, and the ring shares add up to the message;
- memory: a device's occupancy never goes negative and ends at its steady state, the
  resident model state (every feature map allocated is freed); every backing store ends empty and never held
  more than its capacity;
- virtualization: every offloaded tensor was offloaded once and prefetched once,
  the planned set of tensors exactly, and each prefetch finished before the
  backward that needs it started.

A violation is a bug in mcdla and raises :class:`~mcdla.errors.InvariantError`
(exit 1) naming the quantity, the place and both numbers. Device memory is one of
them: the driver makes an allocation that does not fit wait for room, and refuses a
run whose working set cannot fit as :class:`~mcdla.errors.InfeasibleError`, so a
peak above the device's memory is a bug.

The checks are linear in what the iteration recorded (memory changes, collectives,
tensors), a fraction of a percent of the simulation itself.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import chain, filterfalse
from operator import eq

from mcdla.errors import InvariantError
from mcdla.hw.tiers import state_routes
from mcdla.sim.algorithms import COLLECTIVES

__all__ = ["check_iteration", "expected_channel_bytes", "expected_class_bytes", "RELATIVE_SLACK"]

# Float sums of many rate * dt terms (or of many tensor sizes) differ from the exact
# value by rounding; a real accounting bug is off by a whole transfer, far above this.
RELATIVE_SLACK = 1e-9


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= RELATIVE_SLACK * max(abs(a), abs(b), scale, 1.0)


def check_iteration(record) -> None:
    """Raises InvariantError (a bug in mcdla) for the iteration ``record``."""
    _check_network(record)
    _check_collectives(record)
    _check_channel_bytes(record)
    _check_devices(record)
    _check_stores(record)


def _check_network(record) -> None:
    stats = record.network
    if stats.flows_started != stats.flows_finished:
        raise InvariantError(
            f"flow network: {stats.flows_started} flows started but {stats.flows_finished} finished"
        )
    if not _close(stats.bytes_sent, stats.bytes_delivered, 0.0):
        raise InvariantError(
            f"flow network: {stats.bytes_sent!r} bytes sent but {stats.bytes_delivered!r} delivered"
        )
    overload = record.overload
    if overload is not None:
        ratio, resource, time_s, load_Bps = overload
        capacity = record.capacities_Bps[resource]
        raise InvariantError(
            f"flow network: {resource} carried {load_Bps!r} B/s at t={time_s!r} s, "
            f"{ratio:.12g} x its capacity of {capacity!r} B/s"
        )


def _check_collectives(record) -> None:
    for c in record.collectives:
        where = f"collective {c.op} {c.tag!r} at t={c.start_s!r} s"
        if c.end_s < c.start_s:
            raise InvariantError(f"{where}: ends at {c.end_s!r} s, before it starts")
        if len(c.bytes_per_ring) != len(c.rings):
            raise InvariantError(f"{where}: {len(c.rings)} rings but shares for {len(c.bytes_per_ring)}")
        if not _close(sum(c.bytes_per_ring), c.size_bytes, 0.0):
            raise InvariantError(f"{where}: ring shares add up to {sum(c.bytes_per_ring)!r} bytes, "
                                 f"not the message's {c.size_bytes!r}")


def expected_channel_bytes(record) -> dict[str, float]:
    """Bytes each channel should have carried: every collective's steps and every
    planned offload and prefetch, derived from the plan, not from the transfers made."""
    topology, execution = record.inputs.topology, record.inputs.execution
    expected: dict[str, float] = {}

    def add(channel: str, size: float) -> None:
        expected[channel] = expected.get(channel, 0.0) + size

    rings = record.rings or {ring.name: ring for ring in topology.rings}
    capacities = record.capacities_Bps  # the rings' shares follow their rates (ring_fractions)
    # A collective's bytes are linear in its size: the wire bytes of all collectives of
    # one (op, rings, algorithm) are summed, and their channels' bytes derived once.
    wire: dict[tuple, float] = {}
    for c in record.collectives:  # a protocol's flags ride along
        key = (c.op, c.rings, c.algorithm or execution.collective)
        wire[key] = wire.get(key, 0.0) + c.size_bytes * c.wire_factor
    for (op, names, name), size_bytes in wire.items():  # with symmetry, for every group it stands for
        # an all-to-allv's pieces are expert parallelism's skewed routing (mcdla.sim.expert)
        algorithm = COLLECTIVES.get(name)(0.0, execution.expert_skew if op == "all_to_allv" else None)
        for alike in record.equivalent_rings.get(names, (names,)):
            for channel, size in algorithm.channel_bytes(op, 1.0, [rings[n] for n in alike], capacities,
                                                         topology.nic_ports).items():
                add(channel, size * size_bytes)
    for path, size in record.transfers:  # pipeline stages' activations and gradients, model state
        for resource in path:
            add(resource, size)
    plan = record.plan
    for n, device in enumerate(topology.devices):
        times, planned = planned_offloads(record, n)
        moved = times * sum(plan.tensor_bytes[tensor] for tensor in planned)  # each way
        moved /= execution.training.compression  # a compressing DMA engine's bytes
        for direction in ("offload", "prefetch"):
            for sub in state_routes(topology, execution, "activations", device, direction):
                for resource in sub.path:
                    add(resource, sub.share * moved)
    return expected


def planned_offloads(record, n: int) -> tuple[int, dict[int, int]]:
    """Device ``n``'s offloads: how many times each (once per micro-batch), and each
    offloaded tensor -> the backward layer that first needs it."""
    if not record.device_work:
        plan = record.plan
        return 1, {t: plan.bwd_order[step] for t, step in plan.first_need.items()}
    work = record.device_work[n]
    return work.micro_batches, {t: chunk.bwd_order[step] for chunk in work.passes
                                for t, step in chunk.first_need.items()}


def expected_class_bytes(record) -> dict[str, float]:
    """With rank symmetry: the bytes each class of channels (keyed by its first,
    ``record.resource_classes``; a channel of no class by itself) should have carried
    in all, the same laws as :func:`expected_channel_bytes` at the cost of the classes:
    a simulated communicator's collectives count once for every alike group it stands
    for, and a class of devices' offloads and prefetches once for each member, since
    alike groups and devices load every class of channels alike (that is what makes
    them alike, mcdla.hw.symmetry); the pipeline's transfers, listed once a class with
    the class's bytes (mcdla.sim.pipeline), and model state's, listed for every member,
    count as listed."""
    topology, execution = record.inputs.topology, record.inputs.execution
    classes = record.resource_classes
    expected: dict[str, float] = {}
    get = expected.get
    rings = record.rings or {ring.name: ring for ring in topology.rings}
    capacities = record.capacities_Bps  # the rings' shares follow their rates (ring_fractions)
    wire: dict[tuple, float] = {}
    for c in record.collectives:
        key = (c.op, c.rings, c.algorithm or execution.collective)
        wire[key] = wire.get(key, 0.0) + c.size_bytes * c.wire_factor
    for (op, names, name), size_bytes in wire.items():
        groups = len(record.equivalent_rings.get(names, (names,)))
        # an all-to-allv's pieces are expert parallelism's skewed routing (mcdla.sim.expert)
        algorithm = COLLECTIVES.get(name)(0.0, execution.expert_skew if op == "all_to_allv" else None)
        carried, times = _ring_bytes(algorithm, op, [rings[n] for n in names], record, capacities)
        for channel, size in carried.items():
            cls = classes.get(channel, channel)
            expected[cls] = get(cls, 0.0) + size * size_bytes * groups * times
    for path, size in record.transfers:
        for resource in path:
            cls = classes.get(resource, resource)
            expected[cls] = get(cls, 0.0) + size
    plan = record.plan
    for members in record.rank_classes:
        device = topology.devices[members[0]]
        times, planned = planned_offloads(record, members[0])
        moved = times * sum(plan.tensor_bytes[tensor] for tensor in planned) / execution.training.compression
        for direction in ("offload", "prefetch"):
            for sub in state_routes(topology, execution, "activations", device, direction):
                for resource in sub.path:
                    cls = classes.get(resource, resource)
                    expected[cls] = get(cls, 0.0) + sub.share * moved * len(members)
    return expected


def _ring_bytes(algorithm, op: str, rings, record, capacities) -> tuple[dict[str, float], int]:
    """(the bytes of one byte of ``op`` on each channel the rings cross, the times each
    stands for): of one period's hops, each for its orbit's members, where the rings are
    bound by period under the translation the classes are unions of orbits of and the
    algorithm's law is alike at every hop of an orbit (its ``period_bytes``); else of
    every channel, once."""
    nic_ports = record.inputs.topology.nic_ports
    t = record.class_orbits
    if t is not None and all(getattr(r, "period", ()) and r.period[0] is t for r in rings):
        found = algorithm.period_bytes(op, 1.0, rings, capacities, nic_ports, t)
        if found is not None:
            return found
    return algorithm.channel_bytes(op, 1.0, rings, capacities, nic_ports), 1


def _check_channel_bytes(record) -> None:
    if record.rank_classes:  # rank symmetry: per class of channels
        _check_class_bytes(record)
        return
    carried = record.network.bytes_by_resource
    expected = expected_channel_bytes(record)
    for channel in record.inputs.topology.channels:
        got, want = carried.get(channel, 0.0), expected.get(channel, 0.0)
        if not _close(got, want, max(want, 1.0)):
            raise InvariantError(
                f"channel {channel}: carried {got!r} bytes, but the iteration's collective steps "
                f"and transfers should move {want!r} (a step or transfer dropped, repeated or cut)")


def _check_devices(record) -> None:
    capacity = record.inputs.topology.device_memory_bytes
    # The driver allocates the resident model state first and keeps it; everything
    # else an iteration allocates it must free.
    steady = float(record.model_state_bytes)
    for n, device, _copies in record.distinct_devices():  # a class's devices share one record's lists
        name = device.name
        if record.device_state_bytes:
            steady = float(record.device_state_bytes[n])
        peak = max(device.memory_peak_bytes, 0.0)
        start = steady  # what stays resident across iterations (weights, gradients)
        level, lowest = 0.0, 0.0
        for _time_s, level in device.memory:
            if level < lowest:
                lowest = level
        if lowest < -RELATIVE_SLACK * max(peak, 1.0):
            raise InvariantError(f"device {name}: memory in use fell to {lowest!r} bytes")
        if not _close(level, start, peak):
            raise InvariantError(
                f"device {name}: ends the iteration with {level!r} bytes in use, not the "
                f"{start!r} it started with (a feature map was never freed)"
            )
        # The driver makes an allocation that does not fit wait (or refuses the run as
        # infeasible), so a peak above capacity is a bug.
        if peak > capacity * (1 + RELATIVE_SLACK):
            raise InvariantError(
                f"device {name}: held {peak:.6g} bytes at its peak, over its memory of "
                f"{capacity:.6g} bytes"
            )
        _check_virtualization(device, *planned_offloads(record, n))


def _check_virtualization(device, times: int, first_need: dict[int, int]) -> None:
    planned = sorted(first_need)
    name = device.name
    for what, counts in (("offloaded", device.offloads), ("prefetched", device.prefetches)):
        if sorted(counts) != planned:
            missing = sorted(set(planned) - set(counts))
            extra = sorted(set(counts) - set(planned))
            raise InvariantError(
                f"device {name}: tensors {what} differ from the plan "
                f"(never {what}: {missing[:5]}, unplanned: {extra[:5]})"
            )
        for tensor, count in counts.items():
            if count != times:
                once = "once" if times == 1 else f"{times} (once per micro-batch)"
                raise InvariantError(f"device {name}: tensor {tensor} {what} {count} times, not {once}")
    if not _close(device.offloaded_bytes, device.prefetched_bytes, 0.0):
        raise InvariantError(f"device {name}: offloaded {device.offloaded_bytes!r} bytes but "
                             f"prefetched {device.prefetched_bytes!r}")
    for tensor in planned:  # the last micro-batch's (each overwrites the one before)
        layer = first_need[tensor]
        ready = device.prefetch_ready.get(tensor, math.inf)
        started = device.backward_start.get(layer, -math.inf)
        if ready > started:
            raise InvariantError(
                f"device {name}: backward of layer {layer} started at t={started!r} s, before "
                f"its input tensor {tensor} was prefetched (t={ready!r} s)"
            )


def _check_stores(record) -> None:
    topology = record.inputs.topology
    for store, used in record.store_end_bytes.items():
        peak = record.store_peak_bytes.get(store, used)
        resident = record.store_resident_bytes.get(store, 0.0)
        if not _close(used, resident, peak):
            raise InvariantError(f"backing store {store}: ends the iteration holding {used!r} bytes, "
                                 f"not the {resident!r} it keeps across iterations")
        capacity = topology.memory_capacity(store)
        if peak > capacity * (1 + RELATIVE_SLACK):
            raise InvariantError(
                f"backing store {store}: held {peak!r} bytes, over its capacity of {capacity!r}"
            )


def _check_class_bytes(record) -> None:
    """:func:`_check_channel_bytes` per class of channels (:func:`expected_class_bytes`):
    a class's members carried what its first did (the flow network's accounting), so
    the class carried that times its members."""
    carried = record.network.bytes_by_resource
    classes = record.resource_classes
    size = Counter(classes.values())  # each class's first -> its members
    expected = expected_class_bytes(record)
    channels = record.inputs.topology.channels
    # Each class's first (the others are checked with it) and each channel of no class:
    # none where the classes list every channel first, in order (read in order, not
    # looked up one by one: 1.6M channels at 131,072 devices).
    every = len(classes) >= len(channels) and all(map(eq, classes, channels))  # stops at the first difference
    unclassed = () if every else filterfalse(classes.__contains__, channels)
    for channel in chain(filter(channels.__contains__, size), unclassed):
        members = size.get(channel, 1)
        got, want = carried.get(channel, 0.0) * members, expected.get(channel, 0.0)
        if not _close(got, want, max(want, 1.0)):
            raise InvariantError(
                f"channel {channel}: carried {got!r} bytes, but the iteration's collective steps and transfers "
                f"should move {want!r} (in all, over its class of {members} alike channels; a step or transfer "
                f"dropped, repeated or cut)")
