"""The fabric routing service: where each device sits in the switched network, and the
way between any two.

A topology's graph, read once (:class:`Fabric`): every device's *home* (its domain's
fabric switch, an NVSwitch), its *exit* (the spine switch its NIC links to), its *rail*
(the switch that joins every device of that exit's rail: the exit itself, or the core
above it in a fat tree), the machine it is in, and a spine's tier (1 a leaf, then pod
spine, core). :meth:`Fabric.route` gives the nodes between two devices as the
libraries route them (through their home switch; over their rail; or NCCL's PXN: over
the home switch to the peer of their domain on the other's rail first), and
:meth:`Fabric.dimensions` the network as ASTRA-sim's analytical backend describes one:
a list of (kind, size, bandwidth, latency) per dimension.

Rings (:mod:`mcdla.hw.rings`, :mod:`mcdla.hw.binding`) keep their ranks, segments and
latencies; the switch algorithms ask the fabric for rails, exits and the relay of a
PXN send (:class:`mcdla.hw.network.Ring` holds the fabric it was bound on). Everything
here is per rank or per switch and asked lazily, so a design of a hundred thousand
devices pays for the ranks its rings and collectives name, once each.
"""

from __future__ import annotations

from mcdla.config.nodes import NODE_KINDS
from mcdla.hw.network import channel_id

__all__ = ["Fabric", "ASTRA_KINDS"]

# ASTRA-sim's analytical network's basic topologies, one per dimension
# (astra-sim/astra-network-analytical, input/*.yml: ``topology: [Ring, FullyConnected,
# Switch]``, with ``npus_count``, ``bandwidth`` in GB/s and ``latency`` in ns per dimension).
ASTRA_KINDS = ("Ring", "FullyConnected", "Switch")


class Fabric:
    """What ring derivation, binding and the switch algorithms ask of the graph, read
    once: each node's kind, its successors' parallel links (plain dicts), each rank's
    one home and one exit fabric switch, a fat tree's core above a leaf, each rank's
    rail and machine. Reading them through networkx's views cost more than the binding."""

    def __init__(self, graph, channels=None) -> None:
        # The channel table (channel id -> Channel, mcdla.hw.wiring.add_links): the graph's
        # edges carry their link type only. None: a graph read for its structure alone
        # (ring derivation), whose channels are named (link, link_id) but not rated
        # (dimensions, which reads their rates, needs the table).
        self.table = channels if channels is not None else {}
        self.kinds: dict[str, str] = dict(graph.nodes(data="kind"))
        self.spine: set[str] = {n for n, spine in graph.nodes(data="spine") if spine}
        # Nodes any two of whose neighbours reach each other through them (fabric switches).
        self.switches: set[str] = {n for n, kind in self.kinds.items() if NODE_KINDS.get(kind).pairs}
        self.succ: dict[str, dict] = dict(graph.adjacency())  # node -> successor -> key -> data
        self._tiers: dict[str, tuple[str, str]] = {}
        self._cores: dict[str, str] = {}
        self._levels: dict[str, int] | None = None
        self._nodes: dict[str, str] | None = None
        self._on_rail: dict[tuple[str, str], tuple[str, ...]] | None = None
        self._rails: dict[tuple[str, str], tuple] = {}  # (a, b) -> their way over the rail (rail_channels)

    # -- where a device sits ---------------------------------------------------------

    def node_of(self, rank: str) -> str:
        """The machine ``rank`` is in, named by its first member in node order: the
        part of the graph its links reach without a spine switch (a cluster's node with
        its own switch, PCIe tree and hosts; the whole design without spines)."""
        if self._nodes is None:
            order = {n: i for i, n in enumerate(self.succ)}
            parent: dict[str, str] = {}

            def find(n: str) -> str:
                while parent.get(n, n) != n:
                    n = parent[n]
                return n

            for a, neighbours in self.succ.items():
                if a in self.spine:
                    continue
                for b in neighbours:
                    if b not in self.spine:
                        ra, rb = find(a), find(b)
                        if ra != rb:  # the earlier root names the merged part
                            if order[ra] > order[rb]:
                                ra, rb = rb, ra
                            parent[rb] = ra
            self._nodes = {n: find(n) for n in self.succ}
        return self._nodes[rank]

    def tiers(self, rank: str) -> tuple[str, str]:
        """The rank's one fabric neighbour that is not a spine (its domain's switch) and
        its one spine neighbour (its way out), each "" unless exactly one."""
        found = self._tiers.get(rank)
        if found is None:
            switches = [n for n in self.succ[rank] if n in self.switches]
            home = [n for n in switches if n not in self.spine]
            out = [n for n in switches if n in self.spine]
            found = self._tiers[rank] = (home[0] if len(home) == 1 else "", out[0] if len(out) == 1 else "")
        return found

    def home(self, rank: str) -> str:
        """The rank's domain switch (its NVSwitch, a leaf of a two-level switch), or ""."""
        return self.tiers(rank)[0]

    def exit(self, rank: str) -> str:
        """The spine switch the rank links to directly (its NIC's rail switch), or ""."""
        return self.tiers(rank)[1]

    def core(self, leaf: str) -> str:
        """The one spine above spine ``leaf`` (the switch over a fat tree's leaf of a
        rail: its core, or its pod's spine in three tiers; the core over a pod spine),
        else "". Above: one tier further from the devices (:meth:`tier`)."""
        if not leaf:
            return ""
        found = self._cores.get(leaf)
        if found is None:
            level = self.tier(leaf)
            above = [n for n in self.succ[leaf] if n in self.spine and self.tier(n) == level + 1]
            found = self._cores[leaf] = above[0] if len(above) == 1 else ""
        return found

    def tier(self, spine: str) -> int:
        """A spine's tier: 1 for one a device links to (a leaf), else one more than the
        lowest of the spines it links to (a fat tree's pod spine 2, its core 3)."""
        if self._levels is None:
            kinds, succ = self.kinds, self.succ
            level = {s: 1 for s in self.spine if any(kinds[n] == "device" for n in succ[s])}
            frontier = list(level)
            while frontier:  # breadth first over the spines, up from the leaves
                nxt = []
                for s in frontier:
                    for n in succ[s]:
                        if n in self.spine and n not in level:
                            level[n] = level[s] + 1
                            nxt.append(n)
                frontier = nxt
            self._levels = level
        return self._levels.get(spine, 0)

    def rail(self, rank: str) -> str:
        """The switch that joins the rank's rail: the core above its exit switch (over
        its pod spine in three tiers), or the exit switch itself ("" for none)."""
        out = self.exit(rank)
        core = self.core(out)
        return self.core(core) or core or out

    def on_rail(self, home: str, rail: str) -> tuple[str, ...]:
        """The devices of domain ``home`` on ``rail``, in node order: who relays a PXN
        send from that domain to a peer on the rail. Indexed once, on first ask."""
        if self._on_rail is None:
            index: dict[tuple[str, str], list[str]] = {}
            for n, kind in self.kinds.items():
                if kind == "device" and self.home(n) and self.exit(n):
                    index.setdefault((self.home(n), self.rail(n)), []).append(n)
            self._on_rail = {key: tuple(members) for key, members in index.items()}
        return self._on_rail.get((home, rail), ())

    # -- the way between two devices -------------------------------------------------

    def up_and_over(self, a: str, b: str) -> list[str] | None:
        """The switches from ``a``'s exit to ``b``'s: the one they share, else up to the
        lowest switch above both (a fat tree's core, or pod spine then core) and down;
        None when they are on no common rail."""
        up, down = [self.exit(a)], [self.exit(b)]
        while up[-1] and up[-1] != down[-1]:
            up.append(self.core(up[-1]))
            down.append(self.core(down[-1]))
        return up + down[-2::-1] if up[-1] else None

    def rail_channels(self, a: str, b: str, number: int = 0) -> tuple[str, ...] | None:
        """The channels from device ``a`` out of its domain to ``b`` over their rail
        (:meth:`up_and_over`) on ring ``number``'s parallel links (:meth:`channels`);
        None when ``a`` has no exit or they share no rail. Each pair's way is found once,
        and its channels kept per choice of parallel links (``number`` modulo each hop's
        count): a cluster's sub-rings ask for one pair once per ring."""
        found = self._rails.get((a, b))
        if found is None:
            way = self.up_and_over(a, b) if self.exit(a) else None
            path = (a, *way, b) if way is not None else ()
            found = self._rails[(a, b)] = (path, tuple(len(self.succ[x][y]) for x, y in zip(path, path[1:])), {})
        path, counts, made = found
        if not path:
            return None
        key = tuple(number % count for count in counts)
        channels = made.get(key)
        if channels is None:
            channels = made[key] = self.channels(path, number)
        return channels

    def route(self, i: str, j: str) -> tuple[str, ...] | None:
        """The nodes from device ``i`` to device ``j`` through the switched fabric, as the
        collective libraries route a send: through the home switch they share; else over
        their rail (:meth:`up_and_over`); else over ``i``'s home switch to the first device
        of its domain on ``j``'s rail and over that (NCCL's PXN, 2.12+); else, for two
        domains under common spines (a two-level switch), up from ``i``'s home to the first
        spine above both and down. None where no switch joins them (a ring's neighbours,
        two devices of one machine without a shared switch)."""
        if i == j:
            return (i,)
        if j in self.succ[i] and self.kinds[j] == "device":  # linked directly (NVLink)
            return i, j
        home = self.home(i)
        if home and home == self.home(j):
            return i, home, j
        if self.exit(j) and self.node_of(i) != self.node_of(j):
            way = self.up_and_over(i, j)
            if way is not None:
                return (i, *way, j)
            relay = self.on_rail(home, self.rail(j))[:1] if home else ()
            rest = self.up_and_over(relay[0], j) if relay else None
            if rest is not None:
                return (i, home, relay[0], *rest, j)
            return None
        other = self.home(j)
        if home and other:
            above = [s for s in self.succ[home] if s in self.spine and other in self.succ[s]]
            if above:
                return i, home, above[0], other, j
        return None

    def link(self, src: str, dst: str, number: int = 0) -> str:
        """The channel from ``src`` to ``dst`` that ring ``number`` takes: parallel link
        ``number`` modulo their count (each ring its own, as NCCL's channels). Its
        channel's own id where the table holds the channel (mcdla.hw.wiring's links): one
        string a channel, not one each time asked (4.2M of them, 258 MB, at 131,072 GPUs)."""
        return self.link_id(src, dst, number % len(self.succ[src][dst]))

    def link_id(self, src: str, dst: str, k: int) -> str:
        """The id of parallel link ``k``'s channel from ``src`` to ``dst``: the table's own
        string where it holds the channel (one string a channel, however often named)."""
        name = channel_id(src, dst, k)
        channel = self.table.get(name)
        return channel.id if channel is not None else name

    def channels(self, path, number: int = 0) -> tuple[str, ...]:
        """The channels of a node path (:meth:`route`), ring ``number``'s parallel links."""
        return tuple(self.link(a, b, number) for a, b in zip(path, path[1:]))

    # -- the network as dimensions ---------------------------------------------------

    def dimensions(self, device: str) -> tuple[tuple[str, int, float, float], ...]:
        """The network as ``device`` sees it, one (ASTRA-sim kind, devices, bytes/s per
        device, seconds) per dimension, innermost first: its domain (a Switch of the
        devices on its home switch; a Ring of its machine's devices where no switch joins
        them), then across the domains (a Switch of the devices on its rail, or of the
        domains under the spines of a two-level switch). Bandwidth: the device's
        channels into the dimension summed (one direction); latency: the route's hops
        from the device to the farthest peer of the dimension summed (switch latency
        included, as each channel's). A description of the fabric for comparison with
        ASTRA-sim's inputs; the simulation runs on the channels themselves."""
        dims = []
        home, out = self.home(device), self.exit(device)
        if home:
            members = [n for n in self.succ[home] if self.kinds[n] == "device"]
            peer = next((m for m in members if m != device), device)
            dims.append(("Switch", len(members), self._bw(device, home), self._latency(self.route(device, peer))))
        else:
            machine = self.node_of(device)
            members = [n for n, kind in self.kinds.items() if kind == "device" and self.node_of(n) == machine]
            ring = [n for n in self.succ[device] if NODE_KINDS.get(self.kinds[n]).on_rings and n not in self.spine]
            hop = min((self._latency((device, n)) for n in ring), default=0.0)
            dims.append(("Ring", len(members), sum(self._bw(device, n) for n in ring), hop))
        if out:
            rail = self.rail(device)
            peers = [n for n, kind in self.kinds.items() if kind == "device" and self.exit(n) and self.rail(n) == rail]
            far = max((self.route(device, p) for p in peers if p != device), key=len, default=None)
            dims.append(("Switch", len(peers), self._bw(device, out), self._latency(far) if far else 0.0))
        elif home:  # a two-level switch: the leaves under the home's spines
            spines = [s for s in self.succ[home] if s in self.spine]
            leaves = sorted({n for s in spines for n in self.succ[s] if n in self.switches and n not in self.spine})
            if len(leaves) > 1:
                members = [n for n in self.succ[home] if self.kinds[n] == "device"]
                per_device = sum(self._bw(home, s) for s in spines) / len(members)  # the leaf's uplinks, shared
                other = next(n for n in self.succ[leaves[-1] if leaves[-1] != home else leaves[0]]
                             if self.kinds[n] == "device")
                dims.append(("Switch", len(leaves), min(per_device, self._bw(device, home)),
                             self._latency(self.route(device, other))))
        return tuple(dims)

    def _bw(self, src: str, dst: str) -> float:
        """Bytes/s of every parallel channel from ``src`` to ``dst``, summed."""
        return sum(self.table[channel_id(src, dst, k)].bw_Bps for k in self.succ[src].get(dst, {}))

    def _latency(self, path) -> float:
        """Seconds of the first parallel channel of every hop of ``path``, summed."""
        return sum(self.table[channel_id(a, b, min(self.succ[a][b]))].latency_s for a, b in zip(path, path[1:]))
