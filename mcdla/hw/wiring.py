"""The graph's links, from a topology document: each connection as a channel each way
and per parallel link (mcdla.hw.network.Channel), checked; the high-bandwidth link
budgets of devices, memory-nodes and switches; the ports of NICs that devices share.
Split from :mod:`mcdla.hw.topology`, which builds the rest of the design.

The channels are held once, in the table :func:`add_links` returns (channel id ->
:class:`~mcdla.hw.network.Channel`); the graph's edges carry only their link type, in one
read-only attribute mapping per type that all its edges share, and alike pairs share
their key mappings (:class:`LinkGraph`): networkx's dict per edge and per pair were 1.2 GB
at 131,072 GPUs' 5.3M channels (docs/performance.md, "The 131,072-GPU points: loading
held once").
"""

from __future__ import annotations

import networkx as nx

from mcdla.config.nodes import NODE_KINDS
from mcdla.config.schema import Where
from mcdla.config.topology import TopologyDoc
from mcdla.errors import excerpt
from mcdla.hw.fabric import Fabric
from mcdla.hw.network import Channel, Port, channel_id

__all__ = ["LinkGraph", "add_links", "check_budgets", "shared_nics", "MAX_PARALLEL_LINKS"]

# Parallel links on one connection: real nodes have a handful (NVLink: up to 18 per
# GPU in total); each is a channel the flow solver tracks.
MAX_PARALLEL_LINKS = 256


class _Shared(dict):
    """A dict no one changes: one link type's attributes, or the keys of alike node pairs,
    shared by every edge or pair of the kind (:class:`LinkGraph`). A write would change
    them all, so it is refused (a TypeError, as a read-only mapping's); a dict still, so
    networkx and pickling read it as the dict per edge it stands for."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("the graph's edge attributes and keys are shared by alike links: the graph is read-only")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _refuse

    def __reduce__(self):  # made whole from a dict, not item by item (which __setitem__ refuses)
        return type(self), (dict(self),)


class LinkGraph(nx.MultiDiGraph):
    """The design's graph: a networkx multigraph whose edges, the directed parallel links
    keyed by their index, share one attribute mapping per link type (``{"link_type":
    alias}``), and whose node pairs joined by one connection share one key mapping per
    link type and count (a GPU's 18 NVLinks to its NVSwitch, each way: one mapping for all
    such pairs). What varies per link is its channel, in the channel table
    (:func:`add_links`). Both shared mappings are read-only: the graph is not changed once
    built (a write to one edge's would be every such edge's)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shared_keys: dict[tuple[int, int], _Shared] = {}  # (id of attributes, count) -> keys

    def add_parallel(self, a: str, b: str, keys: range, attributes) -> None:
        """The links ``keys`` between nodes ``a`` and ``b``, each both ways, with the shared
        ``attributes``: networkx's own structure (successor -> key -> attributes, one key
        mapping a direction, both ends' views of it the same), as ``add_edge`` builds it,
        less the dict per edge and per pair. A pair's second connection (rare) gives the
        pair a key mapping of its own."""
        for src, dst in ((a, b), (b, a)):
            keyed = self._succ[src].get(dst)
            if keyed is None:  # the pair's first connection: keys 0 .. count - 1
                share = (id(attributes), len(keys))
                keyed = self._shared_keys.get(share)
                if keyed is None:
                    keyed = self._shared_keys[share] = _Shared(dict.fromkeys(keys, attributes))
            else:
                keyed = _Shared({**keyed, **dict.fromkeys(keys, attributes)})
            self._succ[src][dst] = self._pred[dst][src] = keyed
        cache = getattr(self, "__networkx_cache__", None)  # networkx 3.3+'s: cleared, as add_edge does
        if cache:
            cache.clear()


def add_links(graph: LinkGraph, doc: TopologyDoc, specs, listed: Where):
    """Every connection as channels both ways (a switch port passes at most its own rate;
    crossing a switch costs its latency, counted on the way in): (channel id -> channel,
    the physical links as (a, b, link type, count))."""
    channels: dict[str, Channel] = {}
    physical: list[tuple[str, str, str, int]] = []
    add, nodes = graph.add_parallel, set(graph)  # a set: no method call per node looked up
    made = tuple.__new__  # a Channel made in C (its named tuple's __new__ is a Python call)
    links = doc.links
    plain: dict[str, tuple] = {}  # link type -> (bw, latency): a connection of no switch's
    shared: dict[str, _Shared] = {}  # link type -> its edges' one attribute mapping
    succ = dict(graph.adjacency())  # node -> its live successors' links (the parallel links so far)
    for i, entry in enumerate(doc.connections):
        a, b, alias, count = _connection(entry, nodes, links, listed, i)
        if a in specs or b in specs:
            bw, ab, ba = _rates(links[alias], specs, a, b)
        else:
            bw, ab = plain.get(alias) or plain.setdefault(alias, (links[alias].effective_bw_Bps, links[alias].latency))
            ba = ab
        first = len(succ[a].get(b, ()))  # add_links adds every link both ways: b -> a has as many
        keys = range(first, first + count)
        for k in keys:
            # channel_id's ids, written here: 1.57M channels on a ring of 131,072 devices
            forth, back = f"{a}>{b}:{k}", f"{b}>{a}:{k}"
            channels[forth] = made(Channel, (forth, a, b, bw, ab))
            channels[back] = made(Channel, (back, b, a, bw, ba))
        add(a, b, keys, shared.get(alias) or shared.setdefault(alias, _Shared(link_type=alias)))
        physical.append((a, b, alias, count))

    return channels, physical


def _rates(spec, specs, a: str, b: str) -> tuple[float, float, float]:
    """(bw, latency a -> b, latency b -> a) of a connection of ``spec`` touching a switch:
    a switch port passes at most its own rate; crossing a switch costs its latency,
    counted on the way in."""
    bw = spec.effective_bw_Bps
    for end in (a, b):
        if end in specs:
            bw = min(bw, specs[end].port_bw)
    return (bw, spec.latency + (specs[b].latency if b in specs else 0),
            spec.latency + (specs[a].latency if a in specs else 0))


def shared_nics(graph, channels, groups, ports: dict[str, Port], where: Where, rings=()) -> dict[str, tuple[str, ...]]:
    """The ports of each NIC that ``groups`` of devices share (added to ``ports``), and
    which they load: every channel of a member to or from its spine loads the NIC's
    transmit or receive port, of the members' link rate (one direction each, as the
    NIC's line rate). A ring (one flow per step over all its channels) may cross each
    port once."""
    nic_ports: dict[str, tuple[str, ...]] = {}
    kinds = dict(graph.nodes(data="kind"))
    seen: set[str] = set()
    for g, members in enumerate(groups):
        tx, rx = f"NIC{g}/tx", f"NIC{g}/rx"
        spines, rates = set(), []
        for j, d in enumerate(members):
            here = where.child(g).child(j)
            if kinds.get(d) != "device":
                raise here.error(f"{excerpt(d)} is not a device")
            if d in seen:
                raise here.error(f"device {d!r} is in two NIC groups")
            seen.add(d)
            ups = _spine_channels(graph, channels, d)
            if not ups:
                raise here.error(f"device {d!r} has no link to a spine switch for a NIC")
            for channel, k in ups:
                spines.add(channel.dst)
                rates.append(channel.bw_Bps)
                nic_ports[channel.id] = (tx,)
                nic_ports[channel_id(channel.dst, d, k)] = (rx,)
        if len(spines) != 1:
            raise where.child(g).error(f"a NIC links to one spine switch; its devices link to {len(spines)}")
        spine = spines.pop()
        ports[tx], ports[rx] = Port(tx, spine, min(rates)), Port(rx, spine, min(rates))
    for ring in rings if nic_ports else ():
        crossed: set[str] = set()
        twice = next((port for c in ring.channels for port in nic_ports.get(c, ())
                      if port in crossed or crossed.add(port)), None)
        if twice is not None:
            g = int(twice[len("NIC"):].partition("/")[0])
            raise where.child(g).error(f"ring {ring.name!r} goes through this NIC twice the same way ({twice}): "
                                       "a NIC's devices must be neighbours on every ring")
    return nic_ports


def _spine_channels(graph, channels, device: str) -> list[tuple[Channel, int]]:
    """The channels from ``device`` to spine switches (of the table ``channels``), with their link index."""
    return [(channels[channel_id(device, n, k)], k) for n, links in graph.adj[device].items()
            if graph.nodes[n].get("spine") for k in links]


def _connection(entry, nodes, links, listed: Where, i: int) -> tuple[str, str, str, int]:
    """``[a, b, type]`` or ``[a, b, type, count]``, the ``i``-th of ``listed``, checked."""
    where = lambda: listed.child(i)  # noqa: E731 - made for an error only: a 131,072-ring has 262,144 entries
    if len(entry) not in (3, 4):
        raise where().error(f"expected [node, node, link type] or [node, node, link type, count], got {list(entry)!r}")
    a, b, alias = entry[0], entry[1], entry[2]
    if not (type(a) is str and type(b) is str and a in nodes and b in nodes):  # the usual case in one test
        for j, node in enumerate((a, b)):
            if not isinstance(node, str) or node not in nodes:
                raise where().child(j).error(f"unknown node {node!r}")
    if a == b:
        raise where().child(1).error(f"a link from {a!r} to itself")
    if not isinstance(alias, str) or alias not in links:
        raise where().child(2).error(f"unknown link type {alias!r}; links: {', '.join(links) or 'none'}")
    count = entry[3] if len(entry) == 4 else 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise where().child(3).error(f"expected a positive number of parallel links, got {excerpt(count)}")
    if count > MAX_PARALLEL_LINKS:  # each link is a channel the solver tracks
        raise where().child(3).error(f"{count} parallel links is more than the supported "
                                   f"maximum of {MAX_PARALLEL_LINKS}")
    return a, b, alias, count


def check_budgets(fab: Fabric, doc: TopologyDoc, parts, top: Where) -> None:
    """No device- or memory-node has more high-bandwidth links than it owns.

    A device's PCIe host interface (its link to a PCIe switch) is not one of its
    ``device.links`` high-bandwidth links, so it is not counted, nor is a link type
    marked ``host_interface`` (NVLink-C2C to the device's own CPU). A fabric or spine
    switch has its part's ports per chip (``parts``: node -> (part, the key naming it));
    a NIC that devices share takes one port. ``fab``: the graph as read once for the
    load (its nodes' kinds are not read again here).
    """
    budgets = {"device": (doc.device.links, "device.links")}
    if doc.memory_node is not None:
        budgets["memory"] = (doc.memory_node.links, "memory_node.links")
    kinds = fab.kinds
    # Nodes a link to is a host interface (a PCIe switch): not counted at the other end.
    host = {n for n, kind in kinds.items() if NODE_KINDS.get(kind).host_side}
    # Link types that do not count against a device's budget (a switch's port all the same).
    free = {alias for alias, spec in doc.links.items() if spec.host_interface}
    # Devices that share a NIC (``nics``) take one switch port for it, not one each.
    nic_of = {d: g for g, members in enumerate(doc.nics) for d in members}
    for node, others in fab.succ.items():
        kind = kinds[node]
        if kind not in budgets and node not in parts:
            continue
        if kind == "device" and free:
            used = sum(1 for other, keyed in others.items() if other not in host
                       for data in keyed.values() if data["link_type"] not in free)
        elif node in parts and nic_of:
            nics: set[int] = set()
            used = 0
            for other, keyed in others.items():
                if other in host or (other in nic_of and nic_of[other] in nics):
                    continue
                if other in nic_of:
                    nics.add(nic_of[other])
                used += len(keyed)
        else:
            used = sum(len(keyed) for other, keyed in others.items() if other not in host)
        if node in parts:
            budget, owner = parts[node][0].total_ports, f"{parts[node][1]} ports x chips"
        else:
            budget, owner = budgets[kind]
        if used > budget:
            raise top.child("connections").error(
                f"node {node!r} has {used} links, more than its {owner} = {budget}"
            )
