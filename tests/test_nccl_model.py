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
