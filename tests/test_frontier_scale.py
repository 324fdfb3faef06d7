"""Frontier scale (issue 27): link counters per class of link past a size, the node cap
from the work budget's memory, the 100,000-GPU presets."""

from __future__ import annotations

import dataclasses

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
    # Each class's bandwidth is one directed pair's, its parallel cables summed: a NIC is one
    # ib_400g port (50 GB/s); a leaf of 2 nodes has 2 GPUs of its rail below and so 2 cables
    # up to its pod spine (non-blocking), and a pod spine of 2 such leaves at 2:1 has 2 up to
    # the core: 100 GB/s each way.
    assert up["bw_Bps"] == classes["spine1>device:nic"]["bw_Bps"] == 50e9
    assert {classes[k]["bw_Bps"] for k in ("spine1>spine2:isl", "spine2>spine1:isl", "spine2>spine3:isl",
                                           "spine3>spine2:isl")} == {100e9}
    assert all(c["min"] <= c["mean"] <= c["max"] for c in classes.values())


def test_links_or_exact_ask_for_every_link_past_the_threshold(full_and_classes):
    full, _summed, asked, exact = full_and_classes
    assert asked["link_bytes"] == full["link_bytes"] and "link_classes" not in asked
    assert exact["link_bytes"] == pytest.approx(full["link_bytes"], rel=1e-9)


@pytest.mark.slow
def test_the_h100_100k_preset_loads_in_full():
    """About 5 minutes and 4.5 GB here (docs/performance.md): within the memory budget."""
    from mcdla.hw.topology import load_topology

    topo = load_topology("h100_100k")
    assert len(topo.devices) == 104_448 and topo.graph.number_of_nodes() == 121_048
    assert len(topo.rings) == 18  # one per NVLink of a GPU, across every node


# -- the channel-byte invariant per class of channels ----------------------------------

def _record(topology, workload, batch, sets):
    from mcdla.run import load_inputs
    from mcdla.sim.training import Iteration

    topo, work, execution = load_inputs(topology, workload, sets, batch=batch)
    return Iteration(topo, work, execution).run()


@pytest.mark.parametrize("topology, workload, batch, sets", [
    ("h100_100k", "resnet34", 64, SMALL_100K),
    ("dgx_h100_4node", "gpt2", 64, [("execution.tensor_parallel", 8), ("execution.pipeline_parallel", 2),
                                     ("training.virtualization", False), ("training.micro_batches", 4),
                                     ("workload.heads", 16)]),
    ("mcdla_ring_cluster", "resnet34", 256, []),
])
def test_class_expectations_are_the_sums_of_the_per_channel_ones(topology, workload, batch, sets):
    """The per-class law (collectives counted once per alike group, offloads once per
    member of a class of devices) gives each class the sum of what the per-channel law
    gives its members."""
    from mcdla.sim.invariants import expected_channel_bytes, expected_class_bytes

    record = _record(topology, workload, batch, sets)
    assert record.rank_classes and record.resource_classes  # symmetric: checked per class
    per_channel, per_class = expected_channel_bytes(record), expected_class_bytes(record)
    summed: dict[str, float] = {}
    for channel in record.inputs.topology.channels:
        first = record.resource_classes.get(channel, channel)
        summed[first] = summed.get(first, 0.0) + per_channel.get(channel, 0.0)
    assert {c for c, v in summed.items() if v} == {c for c, v in per_class.items() if v and c in summed}
    for first, total in summed.items():
        assert per_class.get(first, 0.0) == pytest.approx(total, rel=1e-9, abs=1e-3)


def test_a_class_that_carried_a_step_too_few_is_caught():
    from mcdla.errors import InvariantError
    from mcdla.sim.invariants import check_iteration

    record = _record("h100_100k", "resnet34", 64, SMALL_100K)
    carried = dict(record.network.bytes_by_resource)  # answered per class (flowstats.ByClass): a copy to edit
    busiest = max((c for c in record.inputs.topology.channels if c not in record.resource_classes
                   or record.resource_classes[c] == c), key=lambda c: carried.get(c, 0.0))
    carried[busiest] *= 0.99
    record.network = dataclasses.replace(record.network, bytes_by_resource=carried)
    with pytest.raises(InvariantError, match=rf"channel {busiest}: carried .* over its class of \d+ alike channels"):
        check_iteration(record)


def test_the_benchmarks_generated_ring_is_its_listed_ring(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from scale import generated_ring_yaml, ring_yaml

    results = []
    for name, text in (("listed", ring_yaml(16)), ("generated", generated_ring_yaml(16))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = simulate(str(path), "bw_aware", "resnet34", "data", 64)
        results.append({k: v for k, v in result.items() if k not in ("wall_s", "topology")})
    assert results[0] == results[1]
