"""Collectives over fabric switches: ``direct``, ``in_switch``, ``tree``, ``hierarchical``.

Each registered in :data:`~mcdla.sim.collectives.COLLECTIVES` beside the ring. Like
the ring algorithm, the message is split evenly over the topology's directed rings
and each ring's share runs on that ring's channels only: on a switch ring (every
segment rank -> switch -> next rank, :attr:`~mcdla.hw.network.Ring.hub`) rank ``i``
sends on its *up* channel ``U_i`` into the switch and receives on its *down* channel
``W_i``, and any rank reaches any other over ``(U_i, W_j)``. A ring whose ranks are not
on a switch cannot pair them: these algorithms refuse it with an InputError.

Notation per ring: ``p`` ranks, share ``s``, ``a`` the ring's step latency (its
slowest segment), ``b`` the ring's rate (max-min fair with all rings active).

- ``direct``: every rank sends its ``s/p`` piece to every other rank at once
  (reduce-scatter, then all-gather for all-reduce): each U and W channel carries
  ``(p-1)s/p`` per phase; a phase costs ``a + (p-1)s/(p b)``: the ring's bandwidth,
  one step of latency instead of ``p-1``. Broadcast: the root sends ``s`` to each.
- ``in_switch`` (NVLink SHARP-like, the switch needs a reduction engine): every rank
  sends its data up once, the switch reduces it (``FSx/reduce``, shared by every ring
  through the switch) and multicasts the result down: all-reduce is
  ``a + s / min(b, engine share)``, about half the ring's bytes. Reduce-scatter: ``s``
  up, ``s/p`` down; all-gather: ``s/p`` up, ``(p-1)s/p`` down; broadcast: ``s`` up
  from the root and down to every other rank.
- ``tree`` (NCCL's double binary tree, all-reduce; the other operations run as the
  ring, as NCCL does): two binary trees over the ring's ranks, the second the mirror
  of the first, so one tree's leaves are the other's inner ranks; each carries ``s/2``.
  Reduction up a tree and broadcast down it are pipelined, so every tree edge streams
  at once after the pipeline fill ``2 depth a``.
- ``hierarchical``: ranks on one switch form a *domain* (a run of ranks in ring order with
  one home switch, :class:`~mcdla.hw.fabric.Fabric`, the ring through it); reduce-scatter
  inside each domain (direct, over its switch), all-reduce of each rank's piece across
  the domains (a ring of one rank per domain, a *group*), all-gather inside each
  domain. A group crosses between domains over the ring's own switch-to-switch hops (a
  two-level switch: every group of a ring shares them) or, where every rank has its own
  way out (a GPU's NIC on its rail switch), over those: the group is then the ranks on
  one rail. On one switch it is ``direct``; on a ring of single devices, the ring.
- all-to-all (docs/model.md): ``direct`` sends every pair's piece at once (all-gather's
  bytes; the skewed all-to-allv a flow per pair, ``hot_share`` to the root);
  ``hierarchical`` exchanges inside each domain the n/q bound for each group, then runs
  each group's ring pairwise across the domains; ``in_switch`` refuses it.

The simulation runs each ring's *phases* in turn; the flows of one phase start
together with the same latency and carry equal bytes wherever they share a resource,
so each keeps its max-min rate to its end and a phase on idle links takes exactly the
largest ``latency + bytes / rate`` (:meth:`PhasedAlgorithm.time_s`). Events are
proportional to flows: one flow per ring and phase where every rank moves the same
bytes (``direct``, ``in_switch``), one per tree edge, one per domain and per
cross-domain ring. :meth:`channel_bytes` is written from each algorithm's definition,
piece by piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from mcdla.errors import InputError
from mcdla.hw.collective_model import (GATHERING, PERSONAL, REDUCING, bottleneck_Bps, destination_shares,
                                       pipeline_latency_s)
from mcdla.hw.maxmin import crossed, overlaid
from mcdla.hw.network import Ring, reduction_port
from mcdla.sim.chains import in_turn
from mcdla.sim.collectives import (
    COLLECTIVES,
    DEFAULT_CHUNK_BYTES,
    IDEAL,
    CollectiveAlgorithm,
    CollectiveRecord,
    RingAlgorithm,
    SentPerRing,
    check_request,
)

__all__ = ["Flow", "PhasedAlgorithm", "DirectAlgorithm", "InSwitchAlgorithm", "TreeAlgorithm",
           "HierarchicalAlgorithm", "spans_domains"]

@dataclass(frozen=True)
class Flow:
    """One transfer of a phase: ``size_bytes`` over the resources of ``path``."""

    size_bytes: float
    path: tuple[str, ...]
    latency_s: float


def _switch_ring(name: str, rings: Sequence[Ring]) -> None:
    for ring in rings:
        if ring.size > 1 and not ring.hub:
            raise InputError(f"{name} pairs any two ranks through a fabric switch; ring {ring.name!r} "
                             "is not a switch ring (rank -> switch -> rank on every segment)",
                             key="execution.collective")


class PhasedAlgorithm(CollectiveAlgorithm):
    """An algorithm given, per ring, as phases of concurrent flows (:meth:`phases`) and,
    for the byte count, as the pieces its ranks send (:meth:`pieces`)."""

    name = ""

    def phases(self, op: str, ring: Ring, share: float, root: int, units: Mapping[str, str],
               capacities_Bps: Mapping[str, float], chunk_bytes: float) -> list[list[Flow]]:
        """The flows of ``ring``'s share, phase by phase; ``units`` maps a rank to its
        reduction unit where reductions are costed."""
        raise NotImplementedError

    def pieces(self, op: str, ring: Ring, share: float) -> Iterator[tuple[float, tuple[str, ...]]]:
        """Every piece a rank or the switch sends: (bytes, channels it crosses); root 0."""
        raise NotImplementedError

    def fixed_s(self, op: str, rings: Sequence[Ring]) -> float:
        """Paid once before any data moves (a library's launch and base latency): none."""
        return 0.0

    def caps(self, op: str, rings: Sequence[Ring], capacities_Bps: Mapping[str, float]) -> dict[str, float]:
        """Rate caps of the algorithm's own (resource id -> bytes/s) its flows cross: none."""
        return {}

    # -- shared machinery ------------------------------------------------------------

    def _validate(self, op, rings, size_bytes, capacities_Bps, chunk_bytes=DEFAULT_CHUNK_BYTES, root=0):
        check_request(op, rings, size_bytes, chunk_bytes, root)
        self.carries(op)
        self.check(op, rings, capacities_Bps)

    def _plans(self, op, rings, size_bytes, root, units, capacities_Bps, chunk_bytes):
        """Every ring's phases; ``root`` indexes the first ring's ranks, and each ring
        gets the same device's index in its own order."""
        share = size_bytes / len(rings)
        by_rank = {rank: unit for ring in rings for rank, unit in zip(ring.ranks, ring.reduce_units)} if units else {}
        root_rank = rings[0].ranks[root]
        return [self.phases(op, ring, share, ring.ranks.index(root_rank), by_rank, capacities_Bps, chunk_bytes)
                if share > 0 and ring.size > 1 else [] for ring in rings]

    def start(self, env, net, rings, op, size_bytes, *, chunk_bytes=DEFAULT_CHUNK_BYTES, root=0,
              reduce_Bps=None, tag="", copies=1):
        self._validate(op, rings, size_bytes, net.capacities_Bps, chunk_bytes, root)
        names = tuple(r.name for r in rings)

        def units_of():  # the units are O(ranks): once per rings
            units = self._units(op, rings, reduce_Bps)
            return units, tuple(units)

        units, unit_ids = self.cache.get(("units", names, op in REDUCING, reduce_Bps), units_of)
        net.add_resources(unit_ids, reduce_Bps)  # once per network
        for cap, cap_Bps in self.caps(op, rings, net.capacities_Bps).items():
            net.add_resource(cap, cap_Bps, copies)  # one per alike group's ring
        size_bytes = float(size_bytes)
        if net.lumped and op != "broadcast":
            # With rank symmetry a run's collectives are planned once per (op, rings) for a
            # byte and scaled (the phases are linear in the share; broadcast's fill is not),
            # their alike flows grouped: a collective costs its groups, not its ranks.
            key = ("unit plan", op, names, root, bool(units))
            known = self.cache.peek(key)
            if known is None or known[0] is not net:
                plans = self._plans(op, rings, float(len(rings)), root, units, net.capacities_Bps, chunk_bytes)
                known = self.cache.put(key, (net, self._grouped(net, plans)))
            return env.process(self._run(env, net, tuple(rings), op, size_bytes, known[1], tag,
                                         size_bytes / len(rings), copies))
        plans = self._plans(op, rings, size_bytes, root, units, net.capacities_Bps, chunk_bytes)
        return env.process(self._run(env, net, tuple(rings), op, size_bytes, self._grouped(net, plans), tag,
                                     copies=copies))

    @staticmethod
    def _grouped(net, plans):
        """Each phase's flows with bytes as (size, path, latency, copies), alike flows one
        group with rank symmetry (FlowNetwork.alike)."""
        return [[net.alike([(f.size_bytes, f.path, f.latency_s) for f in phase if f.size_bytes > 0])
                 for phase in plan] for plan in plans]

    def _sent_per_byte(self, op: str, ring) -> float:
        """Bytes the ranks of ``ring`` put on the wire per byte of its share: the pieces
        are linear in the share, so they are listed once per (algorithm, op) with the ring
        (kept with it: hashing a ring of thousands of ranks per collective cost more)."""
        key = ("sent per byte", type(self), op)
        return ring.memo(key, lambda: sum(b for b, _ in self.pieces(op, ring, 1.0)))

    def _run(self, env, net, rings, op, size_bytes, plans, tag, scale=1.0, copies=1):
        """Runs grouped ``plans`` (their sizes times ``scale``, exact for 1; ``copies``:
        the alike groups of ranks they stand for)."""
        start_s = env.now
        flows = [0]
        fixed_s = self.fixed_s(op, rings) if size_bytes > 0 and rings[0].size > 1 else 0.0
        if fixed_s > 0:
            yield env.timeout(fixed_s)

        def started(phase):
            flows[0] += sum(copies for *_, copies in phase)
            return [net.transfer(size * scale, path, latency, tag, n * copies, even=False)
                    for size, path, latency, n in phase]
        yield in_turn(env, plans, started)  # each ring's phases one after another, every ring at once
        share = size_bytes / len(rings)
        sent = SentPerRing(rings, share, lambda ring: self._sent_per_byte(op, ring))
        return CollectiveRecord(op=op, tag=tag, size_bytes=size_bytes, ranks=rings[0].size,
                                rings=tuple(r.name for r in rings), start_s=start_s, end_s=env.now,
                                flows=flows[0], bytes_per_ring=tuple(share for _ in rings),
                                bytes_sent_per_ring=sent)

    def time_s(self, op, size_bytes, rings, capacities_Bps, *, chunk_bytes=DEFAULT_CHUNK_BYTES,
               reduce_Bps=None):
        """Phase by phase on idle links, every ring in the same phase at once: each flow
        at its max-min fair rate until one ends, then the rest at their new rates
        (:func:`_ends`), a phase ending with its slowest flow; the collective ends with its
        slowest ring."""
        self._validate(op, rings, size_bytes, capacities_Bps, chunk_bytes)
        units = self._units(op, rings, reduce_Bps)
        plans = self._plans(op, rings, float(size_bytes), 0, units, capacities_Bps, chunk_bytes)
        caps = crossed(overlaid(capacities_Bps, units, self.caps(op, rings, capacities_Bps)),
                       (f.path for plan in plans for phase in plan for f in phase))
        totals = [0.0 for _ in rings]
        for k in range(max((len(plan) for plan in plans), default=0)):
            flows = {(r, j): f for r, plan in enumerate(plans) if k < len(plan)
                     for j, f in enumerate(plan[k]) if f.size_bytes > 0}
            finish = _ends(flows, caps)
            ends: dict[int, float] = {}
            for (r, j), f in flows.items():
                ends[r] = max(ends.get(r, 0.0), f.latency_s + finish[(r, j)])
            for r, end in ends.items():
                totals[r] += end
        slowest = max(totals, default=0.0)
        return self.fixed_s(op, rings) + slowest if slowest > 0 else 0.0

    def channel_bytes(self, op, size_bytes, rings, capacities_Bps=None, also=None):
        carried: dict[str, float] = {}
        share = size_bytes / len(rings)
        for ring in rings:
            if ring.size == 1 or share == 0:
                continue
            for size, channels in self.pieces(op, ring, share):
                for channel in channels:
                    carried[channel] = carried.get(channel, 0.0) + size
        return carried


def _ends(flows: Mapping, caps: Mapping[str, float]) -> dict:
    """When each of ``flows`` (key -> Flow, started together on idle links) has moved its
    bytes: max-min fair rates, solved again each time a flow ends and frees its share (one
    solve where flows that share a resource carry equal bytes, as in most phases)."""
    from mcdla.hw.maxmin import max_min_rates

    left = {key: f.size_bytes for key, f in flows.items()}
    now, ends = 0.0, {}
    while left:
        rates = max_min_rates({key: flows[key].path for key in left}, caps)
        step = min(left[key] / rates[key] for key in left)
        now += step
        for key in list(left):
            left[key] -= rates[key] * step
            if left[key] <= 1e-12 * flows[key].size_bytes:
                ends[key] = now
                del left[key]
    return ends


def _via_switch(ring: Ring, i: int, j: int, home: bool = False) -> tuple[str, str]:
    """The channels from rank ``i`` into the switch and out of it to rank ``j``: the
    ring's hops (``i``'s up, ``j``'s down channel), or (``home``) those of the ranks' own
    domain switch, which a rank leaving the domain on the ring does not cross."""
    return (ring.home_out[i], ring.home_in[j]) if home else (ring.up(i), ring.down(j))


def _exchange(ring: Ring, ranks: Sequence[int], piece: float, units: Mapping[str, str], latency_s: float,
              reduce: bool, home: bool = False) -> Flow:
    """Every rank of ``ranks`` sends ``piece`` to every other through the switch, as one
    flow: each rank's up and down channel carries ``(q-1) piece`` alike."""
    links = [_via_switch(ring, i, i, home) for i in ranks]
    path = tuple(up for up, _ in links) + tuple(down for _, down in links)
    if reduce:
        path += tuple(units[ring.ranks[i]] for i in ranks if ring.ranks[i] in units)
    return Flow((len(ranks) - 1) * piece, path, latency_s)


def _exchange_pieces(ring: Ring, ranks: Sequence[int], piece: float, home: bool = False):
    for i in ranks:
        for j in ranks:
            if i != j:
                yield piece, _via_switch(ring, i, j, home)


@COLLECTIVES.register("direct")
class DirectAlgorithm(PhasedAlgorithm):
    """Every rank sends each other rank its piece at once through the switch (see the
    module docstring)."""

    name = "direct"

    def start(self, env, net, rings, op, size_bytes, **kwargs):
        if net.lumped and op == "all_to_allv" and self.hot_share is not None:
            raise ValueError("a skewed all_to_allv singles out its hot rank: it is not rank-symmetric "
                             "(simulate it exactly)")
        return super().start(env, net, rings, op, size_bytes, **kwargs)

    def _pairs(self, op: str, p: int, hot: int) -> list[tuple[int, int, float]]:
        """(sender, receiver, share of the sender's data) of every pair in an all-to-all:
        ``hot`` receives :attr:`hot_share` of an all-to-allv's (its ``root``)."""
        shares = destination_shares(p, hot, self.hot_share if op == "all_to_allv" else None)
        return [(i, j, shares[j]) for i in range(p) for j in range(p) if i != j]

    def check(self, op, rings, capacities_Bps):
        _switch_ring(self.name, rings)

    def phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        p, a, everyone = ring.size, IDEAL.step_s(ring), range(ring.size)
        if op == "broadcast":
            return [[Flow(share, _via_switch(ring, root, j), a) for j in everyone if j != root]]
        if op in PERSONAL:
            if op == "all_to_all" or self.hot_share is None:  # all-gather's bytes, as one flow
                return [[_exchange(ring, everyone, share / p, units, a, reduce=False)]]
            return [[Flow(share * w, _via_switch(ring, i, j), a) for i, j, w in self._pairs(op, p, root)]]
        phases = []
        if op in REDUCING:
            phases.append([_exchange(ring, everyone, share / p, units, a, reduce=True)])
        if op in GATHERING:
            phases.append([_exchange(ring, everyone, share / p, units, a, reduce=False)])
        return phases

    def pieces(self, op, ring, share):
        p = ring.size
        if op == "broadcast":
            yield from ((share, _via_switch(ring, 0, j)) for j in range(1, p))
            return
        if op in PERSONAL:
            yield from ((share * w, _via_switch(ring, i, j)) for i, j, w in self._pairs(op, p, 0))
            return
        for _phase in range(2 if op == "all_reduce" else 1):
            yield from _exchange_pieces(ring, range(p), share / p)


@COLLECTIVES.register("in_switch")
class InSwitchAlgorithm(PhasedAlgorithm):
    """The switch reduces and multicasts (NVLink SHARP-like; see the module docstring)."""

    name = "in_switch"
    ops = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")  # all-to-all(v): nothing to reduce or multicast
    staging = "nvls"

    def check(self, op, rings, capacities_Bps):
        _switch_ring(self.name, rings)
        for ring in rings:
            if ring.size > 1 and reduction_port(ring.hub) not in capacities_Bps:
                raise InputError(f"in_switch needs a reduction engine in fabric switch {ring.hub!r} "
                                 "(fabric_switch.reduction_bw)", key="execution.collective")

    def phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        p, a = ring.size, IDEAL.step_s(ring)
        ups = tuple(ring.up(i) for i in range(p))
        downs = tuple(ring.down(i) for i in range(p))
        engine = (reduction_port(ring.hub),)
        if op == "all_reduce":
            return [[Flow(share, ups + downs + engine, a)]]
        if op == "reduce_scatter":
            return [[Flow(share, ups + engine, a), Flow(share / p, downs, a)]]
        if op == "all_gather":
            return [[Flow(share / p, ups, a), Flow((p - 1) * share / p, downs, a)]]
        others = tuple(ring.down(j) for j in range(p) if j != root)
        return [[Flow(share, (ring.up(root),) + others, a)]]

    def pieces(self, op, ring, share):
        p = ring.size
        if op == "broadcast":
            yield share, (ring.up(0),)
            yield from ((share, (ring.down(j),)) for j in range(1, p))
            return
        up = share / p if op == "all_gather" else share  # a rank's data, once
        for i in range(p):
            yield up, (ring.up(i),)
        for j in range(p):
            if op == "all_reduce":
                yield share, (ring.down(j),)  # the reduced result, multicast
            elif op == "reduce_scatter":
                yield share / p, (ring.down(j),)  # its reduced piece
            else:
                yield from ((share / p, (ring.down(j),)) for i in range(p) if i != j)  # each other's piece


def _btree_parent(p: int, i: int) -> int | None:
    """Position ``i``'s parent in NCCL's binary tree over ``p`` positions (src/graph/
    trees.cc, ncclGetBtree): rooted at 0 with one child; otherwise, with ``bit`` the
    lowest set bit of ``i``, the parent clears it and sets the next one up, or only
    clears it where that is past the end (so inner positions alternate with leaves)."""
    if i == 0:
        return None
    bit = i & -i
    up = (i ^ bit) | (bit << 1)
    return up if up < p else i ^ bit


def _trees(p: int) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
    """Parents of positions 0..p-1 in NCCL's double binary tree: the binary tree, and
    its mirror (position i as p-1-i) for even ``p`` or the tree shifted by one position
    for odd ``p`` (ncclGetDtree), so one tree's inner positions are the other's leaves."""
    first = tuple(_btree_parent(p, i) for i in range(p))
    if p % 2 == 0:
        second = tuple(None if first[p - 1 - i] is None else p - 1 - first[p - 1 - i] for i in range(p))
    else:
        second = tuple(None if first[(i - 1) % p] is None else (first[(i - 1) % p] + 1) % p for i in range(p))
    return first, second


def _edges(trees: Sequence[Sequence[int | None]]) -> Iterator[tuple[int, int]]:
    """(child, parent) of every edge of ``trees``, tree by tree."""
    for parents in trees:
        for child, parent in enumerate(parents):
            if parent is not None:
                yield child, parent


def _depth(parents: Sequence[int | None]) -> int:
    deepest = 0
    for i in range(len(parents)):
        d, node = 0, i
        while parents[node] is not None:
            node, d = parents[node], d + 1
        deepest = max(deepest, d)
    return deepest


@COLLECTIVES.register("tree")
class TreeAlgorithm(PhasedAlgorithm):
    """NCCL's double binary tree for all-reduce; the ring for the other operations (as
    NCCL does). See the module docstring."""

    name = "tree"
    ops = RingAlgorithm.ops  # what the ring carries: it runs all but all-reduce
    symmetric = False  # the tree's root and leaves differ
    _ring = RingAlgorithm()

    def check(self, op, rings, capacities_Bps):
        if op == "all_reduce":
            _switch_ring(self.name, rings)

    def start(self, env, net, rings, op, size_bytes, **kwargs):
        self.carries(op)
        if op != "all_reduce":
            return self._ring.start(env, net, rings, op, size_bytes, **kwargs)
        return super().start(env, net, rings, op, size_bytes, **kwargs)

    def time_s(self, op, size_bytes, rings, capacities_Bps, **kwargs):
        self.carries(op)
        if op != "all_reduce":
            return self._ring.time_s(op, size_bytes, rings, capacities_Bps, **kwargs)
        return super().time_s(op, size_bytes, rings, capacities_Bps, **kwargs)

    def channel_bytes(self, op, size_bytes, rings, capacities_Bps=None, also=None):
        self.carries(op)
        if op != "all_reduce":
            return self._ring.channel_bytes(op, size_bytes, rings, capacities_Bps, also)
        return super().channel_bytes(op, size_bytes, rings)

    def phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        trees = _trees(ring.size)
        fill_s = 2 * max(_depth(t) for t in trees) * IDEAL.step_s(ring)  # up the tree, then down
        flows = []
        for child, parent in _edges(trees):
            unit = (units[ring.ranks[parent]],) if ring.ranks[parent] in units else ()
            flows.append(Flow(share / 2, _via_switch(ring, child, parent) + unit, fill_s))
            flows.append(Flow(share / 2, _via_switch(ring, parent, child), fill_s))
        return [flows]

    def pieces(self, op, ring, share):
        for child, parent in _edges(_trees(ring.size)):
            yield share / 2, _via_switch(ring, child, parent)  # reduce, up the tree
            yield share / 2, _via_switch(ring, parent, child)  # broadcast, down it


@dataclass(frozen=True)
class _Domains:
    """A ring cut into domains: ``ranks[j]`` the ring positions of domain j in ring
    order; ``groups[k][j]`` the position in domain j of group k, the ranks that hold
    the same piece after the intra-domain reduce-scatter and all-reduce it across the
    domains; ``cross[k][j]`` the channels from group k's rank in domain j to its rank
    in domain j+1 (a tuple per group, not a map by (j, k): at 4,096 domains and 576 rings
    a map's keys took 200 MB); ``intra_s`` and ``cross_s`` the latencies of a step inside
    and across."""

    ranks: tuple[tuple[int, ...], ...]
    groups: tuple[tuple[int, ...], ...]
    cross: tuple[tuple[tuple[str, ...], ...], ...]
    intra_s: float
    cross_s: float
    hubs: tuple[str, ...] = ()  # each domain's own fabric switch ("" for a domain of one rank)

    def place(self, i: int) -> tuple[int, int]:
        """(domain, group) of ring position ``i``."""
        k = next(k for k, members in enumerate(self.groups) if i in members)
        return self.groups[k].index(i), k

    def group_path(self, k: int, start: int = 0, hops: int | None = None) -> tuple[str, ...]:
        """The channels of group ``k``'s ring across the domains, ``hops`` steps from
        domain ``start`` (all the way round by default)."""
        d = len(self.ranks)
        hops = d if hops is None else hops
        ways = self.cross[k]
        return tuple(c for step in range(hops) for c in ways[(start + step) % d])


def _from_holders(ring: Ring, dom: _Domains, k: int) -> Iterator[tuple[str, str]]:
    """The paths from group ``k``'s rank in each domain to the rest of its domain, over
    their home switch (a broadcast's second part)."""
    for j, members in enumerate(dom.ranks):
        holder = dom.groups[k][j]
        yield from (_via_switch(ring, holder, i, home=True) for i in members if i != holder)


def spans_domains(rings: Sequence[Ring]) -> bool:
    """Whether ``rings`` (already checked by the hierarchical algorithm) cross from one
    switch domain to another (machines joined by a network or a second switch level)."""
    return any(ring.size > 1 and len(_domains(ring).ranks) > 1 for ring in rings)


def _refuse(ring: Ring, why: str) -> InputError:
    return InputError(f"hierarchical needs {why}; ring {ring.name!r} is not so", key="execution.collective")


def _domains(ring: Ring) -> _Domains:
    """Cuts ``ring`` after every rank whose next is in another domain, as the fabric has
    the ranks' domain switches (:meth:`mcdla.hw.fabric.Fabric.home`; a rank without one
    is a domain of its own); inside a domain the ring must run through that switch.
    Once per ring (every collective on it asks)."""
    return ring.memo("domains", lambda: _cut_domains(ring))


def _cut_domains(ring: Ring) -> _Domains:
    p, fabric = ring.size, ring.fabric
    # Each rank's domain switch and way out, as the fabric has them (none on a hand-made ring).
    homes, exits = zip(*map(fabric.tiers, ring.ranks)) if fabric is not None else (("",) * p,) * 2
    through = [ring.through_switch(i) for i in range(p)]
    cuts = [i for i in range(p) if not homes[i] or homes[i] != homes[(i + 1) % p]]  # the next rank's domain is another
    cut = set(cuts)  # asked of every rank
    if not cuts:  # one switch: one domain, no groups to cross
        if any(t != homes[0] for t in through):
            raise _refuse(ring, "every domain's ranks on one fabric switch")
        return _Domains((tuple(range(p)),), tuple((i,) for i in range(p)), (), IDEAL.step_s(ring), 0.0,
                        (homes[0],))
    first = (cuts[0] + 1) % p
    order = [(first + i) % p for i in range(p)]
    domains: list[list[int]] = [[]]
    for i in order:  # a domain ends at a cut; the last rank in order ends the last one
        domains[-1].append(i)
        if i in cut and i != order[-1]:
            domains.append([])
    if len({len(m) for m in domains}) != 1:
        raise InputError(f"hierarchical needs domains of equal size; ring {ring.name!r} has "
                         f"{sorted(len(m) for m in domains)}", key="execution.collective")
    q, d = len(domains[0]), len(domains)
    hubs = [homes[m[0]] if q > 1 else "" for m in domains]  # each domain's own (home) switch
    for j, members in enumerate(domains):
        if any(through[i] != hubs[j] for i in members[:-1]):
            raise _refuse(ring, "every domain's ranks on one fabric switch")
    if q == 1:  # one rank per domain: the ring's own segments
        groups = (tuple(m[0] for m in domains),)
        cross = (tuple(ring.segments[m[0]] for m in domains),)
    elif all(exits):
        # Every rank has its own way out (a NIC on a rail switch): a group is the ranks
        # on one rail, one per domain, crossing over it (their rail switch, or their
        # leaves and the rail's core in a fat tree); ranks that share a rail (and a NIC)
        # in a domain pair with the next domain's in ring order.
        rails: list[tuple[str, int]] = [("", 0)] * p
        for m in domains:
            seen: dict[str, int] = {}
            for i in m:
                rail = fabric.rail(ring.ranks[i])
                rails[i] = (rail, seen.get(rail, 0))
                seen[rail] = rails[i][1] + 1
        groups = tuple(tuple(next((i for i in m if rails[i] == rails[k]), -1) for m in domains)
                       for k in domains[0])
        if any(-1 in g for g in groups) or len({i for g in groups for i in g}) != p:
            raise _refuse(ring, "the ranks of every domain on the same rails, one each")
        cross = tuple(tuple(ring.over_rail(g[j], g[(j + 1) % d]) for j in range(d)) for g in groups)
    else:
        # Domains joined switch to switch (a two-level switch): a group is the ranks at one
        # place in ring order, crossing over the ring's own inter-domain hops.
        groups = tuple(tuple(m[k] for m in domains) for k in range(q))
        ways: list[list[tuple[str, ...]]] = [[] for _ in groups]
        for j, members in enumerate(domains):
            segment, nxt = ring.segments[members[-1]], domains[(j + 1) % d][0]
            if ring.switch_out[members[-1]] != hubs[j] or ring.switch_in[nxt] != hubs[(j + 1) % d] \
                    or len(segment) < 3:
                raise _refuse(ring, "the ring between domains through their switches")
            for k, g in enumerate(groups):
                out, into = _via_switch(ring, g[j], g[(j + 1) % d], home=True)
                ways[k].append((out,) + tuple(segment[1:-1]) + (into,))
        cross = tuple(map(tuple, ways))
    intra = [ring.latency_s[i] for i in range(p) if i not in cut]
    return _Domains(tuple(tuple(m) for m in domains), groups, cross, max(intra, default=0.0),
                    max(ring.latency_s[i] for i in cuts), tuple(hubs))


@COLLECTIVES.register("hierarchical")
class HierarchicalAlgorithm(PhasedAlgorithm):
    """Intra-domain reduce-scatter, inter-domain all-reduce, intra-domain all-gather
    (see the module docstring)."""

    name = "hierarchical"
    ops = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all")  # all-to-allv: not yet

    def check(self, op, rings, capacities_Bps):
        for ring in rings:
            if ring.size > 1:
                _domains(ring)

    def phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        dom = _domains(ring)
        q, d = len(dom.ranks[0]), len(dom.ranks)
        piece = share / q  # each rank's part after the intra-domain reduce-scatter
        intra = q > 1
        if op == "broadcast":
            j0, k0 = dom.place(root)
            phases = []
            if d > 1:  # pipelined in chunks along the group's ring, as the ring's broadcast
                path = dom.group_path(k0, j0, d - 1)
                latency_s = pipeline_latency_s((d - 1) * dom.cross_s, d - 2, chunk_bytes, share,
                                               bottleneck_Bps(path, capacities_Bps))
                phases.append([Flow(share, path, latency_s)])
            if intra:
                phases.append([Flow(share, via, dom.intra_s) for via in _from_holders(ring, dom, k0)])
            return phases

        if op == "all_to_all":  # each rank's data for a group to its rank of that group, then across
            return ([self._intra(ring, dom, share, units, reduce=False)] if intra else []) + \
                ([self._cross_personal(dom, share)] if d > 1 else [])
        phases = []
        if op in REDUCING:
            if intra:
                phases.append(self._intra(ring, dom, share, units, reduce=True))
            if d > 1:
                phases.append(self._cross(op, ring, dom, piece, units, reduce=True))
        if op in GATHERING:
            if d > 1:
                phases.append(self._cross(op, ring, dom, piece, units, reduce=False))
            if intra:
                phases.append(self._intra(ring, dom, share, units, reduce=False))
        return phases

    def _cross(self, op: str, ring: Ring, dom: _Domains, piece: float, units, reduce: bool) -> list[Flow]:
        """The cross-domain reduce-scatter (``reduce``) or all-gather of each rank's
        ``piece``: a ring of one rank per domain for every group."""
        d, flows = len(dom.ranks), []
        for k, group in enumerate(dom.groups):
            path = dom.group_path(k)
            if reduce:
                path += tuple(units[ring.ranks[i]] for i in group if ring.ranks[i] in units)
            flows.append(Flow((d - 1) * piece / d, path, (d - 1) * dom.cross_s))
        return flows

    @staticmethod
    def _cross_personal(dom: _Domains, share: float) -> list[Flow]:
        """The cross-domain all-to-all: each group a ring of one rank per domain, run
        pairwise as the ring's (each rank holds share/d for each domain: its domain's
        data for that domain's rank of its group), one flow per group."""
        d = len(dom.ranks)
        pieces = d * (d - 1) // 2  # on every channel of the group's ring
        return [Flow(pieces * share / d, dom.group_path(k), pieces * dom.cross_s) for k in range(len(dom.groups))]

    @staticmethod
    def _cross_personal_pieces(dom: _Domains, share: float) -> list:
        # Domain j's piece for domain j+m crosses the m hops from j: the h-th hop from j
        # carries the d-1-h pieces bound further.
        d = len(dom.ranks)
        return [((d - 1 - h) * share / d, dom.group_path(k, j + h, 1))
                for k in range(len(dom.groups)) for j in range(d) for h in range(d - 1)]

    def _cross_pieces(self, op: str, ring: Ring, dom: _Domains, piece: float, reduce: bool) -> list:
        # Each place k runs a ring of d ranks: d-1 steps of piece/d per rank per phase,
        # summed per rank (listed per step, the pieces were quadratic in the domains).
        d = len(dom.ranks)
        return [((d - 1) * (piece / d), dom.group_path(k, j, 1)) for k in range(len(dom.groups)) for j in range(d)]

    def _intra(self, ring: Ring, dom: _Domains, share: float, units, reduce: bool) -> list[Flow]:
        """The intra-domain reduce-scatter (``reduce``) or all-gather of every domain at
        once: each rank's piece to each other rank of its domain over their switch."""
        q = len(dom.ranks[0])
        return [_exchange(ring, m, share / q, units, dom.intra_s, reduce=reduce, home=True) for m in dom.ranks]

    def _intra_pieces(self, ring: Ring, dom: _Domains, share: float, reduce: bool) -> list:
        q = len(dom.ranks[0])
        return [piece for m in dom.ranks for piece in _exchange_pieces(ring, m, share / q, home=True)]

    def pieces(self, op, ring, share):
        dom = _domains(ring)
        q, d = len(dom.ranks[0]), len(dom.ranks)
        piece = share / q
        if op == "broadcast":
            j0, k0 = dom.place(0)
            for step in range(d - 1):  # the root's data along its group's ring, domain by domain
                yield share, dom.group_path(k0, j0 + step, 1)
            yield from ((share, via) for via in _from_holders(ring, dom, k0))  # then through each domain
            return
        if op == "all_to_all":
            yield from self._intra_pieces(ring, dom, share, reduce=False) if q > 1 else ()
            yield from self._cross_personal_pieces(dom, share) if d > 1 else ()
            return
        if op in REDUCING:
            yield from self._intra_pieces(ring, dom, share, reduce=True) if q > 1 else ()
            yield from self._cross_pieces(op, ring, dom, piece, reduce=True) if d > 1 else ()
        if op in GATHERING:
            yield from self._cross_pieces(op, ring, dom, piece, reduce=False) if d > 1 else ()
            yield from self._intra_pieces(ring, dom, share, reduce=False) if q > 1 else ()
