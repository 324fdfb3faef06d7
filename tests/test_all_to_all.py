"""All-to-all (issue 25): the bytes every link carries against hand counts, the
simulation against the closed forms, a skewed all-to-allv's slowest rank, the
algorithms that refuse it, and ``mcdla collective --op all_to_all``."""

from __future__ import annotations

import json

import pytest
import yaml
from test_fabric_collectives import TWO_LEVEL  # the two-level design those tests share

from mcdla.cli.main import main
from mcdla.errors import InputError
from mcdla.hw.collective_model import bus_factor, hot_rank_time_s
from mcdla.hw.topology import load_topology
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.collectives import ring_of_devices
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork

N = 8e6  # bytes per rank
LINK_BPS, HOP_S = 25e9, 1e-6
# nvswitch3 + nvlink4 as loaded: one link per device, 20.55 GB/s each way, 0.7 us a hop
SWITCH_BPS, SWITCH_HOP_S = 20.55e9, 0.7e-6


def _switch(tmp_path, devices):
    path = tmp_path / f"s{devices}.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"s{devices}", "description": f"{devices} devices on one NVSwitch, one link each",
        "device": "h100_sxm5", "fabric_switch": "nvswitch3", "links": {"nvlink": "nvlink4"},
        "generator": {"name": "switch", "devices": devices, "links_per_device": 1}}))
    return load_topology(str(path))


def _run(algorithm, rings, caps, op, size, root=0):
    env = CountingEnvironment()
    net = FlowNetwork(env, caps)
    process = algorithm.start(env, net, rings, op, size, root=root)
    env.run()
    return process.value, net.stats().bytes_by_resource


# p, bytes on every channel of a directed ring, time: rank i's pieces of N/2/p (each
# direction carries half) for i+1 .. i+p-1 cross 1 .. p-1 hops: p(p-1)/2 pieces per
# channel; step k pays k hops of latency.
RING_CASES = [(4, 6 * 1e6, 6 * HOP_S + 6e6 / LINK_BPS), (8, 28 * 0.5e6, 28 * HOP_S + 14e6 / LINK_BPS)]


@pytest.mark.parametrize("p, per_channel, time_s", RING_CASES)
def test_ring_pairwise_bytes_and_time_by_hand(p, per_channel, time_s):
    rings, caps = ring_of_devices(p, LINK_BPS, HOP_S)
    ring = COLLECTIVES.get("ring")()
    record, carried = _run(ring, rings, caps, "all_to_all", N)
    assert set(carried) == set(caps)
    for channel in caps:
        assert carried[channel] == pytest.approx(per_channel, rel=1e-12)
    assert ring.channel_bytes("all_to_all", N, rings) == pytest.approx({c: per_channel for c in caps}, rel=1e-12)
    assert record.time_s == pytest.approx(time_s, rel=1e-12)
    assert ring.time_s("all_to_all", N, rings, caps) == pytest.approx(time_s, rel=1e-12)
    assert record.flows == 2  # one flow per directed ring, not per step or pair


@pytest.mark.parametrize("p, each_way", [(4, 6e6), (8, 7e6)])
def test_direct_over_a_switch_bytes_and_time_by_hand(p, each_way, tmp_path):
    """Every rank sends N/p to each of the p-1 others at once: (p-1)N/p up and down."""
    topo = _switch(tmp_path, p)
    direct = COLLECTIVES.get("direct")()
    record, carried = _run(direct, topo.rings, topo.capacities(), "all_to_all", N)
    ring = topo.rings[0]
    for i in range(p):
        assert carried[ring.up(i)] == pytest.approx(each_way, rel=1e-12)
        assert carried[ring.down(i)] == pytest.approx(each_way, rel=1e-12)
    assert sum(carried.values()) == pytest.approx(2 * p * each_way, rel=1e-12)  # nothing else moved
    expected = SWITCH_HOP_S + each_way / SWITCH_BPS
    assert record.time_s == pytest.approx(expected, rel=1e-12)
    assert direct.time_s("all_to_all", N, topo.rings, topo.capacities()) == pytest.approx(expected, rel=1e-12)


def test_hierarchical_bytes_by_hand(tmp_path):
    """Two domains of 4 under spine switches: each rank first sends each domain peer the
    N/4 bound for that peer's group (3 x 2 MB out), then its group's ring of 2 swaps the
    N/2 bound for the other domain (4 MB out); the spines carry 4 ranks x 4 MB each way."""
    path = tmp_path / "two_level.yaml"
    path.write_text(yaml.safe_dump(TWO_LEVEL))
    topo = load_topology(str(path))
    hierarchical = COLLECTIVES.get("hierarchical")()
    record, carried = _run(hierarchical, topo.rings, topo.capacities(), "all_to_all", N)
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    for channel, moved in carried.items():
        source, target = channel.split(">")
        sent[source] = sent.get(source, 0.0) + moved
        received[target.split(":")[0]] = received.get(target.split(":")[0], 0.0) + moved
    for device in topo.devices:
        assert sent[device] == pytest.approx(6e6 + 4e6, rel=1e-12)
        assert received[device] == pytest.approx(6e6 + 4e6, rel=1e-12)
    spines = [s for s in sent if s.startswith("SP")]
    assert sum(sent[s] for s in spines) == pytest.approx(2 * 16e6, rel=1e-12)
    assert record.time_s == pytest.approx(hierarchical.time_s("all_to_all", N, topo.rings, topo.capacities()),
                                          rel=1e-12)


@pytest.mark.parametrize("hot", [0, 2])
def test_skewed_all_to_allv_slowest_rank_is_the_hot_one(hot, tmp_path):
    """Half of every rank's data goes to the hot rank, a sixth to each other: the hot
    rank's down channel carries 3 x N/2 = 12 MB, the others' 3 x N/6 = 4 MB; the hot
    rank sends 3 x N/6 = 4 MB up, the others N/2 + 2 x N/6 = 6.67 MB."""
    topo = _switch(tmp_path, 4)
    caps, ring = topo.capacities(), topo.rings[0]
    skewed = COLLECTIVES.get("direct")(hot_share=0.5)
    record, carried = _run(skewed, topo.rings, caps, "all_to_allv", N, root=hot)
    for i in range(4):
        assert carried[ring.down(i)] == pytest.approx(12e6 if i == hot else 4e6, rel=1e-12)
        assert carried[ring.up(i)] == pytest.approx(4e6 if i == hot else 8e6 - 4e6 / 3, rel=1e-12)
    slowest = SWITCH_HOP_S + 12e6 / SWITCH_BPS  # the hot rank, receiving
    assert record.time_s == pytest.approx(slowest, rel=1e-12)
    assert hot_rank_time_s(4, N, SWITCH_BPS, SWITCH_HOP_S, 0.5) == pytest.approx(slowest, rel=1e-12)
    assert skewed.time_s("all_to_allv", N, topo.rings, caps) == pytest.approx(slowest, rel=1e-12)
    assert record.flows == 12  # a flow per pair: the pairs differ
    uniform = COLLECTIVES.get("direct")(hot_share=0.25)
    assert uniform.time_s("all_to_allv", N, topo.rings, caps) == pytest.approx(
        COLLECTIVES.get("direct")().time_s("all_to_all", N, topo.rings, caps), rel=1e-12)


def test_the_slowest_rank_needs_a_hottest_share_of_at_least_uniform():
    with pytest.raises(ValueError, match=r"\[1/4, 1\]"):
        hot_rank_time_s(4, N, SWITCH_BPS, SWITCH_HOP_S, 0.2)


@pytest.mark.parametrize("name, op", [("nccl_tree", "all_to_all"), ("in_switch", "all_to_all"),
                                      ("ring", "all_to_allv"), ("tree", "all_to_allv")])
def test_an_algorithm_that_does_not_carry_it_refuses_by_name(name, op, tmp_path):
    topo = _switch(tmp_path, 4)
    algorithm = COLLECTIVES.get(name)()
    with pytest.raises(InputError, match=f"collective algorithm '{name}' does not carry {op}; use one that "
                                         r"does \(.*direct"):
        algorithm.time_s(op, N, topo.rings, topo.capacities())
    env = CountingEnvironment()
    with pytest.raises(InputError, match=f"'{name}' does not carry {op}"):
        algorithm.start(env, FlowNetwork(env, topo.capacities()), topo.rings, op, N)


def test_busbw_factor_is_nccl_tests_alltoall():
    assert bus_factor("all_to_all", 8) == pytest.approx(7 / 8)
    assert bus_factor("all_to_allv", 4) == pytest.approx(3 / 4)


def _cli(capsys, *argv):
    code = main(["collective", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_all_to_all(capsys):
    code, out, _ = _cli(capsys, "--op", "all_to_all", "--size", "8 MB", "--ring", "4", "--link-bw", "25 GB/s",
                        "--link-latency", "1 us", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["op"] == "all_to_all" and data["ranks"] == 4
    assert data["time_s"] == pytest.approx(RING_CASES[0][2], rel=1e-12)
    assert data["busbw_Bps"] == pytest.approx(8e6 / data["time_s"] * 3 / 4)


def test_cli_all_to_allv_hot_share(capsys, tmp_path):
    topo = tmp_path / "s4.yaml"
    _switch(tmp_path, 4)
    base = ["--op", "all_to_allv", "--size", "8 MB", "--topology", str(topo), "--algorithm", "direct"]
    code, out, _ = _cli(capsys, *base, "--hot-share", "0.5", "--format", "json")
    assert code == 0
    assert json.loads(out)["time_s"] == pytest.approx(SWITCH_HOP_S + 12e6 / SWITCH_BPS, rel=1e-12)
    code, _, err = _cli(capsys, *base, "--hot-share", "0.1")
    assert code == 2 and "--hot-share: expected a share from 1/4 (uniform) to 1, got 0.1" in err
    code, _, err = _cli(capsys, "--op", "all_to_all", "--size", "8 MB", "--ring", "4", "--hot-share", "0.5")
    assert code == 2 and "--hot-share: applies to --op all_to_allv" in err
    code, out, _ = _cli(capsys, "--op", "all_to_all", "--size", "8 MB", "--ring", "4", "--algorithm", "nccl",
                        "--format", "json")  # NCCL's grouped sends; on a ring without a switch, hierarchical's
    assert code == 0 and json.loads(out)["picked"] == "hierarchical"


@pytest.mark.parametrize("name", ["ring", "direct", "hierarchical"])
def test_a_uniform_all_to_all_is_rank_symmetric(name, tmp_path):
    """Simulated once per class of alike ranks (rank symmetry), it moves the same bytes
    in the same time as rank by rank; a skewed one is refused there (its hot rank)."""
    from mcdla.hw.symmetry import rank_classes

    topo = _switch(tmp_path, 8)
    caps = topo.capacities()
    classes = rank_classes(topo, "bw_aware").resources
    assert classes  # the ranks are alike: resources lumped
    results = []
    for lumped in (None, classes):
        env = CountingEnvironment()
        net = FlowNetwork(env, caps, classes=lumped)
        process = COLLECTIVES.get(name)().start(env, net, topo.rings, "all_to_all", N)
        env.run()
        results.append((process.value.time_s, net.stats().bytes_by_resource))
    (t0, b0), (t1, b1) = results
    assert t1 == pytest.approx(t0, rel=1e-12)
    assert set(b0) == set(b1) and all(b1[r] == pytest.approx(b0[r], rel=1e-12) for r in b0)
    env = CountingEnvironment()
    with pytest.raises(ValueError, match="not rank-symmetric"):
        COLLECTIVES.get("direct")(hot_share=0.5).start(env, FlowNetwork(env, caps, classes=classes), topo.rings,
                                                       "all_to_allv", N)
