"""The rank layout: the devices as a grid of named parallel axes.

Every process group of a run comes from one layout, as Megatron-LM builds all of its
groups from one rank grid (``parallel_state.py``): ranks are numbered with the first
axis innermost, so with ``("tp", "dp", "pp")`` a tensor group is ``tp`` consecutive
ranks (the topology's order puts neighbours next to each other, so a tensor group
shares the fastest links), a data-parallel group takes one rank of each tensor group
of its stage, and a pipeline stage is a block of ``tp x dp`` ranks. ``rank_device``
says which device each rank runs on (the topology's order, or
``execution.rank_order``).

An axis is a name and a degree; a new axis (ep, cp) is one more entry, and groups,
stages and peers come out for any order of axes. The paper's model-parallel mode is
the ``tp`` axis over every device (each layer split over all of them, the paper's
rule for what is gathered: :mod:`mcdla.hw.parallelism`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Axis", "RankLayout"]


@dataclass(frozen=True)
class Axis:
    """One parallel axis: its name (``dp``, ``tp``, ``pp``, ``ep``, ``cp``) and degree."""

    name: str
    degree: int

    def __post_init__(self):
        if self.degree < 1:
            raise ValueError(f"axis {self.name}: degree must be >= 1, got {self.degree}")


@dataclass(frozen=True)
class RankLayout:
    """Ranks as a grid of ``axes`` (innermost first) placed on devices by ``rank_device``."""

    axes: tuple[Axis, ...]
    rank_device: tuple[int, ...]

    def __post_init__(self):
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"axes named twice: {names}")
        if math.prod(a.degree for a in self.axes) != len(self.rank_device):
            raise ValueError(f"axes {names} of degrees {[a.degree for a in self.axes]} do not cover "
                             f"{len(self.rank_device)} ranks")

    @classmethod
    def of(cls, rank_device: tuple[int, ...], **degrees: int) -> "RankLayout":
        """A layout from ``name=degree`` in order, innermost first."""
        return cls(tuple(Axis(n, d) for n, d in degrees.items()), tuple(rank_device))

    @property
    def ranks(self) -> int:
        return len(self.rank_device)

    def degree(self, name: str) -> int:
        """An axis's degree; 1 for an axis the layout does not have."""
        return next((a.degree for a in self.axes if a.name == name), 1)

    def _stride(self, name: str) -> int:
        stride = 1
        for axis in self.axes:
            if axis.name == name:
                return stride
            stride *= axis.degree
        raise KeyError(name)

    def coordinates(self, name: str) -> list[int]:
        """Where each rank sits along axis ``name`` (0 for an axis the layout lacks), in
        one pass: a 131,072-device ring's groups asked it of every rank four times."""
        if all(a.name != name for a in self.axes):
            return [0] * self.ranks
        stride, degree = self._stride(name), self.degree(name)
        return [rank // stride % degree for rank in range(self.ranks)]

    def groups(self, name: str) -> tuple[tuple[int, ...], ...]:
        """The devices of each group along axis ``name`` (each in rank order), the groups
        ordered by the other coordinates, outer axes slowest (Megatron's enumeration)."""
        stride, degree = self._stride(name), self.degree(name)
        others = [r for r, k in enumerate(self.coordinates(name)) if k == 0]
        return tuple(tuple(self.rank_device[r + k * stride] for k in range(degree)) for r in others)

    def along(self, name: str) -> dict[int, int]:
        """Device -> its coordinate along axis ``name`` (a pipeline stage, for ``pp``)."""
        return dict(zip(self.rank_device, self.coordinates(name)))

    def neighbours(self, name: str) -> dict[int, tuple[int | None, int | None]]:
        """Device -> (the device one step back along ``name``, one step forward), None at
        the ends: a pipeline stage's previous and next stage, for ``pp``."""
        stride, degree = self._stride(name), self.degree(name)
        out = {}
        for r, (d, k) in enumerate(zip(self.rank_device, self.coordinates(name))):
            out[d] = (self.rank_device[r - stride] if k > 0 else None,
                      self.rank_device[r + stride] if k < degree - 1 else None)
        return out
