"""Writing an output file: the one way every command does it.

- A regular file (or a new one) is written to a securely created temporary file in the
  target's own folder (``tempfile.mkstemp``: a random name opened with ``O_EXCL``, so a
  file or symlink planted at a guessable name cannot redirect the write), flushed to
  disk, then renamed over the target with ``os.replace``: readers see the old file or
  the new one, never a part. An existing file keeps its permission bits.
- A symlink is followed: its target is written (replaced), the link stays.
- Character and block devices, FIFOs, sockets' peers and the standard streams
  (``-`` is stdout; ``/dev/stdout`` and anything under ``/dev`` or ``/proc``) are
  written directly: they cannot be replaced, and must not be.
- Anything that cannot work is refused with one :class:`~mcdla.errors.InputError`
  line naming the path: a folder, a missing parent folder, a parent that is a file,
  no permission, a name longer than 255 bytes, a full disk. Nothing is left behind:
  the temporary file is removed on any failure.
- No output replaces one of the run's inputs: every output checked or written is
  claimed in the command's ledger (:mod:`mcdla.runfiles`), which refuses a file the
  command reads.

:func:`check_output` runs the same checks without writing, so a command can refuse a
bad target before it spends time computing what to put there. Standard library only,
so that importing it stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from pathlib import Path
from typing import IO, Iterator

from mcdla.runfiles import claim, refuse as _refuse, shown as _shown

__all__ = ["STDOUT", "check_output", "check_folder", "make_folder", "open_output", "write_text",
           "write_bytes", "same_target", "take_written"]

STDOUT = "-"
# NAME_MAX of Linux, macOS and the common file systems: longer components fail with
# ENAMETOOLONG after the work is done, so they are refused up front.
_NAME_MAX = 255
# The files written for a command's option since the last take_written(), as (path,
# option): a command says what it wrote (mcdla sim --trace, --plot), whichever function
# wrote it. Bounded, for a program that writes many files and never takes them.
_WRITTEN: list[tuple[str, str | None]] = []
_WRITTEN_KEPT = 1000
# Folders whose entries are devices or kernel views (/dev/stdout, /proc/self/fd/1):
# written in place even when they look like regular files.
_DIRECT_ROOTS = ("/dev/", "/proc/")


def _check_name(text: str, option: str | None) -> None:
    if text == "":
        raise _refuse("", "expected a file name, got an empty string", option or "output")
    for part in text.split(os.sep):
        if len(os.fsencode(part)) > _NAME_MAX:
            raise _refuse(text, f"a file name is longer than {_NAME_MAX} bytes", option)


def _check_parent(path: str, parent: Path, option: str | None) -> None:
    """Refuses a new file whose folder is missing, not a folder, or not writable."""
    try:
        info = os.stat(parent)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise _refuse(path, f"no such directory {_shown(str(parent))!r}", option) from None
        if exc.errno == errno.ENOTDIR:
            raise _refuse(path, "a parent of this path is a file, not a directory", option) from None
        raise _refuse(path, f"cannot write: {exc.strerror}", option) from None
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(path, f"{_shown(str(parent))!r} is not a directory", option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _refuse(path, f"cannot write into directory {_shown(str(parent))!r}: permission denied", option)


def _plan(path: str | os.PathLike, option: str | None = None) -> tuple[str, str]:
    """``(how, where)``: how is "stdout", "direct" (write in place) or "atomic"
    (temporary file, then replace ``where``, the symlink-resolved target)."""
    text = os.fspath(path)
    if text == STDOUT:
        return "stdout", text
    _check_name(text, option)
    try:
        info = os.stat(text)  # follows symlinks: what a write would reach
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # a new file (or a dangling symlink's target)
            real = Path(os.path.realpath(text))
            _check_parent(text, real.parent, option)
            return "atomic", str(real)
        if exc.errno == errno.ENOTDIR:
            raise _refuse(text, "a parent of this path is a file, not a directory", option) from None
        raise _refuse(text, f"cannot write: {exc.strerror}", option) from None
    if stat.S_ISDIR(info.st_mode):
        raise _refuse(text, "is a directory, not a file", option)
    claim(text, info, option)
    real = os.path.realpath(text)
    if not stat.S_ISREG(info.st_mode) or real.startswith(_DIRECT_ROOTS) or text.startswith(_DIRECT_ROOTS):
        if _is_stdout(info):
            return "stdout", text
        if not os.access(text, os.W_OK):
            raise _refuse(text, "cannot write: permission denied", option)
        return "direct", text
    _check_parent(text, Path(real).parent, option)
    return "atomic", real


def _is_stdout(info: os.stat_result) -> bool:
    try:
        return os.path.samestat(info, os.fstat(sys.stdout.fileno()))
    except (AttributeError, OSError, ValueError):  # a captured or closed stdout
        return False


def check_output(path: str | os.PathLike | None, option: str | None = None) -> None:
    """Refuses (InputError) an output path that :func:`open_output` could not write.

    ``None`` and ``-`` are stdout and always pass."""
    if path is not None:
        _plan(path, option)


def same_target(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two output paths reach the same file (``None`` and ``-`` are stdout)."""
    if a is None or b is None:
        return (a is None or os.fspath(a) == STDOUT) and (b is None or os.fspath(b) == STDOUT)
    a, b = os.fspath(a), os.fspath(b)
    if STDOUT in (a, b):
        return a == b
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_folder(path: str | os.PathLike, option: str | None = None) -> Path:
    """Refuses a folder argument that could not hold output: an empty string, an existing
    file, or a missing folder whose nearest existing ancestor is not a writable folder.
    Creates nothing."""
    text = os.fspath(path)
    if text == "":
        raise _refuse("", "expected a directory, got an empty string", option or "--out")
    _check_name(text, option)
    folder = Path(text)
    if folder.exists():
        if not folder.is_dir():
            raise _refuse(text, "exists and is not a directory", option)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise _refuse(text, "cannot write into this directory: permission denied", option)
        return folder
    ancestor = Path(os.path.abspath(text)).parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    _check_parent(text, ancestor, option)
    return folder


def make_folder(path: str | os.PathLike, option: str | None = None) -> Path:
    """``path`` as a folder, created with its parents; a refusal is one InputError line."""
    folder = check_folder(path, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _refuse(os.fspath(path), f"cannot create the directory: {exc.strerror}", option) from None
    return folder


def _new_file_mode() -> int:
    # The mode open() would give a new file; mkstemp's files are 0600.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def open_output(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None, option: str | None = None) -> Iterator[IO]:
    """A file object writing ``path`` as the module docstring says (``mode`` "w" or "wb").

    The target is replaced only when the block ends without an exception; an OSError
    (a full disk, say) becomes one InputError line naming the path."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_output writes text ('w') or bytes ('wb'), not {mode!r}")
    binary = mode == "wb"
    text = os.fspath(path)
    how, where = _plan(text, option)
    if how == "stdout":
        sys.stdout.flush()
        stream = sys.stdout.buffer if binary else sys.stdout
        try:
            yield stream
            stream.flush()
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            raise _refuse(text, f"cannot write: {exc.strerror}", option) from None
        return
    kwargs = {} if binary else {"encoding": encoding, "newline": newline}
    if how == "direct":
        try:
            with open(where, mode, **kwargs) as stream:
                yield stream
        except OSError as exc:
            raise _refuse(text, f"cannot write: {exc.strerror}", option) from None
        _written(text, option)
        return
    import tempfile  # here, not at import time: most commands write to stdout

    target = Path(where)
    try:
        previous = os.stat(target).st_mode
        permissions = stat.S_IMODE(previous)
    except OSError:
        permissions = _new_file_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _refuse(text, f"cannot write: {exc.strerror}", option) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, permissions)
        os.replace(tmp, target)
        _written(text, option)
    except OSError as exc:
        _remove(tmp)
        raise _refuse(text, f"cannot write: {exc.strerror or exc}", option) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
               option: str | None = None) -> None:
    """Writes ``text`` whole to ``path`` (see :func:`open_output`)."""
    with open_output(path, "w", encoding=encoding, option=option) as stream:
        stream.write(text)


def write_bytes(path: str | os.PathLike, data: bytes, *, option: str | None = None) -> None:
    """Writes ``data`` whole to ``path`` (see :func:`open_output`)."""
    with open_output(path, "wb", option=option) as stream:
        stream.write(data)


def _written(path: str, option: str | None) -> None:
    if option is not None:
        del _WRITTEN[:-_WRITTEN_KEPT]
        _WRITTEN.append((path, option))


def take_written() -> list[tuple[str, str | None]]:
    """The files written (not stdout) since the last call, as (path, option), in order."""
    taken = list(_WRITTEN)
    _WRITTEN.clear()
    return taken
