"""What a flow network reports: its accounting snapshot (:class:`NetworkStats`) and the
view of the loads that changed, handed to its rate listener (:class:`ChangedLoads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np

__all__ = ["NetworkStats", "ChangedLoads"]


@dataclass(frozen=True)
class NetworkStats:
    """A snapshot of a flow network's accounting at ``time_s``."""

    time_s: float
    flows_started: int
    flows_finished: int
    bytes_sent: float
    bytes_delivered: float
    rate_computations: int
    bytes_by_resource: dict[str, float]
    busy_s_by_resource: dict[str, float]

    def utilization(self, capacities_Bps: Mapping[str, float]) -> dict[str, float]:
        """Average utilization of each resource over ``[0, time_s]``: bytes / (bw * time)."""
        if self.time_s <= 0:
            return {r: 0.0 for r in self.bytes_by_resource}
        return {
            r: b / (capacities_Bps[r] * self.time_s)
            for r, b in self.bytes_by_resource.items()
            if r in capacities_Bps
        }


class ChangedLoads(Mapping):
    """The resources whose load changed, and their new loads: a read-only mapping over
    the network's arrays, made a dict only if iterated (a collective's ring changes
    thousands of loads at once, and the training driver reads two of them)."""

    __slots__ = ("_names", "_index", "_where", "_values", "_dict")

    def __init__(self, names: list[str], index: dict[str, int], where: np.ndarray, values: np.ndarray):
        self._names, self._index, self._where, self._values = names, index, where, values
        self._dict: dict[str, float] | None = None

    def _full(self) -> dict[str, float]:
        if self._dict is None:
            names = self._names
            self._dict = dict(zip([names[i] for i in self._where.tolist()], self._values.tolist()))
        return self._dict

    def __getitem__(self, resource: str) -> float:
        if self._dict is not None:
            return self._dict[resource]
        i = self._index.get(resource)
        hits = (self._where == i).nonzero()[0] if i is not None else ()
        if not len(hits):
            raise KeyError(resource)
        return float(self._values[hits[0]])

    def __iter__(self):
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return repr(self._full())
