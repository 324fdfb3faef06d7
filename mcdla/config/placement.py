"""Placement policies: where a device's offloaded pages live among the backing stores
that serve it (paper Section IV-C), behind :data:`PLACEMENTS`.

A placement policy is part of how a run executes (``--policy``), a pure mapping that
the topology (:mod:`mcdla.hw.topology`) applies, so it lives with the configuration
and its names validate experiment files. A policy maps the stores serving a device (``Topology.serves``, home store first) to
(store, share of the bytes) pairs; the topology stripes each share over the parallel
links to its store. Register a new one with ``@PLACEMENTS.register("name")``.
"""

from __future__ import annotations

from mcdla.registry import Registry

__all__ = ["PLACEMENTS", "PlacementPolicy", "Local", "BandwidthAware"]

PLACEMENTS: Registry[type["PlacementPolicy"]] = Registry("placement policy")


class PlacementPolicy:
    """Which stores hold a device's pages, and what share of the bytes each holds."""

    def shares(self, stores: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
        raise NotImplementedError


@PLACEMENTS.register("local")
class Local(PlacementPolicy):
    """MC-DLA(L): every page in the device's home store (its own memory-node)."""

    def shares(self, stores):
        return ((stores[0], 1.0),)


@PLACEMENTS.register("bw_aware")
class BandwidthAware(PlacementPolicy):
    """MC-DLA(B): pages interleaved evenly over every store that serves the device, so
    a DMA uses all of the device's links to them at once."""

    def shares(self, stores):
        return tuple((store, 1.0 / len(stores)) for store in stores)
