"""Expert parallelism (``execution.expert_parallel`` = e): MoE layers' routed experts
spread over groups of e ranks.

Layout (Megatron-Core's ``parallel_state``: expert groups are formed inside the
data-parallel dimension): the data-parallel replicas of a stage are cut into
expert-parallel groups of e consecutive replicas; the ranks holding the same experts
in different groups form an expert-data-parallel group of dp/e ranks. In
:class:`~mcdla.hw.layout.RankLayout` terms the grid is ``(tp, ep, edp, pp)`` beside
the dense ``(tp, dp, pp)``: the same ranks, the dp axis split in two.

What each rank holds and does:

- E/e of each MoE layer's routed experts (their weights, gradients and optimizer
  state); the router, shared experts, attention and dense layers are replicated as in
  data parallelism. The experts' gradients are reduced over the expert-data-parallel
  group (dp/e ranks: only they hold the same experts), the rest over dp; ZeRO shards
  each over its own group.
- Dispatch: after the ``moe_dispatch`` layer gathers each token once per routed
  expert, an all-to-all over the ep group sends every slot to the rank holding its
  expert; combine: before ``moe_combine``, a second all-to-all brings the experts'
  outputs back. Backward runs the same two in reverse (the outputs' gradients to the
  experts after combine's backward, the slots' gradients back before dispatch's). Each
  all-to-all moves what the rank holds of the slots: ``tokens x top_k x capacity
  factor x hidden x bytes`` (:mod:`mcdla.hw.moe`), 1/e of it staying on the rank.
- Routing uniform (default): every rank's experts receive, on average, the slots its
  own tokens fill, so its expert compute is data parallelism's. ``expert_skew`` = h
  is the share of every rank's slots bound for the hottest rank (rank 0 of each ep
  group, deterministic): the all-to-alls become all-to-allv's with that hot share
  (:func:`mcdla.hw.collective_model.destination_shares`), and the hot rank's expert
  GEMMs compute ``h x e`` times the uniform slots, the others ``(1-h) e/(e-1)``
  times. The combine returns the same unequal pieces the other way (the hot rank
  sends what it received); over full-duplex links it takes the same time, and is
  modelled as the same all-to-allv.

Expert-tensor parallelism (``execution.expert_tensor_parallel`` = et, default the
tensor degree t): Megatron-Core's expert grid ``(etp, ep, edp, pp)`` over the same
ranks (:func:`expert_groups`); with et dividing t, each block of et ranks of a tensor
group takes et/t of its slots (:func:`slot_maps`), reads 1/(e et) of the experts
(:func:`local_layers`) and sums their partial results over its et ranks
(:func:`tensor_stream`).

Not built: the receive buffers of the all-to-alls (a rank's slot buffers are the dispatch output
it already holds). ZeRO shards the experts' state over the expert-data-parallel group
(stage 3 gathers a bank's weights over it: :func:`shard_stream`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mcdla.errors import InputError
from mcdla.hw.layout import RankLayout

__all__ = ["ExpertSplit", "expert_split", "routed_experts", "expert_groups", "held_params", "by_group",
           "local_layers", "resident_by_group", "stored_params", "rank_plan",
           "before_forward", "after_forward", "before_backward", "after_backward", "reduce_apart", "step_gathers",
           "shard_stream", "slot_maps", "tensor_stream",
           "KINDS", "AXIS_OF"]

# The communicators expert parallelism adds beside dp and tp, and the parallel axis
# their time is counted on (``comm_s``): the expert-data-parallel gradient reductions
# are data-parallel communication, the expert-tensor group's (et != t) tensor-parallel.
KINDS = ("ep", "edp", "etp")
AXIS_OF = {"ep": "ep", "edp": "dp", "etp": "tp"}


@dataclass(frozen=True)
class ExpertSplit:
    """Which layers and weight groups expert parallelism of ``degree`` touches."""

    degree: int
    groups: frozenset[str]  # weight groups of routed expert banks: 1/e on a rank
    banks: frozenset[int]  # expert-bank layers (their compute follows the routing)
    dispatch: frozenset[int]  # moe_dispatch layers: the all-to-all after their forward
    combine: dict[int, int]  # moe_combine layer -> its expert-slot input: the all-to-all before it
    skew: float | None = None  # the hot rank's share of every rank's slots; None: uniform
    edp: int = 1  # the expert-data-parallel degree: dp t / (e et)
    offload: bool = False  # the experts' weights live in the backing store (execution.expert_offload)
    tensor: int = 1  # the expert-tensor degree et (execution.expert_tensor_parallel)
    tensor_share: float = 1.0  # et / t: the share of a tensor group's slots an expert-tensor group holds
    maps: frozenset[int] = frozenset()  # the expert slots' feature maps: dispatch outputs to the banks' last

    @property
    def op(self) -> str:
        return "all_to_all" if self.skew is None else "all_to_allv"

    def load(self, coordinate: int) -> float:
        """The slots the rank at ``coordinate`` of its ep group computes, over the uniform
        share: ``h e`` for the hot rank (0), ``(1 - h) e / (e - 1)`` for the others."""
        e, h = self.degree, self.skew
        if h is None:
            return 1.0
        return h * e if coordinate == 0 else (1.0 - h) * e / (e - 1)


def expert_split(workload, execution, dp: int) -> ExpertSplit | None:
    """The split of ``workload`` over ``execution.expert_parallel`` ranks (None for 1);
    refuses a workload without MoE layers and a degree that does not divide every MoE
    layer's experts or the ``dp`` data-parallel replicas."""
    e = execution.expert_parallel
    if e == 1 and not execution.expert_offload:
        return None
    layers = workload.layers
    key = "execution.expert_parallel" if e > 1 else "execution.expert_offload"
    dispatch = [i for i, layer in enumerate(layers) if layer.kind == "moe_dispatch"]
    if not dispatch:
        raise InputError(f"{workload.name} has no MoE layers (moe_dispatch) whose experts to "
                         + (f"spread over {e} expert ranks; use 1" if e > 1 else "offload; use false")
                         + " or a mixture-of-experts workload", key=key)
    for i in dispatch:
        experts = layers[layers[i].inputs[1]].out_shape[-1]  # the router's scores: one per expert
        if experts % e:
            raise InputError(f"{e} does not divide the {experts} experts of {layers[i].name} in {workload.name}",
                             key=key)
    _check_replicas(e, dp)
    combine = {i: layer.inputs[0] for i, layer in enumerate(layers) if layer.kind == "moe_combine"}
    banks, inside = _banks(layers, combine.values())
    t = execution.tensor_parallel
    et = execution.expert_tensor_parallel or t
    return ExpertSplit(e, frozenset(layers[i].weight_group for i in banks), banks, frozenset(dispatch), combine,
                       execution.expert_skew, dp * t // (e * et), execution.expert_offload, et, et / t,
                       frozenset(dispatch) | inside)


def _banks(layers, slot_outputs) -> tuple[frozenset[int], frozenset[int]]:
    """The weighted layers between a dispatch and its combine: the routed experts
    (walked back from each combine's slot input to the dispatch); and every layer
    between them."""
    found, seen = set(), set()
    stack = list(slot_outputs)
    while stack:
        j = stack.pop()
        if j in seen or layers[j].kind == "moe_dispatch":
            continue
        seen.add(j)
        if layers[j].weight_group is not None and layers[j].params:
            found.add(j)
        stack.extend(layers[j].inputs)
    return frozenset(found), frozenset(seen)


def routed_experts(workload) -> int:
    """The expert-parallel degrees a workload allows divide this: the greatest common
    divisor of its MoE layers' routed experts (0: no MoE layer)."""
    found = 0
    for layer in workload.layers:
        if layer.kind == "moe_dispatch":
            found = math.gcd(found, workload.layers[layer.inputs[1]].out_shape[-1])
    return found


def expert_groups(rank_device: tuple[int, ...], tp: int, dp: int, pp: int, e: int, et: int | None = None):
    """(the expert-parallel groups, the expert-data-parallel groups, the expert-tensor
    groups) of devices, each in rank order: Megatron-Core's expert grid
    ``(etp, ep, edp, pp)`` over the ranks of ``(tp, dp, pp)``; with et = t (the default)
    the dp axis split as ``(ep, edp)`` and no expert-tensor groups (the tensor groups
    are; with et = 1 none either: a rank's experts are whole on it); none for e = 1."""
    if e == 1:
        return (), (), ()
    _check_replicas(e, dp)
    et = et or tp
    layout = RankLayout.of(rank_device, tp=et, ep=e, edp=dp * tp // (e * et), pp=pp)
    return layout.groups("ep"), layout.groups("edp"), layout.groups("tp") if et not in (1, tp) else ()


def _check_replicas(e: int, dp: int) -> None:
    if dp % e:
        raise InputError(f"expert groups are formed inside the data-parallel replicas: {e} does not divide "
                         f"the {dp} of this run (devices / (tensor x pipeline))", key="execution.expert_parallel")


def held_params(group_params: dict[str, float], split: ExpertSplit | None) -> dict[str, float]:
    """Weight group -> the parameters a rank holds of it: 1/e of an expert bank's."""
    if split is None:
        return group_params
    # of a bank split t ways (device_group_params): 1/(e et) of it, its experts' 1/et
    return {g: n / split.degree / split.tensor_share if g in split.groups else n for g, n in group_params.items()}


def by_group(group_params: dict[str, float], split: ExpertSplit | None,
             dp: int) -> list[tuple[dict[str, float], int]]:
    """(weight groups -> parameters, the data-parallel group that shares them) of a
    rank: all over dp, or the dense ones over dp and the experts' over the
    expert-data-parallel group (dp/e; dp t/(e et) with expert-tensor parallelism; ZeRO
    shards each over its own)."""
    if split is None:
        return [(group_params, dp)]
    dense = {g: n for g, n in group_params.items() if g not in split.groups}
    experts = {g: n for g, n in group_params.items() if g in split.groups}
    return [(dense, dp), (experts, split.edp)]


def local_layers(layers, split: ExpertSplit | None):
    """The layers as a rank computes them: an expert bank's GEMMs read the weights of
    the rank's E/e experts only (its slots, and so its MACs, are the uniform share),
    1/et of each (the kernel divides by the t shards: so t/et of the E/e here). With
    et < t an expert-tensor group computes et/t of the tensor group's slots on 1/et of
    each expert: the MACs of the t-way split, which is how the bank is timed (the
    kernel's shape stays the t-way split's: its rows are not cut to et/t)."""
    if split is None or split.degree == 1:
        return layers
    out = list(layers)
    for i in split.banks:
        low = layers[i].lowering
        weights = math.ceil(low.weight_elems / split.degree / split.tensor_share)
        out[i] = replace(layers[i], lowering=replace(low, weight_elems=weights))
    return tuple(out)


def slot_maps(values: tuple[float, ...], split: ExpertSplit | None) -> tuple[float, ...]:
    """Per-map bytes of a tensor group with the expert slots' maps cut to an
    expert-tensor group's share (et/t of the slots; unchanged with et = t)."""
    if split is None or split.tensor_share == 1.0:
        return values
    return tuple(v * split.tensor_share if i in split.maps else v for i, v in enumerate(values))


def tensor_stream(device, tensor: int):
    """The communicator of a tensor-parallel collective on map ``tensor``: an expert
    slot map's over the expert-tensor group (None: a group of one rank, et = 1, which
    has nothing to exchange), every other over the tensor group."""
    split = device.plan.ep
    if split is None or split.tensor_share == 1.0 or tensor not in split.maps:
        return device.tensor_stream
    return device.expert_streams[2] if split.tensor > 1 else None


def resident_by_group(group_params: dict[str, float], split: ExpertSplit | None, dp: int):
    """:func:`by_group` of the state a device keeps: without the offloaded experts'."""
    found = by_group(group_params, split, dp)
    return found[:1] if split is not None and split.offload else found


def rank_plan(plan, coordinate: int):
    """The plan of the rank at ``coordinate`` of its ep group: its expert banks' times
    scaled by the slots routing sends it (the plan itself with uniform routing)."""
    split = plan.ep
    if split is None or split.skew is None:
        return plan
    load = split.load(coordinate)
    scale = lambda times: tuple(t * load if i in split.banks else t for i, t in enumerate(times))  # noqa: E731
    return replace(plan, fwd_s=scale(plan.fwd_s), bwd_s=scale(plan.bwd_s))


# -- the device's hooks (mcdla.sim.device calls them beside tensor parallelism's) ------

def _exchange(device, key: tuple, tensor: int):
    split = device.plan.ep
    return device.expert_streams[0].join(key, split.op, device.plan.tensor_bytes[tensor], device=device.device)


def _data_stream(device):
    """The communicator the experts' gradients are reduced over: the expert-data-parallel
    group's (the data-parallel one when e = 1, with offloaded experts)."""
    return device.expert_streams[1] or device.stream


def shard_stream(device, group: str):
    """The communicator ZeRO-3 gathers weight ``group``'s shards over: an expert bank's
    over the expert-data-parallel group (only its dp/e ranks hold those experts, so
    they shard them, as Megatron-Core's distributed optimizer shards the expert
    parameters over the expert-data-parallel group), every other group over dp."""
    split = device.plan.ep
    if split is None or group not in split.groups:
        return device.stream
    return _data_stream(device)


def _bank_bytes(device, i: int) -> float:
    return device.plan.group_bytes[device.inputs.workload.layers[i].weight_group]


def _fetched(device, i: int, phase: str):
    """Offloaded experts: waits for bank i's weights in device memory, fetching them
    and, one ahead, the next bank's in this pass's order from the backing store
    (``device._expert_fetches``: the fetches issued, by pass and bank)."""
    split = device.plan.ep
    order = sorted(split.banks, reverse=phase == "bwd")
    fetches = device.__dict__.setdefault("_expert_fetches", {})
    for j in order[order.index(i):order.index(i) + 2]:
        if (phase, j) not in fetches:
            size = _bank_bytes(device, j)
            name = device.inputs.workload.layers[j].name
            yield from device.memory.reserve(size, f"the offloaded experts of {name}")
            fetches[(phase, j)] = device.env.process(device._to_store(size, "prefetch", f"experts of {name} in"))
    yield fetches.pop((phase, i))


def before_forward(device, i: int, tag: tuple = ()):
    """Combine: the experts' outputs back to their tokens' ranks before ``moe_combine``;
    offloaded experts: their weights in before their bank's forward."""
    split = device.plan.ep
    if split is None:
        return
    if split.degree > 1 and i in split.combine:
        yield _exchange(device, ("ep-combine", *tag, i), split.combine[i])
    if split.offload and i in split.banks:
        yield from _fetched(device, i, "fwd")


def after_forward(device, i: int, tag: tuple = ()):
    """Dispatch: each slot to the rank holding its expert after ``moe_dispatch``;
    offloaded experts: their weights' buffer freed after their bank's forward."""
    yield from _release_then_exchange(device, i, ("ep-dispatch", *tag, i), "dispatch")


def before_backward(device, i: int, tag: tuple = ()):
    """The gradients of the slots back to their tokens' ranks, before dispatch's
    backward; offloaded experts: their weights in again, and room for their gradient."""
    split = device.plan.ep
    if split is None:
        return
    if split.degree > 1 and i in split.dispatch:
        yield _exchange(device, ("ep-ddispatch", *tag, i), i)
    if split.offload and i in split.banks:
        yield from _fetched(device, i, "bwd")
        yield from device.memory.reserve(_bank_bytes(device, i), f"the gradient of {device.inputs.workload.layers[i].name}")


def after_backward(device, i: int, tag: tuple = ()):
    """The gradients of the experts' outputs to the experts, after combine's backward;
    offloaded experts: their weights' buffer freed after their bank's backward."""
    yield from _release_then_exchange(device, i, ("ep-dcombine", *tag, i), "combine")


def _release_then_exchange(device, i: int, key: tuple, exchange: str):
    """After layer i's pass: an offloaded bank's weights' buffer freed, then the
    all-to-all of ``exchange`` (``dispatch``: of layer i's output; ``combine``: of the
    tensor combine reads) if layer i has one."""
    split = device.plan.ep
    if split is None:
        return
    if split.offload and i in split.banks:
        device.memory.free(_bank_bytes(device, i))
    table = split.dispatch if exchange == "dispatch" else split.combine
    if split.degree > 1 and i in table:
        yield _exchange(device, key, i if exchange == "dispatch" else table[i])


def reduce_apart(device, group: str, size_bytes: float, op: str):
    """An expert bank's gradient, reduced over the expert-data-parallel group (the
    event; offloaded experts: then written back to the backing store and its buffer
    freed); None for a weight group data parallelism reduces."""
    split = device.plan.ep
    if split is None or group not in split.groups:
        return None
    reduced = _data_stream(device).join(("dW-experts", group), op, size_bytes, device=device.device)
    if not split.offload:
        return reduced

    def then_store():
        yield reduced
        yield from device._to_store(size_bytes, "offload", f"gradients of {group} out")
        device.memory.free(size_bytes)

    return device.env.process(then_store())


def stored_params(plan, precision_bytes: int) -> float:
    """The parameters of offloaded experts a device updates, weights and gradients in
    the backing store (0 without ``expert_offload``; ZeRO is refused with it)."""
    split = plan.ep
    if split is None or not split.offload:
        return 0.0
    return sum(b for g, b in plan.group_bytes.items() if g in split.groups) / precision_bytes


def step_gathers(device, key: tuple) -> list:
    """ZeRO 1-2: the all-gathers of the updated weights after the step: the dense
    ones over dp, the experts' over the expert-data-parallel group."""
    plan, split, me = device.plan, device.plan.ep, device.device
    held = device.work.weight_bytes  # the weights this device (its stage) holds
    if split is None:
        return [device.stream.join(key, "all_gather", held, device=me)]
    experts = sum(b for g, b in plan.group_bytes.items() if g in split.groups)
    return [device.stream.join(key, "all_gather", held - experts, device=me),
            _data_stream(device).join((*key, "experts"), "all_gather", experts, device=me)]
