"""A run's point: the options of ``mcdla sim`` (README.md), their types and defaults.

One place for them, read by the CLI, by :mod:`mcdla.run`, by ``mcdla layers`` and
by sweeps, which fill the defaults into every point so results tables always carry
these columns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcdla.config.placement import PLACEMENTS
from mcdla.config.schema import Range, Where, convert

__all__ = ["DEFAULT_POINT", "COLLECTIVE_OPS", "POINT_KEYS", "PARALLEL", "MAX_BATCH", "Policy",
           "Parallel", "Batch", "check_option"]

DEFAULT_POINT = {"topology": "ring", "policy": "bw_aware", "workload": "resnet34",
                 "parallel": "data", "batch": 512}
POINT_KEYS = tuple(DEFAULT_POINT)
PARALLEL = ("data", "model")
# The collectives, by their nccl-tests names: the one list (mcdla collective's --op,
# experiment points, the closed forms in mcdla.hw.collective_model).
COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "all_to_allv")
# No training batch is near this; larger values are refused before they cost memory.
MAX_BATCH = 2**20

Policy = Literal[PLACEMENTS.names()]
Parallel = Literal[PARALLEL]
Batch = Annotated[int, Range(minimum=1, maximum=MAX_BATCH)]


def check_option(tp: Any, value: Any, key: str) -> Any:
    """A command-line option's ``value`` checked as type ``tp``; InputError names ``key``."""
    return convert(tp, value, Where("", key))
