"""training.precision: fp8, Transformer Engine's hybrid recipe under Megatron-Core
(mcdla.hw.fp8): the linear layers' GEMMs on the FP8 lanes, the cast-transpose kernels,
the FP8 weight copies, the refusal on a device without FP8 lanes."""

from __future__ import annotations

import pytest

from mcdla.cli.main import main
from mcdla.config.execution import ExecutionSpec
from mcdla.config.hardware import DeviceSpec
from mcdla.config.loader import DATA_ROOT, read_yaml
from mcdla.config.schema import Where, build
from mcdla.config.training import TrainingSpec
from mcdla.hw.compute import kernel_time
from mcdla.hw.memory import with_precision
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.sim.training import Iteration

PRESETS = read_yaml(DATA_ROOT / "topologies" / "presets" / "hardware.yaml")["devices"]
H100 = build(DeviceSpec, PRESETS["h100_sxm5"], Where("hardware.yaml", "devices.h100_sxm5"))
BATCH = 4  # sequences of 2048 tokens


def _layers(precision: str):
    """GPT-3 175B's shapes, one block: layer name -> layer, trained at ``precision``."""
    work = with_precision(load_workload("gpt3_175b", [("layers", 1)]), precision)
    return {l.name: l for l in work.layers}


def _gemm(layer, phase: str, name: str):
    return next(k for k in layer.kernels(phase, BATCH, 2) if k.name.endswith(name))


def test_a_linear_layers_gemms_run_at_the_fp8_rate():
    # FC1 of GPT-3 175B (m 49,152 x n 8,192 x k 12,288): compute-bound on either lanes.
    # The preset's fields: FP8 1024 MAC lanes at 0.705 of their peak, BF16 512 at 0.772:
    # 1.826x; the tiles' fixed overhead, a larger share of a faster main loop, keeps
    # the measured ratio a little under it.
    expected = (H100.fp8_macs_per_pe * H100.fp8_gemm_efficiency) / (H100.macs_per_pe * H100.gemm_efficiency)
    mixed, fp8 = _layers("mixed"), _layers("fp8")
    fc1 = next(name for name, l in mixed.items() if l.kind == "linear" and l.lowering.out_features == 4 * 12288)
    for phase, suffix in (("fwd", ":fwd"), ("bwd", ":dx"), ("bwd", ":dw")):
        slow, fast = (kernel_time(H100, _gemm(layers[fc1], phase, suffix)) for layers in (mixed, fp8))
        assert fast.bound == "compute" and _gemm(fp8[fc1], phase, suffix).element_bytes == 1
        assert 0.95 * expected < slow.time_s / fast.time_s <= expected
    # The vocabulary projection stays BF16 (Megatron's own ColumnParallelLinear).
    assert _gemm(fp8["lm_head"], "fwd", ":fwd") == _gemm(mixed["lm_head"], "fwd", ":fwd")


def test_cast_kernels_appear_where_te_runs_them_and_stream_at_the_hbm_rate():
    fp8 = _layers("fp8")
    linears = [l for l in fp8.values() if l.fp8]
    assert len(linears) == 4  # QKV, the attention projection, FC1, FC2
    # QKV and FC1 follow a layer norm, which writes FP8 itself (LayerNormLinear): no cast.
    casts = {l.name: [k for k in l.kernels("fwd", BATCH, 2) if k.gemm is None] for l in linears}
    assert sorted(len(c) for c in casts.values()) == [0, 0, 1, 1]
    proj = next(l for l in linears if casts[l.name] and l.lowering.reduce == 12288)  # input: attention's out
    cast = casts[proj.name][0]
    tokens = BATCH * 2048
    # Reads the BF16 input (2 bytes), writes it in FP8 and transposed (1 + 1).
    assert cast.bytes == tokens * 12288 * (2 + 1 + 1)
    seconds = cast.bytes / (H100.hbm_bw * H100.hbm_efficiency)  # the preset's stream rate
    timing = kernel_time(H100, cast)
    assert timing.bound == "memory"
    assert timing.time_s == pytest.approx(seconds + H100.hbm_latency + H100.launch_overhead, rel=1e-9)
    # Backward, every FP8 linear first casts its output gradient (E5M2) and its transpose.
    for layer in linears:
        first = layer.kernels("bwd", BATCH, 2)[0]
        assert first.name.endswith(":cast_grad_fp8") and first.gemm is None
        assert first.bytes == tokens * layer.lowering.out_features * 4


def _state(precision: str) -> float:
    training = TrainingSpec(virtualization=False, precision=precision)
    return Iteration(load_topology("dgx_h100"), load_workload("gpt2"),
                     ExecutionSpec(batch=8, training=training)).model_state_bytes


def test_fp8_weight_copies_join_the_model_state():
    # GPT-2 small: 12 blocks of QKV (768 x 2304 + 2304), projection (768 x 768 + 768),
    # FC1 (768 x 3072 + 3072), FC2 (3072 x 768 + 768): 85,054,464 parameters in FP8
    # layers (the embeddings and the tied vocabulary projection stay BF16). Each keeps
    # TE's cached FP8 copy and its transpose: 2 bytes more; nothing else changes.
    fp8_params = 12 * (768 * 2304 + 2304 + 768 * 768 + 768 + 768 * 3072 + 3072 + 3072 * 768 + 768)
    assert _state("fp8") - _state("mixed") == pytest.approx(2 * fp8_params, rel=1e-9)


def _collectives(precision: str):
    from collections import Counter

    training = TrainingSpec(virtualization=False, precision=precision)
    record = Iteration(load_topology("dgx_h100"), load_workload("gpt2"),
                       ExecutionSpec(batch=8, tensor_parallel=4, sequence_parallel=True, training=training)).run()
    return Counter((c.op, c.size_bytes) for c in record.collectives)


def test_layernorm_linear_gathers_its_sequence_parallel_input_in_fp8():
    # GPT-2 on 8 H100s, TP 4 with sequence parallelism, 2 replicas of 4 sequences: a
    # block's activation gathered whole is 4 x 1024 tokens x 768 x 2 bytes. TE's
    # LayerNormLinear (QKV and FC1 of each of the 12 blocks) gathers the norm's FP8
    # output: 24 gathers of half that; every other collective keeps its bytes.
    whole = 4 * 1024 * 768 * 2
    mixed, fp8 = _collectives("mixed"), _collectives("fp8")
    assert fp8[("all_gather", whole / 2)] == 24 and mixed[("all_gather", whole / 2)] == 0
    assert fp8[("all_gather", whole)] == mixed[("all_gather", whole)] - 24
    assert {k: v for k, v in fp8.items() if k[0] != "all_gather"} == \
        {k: v for k, v in mixed.items() if k[0] != "all_gather"}


def test_fp8_is_refused_on_a_device_without_fp8_lanes(capsys):
    code = main(["sim", "--topology", "dgx_a100", "--workload", "gpt2", "--batch", "8",
                 "--set", "training.precision=fp8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "training.precision" in err and "dgx_a100" in err and "FP8" in err


def test_the_nemotron4_15b_fp8_row_is_evaluated():
    from mcdla.config.validation import read_validation
    from mcdla.sweep.validate import run_row

    row = read_validation("dgxc_h100_fp8")[1].rows[0]
    bf16 = next(r for r in read_validation("dgxc_h100")[1].rows  # its BF16 twin: the same run in mixed precision
                if {**r.args["set"], "training.precision": "fp8"} == row.args["set"]
                and r.args["batch"] == row.args["batch"])
    assert row.args["set"] == {**bf16.args["set"], "training.precision": "fp8"}
    fp8_flops = run_row(row)
    # Within the row's tolerance of the table's 2.08 s step (835.5 TFLOP/s a GPU), and
    # the FP8 run 1.2-1.4x its BF16 twin's (NeMo measured 2.83 / 2.08 = 1.36x).
    assert fp8_flops == pytest.approx(835.5e12, rel=row.tolerance)
    assert 1.2 < fp8_flops / run_row(bf16) < 1.4


def test_every_fp8_row_is_its_bf16_twin_in_fp8():
    from mcdla.config.validation import read_validation

    fp8, bf16 = (read_validation(name)[1].rows for name in ("dgxc_h100_fp8", "dgxc_h100"))
    assert len(fp8) == len(bf16) == 18
    twins = {r.quantity.split(", step")[0]: r for r in bf16}
    for row in fp8:
        twin = twins[row.quantity.split(", step")[0].replace(" FP8", "")]
        assert row.args["set"] == {**twin.args["set"], "training.precision": "fp8"}
        assert row.args["batch"] == twin.args["batch"] and row.slow == twin.slow and row.flops == twin.flops


def _held_maps(precision: str) -> dict[str, float]:
    training = TrainingSpec(virtualization=False, precision=precision)
    iteration = Iteration(load_topology("dgx_h100"), load_workload("gpt2"), ExecutionSpec(batch=8, training=training))
    return {l.name: b for l, b in zip(iteration.inputs.workload.layers, iteration.plan.tensor_bytes)}


def test_maps_only_fp8_layers_read_in_backward_are_kept_as_te_saves_them():
    # GPT-2 on 8 H100s: one 1,024-token sequence a device. A map that backward reads
    # only in FP8 linear layers' wgrad is kept as TE saves it: its FP8 copy, 1 byte an
    # element (the norms' outputs before QKV and FC1, GELU's before FC2); the attention
    # core keeps its own map (O and the probabilities it reads) beside O's FP8 copy.
    tokens = 1024
    mixed, fp8 = _held_maps("mixed"), _held_maps("fp8")
    assert fp8["blocks.1/norm1"] == fp8["blocks.1/norm2"] == tokens * 768 * 1
    assert fp8["blocks.1/gelu10"] == tokens * 3072 * 1
    assert fp8["blocks.1/attention5"] == pytest.approx(mixed["blocks.1/attention5"] + tokens * 768 * 1, rel=1e-12)
    unchanged = ("embed", "positions", "blocks.1/linear4", "blocks.1/attn_out", "blocks.1/res1", "blocks.1/mlp_out")
    assert all(fp8[name] == mixed[name] == tokens * 2 * (2304 if name.endswith("linear4") else 768)
               for name in unchanged)


def test_a_mixtures_router_stays_bf16_and_its_experts_run_in_fp8():
    """Megatron's TopKRouter is its own torch GEMM, not TE's: a block's router (named
    "blocks/router" or "blocks.N/router") keeps BF16; the experts' linear layers do not."""
    work = with_precision(load_workload("mixtral_8x7b", [("layers", 1)]), "fp8")
    routers = [l for l in work.layers if l.name.rpartition("/")[2] == "router"]
    assert routers and all(l.fp8 is None for l in routers)
    assert any(l.fp8 for l in work.layers if l.kind == "linear" and "expert" in l.name)


# GPT-2 small's FP8 weights a block: QKV (768 x 2304 + 2304), the attention projection
# (768 x 768 + 768), FC1 (768 x 3072 + 3072), FC2 (3072 x 768 + 768).
GPT2_BLOCK_FP8 = 768 * 2304 + 2304 + 768 * 768 + 768 + 768 * 3072 + 3072 + 3072 * 768 + 768


def _twins(workload, **execution):
    """(mixed, fp8): ``workload`` on a DGX H100 in each precision, built (not run)."""
    micro = execution.pop("micro_batches", 1)
    return tuple(Iteration(load_topology("dgx_h100"), workload,
                           ExecutionSpec(training=TrainingSpec(virtualization=False, precision=p, micro_batches=micro),
                                         **execution)) for p in ("mixed", "fp8"))


def _cast_s(device, params: float) -> float:
    """TE's weight cast over ``params``: reads the BF16 weight (2 bytes), writes its two
    FP8 copies (1 + 1), one memory-bound kernel at the device's stream rate."""
    return 4 * params / (device.hbm_bw * device.hbm_efficiency) + device.hbm_latency + device.launch_overhead


def test_the_step_casts_every_fp8_weight_once_at_the_stream_rate():
    """TE casts each FP8 layer's weights once an iteration (its first micro-batch), with
    the optimizer step: GPT-2 in data parallelism holds the whole model, 12 blocks."""
    mixed, fp8 = _twins(load_workload("gpt2"), batch=8)
    extra = fp8.plan.step_s - mixed.plan.step_s
    assert extra == pytest.approx(_cast_s(H100, 12 * GPT2_BLOCK_FP8), rel=1e-9)


def test_a_pipeline_stage_holding_the_embedding_holds_no_fp8_copy_of_it():
    """GPT-2 on 8 H100s, TP 2 x PP 2: the first stage holds the embeddings (the tied
    vocabulary projection's weights), which stay BF16, and its own blocks' linear
    layers, each split 2 ways: its FP8 copies (2 bytes a weight) and its cast are those
    of its blocks alone, not the model's average share of its parameters."""
    mixed, fp8 = _twins(load_workload("gpt2"), batch=8, tensor_parallel=2, pipeline_parallel=2, micro_batches=2)
    assert fp8.pipe.stage_weight_bytes == mixed.pipe.stage_weight_bytes  # the same split in both
    names = [fp8.inputs.workload.layers[i].name for i in fp8.pipe.layers[0]]
    blocks = sum(name.endswith("/norm1") for name in names)
    assert "embed" in names and blocks == 6
    copied = blocks * GPT2_BLOCK_FP8 / 2
    device = next(d for d, stage in enumerate(fp8.stage_of) if stage == 0)
    # The BF16 twin keeps 16 bytes a parameter (Adam in mixed precision), no copy.
    assert mixed.device_state_bytes[device] == 16 * mixed.pipe.stage_weight_bytes[0] / 2
    assert fp8.device_state_bytes[device] - mixed.device_state_bytes[device] == pytest.approx(2 * copied, rel=1e-12)
    assert fp8.pipe.step_s[0] - mixed.pipe.step_s[0] == pytest.approx(_cast_s(H100, copied), rel=1e-9)
    # The model's average FP8 share of the stage's parameters would count 7M of the embedding.
    assert copied < 0.8 * (fp8.pipe.stage_weight_bytes[0] / 2) * 12 * GPT2_BLOCK_FP8 / fp8.inputs.workload.params


def test_tensor_parallel_replicated_norms_have_no_fp8_copy():
    """GPT-2 on 8 H100s, TP 4: each rank holds 1/4 of every block's linear layers and
    every norm whole; only the linear layers' quarters have FP8 copies and are cast."""
    mixed, fp8 = _twins(load_workload("gpt2"), batch=8, tensor_parallel=4)
    copied = 12 * GPT2_BLOCK_FP8 / 4
    assert fp8.model_state_bytes - mixed.model_state_bytes == pytest.approx(2 * copied, rel=1e-12)
    assert fp8.plan.step_s - mixed.plan.step_s == pytest.approx(_cast_s(H100, copied), rel=1e-9)


def test_a_mixtures_experts_fp8_copies_follow_their_own_sharding():
    """Mixtral 8x7B, one block, on 8 H100s: TP 2, EP 2, ZeRO 1. A rank holds half of the
    attention's QKV (4096 x (4096 + 2 x 8 x 128)) and projection (4096 x 4096), and a
    quarter of the 8 experts' SwiGLU up (4096 x 2 x 14336) and down (14336 x 4096)
    projections (half its bank's experts, each split 2 ways); the router, the embedding
    and the vocabulary projection stay BF16."""
    mixed, fp8 = _twins(load_workload("mixtral_8x7b", [("layers", 1)]), batch=8, tensor_parallel=2,
                        expert_parallel=2, zero=1)
    dense = 4096 * (4096 + 2 * 8 * 128) + 4096 * 4096
    experts = 8 * (4096 * 2 * 14336 + 14336 * 4096)
    copied = dense / 2 + experts / 4
    assert fp8.model_state_bytes - mixed.model_state_bytes == pytest.approx(2 * copied, rel=1e-12)
    assert fp8.plan.step_s - mixed.plan.step_s == pytest.approx(_cast_s(H100, copied), rel=1e-9)


def test_a_workload_without_linear_layers_trains_in_fp8_as_in_mixed():
    """ResNet-50 has no FP8 layers (conv and fc): no copies, no cast, the same step."""
    mixed, fp8 = _twins(load_workload("resnet50"), batch=64)
    assert fp8.model_state_bytes == mixed.model_state_bytes
    assert fp8.plan.step_s == mixed.plan.step_s
