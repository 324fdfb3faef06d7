"""Mixture-of-experts layers and templates (issue 25, the MoE workload part)."""

from __future__ import annotations

import pytest

from mcdla.cli.main import main
from mcdla.errors import InputError
from mcdla.hw.workload import load_workload
from mcdla.run import simulate

TINY = ("template: decoder\nname: tinymoe\nlayers: 3\nhidden: 64\nheads: 4\nkv_heads: 2\nffn: 256\n"
        "expert_ffn: 32\nexperts: {experts}\ntop_k: {top_k}\nshared_experts: 1\ndense_layers: 1\n"
        "router: sigmoid\nrouter_bias: true\nseq_len: 32\nvocab: 100\nnorm: rmsnorm\nmlp: swiglu\n"
        "bias: false\nposition: rope\ncapacity_factor: {cf}\n")


def tiny(tmp_path, experts=8, top_k=2, cf=1.0):
    path = tmp_path / f"moe_{experts}_{top_k}_{cf}.yaml"
    path.write_text(TINY.format(experts=experts, top_k=top_k, cf=cf))
    return load_workload(str(path))


def test_mixtral_8x7b_has_its_published_total_and_active_parameters():
    w = load_workload("mixtral_8x7b")
    # Hugging Face mistralai/Mixtral-8x7B-v0.1: 46,702,792,704; the paper's 13B active is
    # per layer attention (4096 x 6144 QKV, 4096 x 4096 out), 2 norms, the router
    # (4096 x 8) and 2 of the 8 experts (3 x 4096 x 14336 each), over 32 layers, plus both
    # embeddings (32000 x 4096) and the final norm.
    assert w.params == 46_702_792_704
    per_layer = 4096 * 6144 + 4096 * 4096 + 2 * 4096 + 4096 * 8 + 2 * 3 * 4096 * 14336
    assert w.active_params == 32 * per_layer + 2 * 32000 * 4096 + 4096 == 12_879_925_248


def test_a_small_moe_counts_every_expert_and_uses_top_k(tmp_path):
    w = tiny(tmp_path)
    attention = 64 * 128 + 64 * 64 + 2 * 64  # QKV (4 + 2 x 2 heads of 16), out, two RMSNorms
    dense = 3 * 64 * 256
    expert = 3 * 64 * 32
    router = 64 * 8 + 8  # with DeepSeek-V3's per-expert correction bias
    moe = 8 * expert + expert + router  # 8 routed, 1 shared
    embeddings = 100 * 64 + 64  # tied head, final norm
    assert w.params == embeddings + 3 * attention + dense + 2 * moe == 204_496
    assert w.active_params == w.params - 2 * (8 - 2) * expert == 130_768


def test_expert_macs_scale_with_top_k_not_with_experts(tmp_path):
    base, wide, deeper = tiny(tmp_path), tiny(tmp_path, experts=16), tiny(tmp_path, top_k=4)
    tokens, moe_layers = 32, 2
    # Twice the experts: only the router (64 -> experts) grows.
    assert wide.macs_fwd_per_sample - base.macs_fwd_per_sample == moe_layers * tokens * 64 * 8
    assert wide.params > base.params + moe_layers * 7 * 3 * 64 * 32
    # Twice top-k: two more experts' SwiGLU per token and layer.
    assert deeper.macs_fwd_per_sample - base.macs_fwd_per_sample == moe_layers * tokens * 2 * 3 * 64 * 32


def test_capacity_factor_pads_the_expert_slots(tmp_path):
    padded = tiny(tmp_path, cf=1.25)
    dispatch = padded.layer("blocks.1/dispatch")
    assert dispatch.out_shape == (80, 64)  # 32 tokens x top-2 x 1.25
    assert padded.layer("blocks.1/experts_up").out_shape == (80, 64)
    assert padded.layer("blocks.1/routed").out_shape == (32, 64)
    base = tiny(tmp_path)
    assert padded.params == base.params
    assert padded.macs_fwd_per_sample - base.macs_fwd_per_sample == 2 * 16 * 3 * 64 * 32


@pytest.mark.parametrize("extra, key", [("top_k: 9\n", "top_k"), ("dense_layers: 3\n", "dense_layers"),
                                        ("dropout: true\n", "experts")])
def test_bad_moe_templates_name_the_key(tmp_path, extra, key):
    path = tmp_path / "bad.yaml"
    text = TINY.format(experts=8, top_k=2, cf=1.0)
    for line in extra.splitlines():
        text = "\n".join(l for l in text.splitlines() if not l.startswith(line.split(":")[0] + ":")) + "\n"
    path.write_text(text + extra)
    with pytest.raises(InputError, match=key):
        load_workload(str(path))


def test_a_small_moe_trains_data_and_model_parallel(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(experts=8, top_k=2, cf=1.0))
    for parallel in ("data", "model"):
        assert simulate("ring", "bw_aware", str(path), parallel, 16)["iteration_time_s"] > 0


def test_workloads_shows_active_parameters(capsys):
    assert main(["workloads", "--workload", "mixtral_8x7b", "--format", "json"]) == 0
    out = capsys.readouterr().out.replace(" ", "").replace("\n", "")
    assert '"params":46702792704,"active_params":12879925248,' in out
