"""A work budget checked before a run starts: a few YAML lines must not ask for hours.

The simulator's cost is its events times the cost of each: a device's layer costs a
few tens of events (compute, memory reservations, offload and prefetch flows; 10-45
per device and layer measured over the shipped workloads, hence :data:`EVENTS_PER_LAYER`
= 48 as an upper estimate), and every flow start or end re-solves the max-min rates
of the flows it touches, whose paths span up to a whole collective ring. So the
estimate is ``events x longest ring`` in channel updates. The default limit lets every
shipped experiment run (the largest, 8 devices, is near 1e6) and a 1,024-device ring
of ResNet-34 (about 6e9, a minute or two), and refuses what would run for many
minutes and gigabytes (a 4,096-device ring with a model-parallel GRU simulated rank by
rank, ``execution.exact``: about 1e11). With rank symmetry (mcdla.hw.symmetry) the
devices counted are the ones simulated, one per class of equivalent devices.
``MCDLA_WORK_BUDGET`` or ``mcdla sim --budget`` raises it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mcdla.errors import InputError

__all__ = ["EVENTS_PER_LAYER", "DEFAULT_BUDGET", "WorkEstimate", "estimate_work", "check_budget",
           "budget_from_env"]

EVENTS_PER_LAYER = 48
DEFAULT_BUDGET = 1e10
_ENV = "MCDLA_WORK_BUDGET"


@dataclass(frozen=True)
class WorkEstimate:
    """What a run will cost, estimated from its inputs alone."""

    devices: int  # the devices simulated (one per class of equivalent devices)
    layers: int
    events: float
    longest_ring: int  # channels of the longest directed ring (1 with none)

    @property
    def work(self) -> float:
        return self.events * self.longest_ring


def estimate_work(topology, workload, simulated: int | None = None) -> WorkEstimate:
    """``simulated``: the devices simulated (default: every device of ``topology``)."""
    devices = len(topology.devices) if simulated is None else simulated
    layers = len(workload.layers)
    longest = max((len(r.channels) for r in topology.rings), default=1)
    return WorkEstimate(devices, layers, float(EVENTS_PER_LAYER * devices * layers), max(1, longest))


def budget_from_env() -> float:
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET
    try:
        value = float(raw)
    except ValueError:
        raise InputError("expected a number of channel updates, e.g. 1e11", key=_ENV) from None
    if not value > 0:
        raise InputError("expected a positive number", key=_ENV)
    return value


def check_budget(estimate: WorkEstimate, budget: float | None = None) -> None:
    """Refuses a run whose estimated work is over ``budget`` (default: the environment's)."""
    limit = budget_from_env() if budget is None else budget
    if estimate.work > limit:
        raise InputError(
            f"{estimate.devices} simulated devices x {estimate.layers} layers is about {estimate.events:.2g} "
            f"events over rings of {estimate.longest_ring} channels ({estimate.work:.2g} channel "
            f"updates), over the work budget of {limit:.2g}; raise it with --budget or "
            f"{_ENV} if you mean it", key="budget")
