"""Frontier scale (issue 27): link counters per class of link past a size, the node cap
from the work budget's memory, the 100,000-GPU presets."""

from __future__ import annotations

import math

import pytest

from mcdla.run import simulate

# h100_100k reduced to 64 GPUs: 8 nodes, leaves of 2 nodes, pods of 2 leaves, 2:1 above.
SMALL_100K = [("generator.nodes", 8), ("generator.nodes_per_leaf", 2), ("generator.leaves_per_pod", 2),
              ("generator.pod_oversubscription", 2)]


def _run(sets=(), **options):
    return simulate("h100_100k", "bw_aware", "resnet34", "data", 64, [*SMALL_100K, *sets], budget=math.inf,
                    **options)


@pytest.fixture(scope="module")
def full_and_classes():
    """The same run with every link listed, and summed per class (the threshold lowered
    below its 64 devices)."""
    from mcdla.metrics import summary

    full = _run(links=True)
    saved = summary.LINK_LIST_DEVICES
    summary.LINK_LIST_DEVICES = 16
    try:
        return full, _run(), _run(links=True), _run([("execution.exact", True)])
    finally:
        summary.LINK_LIST_DEVICES = saved


def test_small_runs_list_every_link(full_and_classes):
    full, _classes, _asked, _exact = full_and_classes
    assert "link_classes" not in full and len(full["link_bytes"]) == 352


def test_class_counters_are_the_sums_of_the_full_counters(full_and_classes):
    full, summed, _asked, _exact = full_and_classes
    links, classes = full["link_bytes"], summed["link_classes"]
    assert "link_bytes" not in summed
    assert sum(c["count"] for c in classes.values()) == len(links)
    assert sum(c["mean"] * c["count"] for c in classes.values()) == pytest.approx(sum(links.values()), rel=1e-12)
    # Each GPU's NIC link to its rail leaf (D -> SP), and the leaves' to their GPUs.
    nic_up = [v for k, v in links.items() if k.startswith("D") and ">SP" in k]
    up = classes["device>spine1:nic"]
    assert up["count"] == len(nic_up) == 64
    assert (up["min"], up["max"]) == (min(nic_up), max(nic_up))
    assert up["mean"] == pytest.approx(sum(nic_up) / 64, rel=1e-12)
    # The tiers, as directed node pairs (parallel cables summed): 4 leaf groups x 8 rails = 32
    # leaves, each under its pod spine; 2 pods x 8 rails = 16 pod spines, each under its rail's core.
    assert classes["spine1>spine2:isl"]["count"] == 32 and classes["spine2>spine3:isl"]["count"] == 16
    assert all(c["min"] <= c["mean"] <= c["max"] for c in classes.values())


def test_links_or_exact_ask_for_every_link_past_the_threshold(full_and_classes):
    full, _summed, asked, exact = full_and_classes
    assert asked["link_bytes"] == full["link_bytes"] and "link_classes" not in asked
    assert exact["link_bytes"] == pytest.approx(full["link_bytes"], rel=1e-9)
