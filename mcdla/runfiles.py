"""The files one command reads and writes, kept apart: no output replaces an input.

Inside :func:`run_files` (every command runs in one: mcdla/cli/main.py), the readers
note each file they read (:func:`note_input`) and the writer claims each output it
checks or writes (:func:`claim`, from :mod:`mcdla.io.write`): writing a noted input, or
reading a claimed output, is refused naming both, so ``mcdla import m.onnx -o m.onnx``
or ``mcdla sim --workload w.yaml --output w.yaml`` stops before it computes. Files are
compared by identity (device and inode), so a symlink, a hard link or another spelling
of the same path is the same file. A base module (standard library only): the loaders
of mcdla/config and the writer of mcdla/io both use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Iterator

from mcdla.errors import InputError

__all__ = ["run_files", "note_input", "claim", "shown", "refuse"]


class _RunFiles:
    """The files one command reads and writes, by identity ``(st_dev, st_ino)``."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[int, int], str] = {}
        self.outputs: dict[tuple[int, int], tuple[str, str | None]] = {}


_RUN: _RunFiles | None = None


@contextlib.contextmanager
def run_files() -> Iterator[None]:
    """The scope of one command: inputs read and outputs claimed inside it are kept apart
    (the module docstring). Outside any scope nothing is tracked (library use)."""
    global _RUN
    previous, _RUN = _RUN, _RunFiles()
    try:
        yield
    finally:
        _RUN = previous


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def note_input(path: str | os.PathLike) -> None:
    """Records that the current command reads ``path``; refuses it (InputError) when it
    is a file this command writes."""
    if _RUN is None:
        return
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return  # the reader reports a missing or unreadable file itself
    if not stat.S_ISREG(info.st_mode):
        return  # a pipe or a device is read as a stream, never replaced
    key = _identity(info)
    if key in _RUN.outputs:
        written, option = _RUN.outputs[key]
        raise refuse(written, f"is also an input of this run ({shown(os.fspath(path))}); "
                      f"choose another file to write", option)
    _RUN.inputs.setdefault(key, os.fspath(path))


def claim(text: str, info: os.stat_result, option: str | None) -> None:
    """Refuses writing a file the current command reads; remembers it as an output."""
    if _RUN is None or not stat.S_ISREG(info.st_mode):
        return
    key = _identity(info)
    if key in _RUN.inputs:
        raise refuse(text, f"is an input of this run ({shown(_RUN.inputs[key])}); writing it would "
                      f"replace it: choose another file to write", option)
    _RUN.outputs.setdefault(key, (text, option))


def shown(path: str) -> str:
    """``path`` for a message: a very long one is cut, so an error stays one short line."""
    return path if len(path) <= 120 else path[:60] + "..." + path[-40:]


def refuse(path: str, message: str, option: str | None = None) -> InputError:
    return InputError(message, file=shown(path) if path else None, key=option)
