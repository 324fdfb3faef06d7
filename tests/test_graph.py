"""mcdla.hw.graph against networkx: the same nodes, edges and shortest paths."""

from __future__ import annotations

import random

import networkx
import pytest

from mcdla.hw import graph as light
from mcdla.hw.topology import load_topology


def _pair(seed: int, nodes: int = 14, edges: int = 30):
    rng = random.Random(seed)
    a, b = light.MultiDiGraph(), networkx.MultiDiGraph()
    names = [f"n{i}" for i in rng.sample(range(100), nodes)]
    for n in names:
        kind = rng.choice(["device", "switch", "memory"])
        a.add_node(n, kind=kind)
        b.add_node(n, kind=kind)
    for _ in range(edges):
        u, v = rng.sample(names, 2)
        assert a.add_edge(u, v, w=1) == b.add_edge(u, v, w=1)
    return a, b, names


@pytest.mark.parametrize("seed", range(40))
def test_the_same_graph_and_the_same_shortest_paths_as_networkx(seed):
    a, b, names = _pair(seed)
    assert list(a.nodes) == list(b.nodes)
    assert list(a.nodes(data="kind")) == list(b.nodes(data="kind"))
    for u in names:
        assert list(a.successors(u)) == list(b.successors(u))
        for v in names:
            assert a.has_edge(u, v) == b.has_edge(u, v)
            assert a.number_of_edges(u, v) == b.number_of_edges(u, v)
            if a.has_edge(u, v):
                assert dict(a[u][v]) == dict(b[u][v])
    keep = [n for n in names if a.nodes[n]["kind"] != "memory"] + names[:2]
    sa, sb = a.subgraph(keep), b.subgraph(keep)
    for u in names[:6]:
        for v in names[-6:]:
            if u not in sa or v not in sa:
                continue
            try:
                want = networkx.shortest_path(sb, u, v)
            except networkx.NetworkXNoPath:
                with pytest.raises(light.NetworkXNoPath):
                    light.shortest_path(sa, u, v)
                continue
            assert light.shortest_path(sa, u, v) == want


@pytest.mark.parametrize("name", ["ring", "dc", "hc", "star", "dgx1v", "oracle"])
def test_a_shipped_topology_converts_to_networkx_unchanged(name):
    topo = load_topology(name)
    real = topo.graph.to_networkx()
    assert list(real.nodes(data="kind")) == list(topo.graph.nodes(data="kind"))
    assert sorted(real.edges(keys=True)) == sorted(
        (u, v, k) for u in topo.graph for v in topo.graph[u] for k in topo.graph[u][v])
