"""One runner over any schedule (mcdla.sim.device, mcdla.sim.passes): interleaved
pipelines, recompute and offload inside stages, gradient accumulation without stages."""

from __future__ import annotations

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.sim.training import Iteration


def run(topology="ring", workload="gpt2", batch=16, virtualization=False, workload_sets=(), **options):
    execution = {k: options.pop(k) for k in list(options) if k in ExecutionSpec.__dataclass_fields__}
    spec = ExecutionSpec(batch=batch, training=TrainingSpec(virtualization=virtualization, **options), **execution)
    return Iteration(load_topology(topology), load_workload(workload, workload_sets), spec).run()


def _compute_s(device, kind=None):
    return sum(end - start for start, end, _label, k in device.compute if kind is None or k == kind)


def test_interleaved_1f1b_beats_1f1b_when_bubbles_dominate():
    """Narayanan et al. SC'21: v chunks per stage shrink the bubble v times; with m = p
    (bubble-bound) the iteration is shorter for the same p and m."""
    # A small vocabulary keeps the stages equal: pipelines split GPT-2's 12 blocks evenly
    # (Megatron's split), and its 50,257-token output layer would weigh 5.5 blocks on the last.
    small = [("vocab", 128)]
    plain = run(pipeline_parallel=2, micro_batches=2, workload_sets=small)
    interleaved = run(pipeline_parallel=2, micro_batches=2, schedule="interleaved", virtual_stages=2, workload_sets=small)
    # Equal stages and free communication: (m + (p - 1) / v) / (m + p - 1) = 0.83.
    assert interleaved.iteration_time_s < 0.9 * plain.iteration_time_s
    # The same work: every layer's forward and backward once per micro-batch.
    assert sum(_compute_s(d) for d in interleaved.devices) == pytest.approx(
        sum(_compute_s(d) for d in plain.devices), rel=0.05)


def test_interleaved_sends_every_boundary_of_every_micro_batch_both_ways():
    record = run(pipeline_parallel=2, micro_batches=4, schedule="interleaved", virtual_stages=2, exact=True)
    # 4 replicas' pipelines of 4 virtual stages: 3 boundaries (one from the last stage back
    # to the first, for its second chunk), crossed by 4 micro-batches' activations and gradients.
    assert len(record.pipeline_sends) == 4 * 3 * 4 * 2
    fwd = [label for _s, _e, label, kind in record.devices[0].compute if kind == "fwd"]
    assert {label.rsplit(" mb", 1)[1] for label in fwd} == {"0", "1", "2", "3"}


def test_rank_symmetry_equals_exact_for_an_interleaved_run():
    options = dict(topology="dgx_h100", pipeline_parallel=2, micro_batches=4, schedule="interleaved", virtual_stages=2,
                   tensor_parallel=2)
    fast, exact = run(**options), run(exact=True, **options)
    assert fast.rank_classes  # the check is of something: classes were simulated once
    assert fast.iteration_time_s == pytest.approx(exact.iteration_time_s, rel=1e-9)
    for a, b in zip(fast.devices, exact.devices):
        assert a.memory_peak_bytes == pytest.approx(b.memory_peak_bytes, rel=1e-9)


def test_recompute_in_a_stage_lowers_its_peak_and_adds_compute():
    kept = run(pipeline_parallel=2, micro_batches=4)
    full = run(pipeline_parallel=2, micro_batches=4, checkpoint="full")
    for a, b in zip(kept.devices, full.devices):
        assert b.memory_peak_bytes < 0.8 * a.memory_peak_bytes
        assert _compute_s(a, "recompute") == 0 < _compute_s(b, "recompute")
        assert _compute_s(b) > _compute_s(a)
    # Each micro-batch rebuilds its blocks: recompute runs once per micro-batch.
    labels = {label.rsplit(" mb", 1)[1] for _s, _e, label, kind in full.devices[0].compute if kind == "recompute"}
    assert labels == {"0", "1", "2", "3"}


def test_accumulation_reduces_the_same_gradient_bytes_once():
    one = run(batch=32)
    four = run(batch=32, micro_batches=4)

    def reductions(record):
        return sorted((c.op, c.size_bytes) for c in record.collectives if c.op == "all_reduce")

    assert reductions(four) == reductions(one)  # each weight group once, after the last micro-batch
    fwd = [label for _s, _e, label, kind in four.devices[0].compute if kind == "fwd"]
    assert len(fwd) == 4 * len([1 for _s, _e, _l, kind in one.devices[0].compute if kind == "fwd"])
    # A quarter of the samples at a time: less activation memory.
    assert four.devices[0].memory_peak_bytes < one.devices[0].memory_peak_bytes
    reduced = [c.start_s for c in four.collectives if c.op == "all_reduce"]
    last_mb = min(s for s, _e, label, kind in four.devices[0].compute if label.endswith(" mb3"))
    assert min(reduced) >= last_mb  # no reduction before the last micro-batch (DDP's no_sync)


def test_a_pipeline_with_offload_moves_maps_over_the_backing_links():
    record = run(pipeline_parallel=2, micro_batches=2, virtualization=True)
    topology = load_topology("ring")
    carried = record.network.bytes_by_resource
    for device in record.devices:
        assert device.offloaded_bytes > 0 and device.offloaded_bytes == pytest.approx(device.prefetched_bytes)
        for sub in topology.backing_routes(device.name, record.inputs.execution.policy, "offload"):
            assert all(carried.get(resource, 0.0) > 0 for resource in sub.path)
    # Offloading lowers what a stage holds against keeping every map.
    kept = run(pipeline_parallel=2, micro_batches=2)
    assert record.devices[0].memory_peak_bytes < kept.devices[0].memory_peak_bytes


@pytest.mark.parametrize("options, key, message", [
    (dict(zero=2, training=TrainingSpec(micro_batches=2)), "execution.zero", "micro-batches accumulate"),
    (dict(offload_optimizer=True, zero=1, training=TrainingSpec(micro_batches=2)), "execution.offload_optimizer",
     "not built"),
    (dict(parallel="model", training=TrainingSpec(micro_batches=2)), "training.micro_batches", "data-parallel"),
    (dict(pipeline_parallel=2, training=TrainingSpec(micro_batches=3, schedule="interleaved", virtual_stages=2)),
     "training.micro_batches", "a multiple of it"),
])
def test_what_micro_batches_still_cannot_run_is_refused_by_key(options, key, message):
    from mcdla.errors import InputError

    with pytest.raises(InputError, match=rf"{key}: .*{message}"):
        ExecutionSpec(**options)


def test_the_layout_line_names_accumulated_micro_batches():
    from mcdla.cli.sim import layout

    result = {"parallel": "data", "layout": {"tensor": 1, "pipeline": 1, "data": 8, "micro_batches": 4, "zero": 0}}
    assert layout(result) == "data-parallel, 4 micro-batches"
    result["layout"]["micro_batches"] = 1
    assert layout(result) == "data-parallel"


@pytest.mark.parametrize("stages, micro, chunks", [(2, 2, 2), (4, 4, 2), (2, 2, 4), (4, 8, 2)])
def test_interleaved_iteration_is_narayanans_bubble_when_stages_are_equal(tmp_path, stages, micro, chunks):
    """Eight equal layers over links of no cost: the interleaved schedule's iteration is
    (m + (p - 1) / v) stage passes (Narayanan et al. SC'21, 2.2.2), which the planner's
    estimate charges too."""
    import math

    from mcdla.run import load_inputs
    from mcdla.sweep.plan import Candidate, _estimate
    from tests.test_parallelism import EQUAL_STAGES

    path = tmp_path / "relus.yaml"
    path.write_text(EQUAL_STAGES)
    free = [("links.nvlink.bw", "1e17 B/s"), ("links.nvlink.latency", 0)]
    candidate = Candidate(1, 0, "none", pipeline_parallel=stages, micro_batches=micro)
    sets = [*free, *candidate.sets(), ("training.schedule", "interleaved"), ("training.virtual_stages", chunks)]
    iteration = Iteration(*load_inputs("ring", str(path), sets, {}, batch=64 * micro))
    plan = iteration.plan
    stage_s = sum(plan.fwd_s) + sum(plan.bwd_s)  # every layer once: p stages of it each
    assert _estimate(iteration, math.inf)[0] == pytest.approx((micro + (stages - 1) / chunks) * stage_s / stages,
                                                               rel=1e-9)
    assert iteration.run().iteration_time_s == pytest.approx(_estimate(iteration, math.inf)[0], rel=1e-5)
