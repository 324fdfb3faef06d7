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
    # Below 1.0 the tokens over capacity are dropped: half the slots, half the expert work.
    dropping = tiny(tmp_path, cf=0.5)
    assert dropping.layer("blocks.1/dispatch").out_shape == (32, 64)
    assert base.macs_fwd_per_sample - dropping.macs_fwd_per_sample == 2 * 32 * 3 * 64 * 32


def test_a_value_head_size_that_does_not_fit_the_input_is_refused(tmp_path):
    path = tmp_path / "bad_attention.yaml"
    path.write_text("name: a\ninput: {tokens: 8}\nlayers:\n  - {kind: embedding, vocab: 10, hidden: 100}\n"
                    "  - {kind: attention, heads: 4, v_head_dim: 8}\n")
    with pytest.raises(InputError, match="value heads of 8"):
        load_workload(str(path))


@pytest.mark.parametrize("extra, key", [("top_k: 9\n", "top_k"), ("dense_layers: 3\n", "dense_layers"),
                                        ("dropout: true\n", "experts"), ("q_lora_rank: 8\n", "q_lora_rank")])
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


def test_deepseek_v3_main_model_has_671b_parameters_and_37b_active():
    # Derived from deepseek-ai/DeepSeek-V3 config.json, the main model without its MTP
    # module (the official 671B; the checkpoint's 685B includes the 14B MTP module):
    #   MLA per layer: q_a 7168 x 1536 + norm 1536 + q_b 1536 x 128 x (128 + 64)
    #     + kv_a 7168 x (512 + 64) + norm 512 + kv_b 512 x 128 x (128 + 128)
    #     + o 128 x 128 x 7168                                    = 187,107,328
    #   two RMSNorms per layer                                    = 14,336
    #   dense MLP (first 3 layers): 3 x 7168 x 18432              = 396,361,728
    #   one expert: 3 x 7168 x 2048                               = 44,040,192
    #   MoE MLP (58 layers): 257 experts + router 7168 x 256 + correction bias 256
    #                                                             = 11,320,164,608
    #   embeddings 2 x 129280 x 7168 + final norm 7168            = 1,853,365,248
    #   total: 1,853,365,248 + 61 x 187,121,664 + 3 x 396,361,728 + 58 x 11,320,164,608
    #        = 671,026,419,200
    w = load_workload("deepseek_v3")
    attention, norms, dense, expert = 187_107_328, 14_336, 396_361_728, 44_040_192
    moe = 257 * expert + 7168 * 256 + 256
    assert moe == 11_320_164_608
    assert w.params == 1_853_365_248 + 61 * (attention + norms) + 3 * dense + 58 * moe == 671_026_419_200
    # Active: 8 routed + 1 shared expert of the 257 per MoE layer.
    assert w.active_params == w.params - 58 * (256 - 8) * expert == 37_552_297_472


def test_latent_attention_uses_192_wide_queries_and_keys_and_128_wide_values():
    w = load_workload("deepseek_v3")
    core = next(l for l in w.layers if l.attention is not None)
    a = core.attention
    assert (a.heads, a.kv_heads, a.head_dim, a.v_head_dim, a.seq) == (128, 128, 192, 128, 4096)
    assert core.out_shape == (4096, 128 * 128)  # the output projection reads 16384 features
    s = 4096
    # Fused causal kernels: half of S = Q K^T (reduction 192) and O = P V (128 wide) per head.
    (fwd,) = core.kernels("fwd", 1, 2)
    assert fwd.macs == 128 * (s * s * 192 + s * s * 128) // 2
    # Backward: S again and dQ, dK (192), dP and dV (128).
    (bwd,) = core.kernels("bwd", 1, 2)
    assert bwd.macs == 128 * (3 * s * s * 192 + 2 * s * s * 128) // 2


def test_a_small_latent_attention_moe_trains(tmp_path):
    path = tmp_path / "mla.yaml"
    path.write_text(TINY.format(experts=8, top_k=2, cf=1.0)
                    + "head_dim: 16\nrope_head_dim: 8\nv_head_dim: 8\nq_lora_rank: 24\nkv_lora_rank: 16\n")
    w = load_workload(str(path))
    a = next(l for l in w.layers if l.attention is not None).attention
    assert (a.head_dim, a.v_head_dim) == (24, 8)
    for parallel in ("data", "model"):
        assert simulate("ring", "bw_aware", str(path), parallel, 16)["iteration_time_s"] > 0
