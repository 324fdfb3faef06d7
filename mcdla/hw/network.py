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

from dataclasses import dataclass
from functools import cached_property

__all__ = ["Channel", "Port", "Ring", "Subflow", "channel_id", "sub_ring", "reduction_port", "reduce_unit"]


def channel_id(src: str, dst: str, index: int) -> str:
    """The id of the ``index``-th parallel link's channel from ``src`` to ``dst``."""
    return f"{src}>{dst}:{index}"


def reduction_port(switch: str) -> str:
    """The id of fabric switch ``switch``'s in-switch reduction engine (a port)."""
    return f"{switch}/reduce"


@dataclass(frozen=True)
class Channel:
    """One direction of one physical link."""

    id: str
    src: str
    dst: str
    bw_Bps: float
    latency_s: float


@dataclass(frozen=True)
class Port:
    """A bandwidth with no direction: a memory shared by reads and writes, or a fabric
    switch's in-switch reduction engine."""

    id: str
    node: str
    bw_Bps: float


def reduce_unit(rank: str) -> str:
    """The id of device ``rank``'s reduction unit (a resource of the flow network that
    reducing collectives cross at every rank: mcdla.sim.collectives)."""
    return f"reduce:{rank}"


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
    """

    name: str
    ranks: tuple[str, ...]
    segments: tuple[tuple[str, ...], ...]
    latency_s: tuple[float, ...]
    switch_out: tuple[str, ...] = ()
    switch_in: tuple[str, ...] = ()
    exit_switch: tuple[str, ...] = ()
    exit_out: tuple[str, ...] = ()
    exit_in: tuple[str, ...] = ()
    home_out: tuple[str, ...] = ()
    home_in: tuple[str, ...] = ()

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

    @cached_property
    def derived(self) -> dict:
        """What collective algorithms derive from the ring alone (its domains, say), kept
        with it: computed once per ring, not per collective (frozen: never stale)."""
        return {}

    @cached_property  # a ring step's latency, asked by every collective on the ring
    def max_latency_s(self) -> float:
        return max(self.latency_s)

    @cached_property  # asked by every reducing collective on the ring: built once
    def reduce_units(self) -> tuple[str, ...]:
        return tuple(reduce_unit(rank) for rank in self.ranks)

    @cached_property  # checked by every collective on the ring: once
    def repeats_channel(self) -> bool:
        return len(set(self.channels)) != len(self.channels)


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


def sub_ring(ring: Ring, members, name: str, reverse: Ring | None = None) -> Ring:
    """``ring`` restricted to the ranks in ``members``, in ring order (a communicator of
    a subgroup on the same physical rings, as NCCL's). Each segment runs from one member
    to the next along ``ring``, relaying through the ranks between; when ``reverse``
    (the same cycle the other way) reaches the next member in fewer hops, the segment
    goes back along it instead, so a group of neighbours forms a line over both
    directions rather than closing the long way around through other groups."""
    keep = [i for i, rank in enumerate(ring.ranks) if rank in members]
    if len(keep) == ring.size:
        return ring
    back = {rank: i for i, rank in enumerate(reverse.ranks)} if reverse is not None else {}
    segments, latency = [], []
    for j, start in enumerate(keep):
        end = keep[(j + 1) % len(keep)]
        route, hops = ring, _hops(ring.size, start, end)
        if back:
            other = _hops(reverse.size, back[ring.ranks[start]], back[ring.ranks[end]])
            if sum(len(reverse.segments[h]) for h in other) < sum(len(ring.segments[h]) for h in hops):
                route, hops = reverse, other
        segments.append(tuple(c for h in hops for c in route.segments[h]))
        latency.append(sum(route.latency_s[h] for h in hops))
    return Ring(name, tuple(ring.ranks[i] for i in keep), tuple(segments), tuple(latency))


def _hops(size: int, start: int, end: int) -> list[int]:
    """The segment indices a ring of ``size`` ranks crosses from rank ``start`` to ``end``."""
    return list(range(start, end)) if end > start else [*range(start, size), *range(end)]
