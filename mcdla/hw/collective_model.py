"""Closed-form (alpha-beta) times of ring collectives on idle rings.

These are the cross-checks of the simulated collectives in
:mod:`mcdla.sim.collectives`, which follow the same model step by step, and the
source of the nccl-tests bandwidth figures reported by ``mcdla collective``.

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

A finite reduction throughput ``reduce_Bps`` per rank (None: free) caps the rate of
the reduce-scatter steps at ``min(B, reduce_Bps)`` in total, because the fused
reduction overlaps the transfer and only the slower of the two sets the pace.
"""

from __future__ import annotations

from mcdla.config.point import COLLECTIVE_OPS

__all__ = ["OPS", "ring_steps", "collective_time_s", "bus_factor", "algbw_Bps", "busbw_Bps"]

OPS = COLLECTIVE_OPS


def _check(op: str, ranks: int) -> None:
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if ranks < 1:
        raise ValueError(f"a ring needs at least 1 rank, got {ranks}")


def ring_steps(op: str, ranks: int) -> int:
    """Sequential ring steps of n/p bytes (for broadcast: hops from the root to the last rank)."""
    _check(op, ranks)
    return 2 * (ranks - 1) if op == "all_reduce" else ranks - 1


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
    only matters for broadcast.
    """
    _check(op, ranks)
    if ranks == 1 or size_bytes == 0:
        return 0.0
    p = ranks
    if op == "broadcast":
        per_ring_Bps = bw_Bps / rings
        a_path = (p - 1) * latency_s if path_latency_s is None else path_latency_s
        return a_path + (p - 2) * chunk_bytes / per_ring_Bps + size_bytes / bw_Bps
    gather_step = latency_s + size_bytes / (p * bw_Bps)
    reduce_bw = bw_Bps if reduce_Bps is None else min(bw_Bps, reduce_Bps)
    reduce_step = latency_s + size_bytes / (p * reduce_bw)
    if op == "all_gather":
        return (p - 1) * gather_step
    if op == "reduce_scatter":
        return (p - 1) * reduce_step
    return (p - 1) * (reduce_step + gather_step)


def bus_factor(op: str, ranks: int) -> float:
    """nccl-tests' busbw / algbw: the fraction of the data each link must carry."""
    _check(op, ranks)
    if op == "all_reduce":
        return 2 * (ranks - 1) / ranks
    if op in ("all_gather", "reduce_scatter"):
        return (ranks - 1) / ranks
    return 1.0


def algbw_Bps(size_bytes: float, time_s: float) -> float:
    """nccl-tests' algorithm bandwidth: size / time (infinite for a zero time)."""
    return size_bytes / time_s if time_s > 0 else float("inf")


def busbw_Bps(op: str, size_bytes: float, time_s: float, ranks: int) -> float:
    """nccl-tests' bus bandwidth: algbw times :func:`bus_factor` (0 on a single rank)."""
    factor = bus_factor(op, ranks)
    return algbw_Bps(size_bytes, time_s) * factor if factor else 0.0
