"""Nested result mappings as flat rows, for tables and CSV files.

A result keeps its structure in JSON (``{"busy_s": {"compute": ...}}``); a row of a
table or CSV file names each leaf by its dotted path (``busy_s.compute``). Lists of
plain values (a run's ``notes``) become one cell, joined by ``"; "``.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["flatten"]


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "n": ["x", "y"]}`` -> ``{"a.b": 1, "n": "x; y"}``."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "; ".join(str(item) for item in value)
        else:
            flat[name] = value
    return flat
