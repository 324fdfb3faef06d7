"""The sweep folder: an append-only journal of finished points, and the results table.

``journal.jsonl`` holds one JSON line per finished point (its key, the point, and the
result or the error). A line is written, flushed and fsync'ed as soon as the point
finishes, so a sweep killed with ``kill -9`` loses at most the points that were in
flight; a line torn by the kill is cut off when the journal is next opened. A rerun
reads the journal and runs only the points whose key is absent, so no finished point is
run or written twice (failed points are finished too, unless ``--retry-failed`` asks
for them again: the newer line then wins).

``results.csv`` (and ``results.parquet`` when pyarrow is importable; it is not a
dependency) is derived from the journal after every run: one row per finished point,
in the experiment's point order; the point's keys first (``topology, policy,
workload, parallel, batch, ...``), then the runner's result flattened into dotted
columns (``busy_s.compute``), then ``status, error_kind, error, point_id``. Floats are
written with ``repr`` (shortest exact form), so the same journal always gives the same
bytes; the only column that differs between two runs of the same inputs is
``wall_s``, the simulator's own wall-clock time.

A lock on ``.lock`` keeps two sweeps from writing one folder at the same time.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from mcdla.errors import InputError
from mcdla.io.records import flatten
from mcdla.io.write import open_output, write_text

__all__ = ["Journal", "JOURNAL", "TABLE", "write_table", "read_table", "table_rows"]

JOURNAL = "journal.jsonl"
TABLE = "results.csv"
PARQUET = "results.parquet"
TRAILING = ("status", "error_kind", "error", "point_id")


class Journal:
    """The append-only record of finished points of one sweep folder."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL
        self._stream = None
        self._lock = None

    def __enter__(self) -> "Journal":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._repair()
            self._stream = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            self.__exit__()
            raise InputError(f"cannot write the sweep journal: {exc.strerror}",
                             file=str(self.path)) from None
        except InputError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the lock
            self._lock = None

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no concurrent-writer protection
            return
        self._lock = open(self.folder / ".lock", "w")
        try:
            # lockf (a POSIX record lock) belongs to this process only; a flock would be
            # shared with forked pool workers and outlive this sweep while they exit.
            fcntl.lockf(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise InputError("another sweep is writing this folder", file=str(self.folder)) from None

    def _repair(self) -> None:
        """Cuts a line torn by a kill mid-write, so the next append starts a fresh line."""
        if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
            raise InputError("is not a regular file; a sweep journal must be one", file=str(self.path))
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as stream:
                stream.truncate(data.rfind(b"\n") + 1)

    def records(self) -> dict[str, dict[str, Any]]:
        """Finished points by key (the last line of a key wins)."""
        return read_journal(self.path)

    def append(self, record: Mapping[str, Any]) -> None:
        """Writes one finished point durably before returning."""
        assert self._stream is not None, "journal used outside its with-block"
        # Key order is kept as the runner made it: the table's column order follows it,
        # and must not depend on whether a record came from this run or the journal.
        try:
            self._stream.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
            self._stream.flush()
            os.fsync(self._stream.fileno())
        except OSError as exc:  # a full disk: the points before this one are safe
            raise InputError(f"cannot write the sweep journal: {exc.strerror}",
                             file=str(self.path)) from None


def _valid(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("key"), str)
            and record.get("status") in ("ok", "error") and isinstance(record.get("point", {}), dict))


def read_journal(path: Path | str) -> dict[str, dict[str, Any]]:
    """Finished points by key, the last line of a key winning (a retried point).

    A damaged line (not UTF-8, not a JSON object, no key or status) is skipped and
    reported in one line; its point counts as not run, so a resume runs it again. A
    last line torn by a kill is left for the next writer to cut off.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder, not a sweep journal", file=str(path))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InputError(f"cannot read the sweep journal: {exc.strerror}", file=str(path)) from None
    records: dict[str, dict[str, Any]] = {}
    skipped: list[int] = []
    lines = data.split(b"\n")[:-1]  # what follows the last newline is empty or torn
    for number, raw in enumerate(lines, 1):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            record = None
        if _valid(record):
            records[record["key"]] = record
        elif raw.strip():
            skipped.append(number)
    if skipped:
        print(f"mcdla: {path}: {len(skipped)} damaged journal line(s) skipped (first: line "
              f"{skipped[0]}); their points run again", file=sys.stderr)
    return records


def table_rows(columns: Iterable[str], keyed_points: Iterable[tuple[str, Mapping[str, Any]]],
               records: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and rows of the results table for the finished points, in point order."""
    point_columns = list(columns)
    rows, result_columns = [], {}
    for key, point in keyed_points:
        record = records.get(key)
        if record is None:
            continue
        row = {c: point.get(c) for c in point_columns}
        for name, value in flatten(record.get("result") or {}).items():
            if name in row or name in TRAILING:  # the point's own value is the identity
                continue
            result_columns.setdefault(name, None)
            row[name] = value
        row.update(status=record["status"], error_kind=record.get("error_kind"),
                   error=record.get("error"), point_id=key)
        rows.append(row)
    return point_columns + list(result_columns) + list(TRAILING), rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def write_table(folder: Path | str, header: list[str], rows: list[dict[str, Any]]) -> Path:
    """Writes results.csv (and results.parquet if pyarrow is importable) and returns the CSV path."""
    import io

    folder = Path(folder)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in header])
    path = folder / TABLE
    write_text(path, buffer.getvalue())
    try:
        import pyarrow  # noqa: F401 - optional: parquet only where it is installed
    except ImportError:
        return path
    table = read_table(folder)
    with open_output(folder / PARQUET, "wb") as stream:
        table.to_parquet(stream, index=False)
    return path


def read_table(folder: Path | str):
    """The results table of a sweep folder as a pandas DataFrame."""
    import pandas as pd

    path = Path(folder) / TABLE
    if not path.is_file():
        raise InputError("no results table; run mcdla sweep first", file=str(path))
    return pd.read_csv(path, low_memory=False)
