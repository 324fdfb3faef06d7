"""The simulator's bounded caches (components and max-min solutions of the flow
network, NCCL's tuned protocols) only save work: emptied at every chance, a run gives
the same results to the bit, on the flow network's dict and numpy paths."""

from __future__ import annotations

import json
import math

import pytest

import mcdla.sim.flownet as flownet
from mcdla.run import simulate
from mcdla.sim.nccl_collectives import NcclAlgorithm

RUNS = [
    ("ring", "resnet34", []),  # the paper's ring, offload and all-reduce on one network
    ("dgx_h100", "gpt2", [("execution.tensor_parallel", 2)]),  # NCCL's tuning, tensor groups
]


def run(topology, workload, sets):
    result = simulate(topology, "bw_aware", workload, "data", 64, list(sets), budget=math.inf)
    result.pop("wall_s")
    return json.dumps(result, sort_keys=True)


@pytest.mark.parametrize("vector", [False, True], ids=["dict", "numpy"])
@pytest.mark.parametrize("topology, workload, sets", RUNS, ids=[r[0] for r in RUNS])
def test_caches_bounded_to_nothing_give_the_same_run(topology, workload, sets, vector, monkeypatch):
    if vector:  # the numpy path of large networks, on a small one
        monkeypatch.setattr(flownet, "VECTOR_RESOURCES", 1)
    cached = run(topology, workload, sets)
    monkeypatch.setattr(flownet, "_SOLVED_FLOWS", 1)  # every new solve empties the caches
    monkeypatch.setattr(flownet, "_LOADS_PER_COMPONENT", 0)
    monkeypatch.setattr(NcclAlgorithm, "_TUNED_MAX", 1)
    assert run(topology, workload, sets) == cached


@pytest.mark.parametrize("topology, workload, sets", RUNS, ids=[r[0] for r in RUNS])
def test_the_numpy_path_gives_the_dict_paths_run(topology, workload, sets, monkeypatch):
    """Networks of VECTOR_RESOURCES resources and more keep loads in numpy arrays; the
    same flows give the same bits either way."""
    small = run(topology, workload, sets)
    monkeypatch.setattr(flownet, "VECTOR_RESOURCES", 1)
    assert run(topology, workload, sets) == small


def test_a_phases_paths_classified_once_per_sequence_of_classes_give_the_same_run(monkeypatch):
    """GPT-2 on 128 H100s, tensor 4 and 2 stages on a fat tree of 4-node leaves (two
    tensor ranks a node, as GPT-3's frontier points): a phase's flows, one per rank or
    domain, classified once per sequence of classes (PathClasses.by_sequence) give the
    run of each flow classified afresh, to the bit, and both the run rank by rank."""
    from test_symmetry import HEADS_16, PIPE, differences

    from mcdla.sim.flownet import FlowNetwork
    from mcdla.sim.flowpaths import PathClasses

    sets = [("generator.nodes", 16), ("host.sockets", 32), ("execution.tensor_parallel", 4),
            ("execution.pipeline_parallel", 2), ("generator.nodes_per_leaf", 4), *PIPE, HEADS_16]
    new_path, calls = FlowNetwork._new_path, []

    def counted(self, path, copies=1, even=True):
        calls.append(len(path))
        return new_path(self, path, copies, even)

    monkeypatch.setattr(FlowNetwork, "_new_path", counted)
    folded, folded_calls = run("dgx_h100_4node", "gpt2", sets), len(calls)
    calls.clear()
    monkeypatch.setattr(PathClasses, "by_sequence", lambda self, path, number: number(path))
    assert run("dgx_h100_4node", "gpt2", sets) == folded
    assert folded_calls < len(calls)  # the fold classified fewer paths
    exact = json.loads(run("dgx_h100_4node", "gpt2", [*sets, ("execution.exact", True)]))
    symmetric = json.loads(folded)
    assert differences(symmetric, exact) == [] and symmetric["rank_classes"] < exact["rank_classes"]
