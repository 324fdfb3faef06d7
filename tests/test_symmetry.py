"""Rank symmetry (mcdla.hw.symmetry): one device per class of equivalent devices is
simulated, its flows standing for the class's. Every reported figure must equal the
exact simulation's (every rank simulated) to 1e-9 relative, on symmetric designs and
on asymmetric ones, where the classes are smaller."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from mcdla.cli.main import main
from mcdla.config.execution import ExecutionSpec
from mcdla.errors import InputError
from mcdla.hw.maxmin import max_min_rates
from mcdla.hw.symmetry import rank_classes
from mcdla.hw.topology import load_topology
from mcdla.run import load_inputs, simulate
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scale import ring_yaml  # noqa: E402  (the benchmark's generated MC-DLA ring)

# What measures the simulator, not the simulated system.
COST = {"events", "wall_s", "rank_classes"}


def differences(a, b, where=""):
    """The reported figures of two results that differ by more than 1e-9 relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        return [d for k in a if k not in COST for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        return [] if abs(a - b) <= 1e-9 * max(abs(a), abs(b)) else [(where, a, b)]
    return [] if a == b else [(where, a, b)]


def both(topology, workload="alexnet", parallel="data", batch=64, sets=()):
    runs = [simulate(topology, "bw_aware", workload, parallel, batch, [*sets, ("execution.exact", exact)],
                     budget=math.inf) for exact in (False, True)]
    return runs


def _ring_file(tmp_path, n: int, home_only: tuple[int, ...] = ()) -> str:
    """The benchmark's MC-DLA ring of ``n``; the devices ``home_only`` are served by their
    home memory-node alone (their routes differ from the others')."""
    text = ring_yaml(n)
    for d in home_only:
        text = text.replace(f"  D{d}: [M{d}, M{(d - 1) % n}]\n", f"  D{d}: [M{d}]\n")
    path = tmp_path / f"ring{n}_{len(home_only)}.yaml"
    path.write_text(text)
    return str(path)


PIPE = [("training.virtualization", False), ("training.micro_batches", 4)]

DESIGNS = ["ring", "dc", "hc", "star", "oracle", "dgx1v", "dc16", "ring16", "dgx_a100", "dgx_h100",
           "dgx_h100_memnodes", "dgx_h100_cxl", "gh200_nvl32", "dgx_h100_4node", "mcdla_scaleout",
           "mcdla_ring_cluster", "dc_cluster"]


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("parallel", ["data", "model"])
def test_symmetric_runs_equal_exact_ones_on_the_shipped_designs(design, parallel):
    symmetric, exact = both(design, parallel=parallel, batch=64)
    assert differences(symmetric, exact) == []
    assert exact["rank_classes"] == exact["devices"]
    assert symmetric["rank_classes"] <= exact["rank_classes"]


@pytest.mark.parametrize("sets", [
    [("execution.offload_optimizer", True)],  # ZeRO-Offload: the state in the backing store
    [("execution.zero", 2)],
    [("execution.collective", "nccl")],
    [("execution.offload", "capacity_aware")],
    [("training.bucket", 25e6), ("training.precision", "mixed")],
], ids=["zero_offload", "zero2", "nccl", "capacity_aware", "bucket_mixed"])
@pytest.mark.parametrize("design", ["ring", "dc"])
def test_symmetric_runs_equal_exact_ones_with_training_options(design, sets):
    symmetric, exact = both(design, "resnet34", batch=128, sets=sets)
    assert differences(symmetric, exact) == []


@pytest.mark.parametrize("design, collective", [("dgx_h100", "direct"), ("dgx_h100_4node", "hierarchical"),
                                                ("dgx_h100_4node", "ring")])
def test_switch_collectives_group_alike_flows_and_stay_exact(design, collective):
    sets = [("execution.collective", collective)] + ([("generator.nodes", 8)] if "node" in design else [])
    symmetric, exact = both(design, "resnet34", batch=256, sets=sets)
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] == 1


@pytest.mark.parametrize("name", COLLECTIVES.names())
def test_each_algorithm_declares_rank_symmetry_truly(name):
    # Registry-driven: an algorithm that declares itself symmetric runs once per class
    # and equals the exact run; one that does not is simulated rank by rank. On a
    # two-node cluster where the algorithm runs there (hierarchical needs nodes), else
    # one DGX H100.
    algorithm = COLLECTIVES.get(name)
    if "all_reduce" not in algorithm.ops:  # NCCL's grouped sends (nccl_p2p) carry all-to-alls only
        with pytest.raises(InputError, match=f"'{name}' does not carry all_reduce"):
            both("dgx_h100", "alexnet", batch=64, sets=[("execution.collective", name)])
        return
    for design, more in (("dgx_h100_4node", [("generator.nodes", 2)]), ("dgx_h100", [])):
        sets = [("execution.collective", name), *more]
        try:
            symmetric, exact = both(design, "alexnet", batch=64, sets=sets)
            break
        except InputError:
            continue
    else:
        pytest.fail(f"{name} runs on no test design")
    assert differences(symmetric, exact) == []
    topology, _, _ = load_inputs(design, "alexnet", sets)
    if algorithm.rank_symmetric(topology.rings, topology.capacities()):
        assert symmetric["rank_classes"] < symmetric["devices"]
    else:
        assert symmetric["rank_classes"] == symmetric["devices"]


@pytest.mark.parametrize("design, workload, batch, sets", [
    ("gb200_nvl72", "alexnet", 144, []),  # NVLink SHARP: one reduction engine for 72 GPUs
    ("gb200_nvl72", "gpt2", 144, [("execution.tensor_parallel", 2), ("execution.pipeline_parallel", 2), *PIPE]),
    ("dgx_h100_memnodes", "vgg_e", 64, [("execution.collective", "in_switch")]),  # beside offload traffic
], ids=["nvl72", "nvl72_3d", "memnodes"])
def test_in_switch_reduction_lumps_and_stays_exact(design, workload, batch, sets):
    symmetric, exact = both(design, workload, batch=batch, sets=sets)
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] < exact["rank_classes"] == exact["devices"]


@pytest.mark.parametrize("design, sets", [
    ("ring", [("execution.zero", 3)]),  # weights gathered one group ahead
    ("dgx_h100_memnodes", [("execution.zero", 3), ("execution.offload_optimizer", True),
                           ("execution.offload_params", True)]),  # ZeRO-Infinity in memory-nodes
    ("dgx_h100_cxl", [("training.checkpoint", "full"), ("execution.offload", "capacity_aware")]),
    ("gh200_nvl32", [("execution.tensor_parallel", 4), ("execution.sequence_parallel", True)]),
], ids=["zero3", "zero_infinity", "checkpoint", "sequence_parallel"])
def test_symmetric_llm_runs_equal_exact_ones(design, sets):
    symmetric, exact = both(design, "gpt2", batch=64, sets=sets)
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] == 1


@pytest.mark.parametrize("n", [16, 64])
def test_a_big_ring_is_one_class_and_exact(tmp_path, n):
    symmetric, exact = both(_ring_file(tmp_path, n), "resnet34", batch=4 * n)
    assert symmetric["rank_classes"] == 1
    assert differences(symmetric, exact) == []
    assert symmetric["events"] * (n // 4) < exact["events"]  # the point: work per class, not per device


@pytest.mark.parametrize("n, home_only, expected", [
    (8, (0,), 8),  # one odd device: no two devices alike, every one its own class
    (12, tuple(range(0, 12, 2)), 2),  # every other device: the even ones and the odd ones
    (12, (0, 6), 6),  # two opposite: rotation by 6 pairs the devices up
])
def test_asymmetric_rings_find_more_classes_and_stay_exact(tmp_path, n, home_only, expected):
    path = _ring_file(tmp_path, n, home_only)
    classes = rank_classes(load_topology(path), "bw_aware").device_classes
    assert len(classes) == expected
    for workload, parallel in (("resnet34", "data"), ("alexnet", "model")):
        symmetric, exact = both(path, workload, parallel, batch=4 * n)
        assert symmetric["rank_classes"] == len(classes)
        assert differences(symmetric, exact) == []


def test_classes_of_the_shipped_designs():
    assert len(rank_classes(load_topology("ring"), "bw_aware").device_classes) == 1
    star = rank_classes(load_topology("star"), "bw_aware")
    assert sorted(map(len, star.device_classes)) == [2, 2, 4]
    assert rank_classes(load_topology("ring"), "bw_aware", supported=False).trivial


HEADS_16 = ("workload.heads", 16)  # GPT-2 with 16 heads of 48: its 12 do not split over 8 ranks


@pytest.mark.parametrize("design, sets, classes", [
    ("ring", [("execution.tensor_parallel", 2), ("execution.zero", 1)], 2),  # even and odd tensor ranks
    ("dgx_h100", [("execution.tensor_parallel", 4)], 1),  # NCCL's rate caps: one per alike group's ring
    ("dgx_h100_4node", [("execution.tensor_parallel", 8), HEADS_16], 1),
    ("dgx_h100", [("execution.tensor_parallel", 2), ("execution.pipeline_parallel", 2), *PIPE], 2),  # a class a stage
    ("mcdla_ring_cluster", [("execution.pipeline_parallel", 4), *PIPE], 32),
    # 3D: stages of two nodes' tensor groups, their peers a node away over the rails
    # (t = 4: a data-parallel group has two GPUs in each of two nodes; its sub-ring
    # keeps the order each topology ring visits them in, which differs with where the
    # ring is cut in the node: fewer classes)
    ("dgx_h100_4node", [("execution.tensor_parallel", 4), ("execution.pipeline_parallel", 2), *PIPE], 16),
    ("dgx_h100_4node", [("execution.tensor_parallel", 8), ("execution.pipeline_parallel", 4), *PIPE, HEADS_16], 4),
    ("dgx_h100", [("execution.tensor_parallel", 4), ("execution.collective", "in_switch")], 1),
], ids=["ring_tp2", "dgx_h100_tp4", "cluster_tp8", "tp2_pp2", "cluster_pp4", "cluster_3d", "cluster_tp8_pp4",
        "in_switch_tp4"])
def test_tensor_and_pipeline_groups_stay_exact(design, sets, classes):
    """A communicator of simulated devices stands for its alike groups (their joins
    weighted, its flows with copies); pipeline peers' routes go straight through the
    switch they share (NVSwitch, a rail), so a stage is one class. A cluster of ring
    nodes is not: its rings are cut at different places in each node, so a node's
    group is a line whose ranks differ (every device its own class there)."""
    symmetric, exact = both(design, "gpt2", batch=64, sets=sets)
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] == classes


def test_groups_that_cut_across_classes_are_not_lined_up():
    from mcdla.hw.symmetry import Symmetry, line_up

    classes = Symmetry(((0, 2), (1, 3)), {}, {})
    # Groups {0, 1} and {2, 3}: each holds one device of each class, alike.
    lined = line_up(classes, [("tp", (0, 1)), ("tp", (2, 3))], (0, 1, 2, 3), {})
    assert lined is not None and lined[1] == [({0: 1, 1: 1}, 2, (0, 1)), None]
    # Groups {0, 3} and {1, 2}: device 0's group lacks class (1, 3)'s simulated device 1.
    assert line_up(classes, [("tp", (0, 3)), ("tp", (1, 2))], (0, 1, 2, 3), {}) is None


def test_exact_option_on_the_command_line(capsys):
    assert main(["sim", "--workload", "alexnet", "--batch", "64", "--exact", "--format", "json"]) == 0
    assert '"rank_classes": 8' in capsys.readouterr().out
    assert ExecutionSpec().exact is False  # symmetry by default


def test_a_flow_with_copies_equals_its_copies():
    """Two lumped classes of 4 channels; a flow with copies=4 over one of each is the
    four flows over their own pairs, and shares with a ring flow crossing them all."""
    caps = {f"a{i}": 10.0 for i in range(4)} | {f"b{i}": 4.0 for i in range(4)}
    results = []
    for lumped in (False, True):
        env = CountingEnvironment()
        classes = {f"{k}{i}": f"{k}0" for k in "ab" for i in range(4)} if lumped else None
        net = FlowNetwork(env, caps, classes=classes)
        done = []
        if lumped:
            done.append(net.transfer(8.0, ("a0", "b0"), tag="x", copies=4))
        else:
            done += [net.transfer(8.0, (f"a{i}", f"b{i}"), tag="x") for i in range(4)]
        done.append(net.transfer(12.0, tuple(caps), tag="ring"))
        env.run()
        stats = net.stats()
        results.append((env.now, stats.flows_finished, stats.bytes_delivered, stats.bytes_by_resource))
    (t0, f0, d0, b0), (t1, f1, d1, b1) = results
    assert (f0, f1) == (5, 5) and d0 == d1 == 44.0
    assert t1 == pytest.approx(t0, rel=1e-12)
    assert set(b0) == set(b1) and all(b1[r] == pytest.approx(b0[r], rel=1e-12) for r in b0)


def test_uneven_copies_are_refused():
    net = FlowNetwork(CountingEnvironment(), {"a0": 1.0, "a1": 1.0, "a2": 1.0},
                      classes={"a0": "a0", "a1": "a0", "a2": "a0"})
    with pytest.raises(ValueError, match="unevenly"):
        net.transfer(1.0, ("a0",), copies=2)  # 2 flows cannot load 3 channels alike


def test_weighted_max_min_equals_the_replicated_flows():
    caps = {"x": 9.0, "y": 5.0}
    replicated = max_min_rates({"f1": ("x", "y"), "f2": ("x", "y"), "g": ("x",)}, caps)
    weighted = max_min_rates({"f": ("x", "y"), "g": ("x",)}, caps, {"f": (2, 2), "g": (1,)})
    assert weighted == {"f": replicated["f1"], "g": replicated["g"]}


@pytest.mark.parametrize("design", ["ring", "star"])
def test_the_trace_is_the_exact_runs_byte_for_byte(tmp_path, design):
    """Per-device kernels and transfers and per-link utilization over time: the members
    of a class get their first device's records and their class's link timelines."""
    paths = []
    for exact in (False, True):
        path = tmp_path / f"{exact}.json"
        simulate(design, "bw_aware", "alexnet", "data", 64, [("execution.exact", exact)], trace=str(path))
        paths.append(path.read_bytes())
    assert paths[0] == paths[1]



@pytest.mark.slow
@pytest.mark.parametrize("design, sets", [
    ("ring16", [("generator.devices", 256)]),
    ("dgx_h100_4node", [("generator.nodes", 32), ("host.sockets", 64)]),
    ("mcdla_scaleout", [("generator.nodes", 64), ("spine_switch.chips", 2)]),
])
def test_symmetric_equals_exact_at_a_few_hundred_devices(design, sets):
    symmetric, exact = both(design, "resnet34", batch=1024, sets=sets)
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] < exact["rank_classes"] == symmetric["devices"]


def test_the_quotient_turns_its_own_edges_round_and_refuses_an_uneven_spread():
    """The quotient keeps each vertex's own edges only, an edge given in parts summed; its
    arrays for the refinement hold them and, at the far end, each turned round with its
    count times the source orbit's size over the far orbit's (an orbit of 4 members, one
    edge each into an orbit of 2: 2 edges into each member). An orbit whose edges do not
    spread evenly over the far orbit's members (4 edges over 3) is no automorphism: no
    arrays; its edges given in parts are checked once summed (4 x (1 + 2) over 3)."""
    from mcdla.hw.quotient import Quotient

    q = Quotient(None)
    a, b, c = (q.vertex(kind, name, (), size=size) for kind, name, size in (("d", "A", 4), ("r", "B", 2), ("r", "C", 4)))
    q.edge(a, b, ("x",))
    q.edge(a, c, ("y",), 3)
    q.edge(a, c, ("y",))  # an edge given in parts: summed
    parts, kinds = q.adjacency()
    named = [{} for _ in q.colours]
    for at, far, kind, count in parts:
        for v, edges in enumerate(named):
            edges.update(zip(zip(kind[at[v]:at[v + 1]].tolist(), far[at[v]:at[v + 1]].tolist()),
                             count[at[v]:at[v + 1]].tolist()))
    # A kind is (label number, side) as 2 label + side: (x, own) 0, (x, into) 1, (y, own) 2, (y, into) 3.
    assert (named, kinds) == ([{(0, b): 1, (2, c): 4}, {(1, a): 2}, {(3, a): 4}], 4)
    uneven = Quotient(None)
    a, d = uneven.vertex("d", "A", (), size=4), uneven.vertex("r", "D", (), size=3)
    uneven.edge(a, d, ("x",))
    assert uneven.adjacency() is None
    summed = Quotient(None)
    a, d = summed.vertex("d", "A", (), size=4), summed.vertex("r", "D", (), size=3)
    summed.edge(a, d, ("x",))
    summed.edge(a, d, ("x",), 2)
    assert summed.adjacency()[0][1][3].tolist() == [4]  # 3 edges of each of 4 members: 4 into each of 3
