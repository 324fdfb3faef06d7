"""Schedules: the passes one device runs in an iteration, in order, behind :data:`SCHEDULES`.

A schedule is a pure function of (stage s, stages p, micro-batches m, chunks v) that
returns a list of :class:`Step`: a forward (``F``) or backward (``B``) pass of one
micro-batch over one chunk of the stage's layers (chunk 0 is all of them, unless the
schedule interleaves v chunks per stage). :class:`~mcdla.sim.device.DeviceCompute`
runs any of them with the same forward and backward code; a pipeline stage only adds
the point-to-point sends and waits between stages.

- ``none``: one forward and one backward over every layer (the paper's iteration).
- ``gpipe``: every forward, then every backward (Huang et al. 2019).
- ``1f1b``: PipeDream-Flush (Narayanan et al. 2021, Megatron-LM's default): p - s - 1
  warm-up forwards on stage s, then one forward and one backward in turn, then the
  remaining backwards. With p = 1 it is gradient accumulation: F, B per micro-batch.
- ``interleaved``: Megatron-LM's interleaved 1F1B (Narayanan et al. SC'21, Section
  2.2.2; ``forward_backward_pipelining_with_interleaving`` in megatron/core/
  pipeline_parallel/schedules.py): each stage holds v chunks (virtual stages s,
  s + p, ..., s + (v - 1) p); the m x v chunk passes run in groups of p micro-batches
  per chunk, (p - s - 1) x 2 + (v - 1) x p warm-up forwards (all of them when m = p),
  then 1F1B over chunk passes. It needs m a multiple of p (Megatron's condition).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from mcdla.registry import Registry

__all__ = ["SCHEDULES", "Step", "steps", "warmup", "in_flight_peak"]


class Step(NamedTuple):
    kind: str  # "F" or "B"
    micro: int  # the micro-batch
    chunk: int = 0  # the stage's chunk of layers (interleaved: the virtual stage chunk x p + s)


ScheduleFn = Callable[[int, int, int, int], list[Step]]
SCHEDULES: Registry[ScheduleFn] = Registry("pipeline schedule")


def steps(kind: str, stage: int, stages: int, micro_batches: int, chunks: int = 1) -> list[Step]:
    """The passes stage ``stage`` of ``stages`` runs, by schedule ``kind``."""
    return SCHEDULES.get(kind, key="training.schedule")(stage, stages, micro_batches, chunks)


def _one_f_one_b(passes_f: list[Step], passes_b: list[Step], warm: int) -> list[Step]:
    """``warm`` forwards, then one forward and one backward in turn, then the rest."""
    order = passes_f[:warm]
    for k in range(len(passes_f) - warm):
        order += [passes_f[warm + k], passes_b[k]]
    return order + passes_b[len(passes_f) - warm:]


@SCHEDULES.register("none")
def no_pipeline(stage: int, stages: int, micro_batches: int, chunks: int = 1) -> list[Step]:
    return [Step("F", 0), Step("B", 0)]


@SCHEDULES.register("gpipe")
def gpipe(stage: int, stages: int, micro_batches: int, chunks: int = 1) -> list[Step]:
    return [Step("F", j) for j in range(micro_batches)] + [Step("B", j) for j in range(micro_batches)]


@SCHEDULES.register("1f1b")
def one_f_one_b(stage: int, stages: int, micro_batches: int, chunks: int = 1) -> list[Step]:
    m = micro_batches
    return _one_f_one_b([Step("F", j) for j in range(m)], [Step("B", j) for j in range(m)],
                        warmup("1f1b", stage, stages, m))


def _interleaved_pass(k: int, stages: int, chunks: int, forward: bool) -> Step:
    """The k-th forward (or backward) chunk pass of a stage: Megatron's
    ``get_model_chunk_id`` and micro-batch order (groups of p micro-batches per chunk;
    backward walks the chunks from the last)."""
    group, within = divmod(k, stages * chunks)
    chunk = within // stages
    micro = group * stages + within % stages
    return Step("F" if forward else "B", micro, chunk if forward else chunks - 1 - chunk)


@SCHEDULES.register("interleaved")
def interleaved(stage: int, stages: int, micro_batches: int, chunks: int = 1) -> list[Step]:
    total = micro_batches * chunks
    fwd = [_interleaved_pass(k, stages, chunks, True) for k in range(total)]
    bwd = [_interleaved_pass(k, stages, chunks, False) for k in range(total)]
    return _one_f_one_b(fwd, bwd, warmup("interleaved", stage, stages, micro_batches, chunks))


def warmup(kind: str, stage: int, stages: int, micro_batches: int, chunks: int = 1) -> int:
    """Forward passes stage ``stage`` runs before its first backward (1F1B's and Megatron's
    interleaved counts; GPipe's all of them)."""
    total = micro_batches * chunks
    if kind == "gpipe":
        return total
    if kind == "interleaved":
        if micro_batches == stages:  # Megatron runs every forward first then
            return total
        return min((stages - stage - 1) * 2 + (chunks - 1) * stages, total)
    if kind == "none":
        return 1
    return min(stages - stage - 1, total)


def in_flight_peak(order: list[Step]) -> int:
    """The most chunk passes whose forward has run and whose backward has not: the
    activations a stage holds at once, in chunks' worth."""
    held = peak = 0
    for step in order:
        held += 1 if step.kind == "F" else -1
        peak = max(peak, held)
    return peak
