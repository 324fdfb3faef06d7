"""NCCL at medium sizes (issue 24): the tree all-reduce's bandwidth correction by size and
the ring's plateau across machines, as NCCL's own tuning model has them
(src/graph/tuning.cc, ncclTopoGetAlgoTime and treeCorrectionFactor; commit 01afd20a for
2.7, tags v2.18.5-1 and v2.26.2-1). Expected values are read from that file by hand."""

from __future__ import annotations

import pytest

from mcdla.hw.nccl import nccl_tuning, tree_correction
from mcdla.hw.network import Ring, channel_id
from mcdla.sim import algorithms  # noqa: F401  (registers the NCCL algorithms)
from mcdla.sim.collectives import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork

MiB = 2**20


@pytest.mark.parametrize("version, protocol, size, factor", [
    ("2.26", "Simple", MiB, 0.5),  # log2i(2^20 / 64) = 14: Simple's 15th column
    ("2.26", "LL128", MiB, 0.6),
    ("2.26", "LL", MiB, 0.5),
    ("2.26", "LL128", 64 * MiB, 0.9),  # column 20
    ("2.26", "Simple", 256 * MiB, 0.9),  # column 22, the last
    ("2.26", "Simple", 512 * MiB, 1.0),  # past the table
    ("2.7", "LL128", 512 * 1024, 0.5),  # column 13: 2.7's LL128 row differs there (2.18: .6)
    ("2.7", "Simple", 256 * MiB, 1.0),  # 2.7's table stops at column 21 (128 MiB)
    ("2.18", "Simple", 8, 1.0),  # under 64 B: none
])
def test_the_trees_correction_by_size(version, protocol, size, factor):
    assert tree_correction(nccl_tuning(version, 9.0).tree_correction, protocol, size) == factor


def _cluster(nodes):
    from mcdla.hw.topology import load_topology

    return load_topology("dgx_h100_4node", [("generator.nodes", nodes)])


def _simulated(algorithm, size, rings, caps):
    env = CountingEnvironment()
    process = algorithm.start(env, FlowNetwork(env, caps), rings, "all_reduce", size)
    env.run()
    return process.value.time_s


def test_a_medium_tree_all_reduce_takes_its_data_time_over_the_correction():
    """1 MiB under Simple across 2 DGX H100 (2.26): its flows move at the links' rates,
    then the tree takes as long again (correction 0.5); the closed form agrees; at 1 GiB
    (past the table) nothing changes."""
    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    tree = COLLECTIVES.get("nccl_tree")()
    tree.nccl = nccl_tuning("2.26", 9.0)
    links = COLLECTIVES.get("nccl_tree")()
    links.nccl, links.corrected = tree.nccl, False  # the links' time alone
    fixed = tree.fixed_s("all_reduce", rings)
    for size, factor in ((MiB, 0.5), (2**30, 1.0)):
        plain = _simulated(links, size, rings, caps)
        corrected = _simulated(tree, size, rings, caps)
        assert corrected - fixed == pytest.approx((plain - fixed) / factor, rel=1e-9)
        assert tree.time_s("all_reduce", size, rings, caps) == pytest.approx(corrected, rel=1e-6)


def test_nvls_tree_is_not_corrected_on_hopper():
    nvls_tree = COLLECTIVES.get("nvls_tree")()
    nvls_tree.nccl = nccl_tuning("2.26", 9.0)
    assert nvls_tree.correction("all_reduce", MiB) == 1.0


def test_the_tuner_weighs_the_corrected_tree():
    """1 MiB across 2 DGX H100 (2.26): NCCL's tree under LL128 at 0.6 of its bandwidth
    loses to NVLS-tree, which NCCL does not correct on Hopper (uncorrected, the LL128 tree
    was the fastest)."""
    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    nccl = COLLECTIVES.get("nccl")()
    nccl.nccl = nccl_tuning("2.26", 9.0)
    picked, _ = nccl.tune("all_reduce", MiB, rings, caps)
    assert picked.name == "nvls_tree"


def _rings_across(n_rings, ranks=4):
    """``n_rings`` parallel rings of ``ranks`` ranks, half on each of 2 machines."""
    names = tuple(f"D{i}" for i in range(ranks))
    rings, caps = [], {}
    for k in range(n_rings):
        channels = tuple(channel_id(names[i], names[(i + 1) % ranks], k) for i in range(ranks))
        rings.append(Ring(name=f"r{k}", ranks=names, segments=tuple((c,) for c in channels),
                          latency_s=(0.0,) * ranks, node=tuple("A" if i < ranks // 2 else "B" for i in range(ranks))))
        caps.update({c: 50e9 for c in channels})
    return tuple(rings), caps


@pytest.mark.parametrize("version, cc, size, factor", [
    ("2.26", 9.0, 512, 1.4),  # 512 / (2 channels x 4 ranks) = 64 B a channel and rank: reached
    ("2.26", 9.0, 511, 1.0),
    ("2.18", 7.0, 512, 1.9),  # below compute capability 8.0
    ("2.7", 9.0, 4 / 16 * 65536, 1.9),  # 2.7: nRanks / 16 x 64 KiB
    ("2.7", 9.0, 4 / 16 * 65536 - 1, 1.0),
])
def test_the_plateau_of_a_simple_ring_all_reduce_across_machines(version, cc, size, factor):
    """Every latency of the ring (base and per step, NVLink and network) times the
    factor; the host's launch is not NCCL's model's and stays."""
    rings, caps = _rings_across(2)
    nccl = COLLECTIVES.get("nccl_ring")(launch_s=5e-6)
    nccl.nccl = tuning = nccl_tuning(version, cc)
    simple = tuning.protocols["Simple"]
    costs = nccl.protocol_costs("Simple", "all_reduce", rings, caps, size)
    assert costs.fixed_s == pytest.approx(simple.base_latency_s * factor + 5e-6, rel=1e-12)
    assert costs.step_latency_s == pytest.approx(tuning.ring_hop_latency_s(simple, True) * factor, rel=1e-12)
    assert costs.net_step_latency_s == pytest.approx(simple.net_hop_latency_s * factor, rel=1e-12)


def test_no_plateau_on_one_machine_or_for_other_protocols_and_ops():
    rings, caps = _rings_across(2)
    one_machine = tuple(Ring(name=r.name, ranks=r.ranks, segments=r.segments, latency_s=r.latency_s) for r in rings)
    nccl = COLLECTIVES.get("nccl_ring")()
    nccl.nccl = tuning = nccl_tuning("2.26", 9.0)
    big = 2.0**30
    assert nccl.protocol_costs("Simple", "all_reduce", one_machine, caps, big).fixed_s == \
        tuning.protocols["Simple"].base_latency_s
    assert nccl.protocol_costs("LL128", "all_reduce", rings, caps, big).fixed_s == \
        tuning.protocols["LL128"].base_latency_s
    assert nccl.protocol_costs("Simple", "all_gather", rings, caps, big).fixed_s == \
        tuning.protocols["Simple"].base_latency_s
