"""Property-based tests of the flow network and the ring collectives (hypothesis).

Random small networks (resources with random capacities), random flow sets (paths,
sizes, start times, latencies): what must hold for any of them. Then random rings
and messages: the simulated collective on idle rings equals the closed form of
:mod:`mcdla.hw.collective_model`. The budget is kept small so the file runs in
seconds.
"""

from __future__ import annotations

import math

import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcdla.hw.collective_model import collective_time_s
from mcdla.sim.collectives import RingAlgorithm, ring_of_devices, run_collective
from mcdla.sim.flownet import CAPACITY_SLACK, FlowNetwork

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REL = 1e-6


@st.composite
def networks(draw):
    """Resources with capacities and flows: (capacities, [(start, size, latency, path)])."""
    n_res = draw(st.integers(1, 6))
    capacities = {f"r{i}": draw(st.floats(1e3, 1e6)) for i in range(n_res)}
    names = list(capacities)
    flows = []
    for _ in range(draw(st.integers(1, 8))):
        path = draw(st.lists(st.sampled_from(names), min_size=1, max_size=n_res, unique=True))
        start = draw(st.sampled_from([0.0, 0.0, 0.5, 1.0, draw(st.floats(0.0, 3.0))]))
        size = draw(st.sampled_from([0.0, draw(st.floats(1.0, 1e6))]))
        latency = draw(st.sampled_from([0.0, draw(st.floats(0.0, 0.5))]))
        flows.append((start, size, latency, tuple(path)))
    return capacities, flows


def simulate_flows(capacities, flows):
    """Runs the flows; returns (net, finish time per flow, rate snapshots)."""
    env = simpy.Environment()
    snapshots = []  # (time, {flow: rate}) after every rate computation

    net = FlowNetwork(env, capacities, record_timeline=True,
                      on_rates=lambda now, changed: snapshots.append(
                          (now, {f.id: f.rate_Bps for f in net._flows.values()},
                           {f.id: f.path for f in net._flows.values()})))
    finish = {}

    def one(i, start, size, latency, path):
        yield env.timeout(start)
        yield net.transfer(size, path, latency, tag=str(i))
        finish[i] = env.now

    for i, flow in enumerate(flows):
        env.process(one(i, *flow))
    env.run()
    return net, finish, snapshots


@SETTINGS
@given(networks())
def test_bytes_are_conserved(case):
    capacities, flows = case
    net, finish, _ = simulate_flows(capacities, flows)
    stats = net.stats()
    assert stats.flows_started == stats.flows_finished == len(flows) == len(finish)
    assert math.isclose(stats.bytes_sent, stats.bytes_delivered, rel_tol=1e-9, abs_tol=1e-6)
    # What each resource carried is the bytes of the flows that crossed it.
    for resource in capacities:
        expected = sum(size for _, size, _, path in flows if resource in path)
        assert math.isclose(stats.bytes_by_resource.get(resource, 0.0), expected, rel_tol=1e-6, abs_tol=1e-3)


@SETTINGS
@given(networks())
def test_no_resource_above_capacity_at_any_instant(case):
    capacities, flows = case
    net, _, _ = simulate_flows(capacities, flows)
    assert net.overload is None
    for resource, series in net.timeline.items():
        for _time_s, load in series:
            assert load <= capacities[resource] * (1 + CAPACITY_SLACK)
        assert series[-1][1] == 0.0  # idle at the end


@SETTINGS
@given(networks())
def test_no_flow_beats_its_idle_path(case):
    capacities, flows = case
    _, finish, _ = simulate_flows(capacities, flows)
    for i, (start, size, latency, path) in enumerate(flows):
        bound = start + latency + size / min(capacities[r] for r in path)
        assert finish[i] >= bound * (1 - 1e-9) - 1e-12


@SETTINGS
@given(networks())
def test_rates_are_max_min_fair(case):
    """Each flow has a bottleneck: a saturated resource on its path where its rate is the largest."""
    capacities, flows = case
    _, _, snapshots = simulate_flows(capacities, flows)
    for _now, rates, paths in snapshots:
        load = {}
        for fid, rate in rates.items():
            for r in paths[fid]:
                load[r] = load.get(r, 0.0) + rate
        for fid, rate in rates.items():
            bottlenecks = [
                r for r in paths[fid]
                if load[r] >= capacities[r] * (1 - 1e-9)
                and all(rates[g] <= rate * (1 + 1e-9) for g in rates if r in paths[g])
            ]
            assert bottlenecks, f"flow {fid} at {rate} has no bottleneck on {paths[fid]}"


@settings(max_examples=50, deadline=None)
@given(
    op=st.sampled_from(RingAlgorithm.ops),  # all but all_to_allv, which the ring refuses
    ranks=st.integers(2, 12),
    size=st.floats(1e3, 1e9),
    bw=st.floats(1e9, 1e11),
    latency=st.sampled_from([0.0, 1e-7, 1e-6, 5e-6]),
)
def test_collectives_match_the_closed_form_on_idle_rings(op, ranks, size, bw, latency):
    rings, caps = ring_of_devices(ranks, bw, latency)
    chunk = 4e3
    run = run_collective(rings, caps, op, size, chunk_bytes=chunk)
    expected = collective_time_s(op, size, ranks, bw * len(rings), latency, rings=len(rings),
                                 chunk_bytes=min(chunk, size / len(rings)))
    assert math.isclose(run.record.time_s, expected, rel_tol=REL)
    steps = ranks - 1 if op in ("broadcast", "all_gather", "reduce_scatter") else 2 * (ranks - 1)
    if op == "all_to_all":  # each of p ranks sends share/p k hops for k = 1..p-1: (1+...+(p-1)) shares in all
        steps = sum(range(1, ranks))
    for share, sent in zip(run.record.bytes_per_ring, run.record.bytes_sent_per_ring):
        assert math.isclose(sent, steps * share, rel_tol=1e-12)
