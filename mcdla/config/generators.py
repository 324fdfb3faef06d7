"""Topology generators: a few parameters expanded into the nodes, links and stores of a
hand-written topology file.

A topology file may say ``generator: {name: ring, devices: 64, links_per_pair: 3}``
instead of listing its nodes and connections. The generator named by ``name`` (a
:data:`GENERATORS` entry) checks its parameters (a dataclass, so errors name
``generator.<key>``) and returns the keys a hand-written file would have:
``devices``, ``memory_nodes``, ``switches`` (PCIe), ``fabric_switches``, ``spine_switches``,
``connections``, ``backing`` and ``serves``. The file keeps what a generator cannot
know: name, description, the presets (device, memory_node, host, fabric_switch,
spine_switch, links), collective, device_memory. Rings are derived at load time
(:mod:`mcdla.hw.topology`) for every file that lists none; the one generator that
writes them (``rings`` and ``ring_directions``) is a cluster of nodes without a fabric
switch (MC-DLA rings, cube-meshes), for which the derivation has no rule: it joins
the node's own rings, which the node generator knows.

Generators run after presets and ``--set`` overrides are resolved, so they may read
the host's socket count, and ``--set generator.devices=16`` resizes a design.
Node names follow the hand-written convention (``D``, ``M``, ``SW`` for PCIe
switches, ``FS`` for fabric switches, ``SP`` for spines, ``CPU`` sockets), so a
generated design and its hand-written twin have the same channels.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Annotated, Any, Callable, Literal, Mapping

from mcdla.config.nodes import NODE_KINDS
from mcdla.config.schema import NonNegativeInt, PositiveInt, Range, Where, build
from mcdla.errors import InputError, excerpt
from mcdla.registry import Registry

__all__ = ["GENERATORS", "GENERATED_KEYS", "TooLarge", "expand", "ring_cycle"]

# Nodes a generator writes at most: parameters asking for more are refused before any
# list is built (a typo of 10**9 devices must not exhaust memory writing lists). The
# graph's own limit, what the work budget's memory holds (mcdla.hw.budget.node_cap,
# about 179,000 nodes in 16 GiB), applies after, before the graph is built; this bound
# only keeps the lists themselves (about 1 kB a node) well inside memory.
MAX_GENERATED_NODES = 2**20

# The keys a generator writes; a file that uses a generator must not set them too. The
# symmetry keys are never written by hand: a claimed symmetry would be trusted unchecked;
# so is the ring generator's own cycle (ring_prefixes, ring_copies), never searched at load.
SYMMETRY_KEYS = ("translation", "node_cells", "leaf_nodes", "ring_prefixes", "ring_copies")
GENERATED_KEYS = ("devices", "memory_nodes", "switches", "fabric_switches", "spine_switches", "connections",
                  "backing", "serves", "nics", "nvme_drives", *SYMMETRY_KEYS)

# name -> (parameter dataclass, function(params, doc, where) -> generated keys)
GENERATORS: Registry[tuple[type, Callable[..., dict[str, Any]]]] = Registry("topology generator")


def generator(name: str, params: type):
    """Registers ``function(params, doc, where)`` as the generator ``name``."""
    def add(function):
        GENERATORS.register(name)((params, function))
        return function
    return add


def expand(doc: Mapping[str, Any], where: Where) -> dict[str, Any]:
    """``doc`` with its ``generator`` key replaced by the keys the generator writes;
    a doc without one is returned unchanged (a copy)."""
    result = dict(doc)
    spec = result.pop("generator", None)
    if spec is None:
        for key in SYMMETRY_KEYS:
            if key in result:
                raise where.child(key).error("written by topology generators only; remove it from the file")
        return result
    gwhere = where.child("generator")
    if not isinstance(spec, dict) or "name" not in spec:
        raise gwhere.error(f"expected a mapping with a name and its parameters, got {excerpt(spec)}")
    params_cls, function = GENERATORS.get(spec["name"], key=gwhere.child("name").key, file=where.file)
    for key in GENERATED_KEYS:
        if key in result:
            raise where.child(key).error(f"set by generator {spec['name']!r}; remove it from the file")
    params = build(params_cls, {k: v for k, v in spec.items() if k != "name"}, gwhere)
    _check_size(_count(params), gwhere)  # a cluster of a given node counts its nodes once built
    result.update(function(params, result, gwhere))
    result["generator"] = spec["name"]
    return result


def _count(params) -> int:
    """The nodes the generator of ``params`` writes, at most (for a cluster of a given
    node, its spines and switches only: :func:`cluster` counts the nodes' own from
    their parameters)."""
    devices = getattr(params, "devices", 0)
    memory = getattr(params, "memory_nodes", 0)  # the ring's is a flag: one per device
    nodes = devices + (devices if memory is True else int(memory)) + getattr(params, "spines", 0)
    if hasattr(params, "domains"):
        nodes += params.domains * (1 + params.devices_per_domain)
    if isinstance(params, ClusterParams) and params.node is None:
        nodes += params.nodes * (1 + (params.devices_per_node or 0) + (params.memory_nodes_per_node or 0))
    return nodes


class TooLarge(InputError):
    """A design with more nodes than a generator writes or the memory budget holds (or a
    listing builds): ``mcdla topologies`` passes over a shipped one instead of failing."""


def _check_size(nodes: int, where: Where) -> None:
    if nodes > MAX_GENERATED_NODES:
        raise TooLarge(f"{nodes:,} nodes is more than a generator writes ({MAX_GENERATED_NODES:,})", file=where.file,
                       key=where.key or None)


# -- building blocks shared by the generators ---------------------------------------


def _names(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]


def _need_link(doc: Mapping[str, Any], alias: str, where: Where) -> str:
    links = doc.get("links")
    if not isinstance(links, dict) or alias not in links:
        known = ", ".join(links) if isinstance(links, dict) and links else "none"
        raise where.error(f"link type {alias!r} is not in the file's links ({known})")
    return alias


def _need(doc: Mapping[str, Any], key: str, why: str, where: Where) -> Mapping[str, Any]:
    if not isinstance(doc.get(key), dict):
        raise where.error(f"needs the file's {key!r} ({why})")
    return doc[key]


def _host_side(p, doc, devices: list[str], connections: list, result: dict[str, Any], where: Where) -> None:
    """Adds the PCIe tree of ``p.pcie_link`` (if given) to ``connections`` and, to
    ``result``, its switches and host memory as every device's backing store."""
    if p.pcie_link is None:
        return
    link = _need_link(doc, p.pcie_link, where.child("pcie_link"))
    switches, tree, socket_of = _pcie_tree(doc, devices, link, p.devices_per_pcie_switch, where)
    connections += tree
    result.update(switches=switches, backing="host", serves={d: [socket_of[d]] for d in devices})


def _pcie_tree(doc, devices: list[str], link: str, per_switch: int, where: Where):
    """DGX-style host side: ``per_switch`` devices on each PCIe switch, the switches
    spread evenly over the host's sockets (in order), one uplink per switch.

    Returns (switch count, connections, socket of each device)."""
    host = _need(doc, "host", "the PCIe tree ends at its sockets", where.child("pcie_link"))
    sockets = host.get("sockets")
    if len(devices) % per_switch:
        raise where.child("devices_per_pcie_switch").error(
            f"{len(devices)} devices do not divide into PCIe switches of {per_switch}")
    switches = len(devices) // per_switch
    if not isinstance(sockets, int) or switches % sockets:
        raise where.child("devices_per_pcie_switch").error(
            f"{switches} PCIe switches do not spread evenly over {excerpt(sockets)} host sockets")
    connections = [[d, f"SW{i // per_switch}", link] for i, d in enumerate(devices)]
    connections += [[f"SW{s}", f"CPU{s * sockets // switches}", link] for s in range(switches)]
    socket_of = {d: f"CPU{(i // per_switch) * sockets // switches}" for i, d in enumerate(devices)}
    return switches, connections, socket_of


def _translation(**counts: int) -> dict[str, int]:
    """The translation (mcdla.hw.translation) of a design made of alike cells, from how
    many nodes of each prefix it has (prefixes not given stay put, as a single fabric
    switch): as many cells as the counts' greatest common divisor, each prefix's nodes
    numbered cell by cell, so one translation moves each by its count over the cells.
    None moves (an empty mapping) when there is one cell."""
    cells = math.gcd(*(c for c in counts.values() if c))
    return {p: c // cells for p, c in counts.items() if c} if cells > 1 else {}


# -- ring: the paper's MC-DLA ring ----------------------------------------------------


@dataclass(frozen=True)
class RingParams:
    devices: PositiveInt
    links_per_pair: PositiveInt = 1
    link: str = "nvlink"
    memory_nodes: bool = True  # a memory-node between every two neighbours (MC-DLA)


@generator("ring", RingParams)
def ring(p: RingParams, doc, where: Where) -> dict[str, Any]:
    """D0-M0-D1-M1-...-D{N-1}-M{N-1}-D0 with ``links_per_pair`` links on every adjacent
    pair (paper Fig. 7(c)); M_i serves D_i first, then D_(i+1) serves from it too, so
    each device's stores are its right- and left-hand memory-nodes. Without memory-nodes,
    D0-D1-...-D{N-1}-D0 and no backing store."""
    if p.devices < 2:
        raise where.child("devices").error(f"a ring needs at least 2 devices, got {p.devices}")
    link = _need_link(doc, p.link, where.child("link"))
    n, k = p.devices, p.links_per_pair
    if not p.memory_nodes:
        # Two devices alone make no ring to derive (rings.find_rings), so none is handed over.
        own = {"ring_prefixes": ["D"], "ring_copies": k} if n > 2 else {}
        return {"devices": n, "connections": [[f"D{i}", f"D{(i + 1) % n}", link, k] for i in range(n)],
                "backing": "none", "translation": _translation(D=n), **own}
    _need(doc, "memory_node", "the ring's memory-nodes", where.child("memory_nodes"))
    connections = []
    for i in range(n):
        connections.append([f"D{i}", f"M{i}", link, k])
        connections.append([f"M{i}", f"D{(i + 1) % n}", link, k])
    serves = {f"D{i}": [f"M{i}", f"M{(i - 1) % n}"] for i in range(n)}
    return {"devices": n, "memory_nodes": n, "connections": connections, "backing": "memory_nodes",
            "serves": serves, "translation": _translation(D=n, M=n),  # the same seen from every device
            # Its rings, as derived at load (mcdla.hw.rings.derive_rings, tests): ring_cycle's, once a link.
            "ring_prefixes": ["D", "M"], "ring_copies": k}


# -- cube_mesh: DGX-1's hybrid cube-mesh ------------------------------------------------

# The NVLink pairs of DGX-1V's hybrid cube-mesh (`nvidia-smi topo -m`: quads D0-D3 and
# D4-D7 fully connected plus D_i-D_(i+4)), with their link counts (NV2 or NV1).
_CUBE_MESH = ((0, 3, 2), (0, 4, 2), (1, 2, 2), (1, 5, 2), (2, 3, 2), (4, 7, 2), (5, 6, 2), (6, 7, 2),
              (0, 1, 1), (0, 2, 1), (1, 3, 1), (2, 6, 1), (3, 7, 1), (4, 5, 1), (4, 6, 1), (5, 7, 1))


# The cube-mesh's edge-disjoint Hamiltonian rings, as dc.yaml and dc4.yaml list them
# (mcdla.hw.rings.find_rings gives the same on the generated cube-mesh; tests check).
_CUBE_MESH_RINGS = {8: ((0, 1, 2, 3, 7, 5, 6, 4), (0, 2, 6, 7, 4, 5, 1, 3), (0, 3, 2, 1, 5, 6, 7, 4)),
                    4: ((0, 1, 2, 3), (0, 2, 1, 3)), 1: ()}


@dataclass(frozen=True)
class CubeMeshParams:
    devices: Literal[1, 4, 8] = 8  # the first 1, 4 or 8 devices and the links among them
    link: str = "nvlink"
    pcie_link: str | None = None  # the host side: a PCIe tree to the sockets, host memory as backing
    devices_per_pcie_switch: PositiveInt = 2


@generator("cube_mesh", CubeMeshParams)
def cube_mesh(p: CubeMeshParams, doc, where: Where) -> dict[str, Any]:
    """DGX-1's 8-device hybrid cube-mesh (the paper's DC-DLA), or its first 4 devices (one
    quad: the paper's 4-device point) or 1, optionally with its PCIe tree: two devices
    per switch, the switches split over the host's sockets."""
    pairs = [(a, b, count) for a, b, count in _CUBE_MESH if max(a, b) < p.devices]
    link = _need_link(doc, p.link, where.child("link")) if pairs else p.link
    devices = _names("D", p.devices)
    connections = [[f"D{a}", f"D{b}", link] + ([count] if count > 1 else []) for a, b, count in pairs]
    result: dict[str, Any] = {"devices": p.devices, "backing": "none"}
    _host_side(p, doc, devices, connections, result, where)
    result["connections"] = connections
    return result


# -- switch: one fabric switch level ----------------------------------------------------


@dataclass(frozen=True)
class SwitchParams:
    devices: PositiveInt
    links_per_device: PositiveInt  # links from every device to the fabric switch
    link: str = "nvlink"
    # Host side, as in DGX: a PCIe tree to the sockets; host memory is the backing store
    # unless memory-nodes are given.
    pcie_link: str | None = None
    devices_per_pcie_switch: PositiveInt = 2
    # Memory-nodes as fabric-switch endpoints (MC-DLA on a switch): node j serves the
    # devices j*N/M ... (j+1)*N/M - 1.
    memory_nodes: NonNegativeInt = 0
    links_per_memory_node: PositiveInt = 1
    # Memory expanders (CXL) behind the PCIe switches: each serves the devices on its switch.
    expanders_per_pcie_switch: NonNegativeInt = 0
    expander_link: str = "cxl"
    # CPUs over ``c2c_link`` (Grace Hopper, Grace Blackwell), one per ``devices_per_cpu``
    # devices: their memory is the backing store.
    c2c_link: str | None = None
    devices_per_cpu: PositiveInt = 1
    # NVMe drives NV0.. behind each PCIe switch (the nvme memory tier, beside the backing store).
    nvme_per_pcie_switch: NonNegativeInt = 0
    nvme_link: str = "nvme"


@generator("switch", SwitchParams)
def switch(p: SwitchParams, doc, where: Where) -> dict[str, Any]:
    """Every device with ``links_per_device`` links to one fabric switch FS0 (an NVSwitch
    system), plus the design's capacity tier: host memory over a PCIe tree, memory-nodes
    on the switch, CXL expanders on the PCIe switches, or a CPU per device over C2C."""
    link = _need_link(doc, p.link, where.child("link"))
    _need(doc, "fabric_switch", "the switch's ports and reduction engine", where)
    devices = _names("D", p.devices)
    tiers = sum((p.memory_nodes > 0, p.expanders_per_pcie_switch > 0, p.c2c_link is not None))
    if tiers > 1:
        raise where.error("give one capacity tier: memory_nodes, expanders_per_pcie_switch or c2c_link")
    connections = [[d, "FS0", link, p.links_per_device] for d in devices]
    result: dict[str, Any] = {"devices": p.devices, "fabric_switches": 1, "backing": "none"}
    _host_side(p, doc, devices, connections, result, where)
    if p.memory_nodes:
        _need(doc, "memory_node", "the memory-nodes on the switch", where.child("memory_nodes"))
        if p.devices % p.memory_nodes:
            raise where.child("memory_nodes").error(
                f"{p.devices} devices do not divide evenly over {p.memory_nodes} memory-nodes")
        per = p.devices // p.memory_nodes
        connections += [[m, "FS0", link, p.links_per_memory_node] for m in _names("M", p.memory_nodes)]
        result.update(memory_nodes=p.memory_nodes, backing="memory_nodes",
                      serves={d: [f"M{i // per}"] for i, d in enumerate(devices)})
    if p.expanders_per_pcie_switch:
        if p.pcie_link is None:
            raise where.child("expanders_per_pcie_switch").error("expanders sit behind PCIe switches: "
                                                                 "give pcie_link")
        _need(doc, "memory_node", "the expanders' memory", where.child("expanders_per_pcie_switch"))
        cxl = _need_link(doc, p.expander_link, where.child("expander_link"))
        e, per = p.expanders_per_pcie_switch, p.devices_per_pcie_switch
        expanders = _names("M", result["switches"] * e)
        connections += [[m, f"SW{j // e}", cxl] for j, m in enumerate(expanders)]
        result.update(memory_nodes=len(expanders), backing="memory_nodes",
                      serves={d: [f"M{(i // per) * e + j}" for j in range(e)] for i, d in enumerate(devices)})
    if p.c2c_link is not None:
        c2c = _need_link(doc, p.c2c_link, where.child("c2c_link"))
        host = _need(doc, "host", "the CPU of every superchip", where.child("c2c_link"))
        per = p.devices_per_cpu
        if p.devices % per or host.get("sockets") != p.devices // per:
            raise where.child("devices_per_cpu").error(
                f"{p.devices} devices, {per} per CPU: host.sockets must be {p.devices / per:g}, "
                f"got {excerpt(host.get('sockets'))}")
        connections += [[d, f"CPU{i // per}", c2c] for i, d in enumerate(devices)]
        result.update(backing="host", serves={d: [f"CPU{i // per}"] for i, d in enumerate(devices)})
    if p.nvme_per_pcie_switch:
        if p.pcie_link is None:
            raise where.child("nvme_per_pcie_switch").error("NVMe drives sit behind PCIe switches: give pcie_link")
        _need(doc, "nvme", "the drives' part", where.child("nvme_per_pcie_switch"))
        link, k = _need_link(doc, p.nvme_link, where.child("nvme_link")), p.nvme_per_pcie_switch
        drives = _names("NV", result["switches"] * k)
        connections += [[v, f"SW{j // k}", link] for j, v in enumerate(drives)]
        result["nvme_drives"] = len(drives)
    result["connections"] = connections
    # Alike cells round the one switch: a socket's devices and what hangs under them.
    sockets = _need(doc, "host", "", where).get("sockets", 0) if p.pcie_link or p.c2c_link else 0
    result["translation"] = _translation(D=p.devices, M=result.get("memory_nodes", 0), SW=result.get("switches", 0),
                                         CPU=sockets, NV=result.get("nvme_drives", 0))
    return result


# -- superchip: a device and its own CPU over C2C, devices on a fabric switch ----------


@dataclass(frozen=True)
class SuperchipParams:
    devices: PositiveInt
    links_per_device: PositiveInt  # links from every device to the fabric switch
    link: str = "nvlink"
    c2c_link: str = "c2c"  # device <-> its CPU (NVLink-C2C); the CPU's memory is the backing store
    devices_per_cpu: PositiveInt = 1  # GB200: two Blackwell GPUs per Grace


@generator("superchip", SuperchipParams)
def superchip(p: SuperchipParams, doc, where: Where) -> dict[str, Any]:
    """Grace-Hopper-style superchips (GH200 NVL32, GB200 NVL72): device D_i and CPU_i
    joined by C2C, CPU_i's memory D_i's backing store, the devices on one fabric switch."""
    return switch(SwitchParams(devices=p.devices, links_per_device=p.links_per_device, link=p.link,
                               c2c_link=p.c2c_link, devices_per_cpu=p.devices_per_cpu), doc, where)


# -- two_level_switch: leaf switches per domain under spine switches ------------------


@dataclass(frozen=True)
class TwoLevelParams:
    domains: PositiveInt  # leaf switches FS0..FS{domains-1}, one per domain
    devices_per_domain: PositiveInt
    links_per_device: PositiveInt  # from every device to its leaf switch
    spines: PositiveInt  # spine switches SP0.. (spine_switch, or fabric_switch), each linked to every leaf
    uplinks: PositiveInt  # links from every leaf to every spine
    link: str = "nvlink"
    uplink: str | None = None  # link type leaf <-> spine (default: link)


@generator("two_level_switch", TwoLevelParams)
def two_level_switch(p: TwoLevelParams, doc, where: Where) -> dict[str, Any]:
    """Scale-out: ``domains`` groups of devices, each on its own leaf switch, the leaves
    joined by ``spines`` spine switches (a two-level fat tree); no backing store. With
    ``uplink`` a NIC link type, the leaves are the nodes' NVSwitches and ``uplinks`` per
    spine their NICs (a cluster of NVLink domains on a scale-out network)."""
    link = _need_link(doc, p.link, where.child("link"))
    up = _need_link(doc, p.uplink or p.link, where.child("uplink"))
    _need(doc, "fabric_switch", "the switches' ports and reduction engines", where)
    n = p.domains * p.devices_per_domain
    connections = [[f"D{i}", f"FS{i // p.devices_per_domain}", link, p.links_per_device] for i in range(n)]
    connections += [[f"FS{leaf}", f"SP{s}", up, p.uplinks] for leaf in range(p.domains) for s in range(p.spines)]
    return {"devices": n, "fabric_switches": p.domains, "spine_switches": p.spines, "connections": connections,
            "backing": "none", "translation": _translation(D=n, FS=p.domains)}  # alike domains under the spines


# -- cluster: single-node designs joined by NICs on rail switches (scale-out) -----------

# The generators whose design is one node (a server); a cluster's ``node`` names one.
NODE_GENERATORS = ("ring", "cube_mesh", "switch", "superchip")

# The built-in switched node's parameters (a cluster without ``node``), and their
# defaults: with ``node`` they belong in the node's own mapping.
_SWITCHED_NODE = {"devices_per_node": None, "links_per_device": None, "link": "nvlink", "pcie_link": None,
                  "devices_per_pcie_switch": 2, "memory_nodes_per_node": 0, "links_per_memory_node": 1}

# A generated node name: its kind's prefix and its number within the node.
_NODE_NAME = re.compile(r"(D|M|SW|FS|CPU|NV)(\d+)")


@dataclass(frozen=True)
class ClusterParams:
    nodes: PositiveInt  # servers, each a copy of the node
    # The node: any single-node generator (NODE_GENERATORS) and its parameters,
    # {generator: ring, devices: 8, links_per_pair: 3}. Without it, the built-in switched
    # node of the parameters below (an NVLink domain on its own fabric switch FS_j).
    node: dict[str, Any] | None = None
    devices_per_node: PositiveInt | None = None
    links_per_device: PositiveInt | None = None  # from every device to its node's fabric switch
    link: str | None = None  # default "nvlink"
    nic_link: str = "nic"  # every device's NIC to a spine switch (spine_switch: the scale-out switch)
    nics_per_device: PositiveInt = 1
    # NICs shared by the node's devices, each by devices / nics_per_node neighbours (as
    # GPUs and a NIC under one PCIe switch); default: every device its own NIC(s).
    nics_per_node: PositiveInt | None = None
    rails: bool = True  # rail-optimized: a spine per place in the node; false: one spine for all
    # A two-tier fat tree: the nodes in leaf groups of nodes_per_leaf (a scalable unit),
    # each group's NICs of a rail on that rail's leaf switch, the leaves of a rail under
    # the rail's core switch; each leaf has its NIC ports / oversubscription uplinks of
    # uplink_link (default nic_link). Default: every node on one switch per rail.
    nodes_per_leaf: PositiveInt | None = None
    oversubscription: Annotated[float, Range(minimum=1.0)] = 1.0
    uplink_link: str | None = None
    # A three-tier fat tree: the leaves in pods of leaves_per_pod, each pod's leaves of a
    # rail under that pod's spine switch of the rail, the pods' spines of a rail under
    # the rail's core; each pod spine has its leaves' uplinks / pod_oversubscription
    # uplinks to the core (of uplink_link). Default: the leaves under one core per rail.
    leaves_per_pod: PositiveInt | None = None
    pod_oversubscription: Annotated[float, Range(minimum=1.0)] = 1.0
    # Host side of every node, as in the switch generator: host memory as the backing store.
    pcie_link: str | None = None
    devices_per_pcie_switch: PositiveInt | None = None  # default 2
    # Memory-nodes on every node's fabric switch, serving that node's devices (the paper's
    # Fig. 15: device- and memory-nodes behind a device-side switch in each system node).
    memory_nodes_per_node: NonNegativeInt | None = None  # default 0
    links_per_memory_node: PositiveInt | None = None  # default 1


@generator("cluster", ClusterParams)
def cluster(p: ClusterParams, doc, where: Where) -> dict[str, Any]:
    """A scale-out cluster (DGX SuperPOD-style): ``nodes`` copies of a node, every
    device's NIC on a spine switch: its rail's (device k of every node on spine SP_k) or,
    ``rails: false``, one for all.

    The node is ``node``'s single-node design (the MC-DLA ring, a cube-mesh, a switch, a
    superchip system) or, without it, the built-in switched node: ``devices_per_node``
    devices on their own fabric switch FS_j with ``links_per_device`` links each, and
    optionally host memory or memory-nodes. Nodes on a fabric switch get their rings
    derived at load (snaking through the nodes over the switches and the rails); other
    nodes get theirs written here (:func:`_cluster_rings`)."""
    if p.node is not None:
        return _cluster_of(p, doc, where)
    given = {key: getattr(p, key) for key in _SWITCHED_NODE}
    for key in ("devices_per_node", "links_per_device"):
        if given[key] is None:
            raise where.child(key).error("missing; expected an integer (or give node: a node generator "
                                         "and its parameters)")
    p = replace(p, **{key: default for key, default in _SWITCHED_NODE.items() if given[key] is None})
    link = _need_link(doc, p.link, where.child("link"))
    nic = _need_link(doc, p.nic_link, where.child("nic_link"))
    _need(doc, "fabric_switch", "the nodes' switches", where)
    q, n = p.devices_per_node, p.nodes * p.devices_per_node
    _even_nodes(p, doc, where, q)
    fabric = _Scaleout(p, q, doc, where)
    devices = _names("D", n)
    connections = [[d, f"FS{i // q}", link, p.links_per_device] for i, d in enumerate(devices)]
    connections += [[d, fabric.leaf(i), nic, p.nics_per_device] for i, d in enumerate(devices)] + fabric.uplinks
    result: dict[str, Any] = {"devices": n, "fabric_switches": p.nodes, "spine_switches": fabric.spines,
                              "backing": "none", "nics": fabric.nics(p.nodes)}
    if p.memory_nodes_per_node and p.pcie_link is not None:
        raise where.child("memory_nodes_per_node").error("give one capacity tier: memory-nodes or pcie_link")
    _host_side(p, doc, devices, connections, result, where)
    if p.memory_nodes_per_node:
        _need(doc, "memory_node", "the memory-nodes of every node", where.child("memory_nodes_per_node"))
        k = p.memory_nodes_per_node
        if q % k:
            raise where.child("memory_nodes_per_node").error(
                f"{q} devices per node do not divide evenly over {k} memory-nodes")
        memories = _names("M", p.nodes * k)
        connections += [[m, f"FS{j // k}", link, p.links_per_memory_node] for j, m in enumerate(memories)]
        per = q // k  # device i of node j is served by memory-node j*k + (i mod q) // per
        result.update(memory_nodes=len(memories), backing="memory_nodes",
                      serves={d: [f"M{(i // q) * k + (i % q) // per}"] for i, d in enumerate(devices)})
    result["connections"] = connections
    result.update(_node_cells(p, doc, fabric))
    return result


def _node_cells(p: ClusterParams, doc, fabric: "_Scaleout") -> dict[str, Any]:
    """The built-in switched node as a cell (mcdla.hw.translation, NodeCells): how many
    nodes of each prefix one node holds (the names run node by node), and the nodes under
    one leaf's switches (all of them on rails). Nothing ({}) when something of a node straddles
    nodes or is named apart (a PCIe switch or socket across two nodes; NICs shared by
    devices, whose ports are not graph nodes)."""
    q = p.devices_per_node
    counts = {"D": q, "FS": 1, "M": p.memory_nodes_per_node}
    if p.pcie_link is not None:  # the PCIe tree's switches and sockets (_pcie_tree), whole ones a node
        sockets = doc["host"]["sockets"]
        if q % p.devices_per_pcie_switch or sockets % p.nodes:
            return {}
        counts.update(SW=q // p.devices_per_pcie_switch, CPU=sockets // p.nodes)
    if fabric.per_nic > 1:
        return {}
    return {"node_cells": {k: n for k, n in counts.items() if n}, "leaf_nodes": fabric.per_leaf}


class _Scaleout:
    """The cluster network of ``p``: each device's leaf (its NIC's switch: SP_k of its
    rail k, or one for all without rails), and, with ``nodes_per_leaf`` below the
    nodes, a fat tree per rail: leaf SP_(g R + k) for leaf group g of G and rail k of
    R, each leaf linked to the switch above it by its NIC ports / ``oversubscription``
    uplinks. Two tiers: one core per rail above the leaves, SP_(G R + k). Three tiers
    (``leaves_per_pod`` below the leaf groups): pod spine SP_(G R + c R + k) of pod c of
    C above the pod's leaves of rail k, linked to the rail's core SP_(G R + C R + k) by
    its leaves' uplinks / ``pod_oversubscription``."""

    def __init__(self, p: ClusterParams, q: int, doc, where: Where) -> None:
        nics = p.nics_per_node or q
        if q % nics:
            raise where.child("nics_per_node").error(f"expected a divisor of the node's {q} devices, got {nics}")
        if nics < q and p.nics_per_device > 1:
            raise where.child("nics_per_node").error("NICs shared by devices: give nics_per_device 1")
        self.per_nic = q // nics  # devices sharing a NIC, neighbours in the node
        self.q, self.rails = q, (nics if p.rails else 1)
        self.per_leaf = p.nodes_per_leaf or p.nodes
        if p.nodes % self.per_leaf:
            raise where.child("nodes_per_leaf").error(f"expected a divisor of the {p.nodes} nodes, got {self.per_leaf}")
        self.groups = p.nodes // self.per_leaf
        self.per_pod = p.leaves_per_pod or self.groups
        if self.groups % self.per_pod:
            raise where.child("leaves_per_pod").error(
                f"expected a divisor of the {self.groups} leaf groups, got {self.per_pod}")
        self.pods = self.groups // self.per_pod if self.per_pod < self.groups else 0  # 0: no pod tier
        self.uplinks: list[list] = []
        self.spines = self.groups * self.rails
        if p.uplink_link is not None:  # checked when given, even without leaves to use it
            _need_link(doc, p.uplink_link, where.child("uplink_link"))
        if not self.pods and p.pod_oversubscription != 1.0:
            raise where.child("pod_oversubscription").error(
                "a three-tier fat tree's, over its pod spines' uplinks: set leaves_per_pod below the leaf groups")
        if self.groups == 1:
            if p.oversubscription != 1.0:
                raise where.child("oversubscription").error(
                    "a fat tree's, over its leaves' uplinks: set nodes_per_leaf below the nodes")
            return
        ports = self.per_leaf * p.nics_per_device * (1 if p.rails else nics)  # a leaf's NIC ports
        count = _uplinks(ports, p.oversubscription, "a leaf's", "NIC ports", where.child("oversubscription"))
        uplink = p.uplink_link or _need_link(doc, p.nic_link, where.child("nic_link"))
        base, r = self.spines, self.rails
        self.spines += (self.pods + 1) * r
        self.uplinks = [[f"SP{g * r + k}", self.above(g, k), uplink, count]
                        for g in range(self.groups) for k in range(r)]
        if self.pods:
            up = _uplinks(self.per_pod * count, p.pod_oversubscription, "a pod spine's", "leaf links",
                          where.child("pod_oversubscription"))
            self.uplinks += [[f"SP{base + c * r + k}", self.core(k), uplink, up]
                             for c in range(self.pods) for k in range(r)]

    def above(self, group: int, rail: int) -> str:
        """The switch above leaf group ``group``'s leaf of ``rail``: its pod's spine, or
        the rail's core without pods."""
        if not self.pods:
            return self.core(rail)
        return f"SP{self.groups * self.rails + (group // self.per_pod) * self.rails + rail}"

    def core(self, rail: int) -> str:
        """The rail's top switch."""
        return f"SP{(self.groups + self.pods) * self.rails + rail}"

    def rail(self, place: int) -> int:
        return place // self.per_nic if self.rails > 1 else 0

    def leaf(self, device: int) -> str:
        """The spine of device ``device``'s NIC (devices numbered node by node)."""
        node, place = divmod(device, self.q)
        return f"SP{(node // self.per_leaf) * self.rails + self.rail(place)}"

    def between(self, node: int, place: int, nodes: int) -> list[str]:
        """The switches from the device at ``place`` of ``node`` to the one at the same
        place of the next node: its leaf, and, on different leaves, up to the switch
        above both (the pod spine or the core) and down to the next leaf."""
        k, after = self.rail(place), (node + 1) % nodes
        a, b = self.leaf(node * self.q + place), self.leaf(after * self.q + place)
        if a == b:
            return [a]
        up, down = self.above(node // self.per_leaf, k), self.above(after // self.per_leaf, k)
        return [a, up, b] if up == down else [a, up, self.core(k), down, b]

    def nics(self, nodes: int) -> list[list[str]]:
        """The devices sharing each NIC (none when every device has its own)."""
        if self.per_nic == 1:
            return []
        return [[f"D{start + i}" for i in range(self.per_nic)] for start in range(0, nodes * self.q, self.per_nic)]


def _uplinks(ports: int, ratio: float, whose: str, what: str, where: Where) -> int:
    """A switch's uplinks: its ``ports`` below over the oversubscription ``ratio``, an
    integer (a cable is whole). ``whose`` ``what``: the ports, named for the error."""
    count = ports / ratio
    if count < 1 or abs(count - round(count)) > 1e-9:
        ratio_key = where.key.rsplit(".", 1)[-1]
        raise where.error(f"expected a divisor of {whose} {ports} {what} (its uplinks: ports / {ratio_key}), "
                          f"got {ratio:g}")
    return round(count)


def _even_nodes(p: ClusterParams, doc, where: Where, places: int | None = None) -> None:
    """Refuses an odd number of nodes (more than one) that the rings cannot close: they
    snake through the nodes over the rails, from a place to the same place. Through a
    node's switch a ring may enter and leave at any two of its ``places`` (devices), so
    three or more close any number (mcdla.hw.rings); a node's own ring (no switch,
    ``places`` None) and two places close only an even number."""
    if p.nodes > 1 and p.nodes % 2 and doc.get("rings") is None and (places is None or places == 2):
        raise where.child("nodes").error(
            f"expected an even number of nodes, got {p.nodes}: the rings snake through the nodes and close "
            "only over an even number with " + ("2 devices a node" if places else "the node's own ring")
            + " (or list the rings)")


def _cluster_of(p: ClusterParams, doc, where: Where) -> dict[str, Any]:
    """A cluster of ``p.node``'s design: the node generated once (with the file's host
    sockets split evenly over the nodes), copied ``p.nodes`` times with its node names
    renumbered (D, M, SW, FS, CPU of node j after those of node j-1), and every device's
    NIC on its rail's spine."""
    for key in _SWITCHED_NODE:
        if getattr(p, key) is not None:
            raise where.child(key).error("a parameter of the built-in switched node; with node, give the "
                                         "node's parameters in node")
    nwhere = where.child("node")
    if not isinstance(p.node, dict) or "generator" not in p.node:
        raise nwhere.error(f"expected a mapping with a generator and its parameters, got {excerpt(p.node)}")
    name = p.node["generator"]
    if name not in NODE_GENERATORS:
        raise nwhere.child("generator").error(f"expected a single-node generator, one of "
                                              f"{', '.join(NODE_GENERATORS)}; got {excerpt(name)}")
    params_cls, function = GENERATORS.get(name)  # every name in NODE_GENERATORS is registered
    params = build(params_cls, {k: v for k, v in p.node.items() if k != "generator"}, nwhere)
    q = params.devices
    fabric = _Scaleout(p, q, doc, where)
    _check_size(p.nodes * _count(params) + fabric.spines, where)
    nic = _need_link(doc, p.nic_link, where.child("nic_link"))
    _need(doc, "fabric_switch", "the part of the spine switches, unless spine_switch gives theirs", where)

    host = doc.get("host")
    sockets = host.get("sockets") if isinstance(host, dict) else None
    even = isinstance(sockets, int) and sockets % p.nodes == 0
    hosted = getattr(params, "pcie_link", None) is not None or getattr(params, "c2c_link", None) is not None
    if hosted and isinstance(sockets, int) and not even:
        raise Where(where.file).child("host").child("sockets").error(
            f"{sockets} sockets do not divide evenly over {p.nodes} nodes (each node has its own host)")
    node = function(params, dict(doc, host=dict(host, sockets=sockets // p.nodes)) if even else doc, nwhere)
    links = node.get("connections", [])
    counts = {"D": q, "M": node.get("memory_nodes", 0), "SW": node.get("switches", 0),
              "FS": node.get("fabric_switches", 0), "CPU": sockets // p.nodes if even else 0,
              "NV": node.get("nvme_drives", 0)}

    def rename(end: str, j: int) -> str:
        prefix, index = _NODE_NAME.fullmatch(end).groups()
        return f"{prefix}{j * counts[prefix] + int(index)}"

    connections = [[rename(a, j), rename(b, j), *rest] for j in range(p.nodes) for a, b, *rest in links]
    connections += [[f"D{i}", fabric.leaf(i), nic, p.nics_per_device] for i in range(p.nodes * q)]
    connections += fabric.uplinks
    result: dict[str, Any] = {"devices": p.nodes * q, "spine_switches": fabric.spines, "backing": node["backing"],
                              "connections": connections, "nics": fabric.nics(p.nodes)}
    for key, prefix in (("memory_nodes", "M"), ("switches", "SW"), ("fabric_switches", "FS"), ("nvme_drives", "NV")):
        if counts[prefix]:
            result[key] = p.nodes * counts[prefix]
    if node.get("serves"):
        result["serves"] = {rename(d, j): [rename(s, j) for s in stores]
                            for j in range(p.nodes) for d, stores in node["serves"].items()}
    if counts["FS"]:  # a switched node: the rings are derived at load, over the switches and rails
        _even_nodes(p, doc, where, q)
    elif doc.get("rings") is None and p.nodes * q > 1:
        if p.rails and q > 1:
            _even_nodes(p, doc, where)
        rings, directed = _cluster_rings(p, _node_rings(name, params), q, rename, fabric)
        result.update(rings=rings, ring_directions="as_listed" if directed else "both")
    return result


def ring_cycle(prefixes, count: int) -> tuple[str, ...]:
    """The ring generator's cycle: nodes 0 .. count-1 of each of ``prefixes`` (its
    ``ring_prefixes``), index by index (D0 M0 D1 M1 ...; D0 D1 ... without memory-nodes)."""
    return tuple(f"{prefix}{i}" for i in range(count) for prefix in prefixes)


def _node_rings(name: str, params) -> tuple[tuple[str, ...], ...]:
    """A node without a fabric switch: its own rings, the ones derived at load for the
    node alone (undirected). The ring's one cycle, once per parallel link; the
    cube-mesh's edge-disjoint Hamiltonian rings."""
    if name == "ring":
        return (ring_cycle(("D", "M") if params.memory_nodes else ("D",), params.devices),) * params.links_per_pair
    return tuple(tuple(f"D{i}" for i in ring) for ring in _CUBE_MESH_RINGS[params.devices])


def _cluster_rings(p: ClusterParams, cycles, q: int, rename, fabric: _Scaleout) -> tuple[list[list[str]], bool]:
    """The rings of a cluster of nodes without a fabric switch (the MC-DLA ring, a
    cube-mesh) from the node's own rings ``cycles``, and whether they are directed.

    Each node ring is cut between two devices it visits in turn, d_a then d_b, leaving a
    path from d_b round to d_a through every device (and the relays between them). The
    cluster ring runs that path in node 0, leaves over d_a's NIC to d_a of node 1, runs
    the path backwards there, leaves over d_b's NIC to d_b of node 2, and so on: a place
    to the same place, so over the rails, and an even number of nodes closes it (one
    spine for all closes any). Each ring is cut where the NICs the rings cut so far cross
    least, so with as many places as rings have ends the rings share no NIC."""
    if q == 1:  # one device per node: a switch ring through the spines, directed (as derived ones)
        return [[name for j in range(p.nodes) for name in (f"D{j}", *fabric.between(j, 0, p.nodes))]], True
    if p.nodes == 1:
        return [list(cycle) for cycle in cycles], False
    # The node's devices, as its generator named them -> their place in the node.
    devices = {name: k for k, name in enumerate(_names(NODE_KINDS.get("device").prefix, q))}
    crossings: Counter = Counter()  # place -> cluster rings that leave or enter a node there
    rings = []
    for cycle in cycles:
        places = [i for i, n in enumerate(cycle) if n in devices]
        cuts = [(places[k], places[(k + 1) % len(places)]) for k in range(len(places))]
        a, b = min(cuts, key=lambda cut: (crossings[cycle[cut[0]]] + crossings[cycle[cut[1]]], cuts.index(cut)))
        crossings.update((cycle[a], cycle[b]))
        path = list(cycle[b:] + cycle[:a + 1]) if b > a else list(cycle[b:a + 1])
        ring: list[str] = []
        for j in range(p.nodes):
            walk = path if j % 2 == 0 else path[::-1]
            place = devices[walk[-1]]
            ring += [rename(n, j) for n in walk] + fabric.between(j, place, p.nodes)
        first = ring.index("D0")  # every ring from the first device: broadcast's root 0
        rings.append(ring[first:] + ring[:first])
    return rings, False
