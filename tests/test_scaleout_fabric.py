"""Cluster networks (issue 14): a two-tier fat tree per rail (leaf groups of nodes, a
core per rail, oversubscribed leaf uplinks), and NICs shared by a node's devices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mcdla.errors import InputError
from mcdla.hw.network import p2p_paths
from mcdla.hw.topology import load_topology
from mcdla.run import simulate, simulate_collective
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork

DATA = Path(__file__).resolve().parents[1] / "topologies"
# dgx_h100_4node: 4 nodes of 8 H100s, one 400G NIC per GPU on its rail.
LEAVES = [("generator.nodes_per_leaf", 2)]


def fat_tree(oversubscription: float = 1.0):
    return load_topology("dgx_h100_4node", LEAVES + [("generator.oversubscription", oversubscription)])


def test_leaves_of_a_rail_hang_under_the_rails_core():
    topo = fat_tree(2.0)
    # 2 leaf groups x 8 rails, then a core per rail
    assert topo.fabric_switches[4:] == tuple(f"SP{i}" for i in range(24))
    links = {(a, b): (kind, count) for a, b, kind, count in topo.physical_links}
    assert links[("D0", "SP0")] == ("nic", 1) and links[("D8", "SP0")] == ("nic", 1)  # nodes 0, 1: group 0
    assert links[("D16", "SP8")] == ("nic", 1)  # node 2: group 1's leaf of rail 0
    # a leaf's 2 NIC ports over 2: one uplink to its rail's core
    assert links[("SP0", "SP16")] == ("isl", 1) and links[("SP8", "SP16")] == ("isl", 1)
    assert ("SP0", "SP17") not in links
    assert dict(((a, b), c) for a, b, _, c in fat_tree(1.0).physical_links)[("SP0", "SP16")] == 2


def test_the_rings_cross_between_leaf_groups_through_the_core():
    ring = fat_tree().ring_cycles[0]
    cores = [i for i, n in enumerate(ring) if n in {f"SP{16 + k}" for k in range(8)}]
    assert len(cores) == 2  # into leaf group 1 and back: the snake crosses the group boundary twice
    for i in cores:
        below = {ring[i - 1], ring[i + 1]}
        assert len(below) == 2 and all(n.startswith("SP") for n in below)


@pytest.mark.parametrize("sets, message", [
    ([("generator.nodes_per_leaf", 3)], r"generator\.nodes_per_leaf: expected a divisor of the 4 nodes, got 3"),
    ([("generator.oversubscription", 2)], r"generator\.oversubscription: a fat tree's, over its leaves' uplinks: "
                                          r"set nodes_per_leaf below the nodes"),
    (LEAVES + [("generator.oversubscription", 3)],
     r"generator\.oversubscription: expected a divisor of a leaf's 2 NIC ports .*got 3"),
    (LEAVES + [("generator.oversubscription", 0.5)], r"generator\.oversubscription: .*1"),
    (LEAVES + [("generator.uplink_link", "ib")], r"generator\.uplink_link: link type 'ib' is not in the "
                                                    r"file's links"),
])
def test_bad_fat_tree_input_names_the_key(sets, message):
    with pytest.raises(InputError, match=message):
        load_topology("dgx_h100_4node", sets)


@pytest.mark.parametrize("oversubscription", [1.0, 2.0])
def test_stage_to_stage_sends_across_the_leaves_share_the_uplinks(oversubscription):
    """Every GPU of leaf group 0 (nodes 0 and 1) sends B bytes to its peer at the same
    place two nodes on (leaf group 1) at once: per rail, the 2 sends cross the leaf's
    2 / r uplinks, so each runs at min(NIC, uplinks x uplink / 2) after the path's
    latency (NCCL over the rail: NIC, leaf, core, leaf, NIC)."""
    topo = fat_tree(oversubscription)
    env = CountingEnvironment()
    net = FlowNetwork(env, topo.capacities())
    size = 1e9
    latencies = set()
    for src in range(16):
        for share, path, latency in p2p_paths(topo.rings, f"D{src}", f"D{src + 16}", topo.reverse_of,
                                              topo.channels):
            assert len(path) == 4
            latencies.add(latency)
            net.transfer(share * size, path, latency)
    env.run()
    nic = topo.channels["D0>SP0:0"].bw_Bps
    uplink = topo.channels["SP0>SP16:0"].bw_Bps
    uplinks = round(2 / oversubscription)
    rate = min(nic, uplinks * uplink / 2)
    (latency,) = latencies
    assert env.now == pytest.approx(latency + size / rate, rel=1e-9)
    assert oversubscription == 1.0 or rate == pytest.approx(nic / 2)


# GPT-2 with 16 heads of 48 (its 12 do not split over 8 tensor-parallel ranks).
PIPELINE = [("execution.tensor_parallel", 8), ("execution.pipeline_parallel", 2),
            ("training.virtualization", False), ("training.micro_batches", 4), ("workload.heads", 16)]


def run(sets, exact=False, workload="gpt2"):
    return simulate("dgx_h100_4node", "bw_aware", workload, "data", 64, [*sets, ("execution.exact", exact)],
                    budget=math.inf)


def test_an_oversubscribed_fat_tree_slows_the_pipeline_not_the_all_reduce():
    flat = run(PIPELINE)
    tree = run(PIPELINE + LEAVES)
    thin = run(PIPELINE + LEAVES + [("generator.oversubscription", 2)])
    assert thin["iteration_time_s"] > tree["iteration_time_s"] >= flat["iteration_time_s"]
    # A hierarchical all-reduce crosses a leaf boundary once per rail and ring direction:
    # its one flow per uplink fits, as through the NIC that feeds it.
    dp = [("execution.tensor_parallel", 1)]
    assert run(dp + LEAVES + [("generator.oversubscription", 2)], workload="resnet34")["iteration_time_s"] == \
        pytest.approx(run(dp + LEAVES, workload="resnet34")["iteration_time_s"], rel=1e-12)


def test_symmetric_equals_exact_on_a_fat_tree():
    sets = PIPELINE + LEAVES + [("generator.oversubscription", 2)]
    symmetric, exact = run(sets), run(sets, exact=True)
    assert symmetric["rank_classes"] == 2 and exact["rank_classes"] == 32
    for key in ("iteration_time_s", "busy_s", "exposed_s", "link_bytes"):
        assert symmetric[key] == pytest.approx(exact[key], rel=1e-9)


# -- NICs per node --------------------------------------------------------------------

def test_devices_that_share_a_nic_share_its_ports():
    topo = load_topology("dgx_h100_4node", [("generator.nics_per_node", 4)])
    assert topo.fabric_switches[4:] == ("SP0", "SP1", "SP2", "SP3")  # a rail per NIC
    links = {(a, b) for a, b, _, _ in topo.physical_links}
    assert ("D0", "SP0") in links and ("D1", "SP0") in links and ("D2", "SP1") in links
    assert topo.nic_ports["D0>SP0:0"] == ("NIC0/tx",) and topo.nic_ports["SP0>D1:0"] == ("NIC0/rx",)
    assert topo.nic_ports["D8>SP0:0"] == ("NIC4/tx",)  # node 1's first NIC
    assert topo.ports["NIC0/tx"].bw_Bps == pytest.approx(50e9)  # a 400 Gb/s NIC, each way


@pytest.mark.parametrize("nics", [8, 4, 2, 1])
def test_the_inter_node_all_reduce_slows_by_the_devices_a_nic_serves(nics, tmp_path):
    """Hierarchical all-reduce of S over 4 DGX H100 nodes: the phase across the nodes
    all-reduces each GPU's S/8 over its rail, 2 (d-1)/d of it through its NIC; a NIC
    shared by 8/M GPUs gives each B M/8, so that phase, and nothing else, grows by
    2 (d-1)/d (S/8) (8/(B M) - 1/B)."""
    text = (DATA / "dgx_h100_4node.yaml").read_text()
    path = tmp_path / "nics.yaml"
    path.write_text(text.replace("uplink_link: isl}", f"uplink_link: isl, nics_per_node: {nics}}}"))
    size, nodes, nic = 1e9, 4, 50e9
    own = simulate_collective("all_reduce", size, topology="dgx_h100_4node")["time_s"]
    shared = simulate_collective("all_reduce", size, topology=str(path))["time_s"]
    extra = 2 * (nodes - 1) / nodes * (size / 8) * (8 / (nic * nics) - 1 / nic)
    assert shared - own == pytest.approx(extra, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("sets, message", [
    ([("generator.nics_per_node", 3)], r"generator\.nics_per_node: expected a divisor of the node's 8 devices"),
    ([("generator.nics_per_node", 4), ("generator.nics_per_device", 2)],
     r"generator\.nics_per_node: NICs shared by devices: give nics_per_device 1"),
])
def test_bad_nic_input_names_the_key(sets, message):
    with pytest.raises(InputError, match=message):
        load_topology("dgx_h100_4node", sets)


def test_symmetric_equals_exact_with_shared_nics():
    sets = PIPELINE + [("generator.nics_per_node", 4)]
    symmetric, exact = run(sets), run(sets, exact=True)
    assert symmetric["rank_classes"] < exact["rank_classes"]
    for key in ("iteration_time_s", "busy_s", "exposed_s", "link_bytes"):
        assert symmetric[key] == pytest.approx(exact[key], rel=1e-9)


# -- routing checks found in review ------------------------------------------------------

def test_ranks_of_one_machine_never_talk_over_the_scale_out_network():
    """Two GPUs of a ring node (no switch inside) that share a rail switch, or one spine
    for all, still reach each other over the node's NVLinks."""
    for sets in ([("generator.rails", False)], [("generator.nics_per_node", 4)]):
        topo = load_topology("mcdla_ring_cluster", sets)
        for dst in ("D1", "D2", "D5"):
            for _, path, _ in p2p_paths(topo.rings, "D0", dst, topo.reverse_of, topo.channels):
                assert not any("SP" in c for c in path), (sets, dst, path)
        # and across nodes they do: GPU 0 of node 0 to GPU 0 of node 1 over the rail
        assert all(any("SP" in c for c in path)
                   for _, path, _ in p2p_paths(topo.rings, "D0", "D8", topo.reverse_of, topo.channels))


@pytest.mark.parametrize("design, sets", [
    ("mcdla_ring_cluster", [("generator.nics_per_node", 4), ("execution.tensor_parallel", 2)]),
    ("dgx_h100_4node", PIPELINE[1:] + [("execution.pipeline_parallel", 2), ("execution.collective", "ring"),
                                       ("execution.rank_order", ",".join(f"D{i}" for i in
                                                                        [*range(15), 16, 15, *range(17, 32)]))]),
], ids=["shared_nic_ring_nodes", "permuted_ranks"])
def test_groups_that_once_crashed_run_and_stay_exact(design, sets):
    runs = [simulate(design, "bw_aware", "gpt2", "data", 64, [*sets, ("execution.exact", exact)], budget=math.inf)
            for exact in (False, True)]
    for key in ("iteration_time_s", "busy_s", "exposed_s", "link_bytes"):
        assert runs[0][key] == pytest.approx(runs[1][key], rel=1e-9)


def test_a_group_the_design_collective_cannot_run_falls_back_to_the_ring():
    """Six nodes in four stages: a stage's data-parallel group has GPUs of two nodes
    unevenly (hierarchical needs equal domains); that communicator runs the ring."""
    from mcdla.hw.workload import load_workload
    from mcdla.config.execution import ExecutionSpec
    from mcdla.config.training import TrainingSpec
    from mcdla.sim.training import Iteration

    topo = load_topology("dgx_h100_4node", [("generator.nodes", 6), ("host.sockets", 12)])
    records = {}
    for collective in ("hierarchical", "ring"):
        spec = ExecutionSpec(batch=96, pipeline_parallel=4, collective=collective,
                             training=TrainingSpec(virtualization=False, micro_batches=4))
        records[collective] = Iteration(topo, load_workload("gpt2"), spec).run()
    assert {c.algorithm for c in records["hierarchical"].collectives} == {"ring"}  # 8 + 4 GPUs a group
    assert records["hierarchical"].iteration_time_s == records["ring"].iteration_time_s
    # (a design's own rings are refused instead: test_fabric_collectives, uneven domains)


HAND_WRITTEN = {"name": "nics", "description": "GPUs sharing NICs, written by hand", "device": "h100_sxm5",
                "fabric_switch": "nvswitch3", "spine_switch": "quantum2", "links": {"nvlink": "nvlink4", "nic": "ib_400g"},
                "devices": 4, "fabric_switches": 2, "spine_switches": 2,
                "connections": [["D0", "FS0", "nvlink"], ["D1", "FS0", "nvlink"], ["D2", "FS1", "nvlink"],
                                ["D3", "FS1", "nvlink"], ["D0", "SP0", "nic"], ["D1", "SP0", "nic"], ["D2", "SP0", "nic"],
                                ["D3", "SP1", "nic"], ["SP0", "SP1", "nic"]],
                "rings": [["D0", "FS0", "D1", "SP0", "D2", "FS1", "D3", "SP1", "SP0"]]}


@pytest.mark.parametrize("nics, message", [
    ([["D0", "D1"], ["D1", "D2"]], r"nics\[1\]\[0\]: device 'D1' is in two NIC groups"),
    ([["D0", "FS0"]], r"nics\[0\]\[1\]: 'FS0' is not a device"),
    ([["D2", "D3"]], r"nics\[0\]: a NIC links to one spine switch; its devices link to 2"),
    ([["D0", "D1", "D2"]], r"nics\[0\]: ring 'ring0.fwd' goes through this NIC twice the same way"),
])
def test_bad_hand_written_nic_groups_name_the_key(nics, message, tmp_path):
    import yaml

    path = tmp_path / "nics.yaml"
    path.write_text(yaml.safe_dump(dict(HAND_WRITTEN, nics=nics)))
    with pytest.raises(InputError, match=message):
        load_topology(str(path))
    path.write_text(yaml.safe_dump(dict(HAND_WRITTEN, nics=[["D0", "D1"]])))
    assert load_topology(str(path)).nic_ports["D0>SP0:0"] == ("NIC0/tx",)  # the good file loads


def test_an_unknown_uplink_link_is_refused_without_leaves_too():
    with pytest.raises(InputError, match=r"generator\.uplink_link: link type 'nosuch' is not in the file's links"):
        load_topology("dgx_h100_4node", [("generator.uplink_link", "nosuch")])


def test_a_shared_nic_takes_one_port_of_its_rail_switch():
    """128 nodes of 2 NICs: 128 ports a rail switch, two Quantum-2 chips of 64 (one link
    a GPU would have needed 512)."""
    sets = [("generator.nodes", 128), ("host.sockets", 256), ("generator.nics_per_node", 2)]
    load_topology("dgx_h100_4node", sets + [("spine_switch.chips", 2)])
    with pytest.raises(InputError, match=r"node 'SP0' has 128 links, more than its spine_switch ports x chips = 64"):
        load_topology("dgx_h100_4node", sets)
