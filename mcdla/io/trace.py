"""One simulated iteration as a Chrome / Perfetto trace (JSON trace-event format).

Open the file at https://ui.perfetto.dev (or chrome://tracing). The simulator works
in seconds; the trace-event format counts **microseconds**, so every time is
converted here, at the boundary, by :func:`_us` and nowhere else.

Layout (``pid`` = a "process" row group, ``tid`` = a track inside it):

- one process per device (``D0``, ``D1``, ...), in device order, with three tracks:
  ``compute`` (a span per kernel: ``fwd conv1``, ``bwd fc8``, ``recompute relu3``),
  ``offload`` and ``prefetch`` (a span per DMA of one feature map, named by the
  recorded label, which starts with the direction), and a counter
  ``memory in use`` (bytes of device memory allocated);
- ``collectives``: one track per directed ring; each collective is a span named by
  its op on every ring it ran on, with its size, ranks and tag as arguments;
- ``links``: one counter per directed node pair (``D0>M0``), the summed load of its
  parallel channels as a fraction of their summed capacity, piecewise constant;
- ``memory ports``: one counter per memory port (a memory-node's share for one
  device, a CPU socket's DRAM), as a fraction of its bandwidth.

The link and port counters come from the flow network's timeline, so the run must
be made with ``record_timeline=True`` (``mcdla sim --trace`` does that). The same
counters are what ``mcdla plot --trace`` draws. ``otherData`` carries the run's
configuration and ``iteration_time_us``.

Output is deterministic (events in a fixed order, sorted keys) and written by
:mod:`mcdla.io.write`, so a failed run never leaves a partial trace.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from mcdla.io.write import check_output, write_text

__all__ = ["write_trace", "build_trace", "check_trace_path", "LINK_CATEGORY", "PORT_CATEGORY"]

# Counter categories, read back by mcdla.plots.links.
LINK_CATEGORY = "link_utilization"
PORT_CATEGORY = "port_utilization"
MEMORY_CATEGORY = "device_memory"

_TRACKS = ("compute", "offload", "prefetch")


def _us(time_s: float) -> float:
    """Seconds -> microseconds, the trace format's unit; rounded to a picosecond so
    the text does not carry float noise (the same run gives the same file)."""
    return round(time_s * 1e6, 6)


def _meta(kind: str, pid: int, tid: int | None, **args: Any) -> dict[str, Any]:
    event = {"ph": "M", "name": kind, "pid": pid, "args": args}
    if tid is not None:
        event["tid"] = tid
    return event


def _span(name: str, cat: str, start_s: float, end_s: float, pid: int, tid: int,
          args: dict[str, Any] | None = None) -> dict[str, Any]:
    event = {"ph": "X", "name": name, "cat": cat, "ts": _us(start_s),
             "dur": _us(end_s - start_s), "pid": pid, "tid": tid}
    if args:
        event["args"] = args
    return event


def _steps(changes: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """A piecewise-constant series with one value per instant (the last one wins)."""
    series: list[tuple[float, float]] = []
    for time_s, value in changes:
        if series and series[-1][0] == time_s:
            series[-1] = (time_s, value)
        else:
            series.append((time_s, value))
    return series


def _aggregate(timeline: dict[str, list[tuple[float, float]]], members: list[str],
               capacity_Bps: float) -> list[tuple[float, float]]:
    """Summed load of ``members`` over time, as a fraction of ``capacity_Bps``; starts at 0."""
    changes = sorted(
        (t, i, load) for i, m in enumerate(members) for t, load in timeline.get(m, ())
    )
    current = [0.0] * len(members)
    series = [(0.0, 0.0)]
    for time_s, i, load in changes:
        current[i] = load
        series.append((time_s, sum(current) / capacity_Bps))
    return _steps(series)


def build_trace(record) -> dict[str, Any]:
    """The trace document of one iteration (see the module docstring)."""
    topology, execution = record.inputs.topology, record.inputs.execution
    events: list[dict[str, Any]] = []
    end_s = record.iteration_time_s

    # Devices: compute and DMA spans, memory in use.
    for pid, device in enumerate(record.devices, start=1):
        events.append(_meta("process_name", pid, None, name=device.name))
        events.append(_meta("process_sort_index", pid, None, sort_index=pid))
        for tid, track in enumerate(_TRACKS, start=1):
            events.append(_meta("thread_name", pid, tid, name=track))
            events.append(_meta("thread_sort_index", pid, tid, sort_index=tid))
        for span in device.compute:
            events.append(_span(span.label, "compute", span.start_s, span.end_s, pid, 1))
        for span in device.virtualization:  # a copy engine's transfer, on its direction's track
            events.append(_span(span.label, span.kind, span.start_s, span.end_s, pid, _TRACKS.index(span.kind) + 1))
        for time_s, used in _steps([(0.0, 0.0)] + list(device.memory)):
            events.append({"ph": "C", "name": "memory in use", "cat": MEMORY_CATEGORY,
                           "ts": _us(time_s), "pid": pid, "args": {"bytes": used}})

    # Collectives: one track per directed ring.
    pid = len(record.devices) + 1
    ring_tid = {ring.name: tid for tid, ring in enumerate(topology.rings, start=1)}
    for c in record.collectives:
        for name in c.rings:
            ring_tid.setdefault(name, len(ring_tid) + 1)
    events.append(_meta("process_name", pid, None, name="collectives"))
    events.append(_meta("process_sort_index", pid, None, sort_index=pid))
    for name, tid in ring_tid.items():
        events.append(_meta("thread_name", pid, tid, name=f"ring {name}"))
        events.append(_meta("thread_sort_index", pid, tid, sort_index=tid))
    for c in record.collectives:
        for name, share in zip(c.rings, c.bytes_per_ring):
            events.append(_span(c.op, "collective", c.start_s, c.end_s, pid, ring_tid[name], {
                "size_bytes": c.size_bytes, "ring_share_bytes": share, "ranks": c.ranks,
                "rings": len(c.rings), "tag": c.tag, "axis": c.axis,
            }))

    # Links (directed node pairs) and memory ports: utilization counters.
    timeline = record.timeline or {}
    links = {pair: (list(channels), sum(topology.channels[c].bw_Bps for c in channels))
             for pair, channels in topology.directed_links().items()}
    groups = [
        ("links", LINK_CATEGORY, links),
        ("memory ports", PORT_CATEGORY,
         {p: ([p], port.bw_Bps) for p, port in sorted(topology.ports.items())}),
    ]
    for offset, (title, category, members) in enumerate(groups, start=2):
        pid = len(record.devices) + offset
        events.append(_meta("process_name", pid, None, name=title))
        events.append(_meta("process_sort_index", pid, None, sort_index=pid))
        for name, (resources, capacity_Bps) in members.items():
            for time_s, value in _aggregate(timeline, resources, capacity_Bps):
                events.append({"ph": "C", "name": name, "cat": category, "ts": _us(time_s),
                               "pid": pid, "args": {"utilization": value}})

    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "generator": "mcdla",
            "topology": topology.name,
            "policy": execution.policy,
            "workload": record.inputs.workload.name,
            "parallel": execution.parallel,
            "batch": execution.batch,
            "iteration_time_us": _us(end_s),
        },
    }


def check_trace_path(path: str | os.PathLike) -> None:
    """Refuses, before any simulation, a trace path that cannot be written."""
    check_output(path, "--trace")


def write_trace(path: str | os.PathLike, record) -> None:
    """Writes the trace of one iteration to ``path`` (atomically for a regular file)."""
    check_trace_path(path)
    document = build_trace(record)
    lines = ",\n".join(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in document["traceEvents"])
    header = {k: v for k, v in document.items() if k != "traceEvents"}
    text = "{\"traceEvents\":[\n" + lines + "\n],\n" + json.dumps(header, sort_keys=True)[1:] + "\n"
    write_text(path, text, option="--trace")
