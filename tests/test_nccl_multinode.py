"""NCCL across machines (issue 24): the tree's protocols, LL's bus cap across machines and
the network post's floor on a ring's steps. Expected values are NCCL's tuning formulas
(src/graph/tuning.cc, tags v2.18.5-1, v2.26.2-1, v2.30.7-1) evaluated by hand."""

from __future__ import annotations

import pytest

from mcdla.hw.nccl import ll_max_bus_Bps, nccl_tuning, tree_latency_s
from mcdla.hw.network import Ring, channel_id
from mcdla.sim import algorithms  # noqa: F401  (registers the NCCL algorithms)
from mcdla.sim.collectives import COLLECTIVES, run_collective


def _cluster(nodes):
    from mcdla.hw.topology import load_topology

    return load_topology("dgx_h100_4node", [("generator.nodes", nodes)])


@pytest.mark.parametrize("ppn, nodes, protocol, us", [
    (8, 2, "LL", 25.2),  # 6.8 + 2 (7 x 0.6 + 1 x 5.0)
    (8, 4, "LL128", 65.5),  # 14 + 2 (7 x 1.25 + 2 x 8.5)
    (8, 8, "Simple", 148.4),  # 8.4 + 2 (7 x 4.0 + 3 x 14)
])
def test_the_trees_latency_by_protocol(ppn, nodes, protocol, us):
    assert tree_latency_s(ppn, nodes, protocol) == pytest.approx(us * 1e-6, rel=1e-9)


def _tree(protocol, version=None):
    tree = COLLECTIVES.get("nccl_tree")()
    tree.protocol = protocol
    if version is not None:
        tree.nccl = nccl_tuning(version, 9.0)
    return tree


def test_a_tiny_ll_tree_all_reduce_costs_its_latency():
    topo = _cluster(2)
    t = _tree("LL").time_s("all_reduce", 8.0, topo.rings, topo.capacities())
    assert t == pytest.approx(25.2e-6, rel=1e-3)


def test_the_ll_tree_across_two_machines_is_held_to_llmaxbw():
    """1 GiB under LL over 2 DGX H100: NCCL's llMaxBw across 2 Intel machines, 39.0 GB/s
    of busBw, half of it algorithm bandwidth (the tree's ratio .5): 2^30 / 19.5 GB/s,
    with the 25.2 us latency; the simulation gives the closed form's time and puts the
    flags on the wire (twice the data's bytes)."""
    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    tree = _tree("LL", "2.26")
    closed = tree.time_s("all_reduce", 2.0**30, rings, caps)
    assert closed == pytest.approx(25.2e-6 + 2.0**30 / 19.5e9, rel=1e-6)
    from mcdla.sim.environment import CountingEnvironment
    from mcdla.sim.flownet import FlowNetwork

    env = CountingEnvironment()
    net = FlowNetwork(env, caps)
    process = tree.start(env, net, rings, "all_reduce", 2.0**30)
    env.run()
    record = process.value
    assert record.time_s == pytest.approx(closed, rel=1e-9)
    assert (record.protocol, record.wire_factor) == ("LL", 2.0)


def test_nccl_2_7_has_no_ll_cap_for_the_tree_either():
    """NCCL 2.7's tuning.cc has no llMaxBw: its LL tree across 2 machines, as its ring,
    runs at LL's fraction of the links, well above 2.18.5's cap."""
    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    assert not nccl_tuning("2.7").ll_capped and nccl_tuning("2.18", 9.0).ll_capped
    uncapped = _tree("LL", "2.7").time_s("all_reduce", 2.0**30, rings, caps)
    assert uncapped < 0.8 * (25.2e-6 + 2.0**30 / 19.5e9)


def test_ll_bus_cap_across_machines_by_their_count():
    """llMaxBws' Intel rows for nNodes > 1: 39.0 GB/s on 2 machines, 20.4 on more."""
    assert ll_max_bus_Bps(2) == 39.0e9
    assert ll_max_bus_Bps(4) == ll_max_bus_Bps(8) == 20.4e9


def _rings_across(n_rings, bw_Bps=50e9):
    """``n_rings`` parallel rings of 4 ranks, 2 on each of 2 machines, no latency."""
    names = ("D0", "D1", "D2", "D3")
    rings, caps = [], {}
    for k in range(n_rings):
        channels = tuple(channel_id(names[i], names[(i + 1) % 4], k) for i in range(4))
        rings.append(Ring(name=f"r{k}", ranks=names, segments=tuple((c,) for c in channels), latency_s=(0.0,) * 4,
                          node=("A", "A", "B", "B")))
        caps.update({c: bw_Bps for c in channels})
    return tuple(rings), caps


def test_a_rings_ll_across_two_machines_shares_llmaxbw():
    """8 rings on 50 GB/s links: LL's 1/4 would give 12.5 GB/s a ring; across 2 machines
    2.18.5's llMaxBw (Intel-N2) is 39.0 GB/s for all channels: 39/8 a ring (one machine's
    Hopper figure, 87.7, would give 10.96)."""
    rings, caps = _rings_across(8)
    nccl = COLLECTIVES.get("nccl_ring")()
    nccl.nccl = nccl_tuning("2.18", 9.0)
    ll = nccl.protocol_costs("LL", "all_reduce", rings, caps)
    assert ll.cap_Bps["r0"] / ll.wire_factor == pytest.approx(39.0e9 / 8, rel=1e-9)


def test_a_ring_across_machines_posts_to_the_network_at_every_step():
    """1 byte, LL, 4 ranks on 2 machines: 2.18.5's baseLat 6.6 us + (nsteps - nInterSteps)
    x max(hwLat 0.6, netOverhead 1.0) + nInterSteps x 2.7 us = 6.6 + 4 + 5.4 = 16.0 us
    (nsteps 6, nInterSteps 2); 2.7 has no such floor: 3.6 + 4 x 0.47 + 2 x 2.7 = 10.88 us.
    Simple's floor is 3 x 1.0 us, under its 3.4 us hop: unchanged."""
    rings, caps = _rings_across(1)
    times = {}
    for version in ("2.7", "2.18"):
        nccl = COLLECTIVES.get("nccl_ring")()
        nccl.nccl = nccl_tuning(version, 9.0)
        ll = nccl.protocol_costs("LL", "all_reduce", rings, caps)
        times[version] = nccl.costed_time_s(ll, "all_reduce", 1.0, rings, caps, 4e3, None)
    assert times["2.18"] == pytest.approx(16.0e-6, rel=1e-3)
    assert times["2.7"] == pytest.approx(10.88e-6, rel=1e-3)
    nccl = COLLECTIVES.get("nccl_ring")()
    nccl.nccl = nccl_tuning("2.18", 9.0)
    assert nccl.protocol_costs("Simple", "all_reduce", rings, caps).step_latency_s == 3.4e-6


def test_on_one_machine_the_ring_keeps_its_nvlink_hop():
    from mcdla.hw.topology import load_topology

    topo = load_topology("dgx_h100")
    nccl = COLLECTIVES.get("nccl_ring")()
    nccl.nccl = nccl_tuning("2.18", 9.0)
    ll = nccl.protocol_costs("LL", "all_reduce", topo.rings, topo.capacities())
    assert ll.step_latency_s == 0.6e-6


def test_nccls_tuner_runs_the_tree_under_ll_for_small_messages_across_machines():
    """2 DGX H100, NCCL 2.18's constants: an 8 KiB all-reduce runs NCCL's tree under LL
    (25.2 us of latency against the ring's 16 x 1.0 + ... us), a large one NVLS-tree."""
    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    small = run_collective(rings, caps, "all_reduce", 8192.0, algorithm="nccl", nccl=nccl_tuning("2.18", 9.0)).record
    assert (small.algorithm, small.protocol) == ("nccl_tree", "LL")
    large = run_collective(rings, caps, "all_reduce", 2.0**30, algorithm="nccl", nccl=nccl_tuning("2.18", 9.0)).record
    assert large.algorithm == "nvls_tree"


@pytest.mark.parametrize("version, nodes, us", [
    ("2.26", 4, 81.0),  # 25 + 2 x log2i(4) x 14
    ("2.18", 4, 137.0),  # 23 + 2 x (4 - 1) x 19
    ("2.7", 8, 150.4),  # mcdla's default takes 2.30.7's: 25 + 2 x 3 x 20.9
])
def test_nvls_trees_latency_by_version(version, nodes, us):
    assert nccl_tuning(version, 9.0).nvls_tree.latency_s(nodes) == pytest.approx(us * 1e-6, rel=1e-9)


def test_2_18s_tree_has_no_base_latency_under_simple():
    """2.18.5's baseLat[Tree][Simple] is 0 (2.26.2 on: 8.4 us): 8 x 2 ranks, 2(7 x 4.0 + 14)."""
    tree = nccl_tuning("2.18", 9.0).tree_protocols
    assert tree_latency_s(8, 2, "Simple", tree) == pytest.approx(84.0e-6, rel=1e-9)
    assert tree_latency_s(8, 2, "Simple", nccl_tuning("2.26", 9.0).tree_protocols) == pytest.approx(92.4e-6)


def test_2_26s_ll_reaches_half_the_ring_and_141_gbps_on_one_hopper():
    """2.26.2: LL's busBw x .5 for every collective, llMaxBw 141 GB/s on one Hopper machine
    (2.18.5: 1/4 for all-reduce, 87.7)."""
    ll = nccl_tuning("2.26", 9.0).protocols["LL"]
    assert (ll.fraction("all_reduce"), ll.fraction("all_gather"), ll.max_bus_Bps) == (0.5, 0.5, 141.0e9)
    old = nccl_tuning("2.18", 9.0).protocols["LL"]
    assert (old.fraction("all_reduce"), old.max_bus_Bps) == (0.25, 87.7e9)


def test_the_ll128_tree_moves_its_flags_too():
    """LL128 sends 128 wire bytes per 120 of data and reaches 120/128 of a path's rate:
    past its latency a large LL128 tree all-reduce takes 128/120 of Simple's time."""
    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    size = 2.0**33
    simple = _tree("Simple").time_s("all_reduce", size, rings, caps) - tree_latency_s(8, 2, "Simple")
    ll128 = _tree("LL128").time_s("all_reduce", size, rings, caps) - tree_latency_s(8, 2, "LL128")
    assert ll128 / simple == pytest.approx(128 / 120, rel=1e-6)


def test_the_trees_network_as_nccls_model_credits_it():
    """tuning.cc (v2.18.5-1, v2.26.2-1), Hopper, beyond 2 machines, one graph channel per
    NIC: the tree at min(.92 c, perChMaxTreeBw 36.0 GB/s), under LL128 also at most 29.0
    GB/s of data (30.93 of wire); NVLS-tree at 5/6 c (2.26.2) or .70 n / (n - 1) c
    (2.18.5: 46.67 GB/s of 50 on 4 machines, 40 on 8); on 2 machines the trees' model
    names no network rate (None), but 2.26.2's NVLS-tree (5/6 there too)."""
    w26, w18 = nccl_tuning("2.26", 9.0).tree_net, nccl_tuning("2.18", 9.0).tree_net
    assert w26.tree_Bps("Simple", 50e9, 4) == pytest.approx(36.0e9)  # the per-channel cap binds
    assert w26.tree_Bps("Simple", 30e9, 8) == pytest.approx(27.6e9)  # .92 binds
    assert w26.tree_Bps("LL128", 50e9, 4) == pytest.approx(29.0e9 * 128 / 120)
    assert w26.tree_Bps("Simple", 50e9, 2) is None
    assert w26.nvls_tree_Bps(50e9, 2) == w26.nvls_tree_Bps(50e9, 8) == pytest.approx(50e9 * 5 / 6)
    assert w18.nvls_tree_Bps(50e9, 2) is None
    assert (w18.nvls_tree_Bps(50e9, 4), w18.nvls_tree_Bps(50e9, 8)) == (pytest.approx(46.67e9, rel=1e-3),
                                                                        pytest.approx(40e9))
    assert nccl_tuning("2.26", 8.0).tree_net.tree_Bps("Simple", 50e9, 4) == pytest.approx(17.8e9)  # Ampere
    assert nccl_tuning("2.7").tree_net is None  # the default constants weigh the trees as they run


def test_the_tuner_weighs_the_tree_at_its_per_channel_cap_from_3_machines():
    """An 8 GiB Simple tree on DGX H100 (2.26.2): beyond 2 machines the tuner weighs it on
    its NICs at 36 of their 50 GB/s, so it weighs longer than it runs; on 2 it weighs
    what it runs."""
    size = 2.0**33
    for nodes, slower in ((2, False), (4, True)):
        topo = _cluster(nodes)
        rings, caps = topo.rings, topo.capacities()
        tree = _tree("Simple", "2.26")
        t = tree.time_s("all_reduce", size, rings, caps)
        weighed = tree.weighed_s(t, "all_reduce", size, rings, caps)
        assert (weighed > 1.2 * t) if slower else (weighed == t), nodes


def test_beyond_2_machines_nccls_tuner_runs_the_ring_for_the_largest_sizes():
    """8 GiB on DGX H100 (2.26.2): NVLS-tree runs faster than the ring on 4 machines, but
    NCCL's model credits it with 5/6 of the NICs and its tree with 36 of 50 GB/s, so the
    tuner runs the ring; on 2 machines NVLS-tree (its NVLS inside each machine binds);
    64 MiB on 4 stays NVLS-tree (the ring's 62 steps of latency); under the default
    constants nothing is weighed and NVLS-tree runs."""
    topo = _cluster(4)
    rings, caps = topo.rings, topo.capacities()
    nccl26 = nccl_tuning("2.26", 9.0)

    def picked(rings, caps, size, nccl=nccl26):
        return run_collective(rings, caps, "all_reduce", size, algorithm="nccl", nccl=nccl).record

    nvls_tree = COLLECTIVES.get("nvls_tree")()
    nvls_tree.nccl = nccl26
    ring = COLLECTIVES.get("nccl_ring")()
    ring.nccl = nccl26
    size = 2.0**33
    assert nvls_tree.time_s("all_reduce", size, rings, caps) < ring.time_s("all_reduce", size, rings, caps)
    large = picked(rings, caps, size)
    assert (large.algorithm, large.protocol) == ("", "Simple")  # the ring: no other algorithm named
    assert picked(rings, caps, 2.0**26).algorithm == "nvls_tree"
    assert picked(rings, caps, size, nccl_tuning("2.7")).algorithm == "nvls_tree"
    two = _cluster(2)
    assert picked(two.rings, two.capacities(), size).algorithm == "nvls_tree"
