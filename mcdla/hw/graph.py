"""The part of networkx's API that mcdla's topologies use, without importing networkx.

Importing networkx costs 50-200 ms (it loads every algorithm it has), a third of a
short ``mcdla sim``; a topology needs only a directed multigraph with node
attributes and one unweighted shortest path. :class:`MultiDiGraph` keeps the
networkx names and behaviour for what it offers (nodes in insertion order,
neighbours in insertion order, parallel edges keyed 0, 1, ...), and
:func:`shortest_path` is networkx's bidirectional breadth-first search, step for
step, so that a route chosen among several shortest ones is the one networkx would
choose. :meth:`MultiDiGraph.to_networkx` gives a real networkx graph for anything
else (drawing, analysis).
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Iterator, Mapping

__all__ = ["MultiDiGraph", "NetworkXNoPath", "shortest_path"]


class NetworkXNoPath(Exception):
    """No path between two nodes (networkx's exception of the same name)."""


class _NodeView(Mapping):
    """``graph.nodes``: iterate the nodes, ``nodes[n]`` its attributes, ``nodes(data="kind")``
    (node, attribute) pairs."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: dict):
        self._nodes = nodes

    def __getitem__(self, node):
        return self._nodes[node]

    def __iter__(self):
        return iter(self._nodes)

    def __len__(self):
        return len(self._nodes)

    def __contains__(self, node):
        return node in self._nodes

    def __call__(self, data: bool | str = False, default: Any = None):
        if data is False:
            return iter(self._nodes)
        if data is True:
            return iter(self._nodes.items())
        return ((n, attrs.get(data, default)) for n, attrs in self._nodes.items())


class MultiDiGraph:
    """A directed multigraph: ``add_node``, ``add_edge`` (parallel edges keyed 0, 1, ...),
    ``nodes``, ``graph[u][v]`` (edge key -> attributes), ``successors``,
    ``predecessors``, ``has_edge``, ``number_of_edges``, ``subgraph``; ``graph.graph``
    holds graph attributes."""

    def __init__(self) -> None:
        self.graph: dict[str, Any] = {}
        self._node: dict[Hashable, dict[str, Any]] = {}
        self._succ: dict[Hashable, dict[Hashable, dict[Any, dict[str, Any]]]] = {}
        self._pred: dict[Hashable, dict[Hashable, dict[Any, dict[str, Any]]]] = {}

    # -- building -----------------------------------------------------------------

    def add_node(self, node: Hashable, **attrs: Any) -> None:
        if node not in self._node:
            self._node[node] = {}
            self._succ[node] = {}
            self._pred[node] = {}
        self._node[node].update(attrs)

    def add_edge(self, u: Hashable, v: Hashable, key: Any = None, **attrs: Any) -> Any:
        for node in (u, v):
            if node not in self._node:
                self.add_node(node)
        keys = self._succ[u].get(v)
        if keys is None:
            keys = self._succ[u][v] = {}
            self._pred[v][u] = keys  # one dict, seen from both ends
        if key is None:  # networkx's new_edge_key: the lowest unused integer from len(keys)
            key = len(keys)
            while key in keys:
                key += 1
        keys.setdefault(key, {}).update(attrs)
        return key

    # -- reading ------------------------------------------------------------------

    @property
    def nodes(self) -> _NodeView:
        return _NodeView(self._node)

    @property
    def succ(self) -> Mapping:
        return self._succ

    @property
    def pred(self) -> Mapping:
        return self._pred

    def is_directed(self) -> bool:
        return True

    def __contains__(self, node) -> bool:
        try:
            return node in self._node
        except TypeError:  # an unhashable thing is no node
            return False

    def __iter__(self) -> Iterator:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __getitem__(self, node) -> Mapping:
        return self._succ[node]

    def successors(self, node) -> Iterator:
        return iter(self._succ[node])

    def predecessors(self, node) -> Iterator:
        return iter(self._pred[node])

    def has_edge(self, u, v, key: Any = None) -> bool:
        keys = self._succ.get(u, {}).get(v)
        if keys is None:
            return False
        return key is None or key in keys

    def number_of_edges(self, u=None, v=None) -> int:
        if u is None:
            return sum(len(keys) for nbrs in self._succ.values() for keys in nbrs.values())
        keys = self._succ.get(u, {}).get(v)
        return 0 if keys is None else len(keys)

    def number_of_nodes(self) -> int:
        return len(self._node)

    def subgraph(self, nodes: Iterable[Hashable]) -> "MultiDiGraph":
        """The induced subgraph of ``nodes`` (a copy; node and neighbour order kept)."""
        keep = set(nodes)
        sub = MultiDiGraph()
        sub.graph = self.graph
        for n, attrs in self._node.items():
            if n in keep:
                sub._node[n] = attrs
                sub._succ[n] = {}
                sub._pred[n] = {}
        for u in sub._node:
            for v, keys in self._succ[u].items():
                if v in keep:
                    sub._succ[u][v] = keys
        for v in sub._node:
            for u, keys in self._pred[v].items():
                if u in keep:
                    sub._pred[v][u] = keys
        return sub

    def to_networkx(self):
        """The same graph as a :class:`networkx.MultiDiGraph` (imports networkx)."""
        import networkx

        graph = networkx.MultiDiGraph(**self.graph)
        for n, attrs in self._node.items():
            graph.add_node(n, **attrs)
        for u, nbrs in self._succ.items():
            for v, keys in nbrs.items():
                for key, attrs in keys.items():
                    graph.add_edge(u, v, key=key, **attrs)
        return graph


def shortest_path(graph: MultiDiGraph, source: Hashable, target: Hashable) -> list:
    """An unweighted shortest path from ``source`` to ``target``: networkx's
    ``bidirectional_shortest_path``, the same search in the same order."""
    for node in (source, target):
        if node not in graph:
            raise NetworkXNoPath(f"node {node!r} is not in the graph")
    if source == target:
        return [source]
    gsucc, gpred = graph.succ, graph.pred
    pred: dict = {source: None}
    succ: dict = {target: None}
    forward, reverse = [source], [target]
    meet = None
    while forward and reverse and meet is None:
        if len(forward) <= len(reverse):
            level, forward = forward, []
            for v in level:
                for w in gsucc[v]:
                    if w not in pred:
                        forward.append(w)
                        pred[w] = v
                    if w in succ:
                        meet = w
                        break
                if meet is not None:
                    break
        else:
            level, reverse = reverse, []
            for v in level:
                for w in gpred[v]:
                    if w not in succ:
                        succ[w] = v
                        reverse.append(w)
                    if w in pred:
                        meet = w
                        break
                if meet is not None:
                    break
    if meet is None:
        raise NetworkXNoPath(f"No path between {source} and {target}.")
    path = []
    w = meet
    while w is not None:
        path.append(w)
        w = pred[w]
    path.reverse()
    w = succ[path[-1]]
    while w is not None:
        path.append(w)
        w = succ[w]
    return path
