"""Phases run one after another without a SimPy process: a chain of callbacks.

A collective's rings each run their phases in turn, every ring at once. A process per
ring costs SimPy two events of its own (its start and its end) and an ``AllOf`` per
phase; here each flow's end calls back, the phase's last one starts the next phase, and
the last ring's last phase succeeds one event. The flows start at the same simulated
times, in the same order, as a process per ring would start them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import simpy

__all__ = ["in_turn"]


def in_turn(env: simpy.Environment, plans: Sequence[Sequence], start: Callable[[object], list]) -> simpy.Event:
    """An event that succeeds once every plan of ``plans`` has run its phases one after
    another: ``start(phase)`` starts a phase's flows and returns their events (none: the
    phase is over at once)."""
    done = env.event()
    left = [len(plans)]

    def finished() -> None:
        left[0] -= 1
        if left[0] == 0:
            done.succeed()

    def run(plan, k: int) -> None:
        while k < len(plan):
            events = start(plan[k])
            if events:
                break
            k += 1
        else:
            finished()
            return
        pending = [len(events)]

        def ended(_event) -> None:
            pending[0] -= 1
            if pending[0] == 0:
                run(plan, k + 1)

        for event in events:
            event.callbacks.append(ended)

    if not plans:
        done.succeed()
    for plan in plans:
        run(plan, 0)
    return done
