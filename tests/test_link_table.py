"""The channels held once (mcdla.hw.wiring, docs/performance.md "The 131,072-GPU points:
loading held once"): the graph's edges carry their link type in one read-only mapping per
type, and every channel is found in the table by its id; the graph is networkx's own
structure, as ``add_edge`` builds it, node order, successor order and keys alike."""

from __future__ import annotations

import pickle

import networkx as nx
import pytest

from mcdla.hw.network import channel_id
from mcdla.hw.topology import load_topology

# A fat tree of 8 DGX H100 nodes on leaves of 4 (three switch tiers of links, 18 NVLinks
# a GPU to its NVSwitch), and a ring of devices and memory-nodes with parallel links.
DESIGNS = [("dgx_h100_4node", [("generator.nodes", 8), ("host.sockets", 16), ("generator.nodes_per_leaf", 4)]),
           ("mcdla_scaleout", [("generator.nodes", 2)])]


@pytest.fixture(scope="module", params=DESIGNS, ids=[d for d, _ in DESIGNS])
def topology(request):
    return load_topology(*request.param)


def test_every_edge_is_one_channel_of_the_table_and_every_channel_an_edge(topology):
    graph, table = topology.graph, topology.channels
    edges = list(graph.edges(keys=True))
    assert len(edges) == len(table) > 0
    for a, b, k in edges:
        channel = table[channel_id(a, b, k)]
        assert (channel.id, channel.src, channel.dst) == (channel_id(a, b, k), a, b)
        assert channel.bw_Bps > 0 and channel.latency_s >= 0
        back = table[channel_id(b, a, k)]  # full duplex: the other direction, the same rate
        assert back.bw_Bps == channel.bw_Bps


def test_a_link_types_edges_share_one_read_only_attribute_mapping(topology):
    graph = topology.graph
    by_type: dict[str, set[int]] = {}
    for _a, _b, data in graph.edges(data=True):
        by_type.setdefault(data["link_type"], set()).add(id(data))
    assert set(by_type) == {alias for _a, _b, alias, _n in topology.physical_links}
    assert all(len(ids) == 1 for ids in by_type.values())  # one mapping a type, not a dict an edge
    a, b, k = next(iter(graph.edges(keys=True)))
    with pytest.raises(TypeError):
        graph[a][b][k]["link_type"] = "other"  # it would be every edge's of the type


def test_pairs_of_one_connection_share_their_key_mapping_and_the_graph_is_read_only(topology):
    graph = topology.graph
    pairs = [(a, b) for a, nbrs in graph.succ.items() for b in nbrs]
    shared = {id(graph.succ[a][b]._atlas) for a, b in pairs}
    assert len(shared) < len(pairs) / 4  # a mapping a link type and count, not a dict a pair
    for a, b in pairs:
        assert graph.succ[a][b]._atlas is graph.pred[b][a]._atlas  # both ends' views of one mapping, as networkx's
    a, b = pairs[0]
    with pytest.raises(TypeError):
        graph.add_edge(a, b, key=99)  # a new link on a shared pair would be every alike pair's


def test_the_graph_is_networkx_own_structure(topology):
    """The same nodes, successors, predecessors and keys, in the same order, as a graph of
    the same links built edge by edge with networkx's add_edge (link k of a connection one
    way, then the other)."""
    graph = topology.graph
    reference = nx.MultiDiGraph()
    reference.add_nodes_from(graph.nodes(data=True))
    for a, b, alias, count in topology.physical_links:
        first = reference.number_of_edges(a, b)
        for k in range(first, first + count):
            reference.add_edge(a, b, key=k, link_type=alias)
            reference.add_edge(b, a, key=k, link_type=alias)
    for mine, theirs in ((graph.succ, reference.succ), (graph.pred, reference.pred)):
        assert list(mine) == list(theirs)
        for node in theirs:
            assert [(n, list(keyed), [d["link_type"] for d in keyed.values()]) for n, keyed in mine[node].items()] \
                == [(n, list(keyed), [d["link_type"] for d in keyed.values()]) for n, keyed in theirs[node].items()]
    assert graph.number_of_edges() == reference.number_of_edges()
    for u, v in list(reference.edges())[:50]:  # networkx's own readings of the structure
        assert nx.shortest_path(graph, u, v) == nx.shortest_path(reference, u, v)


def test_the_fabric_reads_each_channel_from_the_table(topology):
    """A ring's link is the table's own id (the one string a channel), ring ``number``
    modulo the parallel links."""
    fabric, table = topology.fabric, topology.channels
    a, b, _k = next((a, b, k) for a, b, k in topology.graph.edges(keys=True) if topology.graph.number_of_edges(a, b) > 1)
    links = topology.graph.number_of_edges(a, b)
    for number in range(2 * links + 1):
        found = fabric.link(a, b, number)
        assert found is table[channel_id(a, b, number % links)].id


@pytest.mark.parametrize("sets,periodic", [([("generator.nodes_per_leaf", 4)], False), ([], True)])
def test_a_rings_links_are_the_tables_own_ids(sets, periodic):
    """Binding names each link home it chooses, and each hop of a ring bound hop by hop,
    by the table's own string (one a channel, not one a ring's rank; a ring bound by
    period names its hops itself); a rank's latencies are its segment's channels' summed."""
    topology = load_topology("dgx_h100_4node", [("generator.nodes", 8), ("host.sockets", 16), *sets])
    table = topology.channels
    assert all(bool(ring.period) is periodic for ring in topology.rings)
    for ring in topology.rings:
        own = set(ring.channels) if periodic else set()  # the ring's hops, its links home where it takes them
        chosen = [c for c in (*ring.home_out, *ring.home_in) if c not in own]
        assert chosen
        for c in (*chosen, *(() if periodic else ring.channels)):
            assert c is table[c].id
        for segment, latency in zip(ring.segments, ring.latency_s):
            assert latency == pytest.approx(sum(table[c].latency_s for c in segment), rel=1e-12)


def test_the_topology_pickles_with_its_shared_mappings(topology):
    """A loaded topology (its graph, rings and fabric) pickles, as before the mappings were
    shared: the same edges, still one attribute mapping a link type."""
    copy = pickle.loads(pickle.dumps(topology))
    assert list(copy.graph.edges(keys=True, data="link_type")) == list(topology.graph.edges(keys=True, data="link_type"))
    assert len({id(data) for *_e, data in copy.graph.edges(data=True)}) == len(
        {alias for _a, _b, alias, _n in topology.physical_links})
    assert [r.segments for r in copy.rings] == [r.segments for r in topology.rings]
