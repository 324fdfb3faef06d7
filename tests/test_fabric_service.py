"""The node-kind registry, the fabric routing service (home, exit, rail, route(i, j),
ASTRA-sim-style dimensions) and the per-run cache."""

from __future__ import annotations

from collections import Counter

import pytest

from mcdla.config.nodes import NODE_KINDS, NodeKind
from mcdla.errors import InputError
from mcdla.hw.topology import load_topology

# Nodes of each kind (and the spines among the fabric switches) in every shipped design,
# counted from its file and generator: dgx_h100_4node is 4 DGX H100s (8 GPUs, one
# NVSwitch domain of 4 chips, 4 PCIe switches, 2 sockets each) and 8 rail switches.
COUNTS = {
    "single": ({"device": 1}, 0),
    "dc": ({"device": 8, "switch": 4, "cpu": 2}, 0),
    "dc1": ({"device": 1, "switch": 1, "cpu": 1}, 0),
    "dc4": ({"device": 4, "switch": 2, "cpu": 1}, 0),
    "dc16": ({"device": 16, "fabric": 1, "switch": 8, "cpu": 2}, 0),
    "hc": ({"device": 8, "cpu": 2}, 0),
    "star": ({"device": 8, "memory": 8}, 0),
    "ring": ({"device": 8, "memory": 8}, 0),
    "ring16": ({"device": 16, "memory": 16}, 0),
    "oracle": ({"device": 8, "switch": 4, "cpu": 2}, 0),
    "dgx1v": ({"device": 8, "switch": 4, "cpu": 2}, 0),
    "dgx_a100": ({"device": 8, "fabric": 1, "switch": 4, "cpu": 2}, 0),
    "dgx_h100": ({"device": 8, "fabric": 1, "switch": 4, "cpu": 2}, 0),
    "dgx_h100_cxl": ({"device": 8, "fabric": 1, "switch": 4, "cpu": 2, "memory": 8}, 0),
    "dgx_h100_memnodes": ({"device": 8, "fabric": 1, "memory": 8}, 0),
    "gh200_nvl32": ({"device": 32, "fabric": 1, "cpu": 32}, 0),
    "gb200_nvl72": ({"device": 72, "fabric": 1, "cpu": 36}, 0),
    "dgx_h100_4node": ({"device": 32, "fabric": 4 + 8, "switch": 16, "cpu": 8}, 8),
    "dgx_a100_cluster": ({"device": 32, "fabric": 4 + 8, "switch": 16, "cpu": 8}, 8),
    "dc_cluster": ({"device": 32, "fabric": 8, "switch": 16, "cpu": 8}, 8),
    "mcdla_ring_cluster": ({"device": 32, "fabric": 8, "memory": 32}, 8),
    "mcdla_scaleout": ({"device": 16, "fabric": 8, "memory": 16}, 4),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_shipped_design_has_its_nodes_of_each_kind(name):
    topo = load_topology(name)
    kinds = Counter(kind for _n, kind in topo.graph.nodes(data="kind"))
    expected, spines = COUNTS[name]
    assert dict(kinds) == expected
    assert sum(1 for _n, spine in topo.graph.nodes(data="spine") if spine) == spines
    assert all(kind in NODE_KINDS for kind in kinds)


def test_the_registry_holds_the_rules_of_each_kind():
    rules = {name: NODE_KINDS.get(name) for name in NODE_KINDS}
    assert {n for n, k in rules.items() if k.holds_memory} == {"memory", "cpu", "cxl_expander", "nvme"}
    assert {n for n, k in rules.items() if k.on_rings} == {"device", "memory", "fabric"}
    assert {n for n, k in rules.items() if k.relays_dma} == {"switch", "fabric", "nic"}
    assert {n for n, k in rules.items() if k.pairs} == {"fabric"}
    with pytest.raises(InputError, match="unknown node kind 'tape'"):
        NODE_KINDS.get("tape")
    assert isinstance(rules["cxl_expander"], NodeKind) and not rules["cxl_expander"].key  # known, placed by no file yet
    assert (rules["nvme"].key, rules["nvme"].prefix) == ("nvme_drives", "NV")  # drives behind PCIe switches


def test_a_ring_through_a_pcie_switch_is_refused_as_the_registry_says(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: t\ndescription: t\ndevice: h100_sxm5\nlinks: {nvlink: nvlink4, pcie: pcie5_x16}\n"
                    "devices: 2\nswitches: 1\nconnections: [[D0, D1, nvlink], [D0, SW0, pcie], [D1, SW0, pcie]]\n"
                    "rings: [[D0, SW0, D1]]\n")
    with pytest.raises(InputError, match="'SW0' is a switch; rings run over devices"):
        load_topology(str(path))


# -- routes -----------------------------------------------------------------------------

def test_routes_on_dgx_h100_4node_follow_nvswitch_rails_and_pxn():
    """Four DGX H100s on 8 rails: a GPU reaches a GPU of its node over the NVSwitch, the
    GPU at its place in another node over their rail switch, and any other over the
    NVSwitch to its node's GPU on the peer's rail first (PXN)."""
    fabric = load_topology("dgx_h100_4node").fabric
    assert (fabric.home("D0"), fabric.exit("D0"), fabric.rail("D0")) == ("FS0", "SP0", "SP0")
    assert (fabric.home("D9"), fabric.exit("D9"), fabric.node_of("D9")) == ("FS1", "SP1", "D8")
    assert fabric.route("D0", "D1") == ("D0", "FS0", "D1")
    assert fabric.route("D0", "D8") == ("D0", "SP0", "D8")
    assert fabric.route("D0", "D9") == ("D0", "FS0", "D1", "SP1", "D9")
    assert fabric.route("D9", "D0") == ("D9", "FS1", "D8", "SP0", "D0")
    assert fabric.route("D31", "D24") == ("D31", "FS3", "D24")
    assert fabric.channels(fabric.route("D0", "D9"), 1) == ("D0>FS0:1", "FS0>D1:1", "D1>SP1:0", "SP1>D9:0")


def test_routes_on_a_fat_tree_go_up_to_the_rails_core():
    """Two leaf groups of two nodes each per rail: the nodes of a group share a leaf, the
    two groups' leaves of a rail meet at the rail's core."""
    fabric = load_topology("dgx_h100_4node", [("generator.nodes_per_leaf", 2)]).fabric
    assert (fabric.exit("D16"), fabric.core("SP8"), fabric.rail("D16"), fabric.tier("SP16")) == ("SP8", "SP16", "SP16", 2)
    assert fabric.route("D0", "D8") == ("D0", "SP0", "D8")
    assert fabric.route("D0", "D16") == ("D0", "SP0", "SP16", "SP8", "D16")
    assert fabric.route("D0", "D17") == ("D0", "FS0", "D1", "SP1", "SP17", "SP9", "D17")


def test_a_two_level_switch_routes_up_to_a_spine_and_shares_the_leafs_uplinks(tmp_path):
    """Two leaves of 4 devices (4 NVLink4 each), each leaf with 2 uplinks to each of 2
    spines: 4 uplinks of 20.55 GB/s shared by 4 devices, 20.55 GB/s each across."""
    import yaml
    from test_fabric_collectives import TWO_LEVEL  # the two-level design those tests share

    path = tmp_path / "two_level.yaml"
    path.write_text(yaml.safe_dump(TWO_LEVEL))
    fabric = load_topology(str(path)).fabric
    assert fabric.route("D0", "D1") == ("D0", "FS0", "D1")
    assert fabric.route("D0", "D4") == ("D0", "FS0", "SP0", "FS1", "D4")
    (k0, n0, bw0, _), (k1, n1, bw1, _) = fabric.dimensions("D0")
    assert (k0, n0, bw0) == ("Switch", 4, pytest.approx(4 * 20.55e9))
    assert (k1, n1, bw1) == ("Switch", 2, pytest.approx(20.55e9))


def test_routes_elsewhere():
    two_level = load_topology("mcdla_scaleout").fabric
    assert two_level.route("D0", "D0") == ("D0",)
    dgx1v = load_topology("dgx1v").fabric
    assert dgx1v.route("D0", "D1") == ("D0", "D1")  # an NVLink between them
    assert load_topology("ring").fabric.route("D0", "D1") is None  # memory-nodes between: the rings'


def test_dimensions_as_astra_sim_describes_a_network():
    """(kind, devices, bytes/s per device one way, seconds) per dimension: the node's
    NVSwitch (18 NVLink4 links of 25 GB/s at 82.2% after protocol overhead: 369.9 GB/s),
    then the rail (one 400G NIC: 50 GB/s)."""
    topo = load_topology("dgx_h100_4node")
    (k0, n0, bw0, _), (k1, n1, bw1, lat1) = topo.fabric.dimensions("D0")
    assert (k0, n0, k1, n1) == ("Switch", 8, "Switch", 4)
    assert bw0 == pytest.approx(369.9e9)
    assert bw1 == pytest.approx(50e9)
    assert lat1 == pytest.approx(2 * topo.links["nic"].latency + topo.spine_switch.latency)
    assert load_topology("dgx_h100").fabric.dimensions("D0")[0][:2] == ("Switch", 8)
    assert [d[:2] for d in load_topology("ring").fabric.dimensions("D0")] == [("Ring", 8)]


# -- the cache --------------------------------------------------------------------------

def _iteration(topo, workload="gpt2", sets=(("execution.tensor_parallel", 2),)):
    from mcdla.run import load_inputs
    from mcdla.sim.training import Iteration

    cache = {("topology", "dgx_h100", repr([])): topo}
    _topo, work, execution = load_inputs("dgx_h100", workload, list(sets), cache, parallel="data", batch=16,
                                         policy="bw_aware")
    return Iteration(topo, work, execution)


def test_a_loaded_topology_keeps_what_it_derives_in_one_cache():
    topo = load_topology("dgx_h100")
    assert all(ring.cache is topo.cache for ring in topo.rings)  # the bound rings' derived values
    before = len(topo.cache)
    routes = topo.backing_routes("D0", "bw_aware", "offload")
    assert len(topo.cache) > before and topo.backing_routes("D0", "bw_aware", "offload") is routes
    assert load_topology("dgx_h100").cache is not topo.cache  # two loads: two caches


def test_two_runs_on_one_topology_share_no_state():
    """A run's sub-rings keep what they derive in the run's cache; what the topology's
    rings derive is kept once, so a second run adds nothing to the topology's cache and
    gives the same result."""
    topo = load_topology("dgx_h100")
    first = _iteration(topo)
    sub_rings = [ring for *_, rings in first.group_rings for ring in rings]
    assert sub_rings and all(ring.cache is first.cache for ring in sub_rings)
    one = first.run()
    kept = len(topo.cache)
    second = _iteration(topo)
    assert second.cache is not first.cache and len(second.cache) == 0
    two = second.run()
    assert len(topo.cache) == kept
    assert len(second.cache) == len(first.cache) > 0
    assert two.iteration_time_s == one.iteration_time_s > 0
