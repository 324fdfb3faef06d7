"""The interconnect as the simulator sees it: channels, memory ports, rings, routes.

A physical link is full duplex; each direction of each link is its own *channel*
with its own bandwidth. Parallel links between two nodes stay separate channels
(``"D0>M0:0"``, ``"D0>M0:1"``, ...) because each has its own arbitration: a
collective ring is bound to one of them, while a DMA stripes over all of them.
A *port* is a memory whose bandwidth is shared by reads and writes (a memory-node's
share for one client device, a CPU socket's DRAM).

These objects are pure data, built from a topology YAML by :mod:`mcdla.hw.topology`
and consumed by the flow network and the collectives in :mod:`mcdla.sim`.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from mcdla.errors import InputError
from mcdla.hw.cache import Cache

__all__ = ["Channel", "Port", "Ring", "Subflow", "channel_id", "channel_ids", "sub_ring", "sub_ring_period", "Periods",
           "p2p_paths", "RANK_LINKS", "reduction_port", "reduce_unit"]


# A ring's per-rank links besides its segments: each rank's to and from its domain
# switch, its exit, and its leaf's core (the switch algorithms take them).
RANK_LINKS = ("home_out", "home_in", "exit_out", "exit_in", "core_up", "core_down", "top_up", "top_down")
# Those the fabric gives from the rank and the ring's number alone (the links home are the binding's).
FABRIC_LINKS = RANK_LINKS[2:]


def channel_id(src: str, dst: str, index: int) -> str:
    """The id of the ``index``-th parallel link's channel from ``src`` to ``dst``."""
    return f"{src}>{dst}:{index}"


def channel_ids(pairs, indices) -> list[str]:
    """:func:`channel_id` of each (src, dst) of ``pairs`` with its index of ``indices``, in
    one comprehension: a ring of 131,072 devices binds 1.57M hops."""
    return [f"{src}>{dst}:{index}" for (src, dst), index in zip(pairs, indices)]


def reduction_port(switch: str) -> str:
    """The id of fabric switch ``switch``'s in-switch reduction engine (a port)."""
    return f"{switch}/reduce"


class Channel(NamedTuple):
    """One direction of one physical link. A named tuple, not a frozen dataclass: a ring
    of 131,072 devices has 1.57M channels, and a tuple is made and read in C (making
    them took 2 s as dataclasses, docs/performance.md)."""

    id: str
    src: str
    dst: str
    bw_Bps: float
    latency_s: float


class Port(NamedTuple):
    """A bandwidth with no direction: a memory shared by reads and writes, or a fabric
    switch's in-switch reduction engine. A named tuple, as :class:`Channel` (a ring of
    131,072 devices has 262,144 memory ports)."""

    id: str
    node: str
    bw_Bps: float


def reduce_unit(rank: str) -> str:
    """The id of device ``rank``'s reduction unit (a resource of the flow network that
    reducing collectives cross at every rank: mcdla.sim.collectives). Interned: each of
    a rank's rings names it (18 rings of 4,096 ranks a group at 131,072 GPUs), one string."""
    return sys.intern(f"reduce:{rank}")


@dataclass(frozen=True)
class Ring:
    """One directed collective ring.

    ``ranks`` are the device-nodes in ring order; ``segments[i]`` is the sequence of
    channel ids that carries data from ``ranks[i]`` to ``ranks[(i + 1) % p]`` (more
    than one channel when the ring relays through memory-nodes). ``latency_s[i]`` is
    the summed hop latency of ``segments[i]``. ``switch_out[i]`` is the fabric switch
    rank ``i`` sends into (the end of its first hop) and ``switch_in[i]`` the one it
    receives from ("" where that hop is not to or from a fabric switch): two ranks on one
    switch reach each other through it whatever the ring's order, so the switch
    algorithms may pair any two of them. ``exit_switch[i]`` is the spine switch rank
    ``i`` links to directly (a GPU's NIC to its rail switch; "" for none), and
    ``exit_out[i]``/``exit_in[i]`` the channels to and from it this ring uses: the way
    out of the rank's domain for an algorithm that crosses domains rank by rank.
    ``home_out[i]``/``home_in[i]`` are rank ``i``'s channels to and from its own fabric
    switch (its domain's), the segment's where the ring takes that way, else the
    parallel link of this ring's number ("" where the rank has no such switch).
    ``exit_core[i]`` is the core switch above rank ``i``'s exit switch when that is a
    leaf of a two-tier fabric (a fat tree's leaf of one rail, under the rail's core;
    "" for none), ``core_up[i]``/``core_down[i]`` the channels from the leaf to the core
    and back this ring uses: two ranks on one rail reach each other over their leaves
    and the core (:meth:`over_rail`). In a three-tier fat tree ``exit_core[i]`` is the
    leaf's pod spine, and ``exit_top[i]`` the rail's core above it, with ``top_up[i]``/
    ``top_down[i]`` the channels from the pod spine to the core and back ("" or empty
    in two tiers). ``node[i]`` names the machine rank ``i`` is in
    (what its links reach without a spine switch): ranks of one machine never talk over
    the scale-out network. ``reverse`` names the ring that runs the same
    cycle the other way over the other direction of the same links ("" for none): a
    listed ring bound both ways. ``fabric`` is the routing service of the graph the ring
    was bound on (:class:`mcdla.hw.fabric.Fabric`; None for a ring made by hand): the
    ranks' rails and the relay of a PXN send are its answers, not the ring's; so are the
    exit and core attributes above (``exit_switch`` ... ``top_down``: found from the fabric
    when first asked, on the ring's parallel links, ``number``: the listed ring's index,
    modulo the links). ``cache``
    is where what collectives derive from the ring is kept (:meth:`memo`): the loaded
    topology's for its bound rings, a run's for its sub-rings, the ring's own for one
    made by hand.
    """

    name: str
    ranks: tuple[str, ...]
    segments: tuple[tuple[str, ...], ...]
    latency_s: tuple[float, ...]
    switch_out: tuple[str, ...] = ()
    switch_in: tuple[str, ...] = ()
    home_out: tuple[str, ...] = ()
    home_in: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    reverse: str = ""
    fabric: Any = field(default=None, repr=False, compare=False)
    number: int = 0  # the listed ring's index: which parallel link it takes to a spine (Fabric.link)
    # (the translation, the hops of one period under it) when the ring was bound by period
    # (mcdla.hw.binding): hop j is in hop j mod period's orbit. (): not known.
    period: tuple = field(default=(), repr=False, compare=False)
    cache: Cache = field(default_factory=Cache, repr=False, compare=False)
    # This ring's key in ``cache``: every ring made (a replace() too) gets its own object,
    # equal to no other (in any process: a pickled ring and its cache keep theirs).
    token: object = field(default_factory=object, init=False, repr=False, compare=False)

    # -- each rank's way out, as the fabric has it (the ring's parallel links) ----------

    @cached_property
    def exit_switch(self) -> tuple[str, ...]:
        """Per rank, the spine switch it links to directly (its NIC's rail switch; ""
        for none); () on a ring made by hand."""
        fabric = self.fabric
        if fabric is None:
            return ()
        if not fabric.spine:  # no spine switch: no rank has one (Fabric.exit's ""), asked of none
            return ("",) * len(self.ranks)
        return tuple(fabric.exit(r) for r in self.ranks)

    def _above(self, below: tuple[str, ...]) -> tuple[str, ...]:
        """Per rank, the one spine above each of ``below`` (Fabric.core); () for none."""
        if not any(below):
            return ()
        above = {s: self.fabric.core(s) for s in set(below)}
        found = tuple(above[s] for s in below)
        return found if any(found) else ()

    def _links(self, src: tuple[str, ...], dst: tuple[str, ...]) -> tuple[str, ...]:
        """Per rank, this ring's channel from ``src`` to ``dst`` ("" where either is none)."""
        if not (any(src) and any(dst)):  # no switch on one side (a ring without spines): none
            return ("",) * min(len(src), len(dst))
        link = self.fabric.link
        return tuple(link(a, b, self.number) if a and b else "" for a, b in zip(src, dst))

    @cached_property
    def exit_core(self) -> tuple[str, ...]:
        """Per rank, the switch above its exit (a fat tree's core, or pod spine); ()."""
        return self._above(self.exit_switch)

    @cached_property
    def exit_top(self) -> tuple[str, ...]:
        """Per rank, the core above its pod spine in a three-tier fat tree; ()."""
        return self._above(self.exit_core)

    exit_out = cached_property(lambda self: self._links(self.ranks, self.exit_switch))
    exit_in = cached_property(lambda self: self._links(self.exit_switch, self.ranks))
    core_up = cached_property(lambda self: self._links(self.exit_switch, self.exit_core) if self.exit_core else ())
    core_down = cached_property(lambda self: self._links(self.exit_core, self.exit_switch) if self.exit_core else ())
    top_up = cached_property(lambda self: self._links(self.exit_core, self.exit_top) if self.exit_top else ())
    top_down = cached_property(lambda self: self._links(self.exit_top, self.exit_core) if self.exit_top else ())

    def through_switch(self, i: int) -> str:
        """The fabric switch of segment ``i`` when it is rank -> switch -> next rank, else ""."""
        if not self.switch_out or len(self.segments[i]) != 2:
            return ""
        hub = self.switch_out[i]
        return hub if hub == self.switch_in[(i + 1) % self.size] else ""

    @property
    def hub(self) -> str:
        """The fabric switch of a *switch ring* (every segment through that one switch),
        else ""."""
        hubs = {self.through_switch(i) for i in range(self.size)}
        return hubs.pop() if len(hubs) == 1 else ""

    def up(self, i: int) -> str:
        """The channel on which rank ``i`` sends (the first of its segment)."""
        return self.segments[i][0]

    def down(self, i: int) -> str:
        """The channel on which rank ``i`` receives (the last of the segment into it)."""
        return self.segments[i - 1][-1]

    @property
    def size(self) -> int:
        return len(self.ranks)

    @property
    def hops(self) -> int:
        return sum(len(s) for s in self.segments)

    @cached_property  # read at every ring step; computed once (frozen: never stale)
    def channels(self) -> tuple[str, ...]:
        return tuple(c for seg in self.segments for c in seg)

    def memo(self, key, make):
        """What collective algorithms derive from the ring alone (its domains, say) under
        ``key``, made by ``make()`` when first asked and kept in :attr:`cache`: once per
        ring, not per collective (the ring is frozen: never stale)."""
        return self.cache.get(("ring", self.token, key), make)

    @cached_property  # a ring step's latency, asked by every collective on the ring
    def max_latency_s(self) -> float:
        return max(self.latency_s)

    def leaves_node(self, i: int) -> bool:
        """Whether segment ``i`` goes from one machine to another (over the scale-out
        network); False where the ring names no machines."""
        return bool(self.node) and self.node[i] != self.node[(i + 1) % self.size]

    @cached_property  # asked by every reducing collective on the ring: built once
    def reduce_units(self) -> tuple[str, ...]:
        return tuple(map(reduce_unit, self.ranks))

    @cached_property  # checked by every collective on the ring: once
    def repeats_channel(self) -> bool:
        if self.period:  # bound by period: each of a period's hops in an orbit of its own, so none twice
            return False
        return len(set(self.channels)) != len(self.channels)

    @cached_property  # sub-rings compare ways around the ring: once, not per segment
    def _reach(self) -> tuple[int, ...]:
        """``_reach[i]``: the channels from rank 0 to rank ``i`` (``_reach[size]``: all)."""
        found, total = [0], 0
        for segment in self.segments:
            total += len(segment)
            found.append(total)
        return tuple(found)

    def span(self, start: int, end: int) -> int:
        """The channels from rank ``start`` to rank ``end`` going forward (a whole turn
        when they are one rank), in constant time: a sub-ring of thousands of ranks asks
        once per member."""
        reach = self._reach
        if end > start:
            return reach[end] - reach[start]
        return reach[-1] - reach[start] + reach[end]

    @cached_property  # sub-rings and point-to-point routes look ranks up: once
    def position(self) -> dict[str, int]:
        """Rank -> its index in :attr:`ranks`."""
        return {rank: i for i, rank in enumerate(self.ranks)}

    def direct(self, i: int, j: int, channels, avoid=()) -> tuple[str, ...] | None:
        """The channels from rank ``i`` to rank ``j`` through the switches they link to:
        their own domain switch when they share it (:attr:`home_out`, :attr:`home_in`: a
        GPU's NVSwitch); the spine both leave their domains to (:attr:`exit_out`,
        :attr:`exit_in`: the rail switch of two nodes' GPUs of one local rank); else
        ``i``'s domain switch to the rank of its domain on ``j``'s rail and over that
        rank's way out (NCCL's PXN, 2.12+: a send to another rail goes over NVLink to
        the GPU on the peer's rail first), unless that rank is in ``avoid``. None when no
        such way exists, and for two ranks of one machine without a switch between them
        (they stay on the ring). ``channels``: channel id -> :class:`Channel` (a home
        channel's far end)."""
        way = self.home_way(i, j, channels)
        if way is not None:
            return way
        if not self.exit_switch or not self.exit_switch[j] or (self.node and self.node[i] == self.node[j]):
            return None
        way = self.over_rail(i, j)
        if way is not None:
            return way
        home = self._domain(i, channels)
        x = self._relay(home, j) if home else None
        rest = self.over_rail(x, j) if x is not None and x not in avoid else None
        if rest is None:
            return None
        return (self.home_out[i], self.home_in[x]) + rest

    def home_way(self, i: int, j: int, channels) -> tuple[str, str] | None:
        """The segment from rank ``i`` to rank ``j`` through the domain switch they share
        (:meth:`direct`'s first way), or None."""
        home = self._domain(i, channels)
        if home and self.home_in[j] and home == channels[self.home_in[j]].src:
            return self.home_out[i], self.home_in[j]
        return None

    def _domain(self, i: int, channels) -> str:
        """The switch rank ``i``'s link home leads to ("" or None for none)."""
        return self.home_out and self.home_out[i] and channels[self.home_out[i]].dst

    def rail(self, i: int) -> str:
        """The switch that joins rank ``i``'s rail (:meth:`mcdla.hw.fabric.Fabric.rail`;
        "" for none)."""
        return self.fabric.rail(self.ranks[i]) if self.fabric is not None else ""

    def over_rail(self, i: int, j: int) -> tuple[str, ...] | None:
        """The channels from rank ``i`` out of its domain to rank ``j`` over their rail:
        through their one exit switch, or up from ``i``'s leaf to the rail's core and down
        to ``j``'s leaf (through their pod spines when their pods differ, in three tiers),
        on this ring's parallel links (:meth:`mcdla.hw.fabric.Fabric.up_and_over`); None
        when they are not on one rail."""
        fabric = self.fabric
        return fabric.rail_channels(self.ranks[i], self.ranks[j], self.number) if fabric is not None else None

    def _relay(self, home: str, j: int) -> int | None:
        """The position of the rank of domain ``home`` on rank ``j``'s rail that relays a
        PXN send to ``j``: of the fabric's devices there (:meth:`~mcdla.hw.fabric.Fabric.
        on_rail`), the first in this ring's order; None for none. Once per (domain, rail)."""
        rail = self.rail(j)

        def first() -> int:
            position = self.position
            return min((position[d] for d in self.fabric.on_rail(home, rail) if d in position), default=-1)

        found = self.memo(("pxn relay", home, rail), first)
        return None if found < 0 else found


@dataclass(frozen=True)
class Subflow:
    """One stripe of a device's transfer to or from its backing store.

    ``share`` is the fraction of the transfer's bytes this stripe carries;
    ``path`` lists the channels and ports it crosses, in order; ``store`` is the
    node whose memory holds the bytes (a memory-node or a CPU socket).
    """

    share: float
    path: tuple[str, ...]
    latency_s: float
    store: str


def sub_ring(ring: Ring, members, name: str, reverse: Ring | None = None, channels=None,
             cache: Cache | None = None) -> Ring:
    """``ring`` restricted to the ranks in ``members``, in ring order (a communicator of
    a subgroup on the same physical rings, as NCCL's). A segment between two members
    that share a switch (:meth:`Ring.direct`: their domain switch, or a rail switch)
    goes straight through it, as NCCL connects peers over NVSwitch or one rail; any
    other runs along ``ring``, relaying through the ranks between, or back along
    ``reverse`` (the same cycle the other way) when that takes fewer hops, so a group of
    neighbours forms a line over both directions rather than closing the long way
    around through other groups. ``channels`` (channel id -> Channel) gives direct
    segments their latency; a ring bound to switches needs it. The kept ranks keep
    their switches and links to them, so the switch algorithms run on the sub-ring.
    ``cache``: where the sub-ring keeps what is derived from it (a run's; default its own)."""
    position = ring.position
    keep = sorted(position[m] for m in members if m in position)
    if len(keep) == ring.size:
        return ring
    back = reverse.position if reverse is not None else {}
    segments, latency, outs, ins = [], [], [], []
    members_at = frozenset(keep)  # a relay to another rail must not be a member: its links are the group's
    same: dict[float, float] = {}  # a ring's few latencies, one float each (not one per rank)
    for j, start in enumerate(keep):
        end = keep[(j + 1) % len(keep)]
        segment, lat, out, into = _segment(ring, start, end, reverse, back, channels, members_at)
        segments.append(segment)
        latency.append(same.setdefault(lat, lat))
        outs.append(out)
        ins.append(into)
    fields = {}
    if ring.switch_out:
        fields.update(switch_out=tuple(outs), switch_in=tuple(ins[-1:] + ins[:-1]))
    for attr in ("node", "home_out", "home_in"):  # the rest of a rank's links the fabric gives
        values = getattr(ring, attr)
        if values:
            fields[attr] = tuple(values[i] for i in keep)
    return Ring(name, tuple(ring.ranks[i] for i in keep), tuple(segments), tuple(latency), fabric=ring.fabric,
                number=ring.number, cache=cache if cache is not None else Cache(), **fields)


class Periods(NamedTuple):
    """What the rank classes read of a sub-ring the run's translation carries onto itself
    block by block (:func:`sub_ring_period`; mcdla.hw.symmetry._ring_edges)."""

    ring: Ring  # every rank, latency and link home; as segments, each block's first period's over the rail
    hops: int  # the whole sub-ring's hop count
    roles: dict  # the fabric's roles (FABRIC_LINKS) of each block's first period's ranks
    # Each block's first period's ranks: they, their roles and ``ring``'s segments each met ``order`` times.
    ranks: tuple
    rest: Counter  # channel -> times met besides: the hops read whole less those closing a block's run (-1)


def sub_ring_period(ring: Ring, members, name: str, translation, channels, reverse: Ring | None = None,
                    cache: Cache | None = None) -> Periods | None:
    """:func:`sub_ring` as the rank classes read it when ``translation`` (the run's,
    mcdla.hw.translation) carries the group onto itself: by period within each block of
    the translation (a leaf, or every node), or None. The kept ranks of a block must be
    one run of the sub-ring, carried onto itself rotated (closed: its last rank to its
    first, :meth:`Translation.period`) with a period of ``run // order`` ranks. A hop
    within a run goes through its ends' switch (:meth:`Ring.direct`'s links home: read
    whole, hop by hop) or straight over their rail (:meth:`Ring.over_rail`: a function of
    its two ends and the ring's number, so under the translation, an automorphism of the
    fabric, hop j of a run is the translate of hop j mod the period's); which way is
    periodic too. So the hops over the rail are one period's each ``order`` times, less
    the one that would close each run where the sub-ring goes on to the next block
    instead; the hops between blocks (``reverse``: ``ring``'s, as :func:`sub_ring`) are
    read whole. :class:`Periods` is what the classes read of the whole sub-ring
    (mcdla.hw.symmetry._ring_edges, which checks that what is read whole holds whole
    orbits); it is no ring to run collectives on."""
    position = ring.position
    keep = sorted(position[m] for m in members if m in position)
    runs = _block_runs(keep, ring.ranks, translation) if 1 < len(keep) < ring.size and ring.exit_switch else None
    if runs is None:
        return None
    order, closed = translation.order, len(runs) == 1  # one run: the sub-ring itself
    segments, ranks, latency, rest, hops = [], [], [], Counter(), 0
    avoid = frozenset(keep)
    for n, run in enumerate(runs):
        m, per = len(run), translation.period([ring.ranks[i] for i in run])
        if not per:
            return None
        home = [ring.home_way(run[j], run[(j + 1) % m], channels) for j in range(m if closed else m - 1)]
        rail = [way is None for way in home]
        if rail[per:] != rail[:len(rail) - per]:
            return None  # which hops go home: not periodic
        lats = []
        for j, way in enumerate(home[:per]):
            if way is None:  # over the rail: one period's, each met ``order`` times
                way = ring.direct(run[j], run[(j + 1) % m], channels)
                if way is None or way != ring.over_rail(run[j], run[(j + 1) % m]):
                    return None  # not over the rail (Ring.direct's PXN, or no way)
                segments.append(way)
                hops += len(way) * order
            lats.append(_latency(way, channels))
        if not closed and rail[per - 1]:  # the translate closing the run: no hop of the sub-ring
            closing = ring.over_rail(run[-1], run[0])
            if closing is None:
                return None
            rest.subtract(closing)
            hops -= len(closing)
        for way in filter(None, home):  # through the ends' switch: read whole
            rest.update(way)
            hops += len(way)
        ranks.extend(ring.ranks[i] for i in run[:per])
        latency.extend(lats[j % per] if rail[j] else _latency(home[j], channels) for j in range(len(home)))
        if not closed:  # on to the next block's run: read whole
            segment, lat, _, _ = _segment(ring, run[-1], runs[(n + 1) % len(runs)][0], reverse,
                                          reverse.position if reverse is not None else {}, channels, avoid)
            rest.update(segment)
            hops += len(segment)
            latency.append(lat)
    back = len(keep) - keep.index(runs[0][0])  # the runs begin at keep[-back]: latencies in keep's order
    fields = {attr: tuple(getattr(ring, attr)[i] for i in keep) for attr in ("node", "home_out", "home_in")
              if getattr(ring, attr)}
    partial = Ring(name, tuple(ring.ranks[i] for i in keep), tuple(segments), tuple(latency[back:] + latency[:back]),
                   fabric=ring.fabric, number=ring.number, cache=cache if cache is not None else Cache(), **fields)
    first = Ring(name, tuple(ranks), (), (), fabric=ring.fabric, number=ring.number)
    return Periods(partial, hops, {role: getattr(first, role) for role in FABRIC_LINKS}, tuple(ranks), rest)


def _block_runs(keep: list[int], ranks, translation) -> list[list[int]] | None:
    """``keep`` (positions on a ring, in order) cut into runs of one block of
    ``translation`` each (:meth:`Translation.block`), the first run beginning where a block
    does, or None if a block's ranks are not one run or a rank is in none."""
    blocks = [translation.block(ranks[i]) for i in keep]
    if None in blocks:
        return None
    start = next((j for j in range(len(keep)) if blocks[j] != blocks[j - 1]), 0)
    runs: list[list[int]] = []
    for j in range(start, start + len(keep)):
        j %= len(keep)
        if not runs or blocks[j] != blocks[runs[-1][-1]]:
            runs.append([])
        runs[-1].append(j)
    if len({blocks[run[0]] for run in runs}) != len(runs):
        return None
    return [[keep[j] for j in run] for run in runs]


def _latency(way, channels) -> float:
    """The latency of the channels ``way``, summed in hop order (as a ring's segment)."""
    lat = 0.0
    for c in way:
        lat += channels[c].latency_s
    return lat


def _segment(ring: Ring, start: int, end: int, reverse: Ring | None, back: dict, channels, avoid=()):
    """The channels from rank ``start`` to rank ``end`` of ``ring`` (:func:`sub_ring`), their
    latency, and the switches the first hop goes into and the last comes out of."""
    if (ring.home_out or ring.exit_switch) and start != end:  # (a group of one keeps the whole cycle)
        if channels is None:
            raise ValueError(f"ring {ring.name!r} is bound to switches: a sub-ring of it needs the channels")
        way = ring.direct(start, end, channels, avoid)
        if way is not None:
            return way, _latency(way, channels), channels[way[0]].dst, channels[way[-1]].src
    route, first, last = ring, start, end
    if back:
        b_start, b_end = back[ring.ranks[start]], back[ring.ranks[end]]
        if reverse.span(b_start, b_end) < ring.span(start, end):
            route, first, last = reverse, b_start, b_end
    hops = _hops(route.size, first, last)  # only the way taken is walked
    segment = tuple(c for h in hops for c in route.segments[h])
    lat = sum(route.latency_s[h] for h in hops)
    if not route.switch_out:
        return segment, lat, "", ""
    return segment, lat, route.switch_out[hops[0]], route.switch_in[(hops[-1] + 1) % route.size]


def p2p_paths(rings, src: str, dst: str, reverse_of, channels) -> tuple[tuple[float, tuple[str, ...], float], ...]:
    """A point-to-point transfer from device ``src`` to ``dst`` as (share of the bytes,
    channels, latency) flows: one per ring through both, as NCCL spreads a send over
    its channels, each on that ring's way from ``src`` to ``dst`` (:func:`sub_ring`'s
    segment: straight through a switch both share, else along the ring or back along
    its reverse, ``reverse_of(ring)``), keeping only the rings whose way takes the
    fewest hops. Rings whose ways coincide keep a flow each: a send is as many flows as
    it has channels however the links fall, so it shares a link with a collective's
    flows (one per ring too) alike."""
    ways: list[tuple[tuple[str, ...], float]] = []
    for ring in rings:
        position = ring.position
        if src not in position or dst not in position:
            continue
        reverse = reverse_of(ring)
        segment, lat, _, _ = _segment(ring, position[src], position[dst], reverse,
                                      reverse.position if reverse is not None else {}, channels)
        if ways and len(segment) < len(ways[0][0]):
            ways = []
        if not ways or len(segment) == len(ways[0][0]):
            ways.append((segment, lat))
    if not ways:  # a hand-written design whose rings miss a pipeline's peers
        raise InputError(f"no ring joins {src} and {dst}: pipeline stages send along the rings",
                         key="execution.pipeline_parallel")
    return tuple((1.0 / len(ways), segment, lat) for segment, lat in ways)


def _hops(size: int, start: int, end: int) -> list[int]:
    """The segment indices a ring of ``size`` ranks crosses from rank ``start`` to ``end``."""
    return list(range(start, end)) if end > start else [*range(start, size), *range(end)]
