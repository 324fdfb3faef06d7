"""Every collective algorithm, registered: the one module that imports them all.

Each algorithm module registers its classes in :data:`COLLECTIVES` when imported
(:mod:`mcdla.sim.collectives`: the paper's ring and NCCL's; :mod:`mcdla.sim.fabric_collectives`:
direct, in-switch, tree, hierarchical). Whoever looks an algorithm up by name imports
the registry from here, so the set is complete without any module importing its own
dependents. A new algorithm module is one more import below.
"""

from __future__ import annotations

from mcdla.sim import collectives, fabric_collectives  # noqa: F401  (each registers its algorithms)
from mcdla.sim.collectives import COLLECTIVES

__all__ = ["COLLECTIVES"]
