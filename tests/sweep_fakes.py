"""Fake point runners for the sweep tests: fast, deterministic, independent of the simulator.

They return results shaped like ``mcdla sim``'s JSON, computed from the point by a
closed form, so a table can be checked without running the simulator.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

from mcdla.errors import InfeasibleError, InputError

_DESIGN_FACTOR = {"dc": 4.0, "hc": 3.0, "star": 1.3, "ring": 1.1, "oracle": 1.0}


def run(point: Mapping[str, Any]) -> dict[str, Any]:
    """A sim-like result; ``batch`` scales time, the topology sets the design's slowness."""
    if point.get("workload") == "bad":
        raise InputError("unknown workload 'bad'", key="workload")
    if point.get("workload") == "huge":
        raise InfeasibleError("does not fit in memory")
    if point.get("workload") == "bug":
        raise ZeroDivisionError("division by zero")
    factor = _DESIGN_FACTOR.get(str(point.get("topology")), 2.0)
    if point.get("topology") == "ring" and point.get("policy") == "local":
        factor = 1.15
    time_s = factor * float(point.get("batch", 512)) / 512.0 * (2.0 if point.get("parallel") == "model" else 1.0)
    return {
        "topology": point.get("topology"),
        "policy": point.get("policy"),
        "iteration_time_s": time_s,
        "busy_s": {"compute": 1.0, "sync": 0.1 * factor, "virtualization": 0.5 * factor},
        "exposed_s": {"sync": 0.01, "virtualization": time_s - 1.0},
        "cpu_mem_bw_Bps": {"avg": 1e9 * factor, "peak": 2e9 * factor},
        "events": 100,
        "wall_s": 0.001,
    }


def slow(point: Mapping[str, Any]) -> dict[str, Any]:
    """As :func:`run`, after a pause long enough to kill the sweep between points."""
    time.sleep(float(os.environ.get("MCDLA_FAKE_DELAY_S", "0.15")))
    return run(point)


def flaky(point: Mapping[str, Any]) -> dict[str, Any]:
    """Fails the first time it sees a point (a marker file per point in
    MCDLA_FAKE_MARKS), works after: a point retried with --retry-failed."""
    import hashlib
    from pathlib import Path

    marks = Path(os.environ["MCDLA_FAKE_MARKS"])
    mark = marks / hashlib.sha256(repr(sorted(point.items())).encode()).hexdigest()[:16]
    if not mark.exists():
        mark.write_text("seen")
        raise InfeasibleError("fails once")
    return run(point)


def exits(point: Mapping[str, Any]) -> dict[str, Any]:
    """Calls sys.exit(0) for the point of batch 8, as a careless script would."""
    import sys

    if point.get("batch") == 8:
        sys.exit(0)
    return run(point)


def odd(point: Mapping[str, Any]) -> dict[str, Any]:
    """A result with a value JSON cannot hold (a set) for batch 8, a NaN for batch 16."""
    result = run(point)
    if point.get("batch") == 8:
        result["ranks"] = {1, 2}
    if point.get("batch") == 16:
        result["iteration_time_s"] = float("nan")
        result["busy_s"]["sync"] = float("inf")
    return result


def dies(point: Mapping[str, Any]) -> dict[str, Any]:
    """Ends its worker process without a word for batch 8 (a kill, the OOM killer)."""
    if point.get("batch") == 8:
        os._exit(9)
    return run(point)
