"""A pass over a chunk of layers: what one forward and one backward of a micro-batch
do there, derived once per chunk from the run's plan (:mod:`mcdla.sim.plan`).

Without micro-batches the only chunk is every layer, and the pass is the plan itself
(the paper's iteration): each feature map is allocated when its layer writes it and
freed at its last use. With micro-batches (pipeline stages, gradient accumulation),
a chunk is a stage's layers (a virtual stage's, interleaved), and the maps a
micro-batch keeps from its forward to its backward, the chunk's *stash* (its own maps
neither offloaded, recomputed nor dropped, plus the activations it received from the
previous stage, which autograd keeps), are reserved together when its forward starts
and freed together when its backward ends: what a stage holds per in-flight
micro-batch. Offloaded and recomputed maps come and go one at a time, as without
micro-batches. Uses are the chunk's own: a map of this stage read only by a later
one is sent, not kept (with virtualization) and not offloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcdla.sim.liveness import schedule
from mcdla.sim.schedule import Step, steps

__all__ = ["PassPlan", "pass_plan", "DeviceWork", "whole_pass"]


@dataclass(frozen=True)
class PassPlan:
    """One chunk of layers as a forward and a backward pass run it."""

    fwd_order: tuple[int, ...]  # the chunk's layers but the input, in order
    bwd_order: tuple[int, ...]  # the same, reversed
    last_fwd_use: dict[int, int]  # the chunk's map -> the last of its layers reading it in forward
    offloaded: tuple[bool, ...]  # map -> leaves the device after its last forward use here
    recomputed: tuple[bool, ...]  # map -> rebuilt in this chunk's backward
    dropped: tuple[bool, ...]  # map -> freed at its last forward use without an offload
    first_need: dict[int, int]  # offloaded map -> the backward step (within the chunk) first reading it
    frees: tuple[tuple[int, ...], ...]  # backward step -> maps freed after it (not the stash's)
    stashed: frozenset[int]  # maps reserved with the stash (none without micro-batches)
    stash_bytes: float  # reserved when a micro-batch's forward starts, freed after its backward
    leftover: tuple[int, ...]  # maps kept to the iteration's end (without virtualization, never read back)
    replays: dict[int, tuple[int, ...]]  # layer -> its block's layers rerun before its backward, not kept


def pass_plan(plan, layers, own: range, virtualize: bool, received_bytes: float | None = None) -> PassPlan:
    """The pass over ``own`` (layer indices). ``received_bytes``: with micro-batches, the
    activations received from the previous stage (0.0 on the first), which makes the
    kept maps a stash; None without micro-batches."""
    n = len(layers)
    mine = set(own)
    local = schedule(layers, [plan.recomputed[t] and t in mine for t in range(n)], own)
    read = local.last_bwd_use
    offloaded = tuple(plan.offloaded[t] and t in mine and t in read for t in range(n))
    recomputed = tuple(plan.recomputed[t] and t in mine for t in range(n))
    dropped = tuple(t in mine and not o and (r or (virtualize and t not in read))
                    for t, (o, r) in enumerate(zip(offloaded, recomputed)))
    kept = [t for t in own if not offloaded[t] and not dropped[t]]
    stashed = frozenset(kept) if received_bytes is not None else frozenset()
    stash_bytes = (sum(plan.tensor_bytes[t] for t in kept) + received_bytes) if received_bytes is not None else 0.0
    fwd = tuple(i for i in own if i > 0)
    frees: list[list[int]] = [[] for _ in fwd]
    for t, step in sorted(read.items()):
        if t in mine and t not in stashed:
            frees[step].append(t)
    return PassPlan(fwd, fwd[::-1], {t: local.last_fwd_use[t] for t in own}, offloaded, recomputed, dropped,
                    {t: s for t, s in local.first_bwd_use.items() if offloaded[t]}, tuple(map(tuple, frees)),
                    stashed, stash_bytes,
                    tuple(t for t in own if t not in read and not dropped[t] and t not in stashed),
                    {i: tuple(t for t in ts if t in mine) for i, ts in plan.replays.items() if i in mine})


@dataclass(frozen=True)
class DeviceWork:
    """What one device runs: its schedule's steps over its chunks' passes, and its share
    of the optimizer step."""

    steps: tuple[Step, ...]
    passes: tuple[PassPlan, ...]  # chunk -> its pass
    micro_batches: int
    step_s: float  # its optimizer step
    weight_bytes: float  # the weights it holds (ZeRO's all-gather after the step)
    stashed: bool  # micro-batched: each chunk's kept maps are a stash per micro-batch


def whole_pass(plan, layers, virtualize: bool) -> DeviceWork:
    """Without micro-batches: one forward and one backward over every layer."""
    return DeviceWork(tuple(steps("none", 0, 1, 1)), (pass_plan(plan, layers, range(len(layers)), virtualize),), 1,
                      plan.step_s, sum(plan.group_bytes.values()), False)
