"""A small progress line on stderr: done/total, failures, elapsed time and ETA.

Written here rather than taken from tqdm because the line we need is a dozen lines of
code and one dependency fewer. On a terminal the line redraws in place (at most ten
times a second); otherwise (a log file, CI) it prints a plain line at every tenth of
the sweep, so logs stay short. The ETA is the mean time per point finished in this
run times the points left, divided by nothing more clever: points differ in cost, so
it is an estimate and is labelled so.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts finished points of a sweep and shows them on ``stream``."""

    def __init__(self, total: int, skipped: int, label: str, stream: TextIO | None = None,
                 enabled: bool = True):
        self.total, self.done, self.failed = total, skipped, 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._started = time.monotonic()
        self._run_done = 0  # points finished by this run (the ETA's basis)
        self._last_draw = 0.0
        self._last_tenth = -1
        if skipped and enabled:
            print(f"{label}: {skipped} of {total} points already done; resuming", file=self.stream)

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        left = self.total - self.done
        eta = _clock(elapsed / self._run_done * left) if self._run_done else "?"
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                f"{failed}  elapsed {_clock(elapsed)}  eta {eta}")

    def advance(self, ok: bool) -> None:
        self.done += 1
        self._run_done += 1
        self.failed += 0 if ok else 1
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self.stream.write("\r" + self.line())
                self.stream.flush()
                self._last_draw = now
            return
        tenth = (10 * self.done) // max(self.total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
