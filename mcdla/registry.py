"""Registries of strategies: one small interface each, looked up by name.

A strategy (a collective algorithm, a placement policy, an offload policy) is a class
registered under the name users type (``--policy bw_aware``, ``training.collective:
ring``). Adding one is one class, its registration and its tests
(docs/extending.md); nothing else compares strategy names.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from mcdla.errors import InputError, excerpt

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> strategy class, in registration order."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@PLACEMENTS.register("local")``."""
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = entry
            return entry
        return add

    def get(self, name: str, key: str | None = None, file: str | None = None) -> T:
        """The strategy called ``name``; an unknown name is an InputError listing the known,
        naming the ``file`` and ``key`` it came from."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self.what} {excerpt(name)}; expected one of "
                             f"{', '.join(self._entries)}", file=file, key=key or self.what) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
