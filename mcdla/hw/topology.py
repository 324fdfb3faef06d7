"""A design point built into a graph: channels, memory ports, rings and backing routes.

:func:`load_topology` reads a topology YAML (see :mod:`mcdla.config.topology` for the
format), builds a :class:`networkx.MultiDiGraph` whose nodes are device-nodes,
memory-nodes, PCIe switches and CPU sockets and whose edges are directed channels
(one per direction of every physical link; parallel links stay separate edges, keyed
by their index), and checks what only the whole graph can show: every link joins
known nodes, no node has more high-bandwidth links than it owns, every ring is a real
cycle, and no ring crosses a directed channel twice.

Rings are bound to channels here, once: a listed ring becomes one directed ring per
direction (unless the file lists directed rings), and each hop takes the parallel
link in that direction that the fewest rings use so far, so concurrent rings spread
over parallel links and share only when there are more rings than links (HC-DLA's
3-cube). The :class:`Topology` also states what the design gives without simulating:
the per-device collective bandwidth (all directed rings active, max-min fair) and the
per-device memory-virtualization bandwidth (every device offloading at once).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import networkx as nx

from mcdla.collector import collection_paused
from mcdla.config import loader
from mcdla.config.hardware import (
    DeviceSpec,
    HostSpec,
    LinkSpec,
    MemoryNodeSpec,
    NvmeSpec,
    SwitchSpec,
)
from mcdla.config.nodes import NODE_KINDS, PLACED_KINDS, SPINE_KEY, SPINE_PREFIX
from mcdla.config.placement import PLACEMENTS
from mcdla.config.schema import Where
from mcdla.config.generators import TooLarge
from mcdla.config.topology import TopologyDoc, read_topology_doc
from mcdla.hw.maxmin import max_min_rates
from mcdla.hw.network import Channel, Port, Ring, Subflow, channel_id, reduction_port
from mcdla.hw.binding import bind_rings
from mcdla.hw.tiers import TIER_KINDS, MemoryTier, nearest_stores
from mcdla.hw.cache import Cache
from mcdla.hw.fabric import Fabric
from mcdla.hw.translation import NodeCells, Translation
from mcdla.hw.wiring import LinkGraph, add_links, check_budgets, shared_nics
from mcdla.hw.budget import check_nodes

__all__ = ["Topology", "load_topology", "build_topology", "DIRECTIONS"]

DIRECTIONS = ("offload", "prefetch")


@dataclass(frozen=True)
class Topology:
    """One design point, ready for the flow network and the training driver."""

    name: str
    description: str
    graph: nx.MultiDiGraph = field(repr=False, compare=False)
    devices: tuple[str, ...]
    memory_nodes: tuple[str, ...]
    sockets: tuple[str, ...]
    switches: tuple[str, ...]
    channels: Mapping[str, Channel] = field(repr=False)
    ports: Mapping[str, Port] = field(repr=False)
    rings: tuple[Ring, ...] = field(repr=False)
    backing: str
    serves: Mapping[str, tuple[str, ...]] = field(repr=False)
    device: DeviceSpec
    memory_node: MemoryNodeSpec | None
    host: HostSpec | None
    links: Mapping[str, LinkSpec] = field(repr=False)
    # Bytes of device memory a workload may use; inf for the oracle (no virtualization).
    device_memory_bytes: float
    # Undirected physical links as (a, b, link type alias, parallel count), file order.
    physical_links: tuple[tuple[str, str, str, int], ...] = field(repr=False)
    # The listed (undirected or directed) rings as node cycles, for drawings and docs.
    ring_cycles: tuple[tuple[str, ...], ...] = field(repr=False)
    source: str = ""
    collective: str = "ring"  # the design's default collective algorithm (mcdla.sim.collectives)
    offload: str = "offload_all"  # the design's default offload policy (mcdla.sim.offload)
    fabric_switches: tuple[str, ...] = ()  # the leaf switches FS0.., and spines SP0.. after them
    fabric_switch: SwitchSpec | None = None
    spine_switch: SwitchSpec | None = None  # the spines' part (None: as fabric_switch)
    generator: str = ""  # the generator that wrote the graph ("": a hand-written file)
    # Channel -> the ports a flow on it also loads: a shared NIC's (``nics`` in the file).
    nic_ports: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    nvme: NvmeSpec | None = None  # the NVMe drives' part
    nvme_drives: tuple[str, ...] = ()  # NV0..: the nvme tier's stores
    # The routing service over the graph (home switch, exit, rail, route(i, j)): hw/fabric.py.
    fabric: Fabric | None = field(default=None, repr=False, compare=False)
    # The generator's translation onto itself (mcdla.hw.translation; None: none handed over).
    translation: Translation | None = field(default=None, repr=False, compare=False)
    node_cells: NodeCells | None = field(default=None, repr=False, compare=False)  # a cluster's node (the same)
    # What the load derives and asks again (hw/cache.py): the stores' graph searches, each (device, tier,
    # policy, direction)'s stripes, the tiers (asked at every DMA), rings by name, rates, bound rings' values.
    cache: Cache = field(default_factory=Cache, repr=False, compare=False)

    # -- capacities and routes -------------------------------------------------------

    def reverse_of(self, ring: Ring) -> Ring | None:
        """The ring running ``ring``'s cycle the other way (:attr:`Ring.reverse`), or None."""
        if not ring.reverse:
            return None
        named = self.cache.get(("rings by name",), lambda: {r.name: r for r in self.rings})
        return named.get(ring.reverse)

    def capacities(self) -> dict[str, float]:
        """Channel and port id -> bytes/s, the flow network's resources (a copy; read once per load)."""
        return dict(self.read_capacities())

    def read_capacities(self) -> Mapping[str, float]:
        """:meth:`capacities` read only, not copied: for what only reads them (the rank
        classes; a copy is 117 MB at 131,072 GPUs' 5.3M resources)."""
        return MappingProxyType(self.cache.get(("capacities",), lambda: {  # a port's id over a channel's, as ever
            **{cid: ch.bw_Bps for cid, ch in self.channels.items()}, **{pid: p.bw_Bps for pid, p in self.ports.items()}}))

    def _capacities_of(self, paths) -> dict[str, float]:
        """:meth:`capacities` of only the resources on ``paths`` (flow -> resources), for
        a max-min solve over a few of a cluster's million channels: the same rates, as
        a resource on no path is never asked and one on a path is found the same way
        (a port's bandwidth over a channel's of the same id, as in capacities)."""
        caps: dict[str, float] = {}
        channels, ports = self.channels, self.ports
        for path in paths.values():
            for r in path:
                if r not in caps:
                    if r in ports:
                        caps[r] = ports[r].bw_Bps
                    elif r in channels:
                        caps[r] = channels[r].bw_Bps
        return caps

    def directed_links(self) -> dict[str, tuple[str, ...]]:
        """Directed node pair (``"D0>M0"``) -> its parallel channels, pairs sorted: the
        unit in which reports and traces show link traffic."""
        pairs: dict[str, list[str]] = {}
        for cid, channel in self.channels.items():
            pairs.setdefault(f"{channel.src}>{channel.dst}", []).append(cid)
        return {pair: tuple(pairs[pair]) for pair in sorted(pairs)}

    def backing_routes(self, device: str, policy: str, direction: str) -> tuple[Subflow, ...]:
        """The stripes of one DMA between ``device`` and its backing store: the routes
        of the default tier (:meth:`tier_routes`). No backing store: ``()``."""
        if self.backing == "none":
            self._check_route(device, policy, direction)
            return ()
        return self.tier_routes(device, self.default_tier_kind, policy, direction)

    def tier_routes(self, device: str, tier: "MemoryTier | str", policy: str, direction: str) -> tuple[Subflow, ...]:
        """The stripes of one DMA between ``device`` and its stores in ``tier`` (a
        :class:`~mcdla.hw.tiers.MemoryTier` of :attr:`tiers`, or its kind), ``offload``
        (to the tier) or ``prefetch`` (back).

        The placement policy (:data:`~mcdla.config.placement.PLACEMENTS`) says which of
        the stores serving the device hold what share; each store's share is striped
        evenly over the parallel links to it. Each stripe's path ends (offload) or
        starts (prefetch) on the store's memory port, and its latency is the links'
        plus the store's access latency that way.
        """
        kind = getattr(tier, "kind", tier)
        key = ("stripes", device, kind, policy, direction)
        cached = self.cache.peek(key)  # checked when first asked: a DMA asks at every transfer
        if cached is not None:
            return cached
        placement = self._check_route(device, policy, direction)
        found = self.tier(kind)
        routes: list[Subflow] = []
        for store, share in placement().shares(found.serves[device]):
            routes.extend(self._stripes(device, store, share, direction, found))
        cached = self.cache.put(key, tuple(routes))
        return cached

    def _check_route(self, device: str, policy: str, direction: str):
        """The placement policy named ``policy``, once device and direction are checked."""
        placement = PLACEMENTS.get(policy, key="policy")  # an unknown name is an InputError
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if device not in self.serves and device not in self.devices:  # serves: a dict, the devices a tuple
            raise ValueError(f"{device!r} is not a device of topology {self.name!r}")
        return placement

    # -- memory tiers (mcdla.hw.tiers) -------------------------------------------------

    @property
    def default_tier_kind(self) -> str | None:
        """The kind of the tier the backing store forms (None: no backing store)."""
        if self.backing == "none":
            return None
        return "host" if self.backing == "host" else self.memory_node.tier

    @property
    def tiers(self) -> tuple[MemoryTier, ...]:
        """The memory tiers after HBM, nearest first (:data:`~mcdla.hw.tiers.TIER_KINDS`)."""
        return tuple(t for t in (self._tier(kind) for kind in TIER_KINDS) if t is not None)

    def tier(self, kind: str) -> MemoryTier:
        """The tier of ``kind``; a ValueError naming the tiers there are if there is none."""
        found = self._tier(kind)
        if found is None:
            have = ", ".join(t.kind for t in self.tiers) or "none"
            raise ValueError(f"topology {self.name!r} has no {kind!r} tier; its tiers: {have}")
        return found

    def _tier(self, kind: str) -> MemoryTier | None:
        return self.cache.get(("tier", kind), lambda: self._derive_tier(kind))  # derived once, when first asked

    def _derive_tier(self, kind: str) -> MemoryTier | None:
        """The tier of ``kind`` from the nodes: the backing store's ``serves``, or each
        device's nearest stores of the kind (None if some device reaches none)."""
        if kind == self.default_tier_kind:
            serves = self.serves
        elif kind in ("host", "nvme"):
            candidates = frozenset(self.sockets if kind == "host" else self.nvme_drives)
            if not candidates:
                return None
            relays = _relays(self.graph, self.cache)
            serves = {d: nearest_stores(self.graph, d, candidates, relays) for d in self.devices}
            if not all(serves.values()):
                return None
        else:  # memory-nodes and expanders: their groups and ports follow the backing store's serves
            return None
        stores = tuple(dict.fromkeys(s for d in self.devices for s in serves[d]))
        ends = set(stores)  # the types of the links into the stores: of the physical links ending there
        links = sorted({alias for a, b, alias, _ in self.physical_links if a in ends or b in ends})
        read = write = 0.0
        if kind in ("memory_node", "cxl"):
            read = write = self.memory_node.mem_latency  # the DIMMs' access latency (Table II)
        elif kind == "nvme":
            read, write = self.nvme.read_latency, self.nvme.write_latency
        return MemoryTier(kind=kind, stores=stores, serves=serves,
                          capacity_bytes=float(sum(self.memory_capacity(s) for s in stores)),
                          links=tuple(links), read_latency_s=read, write_latency_s=write)

    def _stripes(self, device: str, store: str, share: float, direction: str, tier: MemoryTier) -> list[Subflow]:
        hops = _route(self.graph, device, store, self.cache)
        counts = [self.graph.number_of_edges(a, b) for a, b in hops]
        stripes = max(counts)
        port = tier.port(store, device, direction)
        result = []
        home = self._stripe_links(device, hops[0], counts[0], direction) if stripes == counts[0] > 1 else None
        for k in range(stripes):
            if direction == "offload":
                chans = [channel_id(a, b, k % n) for (a, b), n in zip(hops, counts)]
                if home:
                    chans[0] = home[k]
                path = tuple(chans) + (port,)
            else:
                chans = [channel_id(b, a, k % n) for (a, b), n in reversed(list(zip(hops, counts)))]
                if home:
                    chans[-1] = home[k]
                path = (port,) + tuple(chans)
            latency = sum(self.channels[c].latency_s for c in chans) + tier.latency_s(direction)
            result.append(Subflow(share=share / stripes, path=path, latency_s=latency, store=store))
        return result

    def _stripe_links(self, device: str, hop: tuple[str, str], links: int, direction: str) -> tuple[str, ...] | None:
        """The ``links`` parallel links between ``device`` and the switch of its route's
        first ``hop``, in the order the design's rings take them there (Ring.home_out,
        home_in: ring k's for stripe k), when its first ``links`` rings take each once;
        else None (stripe k on the k-th). The binding gives a DGX node's 18 rings each
        GPU's 18 NVLinks in its own order: on the k-th link stripe k would share its
        link with another ring on each GPU and split a node's alike ranks into classes
        of one (docs/performance.md, "The memory-centric variant in few classes"). The
        same links, one stripe each: only which stripe takes which."""
        rings = self.cache.get(("rings with home links",), lambda: tuple(r for r in self.rings if any(r.home_out)))
        if len(rings) < links:
            return None
        role, (a, b) = ("home_out", hop) if direction == "offload" else ("home_in", hop[::-1])
        found = []
        for ring in rings[:links]:
            i = ring.position.get(device)
            found.append(getattr(ring, role)[i] if i is not None else "")
        wanted = {channel_id(a, b, k) for k in range(links)}
        return tuple(found) if set(found) == wanted else None

    def memory_capacity(self, store: str) -> float:
        """Bytes a store holds: a whole memory-node (``"M0"``, shared by its clients),
        one client's group of it (``"M0/D0"``: capacity / groups), a CPU socket's
        DRAM (``"CPU0"``, shared by the devices it serves) or an NVMe drive (``"NV0"``)."""
        node, _, client = store.partition("/")
        if self.fabric is not None:  # the graph as read once: asked per store (131,072 on a ring)
            kind = self.fabric.kinds.get(node)
        else:
            kind = self.graph.nodes[node]["kind"] if node in self.graph else None
        if kind == "memory" and self.memory_node is not None:
            whole = self.memory_node.capacity_bytes
            return whole / self.memory_node.groups if client else whole
        if kind == "cpu" and self.host is not None:
            return self.host.socket_mem_capacity
        if kind == "nvme":
            return self.nvme.capacity
        raise ValueError(f"{store!r} is not a backing store of topology {self.name!r}")

    # -- what the design gives, without simulating ------------------------------------

    @property
    def collective_bw_Bps(self) -> float:
        """Per device: the sum of every directed ring's max-min rate, all rings active."""
        if not self.rings:
            return 0.0
        paths = {r.name: r.channels for r in self.rings}
        rates = max_min_rates(paths, self._capacities_of(paths))
        return float(sum(rates.values()))

    def virtualization_rate_Bps(self, policy: str = "bw_aware", direction: str = "offload") -> float:
        """Per device: the rate of one DMA when every device moves data at once.

        A DMA's stripes run concurrently, each at its max-min fair rate; it ends when
        its slowest stripe (relative to its share) ends. The slowest device counts.
        """
        if self.backing == "none":
            return 0.0
        key = ("virtualization rate", policy, direction)  # a planner asks once per candidate
        return self.cache.get(key, lambda: self._virtualization_rate(policy, direction))

    def _virtualization_rate(self, policy: str, direction: str) -> float:
        devices = self.devices
        if self.translation is not None:  # one cell, if its copies share nothing: the same rates (docs/model.md)
            cell = self.translation.cell(devices)
            paths, shares = self._offload_flows(cell, policy, direction)
            if self.translation.apart(self._capacities_of(paths), lambda r: r in self.channels or r in self.ports):
                devices = cell
        if devices is self.devices:
            paths, shares = self._offload_flows(devices, policy, direction)
        rates = max_min_rates(paths, self._capacities_of(paths))
        per_device = {d: math.inf for d in devices}
        for key, rate in rates.items():
            per_device[key[0]] = min(per_device[key[0]], rate / shares[key])
        return float(min(per_device.values()))

    def _offload_flows(self, devices, policy: str, direction: str):
        """(each of ``devices``' stripes -> its path, -> its share), keyed (device, stripe)."""
        paths: dict[tuple[str, int], tuple[str, ...]] = {}
        shares: dict[tuple[str, int], float] = {}
        for d in devices:
            for k, sub in enumerate(self.backing_routes(d, policy, direction)):
                paths[(d, k)] = sub.path
                shares[(d, k)] = sub.share
        return paths, shares

    @property
    def virtualization_bw_Bps(self) -> float:
        """Per device, ``bw_aware`` policy, all devices offloading at once."""
        return self.virtualization_rate_Bps("bw_aware", "offload")

    def summary(self) -> dict[str, Any]:
        """One row of ``mcdla topologies``."""
        return {
            "name": self.name,
            "devices": len(self.devices),
            "memory_nodes": len(self.memory_nodes),
            "rings": len(self.rings),
            "collective": self.collective,
            "offload": self.offload,
            "collective_bw_Bps": self.collective_bw_Bps,
            "virtualization_bw_Bps": self.virtualization_bw_Bps,
        }


def _store_path(graph: nx.MultiDiGraph, device: str, store: str, cache: Cache) -> list[tuple[str, str]]:
    """The hops from ``device`` to ``store``, relaying only through the kinds that relay a
    DMA (:attr:`~mcdla.config.nodes.NodeKind.relays_dma`: PCIe and fabric switches).

    A DMA to the backing store never relays through another device or memory-node:
    those forward nothing but ring traffic.
    """
    relays = _relays(graph, cache)
    view = nx.subgraph_view(graph, filter_node=lambda n: n in relays or n == device or n == store)
    try:
        nodes = nx.shortest_path(view, device, store)
    except nx.NetworkXNoPath:
        return []
    return list(zip(nodes[:-1], nodes[1:]))


def _relays(graph: nx.MultiDiGraph, cache: Cache) -> frozenset:
    """The nodes a DMA to a store may relay through (:attr:`~mcdla.config.nodes.NodeKind.relays_dma`:
    PCIe and fabric switches); listing every node per route made loading quadratic in
    the devices: once per load."""
    return cache.get(("relays",), lambda: frozenset(n for n, kind in graph.nodes(data="kind")
                                                    if NODE_KINDS.get(kind).relays_dma))


def _route(graph: nx.MultiDiGraph, device: str, store: str, cache: Cache | None = None) -> list[tuple[str, str]]:
    """:func:`_store_path`, searched once per (device, store) and load (kept in the
    topology's ``cache``; none given: kept nowhere, as for a changed copy of the graph),
    and not at all for a store linked directly to the device (that link is the one
    shortest path): the search lists every node of the graph, which made loading
    quadratic in the devices."""
    cache = Cache() if cache is None else cache
    def search() -> list[tuple[str, str]]:
        if graph.has_edge(device, store):
            return [(device, store)]
        return _store_path(graph, device, store, cache)

    return list(cache.get(("route", device, store), search))


def load_topology(name_or_path: str, sets: Sequence[tuple[str, Any]] = (), *,
                  max_nodes: int | None = None) -> Topology:
    """A shipped topology by name, or a topology file by path, with ``sets`` applied.

    ``sets`` are ``(dotted key, value)`` overrides applied after preset resolution
    (``device.hbm_bw``, ``links.pcie.bw``, ``links.pcie=pcie4_x16``, ...). ``max_nodes``:
    the most graph nodes built (default: what the work budget's memory holds,
    :func:`mcdla.hw.budget.node_cap`); past it a :class:`~mcdla.config.generators.TooLarge`.
    """
    path = loader.find_input(name_or_path, "topologies", "topology")
    file = loader.display_path(path)
    with collection_paused():
        return build_topology(read_topology_doc(path, sets, file), file, max_nodes)


def _names(spec: int | tuple[str, ...], prefix: str, where: Where) -> tuple[str, ...]:
    if isinstance(spec, int):
        if spec < 0:
            raise where.error(f"must be >= 0, got {spec}")
        return tuple(f"{prefix}{i}" for i in range(spec))
    return tuple(spec)


def _placed(doc: TopologyDoc, made: Where, top: Where) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each kind's nodes the file places (:data:`~mcdla.config.nodes.NODE_KINDS` with a
    file key) as (kind, key, names), the spines after the other fabric switches: the
    device-nodes, memory-nodes, PCIe switches, fabric switches, spines, CPU sockets."""
    placed = []
    for name in PLACED_KINDS:
        kind = NODE_KINDS.get(name)
        if kind.key == "host.sockets":  # the host's, a count only
            placed.append((name, kind.key, _names(doc.host.sockets, kind.prefix, top) if doc.host is not None else ()))
            continue
        placed.append((name, kind.key, _names(getattr(doc, kind.key), kind.prefix, made.child(kind.key))))
        if name == "fabric":  # fabric nodes above the others, their role in the fabric (hw/fabric.py)
            placed.append((name, SPINE_KEY, _names(doc.spine_switches, SPINE_PREFIX, made.child(SPINE_KEY))))
    return placed


def _check_memory(doc: TopologyDoc, where: Where, limit: int | None) -> None:
    """Refuses, before any name or edge is built, a graph of more nodes than the work
    budget's memory holds (:func:`mcdla.hw.budget.check_nodes`), naming the largest kind's key."""
    counts = {key: spec if isinstance(spec, int) else len(spec)
              for key, spec in ((NODE_KINDS.get(name).key, getattr(doc, NODE_KINDS.get(name).key, 0))
                                for name in PLACED_KINDS if name != "cpu")}
    counts[SPINE_KEY] = doc.spine_switches if isinstance(doc.spine_switches, int) else len(doc.spine_switches)
    counts["host.sockets"] = doc.host.sockets if doc.host is not None else 0
    largest = max(counts, key=lambda k: counts[k])
    check_nodes(sum(max(0, n) for n in counts.values()), where.child(largest).key, where.file, limit, TooLarge)


def _nodes(placed, top: Where) -> LinkGraph:
    """The graph of the ``placed`` nodes, each with its kind; a name given twice refused."""
    graph = LinkGraph()
    for kind, key, ids in placed:
        before = len(graph)
        graph.add_nodes_from(ids, kind=kind)  # one call a kind: a ring of 131,072 devices has 262,144 nodes
        if len(graph) != before + len(ids):  # a name given twice: the first, as a node-by-node check finds it
            seen = set(itertools.islice(graph, before))
            twice = next(n for n in ids if n in seen or seen.add(n))
            raise top.child(key).error(f"node {twice!r} is defined twice")
    return graph


def build_topology(doc: TopologyDoc, file: str = "<topology>", max_nodes: int | None = None) -> Topology:
    """Builds and validates the graph of ``doc``; ``file`` names it in errors; more than
    ``max_nodes`` graph nodes (default: the work budget's memory's) are refused."""
    top = Where(file)
    # Errors in what a generator wrote name the generator: the file has no such keys.
    made = top.child("generator") if doc.generator else top
    _check_memory(doc, made, max_nodes)
    placed = _placed(doc, made, top)  # (kind, its file key, the nodes), in the order they are added
    devices, memory_nodes, switches, fabric, spines, sockets, drives = (nodes for _kind, _key, nodes in placed)
    if not devices:
        raise top.child("devices").error("a topology needs at least one device")
    if memory_nodes and doc.memory_node is None:
        raise top.child("memory_node").error("missing; the topology has memory-nodes")
    if drives and doc.nvme is None:
        raise top.child("nvme").error("missing; the topology has NVMe drives")
    if (fabric or spines) and doc.fabric_switch is None:
        raise top.child("fabric_switch").error("missing; the topology has fabric switches")
    # Each fabric node's part, and the key that gave it: a spine's own, else the fabric switch's.
    spine_key = "spine_switch" if doc.spine_switch is not None else "fabric_switch"
    parts = {n: (doc.fabric_switch, "fabric_switch") for n in fabric} | \
        {n: (doc.spine_switch or doc.fabric_switch, spine_key) for n in spines}
    specs = {n: spec for n, (spec, _key) in parts.items()}

    graph = _nodes(placed, top)
    for n, spec in specs.items():
        graph.nodes[n]["spec"] = spec  # a fabric or spine switch's part (SwitchSpec)
        graph.nodes[n]["spine"] = n in spines  # a spine: above the domains' switches, a way out of them

    channels, physical = add_links(graph, doc, specs, made.child("connections"))

    fabric_view, cache = Fabric(graph, channels), Cache()  # the load's routing service and its one cache
    check_budgets(fabric_view, doc, parts, made)
    translation = Translation.of(graph, doc.translation) if doc.translation else None  # the generator's symmetry
    rings, cycles = bind_rings(graph, doc, channels, top, fabric_view, cache, translation)
    serves, ports = _backing(graph, doc, devices, memory_nodes, sockets, made, cache, fabric_view)
    for hub, spec in specs.items():  # the in-switch reduction engine, shared by all that reduce there
        if spec.reduction_Bps is not None:
            ports[reduction_port(hub)] = Port(reduction_port(hub), hub, spec.reduction_Bps)
    nic_ports = shared_nics(graph, channels, doc.nics, ports, made.child("nics"), rings)
    for v in drives:  # a drive reads and writes at different rates: a port each way
        ports[f"{v}/read"] = Port(f"{v}/read", v, doc.nvme.read_bw)
        ports[f"{v}/write"] = Port(f"{v}/write", v, doc.nvme.write_bw)
    return Topology(
        name=doc.name,
        description=doc.description,
        graph=graph,
        devices=devices,
        memory_nodes=memory_nodes,
        sockets=sockets,
        switches=switches,
        channels=channels,
        ports=ports,
        rings=rings,
        backing=doc.backing,
        serves=serves,
        device=doc.device,
        memory_node=doc.memory_node,
        host=doc.host,
        links=dict(doc.links),
        device_memory_bytes=math.inf if doc.device_memory == "unbounded" else doc.device.hbm_capacity,
        physical_links=tuple(physical),
        ring_cycles=cycles,
        source=file,
        collective=doc.collective,
        offload=doc.offload,
        fabric_switches=fabric + spines,
        fabric_switch=doc.fabric_switch,
        spine_switch=doc.spine_switch,
        generator=doc.generator,
        nic_ports=nic_ports,
        nvme=doc.nvme,
        nvme_drives=drives,
        fabric=fabric_view, cache=cache, translation=translation,
        node_cells=NodeCells(doc.node_cells, doc.leaf_nodes) if doc.node_cells else None,
    )



def _backing(graph, doc: TopologyDoc, devices, memory_nodes, sockets, top: Where, cache: Cache, fab: Fabric):
    """Which stores serve which device, checked, and the memory ports. ``fab``: the graph
    as read once (its nodes' kinds and successors)."""
    where = top.child("serves")
    ports: dict[str, Port] = {}
    for cpu in sockets:
        ports[f"{cpu}/mem"] = Port(f"{cpu}/mem", cpu, doc.host.socket_mem_bw)
    serves: dict[str, tuple[str, ...]] = {}
    if doc.backing == "none":
        if doc.serves:
            raise where.error("backing is 'none': no store serves any device")
        return serves, ports
    want = "cpu" if doc.backing == "host" else "memory"
    known = set(devices)  # a tuple's `in` made this check quadratic in the devices
    for d in doc.serves:
        if d not in known:
            raise where.child(d).error(f"{d!r} is not a device")
    kinds, succ = fab.kinds, fab.succ
    clients: dict[str, list[str]] = {}
    get, kind_of = doc.serves.get, kinds.get  # bound once: 131,072 devices on a generated ring
    for d in devices:
        stores = get(d)
        if not stores:
            raise where.child(d).error(f"missing: backing is {doc.backing!r}, so every device needs a store")
        if len(stores) > 1 and len(set(stores)) != len(stores):
            raise where.child(d).error("a store is listed twice")
        for j, s in enumerate(stores):
            if kind_of(s) != want:
                raise where.child(d).child(j).error(f"{s!r} is not a {NODE_KINDS.get(want).label}")
            if s not in succ[d] and not _route(graph, d, s, cache):  # a store linked to it: that link
                raise where.child(d).child(j).error(f"no link path from {d!r} to {s!r}")
            if s in clients:
                clients[s].append(d)
            else:
                clients[s] = [d]
    if want == "memory":
        spec = doc.memory_node
        share, made = spec.mem_bw / spec.groups, tuple.__new__  # a Port made in C, as wiring's channels
        for m in memory_nodes:
            served = clients.get(m, ())
            if len(served) > spec.groups:
                raise where.error(
                    f"memory-node {m!r} serves {len(served)} devices, more than memory_node.groups = {spec.groups}"
                )
            for d in served:
                # Each client owns one group: an equal share of the DIMM bandwidth.
                name = f"{m}/{d}"
                ports[name] = made(Port, (name, m, share))
    serves = {d: tuple(doc.serves[d]) for d in devices}
    return serves, ports
