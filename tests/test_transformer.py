"""Transformer layers and the LLM templates (issue: today's models)."""

from __future__ import annotations

import pytest

from mcdla.cli.main import main
from mcdla.errors import InfeasibleError, InputError
from mcdla.hw.memory import model_state_bytes
from mcdla.hw.workload import load_workload
from mcdla.run import simulate

# Published parameter counts (the models' configurations on the Hugging Face hub; GPT-3
# from Brown et al. 2020, Table 2.1 with GPT-2's vocabulary and tied embeddings).
PUBLISHED = {
    "gpt2": 124_439_808,
    "gpt2_xl": 1_557_611_200,
    "bert_large": 335_141_888,  # BertModel, pooler included
    "llama2_7b": 6_738_415_616,
    "llama2_13b": 13_015_864_320,
    "llama2_70b": 68_976_648_192,
    "llama3_8b": 8_030_261_248,
    "llama3_70b": 70_553_706_496,
    "llama3_405b": 405_853_388_800,
    "gpt3_175b": 174_604_259_328,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_models(name):
    assert load_workload(name).params == PUBLISHED[name]


# Training FLOPs per token, the standard count (Narayanan et al. 2021, eq. 3: 72 B s L
# h^2 (1 + s/6h + V/12hL), i.e. 6 N + 12 L s h): 6 N for the parameters that multiply,
# forward and backward, plus 12 L s h for QK^T and AV. The vocabulary projection counts
# once; lookup tables (an untied input embedding, learned positions) do no GEMM.
@pytest.mark.parametrize("name", ["gpt2", "gpt2_xl", "llama2_7b", "llama2_70b", "llama3_8b", "gpt3_175b"])
def test_training_flops_per_token_match_6n_plus_attention(name):
    doc = {"gpt2": (12, 1024, 768, 50257, True), "gpt2_xl": (48, 1024, 1600, 50257, True),
           "llama2_7b": (32, 4096, 4096, 32000, False), "llama2_70b": (80, 4096, 8192, 32000, False),
           "llama3_8b": (32, 8192, 4096, 128256, False), "gpt3_175b": (96, 2048, 12288, 50257, True)}[name]
    layers, seq, hidden, vocab, tied = doc
    work = load_workload(name)
    learned = seq * hidden if name.startswith("gpt") else 0  # GPT's position table
    multiplying = work.params - learned - (0 if tied else vocab * hidden)
    standard = 6 * multiplying + 12 * layers * seq * hidden
    # fwd MACs -> 2 FLOPs each, backward twice the forward; flash skips the masked half
    # of the attention products, so count the materialized form.
    mcdla = 6 * sum(l.macs_fwd_per_sample for l in work.layers if l.attention is None) / seq
    attention = sum(1 for l in work.layers if l.attention is not None)
    mcdla += 12 * attention * seq * hidden
    assert mcdla == pytest.approx(standard, rel=0.02)


def test_attention_kernels_count_qk_and_av_products():
    work = load_workload("gpt2")
    core = next(l for l in work.layers if l.attention is not None)
    a = core.attention
    assert (a.heads, a.kv_heads, a.head_dim, a.seq, a.flash) == (12, 12, 64, 1024, False)
    fwd = core.kernels("fwd", 2, 2)
    assert sum(k.macs for k in fwd) == 2 * 2 * 12 * 1024 * 1024 * 64  # QK^T and AV, batch 2
    bwd = core.kernels("bwd", 2, 2)
    assert sum(k.macs for k in bwd) == 4 * 2 * 12 * 1024 * 1024 * 64  # dV, dP, dQ, dK
    # Materialized attention keeps P: heads x seq^2 per sequence, beside the output.
    assert core.out_elems_per_sample == 1024 * 768 + 12 * 1024 * 1024


def test_flash_attention_keeps_no_score_matrix_and_skips_the_masked_half():
    work = load_workload("llama2_7b")
    core = next(l for l in work.layers if l.attention is not None)
    s, d, h = 4096, 128, 32
    assert core.out_elems_per_sample == s * h * d + h * s  # output and softmax statistics
    (fwd,) = core.kernels("fwd", 1, 2)
    assert fwd.macs == (2 * h * s * s * d) // 2
    assert fwd.bytes == (3 * s * h * d + s * h * d) * 2  # Q, K, V in, O out: no s^2 traffic


def test_attention_dropout_streams_the_probabilities_only_when_materialized():
    # Megatron-LM's --attention-dropout: the template's dropout drops P as well. The
    # materialized kernels then stream the square through one more kernel each way
    # (the dropout kind's traffic: P in, P' out; dP', the mask in, dP out) and keep P'.
    plain = load_workload("gpt2")
    dropped = load_workload("gpt2", [("dropout", True)])
    core = next(l for l in plain.layers if l.attention is not None)
    drop = next(l for l in dropped.layers if l.attention is not None)
    square = 12 * 1024 * 1024 * 2 * 2  # heads x seq^2, batch 2, fp16
    extra_fwd = sum(k.bytes for k in drop.kernels("fwd", 2, 2)) - sum(k.bytes for k in core.kernels("fwd", 2, 2))
    extra_bwd = sum(k.bytes for k in drop.kernels("bwd", 2, 2)) - sum(k.bytes for k in core.kernels("bwd", 2, 2))
    assert (extra_fwd, extra_bwd) == (2 * square, 3 * square)
    assert [k.name.split(":")[1] for k in drop.kernels("fwd", 2, 2)] == ["qk_fwd", "softmax_fwd", "dropout_fwd", "av_fwd"]
    assert drop.out_elems_per_sample == core.out_elems_per_sample + 12 * 1024 * 1024
    # A fused kernel draws the mask in registers: nothing more is streamed or kept.
    flash = load_workload("gpt2", [("flash", True)])
    flash_drop = load_workload("gpt2", [("flash", True), ("dropout", True)])
    f, fd = (next(l for l in w.layers if l.attention is not None) for w in (flash, flash_drop))
    work = [[(k.macs, k.bytes) for k in l.kernels("bwd", 2, 2)] for l in (f, fd)]
    assert work[0] == work[1] and fd.out_elems_per_sample == f.out_elems_per_sample


def test_grouped_query_attention_shrinks_the_kv_projection():
    work = load_workload("llama2_70b")
    qkv = work.layer("blocks.1/linear2") if "blocks.1/linear2" in work.index else None
    core = next(l for l in work.layers if l.attention is not None)
    assert (core.attention.heads, core.attention.kv_heads) == (64, 8)
    proj = work.layers[core.inputs[0]]
    assert proj.lowering.out_features == (64 + 2 * 8) * 128
    assert qkv is None or qkv.lowering is not None


def test_tied_embeddings_count_once_and_share_a_gradient_group():
    work = load_workload("gpt2")
    head = work.layer("lm_head")
    embed = work.layer("embed")
    assert head.weight_group == embed.weight_group == "embed"
    assert work.weight_groups["embed"] == 50257 * 768 + 1024 * 0  # the table, once
    assert head.lowering.weight_elems == 50257 * 768  # the GEMM still reads it


def test_mixed_precision_adam_keeps_16_bytes_per_parameter():
    work = load_workload("llama2_7b")
    assert model_state_bytes(work) == 16 * 6_738_415_616
    paper = load_workload("resnet34")  # fp32 weights and gradients only, the paper's model
    assert model_state_bytes(paper) == 2 * paper.weight_bytes


def test_llama2_7b_is_infeasible_on_the_paper_designs_with_the_bytes(capsys):
    assert main(["sim", "--workload", "llama2_7b", "--parallel", "data", "--batch", "8"]) == 2
    err = capsys.readouterr().err
    assert "infeasible" in err and "need 108 GB, over its 16 GiB of memory" in err and "bytes" not in err


def test_llama2_7b_trains_on_the_oracle():
    result = simulate("oracle", "bw_aware", "llama2_7b", "data", 8)
    tokens = 8 * 4096
    flops = 6 * 6_738_415_616 * tokens
    peak = 8 * 2 * 1024 * 125 * 1e9  # 8 devices of Table II, 2 FLOPs per MAC
    assert flops / peak < result["iteration_time_s"] < 3 * flops / peak


def test_workloads_summarizes_a_users_file(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text("template: decoder\nname: tiny\nlayers: 2\nhidden: 64\nheads: 4\nffn: 256\n"
                    "seq_len: 32\nvocab: 100\n")
    assert main(["workloads", "--workload", str(path), "--format", "json"]) == 0
    out = capsys.readouterr().out
    block = 128 + (64 * 192 + 192) + (64 * 64 + 64) + 128 + (64 * 256 + 256) + (256 * 64 + 64)
    params = 100 * 64 + 32 * 64 + 2 * block + 128  # embedding, positions, blocks, final norm
    assert f'"params":{params},' in out.replace(" ", "").replace("\n", "")


@pytest.mark.parametrize("doc, key", [
    ("template: decoder\nname: x\nlayers: 2\nhidden: 65\nheads: 4\nffn: 8\nseq_len: 8\nvocab: 9\n", "hidden"),
    ("template: decoder\nname: x\nlayers: 2\nhidden: 64\nheads: 4\nkv_heads: 3\nffn: 8\nseq_len: 8\nvocab: 9\n", "kv_heads"),
    ("template: decoder\nname: x\nlayers: 2\nhidden: 64\nheads: 4\nffn: 8\nseq_len: 8\n", "vocab"),
])
def test_bad_templates_name_the_key(tmp_path, doc, key):
    path = tmp_path / "bad.yaml"
    path.write_text(doc)
    with pytest.raises(InputError, match=key):
        load_workload(str(path))


def test_infeasible_is_not_raised_for_a_small_model():
    result = simulate("ring", "bw_aware", "gpt2", "data", 8)
    assert result["iteration_time_s"] > 0
    with pytest.raises(InfeasibleError):
        simulate("ring", "bw_aware", "gpt3_175b", "data", 8)


def test_the_loss_streams_its_fp32_passes_as_megatron_runs_them():
    # Megatron-LM's loss, pass by pass, in bytes per bf16 logit: cast to fp32 (2 in,
    # 4 out), max (4 in), subtract (4, 4), exp (4, 4), sum (4), divide (4, 4); backward
    # scales the softmax by dY (4, 4) and casts the gradient back (4 in, 2 out).
    forward = [(2, 4), (4, 0), (4, 4), (4, 4), (4, 0), (4, 4)]
    backward = [(4, 4), (4, 2)]
    work = load_workload("gpt2")
    loss = work.layer("loss")
    logits = 1024 * 50257  # one sequence
    (fwd,) = loss.kernels("fwd", 1, 2)
    (bwd,) = loss.kernels("bwd", 1, 2)
    assert fwd.bytes == sum(r + w for r, w in forward) * logits
    assert bwd.bytes == sum(r + w for r, w in backward) * logits


def test_a_causal_materialized_softmax_reads_the_unmasked_half_and_writes_the_square():
    # Megatron-LM's scaled_upper_triang_masked_softmax (2021, a8d172b) loads a row's
    # elements up to the diagonal and stores the whole row (zeros above it); backward
    # loads dP and P up to the diagonal and stores the whole dS. Without the mask the
    # softmax reads and writes the whole square.
    import dataclasses

    causal = next(l for l in load_workload("gpt2").layers if l.attention is not None)
    full = dataclasses.replace(causal, attention=dataclasses.replace(causal.attention, causal=False))
    square = 12 * 1024 * 1024 * 2 * 2  # heads x seq^2, batch 2, fp16

    def softmax_bytes(layer, phase):
        return next(k.bytes for k in layer.kernels(phase, 2, 2) if "softmax" in k.name)

    assert (softmax_bytes(causal, "fwd"), softmax_bytes(causal, "bwd")) == (square * 3 // 2, 2 * square)
    assert (softmax_bytes(full, "fwd"), softmax_bytes(full, "bwd")) == (2 * square, 3 * square)
