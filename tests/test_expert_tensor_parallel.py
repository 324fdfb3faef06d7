"""Expert-tensor parallelism (execution.expert_tensor_parallel = et; mcdla.sim.expert)."""

from __future__ import annotations

import pytest

from mcdla.errors import InputError
from mcdla.hw.layers import Layer
from mcdla.run import simulate

from test_expert_parallel import HIDDEN, MOE_LAYERS, TINY, TOKENS, TOP_K, _record, _sets, symmetry_equals_exact

# TINY with 4 key/value heads, so 4 tensor-parallel ranks divide its attention.
TINY4 = TINY.replace("kv_heads: 2", "kv_heads: 4")
EXPERTS, EXPERT_FFN = 8, 32


@pytest.fixture
def tiny4(tmp_path):
    path = tmp_path / "tinymoe4.yaml"
    path.write_text(TINY4)
    return str(path)


def _etp(t, et, e=2, *more):
    """t tensor ranks, et expert-tensor ranks (with sequence parallelism, which
    Megatron-Core requires with expert and tensor parallelism), e expert ranks."""
    sets = _sets(e, ("execution.tensor_parallel", t), ("execution.sequence_parallel", True), *more)
    return sets if et is None else [*sets, ("execution.expert_tensor_parallel", et)]


def _expert_kernel_weight_bytes(record, name):
    """The weight bytes the bank's forward GEMM reads, from its kernels as the plan times them."""
    from mcdla.sim.expert import local_layers

    layers = record.inputs.workload.layers
    i = next(k for k, layer in enumerate(layers) if layer.name == name)
    layer: Layer = local_layers(layers, record.plan.ep)[i]
    kernels = layer.kernels("fwd", 1, record.inputs.workload.precision_bytes, record.plan.tp.shards[i])
    (gemm,) = [k for k in kernels if k.gemm is not None]
    return gemm.operand_bytes[0]  # forward: (weights, input, output)


@pytest.mark.parametrize("et", [4, 2, 1])
def test_the_bank_reads_one_over_e_et_of_the_experts(tiny4, et):
    """t = 4, e = 2: each rank holds and reads 1/(e x et) of a bank's up projection
    (8 experts x 64 x 2 x 32, swiglu), in bytes of the workload's precision."""
    record = _record(tiny4, 8, _etp(4, et, 2, ("execution.exact", True)))
    prec = record.inputs.workload.precision_bytes
    whole = EXPERTS * HIDDEN * 2 * EXPERT_FFN * prec
    assert record.plan.group_bytes["blocks.1/experts_up"] == whole / (2 * et)
    assert _expert_kernel_weight_bytes(record, "blocks.1/experts_up") == whole / (2 * et)
    # the experts' gradients are reduced over dp t / (e et) ranks: 4 x 2 / (2 et)
    assert record.plan.ep.edp == 8 // (2 * et)


def test_expert_collectives_run_over_the_expert_tensor_group(tiny4):
    """t = 4, et = 2, e = 2 on 8 GPUs (dp = 2, 4 samples a replica): the experts'
    down projection's partial output reduce-scattered (its token shards gathered for
    the combine, its dY gathered backward) and the dispatch output's partial dX
    summed over 2 ranks, of the expert-tensor group's half of the slots (4 samples x
    32 tokens x top-2 x 64 x bytes / 2); the dense layers' stay over the 4."""
    record = _record(tiny4, 8, _etp(4, 2, 2, ("execution.exact", True)))
    prec = record.inputs.workload.precision_bytes
    slots = 4 * TOKENS * TOP_K * HIDDEN * prec
    layers = record.inputs.workload.layers
    down = {i for i, layer in enumerate(layers) if layer.name.endswith("experts_down")}
    dispatch = {i for i, layer in enumerate(layers) if layer.kind == "moe_dispatch"}
    tp = [c for c in record.collectives if c.axis == "tp"]
    expert = [c for c in tp if any("/etp" in r for r in c.rings)]
    keys = {(c.tag.split("/")[0], int(c.tag.split("/")[-1])) for c in expert}
    assert keys == ({(kind, i) for i in down for kind in ("tp-out", "tp-gather", "tp-dY")}
                    | {("tp-dX", i) for i in dispatch})
    assert all(c.ranks == 2 and c.size_bytes == slots / 2 for c in expert)
    assert len(expert) == 4 * MOE_LAYERS * 4  # each of the 4 expert-tensor groups
    assert {c.ranks for c in tp if c not in expert} == {4}
    # On a rank's NVSwitch uplink, over 2 ranks: N/2 of a reduce-scatter or all-gather
    # of N = slots/2 (the group's share), N/2 + N/2 of an all-reduce.
    sent = {"reduce_scatter": slots / 4, "all_gather": slots / 4, "all_reduce": slots / 2}
    from mcdla.sim.algorithms import COLLECTIVES

    direct = COLLECTIVES.get("direct")()
    for c in expert:
        carried = direct.channel_bytes(c.op, c.size_bytes, [record.rings[n] for n in c.rings])
        first = record.groups["expert_tensor"][int(c.rings[0].rsplit("etp", 1)[1])][0]
        up = sum(v for ch, v in carried.items() if ch.startswith(f"{first}>FS"))
        assert up == pytest.approx(sent[c.op], rel=1e-9)
    assert record.groups["expert_tensor"][:2] == [["D0", "D1"], ["D2", "D3"]]
    assert record.groups["expert"][:2] == [["D0", "D2"], ["D1", "D3"]]


def test_et_1_leaves_the_experts_whole_and_their_collectives_out(tiny4):
    record = _record(tiny4, 8, _etp(4, 1, 2, ("execution.exact", True)))
    layers = record.inputs.workload.layers
    maps = {i for i, layer in enumerate(layers) if "experts" in layer.name or layer.kind == "moe_dispatch"}
    assert not [c for c in record.collectives if c.axis == "tp" and int(c.tag.split("/")[-1]) in maps]
    assert "expert_tensor" not in record.groups


def test_the_default_is_the_tensor_degree(tiny4):
    default = simulate("dgx_h100", workload=tiny4, batch=8, sets=_etp(4, None))
    same = simulate("dgx_h100", workload=tiny4, batch=8, sets=_etp(4, 4))
    del same["wall_s"], default["wall_s"]  # the simulator's own run time
    assert same == default


def test_smaller_et_holds_more_expert_state(tiny4):
    """Without ZeRO the state a rank keeps grows by the experts it holds: 1/(e et)."""
    from mcdla.hw.memory import model_state_bytes

    four = _record(tiny4, 8, _etp(4, 4))
    one = _record(tiny4, 8, _etp(4, 1))
    experts = MOE_LAYERS * EXPERTS * 3 * HIDDEN * EXPERT_FFN
    per_param = model_state_bytes(four.inputs.workload, params=1.0)
    assert one.model_state_bytes - four.model_state_bytes == pytest.approx(experts * (1 / 2 - 1 / 8) * per_param)


@pytest.mark.parametrize("t, et", [(4, 2), (4, 1)])
def test_expert_tensor_parallel_with_rank_symmetry_equals_exact(tiny4, t, et):
    symmetry_equals_exact(tiny4, _etp(t, et, 2, ("execution.zero", 1)))


@pytest.mark.parametrize("sets, says", [
    (_etp(4, 3), "does not divide the tensor degree 4"),
    (_etp(2, 1, 1), "set execution.expert_parallel above 1"),
])
def test_expert_tensor_refusals_name_their_key(tiny4, sets, says):
    with pytest.raises(InputError) as err:
        simulate("dgx_h100", workload=tiny4, batch=8, sets=sets)
    assert says in str(err.value)
    assert "execution.expert_tensor_parallel" in str(err.value)


def test_et_below_t_needs_sequence_parallelism(tiny4):
    sets = [s for s in _etp(4, 2) if s[0] != "execution.sequence_parallel"]
    with pytest.raises(InputError) as err:
        simulate("dgx_h100", workload=tiny4, batch=8, sets=sets)
    assert err.value.key == "execution.expert_tensor_parallel" and "sequence_parallel=true" in str(err.value)
