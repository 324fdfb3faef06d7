"""What the driver precomputes once per run, identical for every device: per-layer
times, what each device holds of each feature map, the offload plan (which maps leave,
are recomputed, when each is prefetched and freed) and the model state it keeps."""

from __future__ import annotations

import functools
import math

from mcdla.config.execution import ExecutionSpec
from mcdla.hw.compute import layer_time, optimizer_step_time
from mcdla.hw.fp8 import FP8_BYTES, copied_params
from mcdla.hw.memory import model_state_bytes, updated_params
from mcdla.hw.parallelism import device_share, model_split, tensor_split
from mcdla.sim import tensor
from mcdla.sim.expert import by_group, expert_split, held_params, local_layers, resident_by_group, slot_maps
from mcdla.sim.liveness import backward_needs, schedule
from mcdla.sim.offload import OFFLOADS, replayed
from mcdla.sim.records import OffloadPlan, RunInputs

__all__ = ["make_plan", "device_model_state", "device_group_params", "element_bytes"]


def make_plan(inputs: RunInputs, virtualize: bool, micro_batch: int | None = None,
              dp: int | None = None) -> OffloadPlan:
    """The per-layer times and the offload plan, identical for every device: of one
    replica's share of the batch, or (pipelines) of one ``micro_batch`` of samples on a
    stage, ``dp`` data-parallel replicas sharing the optimizer state under ZeRO."""
    topology, workload, execution = inputs.topology, inputs.workload, inputs.execution
    layers = workload.layers
    prec = workload.precision_bytes
    devices = len(topology.devices)
    degree = execution.tensor_parallel
    if micro_batch is None:
        local_batch, shards = device_share(execution.parallel, execution.batch, devices // degree)
    else:  # a pipeline stage's pass (data-parallel training)
        local_batch, shards = micro_batch, 1
    tp = tensor_split(layers, degree, execution.sequence_parallel)
    model = model_split(layers, devices) if execution.parallel == "model" else None
    layer_shards = tp.shards if degree > 1 else model.shards if model else (shards,) * len(layers)
    device = topology.device
    if dp is None:
        dp = devices // degree if execution.parallel == "data" else 1
    split = expert_split(workload, execution, dp)
    local = local_layers(layers, split)  # an expert bank's GEMM reads its rank's experts' weights
    # With TP communication overlap a block's GEMMs run in pieces beside their exchanges
    # (mcdla.sim.tensor.chunks; one piece elsewhere).
    beside = tensor.overlapping(layers, tp) if execution.tp_comm_overlap else frozenset()
    fwd, bwd = (tuple(0.0 if i == 0 else layer_time(device, l, phase, local_batch, prec, layer_shards[i],
                                                    tensor.chunks(i, phase, tp, beside))
                      for i, l in enumerate(local)) for phase in ("fwd", "bwd"))
    # The bytes of each feature map a device holds: batch/D samples in data-parallel
    # training; in model-parallel training, the whole batch and its shard of the output
    # features (docs/model.md): 1/D, or all of a map computed whole and of the input batch,
    # which every device loads whole.
    # (An expert-tensor group's slot maps are its et/t share, split over its et ranks.)
    bwd_needs = backward_needs(layers)
    held = element_bytes(layers, prec, bwd_needs)
    group_full = slot_maps(tuple(float(l.out_elems_per_sample * local_batch * held[i]) for i, l in enumerate(layers)),
                           split)
    if model:
        tensor_bytes = tuple(b / layer_shards[i] if i else b for i, b in enumerate(group_full))
    else:  # batch/D samples; a tensor-parallel rank holds 1/t of each split map
        over = tuple(split.tensor if split and i in split.maps else degree for i in range(len(layers)))
        tensor_bytes = tuple(b / over[i] if tp.split[i] else b for i, b in enumerate(group_full))
    group_params = held_params(device_group_params(workload, layer_shards), split)
    policy = OFFLOADS.get(execution.offload, key="execution.offload")()
    decision = policy.decide(layers, virtualize=virtualize, recompute_cheap=execution.training.recompute_cheap,
                             checkpoint=execution.training.checkpoint, lookahead=execution.training.lookahead,
                             tensor_bytes=tensor_bytes, fwd_s=fwd, bwd_s=bwd, memory_bytes=topology.device_memory_bytes,
                             resident_bytes=device_model_state(workload, execution, devices, group_params, split),
                             dma_Bps=topology.virtualization_rate_Bps(execution.policy) if virtualize else 0.0)
    recomputed, offloaded = decision.recomputed, decision.offloaded
    bwd_order = tuple(range(len(layers) - 1, 0, -1))
    sched = schedule(layers, recomputed)  # when each map is used (the policies' derivation too)
    last_fwd_use, last_bwd_use = sched.last_fwd_use, sched.last_bwd_use
    first_need = {t: s for t, s in sched.first_bwd_use.items() if offloaded[t]}
    frees: list[list[int]] = [[] for _ in bwd_order]
    for t, step in sorted(last_bwd_use.items()):
        frees[step].append(t)

    def to_bytes(elems_by_layer):  # elements per sample -> bytes over the whole batch
        return {i: tuple((t, float(e * execution.batch * prec)) for t, e in ts) for i, ts in elems_by_layer.items()}
    updated = sum(updated_params(sum(part.values()), execution.zero, d)
                  for part, d in by_group(group_params, split, dp))
    step = functools.partial(optimizer_step_time, device, workload, updated, sum(group_params.values()),
                             execution.training.optimizer_passes, copied_params(workload, group_params))
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, layer in enumerate(layers):
        if layer.weight_group is not None:
            first.setdefault(layer.weight_group, i)
            last[layer.weight_group] = i
    dropped = tuple(not o and (r or (virtualize and t not in last_bwd_use))
                    for t, (o, r) in enumerate(zip(offloaded, recomputed)))
    return OffloadPlan(fwd, bwd, tensor_bytes, offloaded, recomputed, last_fwd_use,
                       bwd_needs, bwd_order, first_need, tuple(tuple(f) for f in frees),
                       frozenset(last_bwd_use), to_bytes(model.partial_dx) if model else {},
                       to_bytes(model.gathers) if model else {}, step(),
                       tp, {g: n * prec for g, n in group_params.items()}, group_full,
                       tuple(sorted(first, key=first.get)), first, last, updated, dropped, split,
                       replayed(layers, execution.training.checkpoint, recomputed, sched.first_bwd_use), beside,
                       held, _beside_nccl(device, local, local_batch, prec, layer_shards, tp, beside, step))


def _beside_nccl(device, local, batch: int, prec: int, layer_shards, tp, beside, step):
    """The plan's ``beside_nccl``: (layer, phase, NCCL's HBM rate or None) -> the layer's
    seconds, its kernels timed again as :func:`make_plan` times them, beside NCCL's
    kernels taking that rate (layer None: the optimizer ``step``)."""
    @functools.lru_cache(maxsize=4096)  # a run meets a few collectives' rates, each many times
    def beside_nccl(i: int | None, phase: str, nccl_hbm_Bps: float | None) -> float:
        if i is None:
            return step(nccl_hbm_Bps=nccl_hbm_Bps)
        return 0.0 if i == 0 else layer_time(device, local[i], phase, batch, prec, layer_shards[i],
                                             tensor.chunks(i, phase, tp, beside), nccl_hbm_Bps)
    return beside_nccl


def element_bytes(layers, prec: int, bwd_needs) -> tuple[float, ...]:
    """Feature map -> the bytes an element of it takes on a device: ``prec``, but in FP8
    training (mcdla.hw.fp8) a map that backward reads only in FP8 linear layers is kept
    as Transformer Engine saves it for their wgrad, quantized (1 byte: Linear and
    LayerNormLinear save their input's FP8 copy, not the BF16 map, which is freed or,
    after a norm, never written); an attention core's map (O and the statistics its
    backward reads: the fused kernel's D = rowsum(dO * O), FlashAttention-2) stays at
    ``prec`` beside O's FP8 copy. A dispatch's slots, which the all-to-all moves in
    BF16, stay ``prec``."""
    if not any(l.fp8 for l in layers):
        return (prec,) * len(layers)
    fp8_only = [bool(i) for i in range(len(layers))]  # the data layer's batch stays
    read = [False] * len(layers)
    for i, needs in enumerate(bwd_needs):
        for t in needs:
            read[t] = True
            fp8_only[t] = fp8_only[t] and layers[i].fp8 is not None

    def held(l) -> float:  # an attention map: O and the statistics kept, and O's FP8 copy
        return prec + FP8_BYTES * math.prod(l.out_shape) / l.out_elems_per_sample if l.attention else FP8_BYTES
    return tuple(held(l) if fp8_only[t] and read[t] and l.kind != "moe_dispatch" else prec
                 for t, l in enumerate(layers))


def device_model_state(workload, execution: ExecutionSpec, devices: int, group_params, split=None) -> float:
    """The model state one device keeps for the whole iteration (without pipeline
    stages): 1/D of it in model-parallel training; its tensor-parallel share of the
    weights, with the execution's ZeRO stage and ZeRO-Offload, in data-parallel (the
    experts' ZeRO shards over their expert-data-parallel group, ``split``)."""
    if execution.parallel == "model":
        return model_state_bytes(workload, devices)
    if execution.offload_params:  # ZeRO-Infinity: nothing stays; weights come in per group
        return 0.0
    return sum(model_state_bytes(workload, params=sum(part.values()), fp8_params=copied_params(workload, part),
                                 zero=execution.zero, dp=dp, offload_optimizer=execution.offload_optimizer)
               for part, dp in resident_by_group(group_params, split, devices // execution.tensor_parallel))


def device_group_params(workload, layer_shards) -> dict[str, float]:
    """Weight group -> the parameters one device holds of it: a group is split as the
    layer that owns its parameters (1/shards)."""
    held = {g: float(n) for g, n in workload.weight_groups.items()}
    for layer, shards in zip(workload.layers, layer_shards):
        if layer.weight_group is not None and layer.params and shards > 1:
            held[layer.weight_group] = workload.weight_groups[layer.weight_group] / shards
    return held
