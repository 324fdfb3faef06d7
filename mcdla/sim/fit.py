"""What does not fit, said for people: sizes in GB/MiB, and the way out.

A run that does not fit is the user's to change (an :class:`InfeasibleError`, exit 2),
so its message names what needs how much of what, humanely ("2.79 TB over 80 GB",
never "2.79367e+12 bytes"), and the options that would make room, leaving out those
the run already uses.
"""

from __future__ import annotations

from mcdla.config.execution import ExecutionSpec
from mcdla.units import format_size

__all__ = ["size", "state_way_out", "maps_way_out", "store_way_out"]


def size(size_bytes: float) -> str:
    """A size for a message: three significant digits and the largest unit it reaches."""
    return format_size(size_bytes, 3)


def _join(options: list[str]) -> str:
    return ", ".join(options[:-1]) + (" or " if len(options) > 1 else "") + options[-1]


def state_way_out(execution: ExecutionSpec, backing: bool) -> str:
    """How to make room for model state that does not fit a device."""
    options = []
    if execution.parallel == "data" and execution.zero < 3:
        options.append("shard it over the replicas with ZeRO (--set execution.zero=3)")
    if execution.parallel == "data" and backing and not execution.offload_optimizer:
        options.append("offload it (execution.offload_optimizer=true)")
    options += ["spread it over more devices (tensor or pipeline parallelism, a larger design)",
                "let `mcdla plan` find what fits"]
    return _join(options)


def maps_way_out(execution: ExecutionSpec, virtualized: bool, backing: bool) -> str:
    """How to make room for feature maps that do not fit beside what a device holds."""
    options = []
    if backing and not virtualized:
        options.append("offload feature maps (training.virtualization=true)")
    if execution.training.checkpoint == "none":
        options.append("recompute them (training.checkpoint=full)")
    options += ["a smaller batch", "more devices", "`mcdla plan`"]
    return _join(options)


def store_way_out() -> str:
    """How to make room in a backing store that overflows."""
    return _join(["a design with more memory-nodes or host memory",
                  "another memory tier of the design (execution.place.activations|optimizer|params)",
                  "ZeRO over more replicas",
                  "`mcdla plan`"])
