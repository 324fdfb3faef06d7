"""Topology generators (issue 13): a few parameters expand to the same graph a
hand-written file gives, and rings are derived at load when none are listed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from mcdla.config.generators import GENERATORS
from mcdla.config.loader import DATA_ROOT
from mcdla.errors import InputError
from mcdla.hw.rings import canonical_ring
from mcdla.hw.topology import load_topology
from mcdla.run import simulate

# The paper's designs as generator calls, beside their hand-written files.
GENERATED = {
    "ring": {"name": "ring", "description": "generated MC-DLA ring", "device": "table2",
             "memory_node": "table2", "links": {"nvlink": "nvlink2"},
             "generator": {"name": "ring", "devices": 8, "links_per_pair": 3}},
    "dc": {"name": "dc", "description": "generated DC-DLA", "device": "table2", "host": "xeon",
           "links": {"nvlink": "nvlink2", "pcie": "pcie3_x16"},
           "generator": {"name": "cube_mesh", "pcie_link": "pcie"}},
    "dc4": {"name": "dc4", "description": "generated half DC-DLA", "device": "table2",
            "host": {"preset": "xeon", "sockets": 1}, "links": {"nvlink": "nvlink2", "pcie": "pcie3_x16"},
            "generator": {"name": "cube_mesh", "devices": 4, "pcie_link": "pcie"}},
    "dc1": {"name": "dc1", "description": "generated one DC-DLA device", "device": "table2",
            "host": {"preset": "xeon", "sockets": 1}, "links": {"pcie": "pcie3_x16"},
            "generator": {"name": "cube_mesh", "devices": 1, "pcie_link": "pcie", "devices_per_pcie_switch": 1}},
}


def _file(tmp_path: Path, doc: dict, name: str = "gen") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _ring_set(topo):
    order = {n: i for i, n in enumerate(list(topo.devices) + list(topo.memory_nodes) + list(topo.fabric_switches))}
    return Counter(canonical_ring(r, order) for r in topo.ring_cycles)


@pytest.mark.parametrize("design", sorted(GENERATED))
def test_generated_paper_designs_equal_their_hand_written_files(design, tmp_path):
    generated = load_topology(_file(tmp_path, GENERATED[design]))
    written = load_topology(design)
    assert generated.generator and not written.generator
    assert generated.channels == written.channels
    assert generated.capacities() == written.capacities()
    assert generated.serves == written.serves
    assert _ring_set(generated) == _ring_set(written)
    assert sorted(c for r in generated.rings for c in r.channels) == \
        sorted(c for r in written.rings for c in r.channels)
    assert generated.collective_bw_Bps == written.collective_bw_Bps
    assert generated.virtualization_bw_Bps == written.virtualization_bw_Bps


@pytest.mark.parametrize("design", sorted(GENERATED))
def test_generated_paper_designs_simulate_identically(design, tmp_path):
    path = _file(tmp_path, GENERATED[design])
    generated = simulate(path, "bw_aware", "alexnet", "data", 64)
    written = simulate(design, "bw_aware", "alexnet", "data", 64)
    assert generated["iteration_time_s"] == written["iteration_time_s"]


@pytest.mark.parametrize("design", ("dc", "ring", "dc4"))
def test_hand_written_files_without_rings_derive_the_listed_ones(design, tmp_path):
    doc = yaml.safe_load((DATA_ROOT / "topologies" / f"{design}.yaml").read_text())
    doc.pop("rings")
    derived = load_topology(_file(tmp_path, doc))
    assert _ring_set(derived) == _ring_set(load_topology(design))
    assert derived.rings == load_topology(design).rings


def test_a_ring_of_64_devices_needs_no_listed_rings(tmp_path):
    doc = dict(GENERATED["ring"], generator={"name": "ring", "devices": 64, "links_per_pair": 3})
    topo = load_topology(_file(tmp_path, doc))
    assert len(topo.devices) == 64 and len(topo.memory_nodes) == 64
    assert len(topo.rings) == 6 and all(r.size == 64 for r in topo.rings)
    uses = Counter(c for r in topo.rings for c in r.channels)
    assert set(uses.values()) == {1} and len(uses) == len(topo.channels)
    assert topo.collective_bw_Bps == pytest.approx(150e9)  # 6 directed rings x 25 GB/s, as the 8-device ring


def test_set_resizes_a_generated_design(tmp_path):
    topo = load_topology(_file(tmp_path, GENERATED["ring"]), [("generator.devices", "16")])
    assert len(topo.devices) == 16


def test_generators_are_registered():
    assert {"ring", "cube_mesh", "switch", "superchip"} <= set(GENERATORS.names())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["generator"].update(name="torus"),
     r"gen\.yaml: generator\.name: unknown topology generator 'torus'; expected one of ring"),
    (lambda d: d["generator"].update(colour="red"), r"gen\.yaml: generator\.colour: unknown key"),
    (lambda d: d["generator"].update(devices="many"), r"gen\.yaml: generator\.devices: expected an integer"),
    (lambda d: d["generator"].update(link="qpi"),
     r"gen\.yaml: generator\.link: link type 'qpi' is not in the file's links \(nvlink\)"),
    (lambda d: d.update(connections=[["D0", "M0", "nvlink"]]),
     r"gen\.yaml: connections: set by generator 'ring'; remove it from the file"),
    (lambda d: d.update(generator="ring"), r"gen\.yaml: generator: expected a mapping with a name"),
    (lambda d: d["generator"].update(links_per_pair=4),
     r"gen\.yaml: generator\.connections: node 'D0' has 8 links, more than its device\.links = 6"),
    (lambda d: d.pop("memory_node"), r"gen\.yaml: generator\.memory_nodes: needs the file's 'memory_node'"),
])
def test_bad_generator_input_names_file_and_key(edit, message, tmp_path):
    import copy

    doc = copy.deepcopy(GENERATED["ring"])
    edit(doc)
    with pytest.raises(InputError, match=message):
        load_topology(_file(tmp_path, doc))


def test_a_design_with_no_ring_at_all_asks_for_rings(tmp_path):
    doc = yaml.safe_load((DATA_ROOT / "topologies" / "dc.yaml").read_text())
    doc.pop("rings")
    doc["connections"] = [c for c in doc["connections"] if c[0] != "D7" and c[1] != "D7"
                          or c[2] == "pcie"]  # D7 cut off from the NVLinks
    with pytest.raises(InputError, match=r"rings: 8 devices need at least one collective ring .* none was found"):
        load_topology(_file(tmp_path, doc))


SWITCHED = {"name": "sw", "description": "8 devices on one NVSwitch system", "device": "h100_sxm5",
            "fabric_switch": {"preset": "nvswitch3", "chips": 4}, "links": {"nvlink": "nvlink4"},
            "generator": {"name": "switch", "devices": 8, "links_per_device": 18}}


def test_switch_generator_derives_one_directed_ring_per_device_link(tmp_path):
    topo = load_topology(_file(tmp_path, SWITCHED))
    assert topo.fabric_switches == ("FS0",)
    assert len(topo.rings) == 18 and all(r.hub == "FS0" and r.size == 8 for r in topo.rings)
    uses = Counter(c for r in topo.rings for c in r.channels)
    assert set(uses.values()) == {1} and len(uses) == len(topo.channels)  # every directed channel once
    link = topo.links["nvlink"]
    assert topo.collective_bw_Bps == pytest.approx(18 * link.bw * link.efficiency)
    assert topo.ports["FS0/reduce"].bw_Bps == pytest.approx(4 * 1600e9)  # SHARP on each of 4 chips


def test_switch_ports_are_a_budget(tmp_path):
    doc = dict(SWITCHED, fabric_switch="nvswitch3")  # one chip: 64 ports for 8 x 18 links
    with pytest.raises(InputError, match=r"generator\.connections: node 'FS0' has 144 links, more than its "
                                         r"fabric_switch ports x chips = 64"):
        load_topology(_file(tmp_path, doc))


def test_superchip_generator_gives_every_device_its_cpu_over_c2c(tmp_path):
    doc = {"name": "gh", "description": "superchips", "device": "h100_sxm5",
           "host": {"preset": "xeon", "sockets": 4}, "fabric_switch": {"preset": "nvswitch3", "chips": 4},
           "links": {"nvlink": "nvlink4", "c2c": {"bw": "450 GB/s", "latency": "1 us", "host_interface": True}},
           "generator": {"name": "superchip", "devices": 4, "links_per_device": 18}}
    topo = load_topology(_file(tmp_path, doc))
    assert topo.serves == {f"D{i}": (f"CPU{i}",) for i in range(4)}
    (route,) = topo.backing_routes("D2", "local", "offload")
    assert route.path == ("D2>CPU2:0", "CPU2/mem")
    assert topo.virtualization_bw_Bps == pytest.approx(80e9)  # the socket's DRAM, below C2C's 450 GB/s


def test_two_level_switch_rings_run_leaf_to_leaf_over_the_spines(tmp_path):
    doc = {"name": "tl", "description": "two levels", "device": "h100_sxm5", "fabric_switch": "nvswitch3",
           "links": {"nvlink": "nvlink4"},
           "generator": {"name": "two_level_switch", "domains": 2, "devices_per_domain": 4,
                         "links_per_device": 4, "spines": 2, "uplinks": 2}}
    topo = load_topology(_file(tmp_path, doc))
    assert topo.fabric_switches == ("FS0", "FS1", "SP0", "SP1")
    assert len(topo.rings) == 4 and all(r.size == 8 and not r.hub for r in topo.rings)
    uplinks = sorted(ch for r in topo.rings for ch in r.channels if ch.startswith("FS0>SP"))
    assert uplinks == ["FS0>SP0:0", "FS0>SP0:1", "FS0>SP1:0", "FS0>SP1:1"]  # spines in turn
    assert set(Counter(c for r in topo.rings for c in r.channels).values()) == {1}


@pytest.mark.parametrize("generator", [
    {"name": "ring", "devices": 10**12},
    {"name": "two_level_switch", "domains": 10**6, "devices_per_domain": 10**6, "links_per_device": 1,
     "spines": 1, "uplinks": 1},
])
def test_a_huge_generator_is_refused_before_it_builds(generator, tmp_path, monkeypatch):
    import mcdla.hw.topology as hw_topology

    def never(*args, **kwargs):
        raise AssertionError("a graph was built for a refused generator")

    monkeypatch.setattr(hw_topology, "build_topology", never)
    doc = dict(GENERATED["ring"], fabric_switch="nvswitch3", generator=generator)
    with pytest.raises(InputError, match=r"gen\.yaml: generator: [\d,]+ nodes is more than a generator writes"):
        load_topology(_file(tmp_path, doc))


def test_beyond_the_node_limit_the_graph_refuses(tmp_path, monkeypatch):
    from mcdla.config.generators import MAX_GENERATED_NODES
    from mcdla.hw.budget import node_cap

    monkeypatch.setenv("MCDLA_MEMORY_BUDGET", "96 MB")  # 1,000 nodes of 96 kB
    too_many = node_cap() + 1
    assert too_many == 1001 < MAX_GENERATED_NODES
    doc = dict(GENERATED["ring"], generator={"name": "ring", "devices": too_many, "memory_nodes": False})
    with pytest.raises(InputError, match=r"gen\.yaml: generator\.devices: 1,001 nodes is more than the work "
                                         r"budget's memory holds: 1,000 nodes \(0\.0894 GiB at 96 kB a node\)"):
        load_topology(_file(tmp_path, doc))


def test_a_ring_of_a_thousand_devices_derives_without_a_search(tmp_path, monkeypatch):
    import mcdla.hw.rings as rings

    def never(*args, **kwargs):
        raise AssertionError("the rings of a plain cycle were searched for")

    monkeypatch.setattr(rings, "_search", never)
    doc = dict(GENERATED["ring"], generator={"name": "ring", "devices": 1000, "links_per_pair": 3})
    topo = load_topology(_file(tmp_path, doc))
    assert len(topo.rings) == 6 and topo.rings[0].size == 1000


def test_a_ring_search_that_runs_too_long_asks_for_rings(tmp_path, monkeypatch):
    import mcdla.hw.rings as rings

    monkeypatch.setattr(rings, "SEARCH_STEPS", 5)
    doc = yaml.safe_load((DATA_ROOT / "topologies" / "dc.yaml").read_text())
    doc.pop("rings")
    with pytest.raises(InputError, match=r"gen\.yaml: rings: no rings listed, and the search for them gave up"):
        load_topology(_file(tmp_path, doc))


FAT_TREE = {"name": "fat_tree", "description": "64 GPUs, one 400G NIC each, on a two-level InfiniBand fat tree",
            "device": "h100_sxm5", "fabric_switch": "quantum2", "links": {"ib": "ib_400g"},
            "generator": {"name": "two_level_switch", "domains": 2, "devices_per_domain": 32,
                          "links_per_device": 1, "spines": 2, "uplinks": 16, "link": "ib"}}


def test_a_scale_out_fat_tree_of_infiniband_switches(tmp_path):
    topo = load_topology(_file(tmp_path, FAT_TREE))
    assert topo.fabric_switches == ("FS0", "FS1", "SP0", "SP1")
    assert len(topo.rings) == 1 and topo.rings[0].size == 64  # one NIC per GPU: one directed ring
    assert topo.collective_bw_Bps == pytest.approx(50e9)  # a 400 Gb/s NIC


def test_spines_have_a_part_of_their_own(tmp_path):
    slow = dict(FAT_TREE, spine_switch={"preset": "quantum2", "port_bw": "25 GB/s"})
    topo = load_topology(_file(tmp_path, slow))
    assert topo.channels["FS0>SP0:0"].bw_Bps == pytest.approx(25e9)  # the spine's port, not the NIC
    assert topo.channels["D0>FS0:0"].bw_Bps == pytest.approx(50e9)
    assert topo.collective_bw_Bps == pytest.approx(25e9)
    small = dict(FAT_TREE, spine_switch={"preset": "quantum2", "ports": 16})
    with pytest.raises(InputError, match=r"generator\.connections: node 'SP0' has 32 links, more than its "
                                         r"spine_switch ports x chips = 16"):
        load_topology(_file(tmp_path, small))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("fabric_switch"), r"generator: needs the file's 'fabric_switch'"),
    (lambda d: d["generator"].update(memory_nodes=2, c2c_link="nvlink"),
     r"generator: give one capacity tier: memory_nodes, expanders_per_pcie_switch or c2c_link"),
    (lambda d: d["generator"].update(pcie_link="nvlink"), r"generator\.pcie_link: needs the file's 'host'"),
    (lambda d: (d.update(host="xeon"), d["generator"].update(pcie_link="nvlink", devices_per_pcie_switch=3)),
     r"generator\.devices_per_pcie_switch: 8 devices do not divide into PCIe switches of 3"),
    (lambda d: d["generator"].update(c2c_link="nvlink"),
     r"generator\.c2c_link: needs the file's 'host'"),
    (lambda d: (d.update(host={"preset": "grace", "sockets": 3}), d["generator"].update(c2c_link="nvlink")),
     r"generator\.devices_per_cpu: 8 devices, 1 per CPU: host\.sockets must be 8, got 3"),
    (lambda d: d["generator"].update(expanders_per_pcie_switch=1),
     r"generator\.expanders_per_pcie_switch: expanders sit behind PCIe switches: give pcie_link"),
])
def test_bad_switch_generator_input_names_file_and_key(edit, message, tmp_path):
    import copy

    doc = copy.deepcopy(SWITCHED)
    edit(doc)
    with pytest.raises(InputError, match=message):
        load_topology(_file(tmp_path, doc))


CLUSTER = {"name": "cl", "description": "NVLink domains on rails", "device": "h100_sxm5",
           "fabric_switch": {"preset": "nvswitch3", "chips": 4}, "spine_switch": "quantum2",
           "links": {"nvlink": "nvlink4", "nic": "ib_400g"},
           "generator": {"name": "cluster", "nodes": 2, "devices_per_node": 4, "links_per_device": 2}}


def test_cluster_rings_snake_through_the_nodes_and_cross_on_a_rail(tmp_path):
    topo = load_topology(_file(tmp_path, CLUSTER))
    assert topo.fabric_switches == ("FS0", "FS1", "SP0", "SP1", "SP2", "SP3")
    assert topo.ring_cycles == (
        ("D0", "FS0", "D1", "FS0", "D2", "FS0", "D3", "SP3", "D7", "FS1", "D6", "FS1", "D5", "FS1", "D4", "SP0"),
        ("D0", "SP0", "D4", "FS1", "D7", "FS1", "D6", "FS1", "D5", "SP1", "D1", "FS0", "D2", "FS0", "D3", "FS0"),
    )
    assert set(Counter(c for r in topo.rings for c in r.channels).values()) == {1}
    # a NIC is not one of the GPU's 18 NVLinks; every rank's way home is a link no ring takes
    assert all(ring.home_out[i] not in ring.channels or ring.home_out[i] == ring.segments[i][0]
               for ring in topo.rings for i in range(ring.size))


def test_cluster_with_one_scale_out_switch_and_an_odd_node_count(tmp_path):
    flat = dict(CLUSTER, generator=dict(CLUSTER["generator"], rails=False))
    assert load_topology(_file(tmp_path, flat)).fabric_switches[-1] == "SP0"
    odd = dict(CLUSTER, generator=dict(CLUSTER["generator"], nodes=3, devices_per_node=2))
    with pytest.raises(InputError, match=r"gen\.yaml: generator\.nodes: expected an even number of nodes, "
                                         r"got 3: the rings snake through the nodes"):
        load_topology(_file(tmp_path, odd))  # two places a node: a snake through 3 nodes cannot close


def test_set_resizes_a_shipped_generated_design_from_the_command_line(capsys):
    """GB200 NVL36 from the NVL72 file: half the GPUs, half the Grace CPUs."""
    import json

    from mcdla.cli.main import main

    assert main(["topologies", "gb200_nvl72", "--set", "generator.devices=36", "--set", "host.sockets=18",
                 "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["devices"] == 36 and row["virtualization_bw_Bps"] == pytest.approx(225e9)
    assert main(["sim", "--topology", "gb200_nvl72", "--set", "generator.devices=36", "--set", "host.sockets=18",
                 "--workload", "alexnet", "--batch", "72", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["iteration_time_s"] > 0


def test_a_cluster_without_rails_keeps_its_rings_in_the_nvlink_domains(tmp_path):
    """One spine for every NIC is not a switch the devices hang off: the rings still run
    over each node's NVSwitch and leave it by NIC, as with rails."""
    path = tmp_path / "norail.yaml"
    path.write_text("name: norail\ndescription: x\ndevice: h100_sxm5\n"
                    "host: {preset: dgx_h100_xeon, sockets: 4}\nfabric_switch: {preset: nvswitch3, chips: 4}\n"
                    "spine_switch: quantum2\nlinks: {nvlink: nvlink4, nic: ib_400g, pcie: pcie5_x16}\n"
                    "collective: hierarchical\n"
                    "generator: {name: cluster, nodes: 2, devices_per_node: 8, links_per_device: 18, "
                    "nic_link: nic, pcie_link: pcie, rails: false}\n")
    topo = load_topology(str(path))
    assert len(topo.ring_cycles) == 18
    assert topo.ring_cycles[0][:4] == ("D0", "FS0", "D1", "FS0")


def test_a_ring_generator_counts_its_memory_nodes_against_the_cap(tmp_path):
    from mcdla.config.generators import MAX_GENERATED_NODES

    path = tmp_path / "big.yaml"
    path.write_text("name: big\ndescription: x\ndevice: table2\nmemory_node: table2\nlinks: {nvlink: nvlink2}\n"
                    f"generator: {{name: ring, devices: {MAX_GENERATED_NODES // 2 + 1}}}\n")
    with pytest.raises(InputError, match="more than a generator writes"):
        load_topology(str(path))


# -- clusters of any single-node design (issue 14) -----------------------------------

RING_CLUSTER = {"name": "rc", "description": "MC-DLA ring nodes on EDR rails", "device": "table2",
                "memory_node": "table2", "fabric_switch": "switchib2",
                "links": {"nvlink": "nvlink2", "nic": "ib_100g"},
                "generator": {"name": "cluster", "nodes": 2, "nic_link": "nic",
                              "node": {"generator": "ring", "devices": 4, "links_per_pair": 3}}}

EDR = 12.5e9  # ib_100g and a switchib2 port, per direction (presets)
NVLINK2 = 25e9  # nvlink2 per direction per link (presets)


def test_a_cluster_of_ring_nodes(tmp_path):
    topo = load_topology(_file(tmp_path, RING_CLUSTER))
    assert topo.generator == "cluster"
    assert len(topo.devices) == 8 and len(topo.memory_nodes) == 8
    assert topo.fabric_switches == ("SP0", "SP1", "SP2", "SP3")  # a rail per place, no switch in a node
    # each node is ring.yaml's ring of 4, renumbered: node 1 is D4-M4-D5-...-D7-M7-D4
    assert topo.graph.number_of_edges("D4", "M4") == 3 and topo.graph.number_of_edges("M7", "D4") == 3
    assert not topo.graph.has_edge("M3", "D4")
    assert topo.serves["D4"] == ("M4", "M7") and topo.serves["D1"] == ("M1", "M0")
    assert [n for n in topo.graph.successors("D5") if n.startswith("SP")] == ["SP1"]  # device 1 of node 1: rail 1
    # the node's three rings, cut at places (0, 1), (2, 3) and (0, 1) again, through both nodes
    assert topo.ring_cycles[0] == ("D0", "SP0", "D4", "M7", "D7", "M6", "D6", "M5", "D5", "SP1",
                                   "D1", "M1", "D2", "M2", "D3", "M3")
    assert len(topo.rings) == 6
    for ring in topo.rings:
        assert sorted(ring.ranks) == sorted(topo.devices)  # every ring through every device
    assert set(Counter(c for r in topo.rings for c in r.channels).values()) == {1, 2}
    # Hand count: ring 1 has rails 2 and 3 to itself (an EDR NIC each way, 12.5 GB/s per
    # directed ring); rings 0 and 2 share the NICs of places 0 and 1 (6.25 GB/s each);
    # every NVLink hop is faster. Capacity tier as ring: 3 + 3 NVLinks to the two stores.
    assert topo.collective_bw_Bps == pytest.approx(2 * EDR + 4 * EDR / 2)
    assert topo.virtualization_bw_Bps == pytest.approx(6 * NVLINK2)


def test_a_ring_node_cluster_trains_an_iteration(tmp_path):
    path = _file(tmp_path, RING_CLUSTER)
    result = simulate(path, "bw_aware", "alexnet", "data", 32)
    assert result["iteration_time_s"] > 0 and result["devices"] == 8
    # hierarchical has no switch domains here: every rank is its own, and it runs as the ring
    hierarchical = simulate(path, "bw_aware", "alexnet", "data", 32, [("execution.collective", "hierarchical")])
    assert hierarchical["iteration_time_s"] > 0


def test_a_cluster_of_cube_mesh_nodes_with_their_hosts(tmp_path):
    doc = {"name": "dcc", "description": "DC-DLA nodes on EDR rails", "device": "table2",
           "host": {"preset": "xeon", "sockets": 4}, "fabric_switch": "switchib2",
           "links": {"nvlink": "nvlink2", "pcie": "pcie3_x16", "nic": "ib_100g"},
           "generator": {"name": "cluster", "nodes": 2, "nic_link": "nic",
                         "node": {"generator": "cube_mesh", "pcie_link": "pcie"}}}
    topo = load_topology(_file(tmp_path, doc))
    assert len(topo.devices) == 16 and topo.switches == tuple(f"SW{i}" for i in range(8))
    assert topo.serves["D9"] == ("CPU2",) and topo.serves["D15"] == ("CPU3",)  # node 1's sockets
    assert topo.graph.number_of_edges("D8", "D11") == 2  # dc's double link 0-3, in node 1
    assert len(topo.rings) == 6 and all(sorted(r.ranks) == sorted(topo.devices) for r in topo.rings)
    assert set(Counter(c for r in topo.rings for c in r.channels).values()) == {1}  # cut at disjoint NICs
    assert topo.collective_bw_Bps == pytest.approx(6 * EDR)
    assert topo.virtualization_bw_Bps == pytest.approx(16e9 * 0.75 / 2)  # as dc: a shared gen3 uplink


@pytest.mark.parametrize("name, node", [
    ("dgx_h100_4node", {"generator": "switch", "devices": 8, "links_per_device": 18, "pcie_link": "pcie"}),
    ("mcdla_scaleout", {"generator": "switch", "devices": 4, "links_per_device": 3, "memory_nodes": 4,
                        "links_per_memory_node": 3}),
])
def test_a_switch_node_equals_the_built_in_switched_node(name, node, tmp_path):
    doc = yaml.safe_load((DATA_ROOT / "topologies" / f"{name}.yaml").read_text())
    doc["generator"] = {"name": "cluster", "nodes": 4, "nic_link": "nic", "node": node}
    generated, shipped = load_topology(_file(tmp_path, doc)), load_topology(name)
    assert generated.channels == shipped.channels
    assert generated.serves == shipped.serves
    assert generated.ring_cycles == shipped.ring_cycles and generated.rings == shipped.rings
    assert generated.summary() == shipped.summary()


def test_a_cluster_of_superchip_nodes(tmp_path):
    doc = {"name": "gh", "description": "GH200 nodes", "device": "gh200", "host": {"preset": "grace", "sockets": 8},
           "fabric_switch": {"preset": "nvswitch3", "chips": 4}, "spine_switch": "quantum2",
           "links": {"nvlink": "nvlink4", "c2c": "nvlink_c2c", "nic": "ib_400g"},
           "generator": {"name": "cluster", "nodes": 2, "nic_link": "nic",
                         "node": {"generator": "superchip", "devices": 4, "links_per_device": 18}}}
    topo = load_topology(_file(tmp_path, doc))
    assert topo.serves["D5"] == ("CPU5",)
    assert len(topo.rings) == 18 and all(sorted(r.ranks) == sorted(topo.devices) for r in topo.rings)


def test_one_spine_for_all_closes_the_rings_over_an_odd_number_of_nodes(tmp_path):
    doc = dict(RING_CLUSTER, generator=dict(RING_CLUSTER["generator"], nodes=3, rails=False))
    topo = load_topology(_file(tmp_path, doc))
    assert topo.fabric_switches == ("SP0",) and len(topo.devices) == 12
    assert all(sorted(r.ranks) == sorted(topo.devices) for r in topo.rings)


def test_a_cluster_node_is_resized_from_the_command_line(tmp_path):
    topo = load_topology("mcdla_ring_cluster", [("generator.nodes", "2"), ("generator.node.devices", "4")])
    assert len(topo.devices) == 8 and len(topo.memory_nodes) == 8


@pytest.mark.parametrize("edit, message", [
    (lambda g: g["node"].pop("generator"),
     r"gen\.yaml: generator\.node: expected a mapping with a generator and its parameters"),
    (lambda g: g.update(node="ring"), r"gen\.yaml: generator\.node: expected a mapping, got 'ring'"),
    (lambda g: g["node"].update(generator="cluster"),
     r"gen\.yaml: generator\.node\.generator: expected a single-node generator, one of ring, cube_mesh, "
     r"switch, superchip; got 'cluster'"),
    (lambda g: g["node"].update(devices="eight"), r"gen\.yaml: generator\.node\.devices: expected an integer"),
    (lambda g: g["node"].update(colour="red"), r"gen\.yaml: generator\.node\.colour: unknown key"),
    (lambda g: g["node"].update(devices=1, links_per_pair=1),
     r"gen\.yaml: generator\.node\.devices: a ring needs at least 2 devices"),
    (lambda g: g["node"].update(link="qpi"), r"gen\.yaml: generator\.node\.link: link type 'qpi' is not in"),
    (lambda g: g.update(devices_per_node=8),
     r"gen\.yaml: generator\.devices_per_node: a parameter of the built-in switched node; with node"),
    (lambda g: g.pop("node"), r"gen\.yaml: generator\.devices_per_node: missing; expected an integer"),
    (lambda g: g.update(nodes=3),
     r"gen\.yaml: generator\.nodes: expected an even number of nodes, got 3: the rings snake through the nodes"),
    (lambda g: g.update(nic_link="ib"), r"gen\.yaml: generator\.nic_link: link type 'ib' is not in"),
    (lambda g: g.update(nodes=10**6), r"gen\.yaml: generator: [\d,]+ nodes is more than a generator writes"),
])
def test_bad_cluster_node_input_names_file_and_key(edit, message, tmp_path):
    import copy

    doc = copy.deepcopy(RING_CLUSTER)
    edit(doc["generator"])
    with pytest.raises(InputError, match=message):
        load_topology(_file(tmp_path, doc))


def test_host_sockets_must_split_over_the_nodes(tmp_path):
    doc = {"name": "dcc", "description": "x", "device": "table2", "host": {"preset": "xeon", "sockets": 3},
           "fabric_switch": "switchib2", "links": {"nvlink": "nvlink2", "pcie": "pcie3_x16", "nic": "ib_100g"},
           "generator": {"name": "cluster", "nodes": 2, "nic_link": "nic",
                         "node": {"generator": "cube_mesh", "pcie_link": "pcie"}}}
    with pytest.raises(InputError, match=r"gen\.yaml: host\.sockets: 3 sockets do not divide evenly over 2 nodes"):
        load_topology(_file(tmp_path, doc))


def test_a_cluster_of_one_device_nodes_is_a_switch_ring_through_the_spine(tmp_path):
    doc = {"name": "one", "description": "x", "device": "table2", "fabric_switch": "switchib2",
           "links": {"nic": "ib_100g"},
           "generator": {"name": "cluster", "nodes": 3, "nic_link": "nic", "node": {"generator": "cube_mesh",
                                                                                    "devices": 1}}}
    topo = load_topology(_file(tmp_path, doc))
    assert topo.ring_cycles == (("D0", "SP0", "D1", "SP0", "D2", "SP0"),)
    assert len(topo.rings) == 1 and topo.collective_bw_Bps == pytest.approx(EDR)  # directed: the NIC each way


def test_a_cluster_of_one_ring_node_keeps_the_node_rings(tmp_path):
    topo = load_topology(_file(tmp_path, dict(RING_CLUSTER, generator=dict(RING_CLUSTER["generator"], nodes=1))))
    assert topo.ring_cycles == (("D0", "M0", "D1", "M1", "D2", "M2", "D3", "M3"),) * 3
    assert topo.collective_bw_Bps == pytest.approx(6 * NVLINK2)  # as the ring alone: the NICs unused


@pytest.mark.parametrize("name, params", [
    ("ring", {"devices": 8, "links_per_pair": 3}), ("ring", {"devices": 5, "links_per_pair": 2}),
    ("ring", {"devices": 6, "links_per_pair": 2, "memory_nodes": False}),
    ("cube_mesh", {"devices": 8}), ("cube_mesh", {"devices": 4}),
])
def test_a_node_s_own_rings_are_the_ones_derived_on_it_alone(name, params, tmp_path):
    """The cluster joins the rings the node generator knows; they are the derivation's."""
    from mcdla.config.generators import GENERATORS as registry, _node_rings
    from mcdla.config.schema import Where, build

    doc = {"name": "n", "description": "x", "device": "table2", "memory_node": "table2",
           "links": {"nvlink": "nvlink2"}, "generator": {"name": name, **params}}
    topo = load_topology(_file(tmp_path, doc))
    assert _node_rings(name, build(registry.get(name)[0], params, Where("x"))) == topo.ring_cycles
