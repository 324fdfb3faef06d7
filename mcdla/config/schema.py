"""Typed, validated configuration objects built from plain YAML data.

Every input file is read into frozen dataclasses by :func:`build`, which walks the
dataclass fields (never a hand-kept list of keys) and checks, for each value, what the
field's annotation asks for. Quantities with units are declared with ``Annotated``
markers (:data:`Size`, :data:`Bandwidth`, :data:`Time`, ...) and converted to base
units here, once. Any mistake raises :class:`~mcdla.errors.InputError` naming the
file, the dotted key and what was expected.

Why dataclasses rather than pydantic: the schemas are small, the checks we need
(units, clocks, one-line messages with the dotted key) are custom anyway, and plain
dataclasses keep ``mcdla --help`` fast and the dependency list short.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from mcdla import units
from mcdla.errors import InputError, excerpt

__all__ = [
    "Quantity",
    "Range",
    "Text",
    "Label",
    "NodeName",
    "check_text",
    "Size",
    "BlockSize",
    "Bandwidth",
    "Time",
    "Frequency",
    "PositiveInt",
    "NonNegativeInt",
    "PositiveFloat",
    "Fraction",
    "build",
    "convert",
    "Where",
]


@dataclass(frozen=True)
class Quantity:
    """Marks a float field as a physical quantity of ``kind`` (see :mod:`mcdla.units`).

    ``clock`` names a sibling field holding a frequency, so that times may be given
    in cycles (``"100 cycles"``).
    """

    kind: str
    minimum: float = 0.0
    inclusive: bool = False  # whether ``minimum`` itself is allowed
    clock: str | None = None
    # A bare number (no unit) below this is refused as a missing unit: a bucket of 25
    # (bytes) is meant as 25 MiB, and 25 bytes would silently run as no bucketing.
    unit_below: float = 0.0


@dataclass(frozen=True)
class Range:
    """Bounds for a plain number: ``minimum <= x`` (or ``<``) and ``x <= maximum``."""

    minimum: float | None = None
    maximum: float | None = None
    inclusive: bool = True


@dataclass(frozen=True)
class Text:
    """Marks a string field that must match ``pattern`` whole; ``what`` says what it may be."""

    pattern: str
    what: str


# A name people give (a design's, a workload's, a family member's): printable, not blank,
# short enough to be part of a file name (an experiment's folder) and of a one-line message.
Label = Annotated[str, Text(r"(?=.*\S)[^\x00-\x1f\x7f/]{1,128}", "a name of 1 to 128 printable "
                                                                "characters, not blank, without '/'")]
# A node of the interconnect: its name is part of channel ids ("D0>M0:1"), ports
# ("NIC0/tx") and reduction units, so the characters that join those (">", ":", "/") or
# would hide in a listing (spaces) are not allowed: a ">" in a name made two channels one.
NodeName = Annotated[str, Text(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}", "a node name of 1 to 64 letters, "
                                                                      "digits and _ . + - (no spaces, '>', ':' or '/')")]


def check_text(value: str, mark: Text, where: "Where") -> str:
    if not re.fullmatch(mark.pattern, value):
        raise where.error(f"expected {mark.what}, got {excerpt(value)}")
    return value


Size = Annotated[float, Quantity("size")]
# A size nobody means in bytes (a gradient bucket, a pipelining chunk): a bare number
# under 1 KiB is a missing unit.
BlockSize = Annotated[float, Quantity("size", unit_below=1024)]
Bandwidth = Annotated[float, Quantity("bandwidth")]
Time = Annotated[float, Quantity("time", inclusive=True)]
Frequency = Annotated[float, Quantity("frequency")]
PositiveInt = Annotated[int, Range(minimum=1)]
NonNegativeInt = Annotated[int, Range(minimum=0)]
PositiveFloat = Annotated[float, Range(minimum=0.0, inclusive=False)]
Fraction = Annotated[float, Range(minimum=0.0, maximum=1.0, inclusive=False)]

# Values from these up are refused before they cost memory or time: no real system
# has an exabyte of memory, an exabyte per second of bandwidth or a year-long latency.
_ABSURD = {"size": 1e18, "bandwidth": 1e18, "time": 3.2e7, "frequency": 1e13, "count": 1e15}
# ... and from these down: a positive bandwidth under 1 kB/s (slower than a 1970s modem)
# would make an iteration last years of simulated time, or underflow the flow solver.
_TINY = {"bandwidth": 1e3}


def check_physical(value: float, kind: str, where: "Where", shown: Any = None) -> float:
    """``value`` (of unit kind ``kind``) if it is below the physical limit, else an InputError."""
    shown = value if shown is None else shown
    if value >= _ABSURD[kind]:
        raise where.error(f"{excerpt(shown)} is beyond any physical system (limit {_ABSURD[kind]:g})")
    if 0 < value < _TINY.get(kind, 0.0):
        raise where.error(f"{excerpt(shown)} is below any physical link (minimum {_TINY[kind]:g} B/s)")
    return value


@dataclass(frozen=True)
class Where:
    """Where a value came from: the file and the dotted key, for error messages."""

    file: str
    key: str = ""

    def child(self, name: str | int) -> "Where":
        if isinstance(name, int):
            return Where(self.file, f"{self.key}[{name}]")
        if not name.isprintable():  # a key with a newline must not break the one-line message
            name = repr(name)
        return Where(self.file, f"{self.key}.{name}" if self.key else name)

    def error(self, message: str) -> InputError:
        return InputError(message, file=self.file, key=self.key or None)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *marks = typing.get_args(tp)
        for mark in marks:
            if isinstance(mark, Quantity):
                return units.KINDS[mark.kind][1]
        return _describe(base)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _bound(x: float) -> str:
    """A range bound as people write it: 1048576, not 1.04858e+06."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _check_range(value: float, rng: Range, where: Where) -> float:
    lo, hi = rng.minimum, rng.maximum
    if lo is not None and (value < lo or (value == lo and not rng.inclusive)):
        op = ">=" if rng.inclusive else ">"
        raise where.error(f"must be {op} {_bound(lo)}, got {excerpt(value)}")
    if hi is not None and value > hi:
        raise where.error(f"must be <= {_bound(hi)}, got {excerpt(value)}")
    return value


def _quantity(value: Any, mark: Quantity, where: Where, siblings: dict[str, Any]) -> float:
    clock = None
    if mark.clock is not None:
        clock = siblings.get(mark.clock)
    try:
        result = units.parse(value, mark.kind, clock_Hz=clock)
    except units.UnitError as exc:
        raise where.error(str(exc)) from None
    if result < mark.minimum or (result == mark.minimum and not mark.inclusive):
        what = "non-negative" if mark.inclusive else "positive"
        raise where.error(f"must be {what}, got {excerpt(value)}")
    if result < mark.unit_below and _bare(value):
        shown = excerpt(value, 20).strip("'")
        raise where.error(f"{shown} has no unit, so it reads as {shown} bytes, almost certainly not what is "
                          f"meant: write the unit ('{shown} KiB', '{shown} MiB', or '{shown} B' for bytes)")
    return check_physical(result, mark.kind, where, value)


def _bare(value: Any) -> bool:
    """Whether ``value`` is a number without a unit (a YAML number or a numeral)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=None)
def _shape(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``tp``'s origin and arguments: asked for every value converted (a big topology's
    tens of thousands of connections), and typing's functions are slow; once per type."""
    return typing.get_origin(tp), typing.get_args(tp)


def _convert(tp: Any, value: Any, where: Where, siblings: dict[str, Any]) -> Any:
    try:
        origin, args = _shape(tp)
    except TypeError:  # an unhashable annotation: asked directly
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        base, *marks = args
        for mark in marks:
            if isinstance(mark, Quantity):
                return _quantity(value, mark, where, siblings)
        result = _convert(base, value, where, siblings)
        for mark in marks:
            if isinstance(mark, Range):
                _check_range(result, mark, where)
            elif isinstance(mark, Text):
                check_text(result, mark, where)
        return result
    if origin in (Union, types.UnionType):
        options = args
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where, siblings)
            except InputError as exc:
                errors.append(exc)
        # An option that took the value's shape and refused an item inside it says more
        # than "expected an integer or a list" (a list of node names, one of them bad).
        inner = [e for e in errors if e.key and where.key and e.key != where.key]
        raise errors[0] if len(errors) == 1 else inner[0] if len(inner) == 1 else where.error(
            "expected " + " or ".join(_describe(o) for o in options if o is not type(None))
            + f", got {excerpt(value)}"
        )
    if origin is Literal:
        allowed = args
        # True == 1 in Python: a boolean matches only a boolean choice (zero: yes is not 1).
        if value not in allowed or (isinstance(value, bool) and not any(a is value for a in allowed)):
            raise where.error(f"expected {_describe(tp)}, got {excerpt(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise where.error(f"expected a list, got {excerpt(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise where.error(f"expected a list of {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, where.child(i), siblings) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        # Items taken as they are (any value; a string that is a string) need no
        # conversion and no key for an error: a ring of 30,000 nodes, a connection.
        if item is Any or (item is str and all(isinstance(v, str) for v in value)):
            return tuple(value)
        if _shape(item) == (tuple, (Any, Ellipsis)) and all(isinstance(v, list) for v in value):
            return tuple(map(tuple, value))  # rows of anything, each a list: a 131,072-ring's 262,144 connections
        return tuple(_convert(item, v, where.child(i), siblings) for i, v in enumerate(value))
    if origin is dict:
        key_tp, val_tp = args
        if not isinstance(value, dict):
            raise where.error(f"expected a mapping, got {excerpt(value)}")
        return {
            _convert(key_tp, k, where, siblings): _convert(val_tp, v, where.child(str(k)), siblings)
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {excerpt(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise where.error(f"expected an integer, got {excerpt(value)}")
        try:
            number = float(value)
        except ValueError:
            raise where.error(f"expected an integer, got {excerpt(value)}") from None
        if not math.isfinite(number) or number != int(number):
            raise where.error(f"expected an integer, got {excerpt(value)}")
        check_physical(abs(number), "count", where, value)
        return int(number)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise where.error(f"expected a number, got {excerpt(value)}")
        try:
            number = float(value)
        except ValueError:
            raise where.error(f"expected a number, got {excerpt(value)}") from None
        if not math.isfinite(number):
            raise where.error(f"expected a finite number, got {excerpt(value)}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise where.error(f"expected a string, got {excerpt(value)}")
        return value
    raise TypeError(f"schema type {tp!r} is not supported")  # a bug in a schema, not input


@functools.lru_cache(maxsize=None)
def _schema(cls: type) -> tuple[dict[str, Any], list[dataclasses.Field], frozenset[str]]:
    """A dataclass's resolved annotations and init fields; resolving annotations
    (``get_type_hints``) is slow and every layer of every workload is built, so once
    per class."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return typing.get_type_hints(cls, include_extras=True), fields, frozenset(f.name for f in fields)


def convert(tp: Any, value: Any, where: Where) -> Any:
    """``value`` checked and converted as a field annotated ``tp`` would be."""
    return _convert(tp, value, where, {})


def build(cls: type, data: Any, where: Where) -> Any:
    """Builds the frozen dataclass ``cls`` from the mapping ``data``.

    Unknown keys, missing required keys, wrong types and out-of-range values raise
    :class:`InputError`. Fields are converted in declaration order, so a field may
    refer to an earlier sibling (a clock for cycle counts).
    """
    if not isinstance(data, dict):
        raise where.error(f"expected a mapping, got {excerpt(data)}")
    hints, fields, names = _schema(cls)
    unknown = [k for k in data if k not in names]
    if unknown:
        raise where.child(str(unknown[0])).error(
            f"unknown key; expected one of {', '.join(sorted(names))}"
        )
    values: dict[str, Any] = {}
    for f in fields:
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise where.child(f.name).error(f"missing; expected {_describe(hints[f.name])}")
            continue
        values[f.name] = _convert(hints[f.name], data[f.name], where.child(f.name), values)
    try:
        return cls(**values)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:  # __post_init__ cross-field checks
        raise where.error(str(exc)) from None
