"""training.grad_reduce_dtype: gradients held and reduced in fp32 under 16-bit weights,
as Megatron-LM forces for bf16 (accumulate_allreduce_grads_in_fp32)."""

from __future__ import annotations

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.errors import InputError
from mcdla.hw.memory import step_bytes_per_param, with_precision
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.run import simulate
from mcdla.sim.training import Iteration

GPT2_PARAMS = 124_439_808  # gpt2.yaml


def _sets(grad, precision="mixed", **more):
    sets = {"training.precision": precision, "execution.zero": 1, "training.virtualization": False,
            "training.grad_reduce_dtype": grad, **more}
    return list(sets.items())


def _sent_by_d0(grad, precision="mixed"):
    links = simulate("oracle", "bw_aware", "gpt2", "data", 8, _sets(grad, precision))["link_bytes"]
    return sum(v for k, v in links.items() if k.startswith("D0>D"))


def test_fp32_gradients_double_the_reduce_scatter_on_the_links():
    # The oracle's 8 devices under the distributed optimizer (ZeRO-1): a ring
    # reduce-scatter or all-gather of n bytes has each device send 7/8 n over its
    # links. bf16: 2-byte gradients reduce-scattered, 2-byte weights all-gathered.
    # fp32 gradients: 4 bytes each reduce-scattered; the weights' all-gather stays at 2.
    assert _sent_by_d0("model") == pytest.approx(GPT2_PARAMS * 7 / 8 * (2 + 2), rel=1e-9)
    assert _sent_by_d0("fp32") == pytest.approx(GPT2_PARAMS * 7 / 8 * (4 + 2), rel=1e-9)


def _iteration(grad, zero=1, precision="mixed", bucket=None):
    training = TrainingSpec(virtualization=False, precision=precision, grad_reduce_dtype=grad, bucket=bucket)
    return Iteration(load_topology("ring"), load_workload("gpt2"),
                     ExecutionSpec(batch=8, zero=zero, training=training))


def _reduce_scatters(grad):
    record = _iteration(grad, bucket=25 * 2**20).run()
    return record, [c.size_bytes for c in record.collectives if c.op == "reduce_scatter"]


def test_the_collectives_carry_fp32_gradients_and_bf16_weights():
    record, sizes = _reduce_scatters("fp32")
    gathered = sum(c.size_bytes for c in record.collectives if c.op == "all_gather")
    assert sum(sizes) == pytest.approx(4 * GPT2_PARAMS) and gathered == pytest.approx(2 * GPT2_PARAMS)
    # A bucket fills with the bytes it reduces (DDP's bucket_cap_mb counts the
    # gradients' bytes): every bucket but the last holds 25 MiB of fp32 gradients or
    # more, so the same gradients fill more buckets than in bf16.
    assert min(sizes[:-1]) >= 25 * 2**20
    assert len(sizes) > 1.5 * len(_reduce_scatters("model")[1])


@pytest.mark.parametrize("zero, per_param", [
    # bf16 weights, fp32 gradients, fp32 master and Adam moments: Megatron-LM's
    # dist_optimizer.md table, 18 bytes a parameter, 6 + 12/d with its distributed
    # optimizer (ZeRO-1); stages 2 and 3 shard the fp32 gradients and then the weights.
    (0, 18),
    (1, 6 + 12 / 8),
    (2, 2 + (4 + 12) / 8),
    (3, (2 + 4 + 12) / 8),
])
def test_the_device_holds_the_fp32_gradient_buffer(zero, per_param):
    assert _iteration("fp32", zero=zero).model_state_bytes == pytest.approx(GPT2_PARAMS * per_param, rel=1e-12)


def test_the_fused_step_reads_the_fp32_gradient():
    work = load_workload("gpt2")
    mixed = with_precision(work, "mixed")
    # Adam in mixed precision: the gradient, the fp32 master read and written, the
    # bf16 weights written, both moments read and written.
    assert step_bytes_per_param(mixed) == 2 + (2 * 4 + 2) + 2 * 8
    assert step_bytes_per_param(with_precision(work, "mixed", "fp32")) == 4 + (2 * 4 + 2) + 2 * 8


def test_fp32_gradients_change_nothing_in_fp32_training():
    base = simulate("oracle", "bw_aware", "gpt2", "data", 8, _sets("model", "fp32"))
    same = simulate("oracle", "bw_aware", "gpt2", "data", 8, _sets("fp32", "fp32"))
    assert same["iteration_time_s"] == base["iteration_time_s"]
    assert same["device_mem_peak_bytes"] == base["device_mem_peak_bytes"]
    assert same["link_bytes"] == base["link_bytes"]


def test_fp32_gradients_are_refused_with_zero_offload():
    with pytest.raises(InputError, match="training.grad_reduce_dtype"):
        ExecutionSpec(offload_optimizer=True, training=TrainingSpec(grad_reduce_dtype="fp32"))
