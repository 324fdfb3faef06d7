"""Busy intervals and their measures: how the Fig. 11 busy and exposed times are read.

A component is *busy* over a set of half-open time intervals (a device computing, a
collective in flight, a DMA engine moving bytes). Busy time is the measure of their
union; *exposed* time of X is the measure of X's busy time not covered by compute,
i.e. the part of X that compute does not hide.
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["union", "measure", "difference_measure"]

# (start, end) or (start, end, label...): only the first two items are read.
Interval = tuple


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering the same time as ``intervals``."""
    merged: list[list[float]] = []
    for start, end in sorted((i[0], i[1]) for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def measure(intervals: Iterable[Interval]) -> float:
    """Total time covered by ``intervals`` (overlaps counted once)."""
    return sum(e - s for s, e in union(intervals))


def difference_measure(a: Iterable[Interval], b: Sequence[Interval] | Iterable[Interval]) -> float:
    """Time covered by ``a`` and not by ``b``."""
    ua, ub = union(a), union(b)
    total, j = 0.0, 0
    for start, end in ua:
        covered = 0.0
        while j < len(ub) and ub[j][1] <= start:
            j += 1
        k = j
        while k < len(ub) and ub[k][0] < end:
            covered += min(end, ub[k][1]) - max(start, ub[k][0])
            k += 1
        total += (end - start) - covered
    return total
