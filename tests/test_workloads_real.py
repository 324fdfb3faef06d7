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
