"""Typed records: spans know their kind, collectives their parallel axis, and a result
reports the time each axis's communication is in flight (``comm_s``)."""

from __future__ import annotations

import math
import re

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.run import simulate
from mcdla.sim.training import Iteration
from mcdla.sim.records import AXES, COMPUTE_KINDS, TRANSFER_KINDS

from test_training import iterate  # noqa: E402

GPT2_3D = [("execution.tensor_parallel", 2), ("execution.pipeline_parallel", 2),
           ("training.micro_batches", 4), ("training.virtualization", False)]


def _comm(topology, workload, parallel, batch, sets=()):
    return simulate(topology, "bw_aware", workload, parallel, batch, list(sets), budget=math.inf)["comm_s"]


def test_data_parallel_communication_is_all_dp():
    comm = _comm("ring", "alexnet", "data", 64)
    assert set(comm) == set(AXES)
    assert comm["dp"] > 0 and comm["tp"] == 0 and comm["pp"] == 0


def test_the_papers_model_parallel_mode_is_the_tensor_axis():
    comm = _comm("dc", "alexnet", "model", 64)
    assert comm["tp"] > 0 and comm["dp"] == 0 and comm["pp"] == 0


def test_3d_parallelism_reports_each_axis():
    comm = _comm("ring", "gpt2", "data", 32, GPT2_3D)
    assert set(comm) == set(AXES)
    assert all(comm[axis] > 0 for axis in ("dp", "tp", "pp"))
    assert comm["ep"] == 0  # no expert parallelism: no all-to-alls


def test_a_collectives_axis_is_its_groups():
    # A group's communicator runs over sub-rings named after its kind and number
    # ("<ring>/tp0"): each record's axis must be the kind its rings were built for.
    execution = ExecutionSpec(parallel="data", batch=32, tensor_parallel=2, pipeline_parallel=2, exact=True,
                              training=TrainingSpec(micro_batches=4, virtualization=False))
    record = Iteration(load_topology("ring"), load_workload("gpt2"), execution).run()
    assert {c.axis for c in record.collectives} == {"dp", "tp"}
    for c in record.collectives:
        assert all(re.search(rf"/{c.axis}\d+$", name) for name in c.rings), (c.axis, c.rings)
    assert record.pipeline_sends and all(end > start for start, end in record.pipeline_sends)


def test_spans_say_their_kind():
    _, record = iterate("dc")  # offload-all on DC-DLA: transfers and recomputed layers
    device = record.devices[0]
    assert {s.kind for s in device.compute} <= set(COMPUTE_KINDS)
    assert {s.kind for s in device.virtualization} == set(TRANSFER_KINDS)
    assert any(s.kind == "recompute" for s in device.compute)
    for span in device.compute:
        assert span.label.startswith({"fwd": "fwd ", "bwd": "bwd ", "recompute": "recompute ",
                                      "step": "optimizer step"}[span.kind])
    for span in device.virtualization:
        assert span.label.startswith(span.kind)


def test_a_class_members_records_are_its_firsts_under_their_names():
    """With rank symmetry every device's record is its class's first's, renamed (made when
    asked, ClassRecords): what copying them all after the run gave."""
    import dataclasses

    from mcdla.run import load_inputs
    from mcdla.sim.records import ClassRecords
    from mcdla.sim.training import Iteration

    topology, workload, execution = load_inputs("ring", "resnet34", batch=64)
    record = Iteration(topology, workload, execution).run()
    devices = record.devices
    assert isinstance(devices, ClassRecords) and len(devices) == len(topology.devices) == 8
    assert len(record.rank_classes) < len(devices)
    for group in record.rank_classes:
        first = devices[group[0]]
        assert first.compute and first.name == topology.devices[group[0]]
        for d in group[1:]:
            assert devices[d] == dataclasses.replace(first, name=topology.devices[d])
            assert devices[d] is devices[d]  # made once
    assert [d.name for d in devices] == list(topology.devices)
    assert devices[-1] is devices[7] and [d.name for d in devices[1:3]] == list(topology.devices[1:3])
    with pytest.raises(IndexError):
        devices[8]
