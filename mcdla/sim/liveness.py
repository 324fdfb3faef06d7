"""The device-memory peak of an offload plan, computed without simulating it.

:class:`~mcdla.sim.training.DeviceCompute` allocates and frees feature maps at points
that depend only on the plan: forward layer ``i`` allocates its output, then frees the
maps whose last forward use it is (recomputed ones, offloaded ones once their offload
ends, and, with virtualization, maps backward never reads); backward step ``s`` first
allocates what it issues or rebuilds (prefetches ``lookahead`` steps ahead of their
first use, recomputed maps at their first use), then frees the maps it reads last.
Memory only grows between two frees, so the peak is at one of these points:

- point ``0``: the resident model state and the input batch;
- point ``i`` (1 <= i < L): forward layer ``i`` has allocated its output;
- point ``L + s``: backward step ``s`` has allocated its prefetches and recomputes.

Each feature map is held over one or two intervals of points, and the peak is the
largest sum over a point. This equals the simulated peak when offloads and
prefetches keep up with compute (an offload ends before the next layer allocates, a
prefetch starts when it is issued); a slower DMA only delays frees and allocations,
which the simulator absorbs by waiting (docs/model.md, "Memory virtualization").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from mcdla.hw.layers import NO_INPUT_NEEDED

if TYPE_CHECKING:
    import numpy as np

# An allocation fits when it is within this relative slack of the capacity: float sums
# of the same bytes in another order (the driver and the offload policies use it alike).
FIT_SLACK = 1e-12

__all__ = ["FIT_SLACK", "Schedule", "schedule", "intervals", "memory_curve", "peak_bytes", "backward_needs", "closure", "prefetch_step"]


def backward_needs(layers) -> tuple[tuple[int, ...], ...]:
    """Layer -> the feature maps its backward reads (a merged in-place layer says its own)."""
    return tuple(() if i == 0 else l.bwd_reads if l.bwd_reads is not None
                 else () if l.kind in NO_INPUT_NEEDED else tuple(l.inputs)
                 for i, l in enumerate(layers))


def closure(needs: Sequence[int], layers, recomputed: Sequence[bool]) -> list[int]:
    """The tensors read to materialize ``needs``: recomputed ones pull in their inputs."""
    seen: list[int] = []
    stack = list(needs)
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.append(t)
        if recomputed[t]:
            stack.extend(layers[t].inputs)
    return seen


@dataclass(frozen=True)
class Schedule:
    """When each feature map is used, as the driver orders the iteration."""

    layers: int
    last_fwd_use: tuple[int, ...]  # tensor -> the last forward layer that reads it (or itself)
    first_bwd_use: dict[int, int]  # tensor read in backward -> first backward step reading it
    last_bwd_use: dict[int, int]  # tensor read in backward -> last backward step reading it

    @property
    def points(self) -> int:
        return 2 * self.layers - 1

    def issue(self, t: int, lookahead: int) -> int:
        """The backward step that issues ``t``'s prefetch."""
        return prefetch_step(self.first_bwd_use[t], lookahead)


def prefetch_step(first_need: int, lookahead: int) -> int:
    """The backward step at which a map first needed at step ``first_need`` is
    prefetched: ``lookahead`` steps ahead, or at the start of backward (the driver and
    the analytic peak both ask here)."""
    return max(0, first_need - lookahead)


def schedule(layers, recomputed: Sequence[bool], own: range | None = None) -> Schedule:
    """The uses of every feature map: the same derivation as the driver's plan. ``own``:
    only the uses by these layers, a pass over a pipeline stage's chunk (backward steps
    counted within it); every layer by default."""
    n = len(layers)
    own = range(n) if own is None else own
    last_fwd = list(range(n))
    for i in own:
        for p in layers[i].inputs:
            last_fwd[p] = max(last_fwd[p], i)
    needs = backward_needs(layers)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for step, i in enumerate(i for i in reversed(own) if i > 0):
        for t in closure(needs[i], layers, recomputed):
            last[t] = step
            first.setdefault(t, step)
    return Schedule(n, tuple(last_fwd), first, last)


def intervals(sched: Schedule, offloaded: Sequence[bool], recomputed: Sequence[bool], *,
              virtualize: bool, lookahead: int) -> list[tuple[int, int, int]]:
    """(tensor, first point, last point) for every interval a feature map is held."""
    n, end = sched.layers, sched.points - 1
    held = []
    for t in range(n):
        read = t in sched.last_bwd_use
        last_fwd = sched.last_fwd_use[t]
        if offloaded[t]:
            held.append((t, t, last_fwd))
            held.append((t, n + sched.issue(t, lookahead), n + sched.last_bwd_use[t]))
        elif recomputed[t]:
            held.append((t, t, last_fwd))
            if read:
                held.append((t, n + sched.first_bwd_use[t], n + sched.last_bwd_use[t]))
        elif virtualize and not read:
            held.append((t, t, last_fwd))
        elif read:
            held.append((t, t, n + sched.last_bwd_use[t]))
        else:  # without virtualization, unread maps stay until the iteration ends
            held.append((t, t, end))
    return held


def memory_curve(sched: Schedule, tensor_bytes: Sequence[float], held, resident_bytes: float = 0.0) -> "np.ndarray":
    """Bytes in device memory at every point (resident bytes included)."""
    import numpy as np  # here: mcdla sim's start-up does not pay numpy's import

    delta = np.zeros(sched.points + 1)
    for t, first, last in held:
        delta[first] += tensor_bytes[t]
        delta[last + 1] -= tensor_bytes[t]
    return np.cumsum(delta[:-1]) + resident_bytes


def peak_bytes(layers, tensor_bytes: Sequence[float], offloaded: Sequence[bool], recomputed: Sequence[bool], *,
               virtualize: bool, lookahead: int = 1, resident_bytes: float = 0.0) -> float:
    """The device-memory peak of a plan: resident bytes plus the most feature-map bytes
    held at once, when offloads and prefetches keep up with compute."""
    sched = schedule(layers, recomputed)
    held = intervals(sched, offloaded, recomputed, virtualize=virtualize, lookahead=lookahead)
    return float(memory_curve(sched, tensor_bytes, held, resident_bytes).max())
