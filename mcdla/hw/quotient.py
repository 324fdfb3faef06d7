"""The rank classes' quotient graph: one vertex per orbit of a generator's translation.

:func:`mcdla.hw.symmetry.by_translation` refines this graph instead of the whole one
(mcdla.hw.translation says why the classes are the same): each orbit's representative's
own edges, counted, and each orbit of resources numbered in one pass.
"""

from __future__ import annotations

from array import array
from collections import Counter
from operator import ne
from typing import Sequence

__all__ = ["Quotient", "ResourceVertices"]

# How many resources ResourceVertices answers by orbit before it makes the map of every resource:
# a ring's run asks for a few per ring and period (by orbit is cheaper than a map of 1.8M
# names), a cluster's pipeline stages for most (632,000 lookups by orbit cost more than the
# map; docs/performance.md, "The 131,072-device ring: the last passes"). Not a model
# parameter: a cost switch that changes no result.
_LOOKUPS_BY_ORBIT = 1024
_LOOKUPS_PER_RESOURCE = 64  # ... or one per 64 resources, whichever is more

_SIDE_AND_LABEL = (1 << 32) - 1  # an edge key's low bits (Quotient.edge): its label's number and side


class Quotient:
    """The refinement graph with one vertex per orbit of the generator's translation
    (mcdla.hw.translation): each orbit's representative's own edges, counted, and the
    edges into it, each orbit of sources' count times its size over the orbit's (those
    follow from the own edges: :meth:`adjacency` turns them round)."""

    def __init__(self, translation) -> None:
        self.translation = translation
        self.index: dict[tuple, int] = {}  # (kind, orbit key) -> vertex, but the resources' (vertices())
        self.colours: list[tuple] = []
        self._colours: dict[tuple, tuple] = {}  # each colour once: 637,312 vertices share a few hundred
        self.sizes: list[int] = []
        # An edge's key: its far vertex << 32 | its label's number << 1 | its side, one int
        # (a tuple a key held 544 MB more at 131,072 GPUs' 8.5M edges).
        self.labels: dict[tuple, int] = {}  # an edge label -> its number, in the order met
        # Each edge as given (its source vertex, key, count), summed by own_edges(): three
        # arrays of 8 bytes an edge, where a dict per vertex took about 80.
        self._edges: tuple = (array("q"), array("q"), array("q"))
        self.consistent = True  # every member of an orbit has its representative's colour
        # (label, names) -> their vertices counted, and whether they are whole orbits
        # (_ring_edges): the rings of a group share many (a cluster's rings their rail links).
        self.counted: dict[tuple, tuple[Counter, bool | None]] = {}
        # The resources vertices() numbered: (them, each one's orbit number, each orbit's
        # first member, the first orbit's vertex: orbit n's is that + n), for firsts().
        self.resources: tuple = ()
        self.orbit_members: tuple = ()  # (each orbit's first member, its members): firsts()'s

    def vertex(self, kind: str, name: str, colour: tuple, size: int | None = None) -> int:
        rep = self.translation.orbit(name)[0] if size is None else name
        v = self.index.get((kind, rep))
        if v is None:
            v = self.index[(kind, rep)] = len(self.colours)
            self.colours.append(self._colour((kind, *colour)))
            self.sizes.append(self.translation.size(rep) if size is None else size)
        elif self.colours[v] != (kind, *colour):
            self.consistent = False
        return v

    def _colour(self, colour: tuple) -> tuple:
        return self._colours.setdefault(colour, colour)

    def vertices(self, capacities: dict[str, float], links=()) -> "ResourceVertices":
        """A vertex (kind "r", colour: its capacity) for every orbit of resources, in one
        pass, numbered on from those made so far in first-member order (called once, so
        no orbit has one yet); each resource's vertex as a map that looks up the few asked
        (:class:`ResourceVertices`). ``links``: the physical links whose channels ``capacities``
        begin with (Translation.numbers). The resources' orbits are not in :attr:`index`:
        their keys (637,312 at 131,072 GPUs) are let go once every resource is mapped."""
        orbits, keys, first = self.translation.numbers(capacities, links)  # orbits in first-member order
        own = [capacities[name] for name in first]  # each orbit's first's capacity
        if any(map(ne, map(own.__getitem__, orbits), capacities.values())):
            self.consistent = False  # an orbit's members differ in capacity
        base = len(self.colours)
        self.colours.extend([self._colour(("r", c)) for c in own])
        self.sizes.extend(map(self.translation.size, keys))
        self.resources = (capacities, orbits, first, base)
        return ResourceVertices(self, capacities, keys)

    def firsts(self, colour: Sequence[int]) -> dict[str, str]:
        """:func:`_firsts` of the resources :meth:`vertices` numbered, each of the colour
        of its vertex in ``colour``, from their orbits: a class's first is the first
        member of its earliest orbit (orbits are numbered in first-member order) and its
        size its orbits' members, so one pass over the resources makes the map."""
        names, orbits, first, base = self.resources
        colours = colour[base:base + len(first)]  # orbit -> its class's colour
        heads: dict[int, str] = {}
        for n, c in enumerate(colours):
            heads.setdefault(c, first[n])
        sizes: Counter = Counter()
        members = Counter(orbits)
        self.orbit_members = (tuple(first), tuple(members[n] for n in range(len(first))))
        for n, count in members.items():
            sizes[colours[n]] += count
        head = [heads[c] for c in colours]  # orbit -> its class's first
        if min(sizes.values(), default=2) > 1:  # every class of more than one (a ring's)
            return dict(zip(names, map(head.__getitem__, orbits)))
        return {name: head[n] for name, n in zip(names, orbits) if sizes[colours[n]] > 1}

    def edge(self, u: int, v: int, label: tuple, times: int = 1) -> None:
        """``times`` edges of ``u``'s representative (the caller gives each of them once,
        in one call or several)."""
        sources, keys, counts = self._edges
        sources.append(u)
        keys.append(v << 32 | self.labels.setdefault(label, len(self.labels)) << 1)
        counts.append(times)

    def own_edges(self):
        """Each vertex's own edges: (their source vertices, keys, counts) as numpy arrays
        by source then key, each (source, key) once, its count summed. Once: the edges as
        given are let go, each array as it is sorted."""
        import numpy as np  # here: mcdla's start-up does not pay numpy's import

        given = [np.frombuffer(a, dtype=np.int64) for a in self._edges]
        self._edges = None
        order = np.lexsort((given[1], given[0]))
        sources, keys, counts = (given.pop(0)[order] for _ in range(3))
        del order
        first = np.ones(len(keys), dtype=bool)
        first[1:] = (sources[1:] != sources[:-1]) | (keys[1:] != keys[:-1])
        at = np.flatnonzero(first)
        return sources[at], keys[at], np.add.reduceat(counts, at) if len(at) else counts

    def adjacency(self) -> tuple[list[tuple], int] | None:
        """(each vertex's edges, both ways: two parts, its own and those into it, each
        (where each vertex's edges start, their far vertices, their kinds, their counts)
        as numpy arrays; the kinds), or None if an orbit's edges do not spread evenly over
        its members (not an automorphism). An edge's kind is its (label, side) as its key's
        low bits: below 2 labels. The edges into v: each own edge of u's turned round (side
        1), its count times u's orbit's size over v's. Read once: the edges as given and
        the rings' counted names are let go. As arrays an edge both ways is 32 bytes (8.5M
        at 131,072 GPUs); as tuples of ints for the refinement it took 40 and more."""
        import numpy as np

        sources, keys, counts = self.own_edges()
        self.counted = {}  # no edge is added after: the rings' counted names go too
        sizes = np.asarray(self.sizes, dtype=np.int64)
        sources = sources.astype(np.int32)
        far, kinds = (keys >> 32).astype(np.int32), (keys & _SIDE_AND_LABEL).astype(np.int32)
        del keys
        order = np.argsort(far, kind="stable")  # by far vertex
        into = (far[order], sources[order], kinds[order] | 1)  # the far vertex's, from its source
        turned = counts[order] * sizes[into[1]]
        del order
        if (turned % sizes[into[0]]).any():
            return None
        turned //= sizes[into[0]]
        vertices = np.arange(len(self.colours) + 1)
        return [(np.searchsorted(sources, vertices), far, kinds, counts),
                (np.searchsorted(into[0], vertices), into[1], into[2], turned)], 2 * len(self.labels)


class ResourceVertices:
    """A resource -> its orbit's vertex in a quotient, looked up by its orbit's key when
    asked: the quotient of a ring bound by period asks for the resources of one device's
    routes and one period of each ring, and a map of every resource (1.8M on a ring of
    131,072 devices) cost as much as the map of classes the symmetry hands over. Past a
    few lookups (a run whose rings are read whole: a cluster's pipeline stages ask for
    most resources) the map of every resource is made once and read. A name not among
    the resources: KeyError, as a map of them gives."""

    __slots__ = ("_q", "_known", "_left", "_keys", "_numbers")

    def __init__(self, q: Quotient, capacities, keys: list[tuple]) -> None:
        self._q = q
        self._known: dict[str, int] = {}
        self._left = max(_LOOKUPS_BY_ORBIT, len(capacities) // _LOOKUPS_PER_RESOURCE)
        self._keys = keys  # each orbit's key (Translation.numbers), numbered when first asked by one
        self._numbers: dict[tuple, int] | None = None

    def __getitem__(self, name: str) -> int:
        found = self._known.get(name)
        if found is None:
            names, orbits, first, base = self._q.resources
            if name not in names:
                raise KeyError(name)
            self._left -= 1
            if self._left < 0:  # many asked: every resource's vertex, in one pass
                vertex = range(base, base + len(first))  # one int object a vertex, shared by its members
                self._known = dict(zip(names, map(list(vertex).__getitem__, orbits)))
                self._keys = self._numbers = None  # the orbits' keys: read no more
                return self._known[name]
            if self._numbers is None:
                self._numbers = {key: n for n, key in enumerate(self._keys)}
            found = self._known[name] = base + self._numbers[self._q.translation.orbit(name)[0]]
        return found
