"""A collective's message split over its rings (mcdla.sim.collectives): each ring's share
in proportion to its max-min fair rate with every ring active on idle links, so that the
rings end together as NCCL's channels do; evenly where the rates are equal.

Rings bound by period (``Ring.period``) are read by period where that settles the
split: under the translation whose orbits are alike in capacity (``orbits``: the rank
symmetry's, whose classes are unions of its orbits and each alike in capacity), a
ring's least capacity is its first period's hops' (the other hops are their
translates), so the 131,072-device ring's 1.57M hops are not read to find that its
rings split evenly (docs/performance.md).
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from itertools import chain, repeat
from typing import TYPE_CHECKING, Mapping, Sequence

from mcdla.hw.network import Ring

if TYPE_CHECKING:
    from mcdla.sim.flownet import FlowNetwork

__all__ = ["ring_fractions", "ring_shares", "net_fractions"]


def ring_fractions(rings: Sequence[Ring], capacities_Bps: Mapping[str, float] | None,
                   also: Mapping[str, tuple[str, ...]] | None = None, orbits=None) -> tuple[float, ...] | None:
    """Each ring's fraction of a collective's message: in proportion to the ring's
    max-min fair rate over its channels (and the shared NIC ports ``also`` names) with
    every ring active on idle links, so that the rings end together; None where the
    rates are equal (or ``capacities_Bps`` is None): evenly.

    NCCL splits a collective evenly over channels that its topology search spreads
    evenly over the NICs (``src/graph/search.cc``: each channel takes its bandwidth from
    a NIC, so every NIC holds as many), and its channels share the GPU's NVLinks; mcdla's
    rings are one per link, so rings across machines can share NICs unevenly (18 rings
    over 8 NICs on DGX H100). Splitting by rate lets each ring carry what its links give
    it, as NCCL's even channels do; rings of equal rate (every paper design, one
    machine, one GPU per machine) split evenly, exactly as before. ``orbits``: a
    translation whose orbits are alike in capacity (the rank symmetry's), under which
    rings bound by period are read by period (module docstring)."""
    if capacities_Bps is None or len(rings) < 2:
        return None
    from mcdla.hw.maxmin import max_min_rates

    extra = also or {}
    if not extra and _apart_by_period(rings, capacities_Bps, orbits):
        return None
    paths = {r.name: r.channels + tuple(chain.from_iterable(map(extra.get, r.channels, repeat(()))))
             for r in rings}  # a channel's shared NIC ports after the channels (C-level: 196,608 at 16,384)
    if _apart_and_alike(paths, capacities_Bps):
        return None
    rates = max_min_rates(paths, capacities_Bps)
    each = [rates[r.name] for r in rings]
    if min(each) == max(each) or not all(map(math.isfinite, each)):
        return None
    total = sum(each)
    return tuple(x / total for x in each)


def _apart_and_alike(paths: Mapping[str, Sequence[str]], capacities_Bps: Mapping[str, float]) -> bool:
    """True when no constrained resource lies on two of ``paths`` and every path's
    bottleneck share (a resource's capacity over the times the path crosses it) is the
    same: max-min fairness then gives each path exactly that share, all equal, so the
    split is even, found in one pass instead of progressive filling (the 6 rings of a
    16,384-device ring cross 196,608 channels)."""
    crossed = [Counter(filter(capacities_Bps.__contains__, path)) for path in paths.values()]
    if not all(crossed) or len(set().union(*crossed)) != sum(map(len, crossed)):
        return False  # a path with no constrained resource, or a resource on two paths
    shares = {min(map(capacities_Bps.__getitem__, c)) if c.total() == len(c)  # each crossed once
              else min(capacities_Bps[r] / n for r, n in c.items()) for c in crossed}
    return len(shares) == 1


def _apart_by_period(rings: Sequence[Ring], capacities_Bps: Mapping[str, float], orbits=None) -> bool:
    """:func:`_apart_and_alike` of rings bound by period (``Ring.period``) under one
    translation, True without hashing every channel: a ring's hops are whole orbits of its
    period's hops, each met once (mcdla.hw.binding's period check), so rings whose
    periods' orbits differ share no channel and none crosses one twice; each ring's
    bottleneck share is then its least capacity: its channels' read in one C-level pass,
    or its first period's when the translation is ``orbits`` (alike in capacity along
    its orbits: each other hop is the translate of one of them). False when that does
    not settle it (:func:`_apart_and_alike` then decides)."""
    periods = [getattr(r, "period", ())  # () where not bound by period, or ring-like without one
               for r in rings]
    t = periods[0][0] if periods[0] else None
    if t is None or any(not p or p[0] is not t or len(r.channels) < 2 for r, p in zip(rings, periods)):
        return False
    heads = [r.channels[:p[1]] for r, p in zip(rings, periods)]  # each ring's first period's hops
    keys = [t.orbit(c)[0] for head in heads for c in head]
    if len(set(keys)) != len(keys):
        return False
    try:
        shares = {min(map(capacities_Bps.__getitem__, head if t is orbits else r.channels))
                  for r, head in zip(rings, heads)}
    except KeyError:  # an unconstrained channel
        return False
    return len(shares) == 1


def ring_shares(size_bytes: float, rings: Sequence[Ring], fractions: Sequence[float] | None) -> tuple[float, ...]:
    """Each ring's bytes of a ``size_bytes`` message (:func:`ring_fractions`; None: evenly,
    ``size_bytes / len(rings)`` each)."""
    if fractions is None:
        return tuple(size_bytes / len(rings) for _ in rings)
    return tuple(size_bytes * f for f in fractions)


# A run's network -> ring names -> their fractions: solved once per ring set and run.
_FRACTIONS: "weakref.WeakKeyDictionary[FlowNetwork, dict]" = weakref.WeakKeyDictionary()


def net_fractions(net: "FlowNetwork", rings: Sequence[Ring]) -> tuple[float, ...] | None:
    """:func:`ring_fractions` of ``rings`` on ``net``'s capacities, solved once per ring
    set and network."""
    kept = _FRACTIONS.setdefault(net, {})
    names = tuple(r.name for r in rings)
    if names not in kept:
        kept[names] = ring_fractions(rings, net.capacities_Bps, net.also, net.orbits)
    return kept[names]
