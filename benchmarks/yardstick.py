"""The yardstick every benchmark here is measured against: how fast this machine runs
SimPy (``raw_simpy_rate``), so that a wall time can be given as raw SimPy timeouts, a
figure comparable across machines (bench.py's module docstring)."""

from __future__ import annotations

import time

import simpy


def raw_simpy_rate(timeouts: int, repeat: int = 3) -> float:
    """Timeouts per second of a bare SimPy loop: the machine's yardstick (best of ``repeat``)."""
    best = 0.0
    for _ in range(repeat):
        env = simpy.Environment()

        def loop(env):
            for _ in range(timeouts):
                yield env.timeout(1)

        env.process(loop(env))
        started = time.perf_counter()
        env.run()
        best = max(best, timeouts / (time.perf_counter() - started))
    return best
