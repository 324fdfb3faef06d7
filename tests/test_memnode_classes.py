"""The memory-centric fat tree in few rank classes (docs/performance.md, "The
memory-centric variant in few classes"): a DDR5 memory-node per GPU on each DGX H100
node's NVSwitch (frontier_scale.yaml's mc+llama+weak points, made small). Each GPU's
backing-store stripe k takes the NVLink the design's ring k takes to the NVSwitch
(Topology._stripe_links): the node's alike ranks are one class per pipeline stage, as
without the memory-nodes, and the run equals the exact one; where a memory-node differs
the split stays."""

from __future__ import annotations

import math

import pytest

from mcdla.hw.topology import Topology
from mcdla.run import load_inputs, simulate
from mcdla.sim.training import Iteration


def _sets(nodes: int, memory: bool = True) -> list[tuple]:
    """GPT-2 (16 heads, so 8 tensor ranks divide them) on ``nodes`` DGX H100 of h100_100k,
    tensor 8 x pipeline 2, every feature map offloaded (the stripes loaded)."""
    sets = [("generator.nodes", nodes), ("generator.nodes_per_leaf", 8),
            ("generator.leaves_per_pod", 2 if nodes > 8 else 1), ("generator.pod_oversubscription", 1),
            ("execution.tensor_parallel", 8), ("execution.pipeline_parallel", 2), ("training.micro_batches", 2),
            ("workload.heads", 16), ("execution.offload", "offload_all")]
    if memory:
        sets += [("memory_node.preset", "ddr5_node"), ("generator.memory_nodes_per_node", 8),
                 ("generator.links_per_memory_node", 9)]
    return sets


def _classes(nodes: int, memory: bool = True) -> int:
    topology, workload, execution = load_inputs("h100_100k", "gpt2", _sets(nodes, memory), batch=2 * nodes)
    return len(Iteration(topology, workload, execution).symmetry.device_classes)


@pytest.mark.parametrize("nodes", [8, 16])
def test_memory_nodes_on_every_node_keep_a_class_per_stage(nodes):
    assert _classes(nodes) == _classes(nodes, memory=False) == 2


def test_stripes_on_the_kth_link_split_the_node(monkeypatch):
    """Stripe k on each GPU's k-th NVLink shares it with a different ring on each GPU:
    a real asymmetry of that flow network, which the refinement keeps: every orbit of
    the stage shift (a GPU and its like two nodes on) a class of its own, 32 of 64."""
    monkeypatch.setattr(Topology, "_stripe_links", lambda *args: None)
    assert _classes(8) == 32


def test_the_stripes_follow_the_rings_links_one_each():
    topology, _, _ = load_inputs("h100_100k", "gpt2", _sets(8), batch=16)
    for device in ("D0", "D13"):
        for direction, end in (("offload", 0), ("prefetch", -1)):
            links = [s.path[end] for s in topology.backing_routes(device, "bw_aware", direction)]
            assert len(set(links)) == len(links) == 18  # every NVLink of the GPU, once
            rings = topology.rings[:18]
            role = "home_out" if direction == "offload" else "home_in"
            assert links == [getattr(r, role)[r.position[device]] for r in rings]


def test_the_small_memory_centric_run_equals_the_exact_run():
    from test_symmetry import differences

    runs = [simulate("h100_100k", "bw_aware", "gpt2", "data", 16, [*_sets(8), ("execution.exact", exact)],
                     budget=math.inf) for exact in (False, True)]
    assert runs[0]["offloaded_bytes"] > 0
    assert differences(runs[0], runs[1]) == []
    assert runs[0]["rank_classes"] == 2 < runs[1]["rank_classes"] == 64


SWITCH = """\
name: memswitch
description: 4 GPUs and a memory-node each on one NVSwitch, by hand
device: h100_sxm5
memory_node: ddr5_node
fabric_switch: nvswitch3
links: {{nvlink: nvlink4}}
devices: 4
memory_nodes: 4
fabric_switches: 1
connections:
  - [D0, FS0, nvlink, 2]
  - [D1, FS0, nvlink, 2]
  - [D2, FS0, nvlink, 2]
  - [D3, FS0, nvlink, 2]
  - [M0, FS0, nvlink, 2]
  - [M1, FS0, nvlink, 2]
  - [M2, FS0, nvlink, 2]
  - [M3, FS0, nvlink, {m3}]
backing: memory_nodes
serves: {{D0: [M0], D1: [M1], D2: [M2], D3: [M3]}}
"""


@pytest.mark.parametrize("m3,classes", [(2, ((0, 1, 2, 3),)), (1, ((0, 1, 2), (3,)))])
def test_a_hand_written_switch_keeps_the_split_where_a_memory_node_differs(tmp_path, m3, classes):
    """Alike memory-nodes: one class; M3 on one NVLink, not two: its GPU's two stripes
    share that link, and D3 is a class of its own."""
    path = tmp_path / "memswitch.yaml"
    path.write_text(SWITCH.format(m3=m3))
    topology, workload, execution = load_inputs(str(path), "alexnet", [("execution.offload", "offload_all")],
                                                batch=64)
    assert Iteration(topology, workload, execution).symmetry.device_classes == classes
