"""Tensor parallelism's hooks around a layer (the plan's split: hw/parallelism.tensor_split).

Each hook is a generator the device runs around layer i's kernel, as every axis that
acts around a layer does (:data:`mcdla.sim.device.LAYER_HOOKS`; expert parallelism's
are :mod:`mcdla.sim.expert`): the collectives over the device's tensor-parallel group,
``tag`` telling apart the micro-batches of a schedule. The paper's model-parallel
gathers and dX are the device's own (they split every layer over all the devices).
"""

from __future__ import annotations

from mcdla.hw.fp8 import FP8_BYTES
from mcdla.sim import expert
from mcdla.sim.offload import block_of

__all__ = ["before_forward", "after_forward", "before_backward", "after_backward", "overlapped", "overlapping",
           "chunks"]

# The layers Transformer Engine's modules run, whose GEMMs userbuffers overlap with their
# tensor-parallel communication: a block's linear layers (the embedding and the output
# layer are Megatron's own modules, their collectives not overlapped).
_OVERLAPPED_KINDS = ("linear", "fc")


def overlapping(layers, tp) -> frozenset[int]:
    """The layers whose tensor-parallel collectives run beside their kernel with TP
    communication overlap (``execution.tp_comm_overlap``): a block's GEMM layers with
    any (``tp``: the run's TensorSplit)."""
    return frozenset(i for i, layer in enumerate(layers)
                     if layer.kind in _OVERLAPPED_KINDS and block_of(layer.name)
                     and (i in tp.gathers or i in tp.reduce_out or i in tp.partial_dx))


def chunks(i: int, phase: str, tp, over: frozenset[int]) -> int:
    """The pieces layer i's GEMM of ``phase`` runs in beside its communication: the
    tensor degree where userbuffers pipeline it with an exchange of its tokens (forward:
    the input's all-gather or the output's reduce-scatter; backward: dY's all-gather
    before the dX GEMM, Transformer Engine's ring exchange), else whole (a column-parallel
    layer's dX reduce-scatter runs beside its weight-gradient GEMM, TE's bulk overlap)."""
    if i not in over:
        return 1
    return tp.degree if phase == "fwd" or i in tp.reduce_out else 1


def _join(device, key: tuple, op: str, tensor: int, size: float):
    """The collective of ``size`` bytes on map ``tensor`` over its group: an expert slot
    map's over the expert-tensor group (none with et = 1: the experts are whole on a rank)."""
    stream = expert.tensor_stream(device, tensor)
    if stream is not None:
        yield stream.join(key, op, size, device=device.device)


def before_forward(device, i: int, tag: tuple = (), beside: bool = False):
    """The split inputs layer i needs whole, all-gathered (``beside``: only where they
    run beside its kernel, :func:`overlapping`; else only where they do not). In FP8
    training a linear layer run in FP8 gathers them in FP8: Transformer Engine quantizes
    the local shard, or has the norm before it write FP8, before the all-gather
    (Linear's and LayerNormLinear's sequence-parallel input; mcdla.hw.fp8)."""
    if (i in device.overlapping) == beside:
        workload = device.inputs.workload
        moved = FP8_BYTES if workload.layers[i].fp8 else workload.precision_bytes
        for p in device.plan.tp.gathers.get(i, ()):
            yield from _join(device, ("tp-gather", *tag, i, p), "all_gather", p, device.plan.moved_bytes(p, moved))


def after_forward(device, i: int, tag: tuple = (), beside: bool = False):
    """A row-parallel layer's partial output, summed over the group."""
    tp = device.plan.tp
    if i in tp.reduce_out and (i in device.overlapping) == beside:
        yield from _join(device, ("tp-out", *tag, i), tp.out_op(), i, device.plan.group_full_bytes[i])


def before_backward(device, i: int, tag: tuple = (), beside: bool = False):
    """With sequence parallelism, dY arrives as token shards: all-gathered."""
    tp = device.plan.tp
    if tp.sequence and i in tp.reduce_out and (i in device.overlapping) == beside:
        yield from _join(device, ("tp-dY", *tag, i), "all_gather", i, device.plan.group_full_bytes[i])


def after_backward(device, i: int, tag: tuple = (), beside: bool = False):
    """Column-parallel consumers' partial dX, summed."""
    tp = device.plan.tp
    if (i in device.overlapping) == beside:
        for p in tp.partial_dx.get(i, ()):  # a gradient: at the workload's precision
            size = device.plan.moved_bytes(p, device.inputs.workload.precision_bytes)
            yield from _join(device, ("tp-dX", *tag, p), tp.dx_op(p), p, size)


def overlapped(device, i: int, tag: tuple, phase: str) -> list:
    """Layer i's tensor-parallel collectives of ``phase`` joined at once, not waited for,
    where they run beside its kernel (:func:`overlapping`; none elsewhere): forward, the
    inputs it gathers and its output's reduce-scatter; backward, its dY's gather and the
    partial dX it computes. The device waits for them after the kernel
    (:meth:`mcdla.sim.device.DeviceCompute._kernel`)."""
    hooks = (before_forward, after_forward) if phase == "fwd" else (before_backward, after_backward)
    return [event for hook in hooks for event in hook(device, i, tag, beside=True)]
