"""A flow network's resources (mcdla.sim.flownet): set up per class, or added one by one.

With rank symmetry a 131,072-device ring's network has 1.8M resources in a few dozen
classes, every one of them listed in the classes in the resources' own order. The
network keeps each class's first (its arrays hold one entry per class) and a map of
every resource's capacity. Added one by one, each resource costs a lookup of its class
in a map of 1.8M names (memory-bound at this size: about 0.5 us each, docs/performance.md);
here the same map and the same firsts, in the same order, come from passes that read
the two maps in their order and look up only the few firsts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import islice
from operator import eq, ne

__all__ = ["add_each", "per_class"]


def per_class(capacities: Mapping[str, float], rep: Mapping[str, str]) -> tuple[dict[str, float], list[str]] | None:
    """(every resource's capacity, the resources the network keeps in the order it meets
    them) as adding ``capacities`` one by one under ``rep`` (a resource -> its class's
    first) gives them, or None where this does not hold and they must be added so: some
    capacity is not a finite float > 0, some resource is in no class or the classes list
    them in another order (``rep`` lists ``capacities`` first, then others), a class's
    first is not the first of its members met, or a member's capacity is not its first's."""
    n = len(capacities)
    values = capacities.values()
    if n == 0 or len(rep) < n or set(map(type, values)) != {float} or not all(map((0.0).__lt__, values)) \
            or math.inf in values or not all(map(eq, islice(rep, n), capacities)):
        return None
    firsts = list(islice(rep.values(), n))
    earliest = dict(zip(reversed(firsts), reversed(list(capacities))))  # each class -> its first member met
    if any(first != member for first, member in earliest.items()):
        return None
    try:
        if any(map(ne, map(capacities.__getitem__, firsts), values)):
            return None
    except KeyError:  # a class's first that is no resource here
        return None
    return dict(capacities), list(dict.fromkeys(firsts))


def add_each(items, caps: dict[str, float], rep: Mapping[str, str], index: dict[str, int], names: list[str]) -> bool:
    """Adds each (resource, capacity) of ``items`` to ``caps`` and each class's first not
    kept yet to ``names`` (and ``index``, its position), one by one; whether any was
    added. A ValueError (a bug in the caller) for a capacity not > 0, a resource given two
    capacities, or a class whose members differ in capacity; an infinite capacity is no
    constraint (absent)."""
    added = False
    for resource, capacity_Bps in items:
        capacity_Bps = float(capacity_Bps)
        if not capacity_Bps > 0:  # NaN fails too
            raise ValueError(f"capacity of {resource!r} must be > 0, got {capacity_Bps!r}")
        if capacity_Bps == math.inf:
            continue  # unbounded: same as absent
        known = caps.get(resource)
        if known is not None:
            if known != capacity_Bps:
                raise ValueError(f"resource {resource!r} already has capacity {known!r}, not {capacity_Bps!r}")
            continue
        caps[resource] = capacity_Bps
        first = rep.get(resource, resource)
        if first not in index:  # the network keeps a class's first resource
            if caps.setdefault(first, capacity_Bps) != capacity_Bps:
                raise ValueError(f"resource {resource!r} and {first!r} are in one class but differ in capacity")
            index[first] = len(names)
            names.append(first)
        elif caps[first] != capacity_Bps:
            raise ValueError(f"resource {resource!r} and {first!r} are in one class but differ in capacity")
        added = True
    return added
