"""A run's point: the options of ``mcdla sim`` (CLI.md) and their defaults.

One place for them, read by the CLI, by :mod:`mcdla.sim.run` and by sweeps, which fill
the defaults into every point so results tables always carry these columns.
"""

from __future__ import annotations

__all__ = ["DEFAULT_POINT", "POINT_KEYS", "POLICIES", "PARALLEL"]

DEFAULT_POINT = {"topology": "ring", "policy": "bw_aware", "workload": "resnet34",
                 "parallel": "data", "batch": 512}
POINT_KEYS = tuple(DEFAULT_POINT)
POLICIES = ("local", "bw_aware")
PARALLEL = ("data", "model")
