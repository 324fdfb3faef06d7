"""One simulated iteration -> the result mapping of ``mcdla sim`` (README.md).

Busy times (Fig. 11) are averaged over devices: compute is the time a device's PE
array is busy (recompute included); sync is the time a collective is in flight;
virtualization is the time the device's DMA engines move feature maps. ``recompute_s``
is the part of compute spent rebuilding feature maps in backward (cheap layers,
activation checkpointing). ``comm_s`` is the time communication of each parallel axis
is in flight: ``dp`` (gradient reductions, ZeRO's gathers), ``tp`` (tensor parallelism,
and the paper's model-parallel mode), ``pp`` (sends between pipeline stages). Exposed time
of sync or virtualization is its busy time not covered by the device's compute:
the part that compute does not hide. All numbers are in base units.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any, Iterable, Mapping

from mcdla.metrics.intervals import difference_measure, measure, union
from mcdla.sim.flowstats import ByClass
from mcdla.sim.records import AXES

__all__ = ["summarize", "samples_per_s", "link_bytes", "link_classes", "LINK_LIST_DEVICES"]

# Above this many devices a result sums its link counters up per class of link
# (``link_classes``) instead of listing every directed link (``link_bytes``), unless
# asked for all (``--links``, ``--exact``). A 4,096-device ring already has 16,384
# directed links (a 100,000-GPU fat tree millions): a list nobody reads, whose
# building and writing grew to a second and more of a 16,384-device run
# (docs/performance.md). Every design shipped and studied below it keeps its list.
LINK_LIST_DEVICES = 4096


def samples_per_s(batch: int, time_s: float) -> float:
    """Training throughput: the batch over the iteration time (NaN without a time)."""
    return batch / time_s if time_s else math.nan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def link_bytes(topology, bytes_by_resource: dict[str, float]) -> dict[str, float]:
    """Bytes per directed node pair ("D0>M0"), summed over parallel links, every link listed."""
    return {pair: sum(_values_of(bytes_by_resource, channels))
            for pair, channels in topology.directed_links().items()}


def _tiers(topology) -> dict[str, int]:
    """Each fabric switch's hops from the nearest device (devices 0): its tier (an
    NVSwitch or rail leaf 1, a pod spine 2, a core 3), a breadth-first search from every
    device at once; {} without fabric switches (no tiers to tell apart)."""
    if not topology.fabric_switches:
        return {}
    adjacency = topology.graph.adj
    tier = dict.fromkeys(topology.devices, 0)
    frontier, t = list(topology.devices), 0
    while frontier:
        t += 1
        nxt = [peer for node in frontier for peer in adjacency[node] if peer not in tier]
        for peer in nxt:
            tier.setdefault(peer, t)
        frontier = [peer for peer in dict.fromkeys(nxt) if tier[peer] == t]
    return tier


def _values_of(bytes_by_resource: Mapping[str, float], resources) -> Iterable[float]:
    """Each of ``resources``' bytes (0 if none): with rank symmetry read from its class
    (:class:`~mcdla.sim.flowstats.ByClass`), not from a mapping listing every member."""
    if isinstance(bytes_by_resource, ByClass):
        return bytes_by_resource.values_of(resources)
    return map(bytes_by_resource.get, resources, repeat(0.0))


def link_classes(topology, bytes_by_resource: dict[str, float]) -> dict[str, dict[str, float]]:
    """The directed links of :func:`link_bytes` in classes of the same kind and tier at
    both ends and link type (``"spine2>spine3:isl"``: a pod spine's uplinks to the core;
    devices, memory-nodes, CPU sockets and PCIe switches by kind alone): per class the
    directed links (``count``) and the ``min``, ``mean`` and ``max`` of their bytes.
    Linear in the channels, with no per-link name built."""
    graph_nodes = topology.graph.nodes
    tiers = _tiers(topology)
    label: dict[str, str] = {}
    for node, kind in graph_nodes(data="kind"):
        if kind == "fabric":
            kind = ("spine" if graph_nodes[node].get("spine") else "fabric") + str(tiers.get(node, 0))
        label[node] = kind
    pairs: dict[tuple[str, str], float] = {}
    get = pairs.get
    for channel, size in zip(topology.channels.values(), _values_of(bytes_by_resource, topology.channels)):
        key = (channel.src, channel.dst)
        pairs[key] = get(key, 0.0) + size
    alias = {}
    for a, b, link, _count in topology.physical_links:
        alias[(a, b)] = alias[(b, a)] = link
    classes: dict[tuple[str, str, str], list] = {}
    for (src, dst), size in pairs.items():
        key = (label[src], label[dst], alias.get((src, dst), ""))
        entry = classes.get(key)
        if entry is None:
            classes[key] = [1, size, size, size]
        else:
            entry[0] += 1
            entry[1] += size
            if size < entry[2]:
                entry[2] = size
            elif size > entry[3]:
                entry[3] = size
    # The mean clamped to [min, max]: n equal sizes summed in floating point can come out a
    # rounding above n times their size.
    return {f"{a}>{b}:{link}": {"count": n, "min": low, "mean": min(max(total / n, low), high), "max": high}
            for (a, b, link), (n, total, low, high) in sorted(classes.items())}


def comm_by_axis(record) -> dict[str, float]:
    """Time some communication of each parallel axis is in flight (dp, tp, pp, ep): its
    collectives, and for pp the sends between stages; overlaps within an axis count once."""
    spans: dict[str, list] = {axis: [] for axis in AXES}
    for c in record.collectives:
        spans[c.axis].append((c.start_s, c.end_s))
    spans["pp"] += record.pipeline_sends
    return {axis: measure(found) for axis, found in spans.items()}


def _links(record, every: bool) -> dict[str, Any]:
    """``link_bytes`` (every directed link), or ``link_classes`` for a run of more than
    :data:`LINK_LIST_DEVICES` devices that asked neither for every link nor for
    every rank (``--exact``: its point is the full detail)."""
    topology, carried = record.inputs.topology, record.network.bytes_by_resource
    if every or record.inputs.execution.exact or len(topology.devices) <= LINK_LIST_DEVICES:
        return {"link_bytes": link_bytes(topology, carried)}
    return {"link_classes": link_classes(topology, carried)}


def summarize(record, wall_s: float, links: bool = False) -> dict[str, Any]:
    """The result mapping of one iteration's record; ``links``: every directed link's
    bytes however large the run (else classes of links past :data:`LINK_LIST_DEVICES`)."""
    topology, workload, execution = record.inputs.topology, record.inputs.workload, record.inputs.execution
    stats = record.network
    sync = union((c.start_s, c.end_s) for c in record.collectives)
    compute, recompute, virt, exposed_sync, exposed_virt = [], [], [], [], []
    for _, device, copies in record.distinct_devices():  # devices of a class did the same (rank symmetry)
        busy = union(device.compute)
        compute += [measure(busy)] * copies
        recompute += [measure([c for c in device.compute if c.kind == "recompute"])] * copies
        virt += [measure(device.virtualization)] * copies
        exposed_sync += [difference_measure(sync, busy)] * copies
        exposed_virt += [difference_measure(device.virtualization, busy)] * copies
    time_s = record.iteration_time_s
    socket_avg = {
        port: stats.bytes_by_resource.get(port, 0.0) / time_s if time_s > 0 else 0.0
        for port in record.port_peak_Bps
    }
    busiest = max(socket_avg, key=lambda p: (socket_avg[p], record.port_peak_Bps[p]), default=None)
    notes = []
    if not topology.memory_nodes:
        notes.append(f"policy {execution.policy} ignored: {topology.name} has no memory-nodes")
    if not record.virtualize:
        why = ("feature maps placed in hbm" if execution.place.activations == "hbm"
               else "disabled" if not execution.training.virtualization else f"{topology.name} has no backing store")
        notes.append(f"memory virtualization off: {why}")
    devices = record.distinct_devices()
    copies = sum(c for _, _, c in devices)
    t, p = execution.tensor_parallel, execution.pipeline_parallel
    return {
        "topology": topology.name,
        "policy": execution.policy,
        "memory_nodes": len(topology.memory_nodes),  # the policy places pages only on memory-nodes
        "workload": workload.name,
        "parallel": execution.parallel,
        "batch": execution.batch,
        "devices": len(topology.devices),
        # The parallel layout: degrees of tensor, pipeline and data parallelism (data-parallel
        # training; model-parallel splits every layer over all devices), micro-batches, ZeRO.
        "layout": {"tensor": t, "pipeline": p,
                   "data": len(topology.devices) // (t * p) if execution.parallel == "data" else 1,
                   "micro_batches": execution.training.micro_batches, "zero": execution.zero},
        # What left the device: the offload policy that ran (none: virtualization off), the
        # feature maps it offloads, and the bytes a device sent out, on average.
        "offload": execution.offload if record.virtualize else "none",
        "offloaded_maps": sum(record.plan.offloaded) if record.virtualize else 0,
        "offloaded_bytes": sum(d.offloaded_bytes * c for _, d, c in devices) / copies if copies else 0.0,
        "iteration_time_s": time_s,
        "busy_s": {
            "compute": _mean(compute),
            "sync": measure(sync),
            "virtualization": _mean(virt),
        },
        "exposed_s": {"sync": _mean(exposed_sync), "virtualization": _mean(exposed_virt)},
        "comm_s": comm_by_axis(record),
        "recompute_s": _mean(recompute),
        "cpu_mem_bw_Bps": {
            "avg": socket_avg[busiest] if busiest else 0.0,
            "peak": record.port_peak_Bps[busiest] if busiest else 0.0,
        },
        "device_mem_peak_bytes": max(d.memory_peak_bytes for _, d, _ in record.distinct_devices()),
        "remote_mem_bytes": sum(record.store_peak_bytes.values()),
        **_links(record, links),
        "events": record.events,
        "rank_classes": len(record.rank_classes or record.devices),
        "wall_s": wall_s,
        "notes": notes,
        **({"groups": record.groups} if record.groups else {}),
    }
