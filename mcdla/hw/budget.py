"""A work budget checked before a run starts: a few YAML lines must not ask for hours.

The simulator's cost is its events times the cost of each: a device's layer, once per
micro-batch, costs a few tens of events (compute, memory reservations, offload and prefetch flows; 10-45
per device and layer measured over the shipped workloads, hence :data:`EVENTS_PER_LAYER`
= 48 as an upper estimate), and every flow start or end re-solves the max-min rates
of the flows it touches, whose paths span up to a whole collective ring. An event
costs at least its own step (SimPy's queue, a process resumed) whatever the rings:
measured, a pipeline of 2,048 micro-batches on dgx1v (GPT-2, 2 stages, short rings of 8
channels) ran 1.1e6 events in 41 s against an estimate of 2.5e7 events, about 1.6 us per
estimated event, as much as 100 channel updates of the ring measurement below; hence
:data:`EVENT_COST` = 64 channel updates as the floor. So the estimate is
``events x max(longest ring, EVENT_COST)`` in channel updates. The default limit lets every
shipped experiment run (the largest, 8 devices, is near 1e6) and a 1,024-device ring
of ResNet-34 (about 6e9, a minute or two), and refuses what would run for many
minutes and gigabytes (a 4,096-device ring with a model-parallel GRU simulated rank by
rank, ``execution.exact``: about 1e11). With rank symmetry (mcdla.hw.symmetry) the
devices counted are the ones simulated, one per class of equivalent devices; with
pipeline parallelism a device runs its stage's layers (a 1/stages share, rounded up) once
per micro-batch. ``mcdla plan`` is bounded too, before it builds anything (:func:`check_plan_budget`):
each candidate it estimates costs building its plan, linear in devices (measured: 0.07 s
for a 1,024-device ring, about 4e6 channel updates, hence :data:`BUILD_PER_DEVICE` =
4,096), and each it simulates costs finding its classes of equivalent devices (7 to 20 s
for a 1,024-device ring with tensor groups, hence :data:`CLASSES_PER_DEVICE` = 2**19)
plus its simulation, checked against the budget before it runs; ``--largest`` pays that
once per member of the family.

The same budget holds the memory a run may take: a topology's nodes (graph nodes of
every kind, each with its channels and its share of a run's state) are capped at what
:data:`MEMORY_BYTES` holds at :data:`BYTES_PER_NODE` each (:func:`node_cap`), checked
before the graph is built. ``MCDLA_MEMORY_BUDGET`` (a size: ``32 GiB``) raises it.
``MCDLA_WORK_BUDGET`` or ``mcdla sim --budget`` raises it (``inf``: no
limit, said explicitly); a budget that is not a positive number is refused (a NaN would
compare false and let anything through).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mcdla.errors import InputError

__all__ = ["MEMORY_BYTES", "BYTES_PER_NODE", "node_cap", "check_nodes", "EVENTS_PER_LAYER", "EVENT_COST", "BUILD_PER_DEVICE", "CLASSES_PER_DEVICE", "check_plan_budget", "DEFAULT_BUDGET", "WorkEstimate", "estimate_work", "check_budget",
           "budget_from_env", "check_limit"]

EVENTS_PER_LAYER = 48
EVENT_COST = 64  # channel updates an event costs at least (module docstring)
BUILD_PER_DEVICE = 4096  # channel updates to build one plan candidate, per device
CLASSES_PER_DEVICE = 2**19  # channel updates to find a simulated candidate's classes, per device
DEFAULT_BUDGET = 1e10
_ENV = "MCDLA_WORK_BUDGET"
# The memory a run may take: the project's machines (developers' and CI's alike) have
# 24 GiB and 2 cores; 16 GiB leaves the rest to the system and a second process.
MEMORY_BYTES = 16 * 2**30
# Peak memory of a run per graph node, measured (issue 27): h100_100k reduced to 768
# DGX H100 nodes, one data-parallel ResNet-34 iteration: 7,128 graph nodes (6,144 GPUs,
# 768 NVSwitch nodes, 216 fabric switches) and 247,296 channels (18 NVLinks and a NIC a
# GPU) peaked 655,788 KiB above a bare interpreter's 39,268 KiB: 94.2 kB a node. The
# densest shipped design (every GPU with 19 links); gb200_nvl72_100k measured 59 kB a node.
BYTES_PER_NODE = 96_000
_MEMORY_ENV = "MCDLA_MEMORY_BUDGET"


@dataclass(frozen=True)
class WorkEstimate:
    """What a run will cost, estimated from its inputs alone."""

    devices: int  # the devices simulated (one per class of equivalent devices)
    layers: int  # the layers each runs per micro-batch
    events: float
    longest_ring: int  # channels of the longest directed ring (1 with none)
    micro_batches: int = 1

    @property
    def work(self) -> float:
        return self.events * max(self.longest_ring, EVENT_COST)


def estimate_work(topology, workload, simulated: int | None = None, *, stages: int = 1,
                  micro_batches: int = 1) -> WorkEstimate:
    """``simulated``: the devices simulated (default: every device of ``topology``);
    ``stages`` and ``micro_batches``: the pipeline's (1 and 1 without one)."""
    devices = len(topology.devices) if simulated is None else simulated
    layers = -(-len(workload.layers) // max(1, stages))
    longest = max((len(r.channels) for r in topology.rings), default=1)
    events = float(EVENTS_PER_LAYER) * devices * layers * max(1, micro_batches)
    return WorkEstimate(devices, layers, events, max(1, longest), max(1, micro_batches))


def _memory_bytes() -> float:
    raw = os.environ.get(_MEMORY_ENV, "").strip()
    if not raw:
        return float(MEMORY_BYTES)
    from mcdla import units

    try:
        size = units.parse(raw, "size")
    except units.UnitError as exc:
        raise InputError(str(exc), key=_MEMORY_ENV) from None
    if not size > 0:
        raise InputError(f"expected a positive size, e.g. 32 GiB, got {raw!r}", key=_MEMORY_ENV)
    return size


def node_cap() -> int:
    """The most graph nodes a topology may have: what the memory budget holds."""
    return int(_memory_bytes() // BYTES_PER_NODE)


def check_nodes(nodes: int, key: str, file: str | None = None, limit: int | None = None,
                error: type[InputError] = InputError) -> None:
    """Refuses a topology of ``nodes`` graph nodes past ``limit`` (default: :func:`node_cap`),
    as ``error`` naming ``key`` of ``file`` and the memory budget."""
    if limit is not None:
        if nodes > limit:
            raise error(f"{nodes:,} nodes is more than the {limit:,} asked for at most", file=file, key=key)
        return
    cap = node_cap()
    if nodes > cap:
        memory = _memory_bytes()
        raise error(f"{nodes:,} nodes is more than the work budget's memory holds: {cap:,} nodes "
                    f"({memory / 2**30:.3g} GiB at {BYTES_PER_NODE / 1e3:.0f} kB a node); raise it with "
                    f"{_MEMORY_ENV} if the machine has the memory", file=file, key=key)


def budget_from_env() -> float:
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET
    return check_limit(raw, _ENV)


def check_limit(value, key: str) -> float:
    """``value`` as a work budget: a positive number (``inf`` for none), else an InputError naming ``key``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number of channel updates, e.g. 1e11, got {value!r}", key=key) from None
    if not number > 0:  # NaN too: it compares false with any estimate
        raise InputError(f"expected a positive number of channel updates (inf: no limit), got {value!r}",
                         key=key)
    return number


def check_budget(estimate: WorkEstimate, budget: float | None = None) -> None:
    """Refuses a run whose estimated work is over ``budget`` (default: the environment's)."""
    limit = budget_from_env() if budget is None else check_limit(budget, "--budget")
    if estimate.work > limit:
        passes = f" x {estimate.micro_batches} micro-batches" if estimate.micro_batches > 1 else ""
        raise InputError(
            f"{estimate.devices} simulated devices x {estimate.layers} layers{passes} is about {estimate.events:.2g} "
            f"events at {max(estimate.longest_ring, EVENT_COST)} channel updates each (rings of "
            f"{estimate.longest_ring} channels): {estimate.work:.2g} channel updates, over the work budget of {limit:.2g}; raise it with --budget or "
            f"{_ENV} if you mean it", key="budget")


def check_plan_budget(devices: int, candidates: int, simulate: int, members: int = 1,
                      budget: float | None = None) -> None:
    """Refuses a ``mcdla plan`` search whose setup alone is over the budget: ``members``
    models (a family; 1 for one workload), each with ``candidates`` candidates built and up
    to ``simulate`` of them simulated, on ``devices`` devices (module docstring)."""
    limit = budget_from_env() if budget is None else check_limit(budget, "--budget")
    per_member = devices * (candidates * BUILD_PER_DEVICE + simulate * CLASSES_PER_DEVICE)
    work = float(members) * per_member
    if work > limit:
        family = f"{members} models x " if members > 1 else ""
        raise InputError(
            f"planning {family}{candidates} candidates on {devices} devices (up to {simulate} simulated"
            f"{' each' if members > 1 else ''}) "
            f"is about {work:.2g} channel updates before any simulation, over the work budget of {limit:.2g}; "
            f"raise it with {_ENV} if you mean it, or plan fewer devices or models", key="budget")
