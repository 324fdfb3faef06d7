"""The switch collectives (issue 13) against hand counts on idle switched designs, and
their refusals where the rings are not on a switch."""

from __future__ import annotations

import pytest
import yaml

from mcdla.errors import InputError
from mcdla.hw.topology import load_topology
from mcdla.run import simulate
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork

SWITCH8 = {"name": "switch8", "description": "8 devices on one NVSwitch system", "device": "h100_sxm5",
           "fabric_switch": {"preset": "nvswitch3", "chips": 4}, "links": {"nvlink": "nvlink4"},
           "generator": {"name": "switch", "devices": 8, "links_per_device": 18}}
TWO_LEVEL = {"name": "two_level", "description": "2 domains of 4 under 2 spines", "device": "h100_sxm5",
             "fabric_switch": "nvswitch3", "links": {"nvlink": "nvlink4"},
             "generator": {"name": "two_level_switch", "domains": 2, "devices_per_domain": 4,
                           "links_per_device": 4, "spines": 2, "uplinks": 2}}
N = 1e9  # bytes


def _path(tmp_path, doc) -> str:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _simulated(name, topo, op="all_reduce", size=N):
    env = CountingEnvironment()
    net = FlowNetwork(env, topo.capacities())
    process = COLLECTIVES.get(name)().start(env, net, topo.rings, op, size)
    env.run()
    return process.value


@pytest.fixture
def switch8(tmp_path):
    return load_topology(_path(tmp_path, SWITCH8))


def _link(topo):
    nvlink = topo.links["nvlink"]
    b = nvlink.bw * nvlink.efficiency  # 25 GB/s x 0.822: below the 25 GB/s switch port
    a = 2 * nvlink.latency + topo.fabric_switch.latency  # D -> switch -> D
    return b, a


def test_hand_counts_of_all_reduce_on_one_switch(switch8):
    b, a = _link(switch8)
    s, p = N / 18, 8  # 18 directed rings, one per link of a device
    expected = {
        "ring": 2 * (p - 1) * (a + s / (p * b)),
        "direct": 2 * (a + (p - 1) * s / (p * b)),  # one step of latency per phase
        "in_switch": a + s / b,  # up once, reduced, down once: half the ring's bytes
        # NCCL's two mirrored binary trees of depth 3; the busiest channel carries 4 half-shares
        "tree": 2 * 3 * a + 4 * (s / 2) / b,
        "hierarchical": 2 * (a + (p - 1) * s / (p * b)),  # one domain: direct
    }
    for name, hand in expected.items():
        assert _simulated(name, switch8).time_s == pytest.approx(hand, rel=1e-9), name
    assert expected["in_switch"] < 0.6 * expected["ring"]


def test_hand_counts_of_the_other_operations_on_one_switch(switch8):
    b, a = _link(switch8)
    s, p = N / 18, 8
    assert _simulated("direct", switch8, "reduce_scatter").time_s == pytest.approx(a + (p - 1) * s / (p * b))
    assert _simulated("direct", switch8, "broadcast").time_s == pytest.approx(a + (p - 1) * s / b)
    assert _simulated("in_switch", switch8, "reduce_scatter").time_s == pytest.approx(a + s / b)
    assert _simulated("in_switch", switch8, "all_gather").time_s == pytest.approx(a + (p - 1) * s / (p * b))
    assert _simulated("in_switch", switch8, "broadcast").time_s == pytest.approx(a + s / b)


def test_hierarchical_across_two_domains_shares_the_uplinks(tmp_path):
    topo = load_topology(_path(tmp_path, TWO_LEVEL))
    b, a = _link(topo)
    nvlink = topo.links["nvlink"]
    cross = 4 * nvlink.latency + 3 * topo.fabric_switch.latency  # D -> leaf -> spine -> leaf -> D: 3 switches
    s, q, d = N / 4, 4, 2  # 4 directed rings (4 links per device, 2 spines x 2 uplinks)
    intra = a + (q - 1) * s / (q * b)
    # the 4 places of a domain each run a 2-rank ring over the one uplink channel of
    # their ring: 4 flows of (d-1)/d x s/q share it
    across = (d - 1) * cross + q * ((d - 1) * (s / q) / d) / b
    assert _simulated("hierarchical", topo).time_s == pytest.approx(2 * intra + 2 * across, rel=1e-9)


def test_a_slow_reduction_engine_sets_in_switch_pace(tmp_path):
    topo = load_topology(_path(tmp_path, SWITCH8), [("fabric_switch.reduction_bw", "40 GB/s")])
    b, a = _link(topo)
    engine = 4 * 40e9 / 18  # 4 chips' engines shared by 18 rings: below a link's rate
    assert engine < b
    assert _simulated("in_switch", topo).time_s == pytest.approx(a + (N / 18) / engine, rel=1e-9)


def test_in_switch_needs_a_reduction_engine(tmp_path):
    doc = dict(SWITCH8, fabric_switch={"preset": "nvswitch2", "chips": 8})  # gen2: no SHARP
    topo = load_topology(_path(tmp_path, doc))
    with pytest.raises(InputError, match=r"execution\.collective: in_switch needs a reduction engine in "
                                         r"fabric switch 'FS0'"):
        _simulated("in_switch", topo)


@pytest.mark.parametrize("name", ["direct", "in_switch"])
def test_switch_algorithms_refuse_rings_off_a_switch(name):
    with pytest.raises(InputError, match=rf"{name} pairs any two ranks through a fabric switch; ring "
                                         r"'ring0.fwd' is not a switch ring"):
        _simulated(name, load_topology("ring"))


def test_flows_follow_phases_not_bytes(switch8):
    small = _simulated("direct", switch8, size=4e3)
    large = _simulated("direct", switch8, size=4e9)
    assert small.flows == large.flows == 2 * 18  # one flow per ring and phase
    assert _simulated("in_switch", switch8).flows == 18


def test_a_training_iteration_on_a_switch_with_each_algorithm(tmp_path):
    """A whole iteration passes its invariants (channel bytes against each algorithm's
    definition) with every switch algorithm; SHARP's all-reduce is the fastest."""
    path = _path(tmp_path, SWITCH8)
    times = {}
    for name in ("ring", "direct", "in_switch", "tree", "hierarchical"):
        result = simulate(path, "bw_aware", "alexnet", "data", 64, [("execution.collective", name)])
        times[name] = result["iteration_time_s"]
    assert min(times, key=times.get) == "in_switch"


def test_hierarchical_needs_domains_of_equal_size(tmp_path):
    doc = {"name": "uneven", "description": "three devices on one leaf, one on the other", "device": "h100_sxm5",
           "fabric_switch": "nvswitch3", "links": {"nvlink": "nvlink4"}, "devices": 4, "fabric_switches": 2,
           "spine_switches": 1,
           "connections": [["D0", "FS0", "nvlink"], ["D1", "FS0", "nvlink"], ["D2", "FS0", "nvlink"],
                           ["D3", "FS1", "nvlink"], ["FS0", "SP0", "nvlink"], ["FS1", "SP0", "nvlink"]]}
    topo = load_topology(_path(tmp_path, doc))
    assert [r.ranks for r in topo.rings] == [("D0", "D1", "D2", "D3")]
    with pytest.raises(InputError, match=r"hierarchical needs domains of equal size; ring 'ring0' has \[1, 3\]"):
        _simulated("hierarchical", topo)
    assert _simulated("ring", topo).time_s > 0  # the ring runs anywhere


def test_hierarchical_across_nodes_goes_rail_by_rail():
    """dgx_h100_4node: reduce-scatter over each node's NVSwitch, all-reduce of each
    GPU's piece with the same GPU of the other nodes over its own NIC (every ring's
    groups share the one NIC of a GPU: 18 rings), all-gather in the node."""
    topo = load_topology("dgx_h100_4node")
    b, a = _link(topo)
    nic = topo.links["nic"]
    cross = 2 * nic.latency + topo.spine_switch.latency  # NIC -> rail switch -> NIC
    s, q, d = N / 18, 8, 4
    intra = a + (q - 1) * s / (q * b)
    across = (d - 1) * cross + ((d - 1) * (s / q) / d) / (nic.bw / 18)
    assert _simulated("hierarchical", topo).time_s == pytest.approx(2 * intra + 2 * across, rel=1e-9)
    ring = topo.rings[0]
    assert [ring.exit_switch[i] for i in range(8)] == [f"SP{k}" for k in range(8)]  # one rail per GPU


@pytest.mark.parametrize("name", ["direct", "in_switch", "hierarchical"])
def test_broadcast_from_another_root_moves_the_roots_data(name, switch8):
    """Root 3 of the first ring is the same device on every ring: its up channels carry
    the data, rank 0's carry nothing."""
    env = CountingEnvironment()
    net = FlowNetwork(env, switch8.capacities())
    COLLECTIVES.get(name)().start(env, net, switch8.rings, "broadcast", N, root=3)
    env.run()
    carried = net.stats().bytes_by_resource
    root, other = switch8.rings[0].ranks[3], switch8.rings[0].ranks[0]
    assert sum(v for c, v in carried.items() if c.startswith(f"{root}>")) > 0
    assert sum(v for c, v in carried.items() if c.startswith(f"{other}>")) == 0


def test_mcdla_collective_names_its_own_option_when_an_algorithm_refuses(capsys):
    from mcdla.cli.main import main

    assert main(["collective", "--op", "all_reduce", "--size", "8 MB", "--topology", "ring",
                 "--algorithm", "direct"]) == 2
    err = capsys.readouterr().err
    assert "--algorithm: direct pairs any two ranks through a fabric switch" in err and err.count("\n") == 1


def test_rings_of_one_phase_run_without_a_process_each():
    """Events proportional to the work: an in-switch all-reduce on DGX H100 is 18 rings of
    one flow each (one phase), and runs its flows straight from the collective's own
    process, not from a process per ring (97 events before, 3 more per ring); a
    multi-phase collective keeps a process per ring and the same time."""
    from mcdla.run import simulate_collective

    one_phase = simulate_collective("all_reduce", "64MiB", topology="dgx_h100", algorithm="in_switch")
    assert one_phase["flows"] == 18
    assert one_phase["events"] <= 3 * one_phase["flows"]
    phased = simulate_collective("all_reduce", "64MiB", topology="dgx_h100", algorithm="direct")
    assert phased["flows"] == 36 and phased["events"] > 4 * phased["rings"]


def test_a_hierarchical_all_reduce_sends_its_phases_bytes_counted_when_read():
    # Two DGX H100 (p = 16 ranks a ring, q = 8 a machine, d = 2 machines): the intra
    # reduce-scatter and all-gather send (q-1)/q of a ring's share from each rank, the
    # cross ones (d-1)/d of its q-th: 2 p (q-1)/q + 2 p (d-1)/(d q) = 28 + 2 shares.
    from mcdla.sim.collectives import run_collective

    topology = load_topology("dgx_h100_4node", [("generator.nodes", 2)])
    record = run_collective(topology.rings, topology.read_capacities(), "all_reduce", 64e6,
                            algorithm="hierarchical").record
    sent = record.bytes_sent_per_ring
    assert "_values" not in vars(sent)  # listing every piece of a 100,000-rank ring costs seconds: not unasked
    assert len(sent) == len(topology.rings) == 18
    assert all(s == pytest.approx(30 * share, rel=1e-12) for s, share in zip(sent, record.bytes_per_ring))
