"""Closed-form (alpha-beta) times of ring collectives on idle rings.

These are the cross-checks of the simulated collectives in
:mod:`mcdla.sim.collectives`, which follow the same model step by step, and the
source of the nccl-tests bandwidth figures reported by ``mcdla collective``. The
formula is written once, per directed ring, in :func:`ring_time_s`: the ring
algorithm's closed form (``RingAlgorithm.costed_time_s``) applies it to every ring at
that ring's max-min fair rate, and :func:`collective_time_s` to ``R`` equal rings.

Notation: ``n`` is the message size in bytes (the whole buffer, as in nccl-tests:
all-gather's output, reduce-scatter's input), ``p`` the ranks per ring, ``R`` the
number of directed rings, ``b`` the bandwidth of one ring (its slowest channel),
``B = R * b`` the total, ``a`` the per-step latency (the ring's slowest segment: a
ring step waits for the slowest hop, since the next step needs its data).

- all-reduce = reduce-scatter + all-gather: ``2(p-1)(a + n/(p B))``
- all-gather, reduce-scatter: ``(p-1)(a + n/(p B))``
- broadcast, pipelined in chunks of ``c`` from the root along each ring (every ring
  carries ``n/R``): ``a_path + (p-2) c/b + n/B``. Latency is a wire delay that
  consecutive chunks overlap, so it is paid once along the path (``a_path``, the
  summed latency of the p-1 segments from the root: ``(p-1) a`` on a uniform ring);
  each of the p-2 intermediate ranks must receive a whole chunk before forwarding
  it, which adds the pipeline fill ``(p-2) c/b``; after that the data streams at
  ``b`` per ring. As ``c -> 0`` this converges to ``a_path + n/B``.
- all-to-all, pairwise along each directed ring (every ring carries ``n/R``; each rank
  sends ``1/p`` of its share to every rank): ``p-1`` steps; in step ``k`` rank ``i``
  sends its piece for rank ``i+k`` ``k`` hops forward along the ring, relayed by the
  ranks between (cut-through: ``k a`` of latency), so every channel carries ``k`` pieces
  in step ``k``: ``sum_k (k a + k n/(p B)) = p(p-1)/2 (a + n/(p B))``. The ring goes one
  way only, not the shortest way round (the two directions of a bidirectional ring each
  carry half the message, so on average a piece still crosses ``p/2`` hops).
- all-to-allv, skewed (``mcdla.sim.fabric_collectives``: directly over a switch): one
  *hot* rank receives the share ``h`` of every rank's data (the hottest expert's
  tokens), the others ``(1-h)/(p-1)`` each; ``h = 1/p`` is the uniform all-to-all. With
  ``h >= 1/p`` the hot rank's down channel carries the most, ``(p-1) h n/R``, and stays
  saturated to the end, so the slowest (hot) rank takes ``a + (p-1) h n/(R b)``
  (:func:`hot_rank_time_s`).

A finite reduction throughput ``reduce_Bps`` per rank (None: free) caps the rate of
the reduce-scatter steps at ``min(B, reduce_Bps)`` in total, because the fused
reduction overlaps the transfer and only the slower of the two sets the pace.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from mcdla.config.point import COLLECTIVE_OPS

__all__ = ["OPS", "REDUCING", "GATHERING", "ring_steps", "bottleneck_Bps", "pipeline_latency_s", "ring_time_s",
           "collective_time_s", "bus_factor", "PERSONAL",
           "destination_shares", "hot_rank_time_s", "algbw_Bps", "busbw_Bps"]

OPS = COLLECTIVE_OPS
REDUCING = ("all_reduce", "reduce_scatter")  # the operations with a reduce-scatter phase
GATHERING = ("all_reduce", "all_gather")  # the operations with an all-gather phase
PERSONAL = ("all_to_all", "all_to_allv")  # every rank's piece for every other rank is its own: nothing to reduce or share


def _check(op: str, ranks: int) -> None:
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if ranks < 1:
        raise ValueError(f"a ring needs at least 1 rank, got {ranks}")


def ring_steps(op: str, ranks: int) -> int:
    """Sequential ring steps of n/p bytes (for broadcast: hops from the root to the last
    rank; for all-to-all: the n/p pieces each channel carries over its p-1 steps)."""
    _check(op, ranks)
    if op == "all_to_all":  # step k carries k pieces over every channel (the module docstring)
        return ranks * (ranks - 1) // 2
    return 2 * (ranks - 1) if op == "all_reduce" else ranks - 1


def bottleneck_Bps(path: Iterable[str], capacities_Bps: Mapping[str, float]) -> float:
    """The idle rate of a path: its slowest resource's capacity (inf where none is
    constrained)."""
    return min((capacities_Bps.get(c, math.inf) for c in path), default=math.inf)


def pipeline_latency_s(
    path_latency_s: float,
    forwarders: int,
    chunk_bytes: float,
    share_bytes: float,
    fill_Bps: float,
    wire_factor: float = 1.0,
) -> float:
    """The latency of a broadcast pipelined in chunks along a path: the path's summed
    segment latency (paid once: consecutive chunks overlap it) and the pipeline fill,
    each of the ``forwarders`` intermediate ranks receiving a whole chunk (at most the
    ``share_bytes`` there are, with ``wire_factor`` wire bytes per data byte) at
    ``fill_Bps`` before forwarding it."""
    return path_latency_s + forwarders * min(chunk_bytes, share_bytes) * wire_factor / fill_Bps


def ring_time_s(
    op: str,
    ranks: int,
    share_bytes: float,
    rate_Bps: float,
    step_latency_s: float,
    *,
    reduce_rate_Bps: float | None = None,
    wire_factor: float = 1.0,
    chunk_bytes: float = 0.0,
    fill_Bps: float | None = None,
    path_latency_s: float | None = None,
) -> float:
    """Time of one directed ring's part of ``op``: ``share_bytes`` of data over ``ranks``
    ranks, on the wire at ``rate_Bps`` (wire bytes/s, ``wire_factor`` of them per data
    byte) and, where a reduction sets a slower pace, its reduce-scatter steps at
    ``reduce_rate_Bps``.

    The ring alpha-beta formula of the module docstring, per ring: ``a`` is
    ``step_latency_s``; broadcast (from the rank before segment 0) pays
    ``path_latency_s`` (default ``(p-1) a``) and a pipeline fill of ``chunk_bytes`` at
    ``fill_Bps`` (default: the ring's rate) once (:func:`pipeline_latency_s`).
    """
    _check(op, ranks)
    p = ranks
    if p == 1 or share_bytes == 0:
        return 0.0
    if op == "broadcast":
        a_path = (p - 1) * step_latency_s if path_latency_s is None else path_latency_s
        fill = rate_Bps if fill_Bps is None else fill_Bps
        return (pipeline_latency_s(a_path, p - 2, chunk_bytes, share_bytes, fill, wire_factor)
                + share_bytes * wire_factor / rate_Bps)
    piece = share_bytes / p * wire_factor
    if op == "all_to_all":
        return ring_steps(op, p) * (step_latency_s + piece / rate_Bps)
    reduce_Bps = rate_Bps if reduce_rate_Bps is None else reduce_rate_Bps
    t = (op in REDUCING) * (p - 1) * (step_latency_s + piece / reduce_Bps)
    t += (op in GATHERING) * (p - 1) * (step_latency_s + piece / rate_Bps)
    return t


def destination_shares(ranks: int, hot: int, hot_share: float | None) -> tuple[float, ...]:
    """The share of every rank's all-to-allv data bound for each rank: ``hot_share`` for
    rank ``hot``, the rest split evenly among the others (None: ``1/ranks`` each, the
    uniform all-to-all)."""
    if hot_share is None or ranks == 1:
        return (1.0 / ranks,) * ranks
    if not 0.0 <= hot_share <= 1.0:
        raise ValueError(f"hot_share must be in [0, 1], got {hot_share!r}")
    rest = (1.0 - hot_share) / (ranks - 1)
    return tuple(hot_share if j == hot else rest for j in range(ranks))


def hot_rank_time_s(ranks: int, share_bytes: float, rate_Bps: float, latency_s: float, hot_share: float) -> float:
    """The slowest rank's time of a skewed all-to-allv of ``share_bytes`` per rank sent
    directly through a switch (every rank's channels at ``rate_Bps`` each way): the hot
    rank receiving ``(p-1) h share`` (module docstring; needs ``h >= 1/p``)."""
    if not 1.0 / ranks <= hot_share <= 1.0:
        raise ValueError(f"the hottest destination's share must be in [1/{ranks}, 1], got {hot_share!r}")
    return latency_s + (ranks - 1) * hot_share * share_bytes / rate_Bps


def collective_time_s(
    op: str,
    size_bytes: float,
    ranks: int,
    bw_Bps: float,
    latency_s: float,
    *,
    rings: int = 1,
    chunk_bytes: float = 0.0,
    reduce_Bps: float | None = None,
    path_latency_s: float | None = None,
) -> float:
    """Time of ``op`` on ``rings`` idle directed rings of total bandwidth ``bw_Bps``.

    ``latency_s`` is the per-step latency ``a``; ``path_latency_s`` overrides the
    broadcast's ``(p-1) a`` when the segments' latencies differ. ``chunk_bytes``
    only matters for broadcast (a chunk is at most a ring's share). Each ring carries
    ``n/R`` at ``B/R`` (:func:`ring_time_s`); the rings' reduction shares add up to
    ``min(B, reduce_Bps)``.
    """
    _check(op, ranks)
    reduce_rate_Bps = None if reduce_Bps is None else min(bw_Bps, reduce_Bps) / rings
    return ring_time_s(op, ranks, size_bytes / rings, bw_Bps / rings, latency_s, reduce_rate_Bps=reduce_rate_Bps,
                       chunk_bytes=chunk_bytes, path_latency_s=path_latency_s)


def bus_factor(op: str, ranks: int) -> float:
    """nccl-tests' busbw / algbw: the fraction of the data each link must carry
    (all-to-all: (p-1)/p, nccl-tests src/alltoall.cu, AlltoAllGetBw)."""
    _check(op, ranks)
    if op == "all_reduce":
        return 2 * (ranks - 1) / ranks
    if op in ("all_gather", "reduce_scatter", "all_to_all", "all_to_allv"):
        return (ranks - 1) / ranks
    return 1.0


def algbw_Bps(size_bytes: float, time_s: float) -> float:
    """nccl-tests' algorithm bandwidth: size / time (infinite for a zero time)."""
    return size_bytes / time_s if time_s > 0 else float("inf")


def busbw_Bps(op: str, size_bytes: float, time_s: float, ranks: int) -> float:
    """nccl-tests' bus bandwidth: algbw times :func:`bus_factor` (0 on a single rank)."""
    factor = bus_factor(op, ranks)
    return algbw_Bps(size_bytes, time_s) * factor if factor else 0.0
