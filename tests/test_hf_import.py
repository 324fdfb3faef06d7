"""mcdla import config.json: Hugging Face configs (written from the published files under
tests/data/hf) to workload templates, their parameter totals checked against the
published totals (each also what transformers' own classes count for that config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mcdla.cli.main import main
from mcdla.hw.workload import load_workload

DATA = Path(__file__).parent / "data" / "hf"

# Published totals: Llama 2 (Touvron et al. 2023, the 7B checkpoint), Mistral 7B
# (Jiang et al. 2023), GPT-2 small (Radford et al. 2019), BERT-base with its pooler
# (Devlin et al. 2019), Gemma 2B and 7B (Gemma Team 2024: 2.51B and 8.54B), Qwen2-7B
# (Qwen Team 2024: 7.62B), GPT-NeoX-20B as transformers builds it. transformers 5.25's
# classes count the same for each config (sum of parameter sizes, tied weights once).
TOTALS = {
    "llama2_7b": 6_738_415_616,
    "mistral_7b": 7_241_732_096,
    "gpt2": 124_439_808,
    "bert_base_uncased": 109_482_240,
    "gemma_2b": 2_506_172_416,
    "gemma_7b": 8_537_680_896,
    "qwen2_7b": 7_615_616_512,
    "gpt_neox_20b": 20_554_567_680,
    # Mixtral 8x7B: Mistral AI's published 46.7B, exactly as the mixtral_8x7b template
    # counts it; DeepSeek-V3's main model (its 671B) without the 14B multi-token-prediction
    # module, as the deepseek_v3 template counts it (tests/test_moe.py, the arithmetic).
    "mixtral_8x7b": 46_702_792_704,
    "deepseek_v3": 671_026_419_200,
}
# Parameters a token uses: the router, the shared experts and top-k routed experts.
ACTIVE = {"mixtral_8x7b": 12_879_925_248, "deepseek_v3": 37_552_297_472}


def _import(tmp_path, name, *extra):
    out = tmp_path / f"{name}.yaml"
    assert main(["import", str(DATA / f"{name}.json"), "-o", str(out), *extra]) == 0
    return load_workload(str(out)), yaml.safe_load(out.read_text())


@pytest.mark.parametrize("name", sorted(TOTALS))
def test_a_config_gives_the_published_parameter_total(tmp_path, name):
    work, doc = _import(tmp_path, name)
    assert work.params == TOTALS[name]
    assert "template" in doc  # a template file: readable, editable, one description of the family


def test_the_family_variants_are_carried(tmp_path):
    mistral, doc = _import(tmp_path, "mistral_7b")
    attention = next(layer.attention for layer in mistral.layers if layer.kind == "attention")
    assert (attention.heads, attention.kv_heads, attention.head_dim, attention.seq) == (32, 8, 128, 32768)
    assert (doc["precision_bytes"], doc["master_weights"], doc["name"]) == (2, True, "Mistral-7B-v0.1")
    gemma, _ = _import(tmp_path, "gemma_7b")
    assert next(layer.attention for layer in gemma.layers if layer.kind == "attention").head_dim == 256
    gpt2, doc = _import(tmp_path, "gpt2")
    assert doc["precision_bytes"] == 4 and doc["master_weights"] is False  # no torch_dtype: fp32
    neox, doc = _import(tmp_path, "gpt_neox_20b")
    assert doc["parallel_residual"] is True
    block_add = next(layer for layer in neox.layers if layer.kind == "add")
    assert len(block_add.inputs) == 3  # x + attn(norm1(x)) + mlp(norm2(x))
    qwen, doc = _import(tmp_path, "qwen2_7b")
    assert (doc["bias"], doc["qkv_bias"]) == (False, True)


def test_the_name_option_and_a_config_json_named_after_its_folder(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    values = json.loads((DATA / "gpt2.json").read_text())
    (folder / "config.json").write_text(json.dumps(values))
    out = tmp_path / "w.yaml"
    assert main(["import", str(folder / "config.json"), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["name"] == "my-model"
    _, doc = _import(tmp_path, "gpt2", "--name", "small")
    assert doc["name"] == "small"


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_a_mixture_of_experts_config_gives_its_active_parameters(tmp_path, name):
    work, doc = _import(tmp_path, name)
    assert work.active_params == ACTIVE[name]
    assert doc["top_k"] == {"mixtral_8x7b": 2, "deepseek_v3": 8}[name]


def test_an_unsupported_mixture_of_experts_is_refused_naming_its_type(tmp_path, capsys):
    # Qwen-MoE's experts would be lost by a dense import: refused, not approximated.
    values = {**json.loads((DATA / "qwen2_7b.json").read_text()), "model_type": "qwen2_moe", "num_experts": 60}
    path, out = tmp_path / "qwen_moe.json", tmp_path / "w.yaml"
    path.write_text(json.dumps(values))
    assert main(["import", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "qwen2_moe" in err and "model_type" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("values, message", [
    ({"model_type": "t5"}, "model_type 't5' is not supported"),
    ({"model_type": "llama", "hidden_size": 4096}, "num_attention_heads: missing"),
    ({**json.loads((DATA / "gpt2.json").read_text()), "n_layer": "12"}, "n_layer: expected a positive integer"),
    ({**json.loads((DATA / "llama2_7b.json").read_text()), "torch_dtype": "int4"}, "unknown dtype 'int4'"),
    ([1, 2], "expected a JSON object"),
])
def test_a_bad_config_is_one_line_naming_the_key(tmp_path, capsys, values, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    assert main(["import", str(path), "-o", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
