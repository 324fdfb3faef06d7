"""The SimPy environment mcdla runs on: SimPy's own, counting the events it processes.

The event count is part of every result (``events``) and of the benchmark's events
per second, the figure that tells whether the simulator's cost tracks its work.
"""

from __future__ import annotations

import simpy

__all__ = ["CountingEnvironment"]


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes (``events_processed``:
    the calls of ``step``, the last one of a run finding the schedule empty).

    Counted without a Python call per event: SimPy numbers every event it schedules
    (``_eid``), and an event scheduled and no longer queued has been processed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._empty_steps = 0  # steps that found the schedule empty: one per exhausting run

    @property
    def events_processed(self) -> int:
        # The next event's number, without taking it: read from the counter's repr
        # ("count(N)"), as copying an itertools.count is gone from Python 3.14.
        scheduled = int(repr(self._eid)[len("count("):-1])
        return scheduled - len(self._queue) + self._empty_steps

    def run(self, until=None):
        try:
            result = super().run(until)
        except RuntimeError:  # "until" never triggered: the schedule ran out
            if not self._queue:
                self._empty_steps += 1
            raise
        if until is None:  # ran until the schedule was empty
            self._empty_steps += 1
        return result
