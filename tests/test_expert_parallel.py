"""Expert parallelism (execution.expert_parallel, mcdla.sim.expert; issue 25)."""

from __future__ import annotations

import pytest

from mcdla.errors import InputError
from mcdla.run import load_inputs, simulate
from mcdla.sim.records import AXES
from mcdla.sim.training import Iteration

# Two MoE layers (3 blocks, the first dense) of 8 experts, top-2, hidden 64, 32 tokens.
TINY = ("template: decoder\nname: tinymoe\nlayers: 3\nhidden: 64\nheads: 4\nkv_heads: 2\nffn: 256\n"
        "expert_ffn: 32\nexperts: 8\ntop_k: 2\nshared_experts: 1\ndense_layers: 1\n"
        "router: sigmoid\nrouter_bias: true\nseq_len: 32\nvocab: 100\nnorm: rmsnorm\nmlp: swiglu\n"
        "bias: false\nposition: rope\ncapacity_factor: 1.0\n")
MOE_LAYERS, TOKENS, TOP_K, HIDDEN = 2, 32, 2, 64


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tinymoe.yaml"
    path.write_text(TINY)
    return str(path)


def _sets(e, *more):
    return [("execution.collective", "direct"), ("execution.expert_parallel", e), *more]


def _record(workload, batch, sets, topology="dgx_h100"):
    topo, work, execution = load_inputs(topology, workload, sets, parallel="data", batch=batch, policy="bw_aware")
    return Iteration(topo, work, execution).run()


def test_comm_ep_is_counted_only_with_expert_parallelism(tiny):
    assert "ep" in AXES
    alone = simulate("dgx_h100", workload=tiny, batch=8, sets=_sets(1))
    spread = simulate("dgx_h100", workload=tiny, batch=8, sets=_sets(4))
    assert alone["comm_s"]["ep"] == 0
    assert spread["comm_s"]["ep"] > 0
    assert spread["groups"]["expert"] == [["D0", "D1", "D2", "D3"], ["D4", "D5", "D6", "D7"]]
    assert spread["groups"]["expert_data"] == [["D0", "D4"], ["D1", "D5"], ["D2", "D6"], ["D3", "D7"]]


def test_all_to_all_bytes_per_link_by_hand(tiny):
    """Each MoE layer: dispatch and combine forward, both again backward, each a rank's
    slots (1 sample x 32 tokens x top-2 x 64 x 4 bytes), 7/8 of it leaving the rank
    over its NVSwitch uplink (direct: one piece to each other rank)."""
    record = _record(tiny, 8, _sets(8, ("execution.exact", True)))
    slots = 1 * TOKENS * TOP_K * HIDDEN * record.inputs.workload.precision_bytes
    ep = [c for c in record.collectives if c.axis == "ep"]
    assert len(ep) == 4 * MOE_LAYERS
    assert all(c.op == "all_to_all" and c.size_bytes == slots and c.ranks == 8 for c in ep)
    # What the ep collectives put on each device's uplink: the run's bytes there minus
    # what the data-parallel reductions' own step definition puts on it.
    from mcdla.sim.algorithms import COLLECTIVES
    direct = COLLECTIVES.get("direct")()
    carried = dict(record.network.bytes_by_resource)
    for c in record.collectives:
        if c.axis != "ep":
            for channel, size in direct.channel_bytes(c.op, c.size_bytes, [record.rings[n] for n in c.rings]).items():
                carried[channel] -= size
    uplinks = [ch for ch in record.inputs.topology.channels if ch.startswith("D") and ">FS" in ch]
    assert uplinks
    per_device = {}
    for ch in uplinks:
        per_device[ch.split(">")[0]] = per_device.get(ch.split(">")[0], 0.0) + carried[ch]
    assert sorted(per_device) == [f"D{i}" for i in range(8)]
    for got in per_device.values():
        assert got == pytest.approx(4 * MOE_LAYERS * slots * 7 / 8, rel=1e-9)


def test_skewed_routing_makes_the_hot_rank_the_slowest(tiny):
    uniform = _record(tiny, 8, _sets(8))
    skewed = _record(tiny, 8, _sets(8, ("execution.expert_skew", 0.5)))
    banks = {skewed.inputs.workload.layers[i].name for i in skewed.plan.ep.banks}

    def expert_compute(record, device):
        return sum(s.end_s - s.start_s for s in record.devices[device].compute
                   if s.kind in ("fwd", "bwd") and s.label.split(" ", 1)[1] in banks)

    # h = 0.5 of 8 ranks' slots to rank 0: 4x the uniform share; the others 0.5 x 8/7.
    assert expert_compute(skewed, 0) == pytest.approx(4 * expert_compute(uniform, 0), rel=1e-9)
    assert expert_compute(skewed, 1) == pytest.approx(4 / 7 * expert_compute(uniform, 1), rel=1e-9)
    assert skewed.iteration_time_s > uniform.iteration_time_s
    # The all-to-allv: the hot rank's downlink from the switch carries the most.
    down = skewed.network.bytes_by_resource
    into = {d: sum(v for ch, v in down.items() if ch.startswith("FS") and ch.split(">")[1].split(":")[0] == d)
            for d in ("D0", "D1")}
    assert into["D0"] > into["D1"]
    assert {c.op for c in skewed.collectives if c.axis == "ep"} == {"all_to_allv"}


def symmetry_equals_exact(workload, sets) -> tuple[dict, dict]:
    """Rank symmetry simulates fewer ranks and gives --exact's iteration and per-axis
    communication; returns both runs' results."""
    fast = simulate("dgx_h100", workload=workload, batch=8, sets=sets)
    exact = simulate("dgx_h100", workload=workload, batch=8, sets=[*sets, ("execution.exact", True)])
    assert fast["rank_classes"] < exact["rank_classes"]
    assert fast["iteration_time_s"] == pytest.approx(exact["iteration_time_s"], rel=1e-9)
    for axis in AXES:
        assert fast["comm_s"][axis] == pytest.approx(exact["comm_s"][axis], rel=1e-9, abs=1e-15)
    return fast, exact


def test_expert_parallel_with_rank_symmetry_equals_exact(tiny):
    symmetry_equals_exact(tiny, _sets(4, ("execution.zero", 1)))


def test_experts_held_per_rank_shrink_the_model_state(tiny):
    """Each rank keeps E/e of the routed experts: the state shrinks by 7/8 of theirs."""
    one = _record(tiny, 8, _sets(1))
    eight = _record(tiny, 8, _sets(8))
    expert_params = MOE_LAYERS * 8 * 3 * HIDDEN * 32  # up (2 x 32) and down (32) of 8 experts
    per_param = one.model_state_bytes / one.inputs.workload.params
    assert one.model_state_bytes - eight.model_state_bytes == pytest.approx(expert_params * 7 / 8 * per_param)


@pytest.mark.parametrize("workload, sets, says", [
    ("gpt2", [("execution.expert_parallel", 2)], "no MoE layers"),
    ("six", [("execution.expert_parallel", 4)], "does not divide the 6 experts"),
    (None, [("execution.expert_parallel", 8), ("execution.tensor_parallel", 2)], "does not divide the 4"),
    (None, [("execution.expert_parallel", 2), ("execution.zero", 1), ("execution.pipeline_parallel", 2)],
     "pipeline and expert"),
    (None, [("execution.expert_parallel", 2), ("execution.expert_skew", 0.2)], "between 1/2"),
    (None, [("execution.expert_skew", 0.5)], "above 1"),
    (None, [("execution.expert_parallel", 2), ("execution.expert_skew", 0.5), ("execution.collective", "ring")],
     "all_to_allv"),
])
def test_expert_parallel_refusals_name_their_key(tiny, tmp_path, workload, sets, says):
    if workload == "six":
        workload = tmp_path / "six.yaml"
        workload.write_text(TINY.replace("experts: 8", "experts: 6"))
        workload = str(workload)
    with pytest.raises(InputError) as err:
        simulate("dgx_h100", workload=workload or tiny, batch=8, sets=sets)
    assert says in str(err.value)
    assert "execution." in str(err.value)


@pytest.mark.parametrize("name", ["nccl", "nccl_ring", "nccl_p2p"])
def test_nccl_all_to_all_is_grouped_sends_through_the_switch(name, tmp_path):
    """NCCL's all-to-all on one NVSwitch: every pair's piece N/p a flow of its own, the
    launch once (5 us here), then one hop and (p-1)N/p over each rank's link."""
    import yaml

    from mcdla.hw.topology import load_topology
    from mcdla.sim.algorithms import COLLECTIVES
    from mcdla.sim.environment import CountingEnvironment
    from mcdla.sim.flownet import FlowNetwork

    path = tmp_path / "s4.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s4", "description": "4 devices on one NVSwitch, one link each", "device": "h100_sxm5",
        "fabric_switch": "nvswitch3", "links": {"nvlink": "nvlink4"},
        "generator": {"name": "switch", "devices": 4, "links_per_device": 1}}))
    topo = load_topology(str(path))
    size, p = 8e6, 4
    algorithm = COLLECTIVES.get(name)(5e-6)
    env = CountingEnvironment()
    net = FlowNetwork(env, topo.capacities())
    process = algorithm.start(env, net, topo.rings, "all_to_all", size)
    env.run()
    record = process.value
    assert (record.algorithm or name) == "nccl_p2p"
    ring = topo.rings[0]
    for i in range(p):  # 3/4 of 8 MB up and down each rank's link
        assert net.stats().bytes_by_resource[ring.up(i)] == pytest.approx(6e6, rel=1e-12)
        assert net.stats().bytes_by_resource[ring.down(i)] == pytest.approx(6e6, rel=1e-12)
    # nvswitch3 + nvlink4 as loaded: 20.55 GB/s each way, 0.7 us a hop (tests/test_all_to_all.py)
    expected = 5e-6 + 0.7e-6 + 6e6 / 20.55e9
    assert record.time_s == pytest.approx(expected, rel=1e-12)
    assert algorithm.time_s("all_to_all", size, topo.rings, topo.capacities()) == pytest.approx(expected, rel=1e-12)


def test_plan_searches_the_expert_degrees_that_divide_experts_and_replicas():
    from mcdla.sweep.plan import candidates

    moe = candidates(8, 16, (), experts=8)
    dense = candidates(8, 16, ())
    assert {c.expert_parallel for c in dense} == {1}
    assert len(moe) > len(dense)
    for c in moe:
        dp = 8 // (c.tensor_parallel * c.pipeline_parallel)
        assert dp % c.expert_parallel == 0 and 8 % c.expert_parallel == 0
        if c.expert_parallel > 1:
            assert not (c.pipeline_parallel > 1 and c.zero)
            assert f"ep{c.expert_parallel}" in c.label()
            assert ("execution.expert_parallel", c.expert_parallel) in c.sets()
    assert {c.expert_parallel for c in moe if c.tensor_parallel == 2 and c.pipeline_parallel == 1} == {1, 2, 4}
    assert {c.expert_parallel for c in moe if c.zero == 3 and c.tensor_parallel == 2 and c.pipeline_parallel == 1} \
        == {1, 2, 4}  # ZeRO-3 shards the experts over their expert-data-parallel group
    # 6 experts on 8 replicas: only 2 divides both
    assert {c.expert_parallel for c in candidates(8, 16, (), experts=6)} == {1, 2}


def test_plan_with_a_fixed_expert_degree_simulates_it(tiny):
    from mcdla.api import plan

    rows = plan(tiny, topology="dgx_h100", batch=8, simulate=1, set={"execution.expert_parallel": 4})
    assert rows and all(r.expert_parallel == 4 for r in rows)
    best = rows[0]
    assert best.feasible and "ep4" in best.label


@pytest.mark.parametrize("e", [1, 4])
def test_offloaded_experts_bytes_per_tier_by_hand(tiny, e):
    """execution.expert_offload behind memory-nodes (ZeRO-Offload's state there too):
    the device keeps no expert weights or gradients (2 x 2 bytes a parameter less), the
    memory-nodes keep both, and each iteration moves 5 x the experts' weights per
    device: in before forward, in again before backward, the gradients out, and in and
    out with the optimizer state's chunks (the gradient in, the updated weights out)."""
    base = [("execution.offload_optimizer", True), ("training.virtualization", False), ("execution.expert_parallel", e)]
    kept = _record(tiny, 8, base, "dgx_h100_memnodes")
    stored = _record(tiny, 8, [*base, ("execution.expert_offload", True)], "dgx_h100_memnodes")
    prec = kept.inputs.workload.precision_bytes
    experts = MOE_LAYERS * 8 * 3 * HIDDEN * 32 / e * prec  # a device's routed experts' weights
    assert kept.model_state_bytes - stored.model_state_bytes == pytest.approx(2 * experts)
    for node, held in stored.store_resident_bytes.items():
        assert held - kept.store_resident_bytes[node] == pytest.approx(2 * experts)
    moved = sum(size for _, size in stored.transfers) - sum(size for _, size in kept.transfers)
    assert moved == pytest.approx(8 * 5 * experts, rel=1e-9)
    assert stored.devices[0].memory_peak_bytes < kept.devices[0].memory_peak_bytes


def test_expert_offload_refusals(tiny):
    for sets, says in (([("execution.expert_offload", True)], "offload_optimizer=true"),
                       ([("execution.expert_offload", True), ("execution.offload_optimizer", True),
                         ("execution.zero", 1)], "with ZeRO")):
        with pytest.raises(InputError, match=says):
            simulate("dgx_h100_memnodes", workload=tiny, batch=8, sets=sets)
    with pytest.raises(InputError, match="no MoE layers"):
        simulate("dgx_h100_memnodes", workload="gpt2", batch=8,
                 sets=[("execution.expert_offload", True), ("execution.offload_optimizer", True)])


def test_an_expert_bank_reads_only_its_ranks_experts_weights(tiny):
    """With e ranks an expert bank's GEMMs read E/e experts' weights, the same MACs."""
    record = _record(tiny, 8, _sets(8))
    from mcdla.sim.expert import local_layers

    layers = record.inputs.workload.layers
    local = local_layers(layers, record.plan.ep)
    for i in record.plan.ep.banks:
        whole, mine = layers[i].kernels("fwd", 1, 2), local[i].kernels("fwd", 1, 2)
        assert [k.macs for k in whole] == [k.macs for k in mine]
        assert mine[0].operand_bytes[0] * 8 == whole[0].operand_bytes[0]  # the weights, 1/8
        assert mine[0].operand_bytes[1:] == whole[0].operand_bytes[1:]
    others = [i for i in range(len(layers)) if i not in record.plan.ep.banks]
    assert all(local[i] is layers[i] for i in others)


def test_the_moe_report_section_reads_tokens_per_gpu_and_what_does_not_fit():
    import pandas as pd

    from mcdla.sweep.report import _moe_section

    table = pd.DataFrame([
        {"label": "mixtral/dgx_h100_4node/e1", "workload": "mixtral_8x7b", "batch": 32, "status": "error",
         "error": "device D0: the model state (weights, gradients, optimizer) and the input batch need 204 GB, over"},
        {"label": "mixtral/dgx_h100_4node/e8", "workload": "mixtral_8x7b", "batch": 32, "status": "ok",
         "devices": 32, "iteration_time_s": 0.8192, "busy_s.compute": 0.6, "comm_s.ep": 0.02,
         "device_mem_peak_bytes": 5e10}])
    text = "\n".join(_moe_section(table))
    assert "| mixtral | dgx_h100_4node | e1 | does not fit: the model state needs 204 GB |" in text
    # 32 sequences of 4,096 tokens in 0.8192 s over 32 GPUs: 5,000 tokens/s each
    assert "| mixtral | dgx_h100_4node | e8 | 5,000 | 819.2 ms | 20 ms | 50 GB |" in text


def test_megatron_core_counts_the_top_k_experts_of_a_mixture():
    """Mixtral, batch 256 of 4,096 tokens: 12 B s l h^2 ((1 + 8/32 + 1) + 14,336 x 2 /
    4,096 x 3/2 + 32,000 / (2 x 32 x 4,096)) = 12 B s l h^2 x 12.872."""
    from mcdla.config.validation import read_validation
    from mcdla.sweep.validate import iteration_flops

    _, table = read_validation("moe_training")
    rows = table.rows
    expected = 12 * 256 * 4096 * 32 * 4096 ** 2 * (2.25 + 10.5 + 32000 / (2 * 32 * 4096))
    assert iteration_flops(rows[0]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(8.696e16, rel=1e-3)


def test_zero3_gathers_the_experts_over_the_expert_data_parallel_group(tiny):
    """ZeRO-3 with e = 4 of 8 replicas: each dense group gathered over all 8, each
    expert bank's E/e experts over the 2 ranks holding them; forward and backward."""
    record = _record(tiny, 8, _sets(4, ("execution.zero", 3), ("execution.exact", True)))
    prec = record.inputs.workload.precision_bytes
    gathers = [c for c in record.collectives if c.op == "all_gather" and c.tag.startswith("W/")]
    experts = {c.tag: (c.ranks, c.size_bytes) for c in gathers if "experts" in c.tag}
    # up: 8 experts x 64 x (2 x 32) (swiglu), down: 8 x 32 x 64; E/e = 2 of them on a rank
    up, down = 8 * HIDDEN * 2 * 32 // 4 * prec, 8 * 32 * HIDDEN // 4 * prec
    for phase in ("fwd", "bwd"):
        for block in (1, 2):
            assert experts[f"W/{phase}/blocks.{block}/experts_up"] == (2, up)
            assert experts[f"W/{phase}/blocks.{block}/experts_down"] == (2, down)
    # each of the 4 expert-data-parallel groups gathers its own experts
    assert sum("experts" in c.tag for c in gathers) == 4 * len(experts)
    dense = {c.tag: (c.ranks, c.size_bytes) for c in gathers if "experts" not in c.tag}
    assert dense["W/fwd/blocks.1/router"] == (8, (HIDDEN * 8 + 8) * prec)  # 8 scores and their bias
    assert {ranks for ranks, _ in dense.values()} == {8}


def test_zero3_with_experts_shards_each_over_its_own_group(tiny):
    """The resident state: the dense weights' ZeRO-3 shard over 8 replicas, the experts'
    over their 2 (e = 4); with e = 8 nothing shards the experts and none are gathered."""
    from mcdla.hw.memory import model_state_bytes

    four = _record(tiny, 8, _sets(4, ("execution.zero", 3)))
    work = four.inputs.workload
    experts = MOE_LAYERS * 8 * 3 * HIDDEN * 32
    dense = work.params - experts
    assert four.model_state_bytes == pytest.approx(model_state_bytes(work, params=dense, zero=3, dp=8)
                                                   + model_state_bytes(work, params=experts / 4, zero=3, dp=2))
    assert four.model_state_bytes == pytest.approx(model_state_bytes(work, params=dense / 8 + experts / 8, zero=3))
    eight = _record(tiny, 8, _sets(8, ("execution.zero", 3), ("execution.exact", True)))
    assert not [c for c in eight.collectives if c.tag.startswith("W/") and "experts" in c.tag]
    assert [c for c in eight.collectives if c.tag.startswith("W/")]


def test_zero3_with_experts_symmetry_equals_exact(tiny):
    fast, exact = symmetry_equals_exact(tiny, _sets(4, ("execution.zero", 3)))
    assert fast["device_mem_peak_bytes"] == pytest.approx(exact["device_mem_peak_bytes"], rel=1e-9)
