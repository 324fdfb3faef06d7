"""Printing results as a table, JSON or CSV, to stdout or a file.

JSON keeps the nested structure of a result; table and CSV flatten nested mappings
into dotted columns (``busy_s.compute``). Output files are written whole, to a
temporary name first, so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from mcdla.io.records import flatten

__all__ = ["add_format_options", "flatten", "emit", "emit_text", "render"]


def add_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or (math.isfinite(value) and 1e-3 <= abs(value) < 1e7):
            return f"{value:.6g}"
        return f"{value:.4e}"
    return str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    if len(rows) == 1:  # one result: a key/value listing reads better than a wide row
        flat = rows[0]
        width = max(len(k) for k in flat)
        return "".join(f"{k:<{width}}  {_cell(v)}\n" for k, v in flat.items())
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render(data: Mapping[str, Any] | Iterable[Mapping[str, Any]], fmt: str) -> str:
    """``data`` (one record or a list of records) as text in format ``fmt``."""
    records = [data] if isinstance(data, Mapping) else list(data)
    if fmt == "json":
        payload = records[0] if isinstance(data, Mapping) else records
        return json.dumps(payload, indent=2, sort_keys=False) + "\n"
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
    """Writes ``text`` whole to ``args.output`` (atomically) or to stdout."""
    if getattr(args, "output", None):
        path = Path(args.output)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    else:
        sys.stdout.write(text)
