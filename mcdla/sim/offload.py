"""Offload policies: which feature maps leave device memory between their last
forward use and backward, and which are recomputed instead, behind :data:`OFFLOADS`.

A policy sees the workload's layers and the execution's options and returns, per
feature map, whether it is offloaded and whether it is recomputed; the driver
(:mod:`mcdla.sim.training`) derives when each is prefetched and freed. Register a new
policy with ``@OFFLOADS.register("name")``.

Activation checkpointing (``training.checkpoint``) composes with every policy: the
maps it recomputes (:func:`checkpointed`) are recomputed whatever the policy, and are
neither stored nor offloaded.
"""

from __future__ import annotations

from dataclasses import dataclass


from mcdla.registry import Registry
from mcdla.sim.liveness import FIT_SLACK, backward_needs, closure, intervals, memory_curve, schedule

__all__ = ["OFFLOADS", "OffloadPolicy", "OffloadAll", "ConvInputs", "CapacityAware", "OffloadDecision",
           "checkpointed", "replayed"]

OFFLOADS: Registry[type["OffloadPolicy"]] = Registry("offload policy")



@dataclass(frozen=True)
class OffloadDecision:
    offloaded: tuple[bool, ...]  # feature map -> leaves the device after its last forward use
    recomputed: tuple[bool, ...]  # feature map -> recomputed in backward from its inputs


def block_of(name: str) -> str:
    """A layer's block instance: its name before the last '/' ('' outside any block);
    a merged in-place layer (``a/bn+a/relu``, mcdla.hw.fusion) is its first part's."""
    return name.partition("+")[0].rpartition("/")[0]


def checkpointed(layers, checkpoint: str) -> tuple[bool, ...]:
    """Feature map -> recomputed in backward by activation checkpointing.

    ``full``: a map made inside a block instance and read only inside it; what leaves
    the block (its output, the next block's input) is stored, so each block's
    backward first rebuilds the whole block from its stored input. ``selective``:
    attention cores, whose output holds the score matrix, the largest map of a
    transformer block and cheap to rebuild from Q, K and V.
    """
    if checkpoint == "none":
        return tuple(False for _ in layers)
    if checkpoint == "selective":
        return tuple(i > 0 and l.kind == "attention" for i, l in enumerate(layers))
    if checkpoint != "full":
        raise ValueError(f"unknown checkpoint mode {checkpoint!r}; expected none, full or selective")
    blocks = [block_of(l.name) for l in layers]
    inside = [bool(b) for b in blocks]  # every consumer of the map is in its block
    consumed = [False] * len(layers)
    for i, layer in enumerate(layers):
        for p in layer.inputs:
            consumed[p] = True
            if blocks[i] != blocks[p]:
                inside[p] = False
    return tuple(i > 0 and inside[i] and consumed[i] for i in range(len(layers)))


def replayed(layers, checkpoint: str, recomputed, read) -> dict[int, tuple[int, ...]]:
    """Full checkpointing reruns a block's whole forward before its backward, as
    Megatron-LM's checkpoint function does (``CheckpointFunction.backward`` in
    ``megatron/mpu/random.py``, 2021, and ``megatron/core/tensor_parallel/random.py``:
    ``outputs = ctx.run_function(*detached_inputs)`` under ``enable_grad``, then
    ``torch.autograd.backward(outputs, args)``). The recompute closure rebuilds only the
    maps some backward reads; this is the rest: block layer -> the layers of its block
    whose forward also reruns before its backward, the block's stored output and the
    maps only it reads (its last GEMM, whose output only the residual add reads). Keyed
    by the block's last layer, whose backward runs first; ``read``: the maps backward
    reads, with the closure's (``Schedule.first_bwd_use``). Empty unless ``full``."""
    if checkpoint != "full":
        return {}
    blocks: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        if i > 0 and (block := block_of(layer.name)):
            blocks.setdefault(block, []).append(i)
    replays = {}
    for members in blocks.values():
        extra = tuple(t for t in members if not (recomputed[t] and t in read))
        if extra:
            replays[max(members)] = extra
    return replays


class OffloadPolicy:
    """Decides, for one run, what leaves the device and what is recomputed.

    :meth:`decide` is called with keywords: ``virtualize`` (offloading is possible),
    ``recompute_cheap``, ``checkpoint`` and ``lookahead`` (the training options), and
    what a capacity-aware policy weighs: ``tensor_bytes`` (what one device holds of
    each map), ``fwd_s`` and ``bwd_s`` (each layer's times), ``memory_bytes`` (the
    device's memory), ``resident_bytes`` (the model state that stays in it) and
    ``dma_Bps`` (one device's offload rate when every device moves data). A policy
    takes the keywords it uses and ``**_`` for the rest. ``searched``: ``mcdla plan``
    tries the policy among its candidates.
    """

    searched = True

    def decide(self, layers, *, virtualize: bool, recompute_cheap: bool, checkpoint: str = "none",
               **_) -> OffloadDecision:
        raise NotImplementedError

    @staticmethod
    def recomputed(layers, *, virtualize: bool, recompute_cheap: bool, checkpoint: str = "none") -> tuple[bool, ...]:
        """Checkpointed maps, and with virtualization the outputs of cheap layers when
        ``recompute_cheap`` (MXNet's policy, paper footnote 4), except the maps
        checkpointing rebuilds from: a cheap block output recomputed in turn would
        chain every block's recompute back to the start of the network."""
        ckpt = checkpointed(layers, checkpoint)
        sources = {p for t, c in enumerate(ckpt) if c for p in layers[t].inputs if not ckpt[p]}
        return tuple(c or (virtualize and recompute_cheap and l.cheap and i > 0 and i not in sources)
                     for i, (l, c) in enumerate(zip(layers, ckpt)))


@OFFLOADS.register("offload_all")
class OffloadAll(OffloadPolicy):
    """vDNN offload-all (paper Section IV): every feature map that backward reads again
    and that is not recomputed is offloaded; outputs of cheap layers are recomputed
    (MXNet's policy, paper footnote 4) when ``recompute_cheap``."""

    def decide(self, layers, *, virtualize, recompute_cheap, checkpoint="none", **_):
        recomputed = self.recomputed(layers, virtualize=virtualize, recompute_cheap=recompute_cheap,
                                     checkpoint=checkpoint)
        read = schedule(layers, recomputed).last_bwd_use  # every map backward reads
        offloaded = tuple(virtualize and not recomputed[t] and t in read for t in range(len(layers)))
        return OffloadDecision(offloaded, recomputed)


@OFFLOADS.register("vdnn_conv")
class ConvInputs(OffloadPolicy):
    """vDNN's static vDNN_conv policy (Rhu et al., MICRO 2016, Section III-C: "offload
    only the input feature maps of CONV layers"): of what offload-all would move, only
    the maps a convolution's backward reads (with cheap layers recomputed, the stored
    maps its recomputed input is rebuilt from) leave the device; the others stay in it
    from their forward to their last backward use. A network without convolutions (the
    RNNs) offloads nothing. Not a paper preset: a reading of the paper's "vDNN" for the
    headline_sensitivity experiment, so ``mcdla plan`` does not search it."""

    searched = False

    def decide(self, layers, *, virtualize, recompute_cheap, checkpoint="none", **_):
        # Offload-all's decision: what it moves, and the recompute (the same for both policies).
        all_maps = OffloadAll().decide(layers, virtualize=virtualize, recompute_cheap=recompute_cheap,
                                       checkpoint=checkpoint)
        needs = backward_needs(layers)
        conv = {t for i, layer in enumerate(layers) if i > 0 and layer.kind == "conv"
                for t in closure(needs[i], layers, all_maps.recomputed)}
        offloaded = tuple(moved and t in conv for t, moved in enumerate(all_maps.offloaded))
        return OffloadDecision(offloaded, all_maps.recomputed)


@OFFLOADS.register("capacity_aware")
class CapacityAware(OffloadPolicy):
    """Keeps what fits in device memory; offloads feature maps only until the device's
    memory peak (:mod:`mcdla.sim.liveness`) fits its capacity.

    Maps are chosen by the most time between their last forward use and their first
    backward use (the most slack to hide the offload and the prefetch behind compute)
    until the peak fits; then every chosen map whose removal still fits is dropped
    from the set, least slack first, so removing any one that remains would not fit.
    The model state and the input batch stay.

    Outputs of cheap layers are not recomputed while the maps fit as they are. When
    they do not and ``recompute_cheap`` is on, a set is chosen both ways, keeping cheap
    outputs (more bytes to move) and recomputing them (compute spent), and the cheaper
    one by :meth:`cost` is taken: recompute time plus DMA time that compute cannot
    cover, at ``dma_Bps`` (the per-device offload rate when every device moves data).
    """

    def decide(self, layers, *, virtualize, recompute_cheap, checkpoint="none", lookahead=1,
               tensor_bytes=None, fwd_s=None, bwd_s=None, memory_bytes=None, resident_bytes=0.0,
               dma_Bps=None, **_):
        if tensor_bytes is None or fwd_s is None or bwd_s is None or memory_bytes is None:
            raise ValueError("capacity_aware needs tensor_bytes, fwd_s, bwd_s and memory_bytes")
        tiers = [self.recomputed(layers, virtualize=virtualize, recompute_cheap=False, checkpoint=checkpoint)]
        if virtualize and recompute_cheap:
            tiers.append(self.recomputed(layers, virtualize=True, recompute_cheap=True, checkpoint=checkpoint))
        best = None
        for recomputed in tiers:
            sched = schedule(layers, recomputed)
            chosen = self.minimal_set(sched, recomputed, tensor_bytes, fwd_s, bwd_s, memory_bytes, resident_bytes,
                                      virtualize=virtualize, lookahead=lookahead)
            if chosen is None:
                continue
            offloaded = tuple(t in chosen for t in range(len(layers)))
            if not chosen and best is None:  # fits with nothing moved or recomputed beyond checkpointing
                return OffloadDecision(offloaded, recomputed)
            cost = self.cost(sched, recomputed, chosen, tensor_bytes, fwd_s, bwd_s, dma_Bps)
            if best is None or cost < best[0]:
                best = (cost, OffloadDecision(offloaded, recomputed))
        if best is not None:
            return best[1]
        # Nothing fits the estimate, which reserves every prefetch when it is issued; the
        # driver can still run by making prefetches wait for room, as offload-all does.
        return OffloadAll().decide(layers, virtualize=virtualize, recompute_cheap=recompute_cheap,
                                   checkpoint=checkpoint)

    @classmethod
    def minimal_set(cls, sched, recomputed, tensor_bytes, fwd_s, bwd_s, memory_bytes, resident_bytes, *,
                    virtualize, lookahead) -> set[int] | None:
        """The maps to offload so the peak fits ``memory_bytes`` (None: no set fits)."""
        limit = memory_bytes * (1 + FIT_SLACK)
        none = tuple(False for _ in recomputed)
        held = intervals(sched, none, recomputed, virtualize=virtualize, lookahead=lookahead)
        curve = memory_curve(sched, tensor_bytes, held, resident_bytes)
        if curve.max() <= limit:
            return set()
        if not virtualize:  # nothing can leave
            return None
        chosen = []
        for t, gap in cls._candidates(sched, recomputed, tensor_bytes, fwd_s, bwd_s, lookahead):
            curve[gap] -= tensor_bytes[t]
            chosen.append((t, gap))
            if curve.max() <= limit:
                break
        else:
            return None
        # Keeping a map only adds bytes, so one pass, least slack first, leaves a set
        # from which no map can be removed and still fit.
        for k in range(len(chosen) - 1, -1, -1):
            t, gap = chosen[k]
            if curve[gap].max() + tensor_bytes[t] <= limit:
                curve[gap] += tensor_bytes[t]
                del chosen[k]
        return {t for t, _ in chosen}

    @staticmethod
    def cost(sched, recomputed, chosen, tensor_bytes, fwd_s, bwd_s, dma_Bps) -> float:
        """A rough time cost of a plan: the recompute it charges, plus offload and
        prefetch time beyond the forward and backward compute they overlap (each
        direction has its own engine). Without a DMA rate, moving bytes costs nothing."""
        redo = sum(fwd_s[t] for t in sched.last_bwd_use if recomputed[t])
        moved = sum(tensor_bytes[t] for t in chosen)
        dma = moved / dma_Bps if dma_Bps else 0.0
        return redo + max(0.0, dma - sum(fwd_s)) + max(0.0, dma - sum(bwd_s) - redo)

    @staticmethod
    def _candidates(sched, recomputed, tensor_bytes, fwd_s, bwd_s, lookahead):
        """(map, the points where offloading it frees its bytes), most slack first."""
        import numpy as np  # here, as in liveness: only capacity_aware needs it

        n = sched.layers
        fwd_after = np.cumsum(np.asarray(fwd_s, dtype=float)[::-1])[::-1]  # fwd_after[i]: layers i.. n-1
        bwd_first = np.concatenate(([0.0], np.cumsum([bwd_s[n - 1 - k] for k in range(n - 1)])))
        found = []
        for t, first in sched.first_bwd_use.items():
            if t == 0 or recomputed[t] or tensor_bytes[t] <= 0:
                continue
            last_fwd = sched.last_fwd_use[t]
            gap = slice(last_fwd + 1, n + sched.issue(t, lookahead))  # held neither in forward nor yet prefetched
            if gap.start >= gap.stop:
                continue
            after = fwd_after[last_fwd + 1] if last_fwd + 1 < n else 0.0
            found.append((-(after + bwd_first[first]), t, gap))
        found.sort(key=lambda f: (f[0], f[1]))
        return [(t, gap) for _, t, gap in found]
