"""The fluid flow network (mcdla.sim.flownet): the laws of docs/model.md, "Network"."""

from __future__ import annotations

import pytest
import simpy

from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.flowpaths import PathClasses


def _start(env, net, log, name, size, path, latency=0.0, delay=0.0):
    """A process that waits ``delay``, sends one flow and logs (name, finish time)."""

    def proc():
        if delay:
            yield env.timeout(delay)
        yield net.transfer(size, path, latency, tag=name)
        log.append((name, env.now))

    return env.process(proc())


def test_single_flow_takes_latency_plus_size_over_bottleneck():
    env = simpy.Environment()
    net = FlowNetwork(env, {"a": 25e9, "b": 12e9, "c": 50e9})
    log = []
    _start(env, net, log, "f", 3e6, ["a", "b", "c"], latency=1.5e-6)
    env.run()
    assert log == [("f", pytest.approx(1.5e-6 + 3e6 / 12e9, rel=1e-12))]


def test_unconstrained_resources_are_ignored():
    env = simpy.Environment()
    net = FlowNetwork(env, {"a": 10.0})
    log = []
    _start(env, net, log, "f", 100.0, ["x", "a", "y"])
    _start(env, net, log, "free", 100.0, ["x"], latency=2.0)
    env.run()
    assert dict(log) == {"f": pytest.approx(10.0), "free": pytest.approx(2.0)}


def test_zero_size_flow_completes_after_its_latency():
    env = simpy.Environment()
    net = FlowNetwork(env, {"a": 10.0})
    log = []
    _start(env, net, log, "empty", 0.0, ["a"], latency=3.0)
    env.run()
    assert log == [("empty", 3.0)]
    assert net.stats().flows_finished == 1


@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_flows_on_one_bottleneck_each_get_one_kth(k):
    env = simpy.Environment()
    net = FlowNetwork(env, {"link": 100.0}, record_timeline=True)
    log = []
    for i in range(k):
        _start(env, net, log, i, 50.0, ["link"])
    env.run()
    assert [t for _, t in log] == [pytest.approx(50.0 * k / 100.0)] * k
    assert net.timeline["link"][0] == (0.0, pytest.approx(100.0))


def test_parking_lot_rates():
    # long crosses l1 and l2; s1 is on l1 (cap 1), s2 on l2 (cap 3).
    # Max-min: long = s1 = 1/2, s2 = 5/2. Sizes make long and s1 finish at 2, s2 at 2.
    env = simpy.Environment()
    net = FlowNetwork(env, {"l1": 1.0, "l2": 3.0})
    log = []
    _start(env, net, log, "long", 1.0, ["l1", "l2"])
    _start(env, net, log, "s1", 1.0, ["l1"])
    _start(env, net, log, "s2", 5.0, ["l2"])
    env.run()
    assert dict(log) == {"long": pytest.approx(2.0), "s1": pytest.approx(2.0), "s2": pytest.approx(2.0)}


def test_flow_joining_midway_delays_the_other_by_hand_computation():
    # x: 100 B alone on a (10 B/s) from t=0. y: 30 B joins at t=4.
    # 0..4: x alone at 10 -> 60 B left. From 4: both at 5 B/s; y done at 4 + 30/5 = 10,
    # x has 60 - 30 = 30 B left, alone again at 10 B/s -> done at 13.
    env = simpy.Environment()
    net = FlowNetwork(env, {"a": 10.0})
    log = []
    _start(env, net, log, "x", 100.0, ["a"])
    _start(env, net, log, "y", 30.0, ["a"], delay=4.0)
    env.run()
    assert log == [("y", pytest.approx(10.0)), ("x", pytest.approx(13.0))]


def test_latency_is_a_delay_before_sharing():
    # y's latency of 4 keeps it off the link until t=4: same numbers as above.
    env = simpy.Environment()
    net = FlowNetwork(env, {"a": 10.0})
    log = []
    _start(env, net, log, "x", 100.0, ["a"])
    _start(env, net, log, "y", 30.0, ["a"], latency=4.0)
    env.run()
    assert log == [("y", pytest.approx(10.0)), ("x", pytest.approx(13.0))]


def _random_workload(env, net, seed, flows=60):
    import random

    rng = random.Random(seed)
    resources = list(net.capacities_Bps) + ["free"]
    paths = []
    for i in range(flows):
        path = rng.sample(resources, rng.randint(1, 4))
        size = rng.choice([0.0, rng.uniform(1, 1e4)])
        paths.append((path, size))
        _start(env, net, [], i, size, path, latency=rng.uniform(0, 5), delay=rng.uniform(0, 50))
    return paths


def test_bytes_are_conserved():
    env = simpy.Environment()
    caps = {f"r{i}": float(100 + 37 * i) for i in range(8)}
    net = FlowNetwork(env, caps)
    flows = _random_workload(env, net, seed=1)
    env.run()
    stats = net.stats()
    assert stats.flows_started == stats.flows_finished == len(flows)
    assert stats.bytes_delivered == pytest.approx(stats.bytes_sent)
    assert stats.bytes_sent == pytest.approx(sum(size for _, size in flows))
    for resource in caps:
        expected = sum(size for path, size in flows if resource in path)
        assert stats.bytes_by_resource.get(resource, 0.0) == pytest.approx(expected, rel=1e-9)


def test_no_resource_ever_exceeds_capacity():
    env = simpy.Environment()
    caps = {f"r{i}": float(100 + 37 * i) for i in range(8)}
    seen = []
    net = FlowNetwork(env, caps, on_rates=lambda now, loads: seen.append((now, dict(loads))), record_timeline=True)
    _random_workload(env, net, seed=2)
    env.run()
    assert seen
    for resource, points in net.timeline.items():
        assert points[-1][1] == 0.0  # idle at the end
        for _, load in points:
            assert load <= caps[resource] * (1 + 1e-9)
        # busy time == time with a positive load, from the piecewise-constant timeline
        busy = sum(t1 - t0 for (t0, v), (t1, _) in zip(points, points[1:]) if v > 0)
        assert net.stats().busy_s_by_resource[resource] == pytest.approx(busy)


def test_events_scale_with_flows_not_bytes():
    def run(size):
        env = simpy.Environment()
        net = FlowNetwork(env, {"a": 1.0, "b": 2.0})
        for i in range(20):
            _start(env, net, [], i, size * (i + 1), ["a", "b"][: 1 + i % 2], delay=float(i))
        env.run()
        return net.stats().rate_computations

    # at most one computation per join and one per leave, however many bytes move
    assert run(1.0) <= 40
    assert run(1e12) <= 40


def test_same_instant_joins_share_one_rate_computation():
    env = simpy.Environment()
    net = FlowNetwork(env, {"a": 10.0})
    for i in range(10):
        net.transfer(10.0, ["a"], tag=i)
    env.run()
    # one computation when all join, one when all leave together
    assert net.stats().rate_computations == 2
    assert env.now == pytest.approx(10.0)


def test_a_change_only_touches_its_connected_flows():
    # Two independent links: a flow joining on b must not re-report a's load.
    env = simpy.Environment()
    reports = []
    net = FlowNetwork(env, {"a": 10.0, "b": 10.0}, on_rates=lambda now, loads: reports.append((now, dict(loads))))
    log = []
    _start(env, net, log, "x", 100.0, ["a"])
    _start(env, net, log, "y", 10.0, ["b"], delay=1.0)
    env.run()
    assert reports == [(0.0, {"a": 10.0}), (1.0, {"b": 10.0}), (2.0, {"b": 0.0}), (10.0, {"a": 0.0})]
    assert dict(log) == {"x": pytest.approx(10.0), "y": pytest.approx(2.0)}


def test_runs_are_deterministic():
    def run():
        env = simpy.Environment()
        caps = {f"r{i}": float(100 + 37 * i) for i in range(8)}
        net = FlowNetwork(env, caps, record_timeline=True)
        _random_workload(env, net, seed=3)
        env.run()
        return env.now, net.timeline

    assert run() == run()


def test_bad_arguments():
    env = simpy.Environment()
    with pytest.raises(ValueError, match="must be > 0"):
        FlowNetwork(env, {"a": 0.0})
    net = FlowNetwork(env, {"a": 1.0})
    with pytest.raises(ValueError, match="repeat a resource"):
        net.transfer(1.0, ["a", "a"])
    with pytest.raises(ValueError, match="size_bytes"):
        net.transfer(-1.0, ["a"])
    with pytest.raises(ValueError, match="latency_s"):
        net.transfer(1.0, ["a"], latency_s=-1.0)
    with pytest.raises(ValueError, match="already has capacity"):
        net.add_resource("a", 2.0)


@pytest.mark.parametrize("topology, parallel", [("ring", "data"), ("dc", "model"), ("hc", "data")])
def test_array_and_dict_accounting_give_identical_results(monkeypatch, topology, parallel):
    """Large networks keep loads in numpy arrays, small ones in dicts: the same floats."""
    from mcdla.run import simulate
    from mcdla.sim import flownet

    def run():
        result = simulate(topology, "bw_aware", "resnet34", parallel, 64)
        result.pop("wall_s")
        return result

    small = run()
    monkeypatch.setattr(flownet, "VECTOR_RESOURCES", 0)
    assert run() == small


def test_array_accounting_keeps_the_same_timeline(monkeypatch):
    from mcdla.sim import flownet

    def run():
        env = simpy.Environment()
        caps = {f"r{i}": float(100 + 37 * i) for i in range(8)}
        reports = []
        net = FlowNetwork(env, caps, record_timeline=True, on_rates=lambda now, loads: reports.append(dict(loads)))
        _random_workload(env, net, seed=5)
        env.run()
        stats = net.stats()
        return env.now, net.timeline, reports, stats.bytes_by_resource, stats.busy_s_by_resource

    small = run()
    monkeypatch.setattr(flownet, "VECTOR_RESOURCES", 0)
    assert run() == small


def test_collection_paused_restores_the_collector():
    import gc

    from mcdla.collector import collection_paused

    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
        junk = [[i] for i in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() == 0 and junk
    kept = [object() for _ in range(10)]
    gc.freeze()  # a caller's frozen objects stay frozen
    try:
        with collection_paused():
            pass
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_a_long_path_known_by_identity_sees_a_resource_added_later():
    """A ring's phase path (longer than 64 resources) is looked up by identity, not
    hashed; adding a constrained resource on it must still slow its next flow (the
    identity memo is dropped with the path cache): fails if the memo outlives it."""
    env = simpy.Environment()
    path = tuple(f"c{i}" for i in range(100)) + ("unit",)
    net = FlowNetwork(env, {f"c{i}": 10.0 for i in range(100)})
    log = []
    _start(env, net, log, "before", 10.0, path)
    env.run()
    net.add_resource("unit", 5.0)  # a reduction unit a collective adds on first use
    _start(env, net, log, "after", 10.0, path)
    env.run()
    assert log == [("before", pytest.approx(1.0)), ("after", pytest.approx(3.0))]


def test_resources_of_a_class_are_checked_alike():
    """The one loop every resource enters by (a network's own and those added later)
    refuses what add_resource refused one at a time."""
    env = simpy.Environment()
    with pytest.raises(ValueError, match="must be > 0"):
        FlowNetwork(env, {"a": 1.0, "b": float("nan")})
    with pytest.raises(ValueError, match="one class but differ"):
        FlowNetwork(env, {"a": 1.0, "b": 2.0}, classes={"a": "a", "b": "a"})
    net = FlowNetwork(env, {"a": 1.0, "b": 1.0, "free": float("inf")}, classes={"a": "a", "b": "a"})
    assert net.capacities_Bps == {"a": 1.0, "b": 1.0}
    units = ("u0", "u1")
    net.add_resources(units, 4.0)
    net.add_resources(units, 4.0)  # the same tuple again: nothing new
    with pytest.raises(ValueError, match="already has capacity"):
        net.add_resources(("u0",), 3.0)


def test_a_class_members_accounting_is_answered_from_its_first_not_listed():
    """With rank symmetry the accounting holds each class's first only and answers every
    member from it (flowstats.ByClass): two flows standing for 2 copies each over classes
    {a, b} and {c, d} load each member with one copy's 2 bytes, the unclassed e with both
    copies' 4; y is z's class's first but not listed as its own member, so absent."""
    env = simpy.Environment()
    capacities = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 2.0, "e": 1.0, "y": 4.0, "z": 4.0}
    net = FlowNetwork(env, capacities, classes={"a": "a", "b": "a", "c": "c", "d": "c", "z": "y"})
    net.transfer(2.0, ("a", "c", "e"), copies=2)
    net.transfer(4.0, ("y",))
    env.run()
    carried = net.stats().bytes_by_resource
    listed = {"a": 2.0, "b": 2.0, "c": 2.0, "d": 2.0, "e": 4.0, "z": 4.0}
    assert carried["b"] == carried.get("d") == 2.0 and carried.get("y") is None and "y" not in carried
    assert "b" in carried and "q" not in carried and carried.get("q", 0.0) == 0.0
    with pytest.raises(KeyError):
        carried["y"]  # noqa: B018
    assert carried.values_of(["b", "y", "e", "q"]) == [2.0, 0.0, 4.0, 0.0]
    assert list(carried.items()) == list(listed.items()) and carried == listed and len(carried) == 6


def test_a_long_path_that_begins_one_counted_before_loads_its_classes_alike(monkeypatch):
    """A ring's all-gather phase begins with its reduce-scatter phase's path (which adds the
    reduction units): counted from that one, less the rest (flowpaths.PathClasses), its
    flows load the same classes as when counted afresh."""
    n = 80  # a long path (> flowpaths.LONG_PATH)
    ring = tuple(f"c{i}" for i in range(n))
    units = tuple(f"u{i}" for i in range(n // 2)) + ("c0x",)  # c0x: a class the ring crosses too
    capacities = {**{c: 2.0 for c in ring}, **{u: 1.0 for u in units}, "c0x": 2.0}
    classes = {**{c: f"c{i % 2}" for i, c in enumerate(ring)}, **{u: "u0" for u in units[:-1]}, "c0x": "c0"}
    results = []
    for reuse in (True, False):
        if not reuse:
            monkeypatch.setattr(PathClasses, "_longer", lambda self, path: None)
        env = simpy.Environment()
        net = FlowNetwork(env, capacities, classes=classes)
        log = []
        for k, path in enumerate((ring + units, ring, ring[:70], ring + units)):
            _start(env, net, log, f"f{k}", 8.0, path, delay=k * 0.5)
        env.run()
        results.append((sorted(log), dict(net.stats().bytes_by_resource), net._pids))
        counted = [entry for same_first in net._classes._counted.values() for entry in same_first]
        assert len(counted) == (1 if reuse else 3)  # with reuse, only the first counted whole
    assert results[0] == results[1]
    assert results[0][1]["c5"] > 0 and results[0][1]["u3"] > 0 and len(results[0][2]) == 3


def test_the_arrays_are_chosen_by_the_resources_kept_not_by_the_classes_members():
    """A symmetric run's classes also list resources added later (each device's reduction
    unit, a class per device class): the network keeps a class's first for its members,
    and chooses arrays from VECTOR_RESOURCES of those on (issue 27: a 4,096-GPU run kept
    3,586 on dicts, its loads advanced resource by resource)."""
    from mcdla.sim import flownet

    n = 2 * flownet.VECTOR_RESOURCES
    caps = {f"r{i}": 100.0 for i in range(n)}
    classes = {f"r{i}": f"r{i - i % 2}" for i in range(n)}  # pairs: half of them kept
    units = {f"u{i}": "u0" for i in range(2 * n)}  # reduction units, one class, none a resource yet
    net = FlowNetwork(simpy.Environment(), caps, classes={**classes, **units})
    assert net._vector
    fewer = FlowNetwork(simpy.Environment(), dict(list(caps.items())[:n - 2]), classes={
        **dict(list(classes.items())[:n - 2]), **units})
    assert not fewer._vector  # one resource short of VECTOR_RESOURCES kept
