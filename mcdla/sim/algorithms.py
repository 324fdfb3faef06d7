"""Every collective algorithm, registered: the one module that imports them all.

Each algorithm module registers its classes in :data:`COLLECTIVES` when imported
(:mod:`mcdla.sim.collectives`: the paper's ring; :mod:`mcdla.sim.fabric_collectives`:
direct, in-switch, tree, hierarchical; :mod:`mcdla.sim.nccl_collectives`: NCCL's ring,
NVLS, tree and NVLS-tree, and ``nccl``, its tuner's choice among them). Whoever looks an algorithm up by name imports
the registry from here, so the set is complete without any module importing its own
dependents. A new algorithm module is one more import below.
"""

from __future__ import annotations

from mcdla.sim import collectives, fabric_collectives, nccl_collectives  # noqa: F401  (each registers its own)
from mcdla.sim.collectives import COLLECTIVES

__all__ = ["COLLECTIVES"]
