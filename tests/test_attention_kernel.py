"""Attention by kernel (``training.attention_kernel``; a device's ``attention_kernels``):
each kernel's rate on an H100 against its published measurements, the option's
validation, and the default kernel unchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mcdla.cli.main import main
from mcdla.config.hardware import DeviceSpec
from mcdla.config.loader import DATA_ROOT, read_yaml
from mcdla.config.schema import Where, build
from mcdla.errors import InputError
from mcdla.hw.gpu import attention_seconds
from mcdla.hw.workload import load_workload
from mcdla.run import load_inputs
from mcdla.sim.training import Iteration

PRESETS = read_yaml(DATA_ROOT / "topologies" / "presets" / "hardware.yaml")["devices"]


def device(name: str) -> DeviceSpec:
    return build(DeviceSpec, PRESETS[name], Where("hardware.yaml", f"devices.{name}"))


def tflops(dev: DeviceSpec, kernel: str, seq: int, causal: bool) -> tuple[float, float]:
    """mcdla's forward and backward TFLOP/s of ``kernel`` at the FlashAttention-3 paper's
    shapes: 16 heads of 128, 16k tokens (batch 16k / seq), BF16; FLOPs as the paper counts them."""
    work = load_workload("gpt3_175b", [("layers", 1), ("hidden", 2048), ("heads", 16), ("ffn", 8192),
                                       ("seq_len", seq), ("flash", True)])
    layer = next(l for l in work.layers if l.attention is not None)
    layer = dataclasses.replace(layer, attention=dataclasses.replace(layer.attention, causal=causal, kernel=kernel))
    fwd, bwd = layer.kernels("fwd", 16384 // seq, 2)[0], layer.kernels("bwd", 16384 // seq, 2)[0]
    return tuple(2 * k.macs / attention_seconds(dev, k, forward) / 1e12 for k, forward in ((fwd, True), (bwd, False)))


# Shah et al., FlashAttention-3 (arXiv:2407.08608), H100 SXM5 at 1,830 MHz: Figure 5d (forward,
# causal) and 6b (backward, not causal), head dim 128, at the lengths between those the presets'
# curves were fitted through (forward 2k and 8k, backward 1k and 8k).
@pytest.mark.parametrize("kernel, seq, causal, forward, measured", [
    ("flash2", 4096, True, True, 319),
    ("flash2", 2048, False, False, 291),
    ("flash2", 4096, False, False, 310),
    ("cudnn", 4096, True, True, 518),
    ("cudnn", 2048, False, False, 465),
    ("cudnn", 4096, False, False, 499),
    # the default kernel, fitted to tritonbench without the mask, against the paper's causal forward
    ("flash3", 2048, True, True, 521),
    ("flash3", 4096, True, True, 579),
    ("flash3", 8192, True, True, 602),
])
def test_each_kernel_runs_at_its_measured_rate_on_an_h100(kernel, seq, causal, forward, measured):
    rate = tflops(device("h100_sxm5"), kernel, seq, causal)[0 if forward else 1]
    assert rate == pytest.approx(measured, rel=0.02)


@pytest.mark.parametrize("seq, measured, rel", [
    (2048, 265, 0.03), (4096, 294, 0.03), (8192, 308, 0.03),  # Dao 2023 (arXiv:2307.08691), H100 figure, causal, head dim 128
    (8192, 327.9, 0.05),  # Azure/AI-benchmarking-guide ND_H100_v5: batch 2, causal, head dim 128, forward + backward
])
def test_flashattention2_under_the_mask_meets_other_sources_forward_plus_backward(seq, measured, rel):
    # The backward was fitted without the mask; these measure the pair under it (3.5 forward FLOPs).
    fwd, bwd = tflops(device("h100_sxm5"), "flash2", seq, causal=True)
    assert 3.5 / (1 / fwd + 2.5 / bwd) == pytest.approx(measured, rel=rel)


def test_the_presets_default_kernels_and_what_each_holds():
    assert device("h100_sxm5").attention_kernel == "flash3"
    assert set(device("h100_sxm5").attention_kernels) == {"flash2", "flash3", "cudnn"}
    assert device("a100_sxm4_80gb").attention_kernel == "flash2"
    assert set(device("a100_sxm4_80gb").attention_kernels) == {"flash2"}  # FlashAttention-3 is Hopper's
    assert device("table2").attention_kernel is None  # the paper's device: none measured


def test_a_preset_whose_default_is_not_among_its_kernels_is_refused():
    doc = {**PRESETS["h100_sxm5"], "attention_kernel": "flash2",
           "attention_kernels": {"flash3": PRESETS["h100_sxm5"]["attention_kernels"]["flash3"]}}
    with pytest.raises(InputError, match="attention_kernel"):
        build(DeviceSpec, doc, Where("hardware.yaml", "devices.x"))
    doc = {**PRESETS["h100_sxm5"], "attention_kernels": {**PRESETS["h100_sxm5"]["attention_kernels"], "flash9": {}}}
    with pytest.raises(InputError, match="flash9"):
        build(DeviceSpec, doc, Where("hardware.yaml", "devices.x"))


SMALL = ["sim", "--workload", "llama3_8b", "--batch", "8", "--set", "workload.layers=1"]


@pytest.mark.parametrize("topology, kernel, words", [
    ("dgx_h100", "flash4", ["attention_kernel", "flash2", "flash3", "cudnn"]),  # not a kernel at all
    ("dgx_a100", "cudnn", ["training.attention_kernel", "has: flash2", "unset"]),  # none measured on A100
    ("dc", "flash2", ["training.attention_kernel", "none", "unset"]),  # the paper's device has none
])
def test_a_kernel_unknown_or_without_rates_on_the_device_is_refused(capsys, topology, kernel, words):
    assert main([*SMALL, "--topology", topology, "--set", f"training.attention_kernel={kernel}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def _plan(topology: str, kernel: str | None):
    sets = [("workload.layers", 1), ("training.precision", "mixed"), ("topology.device_memory", "unbounded")]
    sets += [("training.attention_kernel", kernel)] if kernel else []
    return Iteration(*load_inputs(topology, "llama3_8b", sets, batch=8))


@pytest.mark.parametrize("topology, default", [("dgx_h100", "flash3"), ("dgx_a100", "flash2")])
def test_naming_the_devices_default_changes_nothing(topology, default):
    unset, named = _plan(topology, None).plan, _plan(topology, default).plan
    assert named.fwd_s == unset.fwd_s and named.bwd_s == unset.bwd_s


def test_a_named_kernel_times_only_the_attention_cores():
    runs = {k: _plan("dgx_h100", k) for k in ("flash2", "cudnn")}
    layers = runs["flash2"].workload.layers
    core = [i for i, l in enumerate(layers) if l.attention is not None]
    assert core
    for i in range(len(layers)):
        slow, fast = runs["flash2"].plan, runs["cudnn"].plan
        if i in core:  # FlashAttention-2 runs at about 60% of cuDNN's rate on an H100
            assert slow.fwd_s[i] > 1.4 * fast.fwd_s[i] and slow.bwd_s[i] > 1.4 * fast.bwd_s[i]
        else:
            assert slow.fwd_s[i] == fast.fwd_s[i] and slow.bwd_s[i] == fast.bwd_s[i]


def test_mcdla_layers_times_another_kernel_as_the_devices_default(capsys):
    def attention_s(kernel: str) -> float:
        assert main(["layers", "--topology", "dgx_h100", "--workload", "llama3_8b", "--batch", "8",
                     "--set", "workload.layers=1", "--set", f"device.attention_kernel={kernel}",
                     "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)["kernels"]
        return sum(r["time_s"] for r in rows if r["kind"] == "attention")

    assert attention_s("flash2") > 1.4 * attention_s("cudnn")
    assert main(["layers", "--topology", "dgx_a100", "--workload", "llama3_8b",
                 "--set", "device.attention_kernel=cudnn"]) == 2
    assert "attention_kernel" in capsys.readouterr().err


def test_the_validation_rows_run_their_recipes_kernels():
    """validation/dgxc_h100.yaml and megatron_h100.yaml: each row's kernel as its run's
    environment had Transformer Engine choose it (the tables' headers give the sources)."""
    from mcdla.config.validation import read_validation

    def kernels(table: str) -> dict[str, str | None]:
        return {r.quantity: r.args["set"].get("training.attention_kernel") for r in read_validation(table)[1].rows}

    for quantity, kernel in kernels("dgxc_h100").items():
        expected = "cudnn" if quantity.startswith("Nemotron-4 15B") else "flash2"  # NVTE_FUSED_ATTN=1 only for 15B
        assert kernel == expected, quantity
    assert set(kernels("megatron_h100").values()) == {"cudnn"}
    assert set(kernels("llama3_h100").values()) == {None}  # not established: the preset's default
