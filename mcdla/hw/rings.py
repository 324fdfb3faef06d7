"""Finding edge-disjoint Hamiltonian rings in a multi-link interconnect.

NCCL-style ring collectives want every device on every ring, and every physical link
used by at most one ring, so that concurrent rings never share a channel. A device
with ``N`` links can sit on at most ``N/2`` such rings (each ring enters and leaves
it once). This module searches for that many edge-disjoint Hamiltonian cycles over
a set of nodes, treating parallel links as separate edges (a double link can carry
two rings between the same pair of devices, as on DGX-1V).

The search is a plain depth-first backtracking: first cycle, then the next one in
what remains, undoing a cycle when no completion exists. It is deterministic
(neighbours are tried in the order the nodes are given, never in set order) and
fast for the graphs of interest (eight devices). Each cycle is returned starting at
the first node, oriented so that its second node precedes its last in node order,
so the same graph always yields the same tuples.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

from mcdla.hw.fabric import Fabric

__all__ = ["find_rings", "link_counts", "canonical_ring", "derive_rings", "RingSearchLimit", "SEARCH_STEPS"]

# Extensions of a partial cycle the search may try before it gives up: the designs of
# interest take a few thousand; a graph with no such cycles can take exponentially many.
SEARCH_STEPS = 1_000_000


class RingSearchLimit(Exception):
    """The search for rings tried :data:`SEARCH_STEPS` extensions without an answer."""


def link_counts(graph, nodes: Sequence[str]) -> dict[frozenset, int]:
    """Undirected link multiplicity between every linked pair within ``nodes``.

    ``graph`` is a :class:`networkx.MultiDiGraph` with one edge per directed channel,
    so the number of ``a -> b`` edges is the number of physical links ``a -- b``.
    """
    inside = set(nodes)
    counts: dict[frozenset, int] = {}
    for a in nodes:
        for b in graph.successors(a):
            if b in inside and a != b:
                counts[frozenset((a, b))] = graph.number_of_edges(a, b)
    return counts


def canonical_ring(ring: Sequence[Hashable], order: Mapping[Hashable, int]) -> tuple:
    """``ring`` rotated to start at its earliest node, oriented by its second node."""
    start = min(range(len(ring)), key=lambda i: order[ring[i]])
    rotated = list(ring[start:]) + list(ring[:start])
    if len(rotated) > 2 and order[rotated[-1]] < order[rotated[1]]:
        rotated = [rotated[0]] + rotated[1:][::-1]
    return tuple(rotated)


def find_rings(
    graph,
    nodes: Sequence[str],
    count: int | None = None,
) -> tuple[tuple[str, ...], ...]:
    """Up to ``count`` edge-disjoint Hamiltonian cycles over ``nodes`` in ``graph``.

    ``count`` defaults to half the smallest number of links any node has within
    ``nodes``. Returns fewer cycles (possibly none) when no larger set exists. Raises
    :class:`RingSearchLimit` when the search takes more than :data:`SEARCH_STEPS`.
    """
    nodes = list(nodes)
    order = {n: i for i, n in enumerate(nodes)}
    remaining = link_counts(graph, nodes)
    neighbours: dict[str, list[str]] = {n: [] for n in nodes}  # each node's linked nodes, in node order
    for pair in remaining:  # from the links, not from all pairs (a 50,000-node ring)
        a, b = tuple(pair)
        neighbours[a].append(b)
        neighbours[b].append(a)
    for linked in neighbours.values():
        linked.sort(key=order.__getitem__)
    if len(nodes) < 3:
        return ()
    if count is None:
        degree = {n: sum(remaining[frozenset((n, m))] for m in neighbours[n]) for n in nodes}
        count = min(degree.values()) // 2
    cycle = _only_cycle(nodes, neighbours)
    if cycle is not None:  # a plain cycle (the MC-DLA ring at any size): no search needed
        copies = min(count, min(remaining[frozenset(p)] for p in zip(cycle, cycle[1:] + cycle[:1])))
        return tuple(cycle for _ in range(copies))
    steps = [SEARCH_STEPS]
    try:
        for wanted in range(count, 0, -1):
            found: list[tuple[str, ...]] = []
            if _search(nodes, order, neighbours, remaining, wanted, found, steps):
                return tuple(found)
    except RecursionError:  # a path deeper than Python's stack: as long a search
        raise RingSearchLimit from None
    return ()


def _only_cycle(nodes, neighbours) -> tuple[str, ...] | None:
    """The one Hamiltonian cycle of a graph in which every node has two neighbours and
    which is connected, in :func:`find_rings`' orientation (from the first node towards
    its earlier neighbour); else None."""
    if any(len(neighbours[n]) != 2 for n in nodes):
        return None
    path = [nodes[0], neighbours[nodes[0]][0]]  # neighbours are in node order
    while len(path) < len(nodes):
        a, b = neighbours[path[-1]]
        nxt = b if a == path[-2] else a
        if nxt == path[0]:
            return None  # a shorter cycle: the graph is not connected
        path.append(nxt)
    return tuple(path) if path[0] in neighbours[path[-1]] else None


def _search(nodes, order, neighbours, remaining, wanted, found, steps) -> bool:
    """Appends ``wanted`` more disjoint cycles to ``found``; False if impossible.
    ``steps[0]`` counts down the extensions left (:data:`SEARCH_STEPS`)."""
    if wanted == 0:
        return True
    start = nodes[0]
    path = [start]
    visited = {start}

    def extend() -> bool:
        here = path[-1]
        if len(path) == len(nodes):
            closing = frozenset((here, start))
            # Orientation: skip the mirror image of a cycle already tried.
            if remaining.get(closing, 0) > 0 and order[path[1]] < order[path[-1]]:
                remaining[closing] -= 1
                found.append(tuple(path))
                if _search(nodes, order, neighbours, remaining, wanted - 1, found, steps):
                    return True
                found.pop()
                remaining[closing] += 1
            return False
        for nxt in neighbours[here]:
            pair = frozenset((here, nxt))
            if nxt in visited or remaining[pair] == 0:
                continue
            steps[0] -= 1
            if steps[0] < 0:
                raise RingSearchLimit
            remaining[pair] -= 1
            visited.add(nxt)
            path.append(nxt)
            if extend():
                return True
            path.pop()
            visited.discard(nxt)
            remaining[pair] += 1
        return False

    return extend()


def derive_rings(graph, fab: Fabric | None = None) -> tuple[tuple[tuple[str, ...], ...], bool]:
    """The collective rings of a topology that lists none: (node cycles, directed).

    - Devices on a fabric switch (kind ``fabric``): a switch ring
      D0 FS D1 FS ... D{N-1} FS takes one link out of and one into every device, so a
      switch every device links to ``k`` times gives ``k`` *directed* rings (a ring and
      its reverse would need the same links); the first such switch in node order.
    - Devices each on one leaf fabric switch, the leaves under common spines (a
      two-level switch): each ring runs through every leaf's devices in turn, from leaf
      to leaf over one spine (the spines taken in turn), so as many directed rings as
      a device has leaf links or a leaf has spine links, whichever is fewer.
    - Devices each on one domain switch and with a link to a spine switch of their own
      (a cluster of NVLink domains, every GPU's NIC on a rail switch): ring ``r`` runs
      through each domain's devices from place ``r`` on, alternately up and down the
      places, and crosses to the next domain over the last device's spine switch to the
      device at the same place there; with an odd number of domains the last enters at
      place r + 1 and leaves at r (two places a domain close only an even number);
      as many directed rings as a device has links to its domain switch.
    - Otherwise edge-disjoint Hamiltonian cycles (:func:`find_rings`) over the devices
      and memory-nodes, which relay (the MC-DLA ring), or failing that over the devices
      alone (a cube-mesh); each cycle runs both ways.

    Returns ``((), False)`` when there is none: one device, or no such ring exists.
    ``fab``: the graph as read once for binding (default: read here).
    """
    fab = fab or Fabric(graph)
    kinds = fab.kinds
    devices = [n for n, kind in kinds.items() if kind == "device"]
    if len(devices) < 2:
        return (), False
    # A single switch all devices hang off (not a spine: devices reach a spine by NIC,
    # above their own domains' switches).
    for hub in (n for n in kinds if n in fab.switches and n not in fab.spine):
        links = 0
        for d in devices:  # the fewest links of a device to it; stop at one without
            k = graph.number_of_edges(d, hub)
            links = k if d == devices[0] else min(links, k)
            if not links:
                break
        if links:
            cycle = tuple(node for d in devices for node in (d, hub))
            return tuple(cycle for _ in range(links)), True
    tree = _switch_tree_rings(graph, fab, devices) or _cluster_rings(fab, devices)
    if tree:
        return tree, True
    memory = [n for n, kind in kinds.items() if kind == "memory"]
    for nodes in ((devices + memory, devices) if memory else (devices,)):
        found = find_rings(graph, nodes)
        if found:
            return found, False
    return (), False


def _switch_tree_rings(graph, fab: Fabric, devices) -> tuple[tuple[str, ...], ...]:
    """The directed rings of a two-level switch (see :func:`derive_rings`), or ()."""
    leaf_of = {}
    for d in devices:
        hubs = [n for n in graph.successors(d) if n in fab.switches]
        if len(hubs) != 1:
            return ()
        leaf_of[d] = hubs[0]
    under: dict[str, list[str]] = {}  # each leaf's devices in device order, leaves by first device
    for d in devices:
        under.setdefault(leaf_of[d], []).append(d)
    leaves = list(under)
    if len(leaves) < 2:
        return ()
    spines = [n for n in fab.kinds if n in fab.switches and n not in leaves
              and all(graph.has_edge(leaf, n) for leaf in leaves)]
    per_spine = [min(graph.number_of_edges(leaf, s) for leaf in leaves) for s in spines]
    links = min(graph.number_of_edges(d, leaf_of[d]) for d in devices)
    count = min(links, sum(per_spine))
    # The spine of each ring: the spines in turn, each as often as it has uplinks.
    turns = [s for r in range(max(per_spine, default=0)) for s, n in zip(spines, per_spine) if r < n][:count]
    rings = []
    for spine in turns:
        cycle: list[str] = []
        for leaf in leaves:
            for d in under[leaf]:
                cycle += [leaf, d]
            cycle += [leaf, spine]
        rings.append(tuple(cycle))
    return tuple(rings)


def _cluster_rings(fab: Fabric, devices) -> tuple[tuple[str, ...], ...]:
    """The directed rings of a cluster of domains with per-device exits (see
    :func:`derive_rings`), or ()."""
    domain_of, exit_of = {}, {}
    for d in devices:
        domain_of[d], exit_of[d] = fab.tiers(d)
        if not domain_of[d] or not exit_of[d]:
            return ()
    members_of: dict[str, list[str]] = {}  # each domain's devices in device order, domains by first device
    for d in devices:
        members_of.setdefault(domain_of[d], []).append(d)
    switches = list(members_of)
    domains = list(members_of.values())
    q = len(domains[0])
    n = len(domains)
    if n < 2 or (n % 2 and q == 2) or any(len(members) != q for members in domains):
        return ()  # two places a domain close no odd snake: every hop out is a hop in elsewhere

    ways = {}
    for members, nxt in zip(domains, domains[1:] + domains[:1]):
        for a, b in zip(members, nxt):
            ways[a] = fab.up_and_over(a, b)
            if ways[a] is None:
                return ()  # the device at one place in the next domain must share the rail
    links = min(len(fab.succ[d][domain_of[d]]) for d in devices)
    rings = []
    for r in range(links):
        # The place ring r enters each domain at: r on even domains, r - 1 on odd ones;
        # with an odd number of domains the last enters at r + 1, so that it leaves at r
        # for domain 0 (a third place: the ring still crosses over one rail).
        places = [r % q if j % 2 == 0 else (r - 1) % q for j in range(n)]
        if n % 2 and q > 1:
            places[-1] = (r + 1) % q
        cycle: list[str] = []
        for j, (switch, members) in enumerate(zip(switches, domains)):
            order = _domain_path(places[j], places[(j + 1) % n], 1 if j % 2 == 0 else -1, q)
            for i, place in enumerate(order):
                d = members[place]
                cycle += [d, switch] if i < q - 1 else [d, *ways[d]]
        first = cycle.index(devices[0])  # every ring from the first device: broadcast's root 0
        rings.append(tuple(cycle[first:] + cycle[:first]))
    return tuple(rings)


def _domain_path(start: int, end: int, step: int, q: int) -> list[int]:
    """The places of a domain's q devices in ring order, from ``start`` to ``end``: the
    others in turn from ``start`` (up or down the places, by ``step``), then ``end``.
    Up from r ends at r - 1 and down from r - 1 at r by themselves (the snake)."""
    if q == 1:
        return [start]
    rest = [(start + step * i) % q for i in range(1, q)]
    return [start, *(p for p in rest if p != end), end]
