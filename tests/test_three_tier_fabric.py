"""Three-tier fat trees (issue 27): the leaves of a rail in pods under a pod spine, the
pod spines under the rail's core, each tier with its own oversubscription; and the
frontier-scale presets, loaded reduced."""

from __future__ import annotations

import math

import pytest

from mcdla.errors import InputError
from mcdla.hw.network import p2p_paths
from mcdla.hw.topology import load_topology
from mcdla.run import simulate, simulate_collective
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork

# dgx_h100_4node (8 H100 a node, one 400G NIC a GPU on its rail) at 8 nodes: leaf groups
# of 2 nodes (4 groups), pods of 2 leaves (2 pods).
EIGHT = [("generator.nodes", 8), ("generator.nodes_per_leaf", 2), ("generator.leaves_per_pod", 2)]
# At 4 nodes: a leaf a node, pods of 2 leaves (2 pods); 32 ranks, as the two-tier tests.
FOUR = [("generator.nodes_per_leaf", 1), ("generator.leaves_per_pod", 2)]


def tree(sets, oversubscription=1, pod_oversubscription=1):
    return load_topology("dgx_h100_4node", [*sets, ("generator.oversubscription", oversubscription),
                                            ("generator.pod_oversubscription", pod_oversubscription)])


def links_of(topo):
    return {(a, b): (kind, count) for a, b, kind, count in topo.physical_links}


def test_hand_counted_switches_and_links():
    topo = tree(EIGHT, 1, 2)
    # 4 leaf groups x 8 rails = 32 leaves, 2 pods x 8 rails = 16 pod spines, 8 cores
    assert topo.fabric_switches[8:] == tuple(f"SP{i}" for i in range(32 + 16 + 8))
    links = links_of(topo)
    nics = [(a, b) for (a, b), (kind, _) in links.items() if kind == "nic"]
    assert len(nics) == 64  # one per GPU
    assert links[("D0", "SP0")] == ("nic", 1) and links[("D8", "SP0")] == ("nic", 1)  # nodes 0, 1: group 0
    assert links[("D16", "SP8")] == ("nic", 1) and links[("D32", "SP16")] == ("nic", 1)  # groups 1, 2, rail 0
    up = {(a, b): count for (a, b), (kind, count) in links.items() if kind == "isl"}
    assert len(up) == 32 + 16  # every leaf to its pod spine, every pod spine to its core
    # leaves of rail 0: groups 0, 1 in pod 0 (SP32), groups 2, 3 in pod 1 (SP40); 2 NIC ports, 1:1
    assert up[("SP0", "SP32")] == up[("SP8", "SP32")] == 2
    assert up[("SP16", "SP40")] == up[("SP24", "SP40")] == 2
    assert up[("SP7", "SP39")] == 2  # rail 7
    # a pod spine's 2 leaves x 2 links = 4 below, over 2: 2 up to its rail's core
    assert up[("SP32", "SP48")] == up[("SP40", "SP48")] == 2 and up[("SP39", "SP55")] == 2
    assert ("SP0", "SP48") not in up and ("SP32", "SP49") not in up


@pytest.mark.parametrize("leaf, pod", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_each_tier_has_its_oversubscription(leaf, pod):
    """The bandwidth into a switch from below over the bandwidth out of it above."""
    topo = tree(EIGHT, leaf, pod)
    bw = {}
    for c in topo.channels.values():
        bw[(c.src, c.dst)] = bw.get((c.src, c.dst), 0.0) + c.bw_Bps
    leaves, spines = [f"SP{i}" for i in range(32)], [f"SP{i}" for i in range(32, 48)]

    def ratio(switch, below):
        down = sum(b for (src, dst), b in bw.items() if dst == switch and src in below)
        out = sum(b for (src, dst), b in bw.items() if src == switch and dst not in below)
        return down / out

    devices = set(topo.devices)
    assert {ratio(s, devices) for s in leaves} == {leaf}
    assert {ratio(s, set(leaves)) for s in spines} == {pod}


def test_the_rings_cross_a_tier_only_where_they_must():
    ring = tree(EIGHT).ring_cycles[0]
    cores = [i for i, n in enumerate(ring) if n in {f"SP{48 + k}" for k in range(8)}]
    assert len(cores) == 2  # into pod 1 and back: the snake crosses the pod boundary twice
    for i in cores:  # down from a pod spine to a leaf on each side
        assert ring[i - 2] in {f"SP{k}" for k in range(32)} and ring[i - 1] in {f"SP{32 + k}" for k in range(16)}
        assert ring[i + 1] in {f"SP{32 + k}" for k in range(16)} and ring[i + 2] in {f"SP{k}" for k in range(32)}
    pods = [n for n in ring if n in {f"SP{32 + k}" for k in range(16)}]
    assert len(pods) == 2 + 2 * 2  # once between the groups of each pod, twice at each core crossing


@pytest.mark.parametrize("sets, message", [
    (EIGHT[:2] + [("generator.leaves_per_pod", 3)],
     r"generator\.leaves_per_pod: expected a divisor of the 4 leaf groups, got 3"),
    (EIGHT[:2] + [("generator.pod_oversubscription", 2)],
     r"generator\.pod_oversubscription: a three-tier fat tree's, .*set leaves_per_pod below the leaf groups"),
    (EIGHT + [("generator.pod_oversubscription", 3)],
     r"generator\.pod_oversubscription: expected a divisor of a pod spine's 4 leaf links "
     r"\(its uplinks: ports / pod_oversubscription\), got 3"),
    (EIGHT + [("generator.pod_oversubscription", 0.5)], r"generator\.pod_oversubscription: .*1"),
])
def test_bad_three_tier_input_names_the_key(sets, message):
    with pytest.raises(InputError, match=message):
        load_topology("dgx_h100_4node", sets)


def _sends(topo, pairs, size=1e9):
    """Every (src, dst) sends ``size`` bytes at once, each over its rings as NCCL
    spreads a send (p2p_paths): the time of the last, and the paths' latencies and hops."""
    env = CountingEnvironment()
    net = FlowNetwork(env, topo.capacities())
    seen = set()
    for src, dst in pairs:
        for share, path, latency in p2p_paths(topo.rings, src, dst, topo.reverse_of, topo.channels):
            seen.add((latency, len(path)))
            net.transfer(share * size, path, latency)
    env.run()
    return env.now, seen


def test_sends_across_the_pods_are_held_to_the_pod_spines_uplinks():
    """Four nodes, a leaf a node, pods of two leaves, pod spines 2:1. Node 0's GPUs send
    B to node 1's (same pod: NIC, leaf, pod spine, leaf, NIC; a leaf's one uplink per
    send): NIC rate. Nodes 0 and 1 send to nodes 2 and 3 (the other pod) at once: per
    rail, 2 sends share the pod spine's 1 uplink to the core, each at half of it."""
    topo = tree(FOUR, 1, 2)
    size = 1e9
    nic = topo.channels["D0>SP0:0"].bw_Bps
    uplink = topo.channels["SP32>SP48:0"].bw_Bps  # pod 0's spine of rail 0 to rail 0's core
    assert links_of(topo)[("SP32", "SP48")] == ("isl", 1) and uplink == nic
    within, ways = _sends(topo, [(f"D{i}", f"D{i + 8}") for i in range(8)], size)
    ((latency, hops),) = ways
    assert hops == 4 and within == pytest.approx(latency + size / nic, rel=1e-9)
    across, ways = _sends(topo, [(f"D{i}", f"D{i + 16}") for i in range(16)], size)
    ((latency, hops),) = ways
    assert hops == 6 and across == pytest.approx(latency + size / (uplink / 2), rel=1e-9)


# GPT-2 with 16 heads of 48 (its 12 do not split over 8 tensor-parallel ranks).
PIPELINE = [("execution.tensor_parallel", 8), ("execution.pipeline_parallel", 2),
            ("training.virtualization", False), ("training.micro_batches", 4), ("workload.heads", 16)]


def run(sets, exact=False):
    return simulate("dgx_h100_4node", "bw_aware", "gpt2", "data", 64, [*sets, ("execution.exact", exact)],
                    budget=math.inf)


def test_a_pipeline_across_thin_pods_is_slower_and_symmetric_equals_exact():
    """Two stages of two nodes: the stage boundary is the pod boundary (nodes 0, 1 in pod
    0), so a 2:1 pod tier slows the stage-to-stage sends; rank symmetry still holds."""
    wide = run(PIPELINE + FOUR)
    thin = run(PIPELINE + FOUR + [("generator.pod_oversubscription", 2)])
    assert thin["iteration_time_s"] > wide["iteration_time_s"]
    exact = run(PIPELINE + FOUR + [("generator.pod_oversubscription", 2)], exact=True)
    assert thin["rank_classes"] < exact["rank_classes"] == 32
    for key in ("iteration_time_s", "busy_s", "exposed_s", "link_bytes"):
        assert thin[key] == pytest.approx(exact[key], rel=1e-9)


# -- the frontier-scale presets, reduced ----------------------------------------------

def test_the_h100_100k_preset_runs_an_all_reduce_reduced():
    sets = [("generator.nodes", 8), ("generator.nodes_per_leaf", 2), ("generator.leaves_per_pod", 2),
            ("generator.pod_oversubscription", 2)]
    topo = load_topology("h100_100k", sets)
    assert len(topo.devices) == 64 and len(topo.fabric_switches) == 8 + 32 + 16 + 8
    assert links_of(topo)[("SP0", "SP32")] == ("isl", 2)  # the preset's 1:1 leaves
    result = simulate_collective("all_reduce", "256 MiB", topology="h100_100k", sets=sets)
    assert result["time_s"] > 0


def test_the_gb200_nvl72_100k_preset_runs_an_all_reduce_reduced():
    sets = [("generator.nodes", 4), ("host.sockets", 144), ("generator.nodes_per_leaf", 1),
            ("generator.leaves_per_pod", 2)]
    topo = load_topology("gb200_nvl72_100k", sets)
    # 4 racks of 72; 72 rails: 4 x 72 leaves, 2 x 72 pod spines, 72 cores; a rack's NVLink switch
    assert len(topo.devices) == 288 and len(topo.fabric_switches) == 4 + 4 * 72 + 2 * 72 + 72
    result = simulate_collective("all_reduce", "256 MiB", topology="gb200_nvl72_100k", sets=sets)
    assert result["time_s"] > 0


def test_the_listing_passes_over_the_designs_too_large_to_build_naming_them(capsys):
    from mcdla.cli.main import main

    assert main(["topologies", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "h100_100k" not in captured.out and "gb200_nvl72_100k" not in captured.out
    for name, nodes in (("h100_100k", "121,048"), ("gb200_nvl72_100k", "165,776")):
        assert f"mcdla topologies: {name} not listed: {nodes} nodes is more than the 65,536 asked for at most " \
               "in a listing; name it to build it in full" in captured.err
    # named, and reduced, it is listed
    assert main(["topologies", "h100_100k", "--set", "generator.nodes=8", "--set", "generator.nodes_per_leaf=2",
                 "--set", "generator.leaves_per_pod=2", "--set", "generator.pod_oversubscription=2",
                 "--format", "json"]) == 0
    assert '"h100_100k"' in capsys.readouterr().out
