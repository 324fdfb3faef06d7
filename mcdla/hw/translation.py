"""A generator's own symmetry: the translation that maps its design onto itself.

A generator knows the regularity of what it writes: MC-DLA's ring of N devices and N
memory-nodes is the same seen from any device (D_i -> D_(i+1), M_i -> M_(i+1)). It hands
that to the run as a *translation*: per node-name prefix, the index step one
translation moves a node by (``{"D": 1, "M": 1}``; a prefix not named stays put). Its
powers form a cyclic group of ``order`` elements, and every name (node, channel
``A>B:k``, port ``M0/D0``) belongs to an orbit: the names it is moved to.

:mod:`mcdla.hw.symmetry` refines the quotient by these orbits (one vertex each,
edges counted with their multiplicity) instead of every vertex of the design, and
needs only the routes of one device per orbit. The orbits of a group of automorphisms
are an equitable partition, so colour refinement on the quotient gives exactly the
classes it gives on the whole graph (the coarsest equitable partition finer than the
initial colours lies above every equitable one). The translation must therefore be an
automorphism of what the run's flows depend on; what a run adds (the rings bound at
load) is checked where it is used, and tests hold the classes equal to the whole
refinement's on small instances of every generator that hands one over.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

__all__ = ["Translation"]

_NODE = re.compile(r"([A-Z]+)(\d+)$")
_SEPARATORS = re.compile(r"([>/:])")  # channel A>B:k, port M0/D0 or CPU0/mem


class Translation:
    """The cyclic group a generator's translation generates, over the design's names."""

    __slots__ = ("order", "_nodes", "_steps", "_counts")

    def __init__(self, order: int, nodes: dict[str, tuple[str, int]], steps: dict[str, int],
                 counts: dict[str, int]) -> None:
        self.order = order
        self._nodes, self._steps, self._counts = nodes, steps, counts

    @staticmethod
    def of(names: Iterable[str], steps: Mapping[str, int]) -> "Translation | None":
        """The translation moving ``steps``' prefixes over the nodes ``names``, or None if
        it is no group of order > 1 (a prefix's nodes not a whole number of steps, or
        prefixes that come back to the start after different numbers of steps)."""
        nodes: dict[str, tuple[str, int]] = {}
        counts: dict[str, int] = {}  # a prefix's nodes, numbered 0 .. count-1
        top: dict[str, int] = {}
        for name in names:
            found = _NODE.match(name)
            if found and steps.get(found.group(1), 0) > 0:
                prefix, index = found.group(1), int(found.group(2))
                nodes[name] = (prefix, index)
                counts[prefix] = counts.get(prefix, 0) + 1
                top[prefix] = max(top.get(prefix, 0), index + 1)
        orders = {counts.get(p, 0) // s for p, s in steps.items() if s > 0}
        if len(orders) != 1 or counts != top or any(counts.get(p, 0) % s for p, s in steps.items() if s > 0):
            return None
        order = orders.pop()
        return Translation(order, nodes, dict(steps), counts) if order > 1 else None

    def _move(self, token: str, times: int) -> str:
        found = self._nodes.get(token)
        if found is None:
            return token
        prefix, index = found
        return f"{prefix}{(index + times * self._steps[prefix]) % self._counts[prefix]}"

    def shift(self, name: str, times: int) -> str:
        """``name`` moved ``times`` translations on."""
        if times == 0:
            return name
        if name in self._nodes:
            return self._move(name, times)
        return "".join(self._move(part, times) for part in _SEPARATORS.split(name))

    def orbit(self, name: str) -> tuple[tuple, int]:
        """(the orbit's key, the translations from its representative to ``name``): the
        representative is the member whose first moving node has the smallest index;
        the key is its name's parts, each moving node as (prefix, index)."""
        found = self._nodes.get(name)
        if found is not None:  # a node: the most asked, kept fast
            step = self._steps[found[0]]
            return ((found[0], found[1] % step),), found[1] // step
        src, arrow, rest = name.partition(">")
        if arrow:  # a channel, A>B:k
            dst, colon, k = rest.rpartition(":")
            if colon:
                return self._key((src, ">", dst, ":", k))
        return self._key(_SEPARATORS.split(name))

    def keys(self, names) -> dict[str, tuple]:
        """Each of ``names`` -> its orbit's key (as :meth:`orbit`), channels in one tight
        pass: a cluster has a million of them."""
        nodes, steps, counts = self._nodes, self._steps, self._counts
        out = {}
        for name in names:
            src, arrow, rest = name.partition(">")
            if not arrow:  # a port, M0/D0 or CPU0/mem
                node, slash, tail = name.partition("/")
                a = nodes.get(node)
                if a is None or not slash or "/" in tail or ":" in tail:
                    out[name] = self.orbit(name)[0]
                    continue
                b, s = nodes.get(tail), steps[a[0]]
                out[name] = ((a[0], a[1] % s), "/", tail if b is None else
                             (b[0], (b[1] - a[1] // s * steps[b[0]]) % counts[b[0]]))
                continue
            dst, colon, k = rest.rpartition(":")
            a = nodes.get(src) if colon else None
            if a is None:
                out[name] = self.orbit(name)[0]
                continue
            p, i = a
            s = steps[p]
            b = nodes.get(dst)
            if b is None:
                out[name] = ((p, i % s), ">", dst, ":", k)
            else:
                out[name] = ((p, i % s), ">", (b[0], (b[1] - i // s * steps[b[0]]) % counts[b[0]]), ":", k)
        return out

    def cell(self, devices) -> tuple[str, ...]:
        """The representatives among ``devices``: one of each orbit, in their order."""
        return tuple(d for d in devices if self.orbit(d)[1] == 0)

    def apart(self, resources, exists) -> bool:
        """Whether ``resources`` (those a cell's flows cross) and their translates are
        pairwise disjoint: each is moved onto a resource that ``exists``, and no two are
        in one orbit. Then the flows of a cell and of each of its translates share no
        resource."""
        keys = [self.orbit(r)[0] for r in resources]
        return len(set(keys)) == len(keys) and all(self.size(k) > 1 for k in keys) and \
            all(exists(self.shift(r, 1)) for r in resources)

    def _key(self, parts) -> tuple[tuple, int]:
        times = None
        key = []
        for part in parts:
            found = self._nodes.get(part)
            if found is None:
                key.append(part)
                continue
            prefix, index = found
            step = self._steps[prefix]
            if times is None:
                times = index // step
            key.append((prefix, (index - times * step) % self._counts[prefix]))
        return tuple(key), times or 0

    def size(self, key: tuple) -> int:
        """The members of the orbit of ``key``: the order, or 1 for a name no
        translation moves."""
        return self.order if any(isinstance(part, tuple) for part in key) else 1
