"""Physical units: parsing quantities written by people, printing them back.

Inside mcdla every quantity is a float in a base unit: bytes, seconds, bytes per
second, hertz (and MAC/s for compute). Input files may write a quantity as a string
with a unit (``"25 GB/s"``, ``"16 GiB"``, ``"100 ns"``, ``"1 GHz"``, ``"100 cycles"``)
or as a plain number in the base unit. Decimal prefixes are powers of 1000
(GB = 1e9 bytes) and binary prefixes powers of 1024 (GiB = 2**30), as in IEC 80000-13.

Every conversion happens here, once, when a value is read; a malformed value raises
:class:`UnitError` with a sentence saying what was expected.
"""

from __future__ import annotations

import math
import re

from mcdla.errors import excerpt

__all__ = [
    "UnitError",
    "KINDS",
    "parse",
    "parse_size",
    "parse_bandwidth",
    "parse_time",
    "format_size",
    "format_bandwidth",
    "format_time",
    "format_frequency",
    "format_quantity",
]


class UnitError(ValueError):
    """A quantity that cannot be read as the expected kind."""


_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12}


def _table(suffix: str) -> dict[str, float]:
    """Every prefixed spelling of ``suffix`` ("B", "B/s", "Hz") with its factor."""
    table = {p + suffix: f for p, f in _DECIMAL.items()}
    if suffix != "Hz":
        table.update({p + suffix: f for p, f in _BINARY.items()})
    return table


# kind -> (accepted unit spellings -> factor to the base unit, what to say when wrong)
KINDS: dict[str, tuple[dict[str, float], str]] = {
    "size": (_table("B"), "a size such as '16 GiB', '4 KB' or a number of bytes"),
    "bandwidth": (_table("B/s"), "a bandwidth such as '25 GB/s' or a number of bytes/s"),
    "time": (_TIME, "a time such as '100 ns', '1.5 ms', '100 cycles' or a number of seconds"),
    "frequency": (_table("Hz"), "a frequency such as '1 GHz' or a number of Hz"),
    "count": ({"": 1.0}, "a plain number"),
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/]*)\s*$")


def parse(value: object, kind: str, *, clock_Hz: float | None = None) -> float:
    """Reads ``value`` as a quantity of ``kind`` and returns it in the base unit.

    ``"N cycles"`` is accepted for times when ``clock_Hz`` is given. The result is
    finite; its sign is not checked here (callers decide what range is valid).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown quantity kind {kind!r}")
    units, expected = KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UnitError(f"expected {expected}, got {excerpt(value)}")
    if isinstance(value, (int, float)):
        number, factor = float(value), 1.0
    else:
        match = _QUANTITY.match(value)
        if match is None:
            raise UnitError(f"expected {expected}, got {excerpt(value)}")
        number, unit = float(match.group(1)), match.group(2)
        if kind == "time" and unit in ("cycle", "cycles"):
            if clock_Hz is None:
                raise UnitError(f"{excerpt(value)} is in cycles, which needs a clock frequency here")
            factor = 1.0 / clock_Hz
        elif unit in units:
            factor = units[unit]
        elif unit == "":  # a bare number is in the base unit, as a YAML number is
            factor = 1.0
        else:
            raise UnitError(f"unknown unit {excerpt(unit, 20)} in {excerpt(value)}: expected {expected}")
    result = number * factor
    if not math.isfinite(result):
        raise UnitError(f"expected {expected}, got the non-finite {excerpt(value)}")
    return result


def parse_size(value: object) -> float:
    return parse(value, "size")


def parse_bandwidth(value: object) -> float:
    return parse(value, "bandwidth")


def parse_time(value: object, clock_Hz: float | None = None) -> float:
    return parse(value, "time", clock_Hz=clock_Hz)


def _scaled(value: float, steps: list[tuple[float, str]], digits: int) -> str:
    """Prints ``value`` with the largest step whose factor it reaches."""
    magnitude = abs(value)
    for factor, unit in steps:
        if magnitude >= factor:
            break
    else:
        factor, unit = steps[-1]
    text = f"{value / factor:.{digits}g}"
    return f"{text} {unit}"


def format_size(size_bytes: float, digits: int = 4) -> str:
    """Binary prefixes when the size is an exact multiple of one, decimal otherwise."""
    for prefix in ("Ti", "Gi", "Mi", "Ki"):
        factor = _BINARY[prefix]
        if size_bytes >= factor and size_bytes % factor == 0:
            text = f"{size_bytes / factor:.{digits}g}"
            # 80 GB is a multiple of 1 KiB too, but "7.812e+07 KiB" would lose it (and
            # 1,700 MiB in three digits is "1.7e+03 MiB": no exponents, the next unit)
            if "e" not in text and float(text) * factor == size_bytes:
                return f"{text} {prefix}B"
    steps = [(1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1.0, "B")]
    return _scaled(size_bytes, steps, digits)


def format_bandwidth(bw_Bps: float, digits: int = 4) -> str:
    steps = [(1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "KB/s"), (1.0, "B/s")]
    return _scaled(bw_Bps, steps, digits)


def format_time(time_s: float, digits: int = 4) -> str:
    steps = [(1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns"), (1e-12, "ps")]
    return _scaled(time_s, steps, digits)


def format_frequency(freq_Hz: float, digits: int = 4) -> str:
    steps = [(1e12, "THz"), (1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz"), (1.0, "Hz")]
    return _scaled(freq_Hz, steps, digits)


def format_quantity(value: float, kind: str, digits: int = 4) -> str:
    """Prints ``value`` (base unit) as a string that :func:`parse` reads back."""
    printers = {
        "size": format_size,
        "bandwidth": format_bandwidth,
        "time": format_time,
        "frequency": format_frequency,
    }
    if kind == "count":
        return f"{value:.{digits}g}"
    return printers[kind](value, digits)
