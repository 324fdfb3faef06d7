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

What the refinement cannot see, the caller must exclude: per-device programs that
differ (pipeline stages), groups of ranks (tensor- and data-parallel communicators
over sub-rings) and collectives whose flows single out ranks (a tree's root). For
those :func:`rank_classes` is given ``supported=False`` and every device is its own
class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["Symmetry", "rank_classes", "MAX_ROUNDS"]

# Refinement rounds before giving up (every device then its own class, still exact):
# a regular design is stable after 2-4 rounds; only long asymmetric chains (a path of
# devices refines from its ends inwards, a round per hop) need many.
MAX_ROUNDS = 64


@dataclass(frozen=True)
class Symmetry:
    """Classes of devices (indices into ``topology.devices``; the first of each is the
    one simulated), and each resource's and backing store's class, as the class's first
    member (listed only for classes of more than one member)."""

    device_classes: tuple[tuple[int, ...], ...]
    resources: dict[str, str]
    stores: dict[str, str]

    @property
    def trivial(self) -> bool:
        return all(len(c) == 1 for c in self.device_classes)

    @staticmethod
    def exact(devices: int) -> "Symmetry":
        return Symmetry(tuple((d,) for d in range(devices)), {}, {})


def rank_classes(topology, policy: str, supported: bool = True) -> Symmetry:
    """The classes of ``topology``'s devices, resources and stores for a run whose
    backing-store stripes follow ``policy`` (module docstring)."""
    devices = topology.devices
    if not supported or len(devices) < 2:
        return Symmetry.exact(len(devices))
    colours: list[tuple] = []  # initial colour of each vertex
    index: dict[tuple[str, str], int] = {}  # (kind, name) -> vertex

    def vertex(kind: str, name: str, colour: tuple) -> int:
        v = index.get((kind, name))
        if v is None:
            v = index[(kind, name)] = len(colours)
            colours.append((kind, *colour))
        return v

    for d in devices:
        vertex("d", d, ())
    capacities = topology.capacities()
    for r, bw in capacities.items():
        vertex("r", r, (bw,))
    edges: list[tuple[int, int, tuple]] = []
    if topology.backing != "none":
        for d in devices:
            dv = index[("d", d)]
            for direction in ("offload", "prefetch"):
                for k, sub in enumerate(topology.backing_routes(d, policy, direction)):
                    kind = (direction, k, sub.share, sub.latency_s)
                    sv = vertex("s", sub.store, (topology.memory_capacity(sub.store),))
                    edges.append((dv, sv, ("store", *kind)))
                    for j, r in enumerate(sub.path):
                        if r in capacities:
                            edges.append((dv, index[("r", r)], ("route", *kind, j)))
    for ring in topology.rings:
        qv = vertex("q", ring.name, (ring.size, len(ring.channels), max(ring.latency_s), sum(ring.latency_s)))
        for c in ring.channels:
            if c in capacities:
                edges.append((qv, index[("r", c)], ("ring",)))
        for rank in ring.ranks:
            edges.append((qv, index[("d", rank)], ("rank",)))
    colour = _refine(colours, edges)
    if colour is None:
        return Symmetry.exact(len(devices))
    classes: dict[int, list[int]] = {}
    for n, d in enumerate(devices):
        classes.setdefault(colour[index[("d", d)]], []).append(n)

    def firsts(kind: str, names: Sequence[str]) -> dict[str, str]:
        first: dict[int, str] = {}
        out = {}
        for name in names:
            c = colour[index[(kind, name)]]
            out[name] = first.setdefault(c, name)
        sizes: dict[str, int] = {}
        for f in out.values():
            sizes[f] = sizes.get(f, 0) + 1
        return {name: f for name, f in out.items() if sizes[f] > 1}

    stores = [name for kind, name in index if kind == "s"]
    return Symmetry(tuple(tuple(c) for c in classes.values()), firsts("r", list(capacities)), firsts("s", stores))


def _refine(colours: list[tuple], edges: list[tuple[int, int, tuple]]) -> list[int] | None:
    """The stable colouring (a colour number per vertex) of a labelled graph, or None
    after :data:`MAX_ROUNDS` rounds. Colours are numbered in first-appearance order of
    vertices, so the result does not depend on hashing."""
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
        colour, count = new, len(numbers)
    return None
