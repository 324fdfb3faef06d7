"""What a flow network reports: its accounting snapshot (:class:`NetworkStats`) and the
view of the loads that changed, handed to its rate listener (:class:`ChangedLoads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    import numpy as np

__all__ = ["NetworkStats", "ChangedLoads", "ByClass", "members_of"]


@dataclass(frozen=True)
class NetworkStats:
    """A snapshot of a flow network's accounting at ``time_s``."""

    time_s: float
    flows_started: int
    flows_finished: int
    bytes_sent: float
    bytes_delivered: float
    rate_computations: int
    # Per resource; with rank symmetry a ByClass, every member answered from its class's first.
    bytes_by_resource: Mapping[str, float]
    busy_s_by_resource: Mapping[str, float]

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


def members_of(rep: Mapping[str, str]) -> dict[str, list[str]]:
    """Each class's first -> its members (``rep``: a member -> its class's first), in
    ``rep``'s order."""
    members: dict[str, list[str]] = {}
    for resource, first in rep.items():
        members.setdefault(first, []).append(resource)
    return members


class ByClass(Mapping):
    """A value per resource where each member of a class has its class's first's (rank
    symmetry, mcdla.sim.flownet): ``by_first`` (a class's first, or a resource of no
    class -> its value) read through ``rep`` (a class's member -> its first) when a
    resource is asked, not listed for every member (a 131,072-device ring's 1.8M
    resources are a few dozen classes). Iterated, it lists every member, each class's
    in ``members()``'s order (first -> its members), as the whole mapping would be. A
    first that ``rep`` does not list as its own class's member is not a member: absent."""

    __slots__ = ("_by_first", "_rep", "_firsts", "_members", "_dict", "_own")

    def __init__(self, by_first: dict[str, float], rep: Mapping[str, str], firsts,
                 members: Callable[[], Mapping[str, list[str]]]):
        self._by_first, self._rep, self._firsts, self._members = by_first, rep, firsts, members
        self._dict: dict[str, float] | None = None
        self._own: bool | None = None  # every first its own class's member (values_of)

    def _first(self, resource: str):
        first = self._rep.get(resource)
        if first is None:
            return None if resource in self._firsts else resource
        return first

    def __getitem__(self, resource: str) -> float:
        first = self._first(resource)
        if first is None:
            raise KeyError(resource)
        return self._by_first[first]

    def get(self, resource: str, default=None):
        first = self._first(resource)
        return default if first is None else self._by_first.get(first, default)

    def __contains__(self, resource) -> bool:
        first = self._first(resource)
        return first is not None and first in self._by_first

    def classed(self, resource: str) -> bool:
        """Whether ``resource`` is a member of a class (answered from its first), not its own."""
        return resource in self._rep

    def values_of(self, resources, default: float = 0.0) -> list[float]:
        """:meth:`get` of each of ``resources``, in one pass (two dict lookups each when
        every first is its own class's member, as mcdla.hw.symmetry's classes are)."""
        by_first, rep = self._by_first, self._rep
        if self._own is None:
            self._own = all(rep.get(f) == f for f in self._firsts)
        if self._own:
            return [by_first.get(rep.get(r, r), default) for r in resources]
        return [self.get(r, default) for r in resources]

    def _full(self) -> dict[str, float]:
        if self._dict is None:
            members = self._members()
            self._dict = {m: value for r, value in self._by_first.items() for m in members.get(r, (r,))}
        return self._dict

    def __iter__(self):
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())

    def __repr__(self) -> str:
        return repr(self._full())
