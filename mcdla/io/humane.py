"""Quantities as a person reads them, for tables: ``36.18 ms``, ``150 GB/s``, ``78.0%``.

Results keep raw SI numbers (seconds, bytes, bytes/s) everywhere: in JSON, in CSV and
in results tables. Only the table form of a command prints them for people, with a
unit chosen per value. The unit of a field comes from its name's suffix, the
convention every result mapping follows (``iteration_time_s``, ``link_bytes``,
``collective_bw_Bps``, ``peak_MACps``); in a dotted name (``busy_s.compute``) the
nearest component with a known suffix decides. A field with no known suffix is
printed as before (6 significant digits). Every printed quantity reads back with
:func:`mcdla.units.parse` where the unit is one it knows.
"""

from __future__ import annotations

import math
from typing import Any

from mcdla import units

__all__ = ["unit_of", "format_field", "format_value", "percent", "bar"]

DIGITS = 4  # significant digits of a quantity in a table

# (name suffix, kind), most specific first. A suffix matches the end of a name
# component, or the whole component (``bytes``, ``macs``).
_SUFFIXES = (
    ("_MAC_per_B", "intensity"),
    ("_per_W", "plain"),  # GB_per_W: already a ratio with its unit in the name
    ("_MACps", "mac_rate"),
    ("_FLOPps", "flop_rate"),
    ("_flops", "flop_rate"),  # peak_flops: a rate, as the hardware presets use it
    ("_Bps", "bandwidth"),
    ("_bytes", "size"),
    ("bytes", "size"),
    ("_macs", "macs"),
    ("macs", "macs"),
    ("_tokens_s", "token_rate"),  # serving: throughput_tokens_s
    ("_requests_s", "request_rate"),  # goodput_requests_s
    ("_s", "time"),
    ("_W", "power"),
    ("_Hz", "frequency"),
    ("_fraction", "percent"),
    ("_share", "percent"),
    ("utilization", "percent"),
)
# Trailing qualifiers that do not change the unit: activation_bytes_per_sample, macs_fwd.
_QUALIFIERS = ("_per_sample", "_per_device", "_per_iteration", "_per_token", "_fwd", "_bwd")


def _kind_of(component: str) -> str | None:
    for qualifier in _QUALIFIERS:
        if component.endswith(qualifier):
            component = component[: -len(qualifier)]
    for suffix, kind in _SUFFIXES:
        if component == suffix.lstrip("_") or component.endswith(suffix):
            return kind
    return None


def unit_of(name: str) -> str | None:
    """The kind of quantity field ``name`` holds, or None when its name does not say."""
    for component in reversed(name.split(".")):
        kind = _kind_of(component)
        if kind is not None:
            return kind
    return None


def _si(value: float, unit: str, digits: int = DIGITS) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def _size(value: float, digits: int = DIGITS) -> str:
    # Decimal prefixes only, so that one column never mixes GB and GiB.
    for factor, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {unit}"
    return f"{value:.{digits}g} B"


def percent(fraction: float, digits: int = 1) -> str:
    """0.781 -> ``78.1%``."""
    return f"{100 * fraction:.{digits}f}%"


_BASE_UNITS = {"time": "s", "size": "B", "bandwidth": "B/s", "mac_rate": "MAC/s", "flop_rate": "FLOP/s",
               "macs": "MAC", "power": "W", "frequency": "Hz", "token_rate": "tokens/s",
               "request_rate": "requests/s"}


def format_value(value: float, kind: str, digits: int = DIGITS) -> str:
    """``value`` (base unit) of quantity ``kind`` as text with a unit chosen for it."""
    if not math.isfinite(value):
        return "n/a" if value != value else ("inf" if value > 0 else "-inf")
    if kind == "percent":
        return percent(value)
    if kind in ("intensity", "plain"):
        return f"{value:.{digits}g}" + (" MAC/B" if kind == "intensity" else "")
    if value == 0:
        return f"0 {_BASE_UNITS[kind]}"
    if kind == "time":
        return units.format_time(value, digits)
    if kind == "size":
        return _size(value, digits)
    if kind == "bandwidth":
        return units.format_bandwidth(value, digits)
    if kind == "frequency":
        return units.format_frequency(value, digits)
    return _si(value, _BASE_UNITS[kind], digits)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or (math.isfinite(value) and 1e-3 <= abs(value) < 1e7):
            return f"{value:.6g}"
        return f"{value:.4e}"
    return str(value)


def format_field(name: str, value: Any) -> str:
    """A table cell: ``value`` of field ``name``, with a unit when the name gives one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    kind = unit_of(name)
    if kind is None:
        return _plain(value)
    return format_value(float(value), kind)


def bar(fraction: float, width: int = 20) -> str:
    """A one-line bar of ``width`` cells, ``fraction`` of them full: ``█████░░░░░``."""
    fraction = min(max(fraction, 0.0), 1.0) if fraction == fraction else 0.0
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)
