"""The one kind of cache: what a loaded topology, or a run on it, derives once and asks
again.

The hardware values (:class:`~mcdla.hw.topology.Topology`, :class:`~mcdla.hw.network.Ring`,
channels, ports) are frozen; what is derived from them (a backing route's graph search,
a ring's domains, an algorithm's plan per byte) is kept in a :class:`Cache` that their
owner holds explicitly: a loaded topology holds one (its routes, its bound rings'
derived values), a run (:class:`mcdla.sim.training.Iteration`) one for the sub-rings of
its communicators, and a collective algorithm one for its plans. Two owners never share
entries, so two runs (or two loads of a topology) share no state; dropping an owner drops
its cache. Keys are tuples whose first item names what is kept (``("route", device,
store)``, ``("ring", token, what)``).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

__all__ = ["Cache"]

_MISSING = object()


class Cache:
    """Key -> derived value, each made once by the ``make`` first given for it."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[Hashable, Any] = {}

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under ``key``, made by ``make()`` (and kept) when first asked."""
        found = self._entries.get(key, _MISSING)
        if found is _MISSING:
            found = self._entries[key] = make()
        return found

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """The value kept under ``key``, else ``default`` (nothing is made)."""
        return self._entries.get(key, default)

    def put(self, key: Hashable, value: Any) -> Any:
        self._entries[key] = value
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
