"""``mcdla import config.json``: a Hugging Face model config -> a workload template file.

A config names a model's family (``model_type``) and its sizes; each supported family
maps them onto mcdla's transformer templates (mcdla/config/templates.py), which then
expand to layers like any template file, so an import and a hand-written template are
one description. The parameter totals are exact (tests/test_hf_import.py checks them
against published totals).

| ``model_type`` | template | as the Hugging Face modeling code builds it |
|---|---|---|
| llama, mistral | decoder | RMSNorm, SwiGLU, rotary, ``attention_bias``/``mlp_bias`` (default none), untied |
| qwen2 | decoder | as Llama, with a bias on the QKV projection only |
| gemma | decoder | as Llama, GeGLU (priced as SwiGLU: the same GEMMs), ``head_dim`` given, tied |
| gpt2 | decoder | LayerNorm, GELU, learned positions (``n_positions``), biases, tied |
| gpt_neox | decoder | LayerNorm, GELU, rotary, biases, untied, ``use_parallel_residual`` |
| bert | encoder | post-norm, learned positions and token types, the pooler, tied MLM projection |
| mixtral | decoder | as Llama, every MLP ``num_local_experts`` SwiGLU experts, top ``num_experts_per_tok``, a softmax router |
| deepseek_v3 | decoder | multi-head latent attention (``q_lora_rank``, ``kv_lora_rank``, rope and nope head dims, ``v_head_dim``), ``first_k_dense_replace`` dense layers, then ``n_routed_experts`` of ``moe_intermediate_size`` and ``n_shared_experts``, top ``num_experts_per_tok``, a sigmoid router with its score-correction bias; the main model without its multi-token-prediction module (``num_nextn_predict_layers``) |

The sequence is the config's context length (``max_position_embeddings``, GPT-2's
``n_positions``); the precision its ``torch_dtype`` (bf16/fp16: 2 bytes, with fp32 master
weights). Other mixture-of-experts configs (Qwen-MoE, ...) are refused by their model type.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mcdla.errors import InputError, excerpt
from mcdla.importers import clean_name

__all__ = ["import_hf_config", "FAMILIES"]

FAMILIES = ("llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox", "bert", "mixtral", "deepseek_v3")
# Keys that give a model experts (Mixtral: num_local_experts; DeepSeek: n_routed_experts;
# Qwen-MoE: num_experts).
EXPERT_KEYS = ("num_local_experts", "n_routed_experts", "num_experts")
# The families whose experts the import reads (the others' experts would be lost).
MOE_FAMILIES = ("mixtral", "deepseek_v3")
PRECISION = {"bfloat16": 2, "float16": 2, "float32": 4}


class _Config:
    """The config's values, each read with the key named in the error when it is bad."""

    def __init__(self, values: dict[str, Any], path: str):
        self.values, self.path = values, path

    def int(self, key: str, default: int | None = None) -> int:
        value = self.values.get(key, default)
        if value is None:
            raise InputError("missing; a Hugging Face config of this model type gives it", file=self.path, key=key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"expected a positive integer, got {excerpt(value)}", file=self.path, key=key)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise InputError(f"expected true or false, got {excerpt(value)}", file=self.path, key=key)
        return value


def import_hf_config(path: str, *, name: str | None = None) -> dict[str, Any]:
    """The workload document (a ``template:`` document) a Hugging Face config describes."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON config: {excerpt(str(exc), 120)}", file=path) from None
    if not isinstance(values, dict):
        raise InputError("expected a JSON object (a Hugging Face config.json)", file=path)
    model_type = values.get("model_type")
    experts = next((k for k in EXPERT_KEYS if values.get(k)), None)
    if experts is not None and model_type not in MOE_FAMILIES:
        raise InputError(f"a mixture-of-experts model of model_type {excerpt(model_type)} ({experts}: "
                         f"{excerpt(values[experts])}) is not supported; supported: {', '.join(MOE_FAMILIES)}",
                         file=path, key="model_type")
    if model_type not in FAMILIES:
        raise InputError(f"model_type {excerpt(model_type)} is not supported; supported: {', '.join(FAMILIES)}",
                         file=path, key="model_type")
    c = _Config(values, path)
    doc = _FAMILY[model_type](c)
    dtype = values.get("torch_dtype", values.get("dtype", "float32"))
    if dtype not in PRECISION:
        raise InputError(f"unknown dtype {excerpt(dtype)}; expected one of {', '.join(PRECISION)}", file=path,
                         key="torch_dtype")
    stem = os.path.splitext(os.path.basename(path))[0]  # config.json: named after its folder
    base = os.path.basename(os.path.dirname(os.path.abspath(path))) if stem == "config" else stem
    default_name = str(values.get("_name_or_path") or base or model_type).rstrip("/").rsplit("/", 1)[-1]
    return {"template": doc.pop("template"), "name": clean_name(name or default_name, "imported"),
            "description": f"{model_type} from the Hugging Face config {os.path.basename(path)}",
            **doc, "precision_bytes": PRECISION[dtype], "master_weights": PRECISION[dtype] < 4}


def _llama(c: _Config, *, tied: bool = False, qkv_bias: bool | None = None) -> dict[str, Any]:
    attention_bias, mlp_bias = c.bool("attention_bias", False), c.bool("mlp_bias", False)
    if attention_bias != mlp_bias:
        raise InputError("attention_bias and mlp_bias differ: the decoder template gives one bias to both",
                         file=c.path, key="mlp_bias")
    heads = c.int("num_attention_heads")
    doc = {"template": "decoder", "layers": c.int("num_hidden_layers"), "hidden": c.int("hidden_size"),
           "heads": heads, "kv_heads": c.int("num_key_value_heads", heads), "ffn": c.int("intermediate_size"),
           "seq_len": c.int("max_position_embeddings"), "vocab": c.int("vocab_size"),
           "tied_embeddings": c.bool("tie_word_embeddings", tied), "norm": "rmsnorm", "mlp": "swiglu",
           "bias": attention_bias, "position": "rope"}
    if c.values.get("head_dim") is not None:
        doc["head_dim"] = c.int("head_dim")
    if qkv_bias is not None and qkv_bias != attention_bias:
        doc["qkv_bias"] = qkv_bias
    return doc


def _gpt2(c: _Config) -> dict[str, Any]:
    hidden = c.int("n_embd")
    positions = c.int("n_positions")
    return {"template": "decoder", "layers": c.int("n_layer"), "hidden": hidden, "heads": c.int("n_head"),
            "ffn": c.int("n_inner", 4 * hidden), "seq_len": positions, "max_positions": positions,
            "vocab": c.int("vocab_size"), "tied_embeddings": c.bool("tie_word_embeddings", True)}


def _gpt_neox(c: _Config) -> dict[str, Any]:
    return {"template": "decoder", "layers": c.int("num_hidden_layers"), "hidden": c.int("hidden_size"),
            "heads": c.int("num_attention_heads"), "ffn": c.int("intermediate_size"),
            "seq_len": c.int("max_position_embeddings"), "vocab": c.int("vocab_size"),
            "tied_embeddings": c.bool("tie_word_embeddings", False), "bias": c.bool("attention_bias", True),
            "position": "rope", "parallel_residual": c.bool("use_parallel_residual", True)}


def _bert(c: _Config) -> dict[str, Any]:
    positions = c.int("max_position_embeddings")
    return {"template": "encoder", "layers": c.int("num_hidden_layers"), "hidden": c.int("hidden_size"),
            "heads": c.int("num_attention_heads"), "ffn": c.int("intermediate_size"), "seq_len": positions,
            "max_positions": positions, "vocab": c.int("vocab_size"),
            "token_types": c.int("type_vocab_size", 2), "pooler": True}


def _mixtral(c: _Config) -> dict[str, Any]:
    return {**_llama(c), "experts": c.int("num_local_experts"), "top_k": c.int("num_experts_per_tok", 2),
            "router": "softmax"}


def _deepseek_v3(c: _Config) -> dict[str, Any]:
    """DeepSeek-V3's main model (DeepseekV3Config's defaults; its MTP module is left out)."""
    scoring = c.values.get("scoring_func", "sigmoid")
    if scoring not in ("sigmoid", "softmax"):
        raise InputError(f"expected sigmoid or softmax, got {excerpt(scoring)}", file=c.path, key="scoring_func")
    doc = {**_llama(c), "head_dim": c.int("qk_nope_head_dim"), "rope_head_dim": c.int("qk_rope_head_dim"),
           "v_head_dim": c.int("v_head_dim"), "q_lora_rank": c.int("q_lora_rank"),
           "kv_lora_rank": c.int("kv_lora_rank"), "dense_layers": c.int("first_k_dense_replace"),
           "experts": c.int("n_routed_experts"), "expert_ffn": c.int("moe_intermediate_size"),
           "shared_experts": c.int("n_shared_experts"), "top_k": c.int("num_experts_per_tok"),
           "router": scoring,
           # noaux_tc routing adds a per-expert score-correction bias (e_score_correction_bias).
           "router_bias": c.values.get("topk_method", "noaux_tc") == "noaux_tc"}
    doc.pop("kv_heads", None)  # latent attention: every head has its keys and values
    return doc


# Each family's defaults are those of its transformers configuration class.
_FAMILY = {
    "llama": _llama,
    "mistral": _llama,
    "qwen2": lambda c: _llama(c, qkv_bias=True),  # Qwen2Attention: q/k/v with bias, o_proj without
    "gemma": lambda c: _llama(c, tied=True),
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "bert": _bert,
    "mixtral": _mixtral,
    "deepseek_v3": _deepseek_v3,
}
