"""A cluster's rings bound by period (docs/performance.md, "GPT-3 on 16,384 H100s: the
per-node passes"): when the cluster generator's node cell shifted two nodes over all the
nodes is a translation (rails: one leaf holds every node), each derived ring's links and
each rank's links home are chosen for one period and repeated; they are the links binding
hop by hop and rank by rank chooses. Where the leaves are smaller (a fat tree), the cluster
binds hop by hop as before."""

from __future__ import annotations

import pytest

from mcdla.hw import binding
from mcdla.hw.topology import load_topology


def _bound(topology) -> list[tuple]:
    """What binding gives each ring: its links hop by hop and its ranks' ways home."""
    return [(r.name, r.ranks, r.segments, r.latency_s, r.switch_out, r.switch_in, r.home_out, r.home_in, r.node,
             r.number) for r in topology.rings]


def _sets(nodes, leaf=None):
    return [("generator.nodes", nodes), ("host.sockets", 2 * nodes)] + \
        ([("generator.nodes_per_leaf", leaf)] if leaf else [])


# (design, sets, bound by period): rails of 4-16 DGX H100 nodes; memory-nodes on each
# node's switch; DGX A100; fat trees (leaves of 4 and 8 nodes: hop by hop).
CASES = [("dgx_h100_4node", _sets(4), True), ("dgx_h100_4node", _sets(6), True),
         ("dgx_h100_4node", _sets(16), True), ("dgx_h100_4node", _sets(16, 8), False),
         ("dgx_h100_4node", _sets(8, 4), False), ("dgx_a100_cluster", _sets(8), True),
         ("mcdla_scaleout", [("generator.nodes", 8)], True), ("dgx_h100_4node", _sets(2), False)]


@pytest.mark.parametrize("design,sets,periodic", CASES)
def test_a_clusters_rings_bound_by_period_take_the_links_binding_hop_by_hop_takes(monkeypatch, design, sets,
                                                                                 periodic):
    repeated = []
    real = binding._repeat_home
    monkeypatch.setattr(binding, "_repeat_home", lambda *a: repeated.append(a[2]) or real(*a))
    topology = load_topology(design, sets)
    assert topology.translation is None  # binding's shift only: the run picks its own
    assert all(ring.period for ring in topology.rings) is periodic
    assert bool(repeated) is periodic  # the links home chosen for one period and repeated
    by_period = _bound(topology)
    monkeypatch.setattr(binding, "_periods", lambda translation, cycles: None)
    assert by_period == _bound(load_topology(design, sets))


def test_links_home_by_period_only_where_each_period_takes_them_alike():
    """Rings not all bound by period under one translation, or a ring whose ranks take
    their own links home in one period and not in another, choose rank by rank."""
    rings = list(load_topology("dgx_h100_4node", _sets(8)).rings)  # (each rank's links home filled by now)
    t = rings[0].period[0]
    assert binding._home_period(rings) == (t, rings[0].size // t.order)
    import dataclasses

    assert binding._home_period([dataclasses.replace(rings[0], period=()), *rings[1:]]) == (None, 0)
    own = list(rings[0].home_out)
    own[-1] = ""  # the last period's last rank leaves its link home to choose, the first period's not
    assert binding._home_period([dataclasses.replace(rings[0], home_out=tuple(own)), *rings[1:]]) == (None, 0)


def test_the_whole_cycle_check_passes_exactly_the_cycles_the_node_by_node_check_passes():
    """binding._fine_cycle (the check in a few passes) passes a derived ring and fails each
    defect the node-by-node check names (it then runs, for the message)."""
    from mcdla.config.schema import Where
    from mcdla.errors import InputError

    topology = load_topology("dgx_h100_4node", _sets(4))
    fab, cycle = topology.fabric, list(topology.ring_cycles[0])
    assert binding._fine_cycle(fab, cycle)
    device = next(n for n in cycle if fab.kinds[n] == "device")
    other = next(n for n in cycle if fab.kinds[n] == "device" and n != device)
    socket = next(n for n, kind in fab.kinds.items() if kind not in ("device", "switch", "memory_node")
                  and n not in cycle)
    bad = [cycle[:1] + ["nowhere"] + cycle[1:], cycle[:1] + [7] + cycle[1:], [*cycle, device],
           [other if n == device else n for n in cycle], cycle[:1] + [socket] + cycle[1:], [device, other]]
    for defect in bad:
        assert not binding._fine_cycle(fab, defect)
        with pytest.raises(InputError):
            binding._check_cycle(fab, defect, Where("t.yaml", "rings"))


def test_the_rail_ways_kept_per_pair_are_the_ways_found_each_time():
    """Fabric.rail_channels (each pair's way found once, its channels kept per choice of
    parallel links) gives what up_and_over and channels give for any pair and ring
    number, on rails and on fat trees (with two NICs a device: 2 and 8 links a hop)."""
    two = [("generator.nics_per_device", 2)]
    for design, sets in (("dgx_h100_4node", _sets(8)), ("dgx_h100_4node", _sets(8, 4)),
                         ("dgx_h100_4node", _sets(8, 4) + two), ("dgx_h100_4node", _sets(8) + two),
                         ("mcdla_scaleout", [("generator.nodes", 4)]), ("dgx_a100_cluster", _sets(4))):
        fab = load_topology(design, sets).fabric
        devices = [n for n, kind in fab.kinds.items() if kind == "device"]
        for number in (0, 1, 2, 3, 7):
            for a in devices[::3]:
                for b in devices[::5]:
                    way = fab.up_and_over(a, b) if fab.exit(a) else None
                    expected = fab.channels((a, *way, b), number) if way is not None else None
                    assert fab.rail_channels(a, b, number) == expected
                    assert fab.rail_channels(a, b, number) == expected  # kept: the same again


class _Heaps(binding._LinkUsage):
    """Binding's usage without the fold: a heap per pair from the start, and the links home
    counted from every ring's channels."""

    def take_ring(self, layout):
        return self.take_each(layout.pairs)

    def counts(self):
        return None


# Fat trees of 128-512 GPUs whose leaves hold not every node (bound hop by hop): leaves of
# 4 and 8 nodes, one and several pods; the 3D runs' stages span several of them.
FAT_TREES = [("h100_100k", [("generator.nodes", 16), ("generator.nodes_per_leaf", 4), ("generator.leaves_per_pod", 4),
                            ("generator.pod_oversubscription", 1)]),
             ("h100_100k", [("generator.nodes", 32), ("generator.nodes_per_leaf", 8), ("generator.leaves_per_pod", 2),
                            ("generator.pod_oversubscription", 2)]),
             ("h100_100k", [("generator.nodes", 64), ("generator.nodes_per_leaf", 4), ("generator.leaves_per_pod", 4),
                            ("generator.pod_oversubscription", 2)]),
             ("dgx_h100_4node", _sets(16, 8))]


@pytest.mark.parametrize("design,sets", FAT_TREES)
def test_rings_bound_by_counts_per_pair_take_the_links_heaps_per_pair_take(monkeypatch, design, sets):
    """Binding's round robin (a count per pair, a ring's hops taken in one array pass, the
    links home counted from it) binds every ring and link home as heaps per pair do, on
    fat trees bound hop by hop."""
    folded = load_topology(design, sets)
    assert not any(ring.period for ring in folded.rings)
    monkeypatch.setattr(binding, "_RoundRobin", _Heaps)
    assert _bound(folded) == _bound(load_topology(design, sets))


class _Pairs:
    """A layout as take_ring reads it: its pairs, each once."""

    def __init__(self, pairs) -> None:
        self.pairs = pairs


def test_the_round_robin_takes_what_heaps_take_and_goes_on_as_a_heap_where_a_take_excludes_links():
    """A pair taken with links excluded (a ring crossing it twice) goes on as its heap, made
    from its count; links not numbered 0 .. L - 1 are taken pair by pair; every choice,
    and the counts handed to the links home, are the heaps' all along."""
    succ = {"A": {"B": {0: 0, 1: 0, 2: 0}, "C": {0: 0}}, "B": {"A": {3: 0, 5: 0}, "C": {0: 0, 1: 0}}}
    ring, other = _Pairs([("A", "B"), ("B", "C"), ("A", "C")]), _Pairs([("B", "A"), ("A", "B")])
    steps = [("ring", ring), ("ring", other), ("take", ("A", "B", {1})), ("ring", ring), ("ring", ring),
             ("each", [("B", "C"), ("B", "A")]), ("take", ("A", "B", {0, 1, 2})), ("ring", other), ("ring", ring),
             ("take", ("B", "C", None)), ("ring", ring)]
    folded, heaps = binding._RoundRobin(succ), binding._LinkUsage(succ)
    for what, arg in steps:
        if what == "ring":
            assert folded.take_ring(arg) == heaps.take_each(arg.pairs)
        elif what == "each":
            assert folded.take_each(arg) == heaps.take_each(arg)
        else:
            assert folded.take(*arg) == heaps.take(*arg)
    assert folded._taken[folded._number[("A", "B")]] == -1  # went on as its heap
    taken = folded.counts()
    for (src, dst), heap in heaps._heaps.items():
        links = sorted(succ[src][dst])
        assert taken.pair(src, dst, links) == [dict((k, c) for c, k in heap)[k] for k in links]
    assert taken.pair("C", "A", [0]) == [0]  # never taken
