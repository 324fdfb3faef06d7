"""Binding a topology's collective rings to its channels.

A ring is given (or derived, :mod:`mcdla.hw.rings`) as a cycle of nodes; binding picks,
for each hop, one of the parallel channels between the two nodes, the least used so far
(:class:`_LinkUsage`), so that rings spread over parallel links as a library spreads its
channels, and checks what a ring may do (pass through relays, switches, without returning to
them; visit every device). Each ring also learns its
ranks' home links (where it leaves their domain). Built once per topology load by
:func:`mcdla.hw.topology.build_topology`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import replace
from typing import Mapping, Sequence

from mcdla.config.generators import ring_cycle
from mcdla.config.nodes import NODE_KINDS
from mcdla.config.schema import Where
from mcdla.config.topology import TopologyDoc
from mcdla.errors import excerpt
from mcdla.hw.network import Ring, channel_id, channel_ids
from mcdla.hw.fabric import Fabric
from mcdla.hw.rings import SEARCH_STEPS, RingSearchLimit, derive_rings
from mcdla.hw.translation import NodeCells, Translation

__all__ = ["bind_rings"]


class _LinkUsage:
    """Per directed node pair, a heap of (times taken, parallel link index) over the
    pair's links, made when first asked: the least taken, the lowest index on a tie, is
    its top, where scanning every link at every hop made binding quadratic in them.
    ``counts``: channel id -> times taken before (default none)."""

    def __init__(self, succ, counts: Mapping[str, int] | None = None) -> None:
        self._succ, self._counts = succ, counts
        self._heaps: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def _heap(self, src: str, dst: str, key=None) -> list[tuple[int, int]]:
        key = key or (src, dst)
        heap = self._heaps.get(key)
        if heap is None:
            counts, links = self._counts, sorted(self._succ[src][dst])
            pair = getattr(counts, "pair", None)  # the counts of a pair's links at once (_PairCounts)
            taken = pair(src, dst, links) if pair else [counts.get(channel_id(src, dst, k), 0) if counts else 0
                                                        for k in links]
            heap = list(zip(taken, links))
            heapq.heapify(heap)
            self._heaps[key] = heap
        return heap

    def take_each(self, pairs, keys=None) -> list[int]:
        """:meth:`take` of every pair in turn, none excluded (a ring that crosses each
        pair once: the common case, in one pass). ``keys``: each pair's heap's key
        (default the pair; the orbit of the pair when every ring is bound by period, so
        the pairs of an orbit, taken alike, share one heap)."""
        heaps, make, replace_top = self._heaps, self._heap, heapq.heapreplace
        chosen = []
        for pair, key in zip(pairs, keys or pairs):
            heap = heaps.get(key) or make(*pair, key)
            count, k = heap[0]
            replace_top(heap, (count + 1, k))
            chosen.append(k)
        return chosen

    def take(self, src: str, dst: str, taken: set[int] | None = None) -> int | None:
        """The least-taken link from ``src`` to ``dst`` not in ``taken``, now taken once
        more; None when every link is in ``taken``."""
        heap = self._heaps.get((src, dst)) or self._heap(src, dst)
        if not taken:  # the common case, a hop of a ring that crosses each pair once
            count, k = heap[0]
            heapq.heapreplace(heap, (count + 1, k))
            return k
        skipped = []
        chosen = None
        while heap:
            entry = heapq.heappop(heap)
            if entry[1] in taken:
                skipped.append(entry)
                continue
            chosen = entry
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        if chosen is None:
            return None
        heapq.heappush(heap, (chosen[0] + 1, chosen[1]))
        return chosen[1]


class _RoundRobin(_LinkUsage):
    """Binding's link usage, every link untaken at first. A pair's heap then gives its
    links in turn: taken n times, each of its L links was taken n // L times and the
    lowest n mod L indices once more, so the least taken, the lowest index on a tie, is
    its (n mod L)-th link. A count per pair (per orbit of pairs under a period) stands
    for its heap, and the hops of a ring that crosses each pair once are taken in one
    array pass by their pairs' numbers (:meth:`take_ring`; a cluster's ring of 131,072
    GPUs has 262,144 hops). A pair taken with links excluded (a ring that crosses it
    twice) goes on as its heap, made from its count: the same choices as heaps from the
    start (tests/test_cluster_binding.py)."""

    def __init__(self, succ) -> None:
        super().__init__(succ)
        self._number: dict = {}  # a pair's key -> its number
        self._links: list[tuple[int, ...]] = []  # by number: the pair's link indices in order (alike ones shared)
        self._shared: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._taken: list[int] = []  # by number: the times taken; -1 once its heap goes on
        self._rings: dict = {}  # a layout -> its pairs' numbers and link counts, as arrays

    def _id(self, src: str, dst: str, key) -> int:
        n = self._number.get(key)
        if n is None:
            n = self._number[key] = len(self._links)
            links = tuple(sorted(self._succ[src][dst]))
            self._links.append(self._shared.setdefault(links, links))
            self._taken.append(0)
        return n

    def _heap(self, src: str, dst: str, key=None) -> list[tuple[int, int]]:
        key = key or (src, dst)
        heap = self._heaps.get(key)
        if heap is None:  # from its count on (its count no longer kept)
            n = self._id(src, dst, key)
            times, links = self._taken[n], self._links[n]
            heap = list(zip(_spread(times, len(links)), links))
            heapq.heapify(heap)
            self._heaps[key], self._taken[n] = heap, -1
        return heap

    def take_each(self, pairs, keys=None) -> list[int]:
        chosen = []
        for pair, key in zip(pairs, keys or pairs):
            n = self._id(*pair, key)
            times = self._taken[n]
            if times < 0:
                chosen.extend(super().take_each([pair], [key]))
                continue
            links = self._links[n]
            chosen.append(links[times % len(links)])
            self._taken[n] = times + 1
        return chosen

    def take(self, src: str, dst: str, taken: set[int] | None = None) -> int | None:
        if not taken:
            return self.take_each([(src, dst)])[0]
        return super().take(src, dst, taken)

    def take_ring(self, layout: "_Layout") -> list[int]:
        """:meth:`take_each` of ``layout``'s pairs, which it crosses once each: by their
        numbers, counted for the layout once (a derived ring's copies share it)."""
        import numpy as np  # here: mcdla's start-up does not pay numpy's import

        found = self._rings.get(layout)
        if found is None:
            numbers = [self._id(a, b, (a, b)) for a, b in layout.pairs]
            plain = all(self._links[n] == tuple(range(len(self._links[n]))) for n in set(numbers))
            found = self._rings[layout] = (np.array(numbers, dtype=np.int64),
                                           np.array([len(self._links[n]) for n in numbers], dtype=np.int64), plain)
        numbers, sizes, plain = found
        counts = np.array(self._taken, dtype=np.int64)
        times = counts[numbers]
        if not plain or (times < 0).any():  # links not numbered 0 .. L - 1, or a heap going on: pair by pair
            return self.take_each(layout.pairs)
        counts[numbers] = times + 1  # each pair once
        self._taken = counts.tolist()
        return (times % sizes).tolist()

    def counts(self) -> "_PairCounts":
        """Channel id -> the times binding took it, from the counts, pair by pair."""
        return _PairCounts(self)


class _PairCounts:
    """:meth:`_RoundRobin.counts`: the times each channel was taken, as a count of every
    hop of the rings bound would give (each hop one take), found per pair asked."""

    def __init__(self, usage: _RoundRobin) -> None:
        self._usage = usage

    def pair(self, src: str, dst: str, links) -> list[int]:
        """The counts of the channels ``src`` -> ``dst`` of ``links`` (the pair's link
        indices in order: a _LinkUsage's heap's), at once."""
        usage = self._usage
        n = usage._number.get((src, dst))
        if n is None:
            return [0] * len(links)
        times = usage._taken[n]
        if times < 0:  # its heap
            counts = {link: count for count, link in usage._heaps[(src, dst)]}
            return [counts[k] for k in links]
        return _spread(times, len(links))


def _spread(times: int, links: int) -> list[int]:
    """The times each of a pair's ``links`` was taken after ``times`` takes in turn (the
    least taken, the lowest index on a tie): ``times // links`` each, one more for the
    lowest ``times % links``."""
    return [times // links + (i < times % links) for i in range(links)]


def bind_rings(graph, doc: TopologyDoc, channels, top: Where, fab: Fabric | None = None, cache=None,
               translation: Translation | None = None):
    """Every listed ring (or, when none is listed, every derived one), checked, as
    directed rings bound to parallel links; and the node cycles they came from. ``fab``:
    the graph's fabric (:class:`~mcdla.hw.fabric.Fabric`; default: read here), which
    each ring keeps for the switch algorithms to ask; ``cache``: the loaded topology's
    (:class:`~mcdla.hw.cache.Cache`), where the rings keep what is derived from them.
    ``translation``: the generator's (mcdla.hw.translation; a cluster's node cell moved
    two nodes over all the nodes, :meth:`NodeCells.within_stages`, when it hands over
    none); when every derived ring is carried onto itself by it, each ring's links are
    chosen for one period and repeated (:func:`_periods`)."""
    rings: list[Ring] = []
    fab = fab or Fabric(graph, channels)
    usage = _RoundRobin(fab.succ)  # the rings bound on each parallel link
    devices = [n for n, kind in fab.kinds.items() if kind == "device"]
    cycles, directed, handed = _cycles(graph, doc, fab, len(devices), top)
    if translation is None and doc.node_cells and doc.rings is None:  # a cluster's: its node cell's shift
        translation = NodeCells(doc.node_cells, doc.leaf_nodes).within_stages(graph, len(devices))
    if handed and translation is not None:  # its translation moves the cycle on by one index: its prefixes
        periods = [len(doc.ring_prefixes)] * len(cycles)
    else:
        periods = _periods(translation, cycles) if doc.rings is None else None
    if len(devices) > 1 and not cycles:
        raise top.child("rings").error(f"{len(devices)} devices need at least one collective ring "
                                       "through all of them, and none was found: list them")
    # A cycle listed or derived again (a derived ring's copies, one per parallel link) is
    # checked once, and each direction's ranks laid out once (_Layout), for all its copies.
    layouts: dict[tuple, list[tuple[str, _Layout]]] = {}
    for i, cycle in enumerate(cycles):
        where = top.child("rings").child(i)
        first = cycle not in layouts
        if first:
            if not handed:  # the generator's is a ring through every device (tests)
                _check_cycle(fab, cycle, where)
            directions = [("", _Layout(fab, list(cycle)))]
            if not directed:
                reverse = [cycle[0]] + list(cycle[1:])[::-1]
                directions = [(".fwd", directions[0][1]), (".rev", _Layout(fab, reverse))]
            layouts[cycle] = directions
        for suffix, layout in layouts[cycle]:
            other = {".fwd": f"ring{i}.rev", ".rev": f"ring{i}.fwd"}.get(suffix, "")
            ring = _bind_one(fab, f"ring{i}{suffix}", layout, usage, channels, where, i,
                             (translation, periods[i]) if periods else None)
            rings.append(replace(ring, reverse=other, cache=cache if cache is not None else ring.cache))
        if not first or handed:
            continue
        visited = set(cycle)
        missing = [d for d in devices if d not in visited]
        if missing:  # a collective over some devices would leave the rest unsynchronized
            raise where.error(f"a collective ring must visit every device; it misses "
                              f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        _check_relays(fab, cycle, where)
    return _home_links(fab, rings, None if periods else usage.counts()), cycles


def _cycles(graph, doc: TopologyDoc, fab: Fabric, devices: int, top: Where) -> tuple[tuple, bool, bool]:
    """(the node cycles of the rings, whether directed, whether the generator handed them
    over): those the file lists; or (no
    rings key) the ring generator's own, by arithmetic (:func:`ring_cycle`: derive_rings
    finds the same, tests/test_translation.py); or the derived ones. An empty list is a
    listed "no rings", refused like any design without a ring."""
    if doc.rings is not None:
        return tuple(tuple(r) for r in doc.rings), doc.ring_directions == "as_listed", False
    if doc.ring_copies:
        return (ring_cycle(doc.ring_prefixes, devices),) * doc.ring_copies, False, True
    try:
        return (*derive_rings(graph, fab), False)
    except RingSearchLimit:
        raise top.child("rings").error(f"no rings listed, and the search for them gave up after "
                                       f"{SEARCH_STEPS} steps: list them") from None


def _periods(translation: Translation | None, cycles) -> list[int] | None:
    """Each derived cycle's hops of one period (:meth:`Translation.period`), when the
    translation carries every one onto itself; else None (bind hop by hop). All or none:
    binding by period keeps one link-usage count per orbit of pairs, which stands for
    each pair's only while every ring takes the pairs of an orbit alike. The least-used
    choice is then the same at every hop of an orbit, so the links are those of binding
    hop by hop (tests/test_translation.py)."""
    if translation is None or not cycles:
        return None
    found: dict[tuple, int | None] = {}  # a cycle's copies: its period found once
    for cycle in cycles:
        if cycle not in found:
            found[cycle] = translation.period(cycle)
    periods = [found[cycle] for cycle in cycles]
    return periods if all(periods) else None


def _home_links(fab: Fabric, rings: list[Ring], taken=None) -> tuple[Ring, ...]:
    """Each rank's channels to and from its own fabric switch where a ring does not take
    them (the rank leaves the domain over its NIC there): the parallel link the fewest
    rings use (ties to the lowest index), so a cluster's rings, which leave each link of
    a rank's that one of them crosses to another domain, share none. Rings bound by
    period choose for one period's ranks and repeat (:func:`_home_period`). ``taken``:
    channel id -> the times the rings take it, as binding counted them (default: counted
    from the rings' channels here)."""
    distinct = {id(ring.ranks): ring.ranks for ring in rings}.values()  # copies of a cycle share theirs
    if not fab.switches or all(all(ring.home_out) and all(ring.home_in) for ring in rings) or \
            not any(fab.tiers(rank)[0] for ranks in distinct for rank in ranks):
        return tuple(rings)  # no rank has a link home to choose (a ring of devices and memory-nodes)
    t, ranks_per = _home_period(rings)
    if t is not None:  # one link-usage count per orbit of channels (the rings' are whole orbits)
        counts = Counter(t.orbit(c)[0] for ring in rings for c in ring.channels[:ring.period[1]])
        usage, key = _LinkUsage(fab.succ, _OrbitCounts(t, counts)), lambda c: t.orbit(c)[0]
    else:
        counts = taken if taken is not None else Counter(c for ring in rings for c in ring.channels)
        usage, key = _LinkUsage(fab.succ, counts), None
    result = []
    for ring in rings:
        if all(ring.home_out) and all(ring.home_in):
            result.append(ring)  # every rank's links home are the ring's own: nothing to choose
            continue
        outs, ins = list(ring.home_out), list(ring.home_in)
        ranks = ring.ranks[:ranks_per or None]
        # only the ranks not already holding both links home (the ring's own where it stays)
        for i in [i for i, (o, n) in enumerate(zip(outs[:len(ranks)], ins)) if not (o and n)]:
            rank = ranks[i]
            home = fab.tiers(rank)[0]
            if not home:
                continue
            for chosen, src, dst in ((outs, rank, home), (ins, home, rank)):
                if not chosen[i]:
                    pair = key(channel_id(src, dst, 0)) if key else None
                    chosen[i] = fab.link_id(src, dst, usage.take_each([(src, dst)], pair and [pair])[0])
        if ranks_per:  # rank i's choice is rank i mod ranks_per's: the same link index
            _repeat_home(fab, ring.ranks, ranks_per, outs, ins)
        result.append(replace(ring, home_out=tuple(outs), home_in=tuple(ins)))
    return tuple(result)


class _OrbitCounts:
    """Channel id -> the times the rings take it, from the counts of one period's channels
    per orbit (rings bound by period take every member of an orbit equally often)."""

    def __init__(self, t: Translation, counts: Counter) -> None:
        self._t, self._counts = t, counts

    def get(self, channel: str, default: int = 0) -> int:
        return self._counts.get(self._t.orbit(channel)[0], default)


def _home_period(rings) -> tuple[Translation | None, int]:
    """(the translation, the ranks of one period) when every ring was bound by period
    under one translation and the ranks of a period are in distinct orbits: each rank's
    pair of links home is then chosen as every member of its orbit's is, taken once a
    ring, so one choice per orbit is each member's (each pair's usage count starts and
    grows alike). Else (None, 0): rank by rank."""
    t = rings[0].period[0] if rings and rings[0].period else None
    if t is None or any(not ring.period or ring.period[0] is not t or ring.size % t.order for ring in rings):
        return None, 0
    per = rings[0].size // t.order
    if any(ring.size // t.order != per or len({t.orbit(r)[0] for r in ring.ranks[:per]}) != per for ring in rings):
        return None, 0
    for ring in rings:  # which ranks' links home the ring takes itself: alike in every period
        for own in (ring.home_out, ring.home_in):
            marks = [bool(c) for c in own]
            if marks != marks[:per] * t.order:
                return None, 0
    return t, per


def _repeat_home(fab: Fabric, ranks, per: int, outs: list, ins: list) -> None:
    """Fills the links home of the ranks after the first period with the link index their
    orbit's first period chose (``outs``/``ins``: filled for the first ``per`` ranks)."""
    index = {}
    for i, rank in enumerate(ranks[:per]):
        home = fab.tiers(rank)[0]
        if home:
            index[i] = (int(outs[i].rpartition(":")[2]), int(ins[i].rpartition(":")[2]))
    for i in range(per, len(ranks)):
        k = index.get(i % per)
        if k is None:
            continue
        rank, home = ranks[i], fab.tiers(ranks[i])[0]
        if not outs[i]:
            outs[i] = fab.link_id(rank, home, k[0])
        if not ins[i]:
            ins[i] = fab.link_id(home, rank, k[1])


def _check_relays(fab: Fabric, cycle: Sequence[str], where: Where) -> None:
    """A memory-node may relay twice (in and out of a device, as Fig. 7(b)'s 20-hop ring
    does); returning to it with no device between is a detour that carries the ring's
    data again for nothing."""
    kinds = fab.kinds
    last_relay: dict[str, int] = {}
    last_device = -1  # the position of the last device so far
    for j, node in enumerate(cycle):
        if node in last_relay and last_device < last_relay[node]:
            raise where.child(j).error(f"{node!r} appears twice in the ring with no device between")
        if kinds[node] != "device":
            last_relay[node] = j
        else:
            last_device = j


def _check_cycle(fab: Fabric, cycle: Sequence[str], where: Where) -> None:
    if len(cycle) < 2:
        raise where.error("a ring needs at least two nodes")
    if _fine_cycle(fab, cycle):  # the common case, checked whole; else node by node, for the message
        return
    kinds = fab.kinds
    devices_seen: set[str] = set()
    for j, node in enumerate(cycle):
        if not isinstance(node, str) or node not in kinds:
            raise where.child(j).error(f"unknown node {excerpt(node)}")
        kind = kinds[node]
        if not NODE_KINDS.get(kind).on_rings:
            raise where.child(j).error(f"{node!r} is a {kind}; rings run over devices, memory-nodes "
                                       "and fabric switches")
        if kind == "device":
            if node in devices_seen:
                raise where.child(j).error(f"device {node!r} appears twice in the ring")
            devices_seen.add(node)
    if len(devices_seen) < 2:
        raise where.error("a ring needs at least two devices")
    succ = fab.succ
    for j, node in enumerate(cycle):
        nxt = cycle[(j + 1) % len(cycle)]
        if nxt not in succ[node]:
            raise where.child((j + 1) % len(cycle)).error(f"{node!r} -> {nxt!r} is not a link")


def _fine_cycle(fab: Fabric, cycle: Sequence[str]) -> bool:
    """Whether :func:`_check_cycle` passes ``cycle``, the same checks in a few C-level
    passes (a cluster's derived rings have 100,000s of nodes each): known nodes of kinds
    that go on rings, each device once and at least two, a link at every hop."""
    kinds, succ = fab.kinds, fab.succ
    try:
        found = [kinds[node] for node in cycle]
    except (KeyError, TypeError):  # an unknown node (or not a name)
        return False
    if not all(isinstance(node, str) for node in cycle) or \
            not all(NODE_KINDS.get(kind).on_rings for kind in set(found)):
        return False
    devices = [node for node, kind in zip(cycle, found) if kind == "device"]
    return len(devices) >= 2 and len(set(devices)) == len(devices) and \
        all(b in succ[a] for a, b in zip(cycle, [*cycle[1:], cycle[0]]))


class _Layout:
    """One direction of a ring's cycle as binding reads it, the same for every copy of
    the cycle (a derived ring's copies, one per parallel link), so made once: the nodes
    from the first device on, the node pair of each hop, where each rank's segment
    starts and ends, the ranks, the fabric switch each rank sends into and receives from
    (the ends of its segment's first hop and of the last hop into it: the switch
    algorithms pair any two ranks on one switch through it), each rank's home switch,
    and the machine each rank is in (only where some rank has an exit)."""

    __slots__ = ("start", "nodes", "pairs", "starts", "ends", "ranks", "switch_out", "switch_in", "home",
                 "node", "_repeats")

    def __init__(self, fab: Fabric, nodes: list[str]) -> None:
        kinds, switches = fab.kinds, fab.switches
        # Rotate so the ring starts at a device: segments run from rank to rank.
        self.start = start = next(j for j, n in enumerate(nodes) if kinds[n] == "device")
        self.nodes = nodes = nodes[start:] + nodes[:start]
        listed = len(nodes)
        self.pairs = list(zip(nodes, nodes[1:] + nodes[:1]))
        self.starts = starts = [j for j, node in enumerate(nodes) if kinds[node] == "device"]
        self.ends = starts[1:] + [listed]
        self.ranks = ranks = tuple(nodes[j] for j in starts)
        self.switch_out = tuple(nodes[j + 1 - listed] if nodes[j + 1 - listed] in switches else "" for j in starts)
        self.switch_in = tuple(nodes[j - 1] if nodes[j - 1] in switches else "" for j in starts)
        tiers = [fab.tiers(r) for r in ranks] if switches else ()  # no fabric switch: no rank has tiers
        self.home = tuple(t[0] for t in tiers) if tiers else ("",) * len(ranks)
        self.node = tuple(fab.node_of(r) for r in ranks) if any(t[1] for t in tiers) else ()
        self._repeats: bool | None = None

    @property
    def repeats(self) -> bool:
        """Whether the ring crosses some pair twice (most cross each once)."""
        if self._repeats is None:
            self._repeats = len(set(self.pairs)) != len(self.pairs)
        return self._repeats


def _bind_one(fab: Fabric, name, layout: _Layout, usage, channels, where: Where, number: int = 0,
              period=None) -> Ring:
    """Binds each hop of ``layout`` (:class:`_Layout`) to the least-used parallel link not
    yet used by this ring; each rank's way out of its domain (its link to a spine switch,
    as a GPU's NIC to a rail switch) to parallel link ``number`` modulo their count.

    ``usage`` (:class:`_LinkUsage`) counts the rings bound on each parallel link so far,
    shared by all the rings bound. ``period``: (the translation, the hops of one period)
    to choose the links of one period's hops only, by orbit (:func:`_periods`)."""
    nodes, pairs, starts, ends, start = layout.nodes, layout.pairs, layout.starts, layout.ends, layout.start
    listed = len(nodes)
    repeats = not period and layout.repeats
    hops: list[str] = []
    mine: dict[tuple[str, str], set[int]] = {}  # a pair crossed twice: the links this ring took there
    if period:  # hop j is in hop j mod q's orbit of hops: its link is that hop's
        t, q = period
        ks = usage.take_each(pairs[:q], [t.orbit(channel_id(a, b, 0))[0] for a, b in pairs[:q]])
        hops = channel_ids(pairs, itertools.cycle(ks))
    elif not repeats:  # each pair once: no link of the pair can be taken already by this ring
        hops = channel_ids(pairs, usage.take_ring(layout) if isinstance(usage, _RoundRobin) else usage.take_each(pairs))
    for j, (node, nxt) in enumerate(pairs if repeats else ()):
        taken = mine.setdefault((node, nxt), set())
        k = usage.take(node, nxt, taken)
        if k is None:
            # Name the hop's destination by its index in the file (the reverse
            # direction of a ring is the listed ring read backwards).
            position = (j + 1 + start) % listed
            if name.endswith(".rev"):
                position = (listed - position) % listed
            raise where.child(position).error(
                f"the ring crosses {node!r} -> {nxt!r} more often than its "
                f"{len(fab.succ[node][nxt])} parallel link(s): a ring may use each directed channel once"
            )
        taken.add(k)
        hops.append(channel_id(node, nxt, k))
    q = period[1] if period else 0
    found = [channels[c] for c in (hops[:q] if q else hops)]
    if not q:  # each hop's channel's own id: one string a channel, not one a ring's hop
        hops = [c.id for c in found]
    # Segments run from each rank's position to the next's (the ring starts at a rank).
    segments = [tuple(hops[a:b]) for a, b in zip(starts, ends)]
    latency = _latencies([c.latency_s for c in found], starts, ends, q)
    ranks, switch_out, switch_in, home = layout.ranks, layout.switch_out, layout.switch_in, layout.home
    home_out = home_in = home  # no rank has a home switch: "" each
    if fab.switches:  # where the ring leaves the domain instead, _home_links picks a link the rings leave free
        home_out = tuple(segments[i][0] if home[i] and switch_out[i] == home[i] else "" for i in range(len(ranks)))
        home_in = tuple(segments[i - 1][-1] if home[i] and switch_in[i] == home[i] else "" for i in range(len(ranks)))
    # Each rank's exit, its core and this ring's links to them are the fabric's (Ring.exit_out ...).
    return Ring(name=name, ranks=ranks, segments=tuple(segments), latency_s=latency,
                switch_out=switch_out, switch_in=switch_in, home_out=home_out, home_in=home_in,
                node=layout.node, fabric=fab, number=number, period=period or ())


def _latencies(lat: list[float], starts: list[int], ends: list[int], q: int) -> tuple[float, ...]:
    """Each rank's segment's latency, its hops' (``lat``: each hop's) summed in hop order.
    ``q``: the hops of one period when the ring is bound by period (0: not; ``lat`` then
    the first period's): hop j is then in hop j mod q's orbit, whose channels' latencies
    are alike, and rank i + r's segment (r: the ranks of a period) is rank i's moved on,
    the same sum of the same latencies."""
    if not q:  # one float object a value, not one a rank (18 rings of 131,072 ranks: 57 MB)
        alike: dict[float, float] = {}
        return tuple([alike.setdefault(x, x) for x in (sum(lat[a:b]) for a, b in zip(starts, ends))])
    lat = lat * (ends[-1] // q)  # ends[-1]: the ring's hops
    r = sum(1 for j in starts if j < q)
    return tuple(sum(lat[a:b]) for a, b in zip(starts[:r], ends[:r])) * (len(starts) // r)
