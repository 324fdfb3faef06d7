"""Memory as ordered tiers after HBM, and where an execution places each kind of state.

A topology's tiers come from its nodes (:attr:`mcdla.hw.topology.Topology.tiers`):

- ``memory_node``: memory-nodes on the devices' fabric (the paper's MC-DLA);
- ``cxl``: CXL type-3 memory expanders behind the PCIe switches (a memory-node preset
  with ``tier: cxl``);
- ``host``: the CPU sockets' DRAM, past the PCIe switches (or NVLink-C2C);
- ``nvme``: NVMe drives behind the PCIe switches, which write slower than they read.

They are listed nearest first, in that order. The topology's ``backing`` store is its
default tier: its ``serves`` say which stores hold each device's pages. Every other
tier serves each device from the stores of its kind nearest to it (fewest hops through
PCIe and fabric switches: the sockets above a device's PCIe switch, the drives beside
it). Memory-nodes and CXL expanders form a tier only as the backing store (their
groups and ports follow ``serves``).

:func:`state_tier` is the one answer to "which tier holds state X": the execution's
``place`` (:class:`mcdla.config.execution.PlaceSpec`) and, where it says nothing, the
flags it stands for (virtualization, ``offload_optimizer``, ``offload_params``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from mcdla.config.execution import TIER_KINDS
from mcdla.errors import InputError

__all__ = ["TIER_KINDS", "STATES", "MemoryTier", "nearest_stores", "state_tier", "state_routes", "used_tiers",
           "check_placement"]

# The states an execution places: feature maps, the optimizer's fp32 state and master,
# the weights with their gradients (ZeRO-Infinity keeps them together), the KV cache.
STATES = ("activations", "optimizer", "params", "kv")


@dataclass(frozen=True)
class MemoryTier:
    """One tier: its stores, which of them serve each device (home store first), what
    they hold together, the link types that reach them, and their access latency."""

    kind: str
    stores: tuple[str, ...]
    serves: Mapping[str, tuple[str, ...]] = field(repr=False)
    capacity_bytes: float
    links: tuple[str, ...]  # the link types of the last hop into the stores
    read_latency_s: float = 0.0  # the stores' own access latency, a prefetch's
    write_latency_s: float = 0.0  # an offload's

    def port(self, store: str, device: str, direction: str) -> str:
        """The memory port a transfer between ``device`` and ``store`` ends on: a
        socket's DRAM (shared by every device it serves), a drive's read or write
        side (their rates differ), or the device's group of a memory-node."""
        if self.kind == "host":
            return f"{store}/mem"
        if self.kind == "nvme":
            return f"{store}/{'write' if direction == 'offload' else 'read'}"
        return f"{store}/{device}"

    def latency_s(self, direction: str) -> float:
        return self.write_latency_s if direction == "offload" else self.read_latency_s


def nearest_stores(graph, device: str, stores: frozenset[str], relays: frozenset[str]) -> tuple[str, ...]:
    """The ``stores`` fewest hops from ``device`` through ``relays`` (PCIe and fabric
    switches), sorted; () when none is reachable. A breadth-first search that stops at
    the first depth holding a store."""
    seen, frontier = {device}, [device]
    while frontier:
        found, nxt = set(), []
        for node in frontier:
            for other in graph.adj[node]:
                if other in seen:
                    continue
                seen.add(other)
                if other in stores:
                    found.add(other)
                elif other in relays:
                    nxt.append(other)
        if found:
            return tuple(sorted(found, key=_natural))
        frontier = nxt
    return ()


def _natural(name: str) -> tuple:
    """``NV10`` after ``NV9``: the prefix, then the number."""
    head = name.rstrip("0123456789")
    return head, int(name[len(head):] or 0)


def state_tier(topology, execution, state: str) -> MemoryTier | None:
    """The tier that holds ``state`` (:data:`STATES`) of every device, or None for
    the device's own HBM. Where ``execution.place`` names no tier: feature maps go to
    the default tier while virtualization is on; the optimizer state to the default
    tier under ZeRO-Offload (or where the weights are placed, ZeRO-Infinity keeping
    them together); the weights and gradients to the optimizer's tier under
    ZeRO-Infinity; the KV cache stays in HBM."""
    kind = _placed_kind(topology, execution, state)
    return None if kind in (None, "hbm") else topology.tier(kind)


def state_routes(topology, execution, state: str, device: str, direction: str) -> tuple:
    """The stripes of one DMA of ``state`` between ``device`` and the tier holding it
    (:meth:`~mcdla.hw.topology.Topology.tier_routes`); () when it stays in HBM."""
    tier = state_tier(topology, execution, state)
    return () if tier is None else topology.tier_routes(device, tier, execution.policy, direction)


def used_tiers(topology, execution) -> tuple[str, ...]:
    """The kinds of the tiers a training run moves state to, nearest first."""
    kinds = {_placed_kind(topology, execution, s) for s in ("activations", "optimizer", "params")}
    return tuple(k for k in TIER_KINDS if k in kinds)


def _placed_kind(topology, execution, state: str) -> str | None:
    place, default = execution.place, topology.default_tier_kind
    if state == "activations":
        if place.activations is not None:
            return place.activations
        return default if execution.training.virtualization else None
    if state == "optimizer":
        if not execution.offload_optimizer:
            return None
        return place.optimizer or (place.params if execution.offload_params else None) or default
    if state == "params":
        return _placed_kind(topology, execution, "optimizer") if execution.offload_params else None
    if state == "kv":
        return place.kv
    raise ValueError(f"state must be one of {STATES}, got {state!r}")


def check_placement(topology, execution) -> None:
    """Every tier ``execution.place`` names is one the topology has; else an
    InputError naming the key, the tier and the tiers there are. (A flag that asks for
    the default tier where there is none is refused by the training driver.)"""
    for state in STATES:
        named = getattr(execution.place, state)
        if named in (None, "hbm"):
            continue
        have = [t.kind for t in topology.tiers]  # derived only when a tier is named
        if named not in have:
            raise InputError(f"{topology.name} has no {named} tier; its tiers: {', '.join(have) or 'none'} "
                             f"(or hbm)", key=f"execution.place.{state}")
