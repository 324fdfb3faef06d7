"""Rings across machines that share NICs unevenly (issue 24): a collective's bytes are
split over the rings in proportion to what each carries (mcdla.sim.collectives.
ring_fractions), so they end together, as NCCL's channels, spread evenly over the
NICs, do.

The hand figures come from the presets alone: an NDR NIC (``ib_400g``) carries 50 GB/s
a direction, an NVLink 4 link 25 GB/s x 0.822 = 20.55 GB/s (``nvlink4``). On two DGX
H100 the cluster's 18 snaking rings cross between the nodes over the rail NICs: ring r
leaves node 0 from GPU (r-1) mod 8 and node 1 from GPU r mod 8, so the NICs of GPUs 7 and
0 (node 0) and 0 and 1 (node 1) carry three rings each way and the other twelve two.
"""

from __future__ import annotations

import pytest

from mcdla.api import collective
from mcdla.hw.topology import load_topology
from mcdla.sim import algorithms  # noqa: F401  (registers every algorithm)
from mcdla.sim.collectives import COLLECTIVES, run_collective

NIC_Bps = 50e9  # ib_400g: 400 Gb/s a direction
NVLINK_Bps = 25e9 * 0.822  # nvlink4: one link, at NCCL's rate
SIZE = 8 * 2**30


@pytest.fixture(scope="module")
def two_nodes():
    return load_topology("dgx_h100_4node", [("generator.nodes", 2)])


def _nic(channel: str) -> bool:
    return channel.startswith("D") and ">SP" in channel  # a GPU's NIC into its rail switch


def _crowded(ring) -> bool:
    """Whether ``ring`` leaves a node over a NIC three rings share (by hand: above)."""
    gpus = {int(c.split(">")[0][1:]) for c in ring.channels if _nic(c)}
    return bool(gpus & {7, 8, 9, 0})  # node 0's GPUs 7 and 0; node 1's GPUs 8 and 9 (its 0 and 1)


def test_three_rings_share_four_nics_and_two_rings_the_other_twelve(two_nodes):
    per_nic: dict[str, int] = {}
    for ring in two_nodes.rings:
        for c in ring.channels:
            if _nic(c):
                per_nic[c] = per_nic.get(c, 0) + 1
    assert len(two_nodes.rings) == 18
    assert sorted(c for c, n in per_nic.items() if n == 3) == ["D0>SP0:0", "D7>SP7:0", "D8>SP0:0", "D9>SP1:0"]
    assert sorted(per_nic.values()) == [2] * 12 + [3] * 4
    assert sum(map(_crowded, two_nodes.rings)) == 6


def test_each_ring_carries_in_proportion_to_its_rate_and_all_end_together(two_nodes):
    run = run_collective(two_nodes.rings, two_nodes.capacities(), "all_reduce", SIZE)
    crowded = [_crowded(r) for r in two_nodes.rings]
    # By hand: a crowded ring gets a third of its NIC, the others a whole NVLink (a
    # half NIC, 25 GB/s, is more than the link's 20.55).
    rates = [NIC_Bps / 3 if c else NVLINK_Bps for c in crowded]
    for share, rate in zip(run.record.bytes_per_ring, rates):
        assert share == pytest.approx(SIZE * rate / sum(rates), rel=1e-12)
    p = 16
    bus_Bps = sum(rates)  # 6 x 16.67 + 12 x 20.55 = 346.6 GB/s, every ring at its rate
    assert bus_Bps == pytest.approx(346.6e9, rel=1e-4)
    # The paper's ring pays each of its 2(p-1) steps its slowest hop (a NIC's).
    step_s = max(r.max_latency_s for r in two_nodes.rings)
    assert step_s == pytest.approx(2 * 2e-6 + 200e-9, rel=1e-9)  # ib_400g both ways, a quantum2 hop
    ideal_s = 2 * (p - 1) * (step_s + SIZE / p / bus_Bps)
    assert run.record.time_s == pytest.approx(ideal_s, rel=1e-9)
    # The crowded NICs run at their line rate: 3 rings x 2(p-1)/p x their share each way.
    crowded_share = run.record.bytes_per_ring[crowded.index(True)]
    moving_s = run.record.time_s - 2 * (p - 1) * step_s
    assert 3 * 2 * (p - 1) / p * crowded_share / moving_s == pytest.approx(NIC_Bps, rel=1e-9)


def test_the_busbw_rises_from_the_even_splits_third_of_a_nic_per_ring(two_nodes):
    for nodes in (2, 4):
        result = collective(op="all_reduce", size=SIZE, topology="dgx_h100_4node", algorithm="ring",
                            set={"generator.nodes": nodes})
        even_Bps = 18 * NIC_Bps / 3  # every ring at the crowded NICs' third: 300 GB/s, as before
        assert even_Bps < result.busbw_Bps <= 6 * NIC_Bps / 3 + 12 * NVLINK_Bps
        # less the steps' latencies: 2(p-1) x 4.2 us of about 50 ms, under 1%
        assert result.busbw_Bps == pytest.approx(6 * NIC_Bps / 3 + 12 * NVLINK_Bps, rel=1e-2)
        # Still under the NICs' bound (8 x 50 GB/s): mcdla binds a ring to one NVLink.
        assert result.busbw_Bps < 8 * NIC_Bps


def test_the_step_bytes_follow_the_shares(two_nodes):
    ring = COLLECTIVES.get("ring")()
    caps = two_nodes.capacities()
    carried = ring.channel_bytes("all_reduce", SIZE, two_nodes.rings, caps, two_nodes.nic_ports)
    run = run_collective(two_nodes.rings, caps, "all_reduce", SIZE)
    nic = {c: b for c, b in carried.items() if _nic(c)}
    for r, share in zip(two_nodes.rings, run.record.bytes_per_ring):
        for c in r.channels:
            if _nic(c):  # every ring on a NIC carries its own share there
                assert nic[c] >= 2 * 15 / 16 * share * (1 - 1e-12)
    full = max(nic.values())
    assert sorted(c for c, b in nic.items() if b == pytest.approx(full, rel=1e-12)) == [
        "D0>SP0:0", "D7>SP7:0", "D8>SP0:0", "D9>SP1:0"]


@pytest.mark.parametrize("design", ["dgx_h100", "ring", "dc", "star"])
def test_rings_of_equal_rate_split_evenly_to_the_bit(design):
    topo = load_topology(design)
    run = run_collective(topo.rings, topo.capacities(), "all_reduce", SIZE)
    assert run.record.bytes_per_ring == tuple(SIZE / len(topo.rings) for _ in topo.rings)


def test_one_dgx_h100_keeps_its_eighteen_links():
    result = collective(op="all_reduce", size=SIZE, topology="dgx_h100", algorithm="ring")
    assert result.busbw_Bps == pytest.approx(18 * NVLINK_Bps, rel=2e-3)  # 369.9 GB/s


def test_a_symmetric_run_over_the_uneven_rings_equals_the_exact_run():
    from test_symmetry import both, differences

    symmetric, exact = both("dgx_h100_4node", "alexnet", batch=64,
                            sets=[("generator.nodes", 2), ("execution.collective", "ring")])
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] < exact["rank_classes"]
    # The gradients' bytes on a crowded NIC over an uncrowded one: three rings at a third
    # of the NIC against two at an NVLink each.
    ratio = exact["link_bytes"]["D0>SP0"] / exact["link_bytes"]["D2>SP2"]
    assert ratio == pytest.approx(NIC_Bps / (2 * NVLINK_Bps), rel=1e-9)


def test_rings_apart_and_alike_split_evenly_without_filling_and_others_by_max_min():
    # The one-pass shortcut (rings on disjoint links of one bottleneck share: even) and
    # max-min's progressive filling agree; where rings share a link or differ, the fill decides.
    from types import SimpleNamespace

    from mcdla.hw.maxmin import max_min_rates
    from mcdla.sim.ringsplit import _apart_and_alike, ring_fractions

    def ring(name, *channels):
        return SimpleNamespace(name=name, channels=channels)

    caps = {"a": 10.0, "b": 20.0, "c": 10.0, "d": 30.0, "s": 15.0}
    apart = [ring("r0", "a", "b"), ring("r1", "c", "d")]  # bottlenecks 10 and 10
    assert _apart_and_alike({r.name: r.channels for r in apart}, caps)
    assert ring_fractions(apart, caps) is None
    assert len(set(max_min_rates({r.name: r.channels for r in apart}, caps).values())) == 1
    twice = [ring("r0", "a", "a"), ring("r1", "c", "d")]  # crossing a twice: a share of 5
    assert not _apart_and_alike({r.name: r.channels for r in twice}, caps)
    assert ring_fractions(twice, caps) == pytest.approx((5 / 15, 10 / 15))
    shared = [ring("r0", "a", "s"), ring("r1", "c", "s"), ring("r2", "d")]  # s shared: 7.5 each
    assert not _apart_and_alike({r.name: r.channels for r in shared}, caps)
    assert ring_fractions(shared, caps) == pytest.approx((7.5 / 45, 7.5 / 45, 30 / 45))
    # A shared NIC port named by `also` makes rings on disjoint channels share.
    assert ring_fractions(apart, caps, also={"b": ("s",), "d": ("s",)}) is None  # 7.5 each: even
    assert ring_fractions([ring("r0", "a"), ring("r1", "d")], caps, also={"d": ("s",)}) == \
        pytest.approx((10 / 25, 15 / 25))
