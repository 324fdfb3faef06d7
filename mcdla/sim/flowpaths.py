"""A flow network's paths, checked and classified once each (mcdla.sim.flownet): the
constrained resources a path crosses and, with rank symmetry, the classes it crosses, in
order, with the weight of a flow on each (how often it crosses the class, times its
copies, over the class's members).

A ring's phase crosses every channel of a ring (2N of them, and N reduction units):
counted once per path, and not from every channel where the path says how it repeats
(docs/model.md, "Rings counted by period in the run"): a ring bound by period under the
translation whose orbits the classes are unions of crosses each class of one period's q
hops n / q times, and its m reduction units (a reduce-scatter's, each in its rank's
device class, mcdla.sim.training) each class of one period's m / order units order
times; a path that begins a long path counted before (the all-gather's, after the
reduce-scatter's with its reduction units) is counted from it, less the rest.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

__all__ = ["PathClasses", "LONG_PATH"]

# A path longer than this (a ring's phase: 2N channels) is looked up by identity, not
# hashed at every transfer; a ring hands over the same tuple each time (Ring.memo).
LONG_PATH = 64


class PathClasses:
    """Classifies the paths of one flow network: its ``capacities`` (the constrained
    resources, growing as resources are added), ``rep`` (resource -> its class's first),
    ``sizes`` (a class's first -> the members it stands for), ``also`` (a resource -> the
    resources a flow over it loads too) and ``orbits`` (the translation every class is a
    union of orbits of, or None)."""

    def __init__(self, capacities: Mapping[str, float], rep: Mapping[str, str], sizes: Mapping[str, int],
                 also: Mapping[str, tuple[str, ...]], orbits) -> None:
        self._capacities, self._rep, self._sizes, self._also = capacities, rep, sizes, also
        self._orbits = orbits if sizes else None
        # Long paths and their classes' counts, by their first resource (a path that begins
        # another has its first), each list in the order counted: a run counts thousands.
        self._counted: dict[str, list[tuple[tuple[str, ...], Counter]]] = {}
        self._sequences: dict[tuple[str, ...], tuple] = {}  # by_sequence's: a sequence of classes -> its path's number
        self._marked: dict[int, tuple] = {}  # id(path) -> (the path, its period): paths marked by period

    def clear(self) -> None:
        """Forgets the paths counted: a resource was added, which they may cross, or a
        class resized, which changes their weights."""
        self._counted.clear()
        self._sequences.clear()

    def mark(self, path: tuple[str, ...], period: tuple) -> tuple[str, ...]:
        """``path`` (held, so known by identity: a ring's phase, the same tuple each time)
        marked as beginning with a ring's n hops bound by period: ``period`` (its
        translation, q, n, m), hop j in hop j mod q's orbit and none twice (Ring.period),
        and ending with its m reduction units in rank order (0: none), unit j in unit j
        mod (m / order)'s class (each in its device's class, the ranks' period that of
        the hops)."""
        self._marked[id(path)] = (path, period)
        return path

    def _period(self, path: tuple[str, ...]):
        """The period ``path`` was :meth:`mark`-ed with (known by identity), or None."""
        hit = self._marked.get(id(path))
        return hit[1] if hit is not None and hit[0] is path else None

    def by_sequence(self, path: tuple[str, ...], number):
        """``number(path)`` (FlowNetwork._new_path, one copy), once per sequence of the
        classes of ``path``'s constrained resources where :meth:`classify` is a function of
        that sequence alone (its classes in order, how often each, over their sizes): a
        short path, not marked, without a shared NIC, repeating no resource (still checked
        for each). A phase's flows, one per rank or domain, are translates in few sequences."""
        if len(path) > LONG_PATH or self._also or len(set(path)) != len(path) or self._period(path) is not None:
            return number(path)
        constrained = tuple(filter(self._capacities.__contains__, path))
        sequence = tuple(map(self._rep.get, constrained, constrained))
        known = self._sequences.get(sequence)
        if known is None:
            known = self._sequences[sequence] = number(path)
        return known

    def classify(self, path: tuple[str, ...], copies: int, even: bool) -> tuple[tuple[str, ...], tuple | None]:
        """(the constrained resources ``path`` crosses, or with symmetry the classes, in
        order; with symmetry the weight of a flow on each, else None), checked: a ValueError
        (a bug in the caller) for a path that repeats a resource or crosses a shared one
        twice, or ``copies`` that load a class unevenly (``even``). A path :meth:`mark`-ed
        is counted by its period."""
        period = self._period(path)
        if period is not None and (self._also or period[0] is None or period[0] is not self._orbits):
            period = None  # counted as any path: its classes are not known to be unions of the orbits
        elif period is not None and period[3]:
            start, units, _ = _sections(path, period)[2]
            if not all(map(self._rep.__contains__, path[start:start + units])):
                period = (*period[:3], 0)  # units in no class (no device classes handed over): each counted
        longer = self._longer(path) if period is None else None  # a long path counted before that begins it
        if longer is None and not self._apart(path, period):
            raise ValueError(f"a flow's path must not repeat a resource: {path!r}")
        if self._also:
            path = path + tuple(a for r in path for a in self._also.get(r, ()))
            if len(set(path)) != len(path):  # one flow twice through a shared NIC's port
                raise ValueError(f"a flow's path crosses a shared resource twice: {path!r}")
        if not self._sizes:
            return tuple(filter(self._capacities.__contains__, path)), None
        crossed = self._counts(path, longer, period)  # each class crossed, in order, and how often
        weights = tuple(copies * n / self._sizes.get(r, 1) for r, n in crossed.items())
        if even and copies > 1 and any(w != round(w) for w in weights):
            # m flows of a class of ranks cross every member of a resource class equally
            # often; a fraction means the classes are not symmetric: a bug, not an input.
            raise ValueError(f"{copies} copies of a flow on {path[:3]!r}... load a resource class unevenly")
        return tuple(crossed), weights

    def _counts(self, path: tuple[str, ...], longer, period) -> Counter:
        """Each class ``path``'s constrained resources cross (rep.get(r, r): r's class), in
        order, -> how often. By ``period`` (t, q, n): hop j is in hop j mod q's orbit, so in
        its class, and each class of the first q hops is crossed n / q times; every class
        of the first n is first met among the first q, so the order is the whole path's.
        From ``longer`` (a path counted before that begins with ``path``, and its count):
        its count less the rest's. Else counted, and kept if long."""
        caps, rep = self._capacities.__contains__, self._rep.get
        if period is not None:
            counts = Counter()
            for start, count, repeats in _sections(path, period):  # hops, the rest, the units
                head = tuple(filter(caps, path[start:start + count]))
                section = Counter(map(rep, head, head))
                counts.update({r: k * repeats for r, k in section.items()})
            return counts
        if longer is not None:
            rest, counts = tuple(filter(caps, longer[0][len(path):])), Counter(longer[1])
            counts.subtract(map(rep, rest, rest))
            return Counter({r: k for r, k in counts.items() if k})  # the classes of ``path`` alone, in its order
        constrained = tuple(filter(caps, path))
        counts = Counter(map(rep, constrained, constrained))
        if len(path) > LONG_PATH and not self._also:
            self._counted.setdefault(path[0], []).append((path, counts))
        return counts

    def _apart(self, path: tuple[str, ...], period) -> bool:
        """Whether ``path`` repeats no resource. With ``period`` its first n resources
        repeat none (the binding's period check: each of a period's hops in an orbit of
        its own, of more than one member, so in a class); a rest that repeats none and
        meets none of their classes (where one of them would be) repeats none of them."""
        if period is not None:
            (_, q, _), (n, plain, _), (m0, u, _) = _sections(path, period)
            rest, rep = path[n:n + plain] + path[m0:m0 + u], self._rep
            classes = {rep.get(r, r) for r in path[:q]}
            units = {rep.get(r, r) for r in path[m0:m0 + u]}
            # One period's units in distinct orbits (of order members each), so no unit
            # twice; the rest apart from them and the hops.
            if len(set(rest)) == len(rest) and (u == len(path) - m0 or
                                                 len({period[0].orbit(r)[0] for r in path[m0:m0 + u]}) == u) and \
                    not any(rep.get(r, r) in classes for r in rest) and \
                    not any(rep.get(r, r) in units for r in path[n:n + plain]):
                return True
        return len(set(path)) == len(path)

    def _longer(self, path: tuple[str, ...]):
        """(a long path counted before that begins with ``path``, its count), or None;
        such a path repeats no resource, so neither does ``path``."""
        n = len(path)
        if n <= LONG_PATH or self._also or not self._sizes:
            return None
        for longer in self._counted.get(path[0], ()):
            other = longer[0]
            if len(other) >= n and other[0] is path[0] and other[n - 1] is path[-1] and other[:n] == path:
                return longer
        return None


def _sections(path: tuple[str, ...], period: tuple) -> tuple[tuple[int, int, int], ...]:
    """(start, resources read, times each stands for) of ``path``'s three sections under
    ``period`` (t, q, n, m; PathClasses.mark): its n hops, one period of q read, each
    standing for n / q; the rest, read once; its m units, one period of m / order read,
    each standing for order (all read, once each, where m is no whole number of periods)."""
    t, q, n, m = period
    units = m if m % t.order else m // t.order
    return (0, q, n // q), (n, len(path) - m - n, 1), (len(path) - m, units, m // units if units else 0)

