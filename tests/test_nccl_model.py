"""NCCL's cost model beyond one machine (issue 24): per-hop latencies by the hop's
hardware, the LL128 per-channel cap, and the tuner's choices. Expected values are
NCCL's own tuning formulas (src/graph/tuning.cc) evaluated by hand, not mcdla's code."""

from __future__ import annotations

import pytest

from mcdla.hw.network import Ring, channel_id
from mcdla.sim.collectives import COLLECTIVES, run_collective


def _two_machine_ring(latency_s=0.0, bw_Bps=50e9):
    """One directed ring of 4 ranks on 2 machines (D0, D1 | D2, D3): segments 1 and 3
    leave their machine. Link latencies ``latency_s`` (below NCCL's hop latencies)."""
    names = ("D0", "D1", "D2", "D3")
    channels = tuple(channel_id(names[i], names[(i + 1) % 4], 0) for i in range(4))
    ring = Ring(name="r", ranks=names, segments=tuple((c,) for c in channels),
                latency_s=(latency_s,) * 4, node=("A", "A", "B", "B"))
    return ring, {c: bw_Bps for c in channels}


def test_a_ring_across_machines_pays_network_latency_only_on_its_network_steps():
    """1 byte, LL: baseLat 3.6 us + (nsteps - nInterSteps) x 0.47 us + nInterSteps x 2.7 us,
    nsteps = 2(p-1) = 6, nInterSteps = 2(nNodes-1) = 2 (tuning.cc v2.7): 12.88 us, where
    charging every step the slowest hop would give 3.6 + 6 x 2.7 = 19.8 us."""
    ring, caps = _two_machine_ring()
    run = run_collective((ring,), caps, "all_reduce", 1.0, algorithm="nccl")
    assert run.record.protocol == "LL"
    assert run.record.time_s == pytest.approx(3.6e-6 + 4 * 0.47e-6 + 2 * 2.7e-6, rel=1e-3)


def test_a_link_slower_than_nccls_hop_keeps_its_own_latency():
    ring, caps = _two_machine_ring(latency_s=5e-6)  # every hop 5 us: above 0.47 and 2.7
    run = run_collective((ring,), caps, "all_reduce", 1.0, algorithm="nccl")
    assert run.record.time_s == pytest.approx(3.6e-6 + 6 * 5e-6, rel=1e-3)


def test_within_one_machine_every_step_is_an_nvlink_step():
    ring, caps = _two_machine_ring()
    one_machine = Ring(name="r", ranks=ring.ranks, segments=ring.segments, latency_s=ring.latency_s)
    run = run_collective((one_machine,), caps, "all_reduce", 1.0, algorithm="nccl")
    assert run.record.time_s == pytest.approx(3.6e-6 + 6 * 0.47e-6, rel=1e-3)


def test_the_paper_ring_still_charges_every_step_its_slowest_hop():
    """The paper's ideal ring keeps its alpha-beta form (the reproduction's numbers)."""
    names = ("D0", "D1", "D2", "D3")
    channels = tuple(channel_id(names[i], names[(i + 1) % 4], 0) for i in range(4))
    ring = Ring(name="r", ranks=names, segments=tuple((c,) for c in channels),
                latency_s=(1e-6, 1e-6, 4e-6, 1e-6), node=("A", "A", "B", "B"))
    run = run_collective((ring,), {c: 50e9 for c in channels}, "all_reduce", 1.0, algorithm="ring")
    assert run.record.time_s == pytest.approx(6 * 4e-6, rel=1e-3)


def test_ll128s_per_channel_cap_makes_a_4_mib_all_reduce_switch_to_simple():
    """Issue 22. On a DGX-1V's 6 NVLink rings LL128 would stream at 0.92 x 24.2 GB/s
    per ring; NCCL caps it at 16.7 GB/s per channel for all-reduce (ll128MaxBwPerCh),
    so at 4 MiB Simple is already faster, and an LL128 all-reduce never exceeds
    6 x 16.7 GB/s of ring bandwidth: busbw = algbw x 2(p-1)/p <= 100.2 GB/s."""
    from mcdla.hw.collective_model import busbw_Bps
    from mcdla.hw.topology import load_topology

    topo = load_topology("dgx1v")
    nccl = COLLECTIVES.get("nccl")()  # no NVLS on a DGX-1V: the ring's protocols
    assert nccl.costs_for("all_reduce", 4 * 2**20, topo.rings, topo.capacities()).protocol == "Simple"
    ll128 = nccl.protocol_costs("LL128", "all_reduce", topo.rings, topo.capacities())
    t = nccl.costed_time_s(ll128, "all_reduce", 2**30, topo.rings, topo.capacities(), 4e3, None)
    assert busbw_Bps("all_reduce", 2**30, t, 8) <= 6 * 16.7e9
    assert busbw_Bps("all_reduce", 2**30, t, 8) > 0.95 * 6 * 16.7e9  # the cap binds, nothing else


@pytest.mark.parametrize("topology", ["dgx1v", "dgx_a100", "dgx_h100"])
@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter", "broadcast"])
@pytest.mark.parametrize("size", [1e3, 4e6, 1e9])
def test_nccl_costs_at_least_the_ideal_ring_and_its_protocols_base_latency(topology, op, size):
    """Checked against the paper's ring, not against NCCL's own closed form: a library
    adds costs to the same rings (the picked protocol's base latency at least), and takes
    at most the ring's time slowed by the protocol's bandwidth fraction and flag bytes,
    plus its base latency and a network hop latency (9.6 us) per step. (One machine: across
    machines NCCL's summed hop latencies are below the paper's slowest-hop-every-step.)"""
    from mcdla.hw.nccl import PROTOCOLS
    from mcdla.hw.topology import load_topology

    topo = load_topology(topology)
    rings, caps = topo.rings, topo.capacities()
    ideal = COLLECTIVES.get("ring")().time_s(op, size, rings, caps)
    nccl = COLLECTIVES.get("nccl_ring")()
    proto = PROTOCOLS[nccl.costs_for(op, size, rings, caps).protocol]
    t = nccl.time_s(op, size, rings, caps)
    assert t >= ideal + proto.base_latency_s
    slowest = proto.wire_factor / min(proto.fraction(op), 0.92 if proto.max_channel_Bps else 1.0)
    if proto.max_channel_Bps:  # the per-channel cap may bind below the fraction
        ring_Bps = min(min(caps[c] for c in r.channels) for r in rings)
        slowest = max(slowest, proto.wire_factor * ring_Bps / proto.max_channel_Bps[op])
    steps = 2 * (rings[0].size - 1)
    assert t <= ideal * slowest + proto.base_latency_s + steps * 9.6e-6


def test_nccl_picks_nvls_on_nvswitch_gen3_from_a_few_mib_and_the_ring_below():
    """DGX H100 (NVSwitch gen3 reduces): NVLS's 25 us latency loses to the ring's LL for
    small messages; its halved NVLink traffic wins for large ones. DGX A100's NVSwitch
    gen2 has no reduction engine: the ring at every size."""
    from mcdla.hw.topology import load_topology

    h100 = load_topology("dgx_h100")
    small = run_collective(h100.rings, h100.capacities(), "all_reduce", 8.0, algorithm="nccl").record
    large = run_collective(h100.rings, h100.capacities(), "all_reduce", 2.0**30, algorithm="nccl").record
    assert small.protocol == "LL" and small.algorithm == ""
    assert large.algorithm == "nvls"
    a100 = load_topology("dgx_a100")
    assert run_collective(a100.rings, a100.capacities(), "all_reduce", 2.0**30,
                          algorithm="nccl").record.protocol == "Simple"


def test_nvls_reaches_nccls_fraction_of_the_in_switch_rate():
    """1 GiB all-reduce on DGX H100: NVLS's data rate is nvlsEfficiency 0.85 x 15/16
    channels of the in-switch algorithm's link-limited rate (tuning.cc, nvls.cc), its data
    time lengthened by the chunk pipeline's fill (64 loops of 16 channels x 8 heads x 128
    KiB through 3 stages: 66 loop times), plus its 25 us latency; broadcast is never NVLS
    (NCCL runs it on the ring)."""
    from mcdla.hw.topology import load_topology

    topo = load_topology("dgx_h100")
    rings, caps = topo.rings, topo.capacities()
    size = 2.0**30
    ideal = COLLECTIVES.get("in_switch")().time_s("all_reduce", size, rings, caps)
    nvls = COLLECTIVES.get("nvls")().time_s("all_reduce", size, rings, caps)
    assert nvls - 25e-6 == pytest.approx(ideal / (0.85 * 15 / 16) * 66 / 64, rel=2e-3)
    nccl = COLLECTIVES.get("nccl")()
    assert nccl.time_s("all_reduce", size, rings, caps) == nvls
    assert nccl.time_s("broadcast", size, rings, caps) == COLLECTIVES.get("nccl_ring")().time_s(
        "broadcast", size, rings, caps)


def _cluster(nodes):
    from mcdla.hw.topology import load_topology

    return load_topology("dgx_h100_4node", [("generator.nodes", nodes)])


def test_nccl_pipelines_the_hierarchical_phases_across_machines():
    """2 DGX H100: the hierarchical algorithm runs reduce-scatter, the cross-machine
    all-reduce and the all-gather back to back; NCCL's tree runs them at once on
    successive chunks, so a 1 GiB all-reduce takes well under the sum (issue 24: the
    sequential phases capped the bus bandwidth near 259 GB/s)."""
    from mcdla.hw.collective_model import busbw_Bps
    from mcdla.hw.nccl import tree_latency_s

    topo = _cluster(2)
    rings, caps = topo.rings, topo.capacities()
    size = 2.0**30
    sequential = COLLECTIVES.get("hierarchical")().time_s("all_reduce", size, rings, caps)
    pipelined = COLLECTIVES.get("nccl_tree")().time_s("all_reduce", size, rings, caps)
    assert pipelined - tree_latency_s(8, 2) < 0.7 * sequential
    assert busbw_Bps("all_reduce", size, sequential, 16) < 270e9
    nccl = run_collective(rings, caps, "all_reduce", size, algorithm="nccl").record
    assert nccl.algorithm == "nvls_tree"  # NVLS inside each machine beats the direct exchange
    assert busbw_Bps("all_reduce", size, nccl.time_s, 16) > 400e9


def test_the_tree_across_four_machines_loads_a_nic_with_four_half_pieces():
    """NCCL's double binary tree over 4 machines (ncclGetDtree): 0 <- 2 <- {1, 3} and its
    mirror 3 <- 1 <- {0, 2}; machine 2 (and 1) is inner in one tree and a leaf in the
    other: 4 edges, each a half piece each way, where the cross-machine ring moves
    2 (d-1)/d = 1.5 pieces: the tree's NICs carry 2/1.5 of the ring's bytes."""
    from mcdla.sim.fabric_collectives import _trees

    assert _trees(4) == ((None, 2, 0, 2), (1, 3, 1, None))
    topo = _cluster(4)
    tree = COLLECTIVES.get("nccl_tree")().channel_bytes("all_reduce", 1e9, topo.rings)
    ring = COLLECTIVES.get("hierarchical")().channel_bytes("all_reduce", 1e9, topo.rings)
    nics = [c for c in topo.channels if any(c in r.exit_out for r in topo.rings)]
    assert nics
    assert max(tree[c] for c in nics) == pytest.approx(max(ring[c] for c in nics) * 2 / 1.5, rel=1e-9)


@pytest.mark.parametrize("name", ["nccl_tree", "nvls_tree"])
def test_the_pipelined_trees_closed_form_holds_when_reduction_units_bind(name):
    """Intra-machine and cross-machine flows of unequal bytes share each rank's
    reduction unit in the one pipelined phase: the closed form re-solves the rates as
    flows end, so it still equals the simulation."""
    from mcdla.sim.environment import CountingEnvironment
    from mcdla.sim.flownet import FlowNetwork

    topo = _cluster(2)
    algorithm = COLLECTIVES.get(name)()
    env = CountingEnvironment()
    net = FlowNetwork(env, topo.capacities())
    process = algorithm.start(env, net, topo.rings, "all_reduce", 64e6, reduce_Bps=2e9)
    env.run()
    closed = algorithm.time_s("all_reduce", 64e6, topo.rings, topo.capacities(), reduce_Bps=2e9)
    assert process.value.time_s == pytest.approx(closed, rel=1e-9)
    assert closed > algorithm.time_s("all_reduce", 64e6, topo.rings, topo.capacities())


def test_rank_symmetry_is_off_where_nccls_tuner_may_pick_a_tree():
    """A tree singles out its roots, so where NCCL's tuner may run one (across machines)
    every device is simulated; the hierarchical algorithm keeps its classes."""
    from mcdla.run import simulate

    sets = [("generator.nodes", 2), ("training.virtualization", False)]
    nccl = simulate("dgx_h100_4node", "bw_aware", "alexnet", "data", 128, [*sets, ("execution.collective", "nccl")])
    ideal = simulate("dgx_h100_4node", "bw_aware", "alexnet", "data", 128, sets)
    assert nccl["rank_classes"] == nccl["devices"] == 16
    assert ideal["rank_classes"] < 16
