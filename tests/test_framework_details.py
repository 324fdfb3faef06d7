"""Training-step details real frameworks have (issue 10): gradient buckets, the
optimizer step, mixed precision, in-place ReLU/add and fused BatchNorm+ReLU."""

from __future__ import annotations

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.errors import InfeasibleError
from mcdla.hw.compute import kernel_time
from mcdla.hw.fusion import inplace_workload
from mcdla.hw.layers import Gemm, Kernel
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.run import simulate
from mcdla.sim.training import Iteration

RESNET50_PARAMS = 25_557_032  # torchvision resnet50 (the workload file's header)
MiB = 1 << 20


def iterate(topology="ring", workload="resnet50", batch=32, workload_sets=(), **training):
    topo = load_topology(topology)
    work = load_workload(workload, list(workload_sets))
    spec = ExecutionSpec(batch=batch, training=TrainingSpec(**training))
    return Iteration(topo, work, spec).run()


def gradient_reductions(record):
    return [c for c in record.collectives if c.op == "all_reduce"]


# Gradient buckets ------------------------------------------------------------------

def test_buckets_carry_every_gradient_byte_once_and_fill_before_they_go():
    record = iterate(bucket=25 * MiB)
    sizes = [c.size_bytes for c in gradient_reductions(record)]
    assert sum(sizes) == pytest.approx(RESNET50_PARAMS * 4)
    assert 4 <= len(sizes) <= 5  # 102 MB of fp32 gradients in buckets of 25 MiB (26.2 MB)
    assert all(s >= 25 * MiB for s in sizes[:-1]) and sizes[-1] < 2 * 25 * MiB
    per_group = gradient_reductions(iterate())
    assert len(per_group) == 107  # one per weight group: 53 convs, 53 batch norms, the fc
    assert len(sizes) < len(per_group)


def test_a_bucket_smaller_than_every_group_is_the_papers_one_reduction_per_group():
    paper, tiny = iterate(), iterate(bucket=1)
    assert len(gradient_reductions(tiny)) == len(gradient_reductions(paper))
    assert tiny.iteration_time_s == paper.iteration_time_s


def test_one_bucket_for_everything_goes_when_backward_ends_and_is_not_hidden():
    record = iterate(bucket=1e9, virtualization=False)
    (reduction,) = gradient_reductions(record)
    backward_end = max(end for d in record.devices for _, end, *_ in d.compute)
    assert reduction.start_s == pytest.approx(backward_end)
    assert record.iteration_time_s == pytest.approx(reduction.end_s)


# The optimizer step ----------------------------------------------------------------

@pytest.mark.parametrize("optimizer, precision, bytes_per_param", [
    ("sgd", "fp32", 4 + 4 + 4),  # read g, read w, write w
    ("momentum", "fp32", 4 + 8 + 8),  # and read and write the momentum
    ("adam", "mixed", 2 + (4 + 4 + 2) + 16),  # fp16 g; fp32 master read/write, fp16 w; two moments
])
def test_the_optimizer_step_is_one_memory_bound_pass_over_the_model_state(optimizer, precision,
                                                                           bytes_per_param):
    topo = load_topology("single")
    bare = iterate("single", precision=precision)
    stepped = iterate("single", precision=precision, workload_sets=[("optimizer", optimizer)])
    device = topo.device
    expected = RESNET50_PARAMS * bytes_per_param / device.hbm_bw + device.hbm_latency
    assert stepped.iteration_time_s - bare.iteration_time_s == pytest.approx(expected, rel=1e-9)
    assert stepped.devices[0].compute[-1][2] == "optimizer step"


def test_the_optimizer_step_waits_for_the_last_gradient_reduction():
    record = iterate(bucket=1e9, virtualization=False, workload_sets=[("optimizer", "momentum")])
    (reduction,) = gradient_reductions(record)
    step = record.devices[0].compute[-1]
    assert step[2] == "optimizer step" and step[0] == pytest.approx(reduction.end_s)


def test_no_optimizer_keeps_the_papers_iteration():
    assert iterate().iteration_time_s == iterate(workload_sets=[("optimizer", "none")]).iteration_time_s


# Mixed precision -------------------------------------------------------------------

def test_fp32_gemms_run_on_the_fp32_lanes_and_fp16_on_the_tensor_lanes():
    v100 = load_topology("single", [("device", "v100_sxm2_16gb")]).device
    gemm = Gemm(6400, 4096, 4096)  # whole rounds of 640 PEs: no quantization loss
    fp32 = kernel_time(v100, Kernel("g", gemm.macs, 0, gemm, element_bytes=4))
    fp16 = kernel_time(v100, Kernel("g", gemm.macs, 0, gemm, element_bytes=2))
    peak16 = 640 * 64 * 1.53e9 * v100.gemm_efficiency  # 125 TFLOPS of tensor cores
    peak32 = 640 * 8 * 1.53e9 * v100.gemm_efficiency  # 15.7 TFLOPS on 5,120 FP32 cores
    overhead = v100.hbm_latency + v100.launch_overhead
    assert fp16.time_s - overhead == pytest.approx(gemm.macs / peak16, rel=1e-9)
    assert fp32.time_s - overhead == pytest.approx(gemm.macs / peak32, rel=1e-9)


def test_mixed_precision_halves_activations_and_gradients_and_keeps_fp32_masters():
    fp32 = iterate("ring", precision="fp32", virtualization=False)
    mixed = iterate("ring", precision="mixed", virtualization=False)
    assert mixed.model_state_bytes == RESNET50_PARAMS * (2 + 2 + 4)  # w, g fp16; fp32 master
    assert fp32.model_state_bytes == RESNET50_PARAMS * (4 + 4)
    activations = [r.model_state_bytes + sum(r.plan.tensor_bytes) for r in (fp32, mixed)]
    assert mixed.plan.tensor_bytes[1] == fp32.plan.tensor_bytes[1] / 2
    assert sum(c.size_bytes for c in gradient_reductions(mixed)) == pytest.approx(RESNET50_PARAMS * 2)
    assert activations[1] < activations[0]


# In-place and fused element-wise layers -------------------------------------------

def test_inplace_relu_and_add_share_their_producers_buffer():
    work = load_workload("resnet50")
    merged = inplace_workload(work, inplace=True, fuse_bn_relu=False)
    relus = sum(1 for l in work.layers if l.kind == "relu")
    adds = sum(1 for l in work.layers if l.kind == "add")
    assert (relus, adds) == (49, 16)  # 3 per bottleneck and the stem's; one add per bottleneck
    assert len(work.layers) - len(merged.layers) == relus + adds
    block_out = merged.layer("layer1.1/bn3+layer1.1/add+layer1.1/relu3")
    assert [merged.layers[i].name for i in block_out.inputs] == [
        "layer1.1/conv3", "layer1.0/bn3+layer1.0/add+layer1.0/relu3"]
    assert block_out.bwd_reads == (block_out.inputs[0], merged.index[block_out.name])  # BN's X, ReLU's mask
    assert [merged.layers[i].name for i in merged.layer("layer1.2/conv1").inputs] == [block_out.name]


def test_a_tensor_with_another_reader_is_not_overwritten():
    work = load_workload("resnet50")
    merged = inplace_workload(work, inplace=True, fuse_bn_relu=False)
    # layer1.0's output feeds layer1.1's conv1 and its residual add: that add cannot
    # write into it, so it writes into its first input, bn3, which nothing else reads.
    assert "layer1.0/bn3+layer1.0/add+layer1.0/relu3" in merged.index
    assert "pool1" in merged.index and not any(n.startswith("pool1+") for n in merged.index)


def test_fused_bn_relu_is_one_kernel_that_never_writes_the_intermediate():
    work = load_workload("resnet50")
    bn, relu = work.layer("layer1.1/bn1"), work.layer("layer1.1/relu1")
    fused = inplace_workload(work, inplace=False, fuse_bn_relu=True).layer("layer1.1/bn1+layer1.1/relu1")
    batch, e = 8, 4
    size = bn.out_elems_per_sample * batch * e
    (fwd,) = fused.kernels("fwd", batch, e)
    (bwd,) = fused.kernels("bwd", batch, e)
    # BN forward reads X twice and writes Y; the ReLU then applies as Y is written.
    assert fwd.bytes == 3 * size
    # BN backward (read X, dY twice; write dX... 5 passes) plus the ReLU's mask read.
    assert bwd.bytes == 6 * size
    assert fwd.bytes + bwd.bytes < sum(k.bytes for l in (bn, relu) for p in ("fwd", "bwd")
                                       for k in l.kernels(p, batch, e))


def test_fused_dropout_add_streams_what_the_residual_add_alone_would_forward():
    # Megatron's bias-dropout-add: residual + dropout(x) in one kernel, forward reading
    # x and the residual and writing the sum (the dropped x is never written); backward
    # reads dY and the mask and writes both inputs' gradients.
    work = load_workload("gpt2", [("dropout", True)])
    drop, add = work.layer("blocks.1/mlp_out"), work.layer("blocks.1/res2")
    fused = inplace_workload(work, inplace=False, fuse_bn_relu=False,
                             fuse_dropout_add=True).layer("blocks.1/mlp_out+blocks.1/res2")
    batch, e = 2, 2
    size = drop.out_elems_per_sample * batch * e
    (fwd,) = fused.kernels("fwd", batch, e)
    (bwd,) = fused.kernels("bwd", batch, e)
    assert (fwd.bytes, bwd.bytes) == (3 * size, 4 * size)
    assert fwd.bytes == sum(k.bytes for k in add.kernels("fwd", batch, e))
    # Nothing to fuse without the option, nor without a dropout before the add.
    assert "blocks.1/mlp_out+blocks.1/res2" not in inplace_workload(work, inplace=False, fuse_bn_relu=True).index
    plain = load_workload("gpt2")
    assert inplace_workload(plain, inplace=False, fuse_bn_relu=False, fuse_dropout_add=True).layers == plain.layers


def test_resnet50_batch_256_mixed_fits_a_16gb_v100_only_with_inplace_layers():
    sets = [("device", "v100_sxm2_16gb"), ("training.precision", "mixed"), ("training.virtualization", False),
            ("workload.optimizer", "momentum")]
    with pytest.raises(InfeasibleError, match="with virtualization off"):
        simulate("single", "bw_aware", "resnet50", "data", 256, sets)
    result = simulate("single", "bw_aware", "resnet50", "data", 256, sets + [("training.inplace", True)])
    assert result["device_mem_peak_bytes"] < 16 * (1 << 30)


@pytest.mark.parametrize("topology", ["ring", "dc"])
def test_offloading_merged_layers_keeps_every_invariant(topology):
    # Invariants (every offloaded map prefetched once, memory back to its start) are
    # checked by run(); a merged layer's backward prefetches its own output.
    paper = iterate(topology)
    merged = iterate(topology, inplace=True, fuse_bn_relu=True)
    assert merged.iteration_time_s < paper.iteration_time_s  # fewer, fused element-wise kernels
    # Offloading cheap layers' outputs too, a ReLU in place no longer has its own to move.
    paper = iterate(topology, recompute_cheap=False)
    merged = iterate(topology, recompute_cheap=False, inplace=True)
    moved = [sum(d.offloaded_bytes for d in r.devices) for r in (paper, merged)]
    assert moved[1] < moved[0]
    assert sum(d.prefetched_bytes for d in merged.devices) == moved[1]


# Compressed offloads (cDMA) ---------------------------------------------------------

def test_a_compressing_dma_engine_moves_and_stores_each_map_smaller():
    plain = iterate("dc", workload="vgg_e", batch=64)
    packed = iterate("dc", workload="vgg_e", batch=64, compression=2.6)  # invariants hold the wire bytes
    def host_bytes(record):  # what crossed the sockets' DRAM ports
        return sum(v for k, v in record.network.bytes_by_resource.items() if k.startswith("CPU"))

    assert host_bytes(packed) == pytest.approx(host_bytes(plain) / 2.6)
    assert packed.devices[0].offloaded_bytes == plain.devices[0].offloaded_bytes  # the maps, uncompressed
    assert max(packed.store_peak_bytes.values()) == pytest.approx(max(plain.store_peak_bytes.values()) / 2.6)
    assert packed.iteration_time_s < plain.iteration_time_s  # DC-DLA is bound by its PCIe
    # The maps come back whole: device memory is as without compression.
    assert packed.devices[0].memory_peak_bytes == pytest.approx(plain.devices[0].memory_peak_bytes)


def test_a_merged_in_place_layer_stays_in_its_block():
    from mcdla.sim.offload import block_of, checkpointed

    merged = inplace_workload(load_workload("resnet50"), inplace=True, fuse_bn_relu=False)
    assert block_of("layer1.0/bn3+layer1.0/add+layer1.0/relu3") == "layer1.0"
    # Full checkpointing rebuilds conv3's output inside its block: its only reader is
    # the block's merged bn3+add+relu3, not another block.
    recomputed = checkpointed(merged.layers, "full")
    assert recomputed[merged.index["layer1.0/conv3"]]
    assert not recomputed[merged.index["layer1.0/bn3+layer1.0/add+layer1.0/relu3"]]  # leaves the block
