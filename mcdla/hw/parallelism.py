"""What one device-node computes of a training step, by parallelization mode.

Data-parallel training (paper Fig. 3(a)) gives every device the whole model and
``batch / D`` of the samples, so each layer's kernels run on the local batch with no
sharding. Model-parallel training (Fig. 3(b), Krizhevsky-style) gives every device
the whole batch and ``1 / D`` of every layer's output features: the kernels run on
the whole batch with ``shards = D`` (see :meth:`mcdla.hw.layers.Layer.kernels`).

The training driver and ``mcdla layers`` both ask :func:`device_share` (and, in
model-parallel training, :func:`model_split`), so the per-layer report always times
the same kernels the simulation charges.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from mcdla.errors import InputError

__all__ = ["DeviceShare", "device_share", "ModelSplit", "model_split", "TensorSplit", "tensor_split",
           "pipeline_stages", "even_stages"]


class DeviceShare(NamedTuple):
    """The ``batch`` and ``shards`` arguments of one device's layer kernels."""

    local_batch: int
    shards: int


def device_share(parallel: str, batch: int, devices: int) -> DeviceShare:
    """One device's share of a global ``batch`` over ``devices`` in mode ``parallel``.

    Raises :class:`InputError` (key ``batch``) when data-parallel training cannot
    split the batch evenly: an uneven split would make the devices' iterations
    differ, which the driver does not model.
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    if parallel == "model":
        return DeviceShare(batch, devices)
    if parallel != "data":
        raise ValueError(f"unknown parallel mode {parallel!r}; expected data or model")
    if batch % devices:
        raise InputError(f"{batch} is not divisible by the {devices} devices of data-parallel training",
                         key="batch")
    return DeviceShare(batch // devices, 1)


# Model parallelism (Krizhevsky 2014, the paper's Fig. 3(b)): every layer computes its
# 1/D of the output features over the whole batch, so every feature map is split over
# its features. A GEMM reads its input whole: the split input is all-gathered once per
# tensor (a recurrent step gathers only h_{t-1}, the part its GEMM reads), and backward
# leaves a partial dX of it (W^T dY over the device's output features), summed over
# the devices once per tensor after its last consumer's backward. Each device keeps
# only its shard of the tensor, so the sum is a reduce-scatter, the adjoint of the
# forward all-gather (Megatron-LM's _GatherFromSequenceParallelRegion.backward
# reduce-scatters for the same reason); an all-reduce would also send every device
# the shards it drops. A layer without weights whose inputs are all whole on every
# device (the data, or gathered) and whose output a GEMM reads runs on the whole
# tensor instead of its shard (GoogLeNet's pool branch reads the module's gathered
# input): its output needs no gather, and as its backward is linear in dY its partial
# dX folds into its inputs' reductions. Everything else runs on its shard: no gather,
# no reduction.


class ModelSplit(NamedTuple):
    """How a model-parallel layer DAG runs over D devices (see above); sizes in
    elements per sample."""

    shards: tuple[int, ...]  # layer -> D (its shard of the output features) or 1 (run whole)
    gathers: dict[int, tuple[tuple[int, int], ...]]  # layer -> (tensor, elements) it needs whole
    partial_dx: dict[int, tuple[tuple[int, int], ...]]  # backward layer -> (tensor, elements) it completes


def _weightless(layer) -> bool:
    """A layer that can run on a whole tensor without leaving a partial weight gradient."""
    parts = (layer, *layer.fused)
    return (layer.kind != "input" and not layer.weighted and layer.attention is None
            and all(part.weight_group is None for part in parts))


def model_split(layers, devices: int) -> ModelSplit:
    """The model-parallel plan of ``layers`` over ``devices`` (see above)."""
    n = len(layers)
    readers: list[list[int]] = [[] for _ in range(n)]  # tensor -> the GEMMs that read it
    for i, layer in enumerate(layers):
        if layer.weighted:
            for p in layer.inputs:
                readers[p].append(i)
    shards = [devices] * n
    whole = [True] + [False] * (n - 1)  # tensor -> whole on every device after its forward
    sources: dict[int, tuple[int, ...]] = {}  # layer run whole -> the gathered tensors it reads
    size: dict[int, int] = {}  # gathered tensor -> the elements gathered

    def behind(inputs) -> tuple[int, ...]:
        """The tensors to gather so that ``inputs`` are whole (none for the data)."""
        return tuple(dict.fromkeys(t for p in inputs if p for t in sources.get(p, (p,))))

    gathers: dict[int, tuple[tuple[int, int], ...]] = {}
    for i in range(1, n):
        layer = layers[i]
        if readers[i] and _weightless(layer) and all(whole[p] for p in layer.inputs):
            shards[i], whole[i] = 1, True
            sources[i] = behind(layer.inputs)
        elif readers[i]:
            size[i] = max(layers[c].gemm_reads(layer) for c in readers[i])
            whole[i] = size[i] == math.prod(layer.out_shape)
        needed = behind(layer.inputs) if layer.weighted or i in sources else ()
        if needed:
            gathers[i] = tuple((t, size[t]) for t in needed)
    # Backward runs in reverse: the first consumer in forward order leaves the last partial.
    completes: dict[int, tuple[int, int]] = {}  # tensor -> (the layer that completes its dX, elements)
    for i in range(n - 1, 0, -1):
        layer = layers[i]
        for p in layer.inputs:
            if not p or p in sources:  # the data needs no dX; a layer run whole passes its partial on
                continue
            if layer.weighted and layer.lowering.dx_elems:
                elems = layer.lowering.dx_elems
            elif i in sources:  # run whole on a partial dY, so its dX is partial too
                elems = math.prod(layers[p].out_shape)
            else:
                continue
            completes[p] = (i, max(elems, completes.get(p, (0, 0))[1]))
    partial_dx: dict[int, list[tuple[int, int]]] = {}
    for p, (i, elems) in sorted(completes.items()):
        partial_dx.setdefault(i, []).append((p, elems))
    return ModelSplit(tuple(shards), gathers, {i: tuple(ps) for i, ps in partial_dx.items()})


# Tensor parallelism (Megatron-LM, Shoeybi et al. 2019), generalized to any layer DAG.
# A tensor is either whole on every rank of the tensor group ("full") or split over
# its features ("split"). A GEMM layer (conv, fc, linear) reading a full tensor is
# column-parallel: each rank computes 1/t of the output features (split); backward
# leaves a partial dX of its input, summed over the group by one all-reduce per tensor
# (Megatron's f). A GEMM reading a split tensor is row-parallel: each rank reduces over
# its 1/t of the input features, and the partial output is all-reduced in forward
# (Megatron's g); its dX is split, no communication. An embedding is vocab-parallel
# (its table split, the output all-reduced). Attention splits its heads; per-feature
# layers (activations, dropout, batch norm, pooling, the loss) keep a split tensor
# split; a layer that needs whole features (layer/RMS norm, a recurrent step, a
# position table) or mixes split and full inputs all-gathers its split inputs first.
# On a transformer block this gives Megatron's two all-reduces forward and two
# backward per layer.
_GEMMS = ("conv", "fc", "linear")
_PER_FEATURE = frozenset({"relu", "gelu", "silu", "swiglu", "dropout", "batchnorm", "maxpool", "avgpool",
                          "lrn", "elementwise", "softmax", "cross_entropy", "add", "concat", "attention"})


# Per-token layers: their work is independent across the tokens of a sequence, so under
# sequence parallelism (Korthikanti et al. 2022) they run on 1/t of the sequence.
_PER_TOKEN = frozenset({"layernorm", "rmsnorm", "add", "dropout", "relu", "gelu", "silu", "elementwise",
                        "position", "cross_entropy", "softmax"})


class TensorSplit(NamedTuple):
    """How a tensor-parallel group of ``degree`` ranks runs each layer."""

    degree: int
    shards: tuple[int, ...]  # layer -> 1 (replicated) or the degree (its work split)
    split: tuple[bool, ...]  # feature map -> split over the group (each rank holds 1/t)
    gathers: dict[int, tuple[int, ...]]  # layer -> split inputs all-gathered before its forward
    reduce_out: frozenset[int]  # layers whose partial output is summed over the group after their forward
    partial_dx: dict[int, tuple[int, ...]]  # backward layer -> whole tensors whose dX it completes
    sequence: bool = False  # sequence parallelism: partial outputs reduce-scattered to token shards
    seq: tuple[bool, ...] = ()  # feature map -> split over its tokens (sequence parallelism)

    def out_op(self) -> str:
        """The collective that sums a row-parallel layer's partial output."""
        return "reduce_scatter" if self.sequence else "all_reduce"

    def dx_op(self, tensor: int) -> str:
        """The collective that sums a tensor's partial dX: back to token shards if it was one."""
        return "reduce_scatter" if self.seq and self.seq[tensor] else "all_reduce"


def tensor_split(layers, degree: int, sequence: bool = False) -> TensorSplit:
    """The tensor-parallel plan of ``layers`` over ``degree`` ranks (see above); with
    ``sequence``, the tensors between blocks are split over their tokens instead of
    whole: the forward all-reduces become reduce-scatters, the gathers before
    column-parallel layers all-gathers of token shards, and their partial dX
    reduce-scatters (Megatron-LM's sequence parallelism)."""
    n = len(layers)
    if degree == 1:
        return TensorSplit(1, (1,) * n, (False,) * n, {}, frozenset(), {})
    split = [False] * n
    seq = [False] * n
    shards = [1] * n
    gathers: dict[int, tuple[int, ...]] = {}
    reduce_out: set[int] = set()
    column_consumers: dict[int, int] = {}  # whole (or token-split) tensor -> its first column-parallel consumer
    for i, layer in enumerate(layers):
        if i == 0:
            continue
        ins = layer.inputs
        features = [p for p in ins if split[p] and not seq[p]]
        if layer.kind in _GEMMS or layer.kind == "embedding":
            if layer.kind != "embedding" and ins and len(features) == len(ins):
                shards[i] = degree  # row-parallel: partial output, summed
                reduce_out.add(i)
                split[i] = seq[i] = sequence
                continue
            gather = tuple(p for p in ins if split[p])
            if gather:
                gathers[i] = gather
            shards[i] = degree
            if layer.kind == "embedding":
                reduce_out.add(i)  # vocab-parallel: each rank looks up its rows
                split[i] = seq[i] = sequence
                continue
            split[i] = True  # column-parallel
            for p in ins:
                if p != 0:  # the input batch needs no dX
                    column_consumers.setdefault(p, i)
            continue
        if layer.kind in _PER_FEATURE and ins and len(features) == len(ins):
            if layer.attention is not None:
                _check_heads(layer, degree)
            split[i], shards[i] = True, degree
            continue
        if sequence and layer.kind in _PER_TOKEN and ins and all(seq[p] for p in ins):
            split[i] = seq[i] = True
            shards[i] = degree
            continue
        gather = tuple(p for p in ins if split[p])
        if gather:
            gathers[i] = gather
    # Backward runs in reverse: the first column consumer in forward order is the last
    # to leave its partial dX, so the tensor's reduction goes after its backward.
    partial_dx: dict[int, list[int]] = {}
    for p, i in sorted(column_consumers.items()):
        partial_dx.setdefault(i, []).append(p)
    return TensorSplit(degree, tuple(shards), tuple(split), gathers, frozenset(reduce_out),
                       {i: tuple(ps) for i, ps in partial_dx.items()}, sequence, tuple(seq))


def _check_heads(layer, degree: int) -> None:
    """Attention splits whole heads over the group, query heads and key/value heads alike
    (Megatron-core divides both by the degree and refuses a remainder): 12 heads over 8
    ranks is not 2 heads each (the 16 heads of work a rounding up would charge)."""
    a = layer.attention
    for what, count in (("heads", a.heads), ("key/value heads", a.kv_heads)):
        if count % degree:
            raise InputError(f"{degree} tensor-parallel ranks do not divide the {count} {what} of layer "
                             f"{layer.name!r}; use a degree that divides {count}", key="execution.tensor_parallel")


def even_stages(costs, stages: int, blocks) -> tuple[range, ...] | None:
    """Megatron-LM's split: the blocks (``blocks``: each block instance's layers, a range,
    in order) in ``stages`` runs of equally many, the layers before the first block on
    the first stage and those after the last (the final norm, the output layer, the
    loss) on the last one; where the blocks are alike (the same forward plus backward
    time each: a transformer's layers) and their count divides by ``stages``. Else None
    (balance the time instead: :func:`pipeline_stages`)."""
    if not blocks or len(blocks) < stages or len(blocks) % stages:
        return None
    times = [sum(costs[i] for i in block) for block in blocks]
    if max(times) - min(times) > 1e-9 * max(times):
        return None
    per = len(blocks) // stages
    bounds = [0] + [blocks[k * per].start for k in range(1, stages)] + [len(costs)]
    return tuple(range(bounds[k], bounds[k + 1]) for k in range(stages))


def pipeline_stages(costs, stages: int, cuts=None) -> tuple[range, ...]:
    """Splits layers 1..n-1 (``costs[i]``: layer i's forward plus backward time) into
    ``stages`` contiguous, non-empty stages whose largest total is as small as
    possible (the slowest stage paces a pipeline); the input, layer 0, joins stage 0.
    ``cuts``: the layers a stage may start at (block boundaries, as Megatron splits
    whole transformer layers); every layer when there are too few of them."""
    n = len(costs)
    if n - 1 < stages:
        raise InputError(f"{n - 1} layers cannot fill {stages} pipeline stages", key="execution.pipeline_parallel")
    allowed = set(cuts) if cuts is not None and len(set(cuts) - {0, 1}) >= stages - 1 else set(range(n))
    starts_at = [1] + sorted(c for c in allowed if 1 < c < n)
    segments = [(a, sum(costs[a:b])) for a, b in zip(starts_at, starts_at[1:] + [n])]

    def greedy(limit: float) -> list[int]:
        # Whole segments between allowed cuts: a stage closes before the segment that
        # would take it over ``limit``, never inside one (cutting only at the next allowed
        # layer would let a stage overshoot the limit by a block, and the bisection then
        # settle on uneven stages: 1 and 3 blocks beside 2).
        starts, total = [1], 0.0
        for start, cost in segments:
            if total + cost > limit and total > 0:
                starts.append(start)
                total = 0.0
            total += cost
        return starts

    lo, hi = 0.0, sum(cost for _, cost in segments)  # summed as greedy sums: it fits in one stage
    # Bisection on the largest stage total (greedy fits within it or not), down to a
    # relative width of 1e-12, far below one layer's time; each round halves the width,
    # so 100 rounds always get there (a double has 52 bits).
    for _ in range(100):
        mid = (lo + hi) / 2
        if len(greedy(mid)) <= stages:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * hi:
            break
    starts = greedy(hi)
    while len(starts) < stages:  # split a stage at an allowed cut: its parts are no larger
        bounds = starts + [n]
        splits = [(bounds[k + 1] - bounds[k], k, c) for k in range(len(starts))
                  for c in range(bounds[k] + 1, bounds[k + 1]) if c in allowed]
        if not splits:
            allowed = set(range(n))
            continue
        _, k, _ = max(splits, key=lambda x: (x[0], -x[1]))
        inside = [c for c in range(bounds[k] + 1, bounds[k + 1]) if c in allowed]
        starts.insert(k + 1, inside[len(inside) // 2])
    bounds = [0] + starts[1:] + [n]
    return tuple(range(bounds[k], bounds[k + 1]) for k in range(stages))
