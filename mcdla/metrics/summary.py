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
from array import array
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


def link_classes(topology, bytes_by_resource: dict[str, float], orbits: tuple = ()) -> dict[str, dict[str, float]]:
    """The directed links of :func:`link_bytes` in classes of the same kind and tier at
    both ends and link type (``"spine2>spine3:isl"``: a pod spine's uplinks to the core;
    devices, memory-nodes, CPU sockets and PCIe switches by kind alone): per class the
    directed links (``count``), the ``min``, ``mean`` and ``max`` of their bytes, and
    ``bw_Bps``, the slowest of them's bandwidth (its parallel channels summed), so that
    a reader can tell how long the busiest link of a tier was busy.
    Linear in the channels, with no per-link name built; with rank symmetry's
    ``orbits`` (Symmetry.orbits) linear in those where that gives the same numbers
    (:func:`_by_orbit`)."""
    graph_nodes = topology.graph.nodes
    tiers = _tiers(topology)
    found = _by_orbit(topology, bytes_by_resource, orbits, tiers) if orbits else None
    if found is not None:
        return _classes_named(found)
    label = {node: _label(graph_nodes, tiers, node, kind) for node, kind in graph_nodes(data="kind")}
    # Each directed pair numbered in the order met (by its source, then its end: no tuple
    # a pair), its bytes and bandwidth summed channel by channel in arrays: at 131,072
    # GPUs 2.6M pairs, which as two dicts of floats keyed by tuples made a run's peak.
    number: dict[str, dict[str, int]] = {}
    srcs: list[str] = []
    dsts: list[str] = []
    sizes, rates = array("d"), array("d")
    for channel, size in zip(topology.channels.values(), _values_of(bytes_by_resource, topology.channels)):
        known = number.setdefault(channel.src, {})
        n = known.get(channel.dst)
        if n is None:
            known[channel.dst] = len(sizes)
            srcs.append(channel.src)
            dsts.append(channel.dst)
            sizes.append(0.0 + size)  # 0.0 + : the sums a dict from 0.0 made, to the bit (-0.0 too)
            rates.append(0.0 + channel.bw_Bps)
        else:
            sizes[n] += size
            rates[n] += channel.bw_Bps
    del number
    alias: dict[str, dict[str, str]] = {}  # a -> b -> the type of a link between them (no tuple a pair)
    for a, b, link, _count in topology.physical_links:
        alias.setdefault(a, {})[b] = alias.setdefault(b, {})[a] = link
    classes: dict[tuple[str, str, str], list] = {}
    for src, dst, size, bw in zip(srcs, dsts, sizes, rates):
        key = (label[src], label[dst], alias.get(src, {}).get(dst, ""))
        entry = classes.get(key)
        if entry is None:
            classes[key] = [1, size, size, size, bw]
        else:
            entry[0] += 1
            entry[1] += size
            if size < entry[2]:
                entry[2] = size
            elif size > entry[3]:
                entry[3] = size
            entry[4] = min(entry[4], bw)
    return _classes_named(classes)


def _label(graph_nodes, tiers: dict[str, int], node: str, kind: str | None) -> str | None:
    """A node's part of a link class's name: its kind, a fabric switch's tier with it."""
    if kind == "fabric":
        return ("spine" if graph_nodes[node].get("spine") else "fabric") + str(tiers.get(node, 0))
    return kind


def _classes_named(classes: dict[tuple[str, str, str], list]) -> dict[str, dict[str, float]]:
    # The mean clamped to [min, max]: n equal sizes summed in floating point can come out a
    # rounding above n times their size.
    return {f"{a}>{b}:{link}": {"count": n, "min": low, "mean": min(max(total / n, low), high), "max": high,
                                "bw_Bps": bw}
            for (a, b, link), (n, total, low, high, bw) in sorted(classes.items())}


def _by_orbit(topology, bytes_by_resource, orbits: tuple, tiers: dict[str, int]) -> dict | None:
    """:func:`link_classes`' per-class entries from the orbits of channels (rank
    symmetry's: each orbit's first member and its members, every member of one class,
    so of its first's bytes: checked), or None where that could differ from the pass over
    every channel. A directed pair's orbit is its first pair's channels' orbits, of one size,
    as many as its parallel channels, and of equal bytes (summed in any order, the same);
    a class's pairs must all carry the same bytes, so that their sum in channel order is
    that value added as many times: the same float. A pair's link type from its edges."""
    if not isinstance(bytes_by_resource, ByClass):
        return None
    channels, graph = topology.channels, topology.graph
    pairs: dict[tuple[str, str], list] = {}  # a first pair -> [its channels' bytes, their orbits' size, orbits, bandwidth]
    covered = 0
    for name, members in zip(*orbits):
        channel = channels.get(name)
        if channel is None:
            continue  # a port
        if members > 1 and not bytes_by_resource.classed(name):
            return None  # its members' bytes not known to be its first's
        covered += members
        entry = pairs.setdefault((channel.src, channel.dst), [set(), members, 0, 0.0])
        entry[0].add(bytes_by_resource.get(name, 0.0))
        entry[2] += 1
        entry[3] += channel.bw_Bps
        if entry[1] != members:
            return None
    if covered != len(channels):
        return None
    graph_nodes = graph.nodes
    classes: dict[tuple[str, str, str], list] = {}
    for (src, dst), (sizes, members, count, bw) in pairs.items():
        edges = [*graph[src][dst].values(), *(graph[dst][src].values() if graph.has_edge(dst, src) else ())]
        links = {data.get("link_type") for data in edges}
        if len(sizes) != 1 or count != len(graph[src][dst]) or len(links) != 1:
            return None
        size = 0.0
        for _ in range(count):
            size += next(iter(sizes))
        key = (_label(graph_nodes, tiers, src, graph_nodes[src].get("kind")),
               _label(graph_nodes, tiers, dst, graph_nodes[dst].get("kind")), links.pop() or "")
        entry = classes.setdefault(key, [0, size, size, size, bw])
        if entry[2] != size:
            return None  # a class's pairs differ: their sum depends on the order
        entry[0] += members
        entry[4] = min(entry[4], bw)  # an orbit's pairs are images of its first: the same links
    for entry in classes.values():  # n equal sizes added one after another, as the pass adds them
        total = entry[1]
        for _ in range(entry[0] - 1):
            total += entry[1]
        entry[1] = total
    return classes


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
    return {"link_classes": link_classes(topology, carried, record.resource_orbits)}


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
