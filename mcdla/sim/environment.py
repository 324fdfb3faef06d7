"""The SimPy environment mcdla runs on: SimPy's own, counting the events it processes.

The event count is part of every result (``events``) and of the benchmark's events
per second, the figure that tells whether the simulator's cost tracks its work.
"""

from __future__ import annotations

import simpy

__all__ = ["CountingEnvironment"]


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()
