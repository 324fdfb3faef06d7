"""A generator's own symmetry: the translation that maps its design onto itself.

A generator knows the regularity of what it writes: MC-DLA's ring of N devices and N
memory-nodes is the same seen from any device (D_i -> D_(i+1), M_i -> M_(i+1)). It hands
that to the run as a *translation*: per node-name prefix, the index step one
translation moves a node by (``{"D": 1, "M": 1}``; a prefix not named stays put), within
blocks of a prefix's nodes (by default one block of all of them; a pipeline run shifts
the nodes within each stage's block, docs/performance.md). Its powers form a cyclic group
of ``order`` elements, and every name (node, channel
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

import itertools
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from mcdla.hw.network import channel_id

__all__ = ["NodeCells", "Translation"]

_NODE = re.compile(r"([A-Z]+)(\d+)$")
_SEPARATORS = re.compile(r"([>/:])")  # channel A>B:k, port M0/D0 or CPU0/mem


class Translation:
    """The cyclic group a generator's translation generates, over the design's names."""

    __slots__ = ("order", "_nodes", "_steps", "_blocks", "_next")

    def __init__(self, order: int, nodes: dict[str, tuple[str, int]], steps: dict[str, int],
                 blocks: dict[str, int]) -> None:
        self.order = order
        # _blocks: each prefix's block, the nodes one translation moves around in
        # (node i stays in its block: i - i % block .. i - i % block + block - 1).
        self._nodes, self._steps, self._blocks = nodes, steps, blocks
        self._next: dict[str, str] | None = None  # each moving node -> the node one translation on

    @staticmethod
    def of(names: Iterable[str], steps: Mapping[str, int],
           blocks: Mapping[str, int] | None = None) -> "Translation | None":
        """The translation moving ``steps``' prefixes over the nodes ``names`` (within
        ``blocks`` of each prefix's nodes; None: one block of all), or None if it is no
        group of order > 1 (a prefix's nodes not a whole number of blocks, a block not
        of whole steps, or prefixes that come back to the start after different numbers
        of steps)."""
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
        sizes = {p: (blocks or {}).get(p, n) for p, n in counts.items()}
        orders = {sizes.get(p, 0) // s for p, s in steps.items() if s > 0}
        if len(orders) != 1 or counts != top or any(sizes.get(p, 0) % s for p, s in steps.items() if s > 0) \
                or any(n % sizes[p] for p, n in counts.items()):
            return None
        order = orders.pop()
        return Translation(order, nodes, dict(steps), sizes) if order > 1 else None

    def _move(self, token: str, times: int) -> str:
        found = self._nodes.get(token)
        if found is None:
            return token
        prefix, index = found
        block = self._blocks[prefix]
        return f"{prefix}{index - index % block + (index % block + times * self._steps[prefix]) % block}"

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
            step, block = self._steps[found[0]], self._blocks[found[0]]
            at = found[1] % block
            return ((found[0], found[1] - at + at % step),), at // step
        src, arrow, rest = name.partition(">")
        if arrow:  # a channel, A>B:k
            dst, colon, k = rest.rpartition(":")
            if colon:
                return self._key((src, ">", dst, ":", k))
        return self._key(_SEPARATORS.split(name))

    def keys(self, names) -> dict[str, tuple]:
        """Each of ``names`` -> its orbit's key (as :meth:`orbit`; :meth:`numbers`): the
        tests' reference for :meth:`numbers`, which the package uses."""
        numbers, keys, _ = self.numbers(names)
        return dict(zip(names, map(keys.__getitem__, numbers)))

    def numbers(self, names, links=()) -> tuple[list[int], list[tuple], list[str]]:
        """(each of ``names``' orbit's number, orbits numbered in first-member order; each
        orbit's key, as :meth:`orbit`; each orbit's first member), channels in one tight
        pass: a ring of 131,072 devices has 1.6M of them. Parallel channels of a pair
        (``A>B:k``) share their pair's parse, and the pairs of one orbit of pairs their
        numbers by ``k``: a channel costs a split and two lookups, and no key is built or
        hashed per name. ``links``: the physical links (a, b, type, count) whose channels
        ``names`` begin with, in mcdla.hw.wiring.add_links' order (each link's, k by k,
        a -> b then b -> a); where no pair has two links, those channels are numbered per
        link, none of their names read (:meth:`_link_numbers`)."""
        out: list[int] = []
        keys: list[tuple] = []
        firsts: list[str] = []
        number: dict[tuple, int] = {}
        heads: dict[str, tuple] = {}  # "A>B" -> (its pair orbit's key's first four parts, k -> number)
        pairs: dict[tuple, tuple] = {}  # those parts -> (them, k -> number): one per orbit of pairs

        def numbered(key: tuple, name: str) -> int:
            n = number.get(key)
            if n is None:
                n = number[key] = len(keys)
                keys.append(key)
                firsts.append(name)
            return n

        done = self._link_numbers(links, out, numbered, pairs) if links else 0
        for name in itertools.islice(names, done, None):
            head, colon, k = name.rpartition(":")
            known = heads.get(head) if colon else None
            if known is None:
                src, arrow, rest = name.partition(">")
                if not arrow:  # a port, M0/D0 or CPU0/mem
                    out.append(numbered(self._port_key(name), name))
                    continue
                dst, colon, k = rest.rpartition(":")
                parts = self._pair_parts(src, dst) if colon else None
                if parts is None:
                    out.append(numbered(self.orbit(name)[0], name))
                    continue
                known = heads[head] = pairs.setdefault(parts, (parts, {}))
            n = known[1].get(k)
            if n is None:
                n = known[1][k] = numbered((*known[0], k), name)
            out.append(n)
        return out, keys, firsts

    def _pair_parts(self, src: str, dst: str) -> tuple | None:
        """The first four parts of the orbit key of the channels ``src`` -> ``dst``
        (:meth:`orbit`'s, without the link index), or None if ``src`` stays put."""
        a = self._nodes.get(src)
        if a is None:
            return None
        p, i = a
        s, block = self._steps[p], self._blocks[p]
        at = i % block
        b = self._nodes.get(dst)
        return ((p, i - at + at % s), ">", dst if b is None else
                (b[0], _back(b[1], at // s * self._steps[b[0]], self._blocks[b[0]])), ":")

    def _link_numbers(self, links, out: list[int], numbered, pairs: dict) -> int:
        """:meth:`numbers` of the channels of ``links`` (appended to ``out``), link by
        link: where no pair has two links, a link's channels are k = 0 .. count - 1 each
        way, so a link's numbers follow from its two pairs' orbits and its count (the
        links of one orbit of links share them). The channels numbered: 0 (none) where
        some pair has two links."""
        if len({(a, b) if a < b else (b, a) for a, b, _, _ in links}) != len(links):
            return 0
        made: dict[tuple, tuple[int, ...]] = {}  # a link's two pair orbits' parts and count -> its numbers
        nodes, steps, blocks = self._nodes, self._steps, self._blocks
        for a, b, _, count in links:
            na, nb = nodes.get(a), nodes.get(b)
            key = None
            if na is not None and nb is not None:  # both move: _pair_parts of both ways, flat, inline
                (p, i), (r, j) = na, nb
                sp, bp, sr, br = steps[p], blocks[p], steps[r], blocks[r]
                at, bt = i % bp, j % br
                key = (p, i - at + at % sp, r, j - bt + (bt - at // sp * sr) % br,
                       j - bt + bt % sr, i - at + (at - bt // sr * sp) % bp, count)
                found = made.get(key)
                if found is not None:
                    out.extend(found)
                    continue
            found = []
            ways = [(src, dst, self._pair_parts(src, dst)) for src, dst in ((a, b), (b, a))]
            for k in range(count):
                for src, dst, parts in ways:
                    name = channel_id(src, dst, k)
                    if parts is None:
                        found.append(numbered(self.orbit(name)[0], name))
                        continue
                    known = pairs.setdefault(parts, (parts, {}))[1]
                    n = known.get(str(k))
                    if n is None:
                        n = known[str(k)] = numbered((*parts, str(k)), name)
                    found.append(n)
            if key is not None:
                made[key] = tuple(found)
            out.extend(found)
        return len(out)

    def _port_key(self, name: str) -> tuple:
        """:meth:`orbit`'s key of a port ``name`` (``M0/D0``; any other name through :meth:`orbit`)."""
        node, slash, tail = name.partition("/")
        a = self._nodes.get(node)
        if a is None or not slash or "/" in tail or ":" in tail:
            return self.orbit(name)[0]
        b, s, block = self._nodes.get(tail), self._steps[a[0]], self._blocks[a[0]]
        at = a[1] % block
        return ((a[0], a[1] - at + at % s), "/", tail if b is None else
                (b[0], _back(b[1], at // s * self._steps[b[0]], self._blocks[b[0]])))

    def period(self, cycle) -> int | None:
        """The hops of one period of ``cycle`` (a ring of nodes, closed): ``len // order``
        when one translation carries the cycle onto itself rotated (so hop j and hop
        j mod period are one orbit of hops) and each hop of a period is in an orbit of
        its own of ``order`` members (so the ring crosses no pair twice); else None.
        mcdla.hw.binding then binds one period and repeats it."""
        cycle, length, order = list(cycle), len(cycle), self.order
        start = next((j for j, n in enumerate(cycle) if n in self._nodes), None)
        if length % order or start is None:
            return None
        if self._next is None:  # made once: every ring's nodes are then looked up, not formatted
            self._next = {n: self._move(n, 1) for n in self._nodes}
        moved = list(map(self._next.get, cycle, cycle))  # a node that stays put: itself
        try:
            by = (cycle.index(moved[start]) - start) % length
        except ValueError:
            return None
        q = length // order
        if math.gcd(by, length) != q or moved != cycle[by:] + cycle[:by]:
            return None
        keys = [self.orbit(channel_id(a, b, 0))[0] for a, b in zip(cycle[:q], cycle[1:q + 1] + cycle[:1])]
        return q if len(set(keys)) == q and all(self.size(k) == order for k in keys) else None

    def block(self, name: str) -> int | None:
        """The block node ``name`` moves within (its index over the block's size), or None
        for a name no translation moves."""
        found = self._nodes.get(name)
        return None if found is None else found[1] // self._blocks[found[0]]

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
                times = index % self._blocks[prefix] // step
            key.append((prefix, _back(index, times * step, self._blocks[prefix])))
        return tuple(key), times or 0

    def size(self, key: tuple) -> int:
        """The members of the orbit of ``key``: the order, or 1 for a name no
        translation moves."""
        return self.order if any(isinstance(part, tuple) for part in key) else 1


@dataclass(frozen=True)
class NodeCells:
    """A cluster's node as a cell, as the cluster generator hands it over: prefix -> one
    node's nodes of it (numbered node by node: D, FS, SW, CPU, M), and the nodes under one
    leaf's switches (all of them on rails). The switches above the nodes (SP) stay put."""

    per_node: Mapping[str, int]
    leaf_nodes: int

    def within_blocks(self, names: Iterable[str], block_nodes: int) -> "Translation | None":
        """The translation moving every node two on within its block of ``block_nodes``
        (a pipeline stage's, docs/performance.md): node s B + j -> s B + (j + 2) mod B,
        with its devices and switches. Two, not one: the derived rings snake, so a node's
        ring is its neighbour's reversed. None unless the leaves hold whole blocks and a
        block is an even number of nodes, at least 4 (Translation.of refuses an odd block,
        whose nodes two steps do not cover, and gives a block of 2 no translation)."""
        if self.leaf_nodes % block_nodes:
            return None
        return Translation.of(names, {p: 2 * n for p, n in self.per_node.items()},
                              {p: block_nodes * n for p, n in self.per_node.items()})

    def within_stages(self, names: Iterable[str], devices: int) -> "Translation | None":
        """:meth:`within_blocks` over all the nodes of ``devices`` (None unless whole
        nodes): it binds a cluster's rings by period (mcdla.hw.binding: the derived rings
        snake, so they repeat every two nodes; only when one leaf holds every node, rails;
        the topology hands over no translation, docs/model.md "Rings bound by period")."""
        block = self.per_node["D"]
        return self.within_blocks(names, devices // block) if devices % block == 0 else None

    def within_stage_leaves(self, names: Iterable[str], devices: int, stages: int) -> "Translation | None":
        """A run's stage shift (mcdla.sim.training): every node two on within its
        pipeline stage (``devices`` cut into ``stages`` blocks of whole nodes) where a
        leaf holds whole stages; where a stage holds whole leaves (a three-tier fat tree's
        stages of several leaves: Llama 3 405B's 64 nodes a stage on leaves of 32), within
        its leaf instead, which keeps the stages (unions of leaves), the leaves and
        everything above them. None where neither holds (:meth:`within_blocks`)."""
        block = stages * self.per_node["D"]
        if devices % block:
            return None
        stage_nodes = devices // block
        if self.leaf_nodes % stage_nodes and stage_nodes % self.leaf_nodes == 0:
            stage_nodes = self.leaf_nodes  # stages of whole leaves: within each leaf
        return self.within_blocks(names, stage_nodes)


def _back(index: int, by: int, block: int) -> int:
    """Node ``index`` moved ``by`` indices back within its block of ``block`` nodes."""
    at = index % block
    return index - at + (at - by) % block
