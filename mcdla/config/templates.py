"""Workload templates: transformer families expanded from a few parameters.

A workload file with ``template: decoder`` (GPT, Llama) or ``template: encoder``
(BERT) gives the family's parameters instead of layers; :func:`expand` writes the
layers a hand-written file would have (blocks repeated ``layers`` times), which the
workload builder then reads like any other file. ``batch`` counts sequences of
``seq_len`` tokens.

Decoder block (pre-norm, GPT-2 and Llama): norm, QKV projection (hidden ->
(heads + 2 kv_heads) x head_dim), attention, output projection, residual add; norm,
MLP (GELU: hidden -> ffn -> hidden; SwiGLU: hidden -> 2 ffn (gate and up, one GEMM)
-> ffn -> hidden), residual add. Then a final norm, the vocabulary projection (tied to
the token embedding or its own) and the cross-entropy loss. Positions are a learned
table added to the embeddings (``position: learned``) or rotary (``rope``: no
parameters; its element-wise cost is folded into the QKV projection's output and
not charged).
``head_dim`` (default hidden / heads), ``qkv_bias`` (default ``bias``) and
``parallel_residual`` (GPT-NeoX: one residual add of the block's input and both
branches, each with its own norm) describe the variants Hugging Face configs name.
Encoder block (post-norm, BERT): attention and residual add, then norm; MLP and add,
then norm; embeddings are token + position + token type, normalized; a pooler
(linear hidden -> hidden, as BertModel has) and the masked-LM projection tied to the
token embedding, without the MLM head's transform.

Mixture of experts (``experts`` > 0, pre-norm SwiGLU decoders): the MLP of every block
after the first ``dense_layers`` is a routed one (router, dispatch, expert banks,
combine, shared experts: mcdla.hw.moe), whose outputs the second residual add sums
with the stream. ``kv_lora_rank`` selects DeepSeek's multi-head latent attention
(:func:`_latent_attention`). docs/workloads.md describes both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from mcdla.config.schema import NonNegativeInt, PositiveFloat, PositiveInt, Where, build

__all__ = ["TransformerDoc", "expand"]


@dataclass(frozen=True)
class TransformerDoc:
    template: Literal["decoder", "encoder"]
    name: str
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    ffn: PositiveInt
    seq_len: PositiveInt
    vocab: PositiveInt
    description: str = ""
    kv_heads: PositiveInt | None = None
    tied_embeddings: bool = True
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    bias: bool = True
    position: Literal["learned", "rope"] = "learned"
    max_positions: PositiveInt | None = None  # the learned table's size (default seq_len)
    token_types: NonNegativeInt = 0  # BERT's segment embeddings
    pooler: bool = False
    flash: bool = False
    dropout: bool = False
    head_dim: PositiveInt | None = None  # default hidden / heads (Gemma's is larger)
    qkv_bias: bool | None = None  # the QKV projection's bias, when it differs from ``bias`` (Qwen2)
    parallel_residual: bool = False  # GPT-NeoX: x + attn(norm1(x)) + mlp(norm2(x))
    precision_bytes: PositiveInt = 2  # mixed precision: fp16/bf16 weights, activations, gradients
    optimizer: Literal["none", "sgd", "momentum", "adam"] = "adam"
    master_weights: bool = True
    # Mixture of experts (decoder only; mcdla.hw.moe): ``experts`` routed experts (0:
    # dense) of ``expert_ffn`` (default ffn), ``top_k`` per token, ``shared_experts``
    # always used; the first ``dense_layers`` blocks keep the dense MLP of ``ffn``.
    experts: NonNegativeInt = 0
    top_k: PositiveInt = 1
    expert_ffn: PositiveInt | None = None
    shared_experts: NonNegativeInt = 0
    dense_layers: NonNegativeInt = 0
    router: Literal["softmax", "sigmoid"] = "softmax"  # scoring: Mixtral softmax, DeepSeek-V3 sigmoid
    router_bias: bool = False  # DeepSeek-V3's per-expert e_score_correction_bias
    capacity_factor: PositiveFloat = 1.0
    # DeepSeek's multi-head latent attention (DeepSeek-V2, arXiv:2405.04434, section 2.1),
    # when kv_lora_rank is set: K and V come from a kv_lora_rank latent (normed), Q from a
    # q_lora_rank one (or straight from hidden); each head's Q and K are head_dim (the
    # "nope" part) plus rope_head_dim, the rotary key shared by the heads; V is v_head_dim.
    q_lora_rank: PositiveInt | None = None
    kv_lora_rank: PositiveInt | None = None
    rope_head_dim: PositiveInt = 64
    v_head_dim: PositiveInt | None = None


def expand(doc: dict[str, Any], file: str) -> dict[str, Any]:
    """The workload document a template stands for."""
    t = build(TransformerDoc, doc, Where(file))
    where = Where(file)
    if t.hidden % t.heads and t.head_dim is None:
        raise where.child("hidden").error(f"{t.hidden} is not a multiple of heads={t.heads}")
    kv = t.kv_heads or t.heads
    if t.heads % kv:
        raise where.child("kv_heads").error(f"{kv} does not divide heads={t.heads}")
    head_dim = t.head_dim or t.hidden // t.heads
    qkv = (t.heads + 2 * kv) * head_dim
    decoder = t.template == "decoder"
    attention = {"kind": "attention", "heads": t.heads, "kv_heads": kv, "causal": decoder, "flash": t.flash,
                 "dropout": t.dropout}  # Megatron-LM: attention and hidden dropout together

    def drop() -> list[dict[str, Any]]:  # a new layer each time: the layers are named after expansion
        return [{"kind": "dropout"}] if t.dropout else []

    if t.mlp == "gelu":
        mlp = [{"kind": "linear", "out_features": t.ffn, "bias": t.bias}, {"kind": "gelu"}]
    else:
        mlp = [{"kind": "linear", "out_features": 2 * t.ffn, "bias": t.bias}, {"kind": "swiglu"}]
    mlp += [{"kind": "linear", "out_features": t.hidden, "bias": t.bias}, *drop()]
    moe = _moe_mlp(t, where) if t.experts else None
    qkv_bias = t.bias if t.qkv_bias is None else t.qkv_bias
    if t.q_lora_rank and not t.kv_lora_rank:
        raise where.child("q_lora_rank").error("latent attention needs kv_lora_rank as well (DeepSeek-V3: 512)")
    if t.kv_lora_rank:
        attend = _latent_attention(t, head_dim, attention, drop)
    else:
        attend = [{"kind": "linear", "out_features": qkv, "bias": qkv_bias}, attention,
                  {"kind": "linear", "out_features": t.hidden, "bias": t.bias}, *drop()]
    attend[-1]["name"], mlp[-1]["name"] = "attn_out", "mlp_out"  # the residual adds' inputs
    if decoder and t.parallel_residual:  # both branches read the block's input
        block = ([{"name": "norm1", "kind": t.norm, "inputs": ["in"]}] + attend
                 + [{"name": "norm2", "kind": t.norm, "inputs": ["in"]}] + mlp
                 + [{"name": "res2", "kind": "add", "inputs": ["attn_out", "mlp_out", "in"]}])
    elif decoder:  # pre-norm
        block = ([{"name": "norm1", "kind": t.norm, "inputs": ["in"]}] + attend
                 + [{"name": "res1", "kind": "add", "inputs": ["attn_out", "in"]},
                    {"name": "norm2", "kind": t.norm}] + mlp
                 + [{"name": "res2", "kind": "add", "inputs": ["mlp_out", "res1"]}])
    else:  # post-norm
        block = (attend + [{"name": "res1", "kind": "add", "inputs": ["attn_out", "in"]},
                           {"name": "norm1", "kind": t.norm}] + mlp
                 + [{"name": "res2", "kind": "add", "inputs": ["mlp_out", "norm1"]},
                    {"name": "norm2", "kind": t.norm}])
    blocks = {"block": {"layers": block}}
    stacks = [{"name": "blocks", "block": "block", "repeat": t.layers}]
    if moe is not None:  # the same block with the routed MLP, after the dense ones
        blocks["moe_block"] = {"layers": _swap_mlp(block, mlp, moe)}
        moe_layers = t.layers - t.dense_layers
        stacks = [{"name": "dense_blocks", "block": "block", "repeat": t.dense_layers}] if t.dense_layers else []
        stacks.append({"name": "blocks", "block": "moe_block", "repeat": moe_layers})
    last_block = "blocks" if stacks[-1]["repeat"] == 1 else f"blocks.{stacks[-1]['repeat']}"
    layers: list[dict[str, Any]] = [{"name": "embed", "kind": "embedding", "vocab": t.vocab, "hidden": t.hidden}]
    if t.position == "learned":
        layers.append({"name": "positions", "kind": "position",
                       "max_positions": t.max_positions or t.seq_len, "types": t.token_types})
    if not decoder:
        layers.append({"name": "embed_norm", "kind": t.norm})
    layers += [*drop(), *stacks]
    if decoder:
        layers.append({"name": "final_norm", "kind": t.norm})
    if t.pooler:  # BertModel's pooler (its parameters); it reads the first token, charged on all
        layers.append({"name": "pooler", "kind": "linear", "out_features": t.hidden, "bias": True,
                       "inputs": [last_block]})
    head = {"name": "lm_head", "kind": "linear", "out_features": t.vocab, "bias": False,
            "inputs": ["final_norm" if decoder else last_block]}
    if t.tied_embeddings:
        head["tied_to"] = "embed"
    layers += [head, {"name": "loss", "kind": "cross_entropy"}]
    kept = {k: v for k, v in asdict(t).items()}
    description = t.description or (
        f"{'decoder' if decoder else 'encoder'} transformer: {t.layers} layers, hidden {t.hidden}, "
        f"{t.heads} heads ({kv} KV), FFN {t.ffn}, {t.mlp}, {t.norm}, vocabulary {t.vocab}, "
        f"sequence {t.seq_len}" + (f", {t.experts} experts (top-{t.top_k})" if t.experts else ""))
    return {
        "name": t.name,
        "description": description,
        "input": {"tokens": t.seq_len},
        "precision_bytes": kept["precision_bytes"],
        "optimizer": t.optimizer,
        "master_weights": t.master_weights,
        "blocks": blocks,
        "layers": layers,
    }


def _moe_mlp(t: TransformerDoc, where: Where) -> tuple[list[dict[str, Any]], list[str]]:
    """A routed MoE MLP reading ``norm2`` (mcdla.hw.moe): router, dispatch, SwiGLU experts,
    combine, and the shared experts beside them; and the names of its outputs."""
    if t.template != "decoder" or t.parallel_residual or t.mlp != "swiglu" or t.dropout:
        raise where.child("experts").error("mixture-of-experts layers are modelled in pre-norm decoders "
                                           "with SwiGLU experts and no dropout (template: decoder, "
                                           "mlp: swiglu, dropout: false)")
    if t.top_k > t.experts:
        raise where.child("top_k").error(f"{t.top_k} is more than experts={t.experts}")
    if t.dense_layers >= t.layers:
        raise where.child("dense_layers").error(f"{t.dense_layers} leaves no MoE layer of layers={t.layers}")
    ffn = t.expert_ffn or t.ffn
    bank = {"kind": "linear", "bias": False, "experts": t.experts, "top_k": t.top_k}
    scoring = {"kind": "softmax"} if t.router == "softmax" else {"kind": "elementwise"}  # sigmoid
    routed = [{"name": "router", "kind": "linear", "out_features": t.experts, "bias": t.router_bias,
               "inputs": ["norm2"]}, {"name": "scores", **scoring},
              {"name": "dispatch", "kind": "moe_dispatch", "top_k": t.top_k,
               "capacity_factor": t.capacity_factor, "inputs": ["norm2", "scores"]},
              {"name": "experts_up", **bank, "out_features": 2 * ffn}, {"kind": "swiglu"},
              {"name": "experts_down", **bank, "out_features": t.hidden},
              {"name": "routed", "kind": "moe_combine", "inputs": ["experts_down", "scores"]}]
    outputs = ["routed"]
    if t.shared_experts:  # one SwiGLU MLP as wide as the shared experts together (DeepSeekMoE)
        routed += [{"name": "shared_up", "kind": "linear", "out_features": 2 * ffn * t.shared_experts,
                    "bias": False, "inputs": ["norm2"]}, {"kind": "swiglu"},
                   {"name": "shared", "kind": "linear", "out_features": t.hidden, "bias": False}]
        outputs.append("shared")
    return routed, outputs


def _swap_mlp(block: list[dict[str, Any]], mlp: list[dict[str, Any]], moe) -> list[dict[str, Any]]:
    """``block`` with its dense MLP replaced by the routed one, whose outputs (routed and
    shared experts) the second residual add sums with the stream (one add, as
    parallel_residual does)."""
    layers, outputs = moe
    start = next(i for i, layer in enumerate(block) if layer is mlp[0])
    swapped = block[:start] + layers + block[start + len(mlp):]
    res2 = next(i for i, layer in enumerate(swapped) if layer.get("name") == "res2")
    swapped[res2] = {**swapped[res2], "inputs": outputs + ["res1"]}
    return swapped


def _latent_attention(t: TransformerDoc, head_dim: int, attention: dict[str, Any], drop) -> list[dict[str, Any]]:
    """Multi-head latent attention reading ``norm1`` (DeepSeek-V2/V3; Hugging Face
    modeling_deepseek.py): q = W_qb norm(W_qa x) (or W_q x), [k_nope; v] = W_kvb
    norm(W_kva x), and the shared rotary key W_kr x (kv_a_proj_with_mqa's last
    rope_head_dim columns, as its own GEMM: the same parameters and MACs). The rotary key
    is copied to every head and Q, K, V assembled into the core's input, as that code
    does (an element-wise copy); then the core and the output projection."""
    qk = head_dim + t.rope_head_dim
    v = t.v_head_dim or head_dim
    lin = {"kind": "linear", "bias": False}
    if t.q_lora_rank:
        query = [{"name": "q_a", **lin, "out_features": t.q_lora_rank, "inputs": ["norm1"]}, {"kind": t.norm}]
    else:
        query = []
    query.append({"name": "q", **lin, "out_features": t.heads * qk, **({} if query else {"inputs": ["norm1"]})})
    width = 2 * t.heads * qk + t.heads * v
    return query + [
        {"name": "kv_a", **lin, "out_features": t.kv_lora_rank, "inputs": ["norm1"]}, {"kind": t.norm},
        {"name": "kv", **lin, "out_features": t.heads * (head_dim + v)},
        {"name": "k_rope", **lin, "out_features": t.rope_head_dim, "inputs": ["norm1"]},
        {"name": "qkv", "kind": "elementwise", "inputs": ["q", "kv", "k_rope"], "shape": [t.seq_len, width]},
        {**attention, "kv_heads": t.heads, "v_head_dim": v},
        {**lin, "out_features": t.hidden, "bias": t.bias}, *drop()]
