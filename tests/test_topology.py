"""Design points: building, validation, rings, backing routes, bandwidths, the CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mcdla.cli.main import main
from mcdla.config.loader import DATA_ROOT, shipped
from mcdla.errors import InputError
from mcdla.hw.rings import canonical_ring, find_rings
from mcdla.hw.topology import load_topology

SHIPPED = ("single", "dc", "hc", "star", "ring", "oracle", "dc1", "dc4", "dgx1v",
           "dgx_a100", "dgx_h100", "dgx_h100_cxl", "dgx_h100_memnodes", "dgx_h100_nvme", "gh200_nvl32", "gb200_nvl72",
           "dgx_h100_4node", "dc16", "ring16", "mcdla_scaleout", "mcdla_ring_cluster", "dc_cluster",
           "dgx_a100_cluster")
# Frontier-scale designs (issue 27): refused at full size today (more nodes than a
# generator writes), so checked reduced here and in tests/test_three_tier_fabric.py.
FRONTIER = {"h100_100k": [("generator.nodes", 8), ("generator.nodes_per_leaf", 2), ("generator.leaves_per_pod", 2),
                          ("generator.pod_oversubscription", 2)],
            "gb200_nvl72_100k": [("generator.nodes", 4), ("host.sockets", 144), ("generator.nodes_per_leaf", 1),
                                 ("generator.leaves_per_pod", 2)]}


def _write(tmp_path: Path, base: str, edit) -> Path:
    """A copy of shipped topology ``base`` with ``edit(doc)`` applied, as a file."""
    doc = yaml.safe_load((DATA_ROOT / "topologies" / f"{base}.yaml").read_text())
    edit(doc)
    path = tmp_path / f"{base}_edited.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# -- every shipped design point ------------------------------------------------------


def test_shipped_list_is_the_design_points_not_the_presets():
    assert set(shipped("topologies")) == set(SHIPPED) | set(FRONTIER)


@pytest.mark.parametrize("name", SHIPPED + tuple(FRONTIER))
def test_shipped_topology_validates(name):
    topo = load_topology(name, FRONTIER.get(name, ()))
    assert topo.name == name
    for cid, ch in topo.channels.items():
        assert topo.graph.has_edge(ch.src, ch.dst)
        assert cid.startswith(f"{ch.src}>{ch.dst}:")


@pytest.mark.parametrize("name", SHIPPED + tuple(FRONTIER))
def test_every_device_and_memory_node_stays_within_its_link_budget(name):
    """PCIe host interfaces (links to PCIe switches) and links of a host-interface type
    (NVLink-C2C to the device's own CPU, a NIC) are not device links; a fabric switch
    has its ports, whatever the link."""
    topo = load_topology(name, FRONTIER.get(name, ()))
    for node, kind in topo.graph.nodes(data="kind"):
        links = sum(
            1
            for other in topo.graph.successors(node)
            if topo.graph.nodes[other]["kind"] != "switch"
            for data in topo.graph[node][other].values()
            if not (kind == "device" and topo.links[data["link_type"]].host_interface)
        )
        if kind == "device":
            assert links <= topo.device.links
        if kind == "memory":
            assert links <= topo.memory_node.links
        if kind == "fabric":
            assert links <= topo.graph.nodes[node]["spec"].total_ports


def test_dc_devices_use_exactly_six_nvlinks():
    topo = load_topology("dc")
    for d in topo.devices:
        nvlinks = sum(topo.graph.number_of_edges(d, o) for o in topo.devices if o != d)
        assert nvlinks == 6


@pytest.mark.parametrize("name", ("dc", "star", "ring", "oracle", "dc4"))
def test_rings_never_share_a_directed_channel(name):
    uses = Counter(c for r in load_topology(name).rings for c in r.channels)
    assert set(uses.values()) == {1}


def test_hc_rings_use_every_cube_channel_exactly_twice():
    topo = load_topology("hc")
    uses = Counter(c for r in topo.rings for c in r.channels)
    cube = [c for c, ch in topo.channels.items() if ch.src in topo.devices and ch.dst in topo.devices]
    assert sorted(uses) == sorted(cube)
    assert set(uses.values()) == {2}


def test_ring_segments_relay_through_one_memory_node():
    topo = load_topology("ring")
    assert len(topo.rings) == 6
    for ring in topo.rings:
        assert ring.size == 8
        assert all(len(seg) == 2 for seg in ring.segments)


def test_star_rings_have_the_papers_hop_counts():
    hops = sorted({r.hops for r in load_topology("star").rings})
    assert hops == [8, 12, 20]


# -- bandwidths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("dc", 150e9), ("hc", 75e9), ("ring", 150e9), ("star", 150e9), ("oracle", 150e9),
        ("single", 0.0), ("dc4", 100e9), ("dc1", 0.0),
    ],
)
def test_collective_bandwidth_per_device(name, expected):
    assert load_topology(name).collective_bw_Bps == pytest.approx(expected)


def test_dc_virtualization_is_half_an_effective_pcie3_uplink():
    topo = load_topology("dc")
    pcie = topo.links["pcie"]
    assert topo.virtualization_bw_Bps == pytest.approx(pcie.bw * pcie.efficiency / 2)


@pytest.mark.parametrize(
    "name, expected", [("hc", 75e9), ("star", 50e9), ("ring", 150e9), ("dc4", 6e9), ("dc1", 12e9)]
)
def test_virtualization_bandwidth_bw_aware(name, expected):
    assert load_topology(name).virtualization_bw_Bps == pytest.approx(expected)


def test_ring_local_policy_gets_half_of_bw_aware():
    topo = load_topology("ring")
    assert topo.virtualization_rate_Bps("local") == pytest.approx(75e9)
    assert topo.virtualization_rate_Bps("bw_aware", "prefetch") == pytest.approx(150e9)


@pytest.mark.parametrize("name", ("oracle", "single"))
def test_no_backing_store_means_no_routes(name):
    topo = load_topology(name)
    assert topo.backing == "none"
    assert topo.backing_routes(topo.devices[0], "bw_aware", "offload") == ()
    assert topo.virtualization_bw_Bps == 0.0


def test_oracle_device_memory_is_unbounded():
    assert math.isinf(load_topology("oracle").device_memory_bytes)
    assert load_topology("dc").device_memory_bytes == pytest.approx(16 * 2**30)


# -- backing routes -----------------------------------------------------------------


@pytest.mark.parametrize("name", ("dc", "hc", "star", "ring", "dc1", "dc4"))
@pytest.mark.parametrize("policy", ("local", "bw_aware"))
@pytest.mark.parametrize("direction", ("offload", "prefetch"))
def test_routes_are_real_and_shares_sum_to_one(name, policy, direction):
    topo = load_topology(name)
    caps = topo.capacities()
    for d in topo.devices:
        routes = topo.backing_routes(d, policy, direction)
        assert sum(r.share for r in routes) == pytest.approx(1.0)
        for r in routes:
            assert all(hop in caps for hop in r.path)
            chans = [topo.channels[h] for h in r.path if h in topo.channels]
            first, last = (d, r.store) if direction == "offload" else (r.store, d)
            assert chans[0].src == first and chans[-1].dst == last
            assert all(a.dst == b.src for a, b in zip(chans, chans[1:]))
            # hop latencies, plus the memory-node's DIMM access latency where it is the store
            memory = topo.memory_node.mem_latency if r.store in topo.memory_nodes else 0.0
            assert r.latency_s == pytest.approx(sum(c.latency_s for c in chans) + memory)


def test_ring_routes_local_right_neighbour_bw_aware_both_sides():
    topo = load_topology("ring")
    local = topo.backing_routes("D3", "local", "offload")
    assert {r.store for r in local} == {"M3"}
    assert sorted(r.path for r in local) == [(f"D3>M3:{k}", "M3/D3") for k in range(3)]
    aware = topo.backing_routes("D3", "bw_aware", "offload")
    assert Counter(r.store for r in aware) == {"M3": 3, "M2": 3}
    assert all(r.share == pytest.approx(1 / 6) for r in aware)


def test_memory_ports_split_the_memory_node_among_its_clients():
    ring = load_topology("ring")
    assert ring.ports["M0/D0"].bw_Bps == pytest.approx(128e9)
    assert ring.ports["M0/D1"].bw_Bps == pytest.approx(128e9)
    assert load_topology("star").ports["M0/D0"].bw_Bps == pytest.approx(256e9)
    assert load_topology("dc").ports["CPU1/mem"].bw_Bps == pytest.approx(80e9)


def test_memory_capacity_per_store():
    ring = load_topology("ring")
    assert ring.memory_capacity("M0") == pytest.approx(10 * 128e9)
    assert ring.memory_capacity("M0/D1") == pytest.approx(10 * 128e9 / 2)
    assert load_topology("dc").memory_capacity("CPU0") == pytest.approx(256e9)


def test_dc_routes_cross_the_shared_switch_uplink():
    topo = load_topology("dc")
    (d0,) = topo.backing_routes("D0", "local", "offload")
    (d1,) = topo.backing_routes("D1", "local", "offload")
    assert d0.path == ("D0>SW0:0", "SW0>CPU0:0", "CPU0/mem")
    assert d1.path[1] == d0.path[1]


# -- overrides ----------------------------------------------------------------------


def test_set_pcie_bandwidth_by_preset_name_doubles_dc_virtualization():
    base = load_topology("dc").virtualization_bw_Bps
    faster = load_topology("dc", [("links.pcie3_x16.bw", "32 GB/s")])
    assert faster.virtualization_bw_Bps == pytest.approx(2 * base)


def test_set_pcie_generation_by_preset():
    gen4 = load_topology("dc", [("links.pcie", "pcie4_x16")])
    assert gen4.virtualization_bw_Bps == pytest.approx(12e9)


def test_set_device_and_memory_node_fields():
    topo = load_topology("ring", [("device.hbm_bw", "1.2 TB/s"), ("memory_node.mem_bw", "128 GB/s")])
    assert topo.device.hbm_bw == pytest.approx(1.2e12)
    assert topo.ports["M0/D0"].bw_Bps == pytest.approx(64e9)


def test_set_socket_bandwidth_limits_hc():
    topo = load_topology("hc", [("host.socket_mem_bw", "150 GB/s")])
    assert topo.virtualization_bw_Bps == pytest.approx(37.5e9)


def test_set_unknown_key_is_an_input_error():
    with pytest.raises(InputError, match=r"device\.hbm_speed: unknown key"):
        load_topology("dc", [("device.hbm_speed", "1 TB/s")])


# -- bad input ----------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d.update(colour="red"))
    with pytest.raises(InputError, match=r"ring_edited\.yaml: colour: unknown key"):
        load_topology(str(path))


def test_unknown_node_in_a_link(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d["connections"].append(["D0", "D9", "nvlink"]))
    with pytest.raises(InputError, match=r"connections\[16\]\[1\]: unknown node 'D9'"):
        load_topology(str(path))


@pytest.mark.parametrize("devices, memory_nodes, key, twice", [
    (["D0", "D1", "D2", "D1", "D0", "D5", "D6", "D7"], 8, "devices", "D1"),  # the first given again
    ([f"D{i}" for i in range(7)] + ["M2"], [f"M{i}" for i in range(8)], "memory_nodes", "M2"),  # two kinds
])
def test_a_node_defined_twice_is_named_where_it_comes_again(tmp_path, devices, memory_nodes, key, twice):
    path = _write(tmp_path, "ring", lambda d: d.update(devices=devices, memory_nodes=memory_nodes))
    with pytest.raises(InputError, match=rf"{key}: node '{twice}' is defined twice"):
        load_topology(str(path))


def test_unknown_link_type(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d["connections"].__setitem__(0, ["D0", "M0", "qpi", 3]))
    with pytest.raises(InputError, match=r"connections\[0\]\[2\]: unknown link type 'qpi'"):
        load_topology(str(path))


def test_unknown_preset(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d.update(device="tpu9"))
    with pytest.raises(InputError, match=r"device: unknown devices preset 'tpu9'"):
        load_topology(str(path))


def test_ring_that_is_not_a_cycle(tmp_path):
    def edit(d):
        d["rings"][2] = ["D0", "M0", "D1", "M1", "D3", "M3"]

    path = _write(tmp_path, "ring", edit)
    with pytest.raises(InputError, match=r"rings\[2\]\[4\]: 'M1' -> 'D3' is not a link"):
        load_topology(str(path))


def test_ring_through_a_node_that_is_not_there(tmp_path):
    path = _write(tmp_path, "hc", lambda d: d.update(rings=[["D0", "D1", "M0"]]))
    with pytest.raises(InputError, match=r"rings\[0\]\[2\]: unknown node 'M0'"):
        load_topology(str(path))


def test_ring_reusing_a_channel(tmp_path):
    # M0 -> M1 is a single link; a ring crossing it twice in one direction must share it.
    path = _write(tmp_path, "star", lambda d: d.update(rings=[["D0", "M0", "M1", "D1", "M1", "M0", "M1", "M0"]]))
    with pytest.raises(InputError, match=r"rings\[0\]\[6\]: the ring crosses 'M0' -> 'M1' more often"):
        load_topology(str(path))


def test_too_many_links_on_a_node(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d["connections"].append(["D0", "M1", "nvlink"]))
    with pytest.raises(InputError, match=r"connections: node '(D0|M1)' has 7 links, more than its"):
        load_topology(str(path))


def test_bad_unit(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d.update(device={"preset": "table2", "hbm_bw": "900 GB"}))
    with pytest.raises(InputError, match=r"ring_edited\.yaml: device\.hbm_bw: "):
        load_topology(str(path))


def test_memory_node_with_too_many_clients(tmp_path):
    path = _write(tmp_path, "ring", lambda d: d["serves"].__setitem__("D2", ["M2", "M1", "M0"]))
    with pytest.raises(InputError, match=r"serves(\.D2\[2\])?: .*(no link path|more than memory_node\.groups)"):
        load_topology(str(path))


def test_store_of_the_wrong_kind(tmp_path):
    path = _write(tmp_path, "dc", lambda d: d["serves"].__setitem__("D0", ["SW0"]))
    with pytest.raises(InputError, match=r"serves\.D0\[0\]: 'SW0' is not a CPU socket"):
        load_topology(str(path))


def test_unknown_shipped_name():
    with pytest.raises(InputError, match="unknown topology 'torus'"):
        load_topology("torus")


# -- the ring finder ----------------------------------------------------------------


def test_ring_finder_reproduces_the_listed_dc_rings():
    topo = load_topology("dc")
    order = {d: i for i, d in enumerate(topo.devices)}
    found = find_rings(topo.graph, topo.devices)
    assert len(found) == 3
    listed = {canonical_ring(r, order) for r in topo.ring_cycles}
    assert {canonical_ring(r, order) for r in found} == listed


def test_ring_finder_reproduces_the_listed_dc4_rings():
    topo = load_topology("dc4")
    order = {d: i for i, d in enumerate(topo.devices)}
    found = find_rings(topo.graph, topo.devices)
    assert {canonical_ring(r, order) for r in found} == {canonical_ring(r, order) for r in topo.ring_cycles}


def test_ring_finder_rings_are_edge_disjoint_on_dc():
    topo = load_topology("dc")
    uses = Counter()
    for ring in find_rings(topo.graph, topo.devices):
        for a, b in zip(ring, ring[1:] + ring[:1]):
            uses[frozenset((a, b))] += 1
    for pair, n in uses.items():
        a, b = tuple(pair)
        assert n <= topo.graph.number_of_edges(a, b)


def test_ring_finder_finds_one_ring_in_a_3_cube():
    topo = load_topology("hc")
    assert len(find_rings(topo.graph, topo.devices)) == 1


def test_ring_finder_is_deterministic():
    topo = load_topology("dc")
    assert find_rings(topo.graph, topo.devices) == find_rings(topo.graph, topo.devices)


# -- mcdla topologies ---------------------------------------------------------------


def test_cli_lists_every_design_point_as_json(capsys):
    assert main(["topologies", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == sorted(SHIPPED)
    assert set(rows[0]) == {
        "name", "devices", "memory_nodes", "rings", "collective", "offload", "collective_bw_Bps",
        "virtualization_bw_Bps"
    }
    by_name = {r["name"]: r for r in rows}
    assert by_name["ring"]["virtualization_bw_Bps"] == pytest.approx(150e9)


def test_cli_csv_with_set_and_output_file(tmp_path):
    out = tmp_path / "t.csv"
    assert main(["topologies", "dc", "--set", "links.pcie=pcie4_x16", "--format", "csv", "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "name,devices,memory_nodes,rings,collective,offload,collective_bw_Bps,virtualization_bw_Bps"
    assert lines[1].startswith("dc,8,0,6,")


def test_cli_table(capsys):
    assert main(["topologies"]) == 0
    out = capsys.readouterr().out
    assert "collective_bw_Bps" in out and "star" in out


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["topologies", "dc", "--set", "links.pcie.bw=fast", "--output", str(out)]) == 2
    assert "links.pcie.bw" in capsys.readouterr().err
    assert not out.exists()


def test_a_copied_graph_does_not_share_route_searches():
    from mcdla.hw.topology import _route

    topo = load_topology("dc")
    device = topo.devices[0]
    store = topo.serves[device][0]
    hops = _route(topo.graph, device, store)
    copy = topo.graph.copy()
    copy.remove_edge(*hops[0])  # a changed copy finds its own route (here none)
    assert _route(copy, device, store) != hops
    assert _route(topo.graph, device, store) == hops


def test_a_preset_swap_by_set_takes_the_new_preset_and_later_overrides():
    """--set KEY.preset=NAME replaces the file's part (it was resolved to its fields
    first, which then overrode the new preset's: a silent no-op)."""
    topo = load_topology("dgx_h100_4node", [("spine_switch.chips", 4), ("spine_switch.preset", "spectrum4"),
                                            ("links.nic.preset", "roce_400g")])
    assert topo.spine_switch.ports == 128 and topo.spine_switch.chips == 4  # Spectrum-4's, and the override
    assert topo.links["nic"].latency == pytest.approx(3e-6)  # roce_400g's
