"""The training driver: parallel modes, memory virtualization and what a run reports."""

from __future__ import annotations

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.hw.workload import load_workload
from mcdla.errors import InfeasibleError, InputError
from mcdla.hw.topology import load_topology
from mcdla.run import simulate
from mcdla.sim.training import Iteration

# A small batch keeps each run to a fraction of a second; every behaviour tested here
# is independent of the batch size.
BATCH = 64


def run(topology="ring", policy="bw_aware", workload="alexnet", parallel="data", batch=BATCH, sets=()):
    return simulate(topology, policy, workload, parallel, batch, list(sets))


def iterate(topology="ring", policy="bw_aware", workload="alexnet", parallel="data", batch=BATCH,
            **training):
    it = Iteration(load_topology(topology), load_workload(workload), ExecutionSpec(parallel=parallel, batch=batch, policy=policy,
                                 training=TrainingSpec(**training)))
    return it, it.run()


def channel_bytes(result, prefix):
    return {k: v for k, v in result["link_bytes"].items() if k.startswith(prefix)}


def test_oracle_has_no_virtualization_traffic():
    result = run("oracle")
    assert result["busy_s"]["virtualization"] == 0
    assert result["remote_mem_bytes"] == 0
    assert result["cpu_mem_bw_Bps"] == {"avg": 0.0, "peak": 0.0}


def test_dc_without_virtualization_equals_oracle():
    off = run("dc", sets=[("training.virtualization", False)])
    oracle = run("oracle")
    assert off["iteration_time_s"] == pytest.approx(oracle["iteration_time_s"], rel=1e-12)
    assert off["busy_s"] == pytest.approx(oracle["busy_s"])


def test_virtualization_adds_only_recompute_to_compute_on_dc():
    it_on, on = iterate("dc")
    _, off = iterate("dc", virtualization=False)
    plan = it_on.plan
    recompute_s = sum(plan.fwd_s[t] for t in plan.read_in_bwd if plan.recomputed[t])
    for dev_on, dev_off in zip(on.devices, off.devices):
        busy_on = sum(e - s for s, e, *_ in dev_on.compute)
        busy_off = sum(e - s for s, e, *_ in dev_off.compute)
        assert busy_on - busy_off == pytest.approx(recompute_s, rel=1e-9)
    assert on.iteration_time_s > off.iteration_time_s


@pytest.mark.parametrize("topology", ["hc", "star", "ring"])
def test_without_virtualization_designs_differ_from_oracle_only_in_sync(topology):
    off = run(topology, sets=[("training.virtualization", False)])
    oracle = run("oracle")
    assert off["busy_s"]["compute"] == pytest.approx(oracle["busy_s"]["compute"], rel=1e-12)
    assert off["busy_s"]["virtualization"] == 0
    gap = off["iteration_time_s"] - oracle["iteration_time_s"]
    assert abs(gap) <= max(off["exposed_s"]["sync"], oracle["exposed_s"]["sync"]) + 1e-9


def test_bw_aware_moves_the_same_bytes_as_local_over_two_memory_nodes():
    local, aware = run(policy="local"), run(policy="bw_aware")
    d0_local = channel_bytes(local, "D0>M")
    d0_aware = channel_bytes(aware, "D0>M")
    assert sum(d0_aware.values()) == pytest.approx(sum(d0_local.values()), rel=1e-9)
    # Local: everything to the right neighbour (collective traffic is on both sides).
    used_local = d0_local
    assert aware["remote_mem_bytes"] == pytest.approx(local["remote_mem_bytes"], rel=1e-9)
    left, right = d0_aware["D0>M7"], d0_aware["D0>M0"]
    assert left == pytest.approx(right, rel=1e-9)
    assert used_local["D0>M0"] > used_local["D0>M7"]
    assert aware["iteration_time_s"] <= local["iteration_time_s"]


@pytest.mark.parametrize("parallel", ["data", "model"])
def test_offload_bytes_equal_the_workloads_feature_map_bytes(parallel):
    it, record = iterate("ring", parallel=parallel)
    work = it.workload
    D = len(it.topology.devices)
    if parallel == "data":
        expected = work.offload_bytes_per_sample * BATCH / D
    else:  # a 1/D shard of every feature map, but the whole input batch
        input_bytes = work.layers[0].out_elems_per_sample * work.precision_bytes * BATCH
        expected = (work.offload_bytes_per_sample * BATCH - input_bytes) / D + input_bytes
    for device in record.devices:
        assert device.offloaded_bytes == pytest.approx(expected, rel=1e-12)
        assert device.prefetched_bytes == pytest.approx(expected, rel=1e-12)
        assert set(device.offloads.values()) == {1}
        assert device.offloads.keys() == device.prefetches.keys()


def test_prefetch_completes_before_the_backward_layer_that_needs_it():
    it, record = iterate("dc", workload="vgg_e")
    plan = it.plan
    for device in record.devices:
        for tensor, step in plan.first_need.items():
            layer = plan.bwd_order[step]
            assert device.prefetch_ready[tensor] <= device.backward_start[layer] + 1e-15


def test_device_memory_returns_to_its_starting_value():
    for virtualization in (True, False):
        it, record = iterate("ring", virtualization=virtualization)
        for device in record.devices:
            assert device.memory[0][1] == it.model_state_bytes
            assert device.memory[-1][1] == pytest.approx(it.model_state_bytes, rel=1e-12)
            assert device.memory_peak_bytes > it.model_state_bytes


def test_virtualization_lowers_device_memory_peak():
    on, off = run("ring"), run("ring", sets=[("training.virtualization", False)])
    assert on["device_mem_peak_bytes"] < off["device_mem_peak_bytes"]


@pytest.mark.parametrize("topology", ["star", "ring"])
def test_cpu_memory_bandwidth_is_zero_without_host_backing(topology):
    assert run(topology)["cpu_mem_bw_Bps"] == {"avg": 0.0, "peak": 0.0}


@pytest.mark.parametrize("topology", ["dc", "hc"])
def test_host_backed_designs_use_cpu_memory_bandwidth(topology):
    bw = run(topology)["cpu_mem_bw_Bps"]
    socket = load_topology(topology).host.socket_mem_bw
    assert 0 < bw["avg"] <= bw["peak"] <= socket * (1 + 1e-9)


def test_doubling_pcie_bandwidth_never_slows_dc():
    for workload in ("alexnet", "rnn_lstm1"):
        base = run("dc", workload=workload)
        fast = run("dc", workload=workload, sets=[("links.pcie3_x16.bw", "32 GB/s")])
        assert fast["iteration_time_s"] <= base["iteration_time_s"] * (1 + 1e-12)


BRANCHY = """
    name: branchy
    input: {channels: 3, height: 8, width: 8}
    layers:
      - {name: c1, kind: conv, out_channels: 8, kernel: 3, padding: 1}
      - {name: bn1, kind: batchnorm}
      - {name: r1, kind: relu}
      - {name: c2, kind: conv, out_channels: 8, kernel: 3, padding: 1, inputs: [r1]}
      - {name: c3, kind: conv, out_channels: 8, kernel: 1, inputs: [r1]}
      - {name: p3, kind: maxpool, kernel: 3, stride: 1, padding: 1, inputs: [r1]}
      - {name: sum, kind: add, inputs: [c2, c3, p3]}
      - {name: fc, kind: fc, out_features: 10}
"""


def _collective_bytes(record):
    ops = {}
    for c in record.collectives:
        ops[c.op] = ops.get(c.op, 0.0) + c.size_bytes
    return ops


def test_model_parallel_reduces_each_partial_dx_once_per_tensor(tmp_path):
    """r1 feeds two convs and a pool: their partial dX is summed locally and
    reduce-scattered once; batch norm works on its channel shard, so it gathers and
    reduces nothing; the pool feeds no GEMM, so it runs on its shard too."""
    path = tmp_path / "branchy.yaml"
    path.write_text(BRANCHY)
    it = Iteration(load_topology("ring"), load_workload(str(path)),
                   ExecutionSpec(parallel="model", batch=BATCH, policy="bw_aware"))
    ops = _collective_bytes(it.run())
    fmap = 8 * 8 * 8 * BATCH * 4  # one 8x8x8 fp32 feature map over the batch
    assert ops["all_gather"] == pytest.approx(2 * fmap)  # r1 (for c2, c3) and sum (for fc)
    assert ops["reduce_scatter"] == pytest.approx(2 * fmap)  # dX of r1 and of sum, once each
    assert "all_reduce" not in ops


def test_model_parallel_recurrent_steps_reduce_only_the_hidden_state():
    """An LSTM step's dh_{t-1} is a partial sum (W_h^T dgates); dc_{t-1} and the x_t
    slice of the data need no reduction: T-1 reduce-scatters of hidden x batch elements."""
    _, record = iterate("ring", workload="rnn_lstm1", parallel="model")
    reduces = [c for c in record.collectives if c.op == "reduce_scatter"]
    assert len(reduces) == 25 - 1
    assert {c.size_bytes for c in reduces} == {1024 * BATCH * 4}
    assert {c.op for c in record.collectives} == {"all_gather", "reduce_scatter"}


# Model-parallel bytes counted by hand (issue 29): what device D0 of the oracle (8
# devices, batch 512, fp32, no virtualization traffic) sends over its device links in
# one iteration. A ring all-gather or reduce-scatter of n bytes over 8 devices has each
# device send 7/8 n; the oracle's rings split n between them, not the 7/8.
def _sent_by_d0(workload, sets=()):
    links = simulate("oracle", "bw_aware", workload, "model", 512, list(sets))["link_bytes"]
    return sum(v for k, v in links.items() if k.startswith("D0>D"))


def test_model_parallel_lstm_step_gathers_h_and_reduce_scatters_dh():
    # Two timesteps of rnn_lstm1 (hidden 1024): step t1's GEMM reads h of step t0, not
    # its stored h, c and gates (6 x hidden). h over the batch: 1024 x 512 x 4 B =
    # 2,097,152 B. Forward all-gathers it (7/8: 1,835,008 B); backward reduce-scatters
    # t1's partial dh (7/8: 1,835,008 B); t0 reads only the data, so it reduces nothing.
    assert _sent_by_d0("rnn_lstm1", [("workload.timesteps", 2)]) == pytest.approx(3_670_016, rel=1e-12)


def test_model_parallel_gru_step_gathers_h_and_reduce_scatters_dh():
    # Two timesteps of rnn_gru (hidden 2816): h is 2816 x 512 x 4 B = 5,767,168 B, not
    # the 5 x hidden stored; 7/8 of it gathered, 7/8 of dh reduce-scattered:
    # 2 x 5,046,272 = 10,092,544 B.
    assert _sent_by_d0("rnn_gru", [("workload.timesteps", 2)]) == pytest.approx(10_092_544, rel=1e-12)


def test_model_parallel_dx_all_reduce_sends_the_reduce_scatters_bytes_twice():
    # training.dx_reduction=all_reduce (the paper's Fig. 4 reading): t1's partial dh
    # (2,097,152 B) is all-reduced, 2 x 7/8 of it sent per device (3,670,016 B), beside
    # the forward gather of h (1,835,008 B): 5,505,024 B where the reduce-scatter sends
    # 3,670,016 B.
    sets = [("workload.timesteps", 2), ("training.dx_reduction", "all_reduce")]
    assert _sent_by_d0("rnn_lstm1", sets) == pytest.approx(5_505_024, rel=1e-12)


INCEPTION = """
    name: inception3a
    input: {channels: 3, height: 28, width: 28}
    defaults:
      conv: {bias: false}
    blocks:
      cbr:
        args: [channels, kernel, padding]
        layers:
          - {name: conv, kind: conv, out_channels: $channels, kernel: $kernel, padding: $padding}
          - {name: bn, kind: batchnorm}
          - {name: relu, kind: relu}
    layers:
      - {name: stem, block: cbr, args: {channels: 192, kernel: 1, padding: 0}}
      # GoogLeNet's inception 3a (googlenet.yaml) on a 192 x 28 x 28 input
      - {name: b1, block: cbr, inputs: [stem], args: {channels: 64, kernel: 1, padding: 0}}
      - {name: b2r, block: cbr, inputs: [stem], args: {channels: 96, kernel: 1, padding: 0}}
      - {name: b2, block: cbr, args: {channels: 128, kernel: 3, padding: 1}}
      - {name: b3r, block: cbr, inputs: [stem], args: {channels: 16, kernel: 1, padding: 0}}
      - {name: b3, block: cbr, args: {channels: 32, kernel: 3, padding: 1}}
      - {name: b4pool, kind: maxpool, inputs: [stem], kernel: 3, stride: 1, padding: 1, ceil_mode: true}
      - {name: b4, block: cbr, args: {channels: 32, kernel: 1, padding: 0}}
      - {name: concat, kind: concat, inputs: [b1, b2, b3, b4]}
"""


def test_model_parallel_inception_module_gathers_each_tensor_once(tmp_path):
    # Three tensors feed GEMMs: the module's input (192 x 28 x 28 = 150,528 elements per
    # sample; read by b1, b2r, b3r and the pool branch, which runs on it whole), b2r's
    # output (96 x 28 x 28 = 75,264) and b3r's (16 x 28 x 28 = 12,544): 238,336 elements,
    # x 512 samples x 4 B = 488,112,128 B. Each is all-gathered once (7/8: 427,098,112 B)
    # and its dX reduce-scattered once (427,098,112 B), the pool's partial dX folded into
    # the input's: 854,196,224 B. The stem reads the data: no dX.
    path = tmp_path / "inception3a.yaml"
    path.write_text(INCEPTION)
    assert _sent_by_d0(str(path)) == pytest.approx(854_196_224, rel=1e-12)


def test_model_parallel_regather_adds_a_backward_all_gather_per_forward_one():
    _, plain = iterate("ring", parallel="model")
    _, regather = iterate("ring", parallel="model", regather=True)
    def gathered(record):
        return sum(c.size_bytes for c in record.collectives if c.op == "all_gather")
    assert gathered(regather) == pytest.approx(2 * gathered(plain))
    assert regather.iteration_time_s > plain.iteration_time_s


def test_data_parallel_all_reduces_every_weight_once():
    it, record = iterate("ring", parallel="data")
    sizes = sorted(c.size_bytes for c in record.collectives)
    expected = sorted(p * it.workload.precision_bytes for p in it.workload.weight_groups.values() if p)
    assert sizes == pytest.approx(expected)
    assert {c.op for c in record.collectives} == {"all_reduce"}


def test_results_are_deterministic():
    a, b = run("dc", parallel="model"), run("dc", parallel="model")
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b


def test_single_device_runs_without_collectives():
    result = run("single", batch=8)
    assert result["devices"] == 1
    assert result["busy_s"]["sync"] == 0
    assert result["iteration_time_s"] == pytest.approx(result["busy_s"]["compute"], rel=1e-9)


def test_memory_node_capacity_is_enforced():
    with pytest.raises(InfeasibleError, match="capacity"):
        run("ring", sets=[("memory_node.dimm_capacity", "1 MB")])


def test_policy_is_noted_where_it_does_not_apply():
    assert any("ignored" in n for n in run("dc", policy="local")["notes"])
    assert not any("ignored" in n for n in run("ring", policy="local")["notes"])


@pytest.mark.parametrize("batch", [0, -1, 2.5, "x", 10**12])
def test_bad_batch_is_an_input_error(batch):
    with pytest.raises(InputError, match="batch"):
        run(batch=batch)


def test_batch_must_divide_among_devices_in_data_parallel():
    with pytest.raises(InputError, match="divisible"):
        run(batch=60)


def test_device_memory_is_a_capacity_allocations_wait_for_offloads():
    # At batch 4096 (512 per device) VGG-E's forward outruns its offloads: with room
    # to spare the maps pile up past 16 GiB; with 16 GiB the forward waits instead.
    roomy = run("ring", workload="vgg_e", batch=4096, sets=[("device.hbm_capacity", "64 GiB")])
    tight = run("ring", workload="vgg_e", batch=4096, sets=[("device.hbm_capacity", "16 GiB")])
    assert roomy["device_mem_peak_bytes"] > 16 * 2**30
    assert tight["device_mem_peak_bytes"] <= 16 * 2**30
    assert tight["iteration_time_s"] > roomy["iteration_time_s"]
    assert tight["busy_s"]["compute"] == pytest.approx(roomy["busy_s"]["compute"], rel=1e-12)


def test_a_working_set_that_cannot_fit_is_infeasible():
    # conv1.1's input and output (822 MB each at 64 samples) beside 1.15 GB of weights
    # and gradients cannot fit in 2 GiB, whatever is offloaded.
    with pytest.raises(InfeasibleError, match="cannot fit the output of .* even with virtualization"):
        run("dc", workload="vgg_e", batch=512, sets=[("device.hbm_capacity", "2 GiB")])


def test_recompute_time_is_reported_from_the_recompute_kernels():
    from mcdla.run import simulate

    rebuilt = simulate("ring", "bw_aware", "resnet34", "data", 256, [("training.checkpoint", "full")])
    kept = simulate("ring", "bw_aware", "resnet34", "data", 256, [("training.recompute_cheap", False)])
    assert rebuilt["recompute_s"] > 0 and kept["recompute_s"] == 0
    assert rebuilt["recompute_s"] < rebuilt["busy_s"]["compute"]
