"""``mcdla collective`` on a cluster simulates its ranks once per class (the quotient by
the cluster's node shift, as a training run's), with the same times and flows as every
rank simulated (``--exact``), in fewer events; where a rank is singled out (a
broadcast's root; NCCL's tuner, which may pick a tree across machines) or the design is
no cluster of node cells, every rank is simulated. (A skewed all-to-allv's hot rank is
singled out too: no algorithm runs one across machines yet.)"""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main
from mcdla.run import simulate_collective

# 2,048 GPUs (64 nodes, two leaves of 32) of the 100,000-GPU preset, and four DGX H100.
FAT_TREE = ("h100_100k", (("generator.nodes", 64), ("generator.leaves_per_pod", 2),
                          ("generator.pod_oversubscription", 1)))
RAILS = ("dgx_h100_4node", (("generator.nodes", 4),))


def _both(design, op, algorithm, **kw):
    topology, sets = design
    by_class = simulate_collective(op, "64MB", topology=topology, sets=sets, algorithm=algorithm, **kw)
    every = simulate_collective(op, "64MB", topology=topology, sets=sets, algorithm=algorithm, exact=True, **kw)
    return by_class, every


@pytest.mark.parametrize("design, op, algorithm", [
    (FAT_TREE, "all_reduce", "hierarchical"),
    (FAT_TREE, "all_gather", "hierarchical"),
    (FAT_TREE, "all_to_all", "hierarchical"),
    (FAT_TREE, "all_to_all", "nccl_ring"),
    (RAILS, "reduce_scatter", "hierarchical"),
    (RAILS, "all_to_all", "nccl_ring"),
])
def test_a_clusters_collective_by_class_takes_the_exact_time_in_fewer_events(design, op, algorithm):
    by_class, every = _both(design, op, algorithm)
    assert by_class["time_s"] == every["time_s"]
    assert by_class["flows"] == every["flows"]
    assert by_class["events"] < every["events"] / 1.4


@pytest.mark.parametrize("design, op, algorithm, kw", [
    (FAT_TREE, "broadcast", "hierarchical", {}),  # the root: by class it would be 45% faster
    (RAILS, "all_reduce", "nccl", {}),  # across machines NCCL's tuner may pick a tree
])
def test_a_collective_that_singles_out_a_rank_simulates_every_rank(design, op, algorithm, kw):
    by_class, every = _both(design, op, algorithm, **kw)
    assert by_class == {**every, "wall_s": by_class["wall_s"]}


def test_a_design_without_node_cells_simulates_every_rank():
    by_class = simulate_collective("all_reduce", "8MB", topology="dgx_h100", algorithm="ring")
    every = simulate_collective("all_reduce", "8MB", topology="dgx_h100", algorithm="ring", exact=True)
    assert by_class["events"] == every["events"] and by_class["time_s"] == every["time_s"]


def test_the_command_takes_exact(capsys):
    topology, sets = FAT_TREE
    args = ["collective", "--op", "all_gather", "--size", "16MB", "--topology", topology, "--format", "json"]
    args += [a for key, value in sets for a in ("--set", f"{key}={value}")]
    found = []
    for extra in ([], ["--exact"]):
        assert main(args + extra) == 0
        found.append(json.loads(capsys.readouterr().out))
    by_class, every = found
    assert by_class["time_s"] == every["time_s"] and by_class["events"] < every["events"]


def test_an_uneven_all_to_all_across_machines_says_what_to_use():
    from mcdla.errors import InputError

    with pytest.raises(InputError, match="all_to_allv is modelled only among ranks on one fabric switch.* "
                                         "use all_to_all") as caught:
        simulate_collective("all_to_allv", "64MB", topology="dgx_h100_4node", sets=(("generator.nodes", 2),),
                            algorithm="nccl")
    assert caught.value.key == "--algorithm" and "hierarchical" not in str(caught.value)
