"""The paper-era validation rows' kernels against their microbenchmarks (docs/validation.md,
"ResNet-50 on a DGX-1V"): what mcdla charges a V100's tensor-core convolutions beside what
Baidu's DeepBench measured, a check, not a calibration (nothing here sets a preset)."""

from __future__ import annotations

import dataclasses

import pytest

from mcdla.hw.compute import kernel_time
from mcdla.hw.gpu import compute_seconds
from tests.test_gpu_compute import one_conv, preset


def _time_over_measured(tmp_path, size, channels, out, measured_ms, element_bytes):
    """mcdla's time over DeepBench's for the V100's forward, backward-data and backward-filter
    kernels of one 3x3 convolution at N = 16."""
    v100 = preset("v100_sxm2_16gb")
    layer = one_conv(tmp_path, size, channels, out)
    kernels = {k.name.split(":")[1]: k for phase in ("fwd", "bwd") for k in layer.kernels(phase, 16, element_bytes)}
    return [(direction, kernel_time(v100, kernels[direction]).time_s / (ms / 1e3))
            for direction, ms in zip(("fwd", "dx", "dw"), measured_ms)]


# DeepBench (baidu-research/DeepBench results/train/DeepBench_NV_V100.xlsx, sheet "Results - FP16 ip,
# Mixed math": CUDA 10.1, cuDNN 7.6.2; code/nvidia/conv_bench.cu built with USE_TENSOR_CORES fixes the
# algorithms, IMPLICIT_PRECOMP_GEMM forward and ALGO_1 backward, instead of timing them all), VGG's 3x3
# stride-1 rows at N = 16, the only convolutions of its ResNet/VGG rows long enough (0.3-0.4 ms) to be
# rate-bound: forward, backward-data and backward-filter, ms.
V100_FP16_3X3 = [
    (112, 64, 128, (0.355, 0.374, 0.423)),
    (56, 128, 256, (0.318, 0.352, 0.353)),
    (28, 256, 512, (0.310, 0.378, 0.330)),
]


@pytest.mark.parametrize("size, channels, out, measured_ms", V100_FP16_3X3)
def test_the_v100_runs_deepbenchs_fp16_3x3_convolutions_up_to_a_quarter_faster_than_measured(
        tmp_path, size, channels, out, measured_ms):
    # mcdla runs every tensor-core GEMM at the large-GEMM ceiling (gemm_efficiency 0.78: 97.7
    # TFLOPS of 125); cuDNN's convolutions of these shapes attained 70-96 TFLOPS, less backward
    # than forward, so mcdla is 1-27% fast on each and never slow: the calibration's GEMM rate
    # is not a convolution's (docs/validation.md).
    for direction, ratio in _time_over_measured(tmp_path, size, channels, out, measured_ms, 2):
        assert -0.28 < ratio - 1 <= 0.0, (direction, ratio - 1)


# The same shapes in FP32 (sheet "Results FP32", built without tensor cores, so conv_bench times
# every algorithm, cudnnFind: cuDNN chose WINOGRAD_NONFUSED), forward, backward-data, backward-filter, ms.
V100_FP32_3X3 = [
    (112, 64, 128, (1.246, 1.209, 1.928)),
    (56, 128, 256, (0.900, 0.901, 0.936)),
    (28, 256, 512, (0.801, 0.859, 0.766)),
]


@pytest.mark.parametrize("size, channels, out, measured_ms", V100_FP32_3X3)
def test_the_v100_runs_deepbenchs_fp32_3x3_convolutions_slower_than_cudnns_winograd(
        tmp_path, size, channels, out, measured_ms):
    # mcdla runs an FP32 convolution as its im2col GEMM on the FP32 lanes at gemm_efficiency
    # (12.2 of 15.7 TFLOPS); cuDNN's Winograd kernels attained 24-39 TFLOPS in direct MACs, so
    # mcdla takes 1.3-3.2 times as long (docs/validation.md: the FP32 rows pass beside this).
    for direction, ratio in _time_over_measured(tmp_path, size, channels, out, measured_ms, 4):
        assert 1.2 < ratio < 3.3, (direction, ratio)


# DeepBench_NV_TitanX.xlsx (CUDA 7.5, cuDNN 5): its 14 distinct ResNet-50 1x1 convolutions at N = 16,
# (size, channels, out, stride, (forward, backward-data, backward-filter) ms), from which the
# Titan X preset's conv1x1_efficiency is the median rate by direction.
TITAN_X_1X1 = [
    (112, 64, 64, 1, (0.538, 0.57, 1.81)), (56, 64, 256, 1, (0.523, 0.469, 0.976)),
    (56, 256, 64, 1, (0.444, 0.542, 1.127)), (56, 256, 128, 2, (0.243, 0.807, 0.495)),
    (28, 128, 512, 1, (0.433, 0.46, 0.601)), (28, 512, 128, 1, (0.448, 0.45, 0.603)),
    (28, 512, 256, 2, (0.283, 0.651, 0.36)), (14, 256, 1024, 1, (0.421, 0.533, 0.519)),
    (28, 512, 1024, 2, (0.857, 1.51, 1.039)), (14, 1024, 256, 1, (0.52, 0.437, 0.526)),
    (14, 1024, 512, 2, (0.346, 0.528, 0.403)), (7, 512, 2048, 1, (0.521, 0.673, 0.641)),
    (14, 1024, 2048, 2, (0.988, 1.527, 1.631)), (7, 2048, 512, 1, (0.66, 0.535, 0.673)),
]


def test_only_ungrouped_1x1_convolutions_of_any_stride_are_the_1x1_class(tmp_path):
    for stride in (1, 2):
        layer = one_conv(tmp_path, 28, 128, 64, 1, stride)
        kernels = [k for phase in ("fwd", "bwd") for k in layer.kernels(phase, 16, 4)]
        assert {k.name.split(":")[1]: k.conv1x1 for k in kernels} == {"fwd": "fwd", "dx": "dx", "dw": "dw"}
        assert all(k.conv3x3 is None for k in kernels)
    for other in (one_conv(tmp_path, 28, 128, 64, kernel=3), one_conv(tmp_path, 28, 128, 64, kernel=3, stride=2)):
        assert all(k.conv1x1 is None for phase in ("fwd", "bwd") for k in other.kernels(phase, 16, 4))


def test_a_1x1_convolution_runs_its_gemm_tiles_and_waves_at_the_1x1_class_rate(tmp_path):
    titan = preset("titan_x_maxwell")
    forward = one_conv(tmp_path, 28, 512, 128, kernel=1).kernels("fwd", 16, 4)[0]
    # C[128 x 12,544] (16 x 28 x 28 positions), K = 512: 128x64 tiles, 196 of them, 9 waves on 24
    # SMs (64x128 the same; 128x128 takes 5 waves of twice the work); one SM's share of 6.6 TFLOPS
    # at the forward class rate 0.560: 3072 x 1.075 GHz / 24 x 0.560 = 77.06 GMAC/s, so
    # 9 x 128 x 64 x 512 MACs / 77.06e9 = 489.9 us (the traffic, 32.4 MB, would take 96 us).
    assert compute_seconds(titan, forward) == pytest.approx(489.9e-6, rel=1e-3)
    # at the GEMM ceiling (0.789) it would take 347.7 us; a device without the class keeps that
    plain = dataclasses.replace(titan, conv1x1_efficiency=None)
    assert compute_seconds(plain, forward) == pytest.approx(347.7e-6, rel=1e-3)


def test_the_titan_x_times_deepbenchs_resnet50_1x1_convolutions_near_their_sum(tmp_path):
    titan = preset("titan_x_maxwell")
    plain = dataclasses.replace(titan, conv1x1_efficiency=None)

    def total(device):
        return sum(kernel_time(device, k).time_s - device.launch_overhead
                   for size, channels, out, stride, _ in TITAN_X_1X1
                   for phase in ("fwd", "bwd")
                   for k in one_conv(tmp_path, size, channels, out, 1, stride).kernels(phase, 16, 4))

    measured = sum(sum(ms) for *_, ms in TITAN_X_1X1) / 1e3  # 28.3 ms
    # Each shape's three kernels land within -46% (strided, whose dx is slowest) to +41%; the
    # 14 together within 6% (26.8 ms); at the SGEMM ceiling they took 15.7 ms, 55% of it.
    assert total(titan) == pytest.approx(measured, rel=0.06)
    assert total(plain) < 0.6 * measured
