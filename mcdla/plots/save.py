"""Saving a matplotlib figure through :mod:`mcdla.io.write`: the format from the file's
suffix, no timestamps or version strings in the file (the same data gives the same
bytes), and the write's guarantees (atomic, devices and symlinks respected, one-line
refusals)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mcdla.errors import InputError
from mcdla.io.write import check_output, open_output

__all__ = ["SUFFIXES", "check_plot_path", "save_figure"]

SUFFIXES = (".png", ".svg")
# What matplotlib would otherwise stamp into the file (software version, date).
_METADATA = {".png": {"Software": None}, ".svg": {"Date": None, "Creator": None}}


def check_plot_path(path: str | os.PathLike, option: str = "--plot") -> Path:
    """``path`` if a figure can be written there (by suffix), else InputError naming ``option``."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"expected a .png or .svg file name, got {str(path)[:120]!r}", key=option)
    check_output(path, option)
    return path


def save_figure(fig: Any, path: str | os.PathLike, *, option: str = "--plot", **savefig: Any) -> Path:
    """Writes ``fig`` to ``path`` (.png at 150 dpi unless ``savefig`` says otherwise, or .svg)."""
    path = check_plot_path(path, option)
    suffix = path.suffix.lower()
    options = {"dpi": 150, **savefig} if suffix == ".png" else dict(savefig)
    with open_output(path, "wb", option=option) as stream:
        fig.savefig(stream, format=suffix[1:], metadata=_METADATA[suffix], **options)
    return path
