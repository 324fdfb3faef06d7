"""The optimizer step as frameworks ran it (``training.optimizer_passes``,
docs/model.md, "The optimizer step"): Megatron's passes, each its own kernel."""

from __future__ import annotations

import dataclasses

import pytest

from mcdla.errors import InputError
from mcdla.hw.compute import optimizer_step_time
from mcdla.run import load_inputs, simulate
from mcdla.sim.training import Iteration

GPT2 = [("workload.layers", 2), ("workload.seq_len", 128), ("training.virtualization", False),
        ("training.precision", "mixed")]


def _inputs(sets=()):
    topo, work, _ = load_inputs("dgx_a100", "gpt2", [*GPT2, *sets], batch=8)
    return topo.device, work


def test_megatron_2021_moves_64_bytes_a_parameter_where_the_fused_step_moves_28():
    # fp16 gradients flattened, divided and copied back (12), to fp32 (6), unscaled (8),
    # their norm (4), FusedAdam (28), the weights back to fp16 (6): 64 bytes, against
    # the fused pass's 28; at 2e9 parameters the launches are noise.
    device, work = _inputs()
    fused = optimizer_step_time(device, work, 2e9)
    megatron = optimizer_step_time(device, work, 2e9, impl="megatron_fp16_2021")
    assert megatron / fused == pytest.approx(64 / 28, rel=1e-3)
    # Eight kernels: seven launches more than the fused step's one.
    no_launch = dataclasses.replace(device, launch_overhead=0.0, hbm_latency=0.0)
    extra = (megatron - fused) - (optimizer_step_time(no_launch, work, 2e9, impl="megatron_fp16_2021")
                                  - optimizer_step_time(no_launch, work, 2e9))
    assert extra == pytest.approx(7 * (device.launch_overhead + device.hbm_latency), rel=1e-6)


def test_megatron_core_bucket_passes_run_over_every_gradient_held_not_the_shard():
    # The distributed optimizer steps 1/dp of the weights, but the NaN-check norm and the
    # 1/dp scaling (12 bytes) run over the whole fp32 gradient buffer before the
    # reduce-scatter: at dp 8, 8 x 12 + 38 (norm 4, FusedAdam 28, to bf16 6) = 134 bytes a shard parameter.
    device, work = _inputs()
    fp32_grads = dataclasses.replace(work, grad_precision_bytes=4)  # Megatron-Core's gradient buffer
    no_launch = dataclasses.replace(device, launch_overhead=0.0, hbm_latency=0.0)
    shard = 1e9
    core = optimizer_step_time(no_launch, fp32_grads, shard, held=8 * shard, impl="megatron_core_2024")
    fused = optimizer_step_time(no_launch, work, shard)  # 28 bytes: 16-bit gradients
    assert core / fused == pytest.approx(134 / 28, rel=1e-6)


def test_the_run_charges_the_chosen_passes_as_its_step():
    sets = [("training.optimizer_passes", "megatron_fp16_2021")]
    it = Iteration(*load_inputs("dgx_a100", "gpt2", [*GPT2, *sets], batch=8))
    record = it.run()
    step = [c for c in record.devices[0].compute if c.kind == "step"]
    assert len(step) == 1 and step[0].end_s - step[0].start_s == pytest.approx(it.plan.step_s, rel=1e-9)
    fused = Iteration(*load_inputs("dgx_a100", "gpt2", GPT2, batch=8)).plan.step_s
    assert it.plan.step_s > 2 * fused


def test_megatron_passes_refuse_a_run_without_mixed_precision_adam():
    with pytest.raises(InputError, match="training.optimizer_passes"):
        simulate("dgx_a100", "bw_aware", "gpt2", "data", 8,
                 [*GPT2[:3], ("training.precision", "fp32"), ("training.optimizer_passes", "megatron_fp16_2021")])


@pytest.mark.parametrize("impl, dtype", [("megatron_core_2024", "model"), ("megatron_fp16_2021", "fp32")])
def test_a_frameworks_passes_refuse_gradients_of_another_width(impl, dtype):
    # Megatron-Core's passes run over an fp32 gradient buffer, Megatron 2021's over fp16.
    with pytest.raises(InputError, match="training.grad_reduce_dtype"):
        simulate("dgx_a100", "bw_aware", "gpt2", "data", 8,
                 [*GPT2, ("training.optimizer_passes", impl), ("training.grad_reduce_dtype", dtype)])
