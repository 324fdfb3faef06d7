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

import math
from typing import Hashable, Mapping, Sequence

__all__ = ["max_min_rates"]

# Relative tolerance when deciding that two fair shares are the same bottleneck level.
_TIE = 1e-12


def max_min_rates(
    paths: Mapping[Hashable, Sequence[str]],
    capacities_Bps: Mapping[str, float],
) -> dict[Hashable, float]:
    """The max-min fair rate of every flow in ``paths`` (flow -> resources crossed).

    Resources missing from ``capacities_Bps`` are unconstrained. A flow that crosses
    no constrained resource gets ``math.inf``. Deterministic: iteration follows the
    order of ``paths`` and of each path.
    """
    rates: dict[Hashable, float] = {}
    users: dict[str, list[Hashable]] = {}
    for flow, path in paths.items():
        constrained = False
        for resource in path:
            if resource in capacities_Bps:
                users.setdefault(resource, []).append(flow)
                constrained = True
        if not constrained:
            rates[flow] = math.inf
    remaining = {r: float(capacities_Bps[r]) for r in users}
    unfrozen = {r: len(flows) for r, flows in users.items()}
    while unfrozen:
        level = min(remaining[r] / n for r, n in unfrozen.items())
        level = max(level, 0.0)
        saturated = [r for r, n in unfrozen.items() if remaining[r] / n <= level * (1 + _TIE)]
        for resource in saturated:
            for flow in users[resource]:
                if flow in rates:
                    continue
                rates[flow] = level
                for other in paths[flow]:
                    if other in unfrozen:
                        remaining[other] -= level
                        unfrozen[other] -= 1
                        if unfrozen[other] == 0:
                            del unfrozen[other]
        for resource in saturated:
            unfrozen.pop(resource, None)
    return rates
