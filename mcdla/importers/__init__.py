"""Bringing models from other tools into mcdla workload files."""

from __future__ import annotations


def clean_name(text: str, default: str = "layer") -> str:
    """A name YAML and mcdla read back: no '/' (block paths) or spaces."""
    cleaned = "".join(c if (c.isalnum() or c in "_-.") else "_" for c in text).strip("_")
    return cleaned or default
