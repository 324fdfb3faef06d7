"""Tensor parallelism (Megatron-style) and ZeRO stages 1-3 (issue 12)."""

from __future__ import annotations

import functools
import math
import random

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.errors import InputError
from mcdla.hw.network import Ring, p2p_paths, sub_ring
from mcdla.hw.parallelism import even_stages, pipeline_stages, tensor_split
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.sim.training import Iteration

GPT2 = dict(layers=12, hidden=768, seq=1024)  # gpt2.yaml
GPT2_PARAMS = 124_439_808


def iterate(topology="ring", workload="gpt2", batch=16, workload_sets=(), training_options=None, **execution):
    training = TrainingSpec(virtualization=False, **(training_options or {}))
    spec = ExecutionSpec(batch=batch, training=training, **execution)
    return Iteration(load_topology(topology), load_workload(workload, list(workload_sets)), spec).run()


def test_megatron_block_splits_into_two_all_reduces_each_way():
    layers = load_workload("gpt2").layers
    split = tensor_split(layers, 4)
    names = {l.name: i for i, l in enumerate(layers)}
    # Attention: the QKV projection is column-parallel, the output projection row-parallel.
    assert split.split[names["blocks.1/linear4"]] and split.split[names["blocks.1/attention5"]]
    assert names["blocks.1/attn_out"] in split.reduce_out and names["blocks.1/mlp_out"] in split.reduce_out
    # Forward: the two row-parallel outputs of each block, and the vocab-parallel embedding.
    assert len(split.reduce_out) == 2 * GPT2["layers"] + 1
    # Backward: the dX of each block's two norms (read by column-parallel layers), and the final norm's (the head).
    assert len(split.partial_dx) == 2 * GPT2["layers"] + 1
    assert not split.gathers  # nothing needs a whole tensor that is split


def test_tensor_parallel_moves_megatrons_bytes_per_layer():
    tp, batch = 4, 16
    record = iterate(tensor_parallel=tp, batch=batch)
    dp = 8 // tp
    activation = (batch // dp) * GPT2["seq"] * GPT2["hidden"] * 2  # b s h, fp16 (mixed precision)
    reductions = [c for c in record.collectives if c.tag.startswith(("tp-out", "tp-dX"))]
    groups = 8 // tp
    assert len(reductions) == groups * 2 * (2 * GPT2["layers"] + 1)
    assert all(c.size_bytes == activation and c.op == "all_reduce" and c.ranks == tp for c in reductions)


def test_tensor_groups_are_neighbours_and_their_rings_stay_inside_the_group():
    topology = load_topology("ring")
    record = iterate(tensor_parallel=2)
    tp_rings = {name: ring for name, ring in record.rings.items() if "/tp" in name}
    assert tp_rings and all(r.size == 2 for r in tp_rings.values())
    group0 = [r for n, r in tp_rings.items() if n.endswith("/tp0")]
    assert all(set(r.ranks) == {"D0", "D1"} for r in group0)
    # D0 and D1 are joined through M0: each segment is the two hops between them, one
    # direction each way, never around the other six devices.
    for ring in group0:
        assert all(len(seg) == 2 for seg in ring.segments)
        nodes = {topology.channels[c].src for seg in ring.segments for c in seg}
        assert nodes <= {"D0", "M0", "D1"}


def test_a_sub_ring_of_every_rank_is_the_ring():
    ring = Ring("r", ("A", "B", "C"), (("a>b",), ("b>c",), ("c>a",)), (1.0, 1.0, 1.0))
    assert sub_ring(ring, {"A", "B", "C"}, "x") is ring
    part = sub_ring(ring, {"A", "C"}, "x")
    assert part.segments == (("a>b", "b>c"), ("c>a",)) and part.latency_s == (2.0, 1.0)


@pytest.mark.parametrize("zero, per_param", [
    # mixed-precision Adam: 2 + 2 bytes of fp16 weights and gradients, K = 12 of fp32
    # master and moments (ZeRO, Rajbhandari et al. 2020, Section 3.1), data-parallel over 8.
    (0, 2 + 2 + 12),
    (1, 2 + 2 + 12 / 8),
    (2, 2 + (2 + 12) / 8),
    (3, (2 + 2 + 12) / 8),
])
def test_zero_model_state_per_device_matches_the_paper(zero, per_param):
    record = iterate(zero=zero)
    assert record.model_state_bytes == pytest.approx(GPT2_PARAMS * per_param, rel=1e-12)


def test_zero_collectives_per_stage():
    grads = GPT2_PARAMS * 2
    by_stage = {z: iterate(zero=z).collectives for z in (0, 1, 2, 3)}
    ops = {z: {op: sum(c.size_bytes for c in cs if c.op == op) for op in ("all_reduce", "reduce_scatter", "all_gather")}
           for z, cs in by_stage.items()}
    assert ops[0] == pytest.approx({"all_reduce": grads, "reduce_scatter": 0, "all_gather": 0})
    # Stage 1 (Megatron's distributed optimizer): gradients reduce-scattered to the owners
    # of their optimizer state, then the updated weights all-gathered after the step.
    assert ops[1] == pytest.approx({"all_reduce": 0, "reduce_scatter": grads, "all_gather": grads})
    # Stage 2: gradients reduce-scattered to their owners.
    assert ops[2] == pytest.approx({"all_reduce": 0, "reduce_scatter": grads, "all_gather": grads})
    # Stage 3: weights gathered before each group's forward and again before its backward.
    assert ops[3] == pytest.approx({"all_reduce": 0, "reduce_scatter": grads, "all_gather": 2 * grads})


def test_zero_shards_the_optimizer_step():
    plain, sharded = iterate(), iterate(zero=1)
    step = [next(e - s for s, e, k, _ in r.devices[0].compute if k == "optimizer step") for r in (plain, sharded)]
    assert step[1] < step[0] / 4


def test_degrees_are_checked_against_the_design():
    with pytest.raises(InputError, match="do not divide"):
        iterate(tensor_parallel=3)
    with pytest.raises(InputError, match="data-parallel training"):
        ExecutionSpec(parallel="model", tensor_parallel=2)
    with pytest.raises(InputError, match="data-parallel training"):
        ExecutionSpec(parallel="model", pipeline_parallel=2)
    with pytest.raises(InputError, match="use 0 or 1"):
        ExecutionSpec(pipeline_parallel=2, zero=2)


def test_tensor_parallelism_on_a_cnn_alternates_column_and_row_layers():
    record = iterate(workload="vgg16", tensor_parallel=2, batch=16)  # invariants checked by run()
    assert any(c.tag.startswith("tp-out") for c in record.collectives)
    assert any(c.tag.startswith("tp-dX") for c in record.collectives)


# Pipeline parallelism --------------------------------------------------------------

EQUAL_STAGES = """
name: relus
input: {channels: 64, height: 56, width: 56}
layers:
""" + "".join(f"  - {{name: r{i}, kind: relu}}\n" for i in range(8))


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
@pytest.mark.parametrize("stages, micro", [(2, 4), (4, 8), (8, 8), (4, 1)])
def test_pipeline_bubble_with_equal_stages_and_free_communication(tmp_path, schedule, stages, micro):
    path = tmp_path / "relus.yaml"
    path.write_text(EQUAL_STAGES)
    free = [("links.nvlink.bw", "1e17 B/s"), ("links.nvlink.latency", 0)]  # communication is free
    topo = load_topology("ring", free)
    spec = ExecutionSpec(batch=64 * micro, pipeline_parallel=stages,
                         training=TrainingSpec(virtualization=False, micro_batches=micro, schedule=schedule))
    record = Iteration(topo, load_workload(str(path)), spec).run()
    busy = [sum(e - s for s, e, *_ in d.compute) for d in record.devices]
    assert max(busy) == pytest.approx(min(busy), rel=1e-12)  # equal stages
    # Each device computes m micro-batches of its stage; the rest of the iteration is
    # the bubble, (p - 1) / (m + p - 1) of it.
    bubble = 1 - busy[0] / record.iteration_time_s
    assert bubble == pytest.approx((stages - 1) / (micro + stages - 1), rel=1e-5)


def test_1f1b_holds_fewer_micro_batches_than_gpipe():
    peaks = {}
    for schedule in ("1f1b", "gpipe"):
        record = iterate(pipeline_parallel=4, training_options=dict(micro_batches=8, schedule=schedule))
        peaks[schedule] = record.devices[0].memory_peak_bytes
    assert peaks["1f1b"] < peaks["gpipe"]


def test_pipeline_stages_send_activations_and_gradients_point_to_point():
    record = iterate(pipeline_parallel=2, training_options=dict(micro_batches=4))
    hidden = GPT2["seq"] * GPT2["hidden"] * 2  # one sample's residual stream, fp16
    micro = 16 // 4 // 4  # batch 16 over dp = 4 replicas, 4 micro-batches
    # Each of the 4 replicas sends 4 micro-batches forward and 4 gradients back; a peer
    # four devices round the ring is as far either way, so each transfer is split over
    # the 3 rings both ways (6 flows of 4 hops through memory-nodes, 8 channels each).
    assert len(record.transfers) == 4 * 4 * 2 * 6
    assert {size for _, size in record.transfers} == {micro * hidden / 6}
    assert {len(path) for path, _ in record.transfers} == {8}
    assert len({path for path, _ in record.transfers}) == 4 * 2 * 6  # per replica, way and ring
    # Gradients are reduced over each stage's data-parallel group only.
    reductions = [c for c in record.collectives if c.op == "all_reduce"]
    assert {c.ranks for c in reductions} == {4}
    assert sum(c.size_bytes for c in reductions) == pytest.approx(GPT2_PARAMS * 2)  # each stage its own groups


def test_a_pipeline_pairs_route_is_derived_once_per_run(monkeypatch):
    # The rank classes read every stage pair's route and the sends read them again: one
    # derivation per pair in a run (mcdla.sim.pipeline.pipeline_route), the same routes.
    from mcdla.sim import pipeline, training

    asked = []

    def counted(rings, src, dst, *rest):
        asked.append((src, dst))
        return p2p_paths(rings, src, dst, *rest)

    for module in (pipeline, training):  # wherever a run may derive a route
        monkeypatch.setattr(module, "p2p_paths", counted, raising=False)
    record = iterate(pipeline_parallel=2, training_options=dict(micro_batches=4))
    assert asked and len(asked) == len(set(asked))
    assert len(record.transfers) == 4 * 4 * 2 * 6  # as in the test above: every send made


@pytest.mark.parametrize("design, src, dst, flows, hops", [
    ("dgx_h100", "D0", "D3", 18, 2),  # straight through the NVSwitch, over all 18 NVLinks
    ("dgx_h100_4node", "D0", "D8", 18, 2),  # GPU 0 of node 0 to GPU 0 of node 1: over rail 0, a flow a ring
    ("dgx_h100_4node", "D0", "D9", 18, 4),  # another rail: NVSwitch to GPU 1, its rail (PXN)
    ("ring", "D0", "D1", 6, 2),  # the MC-DLA ring's neighbour: the 3 rings' forward links, 2 flows each
    ("ring", "D0", "D4", 6, 8),  # across the ring: as far either way, both ways
])
def test_a_point_to_point_transfer_takes_the_shortest_ways_of_every_ring(design, src, dst, flows, hops):
    topology = load_topology(design)
    paths = p2p_paths(topology.rings, src, dst, topology.reverse_of, topology.channels)
    assert len(paths) == flows and {len(path) for _, path, _ in paths} == {hops}
    assert sum(share for share, _, _ in paths) == pytest.approx(1.0)
    for _, path, latency in paths:
        channels = [topology.channels[c] for c in path]
        assert channels[0].src == src and channels[-1].dst == dst
        assert all(a.dst == b.src for a, b in zip(channels, channels[1:]))
        assert latency == pytest.approx(sum(c.latency_s for c in channels))


def test_a_sub_ring_on_a_switch_goes_straight_through_it():
    topology = load_topology("dgx_h100")
    ring = topology.rings[0]
    part = sub_ring(ring, {"D0", "D2", "D5"}, "x", topology.reverse_of(ring), topology.channels)
    # D5 back to D0 through the switch, not round through D6 and D7
    assert [[topology.channels[c].dst for c in segment] for segment in part.segments] == \
        [["FS0", "D2"], ["FS0", "D5"], ["FS0", "D0"]]
    assert part.hub == "FS0"  # a switch ring: the switch algorithms run on it


def test_tensor_parallel_groups_run_the_switch_algorithms():
    """A tensor-parallel group's sub-ring on a switch is a switch ring (it was refused)."""
    times = {c: iterate("dgx_h100", tensor_parallel=4, collective=c).iteration_time_s
             for c in ("ring", "direct", "in_switch")}
    assert times["in_switch"] < times["ring"]  # the switch reduces: about half the bytes


# ZeRO-Offload -------------------------------------------------------------------------

def test_zero_offload_keeps_only_fp16_weights_and_gradients_on_the_device():
    record = iterate("ring", zero=1, offload_optimizer=True)
    assert record.model_state_bytes == pytest.approx(GPT2_PARAMS * (2 + 2))
    # The fp32 master and both Adam moments (12 bytes a parameter), 1/8 from each device.
    assert sum(record.store_resident_bytes.values()) == pytest.approx(GPT2_PARAMS * 12)


def test_zero_offload_on_the_host_steps_on_the_cpu_through_its_dram():
    record = iterate("dc", zero=1, offload_optimizer=True)
    ports = [p for p in record.inputs.topology.ports if p.startswith("CPU")]
    carried = sum(record.network.bytes_by_resource.get(p, 0.0) for p in ports)
    # fp16 gradients in (2), the CPU's Adam pass (28: gradient, master read and
    # write, fp16 weights, two moments read and written), fp16 weights out (2).
    assert carried == pytest.approx(GPT2_PARAMS * (2 + 28 + 2))
    assert all(k != "optimizer step" for d in record.devices for _, _, k, _ in d.compute)


def test_zero_offload_behind_memory_nodes_fetches_the_state_in_chunks():
    record = iterate("ring", zero=1, offload_optimizer=True)
    device = record.devices[0]
    fetched = [e - s for s, e, k, _ in device.virtualization if k == "optimizer state in"]
    share = GPT2_PARAMS * 12 / 8
    assert len(fetched) == -(-share // 4e8)  # chunks of DeepSpeed's 1e8-element buffers
    steps = [k for _, _, k, _ in device.compute if k == "optimizer step"]
    assert len(steps) == len(fetched)


def test_zero_offload_needs_a_backing_store():
    with pytest.raises(InputError, match="no backing store"):
        iterate("single", workload="gpt2", batch=2, offload_optimizer=True)


# Rank placement ------------------------------------------------------------------------

def test_tensor_groups_on_neighbours_beat_groups_across_the_ring():
    from mcdla.run import simulate

    base = [("execution.tensor_parallel", 2), ("training.virtualization", False)]
    near = simulate("ring", "bw_aware", "gpt2", "data", 32, base)
    far = simulate("ring", "bw_aware", "gpt2", "data", 32,
                   base + [("execution.rank_order", "D0,D4,D1,D5,D2,D6,D3,D7")])
    assert near["groups"]["tensor"][0] == ["D0", "D1"] and far["groups"]["tensor"][0] == ["D0", "D4"]
    assert near["iteration_time_s"] < far["iteration_time_s"]
    assert "groups" not in simulate("ring", "bw_aware", "gpt2", "data", 32, base[1:])  # plain data parallelism


def test_a_rank_order_must_name_every_device_once():
    with pytest.raises(InputError, match="rank_order.*permutation"):
        iterate(tensor_parallel=2, rank_order="D0,D0,D1,D2,D3,D4,D5,D6")


@pytest.mark.parametrize("options, message", [
    (dict(schedule="gpipe"), r"training\.schedule: orders a pipeline's micro-batches"),
    (dict(schedule="interleaved", virtual_stages=2, micro_batches=2), r"training\.micro_batches: the interleaved"),
    (dict(virtual_stages=2), r"training\.schedule: the interleaved schedule runs 2 or more"),
])
def test_pipeline_options_without_a_pipeline_are_refused_not_ignored(options, message):
    with pytest.raises(InputError, match=message):
        iterate(training_options=options)


def test_sequence_parallelism_turns_each_all_reduce_into_a_reduce_scatter_and_an_all_gather():
    plain = iterate(tensor_parallel=4, batch=16)
    seq = iterate(tensor_parallel=4, batch=16, sequence_parallel=True)
    per_block = 2 * GPT2["layers"] + 1  # as Megatron: two per block, plus the embedding / the head

    def tp_ops(record):
        ops = {}
        for c in record.collectives:
            if c.tag.startswith("tp-"):
                ops[c.op] = ops.get(c.op, 0) + c.size_bytes
        return ops

    activation = (16 // 2) * GPT2["seq"] * GPT2["hidden"] * 2  # b s h, fp16, per tensor group
    groups = 2
    assert tp_ops(plain) == pytest.approx({"all_reduce": groups * 2 * per_block * activation})
    assert tp_ops(seq) == pytest.approx({"reduce_scatter": groups * 2 * per_block * activation,
                                         "all_gather": groups * 2 * per_block * activation})
    # The same bytes on the wire (a ring all-reduce is a reduce-scatter and an all-gather),
    # and the activations between blocks are held in token shards.
    assert seq.devices[0].memory_peak_bytes < plain.devices[0].memory_peak_bytes


def test_sequence_parallelism_needs_a_tensor_group():
    with pytest.raises(InputError, match="tensor_parallel above 1"):
        ExecutionSpec(sequence_parallel=True)


# ZeRO-Infinity: the weights in the backing store too ---------------------------------------

def test_zero_infinity_keeps_no_model_state_on_the_device():
    record = iterate("ring", zero=3, offload_optimizer=True, offload_params=True)
    assert record.model_state_bytes == 0
    # fp16 weights and gradients (2 + 2) and the fp32 master and moments (12), every byte once.
    assert sum(record.store_resident_bytes.values()) == pytest.approx(GPT2_PARAMS * 16)
    device = record.devices[0]
    fetched = sum(e - s for s, e, k, _ in device.virtualization if k.startswith("weights of"))
    assert fetched > 0  # shards come in before their all-gathers
    moved = {}
    for path, size in record.transfers:  # every model-state byte to or from the stores, all devices
        moved[path[0].startswith("M")] = moved.get(path[0].startswith("M"), 0.0) + size
    # In: each weight shard twice (forward, backward), the state and gradients in chunks;
    # out: each gradient shard once, the state and weights in chunks: 2 + (12 + 2) in, 2 + (12 + 2) out.
    assert moved[True] == pytest.approx(GPT2_PARAMS * (2 * 2 + 12 + 2))
    assert moved[False] == pytest.approx(GPT2_PARAMS * (2 + 12 + 2))


def test_zero_infinity_needs_stage_3_and_the_optimizer_offloaded():
    with pytest.raises(InputError, match="zero=3 and execution.offload_optimizer"):
        iterate("ring", zero=2, offload_optimizer=True, offload_params=True)


def test_gpt3_175b_trains_only_where_the_memory_nodes_hold_its_state():
    from mcdla.errors import InfeasibleError
    from mcdla.run import simulate

    sets = [("execution.zero", 3), ("execution.offload_optimizer", True), ("execution.offload_params", True),
            ("training.checkpoint", "full"), ("execution.offload", "capacity_aware")]
    ring = simulate("ring", "bw_aware", "gpt3_175b", "data", 8, sets)  # 8 memory-nodes of 1.28 TB
    assert ring["device_mem_peak_bytes"] < 16 * (1 << 30)
    with pytest.raises(InfeasibleError, match="backing store CPU0"):  # 2 sockets of 256 GB for 2.8 TB
        simulate("dc", "bw_aware", "gpt3_175b", "data", 8, sets)


def test_a_pipeline_batch_is_split_over_replicas_not_devices():
    """8 devices in 2 stages are 4 replicas: a batch of 12 is 4 x 3 micro-batches (it
    was refused as not divisible by 8 devices)."""
    from mcdla.run import simulate

    result = simulate("ring", "bw_aware", "gpt2", "data", 12,
                      [("execution.pipeline_parallel", 2), ("training.virtualization", False),
                       ("training.micro_batches", 3)])
    assert result["iteration_time_s"] > 0


def test_a_bad_rank_order_names_the_devices(capsys):
    from mcdla.cli.main import main

    assert main(["sim", "--set", "execution.rank_order=d0,d1", "--set", "execution.tensor_parallel=2"]) == 2
    err = capsys.readouterr().err
    assert "execution.rank_order: expected a permutation of the 8 devices of ring, D0, D1, D2, ..." in err
    assert "unknown device 'd0'" in err


# Order and overlap: what a schedule changes is when things happen, not how much moves,
# so these read the devices' timelines (issue 22: an extra warm-up forward in 1F1B and a
# ZeRO-3 gather no longer issued a group ahead both passed every byte count).

def _passes(device) -> list[str]:
    """A pipeline device's passes in the order it ran them: "F0", "B0", ... (its
    compute intervals are "fwd <layer> mb<j>" and "bwd <layer> mb<j>")."""
    out: list[str] = []
    for _s, _e, kind, _ in device.compute:
        what, _, rest = kind.partition(" ")
        if what not in ("fwd", "bwd"):
            continue  # the optimizer step
        name = ("F" if what == "fwd" else "B") + rest.rsplit(" mb", 1)[1]
        if not out or out[-1] != name:
            out.append(name)
    return out


def test_1f1b_runs_pipedream_flush_order_and_holds_p_minus_s_micro_batches():
    """PipeDream-Flush (Narayanan et al. 2021, Fig. 4): stage s runs p - s - 1 warm-up
    forwards, then alternates one forward and one backward, then drains; so it holds
    at most p - s micro-batches' activations at once."""
    it = Iteration(load_topology("ring"), load_workload("gpt2"),
                   ExecutionSpec(batch=16, pipeline_parallel=4,
                                 training=TrainingSpec(virtualization=False, micro_batches=8)))
    record = it.run()
    # 8 devices, 4 stages of 2 (data-parallel replicas): D0, D1 are stage 0, ... D6, D7 stage 3.
    expected = {
        0: "F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7",
        1: "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7",
        2: "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7",
        3: "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7",
    }
    for n, device in enumerate(record.devices):
        stage = n // 2
        assert " ".join(_passes(device)) == expected[stage], device.name
        # Its resident state, and p - s micro-batches' activations at the peak.
        held = (4 - stage) * it.pipe.held_bytes[stage]
        assert device.memory_peak_bytes == pytest.approx(record.device_state_bytes[n] + held, rel=1e-12)


def test_gpipe_runs_every_forward_before_any_backward():
    it = Iteration(load_topology("ring"), load_workload("gpt2"),
                   ExecutionSpec(batch=16, pipeline_parallel=2,
                                 training=TrainingSpec(virtualization=False, micro_batches=4, schedule="gpipe")))
    record = it.run()
    for device in record.devices:
        assert " ".join(_passes(device)) == "F0 F1 F2 F3 B0 B1 B2 B3"


def test_zero3_gathers_the_next_weight_group_while_the_current_one_computes():
    """ZeRO-3 prefetches parameters (DeepSpeed's stage3 prefetch): the all-gather of the
    next weight group starts before the current group's last layer has finished, in
    forward and in backward, so the gather hides behind compute. (One bucket of every
    gradient, reduced after backward, keeps the reduce-scatters off the stream the
    gathers queue on, so a gather starts as it is issued.)"""
    record = iterate(zero=3, training_options=dict(bucket=GPT2_PARAMS * 2))
    plan, layers = record.plan, record.inputs.workload.layers
    gathers = {c.tag: c for c in record.collectives if c.tag.startswith("W/")}
    device = record.devices[0]
    ends = {label: end for _start, end, label, _ in device.compute}
    for phase, order in (("fwd", plan.weight_order), ("bwd", plan.weight_order[::-1])):
        assert len(order) > 10
        for current, following in zip(order, order[1:]):
            # the compute of ``current`` ends with its last layer in forward, its first in backward
            last = plan.group_last[current] if phase == "fwd" else plan.group_first[current]
            done = ends[f"{phase} {layers[last].name}"]
            started = gathers[f"W/{phase}/{following}"].start_s
            assert started < done, (phase, current, following)



def _fewest_largest(blocks: list[float], stages: int) -> float:
    """The smallest largest-stage total of ``blocks`` in ``stages`` contiguous groups,
    by exhaustive dynamic programming (the reference the bisection must reach)."""
    @functools.lru_cache(None)
    def best(first: int, left: int) -> float:
        if left == 1:
            return sum(blocks[first:])
        found, total = math.inf, 0.0
        for last in range(first, len(blocks) - left + 1):
            total += blocks[last]
            found = min(found, max(total, best(last + 1, left - 1)))
        return found
    return best(0, stages)


@pytest.mark.parametrize("seed", range(40))
def test_pipeline_stages_reach_the_best_split_of_whole_blocks(seed):
    # Blocks of uneven sub-layers, cut only at block starts: the slowest stage is the
    # smallest any split into whole blocks gives. (Cutting at the first block start past
    # the bisection's limit let stages overshoot it: 2,2,1,2,1,3,3 blocks on GPT-3 for 2 each.)
    r = random.Random(seed)
    costs, cuts = [0.0], []
    for b in range(r.randint(8, 24)):
        if b:
            cuts.append(len(costs))
        costs += [r.uniform(0.05, 10) for _ in range(r.randint(1, 6))]
    stages = r.randint(2, 8)
    bounds = [1, *cuts, len(costs)]
    blocks = [sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])]
    split = pipeline_stages(costs, stages, cuts)
    assert len(split) == stages and all(s.start in cuts for s in split[1:])
    assert max(sum(costs[i] for i in s) for s in split) == pytest.approx(_fewest_largest(blocks, stages), rel=1e-9)


def test_alike_blocks_split_evenly_as_megatron_splits_them():
    # 12 alike blocks of 3 layers after 2 embedding layers, then a final norm, an output
    # layer as costly as 5 blocks and the loss, over 2 stages: 6 blocks each, the
    # embedding on the first stage and the output layer on the last (Megatron-LM's
    # split), though balancing time alone would move blocks off the last stage.
    costs = [0.0, 0.1, 0.1] + [1.0, 2.0, 0.5] * 12 + [0.1, 17.5, 0.2]
    blocks = [range(3 + 3 * k, 6 + 3 * k) for k in range(12)]
    first, last = even_stages(costs, 2, blocks)
    assert (first.start, first.stop, last.stop) == (0, 21, len(costs))
    assert pipeline_stages(costs, 2, [1, *(b.start for b in blocks), 39])[0].stop > 21  # time balance differs
    assert even_stages(costs, 5, blocks) is None  # 12 blocks do not divide over 5 stages
    unlike = costs[:3] + [1.0, 2.0, 0.5] * 11 + [1.0, 2.0, 0.6] + costs[-3:]
    assert even_stages(unlike, 2, blocks) is None  # blocks of different times: balance the time
