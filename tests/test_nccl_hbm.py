"""The HBM bandwidth NCCL's kernels take from the compute beside them (mcdla.hw.nccl_hbm,
mcdla.hw.gpu.hbm_left_Bps and nccl_contended)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import simpy

from mcdla.hw.compute import kernel_time
from mcdla.hw.gpu import hbm_left_Bps
from mcdla.hw.layers import Kernel
from mcdla.hw.nccl_hbm import hbm_bytes
from mcdla.sim.device import DeviceCompute
from test_gpu_compute import gemm_kernel, preset

MiB = 2**20


@pytest.fixture(scope="module")
def gpu():
    """A GPU of round numbers: 2 TB/s achievable, 100 SMs of which NCCL holds 20, no
    latency or launch cost (so the stream's time is its bytes over the bandwidth)."""
    return preset("a100_sxm4_80gb", hbm_bw=2e12, hbm_efficiency=1.0, hbm_latency=0.0, launch_overhead=0.0,
                  sms=100, nccl_sms=20)


def test_a_ring_all_reduce_touches_the_fifos_twice_per_wire_byte_and_the_user_buffers_once():
    # 8 ranks, Simple: 1.75 MiB on the wire per MiB (2 x 7/8), written into a FIFO and
    # read back (3.5), the input read and the output written (2)
    assert hbm_bytes("all_reduce", MiB, 8) == pytest.approx(5.5 * MiB)
    # LL: 8 bytes a line per 4 of data, the FIFOs carry the flags too (7), the user buffers not
    assert hbm_bytes("all_reduce", MiB, 8, wire_factor=2.0) == pytest.approx(9.0 * MiB)
    # all-gather of a 1 MiB output over 4 ranks: 3/4 MiB on the wire (1.5), the 1/4 MiB
    # input read and the 1 MiB output written
    assert hbm_bytes("all_gather", MiB, 4) == pytest.approx(2.75 * MiB)


def test_nvls_touches_each_ranks_buffer_six_times_per_byte_of_an_all_reduce():
    # input read, multicast buffer written, read by the switch's reduction, written by its
    # multicast, read back, output written
    assert hbm_bytes("all_reduce", MiB, 8, "nvls") == pytest.approx(6.0 * MiB)
    # reduce-scatter: the input copied in (2) and reduced (1), 1/8 of output written
    assert hbm_bytes("reduce_scatter", MiB, 8, "nvls") == pytest.approx(3.125 * MiB)
    # NVLS runs no broadcast: staged through FIFOs (1 MiB on the wire x 2, the buffer once)
    assert hbm_bytes("broadcast", MiB, 8, "nvls") == pytest.approx(3.0 * MiB)


def test_a_memory_bound_kernel_beside_a_collective_streams_at_the_bandwidth_nccl_leaves(gpu):
    stream = Kernel("add", 0, 10**9, None)  # 1 GB through HBM
    assert kernel_time(gpu, stream).time_s == pytest.approx(0.5e-3)  # alone: 1 GB at 2 TB/s
    # NCCL's kernels take 0.5 TB/s: 1 GB at the 1.5 TB/s left, slower than on 80 of 100 SMs (0.625 ms)
    assert kernel_time(gpu, stream, 0.5e12).time_s == pytest.approx(0.6667e-3, rel=1e-4)
    # taking 0.2 TB/s, the 1.8 TB/s left outruns the SMs left: the SM share decides (0.5 x 100/80)
    assert kernel_time(gpu, stream, 0.2e12).time_s == pytest.approx(0.625e-3)


def test_nccls_share_is_clamped_at_half_the_bandwidth(gpu):
    # asking 1.5 of the 2 TB/s, NCCL gets half: the kernel streams at 1 TB/s, not at 0.5
    assert hbm_left_Bps(gpu, 1.5e12) == pytest.approx(1e12)
    assert hbm_left_Bps(gpu, 5e12) == pytest.approx(1e12)  # never nothing, never negative
    assert kernel_time(gpu, Kernel("add", 0, 10**9, None), 1.5e12).time_s == pytest.approx(1.0e-3)


def test_a_gemm_compute_bound_alone_turns_memory_bound_beside_nccl(gpu):
    slow_hbm = preset("a100_sxm4_80gb", hbm_bw=1.2e12, hbm_efficiency=1.0, hbm_latency=0.0, launch_overhead=0.0,
                      sms=100, nccl_sms=20)
    g = gemm_kernel(8192, 8192, 64)  # 136,314,880 bytes: 113.6 us at 1.2 TB/s, below its compute
    alone = kernel_time(slow_hbm, g)
    assert alone.bound == "compute" and alone.time_s > 113.6e-6
    # beside NCCL taking 0.6 TB/s: its traffic at the 0.6 TB/s left, 227.2 us, longer than
    # its compute on 80 of the 100 SMs
    assert kernel_time(slow_hbm, g, 0.6e12).time_s == pytest.approx(227.19e-6, rel=1e-4)


def test_the_papers_device_is_untouched():
    table2 = preset("table2")
    stream = Kernel("add", 0, 10**9, None)
    assert kernel_time(table2, stream, 1e12).time_s == kernel_time(table2, stream).time_s


def _compute_beside(collective_Bps, beside_nccl):
    """DeviceCompute._compute of a 1 ms layer with its data-parallel stream running at
    ``collective_Bps`` of HBM, the plan's timing of the layer ``beside_nccl``."""
    env = simpy.Environment()
    dev = DeviceCompute.__new__(DeviceCompute)
    dev.env, dev.tensor_stream = env, None
    dev.stream = SimpleNamespace(running=True, hbm_Bps=collective_Bps)
    dev.plan = SimpleNamespace(beside_nccl=beside_nccl)
    dev.memory = SimpleNamespace(record=SimpleNamespace(compute=[]))
    dev.inputs = SimpleNamespace(topology=SimpleNamespace(device=SimpleNamespace(sms=100, nccl_sms=20)))
    env.process(dev._compute(1e-3, "fwd x", "fwd", (3, "fwd")))
    env.run()
    return env.now


def test_a_layer_started_beside_a_collective_takes_its_kernels_time_beside_nccl():
    asked = []

    def beside_nccl(i, phase, rate):  # the layer's kernels: 2 ms alone, 3 ms beside NCCL at 0.4 TB/s
        asked.append((i, phase, rate))
        return {None: 2e-3, 0.4e12: 3e-3}[rate]
    # the plan's 1 ms stretched by the kernels' ratio, 3/2
    assert _compute_beside(0.4e12, beside_nccl) == pytest.approx(1.5e-3)
    assert (3, "fwd", 0.4e12) in asked
    # a stream taking no HBM (a device without NCCL kernels' traffic): the SM share alone
    assert _compute_beside(0.0, beside_nccl) == pytest.approx(1e-3 * 100 / 80)


def test_where_the_bandwidth_left_binds_no_kernel_the_sm_share_decides_to_the_bit():
    # the kernels beside NCCL at 0.1 TB/s: 2.5 ms, their 2 ms on 80 of 100 SMs (summed
    # kernel by kernel, which may round otherwise): the plan's 1 ms x 100/80 exactly
    assert _compute_beside(0.1e12, lambda i, phase, rate: {None: 2e-3, 0.1e12: 2.5e-3 * (1 + 1e-15)}[rate]) \
        == 1e-3 * 100 / 80


def test_a_collectives_hbm_rate_is_its_bytes_over_its_time_on_idle_links():
    from mcdla.run import load_inputs
    from mcdla.sim.communicator import CollectiveStream
    from mcdla.sim.environment import CountingEnvironment
    from mcdla.sim.flownet import FlowNetwork
    from mcdla.sim.records import RunInputs

    def run(topology):
        inputs = RunInputs(*load_inputs(topology, "gpt2", [("execution.collective", "nccl" if topology == "dgx_h100"
                                                             else "ring")], batch=8))
        env = CountingEnvironment()
        net = FlowNetwork(env, inputs.topology.capacities())
        stream = CollectiveStream(env, net, inputs, None)
        done = [stream.join(("g",), "all_reduce", 256 * MiB, device=d) for d in range(stream.devices)]
        env.run(env.all_of(done))
        return stream
    h100 = run("dgx_h100")
    record = h100.records[0]
    # 256 MiB over 8 H100s: NVLS (six touches a byte) or the ring, at the pace the run kept
    staging = "nvls" if record.algorithm == "nvls" else "fifo"
    moved = hbm_bytes("all_reduce", 256 * MiB, 8, staging, record.wire_factor)
    assert h100.hbm_Bps == pytest.approx(moved / record.time_s, rel=0.05)
    assert 0.3e12 < h100.hbm_Bps < 3.35e12
    assert run("ring").hbm_Bps == 0.0  # the paper's design: no NCCL kernels
