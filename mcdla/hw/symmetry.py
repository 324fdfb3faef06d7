"""Rank symmetry: which devices, resources and backing stores behave alike.

In a data-parallel job on a regular fabric most devices are copies of each other:
they run the same layers at the same times, their transfers cross resources that
carry the same loads. Simulating one device of each class, with its flows standing
for the flows of the whole class (:mod:`mcdla.sim.flownet`, ``copies``), gives the
same iteration at a cost that grows with the classes, not with the devices.

The classes are the coarsest *equitable partition* of everything a run's flows
depend on, found by colour refinement (1-dimensional Weisfeiler-Leman; Weisfeiler
and Leman 1968, Berkholz, Bonsma and Grohe 2017 for the O((n+m) log n) bound of the
refined algorithm). Vertices are the devices, the flow network's resources (channels
and memory ports, with their capacity), the backing stores (with their capacity) and
the collective rings (with their size and hop latencies); edges say which resources
each of a device's backing-store stripes crosses (labelled with its direction,
stripe number, share, latency and position), which store it ends at, which channels
a ring crosses and which devices are its ranks. A stable colouring is equitable:
every member of a resource class is crossed by as many stripes of a given kind from
a given class of devices, and every device of a class sends as many into it. So the
max-min rates, which progressive filling computes from those counts alone, are the
same for every member of a class at every instant, and so is everything a device
does; an asymmetric design refines to more (down to single-member) classes and stays
exact, only slower. The tests hold symmetric runs equal to exact ones.

Per-device programs and groups of ranks are given by the caller: ``colours`` tells
devices apart that run different programs (pipeline stages), ``groups`` are the
communicators (tensor- and data-parallel groups, each a vertex joined to its members
and to its rings, the sub-rings its collectives run on) and ``links`` the pipeline's
point-to-point routes (device -> the resources to its peer, and the peer). What the
refinement cannot see, the caller must exclude: collectives whose flows single out
ranks (a tree's root). For those :func:`rank_classes` is given ``supported=False``
and every device is its own class.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

from mcdla.hw.network import RANK_LINKS, reduce_unit
from mcdla.hw.quotient import Quotient

__all__ = ["Symmetry", "rank_classes", "by_translation", "line_up", "MAX_ROUNDS"]

# Refinement rounds before giving up (every device then its own class, still exact):
# a regular design is stable after 2-4 rounds; only long asymmetric chains (a path of
# devices refines from its ends inwards, a round per hop) need many. A round costs
# about 0.5 s at 16,384 devices, so a large design that is asymmetric along a chain
# pays up to 64 of them before it is simulated rank by rank.
MAX_ROUNDS = 64

# The quotient's vertices whose edges a refinement round reads as lists at once (the rest
# stay arrays): a bound on the lists, not a model parameter.
_CHUNK = 4096


@dataclass(frozen=True)
class Symmetry:
    """Classes of devices (indices into ``topology.devices``; the first of each is the
    one simulated), and each resource's and backing store's class, as the class's first
    member (listed only for classes of more than one member). A run adds its devices'
    reduction units to ``resources`` in place (mcdla.sim.training.Iteration.net: no copy
    of a 131,072-GPU run's 5.3M entries), so its record's classes name them too."""

    device_classes: tuple[tuple[int, ...], ...]
    resources: dict[str, str]
    stores: dict[str, str]
    # The translation every class is a union of orbits of (by_translation's; None: the whole
    # refinement's classes, or none): a ring bound by period under it crosses each class of
    # its period's hops ``order`` times as often (mcdla.sim.flownet counts it so).
    translation: object = field(default=None, compare=False)
    # The resources' orbits under it (each orbit's first member, its members), in
    # first-member order, for a sum per orbit (mcdla.metrics.summary's link classes).
    orbits: tuple = field(default=(), compare=False)

    @property
    def trivial(self) -> bool:
        return all(len(c) == 1 for c in self.device_classes)

    @staticmethod
    def exact(devices: int) -> "Symmetry":
        return Symmetry(tuple((d,) for d in range(devices)), {}, {})

    def with_units(self, devices: Sequence[str]) -> dict[str, str]:
        """:attr:`resources` with each device's reduction unit in its device's class (that
        of the class's first), added in place (above): the flow network's classes for a
        run whose collectives reduce (``devices``: the topology's names)."""
        for group in self.device_classes:
            if len(group) > 1:
                first = reduce_unit(devices[group[0]])
                self.resources.update((reduce_unit(devices[d]), first) for d in group)
        return self.resources


def _store_edges(topology, devices, policy: str, capacities, emit, tiers=None) -> None:
    """Each of ``devices``' backing-store stripes, both ways (those to each of ``tiers``,
    tier kinds; None: the default tier), as ``emit(device, kind, name, label)``: the
    store each reaches (kind ``"s"``) and every constrained resource of its route, in
    order (kind ``"r"``)."""
    for d in devices:
        for direction, tier in ((w, t) for t in (tiers or (None,)) for w in ("offload", "prefetch")):
            routes = topology.backing_routes(d, policy, direction) if tier is None else \
                topology.tier_routes(d, tier, policy, direction)
            for k, sub in enumerate(routes):
                kind = (direction, k, sub.share, sub.latency_s)
                emit(d, "s", sub.store, ("store", *kind))
                for j, r in enumerate(sub.path):
                    if r in capacities:
                        emit(d, "r", r, ("route", *kind, j))


def rank_classes(topology, policy: str, supported: bool = True, *, colours: Sequence = (),
                 groups: Sequence[tuple[str, Sequence[str], Sequence]] = (),
                 links: Sequence[tuple[str, str, str, Sequence[tuple]]] = (), rings=None,
                 tiers: Sequence[str] | None = None, translation=None) -> Symmetry:
    """The classes of ``topology``'s devices, resources and stores for a run whose
    backing-store stripes follow ``policy`` (module docstring). ``colours``: one value
    per device (devices of different values are never alike); ``groups``: (kind,
    member devices, the group's rings); ``links``: (kind, device, peer, the flows of the
    route between them as (share, resources, latency)); ``rings``: the rings the run's collectives
    use besides the groups' (None: the topology's); ``tiers``: the memory tiers the run
    moves state to, by kind (None: the backing store); ``translation``: an automorphism of
    the run to refine the quotient by (:func:`_handed`)."""
    devices = topology.devices
    if not supported or len(devices) < 2:
        return Symmetry.exact(len(devices))
    if found := _handed(topology, policy, rings, tiers, translation, colours, groups, links):
        return found
    initial: list[tuple] = []  # initial colour of each vertex
    index: dict[tuple[str, str], int] = {}  # (kind, name) -> vertex

    def vertex(kind: str, name: str, colour: tuple) -> int:
        v = index.get((kind, name))
        if v is None:
            v = index[(kind, name)] = len(initial)
            initial.append((kind, *colour))
        return v

    for n, d in enumerate(devices):
        vertex("d", d, (colours[n],) if colours else ())
    capacities = topology.read_capacities()
    for r, bw in capacities.items():
        vertex("r", r, (bw,))
    edges: list[tuple[int, int, tuple]] = []
    for c, extra in topology.nic_ports.items():  # a shared NIC's port behind its devices' links
        edges.extend((index[("r", c)], index[("r", a)], ("nic",)) for a in extra)
    if tiers or (tiers is None and topology.backing != "none"):
        def emit(d, kind, name, label) -> None:
            far = vertex("s", name, (topology.memory_capacity(name),)) if kind == "s" else index[("r", name)]
            edges.append((index[("d", d)], far, label))

        _store_edges(topology, devices, policy, capacities, emit, tiers)
    def ring_vertex(ring) -> int:
        qv = vertex("q", ring.name, (ring.size, len(ring.channels), max(ring.latency_s), sum(ring.latency_s)))
        for c in ring.channels:
            if c in capacities:
                edges.append((qv, index[("r", c)], ("ring",)))
        for rank in ring.ranks:
            edges.append((qv, index[("d", rank)], ("rank",)))
        # The links a switch algorithm takes besides the segments: each rank's to and
        # from its domain switch, its exit, and its leaf's core (mcdla.hw.network.Ring).
        # Like the segments, they are the ring's: the algorithms load every rank's alike.
        for role in RANK_LINKS:
            for c in getattr(ring, role):
                if c in capacities:
                    edges.append((qv, index[("r", c)], (role,)))
        return qv

    for ring in topology.rings if rings is None else rings:
        ring_vertex(ring)
    for n, (kind, members, group_rings) in enumerate(groups):
        gv = vertex("g", f"{kind}{n}", (kind, len(members)))
        edges.extend((gv, index[("d", d)], ("member", kind)) for d in members)
        edges.extend((gv, ring_vertex(ring), ("on", kind)) for ring in group_rings)
    for kind, src, dst, paths in links(devices) if callable(links) else links:
        edges.append((index[("d", src)], index[("d", dst)], ("peer", kind)))
        for share, path, latency in paths:
            edges.extend((index[("d", src)], index[("r", r)], ("link", kind, share, latency, j))
                         for j, r in enumerate(path) if r in capacities)
    colour = _refine(initial, edges, len(devices))  # the devices are vertices 0 .. N-1
    if colour is None:
        return Symmetry.exact(len(devices))
    classes: dict[int, list[int]] = {}
    for n, d in enumerate(devices):
        classes.setdefault(colour[index[("d", d)]], []).append(n)

    stores = [name for kind, name in index if kind == "s"]
    return Symmetry(tuple(tuple(c) for c in classes.values()),
                    _firsts(list(capacities), [colour[index[("r", r)]] for r in capacities]),
                    _firsts(stores, [colour[index[("s", s)]] for s in stores]))


def _handed(topology, policy, rings, tiers, translation, colours, groups, links) -> Symmetry | None:
    """:func:`rank_classes` from the quotient by the run's ``translation`` (the caller's,
    mcdla.hw.translation) or, for a run without colours, groups and links, by the
    generator's own; None: refine the whole graph. With a translation ``links`` may be a
    function of the devices whose links are wanted (the quotient asks for one device's
    per orbit, the whole refinement for all), and a group's rings an iterable that
    derives them when first iterated (the quotient iterates one group's per orbit)."""
    if translation is not None:
        wanted = translation.cell(topology.devices)
        return by_translation(topology, policy, rings, tiers, translation, colours=colours, groups=groups,
                              links=links(wanted) if callable(links) else links)
    if not (colours or groups or links):
        return by_translation(topology, policy, rings, tiers)
    return None


def _firsts(names: Sequence[str], colours: Sequence) -> dict[str, str]:
    """Each of ``names`` in a class (its colour in ``colours``) of more than one -> the class's first."""
    first = dict(zip(reversed(colours), reversed(names)))  # the earliest name of a colour is written last
    sizes = Counter(colours)
    if min(sizes.values(), default=2) > 1:  # every class of more than one (a ring's): in one C-level pass
        return dict(zip(names, map(first.__getitem__, colours)))
    return {name: first[c] for name, c in zip(names, colours) if sizes[c] > 1}


def line_up(symmetry: Symmetry, groups, rank_device, peers):
    """(symmetry, per group: (weights, copies, alike) or None) when the groups line up
    with the classes, else None. Each class is simulated by its first device in rank
    order. A group holding a simulated device must hold the simulated device of every
    class it touches; it then gets a communicator, where a simulated device's join
    counts for the devices of its class in the group (``weights``) and whose flows stand
    for ``copies`` alike groups (``alike``: their indices, its own included: the group
    of the same kind holding the simulated device of each group's first member). A
    simulated device's pipeline peers must be simulated. Groups without a simulated
    device: None."""
    rank_of = {d: r for r, d in enumerate(rank_device)}
    classes = tuple(tuple(sorted(c, key=rank_of.__getitem__)) for c in symmetry.device_classes)
    first = {d: c[0] for c in classes for d in c}
    size = {c[0]: len(c) for c in classes}
    where: dict[tuple[str, int], int] = {}  # (kind, simulated device) -> the group index holding it
    plans: list = []
    for k, (kind, group) in enumerate(groups):
        members = set(group)
        mine = [d for d in group if first[d] == d]
        if not mine:
            plans.append(None)
            continue
        if any(first[e] not in members for e in group):
            return None
        weights = {d: sum(1 for e in group if first[e] == d) for d in mine}
        copies = {size[d] // weights[d] for d in mine}
        if len(copies) != 1 or any(size[d] % weights[d] for d in mine):
            return None
        plans.append([weights, copies.pop(), []])
        where.update(((kind, d), k) for d in mine)
    def classes_in(group) -> list[int]:
        return sorted(first[d] for d in group)

    for k, (kind, group) in enumerate(groups):
        own = where[(kind, first[group[0]])]
        if classes_in(group) != classes_in(groups[own][1]):  # not alike: it cannot stand for it
            return None
        plans[own][2].append(k)
    if any(p is not None and len(p[2]) != p[1] for p in plans):
        return None
    if any(peer is not None and first[peer] != peer for d in size for peer in peers.get(d, ())):
        return None
    return replace(symmetry, device_classes=classes), \
        [None if p is None else (p[0], p[1], tuple(p[2])) for p in plans]


def _refine(colours: list[tuple], edges: list[tuple[int, int, tuple]], devices: int) -> list[int] | None:
    """The stable colouring (a colour number per vertex) of a labelled graph, or None
    after :data:`MAX_ROUNDS` rounds or once vertices 0 .. ``devices``-1 (the devices)
    all differ (nothing left to lump: the caller simulates every device). Colours are
    numbered in first-appearance order of vertices, so the result does not depend on
    hashing."""
    labels: dict[tuple, int] = {}
    adjacency: list[list[tuple[int, int]]] = [[] for _ in colours]
    for u, v, label in edges:
        lab = labels.setdefault(label, len(labels))
        adjacency[u].append((2 * lab, v))  # the two ends of an edge see it differently
        adjacency[v].append((2 * lab + 1, u))
    numbers: dict[tuple, int] = {}
    colour = [numbers.setdefault(c, len(numbers)) for c in colours]
    count = len(numbers)
    for _ in range(MAX_ROUNDS):
        numbers = {}
        new = [numbers.setdefault((colour[v], tuple(sorted([(lab, colour[u]) for lab, u in adj]))), len(numbers))
               for v, adj in enumerate(adjacency)]
        if len(numbers) == count:  # no class split: stable
            return new
        if len(set(new[:devices])) == devices:
            return None
        colour, count = new, len(numbers)
    return None


def by_translation(topology, policy: str, rings, tiers, translation=None, *, colours: Sequence = (),
                   groups: Sequence = (), links: Sequence = ()) -> Symmetry | None:
    """:func:`rank_classes` from the quotient by ``translation`` (None: the topology's):
    the same classes (mcdla.hw.translation) from the routes of one device per orbit, the
    rings of one group per orbit and the links of one device per orbit (``links`` may
    hold those only). None (refine the whole graph) when the run's rings (None: the
    topology's), groups or colours are not carried onto themselves by the translation,
    or there is none."""
    t, devices = translation or topology.translation, topology.devices
    if t is None:
        return None
    rings, capacities = topology.rings if rings is None else rings, topology.read_capacities()
    q = Quotient(t)
    device_vertex = [q.vertex("d", d, (colours[n],) if colours else ()) for n, d in enumerate(devices)]
    # The topology's capacities list its channels first, link by link (Topology.capacities):
    # numbered by link where every channel id is a name of its own (no port's).
    whole = len(capacities) == len(topology.channels) + len(topology.ports)
    resource_vertex = q.vertices(capacities, topology.physical_links if whole else ())
    for c, extra in topology.nic_ports.items():
        if t.orbit(c)[1] == 0:
            for a in extra:
                q.edge(resource_vertex[c], resource_vertex[a], ("nic",))
    representatives = t.cell(devices)
    route_stores: dict[str, list[str]] = {}  # each representative's stores, in the order its routes meet them
    if tiers or (tiers is None and topology.backing != "none"):
        def emit(d, kind, name, label) -> None:
            if kind == "s":
                route_stores.setdefault(d, []).append(name)
                far = q.vertex("s", name, (topology.memory_capacity(name),))
            else:
                far = resource_vertex[name]
            q.edge(q.index[("d", t.orbit(d)[0])], far, label)

        _store_edges(topology, representatives, policy, capacities, emit, tiers)
    position = {d: n for n, d in enumerate(devices)}
    ranks_of = lambda ranks: [device_vertex[position[r]] for r in ranks]  # noqa: E731
    if any(_ring_edges(q, ring, resource_vertex, ranks_of, capacities) is None for ring in rings) or \
            not _run_edges(q, groups, links, ranks_of, resource_vertex, capacities):
        return None
    # Read no more: the map of every resource to its vertex (5.3M names at 131,072 GPUs,
    # made once the rings ask for many), let go before the edges are summed, where a
    # 131,072-GPU run's classes peak (adjacency lets go of the rings' counted names).
    del resource_vertex
    adjacency = q.adjacency()
    if adjacency is None or not q.consistent:
        return None
    colour = _refine_quotient(q.colours, *adjacency, sorted(set(device_vertex)), q.sizes, len(devices))
    del adjacency  # read: let go before the classes' maps are made
    if colour is None:
        return Symmetry.exact(len(devices))
    classes: dict[int, list[int]] = {}
    for n, v in enumerate(device_vertex):
        classes.setdefault(colour[v], []).append(n)
    stores = _stores_in_order(t, devices, route_stores)
    resources = q.firsts(colour)  # sets q.orbit_members
    return Symmetry(tuple(tuple(c) for c in classes.values()), resources,
                    _firsts(stores, [colour[q.index[("s", t.orbit(s)[0])]] for s in stores]),  # a few per device
                    t, q.orbit_members)


def _run_edges(q: Quotient, groups, links, ranks_of, resource_vertex, capacities) -> bool:
    """The groups' and links' vertices and edges (as :func:`rank_classes` adds them), one
    group per orbit of groups with its rings, and the links of each orbit's representative
    device; False if the translation carries a group onto no group of its kind, or onto
    itself after fewer steps than its order but more than one (a case not handled), or a
    group it keeps does not keep its rings."""
    t = q.translation
    orbits = _group_orbits(t, groups)
    if orbits is None or any(size not in (1, t.order) for _, size in orbits):
        return False
    for n, size in orbits:
        kind, members, group_rings = groups[n]
        gv = q.vertex("g", f"{kind}{n}", (kind, len(members)), size=size)
        for d in members:
            q.edge(gv, q.index[("d", t.orbit(d)[0])], ("member", kind))
        # A group the shift keeps: each sub-ring by period within each block (a stage's
        # or a leaf's) where it has them (the simulated groups' are derived whole for
        # their communicators).
        by_period = getattr(group_rings, "by_period", None)
        for ring, reading in by_period(t) if size == 1 and by_period else ((r, None) for r in group_rings):
            qv = _ring_edges(q, ring, resource_vertex, ranks_of, capacities, size, reading)
            if qv is None:
                return False
            q.edge(gv, qv, ("on", kind))
    for kind, src, dst, paths in links:
        key, times = t.orbit(src)
        if times:  # another device's of its orbit: the representative's stand for them
            continue
        sv = q.index[("d", key)]
        q.edge(sv, q.index[("d", t.orbit(dst)[0])], ("peer", kind))
        for share, path, latency in paths:
            for j, r in enumerate(path):
                if r in capacities:
                    q.edge(sv, resource_vertex[r], ("link", kind, share, latency, j))
    return True


def _group_orbits(t, groups) -> list[tuple[int, int]] | None:
    """(the first group of each orbit of ``groups`` under ``t``, the orbit's size), or
    None if a group is moved onto no group of its kind. Each group's members are moved
    once per member of its orbit: as many moves as the groups have members."""
    where = {(kind, frozenset(members)): n for n, (kind, members, _) in enumerate(groups)}
    seen: set[int] = set()
    out = []
    for n, (kind, members, _) in enumerate(groups):
        if n in seen:
            continue
        moved, size = members, 0
        while True:
            moved, size = [t.shift(d, 1) for d in moved], size + 1
            k = where.get((kind, frozenset(moved)))
            if k is None:
                return None
            if k == n:
                break
            seen.add(k)
        out.append((n, size))
    return out


def _ring_edges(q: Quotient, ring, resource_vertex, ranks_of, capacities, size: int = 1,
                reading=None) -> int | None:
    """Adds ``ring``'s vertex and edges (as :func:`rank_classes` does) for an orbit of
    ``size`` rings, ``ring`` its representative: its vertex, or None if the translation
    does not carry a ring it keeps (``size`` 1) onto itself (its channels of a role, or
    its ranks, as multisets: every member of an orbit it touches as often). ``ranks_of``:
    ranks -> their vertices. A ring kept that was bound by period under the quotient's
    translation (``Ring.period``): its channels and ranks are one period's each ``order``
    times, whole orbits by the binding's check, and are not read whole. ``reading``: what
    is read of a sub-ring by period (:class:`mcdla.hw.network.Periods`, ``ring`` its
    ``ring``): the periods' segments, ranks and fabric roles each ``order`` times, and
    the hops read whole (``rest``), which must hold whole orbits (:func:`_signed_orbits`)."""
    hops = len(ring.channels) if reading is None else reading.hops
    qv = q.vertex("q", ring.name, (ring.size, hops, max(ring.latency_s), sum(ring.latency_s)), size=size)
    order = q.translation.order
    channels, ranks, roles = ring.channels, ring.ranks, None
    period = ring.period[1] if size == 1 and ring.period and ring.period[0] is q.translation else 0
    if reading is not None:  # each block's periods: each orbit of them met ``order`` times
        ranks, roles = reading.ranks, reading.roles
    elif period:  # one period of hops, and of ranks: each orbit of them met ``order`` times
        channels, ranks = channels[:period], ranks[:len(ranks) // order]
    repeated = reading is not None or bool(period)  # what is read stands for ``order`` translates
    touched = [("ring", channels), *((role, roles[role] if roles and role in roles else getattr(ring, role))
                                     for role in RANK_LINKS), ("rank", ranks)]
    for label, names in touched:
        times = order if repeated and (label in ("ring", "rank") or (roles and label in roles)) else 1
        counts, whole = _counted(q, label, tuple(names), resource_vertex, ranks_of, capacities,
                                 times == 1 and size == 1)
        if whole is False:
            return None
        counts = Counter({v: n * times for v, n in counts.items()})
        if label == "ring" and reading is not None:
            rest = _signed_orbits(q, reading.rest, resource_vertex, capacities)
            if rest is None:
                return None
            counts.update(rest)
            if min(counts.values(), default=1) <= 0:
                return None
        for v, n in counts.items():
            q.edge(qv, v, (label,), n)
    return qv


def _signed_orbits(q: Quotient, names: Counter, resource_vertex, capacities) -> Counter | None:
    """The vertices of the channels ``names`` (name -> times, negative for a hop taken
    out) counted, or None unless each orbit they touch has every member equally often
    (the translation carries them onto themselves)."""
    times: dict[int, list[int]] = {}
    for name, n in names.items():
        if n and name in capacities:
            times.setdefault(resource_vertex[name], []).append(n)
    if any(len(ns) != q.sizes[v] or len(set(ns)) != 1 for v, ns in times.items()):
        return None
    return Counter({v: sum(ns) for v, ns in times.items()})


def _counted(q: Quotient, label: str, names: tuple, resource_vertex, ranks_of, capacities,
             check: bool) -> tuple[Counter, bool | None]:
    """The vertices of ``names`` (a ring's ranks for label "rank", else its channels of
    a role: those with a capacity) counted, and (``check``) whether they hold whole
    orbits (:func:`_whole_orbits`), else None; each once per distinct (label, names)."""
    key = (label, names)
    found = q.counted.get(key)
    if found is None or (check and found[1] is None):
        kept = [c for c in names if c in capacities] if label != "rank" else names
        vertices = [resource_vertex[c] for c in kept] if label != "rank" else ranks_of(kept)
        counts = Counter(vertices)
        found = q.counted[key] = (counts, _whole_orbits(q, kept, vertices, counts) if check else None)
    return found[0], found[1] if check else None


def _whole_orbits(q: Quotient, names, vertices, counts: Counter) -> bool:
    """Whether a multiset of names (``names``, each in the orbit of its ``vertices``,
    ``counts`` of them in each) holds every member of each orbit it touches, each
    equally often."""
    distinct = set(names)
    if len(distinct) == len(names):  # each once (the common case): whole orbits
        return all(n == q.sizes[v] for v, n in counts.items())
    vertex = dict(zip(names, vertices))
    times: dict[int, set[int]] = {}
    members: Counter = Counter()
    for name, n in Counter(names).items():
        times.setdefault(vertex[name], set()).add(n)
        members[vertex[name]] += 1
    return all(len(t) == 1 and members[v] == q.sizes[v] for v, t in times.items())


def _stores_in_order(t, devices, route_stores: dict[str, list[str]]) -> list[str]:
    """Every device's stores in the order :func:`rank_classes` meets them (device by
    device, each its routes'): each device's are its representative's, moved on."""
    own = {t.orbit(d)[0]: tuple(dict.fromkeys(stores)) for d, stores in route_stores.items()}
    order: dict[str, None] = {}
    for d in devices:
        key, times = t.orbit(d)
        for s in own.get(key, ()):
            order.setdefault(t.shift(s, times))
    return list(order)


def _refine_quotient(colours: list[tuple], parts: list[tuple], width: int, device_vertices: list[int],
                     sizes: list[int], devices: int) -> list[int] | None:
    """:func:`_refine` on the quotient: the same rounds, the same partition (a colour
    number per orbit), an edge counted as many times as each member has it.
    ``parts``, ``width``: :meth:`Quotient.adjacency`'s edges and kinds."""
    import numpy as np  # here: mcdla's start-up does not pay numpy's import

    numbers: dict[tuple, int] = {}
    colour = [numbers.setdefault(c, len(numbers)) for c in colours]
    count = len(numbers)
    alone = all(sizes[v] == 1 for v in device_vertices) and len(device_vertices) == devices
    for _ in range(MAX_ROUNDS):
        numbers = {}
        new: list[int] = []
        # Each edge's neighbour kind, one to one with (label, side, colour): the signatures
        # are equal exactly when the tuples' were, and no label tuple is hashed every round.
        by = np.asarray(colour, dtype=np.int64)
        keyed = [(at, by[far] * width + kinds, counts) for at, far, kinds, counts in parts]
        for lo in range(0, len(colour), _CHUNK):
            hi = min(lo + _CHUNK, len(colour))
            chunk = [((at[lo:hi + 1] - at[lo]).tolist(), keys[at[lo]:at[hi]].tolist(), counts[at[lo]:at[hi]].tolist())
                     for at, keys, counts in keyed]
            for j in range(hi - lo):
                seen: dict[int, int] = {}
                for at, keys, counts in chunk:
                    for key, k in zip(keys[at[j]:at[j + 1]], counts[at[j]:at[j + 1]]):
                        seen[key] = seen.get(key, 0) + k
                # A vertex's signature as a set of (neighbour kind, count): equal exactly when
                # the sorted lists are, and hashed without sorting by repr (a third of the pass).
                new.append(numbers.setdefault((colour[lo + j], frozenset(seen.items())), len(numbers)))
        if len(numbers) == count:  # no class split: stable
            return new
        if alone and len({new[v] for v in device_vertices}) == devices:
            return None
        colour, count = new, len(numbers)
    return None
