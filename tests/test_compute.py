"""The device compute model: PE-array GEMM cycles, HBM roofline, latency per kernel.

Hand-computed times use the Table II device: 1024 PEs x 125 MACs at 1 GHz
(128 TMAC/s), 32 KB SRAM per PE, HBM 900 GB/s with a 100-cycle (100 ns) latency.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcdla.config.hardware import DeviceSpec
from mcdla.config.loader import DATA_ROOT, read_yaml
from mcdla.config.schema import Where, build
from mcdla.hw.workload import load_workload
from mcdla.hw.compute import gemm_cycles, kernel_time, layer_time, layer_timings, traffic_bytes
from mcdla.hw.layers import Gemm, Kernel

LATENCY_S = 100e-9
HBM_BPS = 900e9


@pytest.fixture(scope="module")
def device() -> DeviceSpec:
    presets = read_yaml(DATA_ROOT / "topologies" / "presets" / "hardware.yaml")
    return build(DeviceSpec, presets["devices"]["table2"], Where("hardware.yaml", "devices.table2"))


def gemm_kernel(m: int, n: int, k: int, count: int = 1, e: int = 4) -> Kernel:
    """A GEMM kernel whose operands are its plain matrices."""
    operands = (m * k * count * e, k * n * count * e, m * n * count * e)
    return Kernel("g", m * n * k * count, sum(operands), Gemm(m, n, k, count), operands, e)


def test_compute_bound_gemm(device):
    # C = 1024 x 2048 (2 Mi outputs: 2048 full rounds), k = 8000 (64 full lane steps)
    timing = kernel_time(device, gemm_kernel(1024, 2048, 8000))
    compute_s = 2048 * 64 / 1e9  # 131.072 us
    traffic = 4 * (1024 * 8000 + 8000 * 2048 + 1024 * 2048)  # 106.7 MB: 118.6 us at 900 GB/s
    assert timing.bytes == traffic
    assert timing.time_s == pytest.approx(compute_s + LATENCY_S)
    assert timing.bound == "compute"
    assert timing.utilization == pytest.approx(compute_s / (compute_s + LATENCY_S))
    assert timing.intensity == pytest.approx(1024 * 2048 * 8000 / traffic)


def test_memory_bound_gemm(device):
    # AlexNet's fc6 at 64 samples: the weights dominate and are read once
    timing = kernel_time(device, gemm_kernel(4096, 64, 9216))
    traffic = 4 * (4096 * 9216 + 9216 * 64 + 4096 * 64)  # 154,402,816 bytes
    assert gemm_cycles(device, Gemm(4096, 64, 9216)) == 256 * 74  # 18.9 us of compute
    assert timing.time_s == pytest.approx(traffic / HBM_BPS + LATENCY_S)  # 171.66 us
    assert timing.bound == "memory"
    assert timing.attained_macs_per_s == pytest.approx(4096 * 64 * 9216 / timing.time_s)


def test_elementwise_kernel_is_a_stream(device):
    timing = kernel_time(device, Kernel("relu", 0, 9_000_000, None))
    assert timing.time_s == pytest.approx(10e-6 + LATENCY_S)
    assert (timing.bound, timing.macs, timing.utilization) == ("memory", 0, 0.0)


@pytest.mark.parametrize(
    "gemm, cycles",
    [
        (Gemm(1, 1, 1), 1),  # one MAC still takes a cycle
        (Gemm(32, 32, 125), 1),  # exactly one round of 1024 outputs, one lane step
        (Gemm(1025, 1, 125), 2),  # one output too many: a second round
        (Gemm(32, 32, 126), 2),  # one term too many: a second lane step
        (Gemm(16, 32, 125, count=2), 1),  # groups share the array
        (Gemm(64, 512, 512), 32 * 5),  # k = 512 runs 5 steps of 125 lanes (82%)
    ],
)
def test_ceil_effects(device, gemm, cycles):
    assert gemm_cycles(device, gemm) == cycles


def test_utilization_reflects_lane_quantization(device):
    full = kernel_time(device, gemm_kernel(1024, 2048, 8000))
    ragged = kernel_time(device, gemm_kernel(1024, 2048, 8001))
    # one more reduction term costs a whole 65th lane step of 125
    assert gemm_cycles(device, Gemm(1024, 2048, 8001)) == 2048 * 65
    assert ragged.bound == full.bound == "compute"
    assert ragged.time_s == pytest.approx(2048 * 65 / 1e9 + LATENCY_S)
    assert ragged.utilization < full.utilization


def test_output_tiling_refetches_the_operands(device):
    # C = 4096 x 4096 fp32 (64 MiB) exceeds half the 32.768 MB of SRAM: 4,096,000
    # accumulators -> 2023 x 2023 tiles, so A and B are each read ceil(4096/2023) = 3 times
    kernel = gemm_kernel(4096, 4096, 4096)
    a_bytes = b_bytes = 4 * 4096 * 4096
    assert traffic_bytes(device, kernel) == kernel.bytes + 2 * a_bytes + 2 * b_bytes


def test_small_output_reads_operands_once(device):
    kernel = gemm_kernel(1024, 2048, 100_000)
    assert traffic_bytes(device, kernel) == kernel.bytes


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(1, 20_000),
    n=st.integers(1, 200_000),
    k=st.integers(1, 50_000),
    count=st.integers(1, 64),
)
def test_roofline_is_never_violated(device, m, n, k, count):
    kernel = gemm_kernel(m, n, k, count)
    timing = kernel_time(device, kernel)
    assert timing.time_s >= timing.bytes / device.hbm_bw
    assert timing.time_s >= kernel.macs / device.peak_macs_per_s
    assert timing.bytes >= kernel.bytes
    assert 0 < timing.utilization <= 1


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "resnet34", "rnn_lstm2"])
@pytest.mark.parametrize("shards", [1, 8])
def test_every_layer_respects_the_roofline(device, name, shards):
    workload = load_workload(name)
    for layer in workload.layers:
        for phase in ("fwd", "bwd"):
            for timing in layer_timings(device, layer, phase, 64, 4, shards):
                assert timing.time_s >= timing.bytes / device.hbm_bw + LATENCY_S * 0.999
                assert timing.utilization <= 1


def test_layer_time_sums_its_kernels(device):
    layer = load_workload("rnn_lstm1").layer("lstm/t5")
    kernels = layer.kernels("bwd", 512, 4)
    assert len(kernels) == 3
    assert layer_time(device, layer, "bwd", 512, 4) == pytest.approx(
        sum(kernel_time(device, k).time_s for k in kernels))


def test_model_parallel_shards_take_less_time(device):
    conv = load_workload("vgg_e").layer("conv3.2/conv")
    whole = layer_time(device, conv, "fwd", 64, 4)
    part = layer_time(device, conv, "fwd", 64, 4, shards=8)
    assert whole / 8 <= part < whole


def test_data_layer_costs_nothing(device):
    assert layer_time(device, load_workload("alexnet").layers[0], "fwd", 64, 4) == 0.0
