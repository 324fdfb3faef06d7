"""Offload policies: which feature maps leave device memory between their last
forward use and backward, and which are recomputed instead, behind :data:`OFFLOADS`.

A policy sees the workload's layers and the execution's options and returns, per
feature map, whether it is offloaded and whether it is recomputed; the driver
(:mod:`mcdla.sim.training`) derives when each is prefetched and freed. Register a new
policy (a capacity-aware one, say) with ``@OFFLOADS.register("name")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from mcdla.hw.layers import NO_INPUT_NEEDED
from mcdla.registry import Registry

__all__ = ["OFFLOADS", "OffloadPolicy", "OffloadAll", "OffloadDecision", "NO_INPUT_NEEDED",
           "backward_needs", "closure"]

OFFLOADS: Registry[type["OffloadPolicy"]] = Registry("offload policy")



@dataclass(frozen=True)
class OffloadDecision:
    offloaded: tuple[bool, ...]  # feature map -> leaves the device after its last forward use
    recomputed: tuple[bool, ...]  # feature map -> recomputed in backward from its inputs


def backward_needs(layers) -> tuple[tuple[int, ...], ...]:
    """Layer -> the feature maps its backward reads (a merged in-place layer says its own)."""
    return tuple(() if i == 0 else l.bwd_reads if l.bwd_reads is not None
                 else () if l.kind in NO_INPUT_NEEDED else tuple(l.inputs)
                 for i, l in enumerate(layers))


def closure(needs: Sequence[int], layers, recomputed: Sequence[bool]) -> list[int]:
    """The tensors read to materialize ``needs``: recomputed ones pull in their inputs."""
    seen: list[int] = []
    stack = list(needs)
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.append(t)
        if recomputed[t]:
            stack.extend(layers[t].inputs)
    return seen


class OffloadPolicy:
    """Decides, for one run, what leaves the device and what is recomputed."""

    def decide(self, layers, *, virtualize: bool, recompute_cheap: bool) -> OffloadDecision:
        raise NotImplementedError


@OFFLOADS.register("offload_all")
class OffloadAll(OffloadPolicy):
    """vDNN offload-all (paper Section IV): every feature map that backward reads again
    and that is not recomputed is offloaded; outputs of cheap layers are recomputed
    (MXNet's policy, paper footnote 4) when ``recompute_cheap``."""

    def decide(self, layers, *, virtualize, recompute_cheap):
        recomputed = tuple(virtualize and recompute_cheap and l.cheap and i > 0
                           for i, l in enumerate(layers))
        needs = backward_needs(layers)
        read = set()
        for i in range(len(layers) - 1, 0, -1):
            read.update(closure(needs[i], layers, recomputed))
        offloaded = tuple(virtualize and not recomputed[t] and t in read for t in range(len(layers)))
        return OffloadDecision(offloaded, recomputed)
