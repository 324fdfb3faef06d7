"""Printing results as a table, JSON or CSV, to stdout or a file.

JSON keeps the nested structure of a result; table and CSV flatten nested mappings
into dotted columns (``busy_s.compute``). JSON and CSV carry raw SI numbers
(seconds, bytes, bytes/s); a table prints each quantity with a unit a person reads
(:mod:`mcdla.io.humane`). JSON is strict: a non-finite number (the bandwidth of a
zero-byte collective, say) is written as ``null``, since ``Infinity`` and ``NaN`` are
not JSON. Files are written by :mod:`mcdla.io.write` (whole, atomically, never
replacing a device or a symlink).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from typing import Any, Iterable, Mapping

from mcdla.io.humane import format_field
from mcdla.io.records import flatten

__all__ = ["add_format_options", "flatten", "emit", "emit_text", "render", "finite", "positive_int"]


def add_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout ('-': stdout)")


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (``--jobs``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def finite(data: Any) -> Any:
    """``data`` with every non-finite float replaced by None (JSON ``null``)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    if len(rows) == 1:  # one result: a key/value listing reads better than a wide row
        flat = rows[0]
        width = max(len(k) for k in flat)
        return "".join(f"{k:<{width}}  {format_field(k, v)}\n" for k, v in flat.items())
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[format_field(c, row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    # Numbers right-aligned, so that magnitudes line up down a column.
    numeric = [all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool)
                   for row in rows if row.get(c) is not None) for c in columns]
    lines = ["  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(columns, widths, numeric))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(r, widths, numeric))
              for r in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render(data: Mapping[str, Any] | Iterable[Mapping[str, Any]], fmt: str) -> str:
    """``data`` (one record or a list of records) as text in format ``fmt``."""
    records = [data] if isinstance(data, Mapping) else list(data)
    if fmt == "json":
        payload = records[0] if isinstance(data, Mapping) else records
        return json.dumps(finite(payload), indent=2, sort_keys=False, allow_nan=False) + "\n"
    rows = [flatten(r) for r in records]
    if fmt == "csv":
        buffer = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    return _table(rows)


def emit(data: Mapping[str, Any] | Iterable[Mapping[str, Any]], args: argparse.Namespace) -> None:
    """Prints ``data`` in ``args.format`` to ``args.output`` or stdout."""
    emit_text(render(data, args.format), args)


def emit_text(text: str, args: argparse.Namespace) -> None:
    """Writes ``text`` whole to ``args.output`` (see :mod:`mcdla.io.write`) or to stdout."""
    output = getattr(args, "output", None)
    if output is not None:
        from mcdla.io.write import write_text

        write_text(output, text, option="--output")
    else:
        sys.stdout.write(text)
