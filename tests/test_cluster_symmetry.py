"""The premise of the cluster generator's symmetry for 3D runs (docs/performance.md, "The
cluster generator's symmetry: the design checked"): on a rails cluster (and a fat tree
whose leaves hold whole stages), shifting the nodes by two within each pipeline stage's
block of nodes maps everything the whole refinement sees onto itself (the graph, the
capacities, the stage colours, the groups, their sub-rings as multisets, the pipeline
links), and the refinement's classes are unions of its orbits; shifting by one node does
not carry the sub-rings (the derived rings snake, so a node's ring is its neighbour's
reversed). The shift is mcdla's own translation with blocks (mcdla.hw.translation); the run
picks it (``Iteration._stage_shift``, from the node cell the cluster generator hands over)
and refines the quotient by it: the classes equal the whole refinement's and the results an
exact run's; where the premise fails the run keeps the whole refinement."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from mcdla.hw.network import RANK_LINKS
from mcdla.hw.symmetry import by_translation
from mcdla.hw.symmetry import rank_classes as _real_rank_classes
from mcdla.hw.translation import Translation
from mcdla.run import load_inputs
from mcdla.sim import training
from mcdla.sim.training import Iteration

_NODE = re.compile(r"([A-Z]+)(\d+)$")
_SEPARATORS = re.compile(r"([>/:])")
_PER_NODE = ("D", "SW", "CPU", "FS")  # a node's devices, NVSwitches, sockets, fabric switch (not SP: rails, leaves)


def _captured(monkeypatch, sets, batch=64, design="dgx_h100_4node"):
    """The topology and what the run hands the refinement, and the classes it returns."""
    seen = {}

    def spy(topology, policy, supported=True, **kw):
        seen.update(topology=topology, kw=kw, symmetry=real(topology, policy, supported, **kw))
        return seen["symmetry"]

    real = training.rank_classes
    monkeypatch.setattr(training, "rank_classes", spy)
    topology, workload, execution = load_inputs(design, "llama2_7b", sets, batch=batch)
    Iteration(topology, workload, execution).symmetry  # noqa: B018 (built on first use)
    return seen


def _shift(topology, nodes: int, stage_nodes: int, by: int):
    """mcdla's translation (mcdla.hw.translation, with blocks) moving node j of stage block
    s to node s x B + (j + by) mod B, each node's devices, NVSwitches, sockets and fabric
    switch with it, the switches above the nodes in place: one step of it."""
    per = {p: n // nodes for p, n in Counter(_NODE.match(v).group(1) for v in topology.graph).items()
           if p in _PER_NODE}
    t = Translation.of(topology.graph, {p: by * unit for p, unit in per.items()},
                       {p: stage_nodes * unit for p, unit in per.items()})
    assert t is not None and t.order == stage_nodes // by
    return lambda name: t.shift(name, 1)


def _ring_key(ring, move):
    """What the refinement sees of a ring: its size, latencies and ranks, and each role's
    channels, as multisets."""
    roles = (("ring", ring.channels), *((role, getattr(ring, role)) for role in RANK_LINKS))
    return (ring.size, tuple(sorted(ring.latency_s)), tuple(sorted(map(move, ring.ranks))),
            tuple((role, tuple(sorted(Counter(map(move, channels)).items()))) for role, channels in roles))


def _carried(seen, move) -> dict[str, bool]:
    topology, kw = seen["topology"], seen["kw"]
    same = lambda name: name
    edges = Counter(tuple(sorted(e)) for e in topology.graph.edges())
    capacities = topology.capacities()
    position = {d: n for n, d in enumerate(topology.devices)}
    colours = kw["colours"]
    groups = {(kind, frozenset(members)) for kind, members, _ in kw["groups"]}
    rings = {_ring_key(r, same) for _, _, rs in kw["groups"] for r in rs}
    every = kw["links"](topology.devices)  # every device's links (the run hands over a function of the devices)
    links = {(kind, src, dst, tuple(paths)) for kind, src, dst, paths in every}
    cls = {d: n for n, c in enumerate(seen["symmetry"].device_classes) for d in c}
    return {
        "graph": Counter(tuple(sorted(map(move, e))) for e in topology.graph.edges()) == edges,
        "capacities": all(capacities.get(move(r)) == bw for r, bw in capacities.items()),
        "colours": all(colours[position[move(d)]] == colours[n] for n, d in enumerate(topology.devices)),
        "groups": all((kind, frozenset(map(move, m))) in groups for kind, m, _ in kw["groups"]),
        "rings": all(_ring_key(r, move) in rings for _, _, rs in kw["groups"] for r in rs),
        "links": all((kind, move(src), move(dst), tuple((share, tuple(map(move, path)), latency)
                                                         for share, path, latency in paths)) in links
                     for kind, src, dst, paths in every),
        "classes": all(cls[position[move(d)]] == cls[n] for n, d in enumerate(topology.devices)),
    }


# (nodes, tensor, pipeline, leaf nodes or None): stages of 4-8 nodes; tensor 8 (a node),
# 4 and 2 (several groups a node); leaves of a whole stage or of several.
CASES = [(8, 8, 2, None), (16, 8, 4, None), (8, 4, 2, None), (8, 2, 2, None), (16, 8, 2, 8), (16, 8, 4, 8)]


@pytest.mark.parametrize("nodes,tp,pp,leaf", CASES)
def test_a_two_node_shift_within_each_stage_maps_the_run_onto_itself(monkeypatch, nodes, tp, pp, leaf):
    sets = [("generator.nodes", nodes), ("host.sockets", 2 * nodes), ("execution.tensor_parallel", tp),
            ("execution.pipeline_parallel", pp)] + ([("generator.nodes_per_leaf", leaf)] if leaf else [])
    seen = _captured(monkeypatch, sets)
    assert len(seen["symmetry"].device_classes) < len(seen["topology"].devices)  # the run is lumped at all
    stage_nodes = nodes // pp
    two = _carried(seen, _shift(seen["topology"], nodes, stage_nodes, 2))
    assert two == dict.fromkeys(two, True)
    if tp == 8:  # a node's tensor ring snakes the other way from its neighbour's
        one = _carried(seen, _shift(seen["topology"], nodes, stage_nodes, 1))
        assert not one["rings"] and one["graph"] and one["groups"]


def test_leaves_smaller_than_a_stage_need_the_leaves_moved_too(monkeypatch):
    """With leaves of 4 nodes under stages of 8, a node shift that leaves the switches in
    place moves half a leaf's nodes to the next leaf: the fat tree's leaves must move with
    their own step (the design's per-level steps)."""
    sets = [("generator.nodes", 16), ("host.sockets", 32), ("execution.tensor_parallel", 8),
            ("execution.pipeline_parallel", 2), ("generator.nodes_per_leaf", 4)]
    seen = _captured(monkeypatch, sets)
    two = _carried(seen, _shift(seen["topology"], 16, 8, 2))
    assert not two["graph"] and two["groups"] and two["colours"]


def _sets(nodes, tp, pp, leaf=None):
    return [("generator.nodes", nodes), ("host.sockets", 2 * nodes), ("execution.tensor_parallel", tp),
            ("execution.pipeline_parallel", pp)] + ([("generator.nodes_per_leaf", leaf)] if leaf else [])




# (nodes, tensor, pipeline, leaf nodes or None): 64-256 GPUs, stages of 4-8 nodes, rails
# and fat trees whose leaves hold whole stages.
HANDED = [(8, 8, 2, None), (16, 8, 4, None), (8, 4, 2, None), (8, 2, 2, None), (16, 8, 2, 8), (16, 8, 4, 8),
          (32, 8, 4, None), (16, 4, 4, 16), (8, 8, 2, 4)]


# Other shipped clusters of the switched node: memory-nodes on each node's switch (4 GPUs
# a node), DGX A100, the 100k design's three tiers (leaves of 8 nodes, a pod a leaf).
OTHERS = [("mcdla_scaleout", [("generator.nodes", 8), ("execution.tensor_parallel", 4),
                             ("execution.pipeline_parallel", 2)]),
          ("dgx_a100_cluster", _sets(8, 8, 2)),
          ("h100_100k", [("generator.nodes", 16), ("generator.nodes_per_leaf", 8), ("generator.leaves_per_pod", 1),
                         ("execution.tensor_parallel", 8), ("execution.pipeline_parallel", 2)])]


# Stages of several leaves (the three-tier fat tree's Llama 3 405B points: 64 nodes a
# stage on leaves of 32): the shift moves every node two on within its leaf instead.
# (nodes, tensor, pipeline, leaf nodes, leaves a pod or None): stages of 2 and 4 leaves,
# of 2 pods; tensor 8 and 4.
SEVERAL_LEAVES = [(16, 8, 2, 4, None), (32, 8, 2, 8, None), (16, 4, 2, 4, None), (32, 8, 2, 4, 2),
                  (32, 8, 4, 4, 2)]


def _leaf_sets(nodes, tp, pp, leaf, pod):
    return [("generator.nodes", nodes), ("execution.tensor_parallel", tp), ("execution.pipeline_parallel", pp),
            ("generator.nodes_per_leaf", leaf), ("generator.leaves_per_pod", pod or nodes // leaf),
            ("generator.pod_oversubscription", 2 if pod else 1)]


@pytest.mark.parametrize("nodes,tp,pp,leaf,pod", SEVERAL_LEAVES[:2] + SEVERAL_LEAVES[3:4])
def test_where_a_stage_holds_whole_leaves_a_two_node_shift_within_each_leaf_maps_the_run_onto_itself(
        monkeypatch, nodes, tp, pp, leaf, pod):
    """The premise of the shift within leaves: it carries everything the whole refinement
    sees onto itself (the stages are unions of leaves; a data-parallel group spans several
    leaves, its rings carried as multisets), where the shift within each stage's block
    does not (it moves a leaf's nodes under the next leaf)."""
    seen = _captured(monkeypatch, _leaf_sets(nodes, tp, pp, leaf, pod), design="h100_100k")
    within_leaves = _carried(seen, _shift(seen["topology"], nodes, leaf, 2))
    assert within_leaves == dict.fromkeys(within_leaves, True)
    within_stages = _carried(seen, _shift(seen["topology"], nodes, nodes // pp, 2))
    assert not within_stages["graph"] and within_stages["colours"]


def _rotation(topology, by: int):
    """The rails' rotation of a cluster whose node is the switched one with a NIC per GPU on
    rails (h100_100k's: no PCIe tree): GPU place k of every node -> k + ``by`` mod 8 and,
    with it, the rail switches of every tier (rail k is spine index k mod 8), the node's
    fabric switch in place; one step of it (mcdla's translation with blocks)."""
    t = Translation.of(topology.graph, {"D": by, "SP": by}, {"D": 8, "SP": 8})
    assert t is not None and t.order == 8 // by
    return lambda name: t.shift(name, 1)


def _laneless(seen, move) -> bool:
    """Whether ``move`` carries the run's sub-rings onto its sub-rings as multisets when a
    channel's parallel-link index (``A>B:k``'s k) is not told apart."""
    lane = re.compile(r":\d+$")
    rings = [r for _, _, rs in seen["kw"]["groups"] for r in rs]
    return Counter(_ring_key(r, lambda n: lane.sub("", n)) for r in rings) == \
        Counter(_ring_key(r, lambda n: lane.sub("", move(n))) for r in rings)


@pytest.mark.parametrize("nodes,tp,pp,leaf,pod", [SEVERAL_LEAVES[0], SEVERAL_LEAVES[2], SEVERAL_LEAVES[3]])
def test_the_rails_rotation_is_no_automorphism_of_the_derived_rings(monkeypatch, nodes, tp, pp, leaf, pod):
    """Why a 3D run on the fat tree does not refine by the stage shift times the rails'
    rotation (issue 27; docs/performance.md, "Frontier 3D on the fat tree"): the rotation
    (by the tensor size, so that it keeps the tensor groups) carries the graph, the
    capacities, the stage colours, the groups and the pipeline links onto themselves,
    but not the sub-rings the run derives. With tensor 8 they differ only in which
    parallel link of a pair a ring takes (binding picks the least-used one ring after
    ring, and each ring's in-node order differs), so the orbits of the product would be
    no equitable partition of the refinement graph; with tensor 4 the rotation by 4 does
    not even keep the classes."""
    seen = _captured(monkeypatch, _leaf_sets(nodes, tp, pp, leaf, pod), design="h100_100k")
    move = _rotation(seen["topology"], tp % 8 or 1)  # a node's tensor group, or its next one
    carried = _carried(seen, move)
    assert {k for k, v in carried.items() if not v} == ({"rings"} if tp == 8 else {"rings", "classes"})
    assert _laneless(seen, move) == (tp == 8)


@pytest.mark.parametrize("design,sets", [("dgx_h100_4node", _sets(*case)) for case in HANDED] + OTHERS
                         + [("h100_100k", _leaf_sets(*case)) for case in SEVERAL_LEAVES])
def test_the_run_hands_the_quotient_its_shift_and_gets_the_whole_refinements_classes(monkeypatch, design, sets):
    seen = _captured(monkeypatch, sets, design=design)
    shift = seen["kw"]["translation"]
    nodes, pp = dict(sets)["generator.nodes"], dict(sets)["execution.pipeline_parallel"]
    block = min(nodes // pp, dict(sets).get("generator.nodes_per_leaf", nodes))  # a stage's nodes, or a leaf's
    assert shift is not None and shift.order == block // 2
    kw = {k: v for k, v in seen["kw"].items() if k != "translation"}
    topology = seen["topology"]
    handed = by_translation(topology, "bw_aware", kw["rings"], kw["tiers"], shift, colours=kw["colours"],
                            groups=kw["groups"], links=kw["links"](topology.devices))
    assert handed is not None  # the quotient, not the fallback
    whole = _real_rank_classes(topology, "bw_aware", **kw)
    assert handed == whole == seen["symmetry"]
    assert len(whole.device_classes) < len(topology.devices)


@pytest.mark.parametrize("nodes,pp,leaf,batch", [
    (12, 2, 4, 48),  # stages of 6 nodes on leaves of 4: neither holds the other whole
    (10, 2, None, 40),  # stages of 5 nodes: a two-node shift does not close on a stage
    (8, 4, None, 64),  # stages of 2 nodes: too few to shift by two
])
def test_where_the_premise_fails_the_run_keeps_the_whole_refinement(monkeypatch, nodes, pp, leaf, batch):
    seen = _captured(monkeypatch, _sets(nodes, 8, pp, leaf), batch=batch)
    assert seen["kw"]["translation"] is None
    assert seen["kw"]["links"](seen["topology"].devices) and seen["kw"]["groups"]  # a 3D run, refined whole


def test_a_rank_order_that_breaks_the_stages_blocks_is_refined_whole(monkeypatch):
    """Ranks on the devices in reverse: stage 0 on the last nodes, so a stage is not the
    block Megatron's order gives it and no shift within stage blocks is handed over."""
    order = ",".join(f"D{d}" for d in reversed(range(64)))
    seen = _captured(monkeypatch, _sets(8, 4, 2) + [("execution.rank_order", order)])
    assert seen["kw"]["translation"] is None


@pytest.mark.parametrize("nodes,tp,pp,leaf", [(8, 8, 2, None), (8, 4, 2, 4), (16, 4, 2, 4)])
def test_runs_with_the_shift_equal_exact_runs(nodes, tp, pp, leaf):
    """GPT-2 on 64 H100s, a stage of 4 nodes (rails; a fat tree of 4-node leaves), and on
    128 with stages of two leaves (the shift within each leaf): the run refined on the
    quotient by the shift equals the run simulated rank by rank."""
    from test_symmetry import HEADS_16, PIPE, both, differences

    symmetric, exact = both("dgx_h100_4node", "gpt2", batch=64, sets=[*_sets(nodes, tp, pp, leaf), *PIPE, HEADS_16])
    assert differences(symmetric, exact) == []
    assert symmetric["rank_classes"] < exact["rank_classes"] == exact["devices"]


def test_the_quotient_derives_one_groups_rings_and_one_devices_routes_per_orbit():
    """16 nodes, stages of 8 (the shift's order 4), tensor groups of a node: the classes
    derive the sub-rings of two tensor groups a stage (nodes 0 and 1 of its block, 4 of
    its 16) and the pipeline routes of those nodes' devices only; every data-parallel
    group is its own orbit, and the classes read one period of each of its sub-rings
    (mcdla.hw.network.sub_ring_period), none whole; the run then derives the sub-rings
    of the simulated devices' groups whole."""
    topology, workload, execution = load_inputs("dgx_h100_4node", "llama2_7b", _sets(16, 8, 2), batch=64)
    run = Iteration(topology, workload, execution)

    def derived(kind):
        return [n for k, n, _, rings in run.group_rings if k == kind and rings._rings is not None]

    assert derived("tp") == derived("dp") == []  # nothing before the classes are asked for
    run.symmetry  # noqa: B018 (built on first use)
    assert derived("tp") == [0, 1, 8, 9] and derived("dp") == []  # the 16 (8 places x 2 stages) by period
    run._communicators()
    simulated = {c[0] for c in run.symmetry.device_classes}
    assert derived("dp") == [n for k, n, group, _ in run.group_rings if k == "dp" and simulated & set(group)]
    names = topology.devices
    routed = {names[d] for d, pair in run.peers.items() for peer in pair
              if peer is not None and ("pipeline route", names[d], names[peer]) in run.cache}
    assert routed == {f"D{d}" for node in (0, 1, 8, 9) for d in range(8 * node, 8 * node + 8)}


def test_the_cluster_generator_hands_over_its_node_cell_only_where_a_node_is_whole():
    from mcdla.hw.topology import load_topology

    cells = load_topology("dgx_h100_4node", [("generator.nodes_per_leaf", 2)]).node_cells
    assert (dict(cells.per_node), cells.leaf_nodes) == ({"D": 8, "FS": 1, "SW": 4, "CPU": 2}, 2)
    assert load_topology("dgx_h100_4node").node_cells.leaf_nodes == 4  # rails: every node under the rail switches
    assert load_topology("dgx_h100_4node", [("host.sockets", 4)]).node_cells.per_node["CPU"] == 1
    assert load_topology("dgx_h100_4node", [("host.sockets", 2)]).node_cells is None  # a socket across two nodes
    assert load_topology("dgx_h100_4node", [("generator.nics_per_node", 4)]).node_cells is None  # shared NICs


@pytest.mark.parametrize("key", ["node_cells: {D: 1}", "leaf_nodes: 2", "ring_prefixes: [D]", "ring_copies: 1"])
def test_a_hand_written_file_may_not_claim_a_node_cell(tmp_path, key):
    from test_translation import _ring

    from mcdla.errors import InputError
    from mcdla.hw.topology import load_topology

    text = open(_ring(tmp_path, 4)).read()
    listed = tmp_path / "listed.yaml"
    listed.write_text(text.replace("generator: {name: ring, devices: 4, links_per_pair: 3, memory_nodes: true}",
                                   f"devices: 2\nconnections:\n  - [D0, D1, nvlink, 1]\n{key}"))
    with pytest.raises(InputError, match="generators only") as caught:
        load_topology(str(listed))
    assert caught.value.key == key.split(":")[0]


def test_the_per_class_laws_sum_the_per_channel_ones_with_the_shift():
    """A shifted run derives the other groups' rings and lists one route a class: the
    invariants' per-channel law still reads every ring, and summed by class it gives the
    per-class law's bytes (the laws of tests/test_frontier_scale.py, on a run that takes
    the shift: 16 nodes, stages of 8)."""
    import test_frontier_scale

    test_frontier_scale.test_class_expectations_are_the_sums_of_the_per_channel_ones(
        "dgx_h100_4node", "gpt2", 64, [*_sets(16, 8, 2), ("training.virtualization", False),
                                        ("training.micro_batches", 4), ("workload.heads", 16)])


def _read_alike(shift, topology, one, whole) -> None:
    """The quotient's vertex and edges of a sub-ring read by period (``one``: its
    :class:`~mcdla.hw.network.Periods`) are those of the whole sub-ring ``whole``."""
    from mcdla.hw.quotient import Quotient
    from mcdla.hw.symmetry import _ring_edges

    capacities = topology.capacities()
    edges = []
    for ring, reading in ((one.ring, one), (whole, None)):
        q = Quotient(shift)
        vertices = q.vertices(capacities)
        devices = [q.vertex("d", d, ()) for d in topology.devices]
        position = {d: n for n, d in enumerate(topology.devices)}

        def ranks_of(ranks, devices=devices, position=position):
            return [devices[position[r]] for r in ranks]

        assert _ring_edges(q, ring, vertices, ranks_of, capacities, 1, reading) is not None
        names = {n: label for label, n in q.labels.items()}  # the edges by their labels, not the numbers met
        edges.append((q.colours, {(u, names[(key & 0xFFFFFFFF) >> 1], key >> 32): n for u, key, n in
                                  zip(*(a.tolist() for a in q.own_edges()))}))  # (those into a vertex follow)
    assert edges[0] == edges[1]


def _by_period(topology, run, shift):
    """(kind, group, the whole sub-ring, sub_ring_period's reading of it) for every ring of every group."""
    from mcdla.hw.network import sub_ring_period

    for kind, _, group, rings in run.group_rings:
        members = {topology.devices[d] for d in group}
        for ring, whole in zip(rings._through, rings):
            yield kind, group, whole, sub_ring_period(ring, members, whole.name, shift, topology.channels,
                                                      topology.reverse_of(ring))


@pytest.mark.parametrize("nodes,tp,pp,leaf", [(8, 8, 2, None), (16, 4, 2, None), (16, 8, 2, 8), (8, 2, 2, 4)])
def test_a_data_parallel_sub_ring_by_period_is_what_the_classes_read_of_it_whole(nodes, tp, pp, leaf):
    """sub_ring_period under the run's shift (within stages: one block, the sub-ring
    itself one run): every rank, latency and link home of the whole sub-ring, its hop
    count, its first period's ranks and fabric roles; its segments the first period's over
    the rail (every hop where a node holds one member, tensor 8), the hops through a node's
    switch (two members a node, tensor 4 or 2) read whole; the quotient's vertex and edges
    of it equal those of the whole sub-ring. A tensor group's has none (the shift moves it)."""
    topology, workload, execution = load_inputs("dgx_h100_4node", "llama2_7b", _sets(nodes, tp, pp, leaf), batch=64)
    run = Iteration(topology, workload, execution)
    shift = run._stage_shift()
    assert shift is not None
    checked = 0
    for kind, group, whole, found in _by_period(topology, run, shift):
        if kind == "tp":
            assert found is None
            continue
        per = whole.size // shift.order
        assert (found.ring.ranks, found.ring.latency_s, found.ring.home_out, found.ring.home_in, found.ring.node) == \
            (whole.ranks, whole.latency_s, whole.home_out, whole.home_in, whole.node)
        assert found.hops == len(whole.channels) and found.ranks == whole.ranks[:per]
        assert all(names == getattr(whole, role)[:per] for role, names in found.roles.items())
        if tp == 8:  # every hop over the rail: the first period's segments, nothing read whole
            assert found.ring.segments == whole.segments[:per] and not +found.rest
        else:  # the hops through a node's switch read whole, the rest over the rail
            home = [s for i, s in enumerate(whole.segments)
                    if s == (whole.home_out[i], whole.home_in[i + 1 - whole.size])]
            assert home and Counter(found.rest) == Counter(c for s in home for c in s)
        _read_alike(shift, topology, found, whole)
        checked += 1
    assert checked == len([g for g in run.group_rings if g[0] == "dp"]) * len(topology.rings)


@pytest.mark.parametrize("nodes,tp,pp,leaf,pod", [SEVERAL_LEAVES[0], SEVERAL_LEAVES[2], SEVERAL_LEAVES[3]])
def test_a_data_parallel_sub_ring_over_several_leaves_is_read_by_leaf(nodes, tp, pp, leaf, pod):
    """Where a stage holds several leaves (the shift within each leaf; 128-256 GPUs,
    stages of 2 leaves and of 2 pods, tensor 8 and 4), a data-parallel sub-ring is read by
    leaf (issue 27): each leaf's run by period, the hops between leaves whole, less the
    rail hops that would close each leaf's run; the ranks, latencies, links home and hop
    count are the whole sub-ring's, and the quotient's vertex and edges of it (of two
    groups' rings, for time) equal those of the whole sub-ring."""
    topology, workload, execution = load_inputs("h100_100k", "llama2_7b", _leaf_sets(nodes, tp, pp, leaf, pod),
                                                batch=64)
    run = Iteration(topology, workload, execution)
    shift = run._stage_shift()
    assert shift is not None and shift.order == leaf // 2
    checked = 0
    for kind, group, whole, found in _by_period(topology, run, shift):
        if kind == "tp":
            continue
        leaves = len({shift.block(topology.devices[d]) for d in group})
        assert leaves == nodes // pp // leaf > 1  # a group over several leaves
        assert (found.ring.ranks, found.ring.latency_s, found.ring.home_out, found.ring.home_in) == \
            (whole.ranks, whole.latency_s, whole.home_out, whole.home_in)
        assert found.hops == len(whole.channels) and len(found.ranks) == whole.size // shift.order
        above = Counter(c for c in whole.channels if not re.match(r"D\d+>|.*>D\d+:", c))  # between switches
        assert above and all(found.rest[c] == n for c, n in above.items())  # the hops between leaves, read whole
        if checked < 2 * len(topology.rings):
            _read_alike(shift, topology, found, whole)
        checked += 1
    assert checked == len([g for g in run.group_rings if g[0] == "dp"]) * len(topology.rings)


def test_a_sub_ring_the_shift_does_not_carry_by_leaf_is_derived_whole():
    """The check where the reading by leaf is used: a leaf's run that the shift does not
    carry onto itself (a data-parallel group without one of its nodes: a leaf's run of an
    odd number of nodes) has no reading by period, and the classes get the whole sub-ring
    (GroupRings.by_period: today's path)."""
    topology, workload, execution = load_inputs("h100_100k", "llama2_7b", _leaf_sets(16, 4, 2, 4, None), batch=64)
    run = Iteration(topology, workload, execution)
    shift = run._stage_shift()
    kind, _, group, rings = next(g for g in run.group_rings if g[0] == "dp")
    members = [topology.devices[d] for d in group]
    cut = training.GroupRings(topology, rings._through, members[2:], "cut", run.cache)  # node 0 dropped
    from mcdla.hw.network import sub_ring, sub_ring_period

    ring = rings._through[0]
    assert sub_ring_period(ring, members[2:], "x", shift, topology.channels, topology.reverse_of(ring)) is None
    read = cut.by_period(shift)
    assert all(reading is None for _, reading in read)
    derived = [sub_ring(r, members[2:], "x", topology.reverse_of(r), topology.channels) for r in rings._through]
    assert [r.segments for r, _ in read] == [r.segments for r in derived]
    whole = training.GroupRings(topology, rings._through, members, "whole", run.cache)
    assert all(reading is not None for _, reading in whole.by_period(shift))


def test_a_reading_whose_hops_read_whole_are_no_whole_orbits_is_refused():
    """The quotient's own check of a sub-ring read by leaf: what is read whole (the hops
    through a node's switch and between leaves, less the closing ones) must hold every
    member of each orbit it touches equally often. One hop more on one GPU's uplink (a
    sub-ring the shift would not carry onto itself) and _ring_edges refuses the reading
    (the run is then refined whole), where the reading as derived is accepted."""
    from mcdla.hw.quotient import Quotient
    from mcdla.hw.symmetry import _ring_edges

    topology, workload, execution = load_inputs("h100_100k", "llama2_7b", _leaf_sets(16, 4, 2, 4, None), batch=64)
    run = Iteration(topology, workload, execution)
    shift = run._stage_shift()
    _, group, whole, found = next(g for g in _by_period(topology, run, shift) if g[0] == "dp")
    capacities = topology.capacities()
    uplink = next(c for c in whole.channels if re.match(r"D\d+>SP", c))  # a GPU's to its rail's leaf
    more = Counter(found.rest)
    more.update([uplink])  # (Counter's + would drop the closing hops' -1s)
    for rest, accepted in ((found.rest, True), (more, False)):
        q = Quotient(shift)
        vertices = q.vertices(capacities)
        devices = [q.vertex("d", d, ()) for d in topology.devices]
        position = {d: n for n, d in enumerate(topology.devices)}
        reading = found._replace(rest=rest)
        got = _ring_edges(q, found.ring, vertices, lambda ranks: [devices[position[r]] for r in ranks],
                          capacities, 1, reading)
        assert (got is not None) == accepted


def test_the_one_pass_keys_under_the_stage_shift_are_the_orbits():
    """Translation.keys (parallel links' keys from their pair's, found once) under a 3D
    run's shift on a cluster of 18 links a GPU to its node's switch and NICs on rails:
    each name's orbit key as Translation.orbit gives it."""
    topology, workload, execution = load_inputs("dgx_h100_4node", "llama2_7b", _sets(8, 8, 2), batch=64)
    shift = Iteration(topology, workload, execution)._stage_shift()
    names = list(topology.capacities()) + list(topology.graph)
    keys = shift.keys(names)
    assert keys == {name: shift.orbit(name)[0] for name in names}
    members = Counter(keys.values())  # an orbit of the order's names each, of one a name that stays put
    assert all(n == shift.size(key) for key, n in members.items()) and len(members) < len(keys)
