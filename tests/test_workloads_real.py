"""ResNet-50 v1.5 and VGG-16 beside the paper's networks (issue: trusted against real
machines): parameter counts exactly torchvision's, forward MACs as torchvision's
profilers count them (ptflops/fvcore: 4.09 and 15.47 GMACs)."""

from __future__ import annotations

import pytest

from mcdla.hw.workload import load_workload

REFERENCE = {
    "resnet50": (25_557_032, 4.089e9, 50),
    "vgg16": (138_357_544, 15.470e9, 16),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_counts_match_torchvision(name):
    params, macs, depth = REFERENCE[name]
    work = load_workload(name)
    assert work.params == params
    assert work.macs_fwd_per_sample == pytest.approx(macs, rel=1e-3)
    assert work.weighted_layers == depth


def test_resnet50_is_v1_5_stride_on_the_3x3():
    work = load_workload("resnet50")
    first = work.layer("layer2.0/conv1")
    strided = work.layer("layer2.0/conv2")
    # v1.5: the 1x1 reduce keeps 56x56, the 3x3 halves it to 28x28 (v1 halves at the 1x1).
    assert first.out_shape == (128, 56, 56)
    assert strided.out_shape == (128, 28, 28)


def test_bvlc_alexnet_is_caffes_grouped_reference_model():
    # models/bvlc_alexnet/deploy.prototxt: 60,965,224 parameters; conv2, conv4 and conv5 in two
    # groups; Caffe's pools round up, so a 224x224 input (cnn-benchmarks') still ends at 6x6.
    work = load_workload("alexnet_bvlc")
    assert work.params == 60_965_224 and work.weighted_layers == 8
    assert [work.layer(n).lowering.groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert work.layer("conv1").out_shape == (96, 54, 54)
    assert work.layer("pool5").out_shape == (256, 6, 6)
    assert [layer.kind for layer in work.layers].count("lrn") == 2
