"""The shipped 2026 designs (issue 13): each one's per-device collective and
capacity-tier bandwidth against a count by hand from its datasheet parts."""

from __future__ import annotations

import pytest

from mcdla.hw.topology import load_topology
from mcdla.run import simulate

NVLINK3 = 25e9 * 0.8  # per direction per link, at the SM-driven fraction (presets: 128 B payloads)
NVLINK4 = 25e9 * 0.822
NVLINK5 = 50e9  # nominal: no measurement found
PCIE4 = 31.5e9 * 0.819
PCIE5 = 63e9 * 0.81
CXL2 = 63e9 * 0.81
PCIE3 = 16e9 * 0.75
EDR = 12.5e9  # an InfiniBand EDR NIC and a Switch-IB 2 port, per direction
NVLINK2 = 25e9

# name -> (collective algorithm, directed rings, collective bw per device, capacity-tier bw per device)
HAND = {
    # 12 NVLinks per GPU to the switch, one directed ring each; two GPUs share a gen4 uplink
    "dgx_a100": ("nccl", 12, 12 * NVLINK3, PCIE4 / 2),
    # 18 NVLinks; two GPUs share a gen5 uplink (the sockets' 307 GB/s DDR5 is not the limit)
    "dgx_h100": ("nccl", 18, 18 * NVLINK4, PCIE5 / 2),
    # a GPU's own gen5 link to its switch; the switch's two expanders serve its two GPUs
    "dgx_h100_cxl": ("nccl", 18, 18 * NVLINK4, min(PCIE5, 2 * CXL2 / 2)),
    # dgx_h100 with its NVMe drives: the default tier (the capacity tier of this table) is
    # still host memory over the shared gen5 uplink
    "dgx_h100_nvme": ("nccl", 18, 18 * NVLINK4, PCIE5 / 2),
    # a memory-node's 9 NVLinks (its DDR5's 307 GB/s is not the limit)
    "dgx_h100_memnodes": ("nccl", 18, 18 * NVLINK4, 9 * NVLINK4),
    # NVLink-C2C's 450 GB/s one way (Grace's 500 GB/s LPDDR5X is not the limit)
    "gh200_nvl32": ("nccl", 18, 18 * NVLINK4, 450e9),
    # half of a Grace's 900 GB/s C2C each way; its 500 GB/s shared by two GPUs is 250
    "gb200_nvl72": ("in_switch", 18, 18 * NVLINK5, 225e9),
    # 18 rings snake through 4 nodes; ring r leaves the even nodes on rail (r-1) mod 8 and
    # the odd ones on rail r mod 8, so rails 0 and 1 each carry 3 rings (r = 0, 8, 16 and
    # 1, 9, 17) at 50/3 GB/s per NIC, the 12 others run at an NVLink's rate; host memory
    # as dgx_h100
    "dgx_h100_4node": ("hierarchical", 18, 6 * 50e9 / 3 + 12 * NVLINK4, PCIE5 / 2),
    # Fig. 15: 3 rings (a device's 3 links) snake through 4 system nodes, each leaving a
    # node over an EDR NIC (12.5 GB/s) on its own rail; a device's own memory-node over
    # its 3 NVLink 2.0 links of 25 GB/s (the DIMMs' 256 GB/s is not the limit)
    "mcdla_scaleout": ("hierarchical", 3, 3 * 12.5e9, 3 * 25e9),
    # 4 MC-DLA ring nodes: each of a node's 3 rings (both ways: 6 directed rings) is cut
    # between two neighbouring devices and crosses between nodes over their EDR NICs;
    # the three are cut at places (0, 1), (2, 3), (4, 5), so each directed NIC channel
    # carries one directed ring, at 12.5 GB/s (its NVLink hops run at 25). A device's two
    # memory-nodes over 3 + 3 NVLinks, as ring (each store's 128 GB/s share is not the limit)
    "mcdla_ring_cluster": ("ring", 6, 6 * EDR, 6 * NVLINK2),
    # 4 dc nodes: the cube-mesh's 3 rings cut at places (0, 1), (2, 6), (7, 4), disjoint
    # NICs again; host memory as dc: two devices share a PCIe gen3 uplink
    "dc_cluster": ("ring", 6, 6 * EDR, PCIE3 / 2),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_bandwidth_per_device_against_a_hand_count(name):
    collective, rings, collective_Bps, tier_Bps = HAND[name]
    topo = load_topology(name)
    row = topo.summary()
    assert row["collective"] == collective
    assert row["rings"] == rings
    assert row["collective_bw_Bps"] == pytest.approx(collective_Bps, rel=1e-9)
    assert row["virtualization_bw_Bps"] == pytest.approx(tier_Bps, rel=1e-9)


def test_capacity_tiers_hold_what_their_parts_hold():
    assert load_topology("gb200_nvl72").memory_capacity("CPU0") == pytest.approx(480e9)  # one Grace, two GPUs
    assert load_topology("dgx_h100_memnodes").memory_capacity("M3") == pytest.approx(8 * 128e9)
    assert load_topology("dgx_h100_cxl").memory_capacity("M0/D1") == pytest.approx(4 * 128e9 / 2)
    assert load_topology("gb200_nvl72").device_memory_bytes == pytest.approx(186e9)


def test_gb200_pairs_two_gpus_per_grace():
    topo = load_topology("gb200_nvl72")
    assert len(topo.sockets) == 36
    assert topo.serves["D0"] == topo.serves["D1"] == ("CPU0",) and topo.serves["D71"] == ("CPU35",)


def test_cxl_keeps_pages_off_the_shared_uplink_and_the_sockets():
    topo = load_topology("dgx_h100_cxl")
    for route in topo.backing_routes("D3", "bw_aware", "offload"):
        assert route.path[0] == "D3>SW1:0" and route.store in ("M2", "M3")
        assert not any(hop.startswith("SW1>CPU") for hop in route.path)


@pytest.mark.parametrize("name, batch", [("dgx_a100", 64), ("dgx_h100", 64), ("dgx_h100_cxl", 64),
                                         ("dgx_h100_memnodes", 64), ("gh200_nvl32", 64), ("gb200_nvl72", 144),
                                         ("dgx_h100_4node", 64), ("mcdla_scaleout", 64),
                                         ("mcdla_ring_cluster", 64), ("dc_cluster", 64)])
def test_every_design_trains_an_iteration(name, batch):
    """A whole iteration passes its invariants on every design, with its own collective."""
    result = simulate(name, "bw_aware", "alexnet", "data", batch)
    assert result["iteration_time_s"] > 0


def test_a_faster_capacity_tier_is_a_faster_iteration():
    # Mixed precision, on the tensor cores: in fp32 an H100's CUDA cores (67 TFLOPS) hide
    # the offloads of every tier but the slowest behind compute. 16 images per GPU: at 8,
    # the GPU compute model's tile quantization of AlexNet's small GEMMs leaves every tier's
    # iteration bound by its all-reduces (within 1% of each other), not by its offloads.
    # Every map offloaded (the paper's stress policy): these designs offload only what does
    # not fit by default, and AlexNet fits.
    mixed = [("training.precision", "mixed"), ("execution.offload", "offload_all")]
    times = {name: simulate(name, "bw_aware", "alexnet", "data", 128, mixed)["iteration_time_s"]
             for name in ("dgx_h100", "dgx_h100_cxl", "dgx_h100_memnodes")}
    assert times["dgx_h100"] > times["dgx_h100_cxl"] > times["dgx_h100_memnodes"]


@pytest.mark.parametrize("name", ["dgx_h100_cxl", "dgx_h100_memnodes", "gb200_nvl72"])
def test_switched_designs_draw(name, tmp_path):
    """Every node of a switched design gets a place in the drawing (docs/topologies.md)."""
    from mcdla.plots.topology import draw_topology, layout

    topo = load_topology(name)
    assert set(layout(topo)) == set(topo.graph.nodes)
    draw_topology(topo, tmp_path / f"{name}.png")
    assert (tmp_path / f"{name}.png").stat().st_size > 0
