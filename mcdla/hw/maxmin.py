"""Max-min fair sharing of bandwidth among flows (progressive filling).

Every flow crosses a set of resources (directed channels, memory ports), each with
a capacity in bytes/s. Max-min fairness gives each flow the largest rate such that
no flow can get more without taking from one that has less: raise all rates
together, freeze the flows of a resource when it saturates, and continue with the
rest (Bertsekas and Gallager, *Data Networks*, Section 6.5.2).

This module is pure: the flow network of :mod:`mcdla.sim.flownet` calls it whenever
a flow starts or ends, and topology summaries call it to state collective and
offload bandwidths without running a simulation.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Hashable, Iterable, Mapping, Sequence

__all__ = ["max_min_rates", "caps_on", "UNIT_WEIGHTS"]

UNIT_WEIGHTS = itertools.repeat(1)  # the weights of an unweighted flow

# Relative tolerance when deciding that two fair shares are the same bottleneck level.
_TIE = 1e-12


def caps_on(paths: Iterable[Sequence[Hashable]], *maps: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """The capacities of the resources on ``paths``, each from the first of ``maps`` that
    has it (as a merge of them, the later over the earlier, gives it in reverse), as a
    dict: what :func:`max_min_rates` reads of such a merge, without merging every
    capacity (5.3M at 131,072 GPUs) for a solve over a collective's paths."""
    found: dict[Hashable, float] = {}
    for path in paths:
        for resource in path:
            if resource not in found:
                for capacities in maps:
                    capacity = capacities.get(resource)
                    if capacity is not None:
                        found[resource] = capacity
                        break
    return found


def _users(paths, capacities_Bps, weights):
    """(rates of the flows no constrained resource limits: inf; resource -> its flows, in
    first-use order; resource -> the summed weights of its flows, when weighted)."""
    rates: dict[Hashable, float] = {}
    users: dict[str, list[Hashable]] = {}
    demand: dict[str, float] = {}
    for flow, path in paths.items():
        constrained = False
        ws = weights[flow] if weights is not None else None
        for k, resource in enumerate(path):
            if resource in capacities_Bps:
                users.setdefault(resource, []).append(flow)
                if ws is not None:
                    demand[resource] = demand.get(resource, 0) + ws[k]
                constrained = True
        if not constrained:
            rates[flow] = math.inf
    return rates, users, demand


def max_min_rates(
    paths: Mapping[Hashable, Sequence[str]],
    capacities_Bps: Mapping[str, float],
    weights: Mapping[Hashable, Sequence[float]] | None = None,
) -> dict[Hashable, float]:
    """The max-min fair rate of every flow in ``paths`` (flow -> resources crossed).

    Resources missing from ``capacities_Bps`` are unconstrained. A flow that crosses
    no constrained resource gets ``math.inf``. Deterministic: iteration follows the
    order of ``paths`` and of each path.

    ``weights`` (flow -> one number per resource of its path) makes a flow load a
    resource with ``weight x rate``: a flow that stands for several identical flows,
    on a resource that stands for a class of identical resources (rank symmetry,
    :mod:`mcdla.hw.symmetry`), loads one resource of the class with the flows of the
    class that cross it. Without weights every weight is 1, and the arithmetic is the
    unweighted one operation for operation.
    """
    rates, users, demand = _users(paths, capacities_Bps, weights)
    # Progressive filling. A resource's fair share (remaining capacity / unfrozen
    # users) never decreases as flows freeze at the current level, so a heap of
    # shares computed earlier holds lower bounds: a popped share that is still
    # current is the minimum, and a stale one is pushed back with its new value.
    # This keeps the flow network's frequent calls cheap (no scan of every
    # resource per level). Ties break by first use, never by name.
    # ``unfrozen``: a resource's unfrozen weight (its unfrozen flows, unweighted);
    # ``left``: its unfrozen flows, which say when it is done whatever the weights' rounding.
    remaining: dict[str, float] = {}
    unfrozen: dict[str, float] = {}
    left: dict[str, int] = {}
    heap: list[tuple[float, int, str]] = []
    for position, (resource, flows) in enumerate(users.items()):
        remaining[resource] = float(capacities_Bps[resource])
        unfrozen[resource] = demand[resource] if weights is not None else len(flows)
        left[resource] = len(flows)
        heap.append((remaining[resource] / unfrozen[resource], position, resource))
    heapq.heapify(heap)
    while heap:
        key, position, resource = heapq.heappop(heap)
        if resource not in unfrozen:
            continue
        share = remaining[resource] / unfrozen[resource]
        if share > key * (1 + _TIE):
            heapq.heappush(heap, (share, position, resource))
            continue
        level = max(share, 0.0)
        threshold = level * (1 + _TIE)
        saturated = [resource]
        del unfrozen[resource]
        while heap and heap[0][0] <= threshold:
            key, position, other = heapq.heappop(heap)
            if other not in unfrozen:
                continue
            share = remaining[other] / unfrozen[other]
            if share <= threshold:
                saturated.append(other)
                del unfrozen[other]
            else:
                heapq.heappush(heap, (share, position, other))
        for res in saturated:
            for flow in users[res]:
                if flow in rates:
                    continue
                rates[flow] = level
                # Unweighted, every weight is 1: level * 1 is level, to the bit.
                for other, w in zip(paths[flow], UNIT_WEIGHTS if weights is None else weights[flow]):
                    if other in unfrozen:
                        remaining[other] -= level * w
                        unfrozen[other] -= w
                        left[other] -= 1
                        if left[other] == 0:
                            del unfrozen[other]
    return rates
