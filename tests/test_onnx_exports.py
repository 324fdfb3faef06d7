"""mcdla import on real exporter output: small models of each family exported by
torch.onnx's TorchScript and dynamo exporters (tests/data/onnx/export.py wrote them;
torch is not needed here). Parameters are checked against torch's own count, which the
export script recorded in expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from mcdla.cli.main import main  # noqa: E402
from mcdla.hw.workload import load_workload  # noqa: E402

DATA = Path(__file__).parent / "data" / "onnx"
EXPECTED = json.loads((DATA / "expected.json").read_text())
FAMILIES = ["resnet", "mobilenetv3", "gpt2", "bert", "llama", "mistral"]


def _import(tmp_path, path, *extra):
    out = tmp_path / "w.yaml"
    assert main(["import", str(path), "-o", str(out), *extra]) == 0
    return load_workload(str(out))


@pytest.mark.parametrize("exporter", ["ts", "dynamo"])
@pytest.mark.parametrize("family", FAMILIES)
def test_an_export_imports_with_torchs_parameter_count(tmp_path, family, exporter):
    work = _import(tmp_path, DATA / f"{family}.{exporter}.onnx")  # no --lenient
    expected = EXPECTED[family]
    # The dynamo exporter's optimizer folds batch norms into the convolutions (C biases
    # for 2C parameters) and a position table's lookup at constant positions into the
    # rows of the exported tokens: the file holds fewer parameters than torch counts.
    folded = expected["folded_by_dynamo"] if exporter == "dynamo" else 0
    assert work.params == expected["params"] - folded
    assert work.precision_bytes == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_both_exporters_give_the_same_work(tmp_path, family):
    ts, dynamo = (_import(tmp_path, DATA / f"{family}.{e}.onnx") for e in ("ts", "dynamo"))
    assert ts.macs_fwd_per_sample == dynamo.macs_fwd_per_sample
    assert [layer.kind for layer in ts.layers if layer.kind != "batchnorm"] == \
        [layer.kind for layer in dynamo.layers if layer.kind != "batchnorm"]


@pytest.mark.parametrize("exporter", ["ts", "dynamo"])
@pytest.mark.parametrize("family, blocks, heads, kv_heads, causal", [
    ("gpt2", 2, 4, 4, True), ("bert", 2, 4, 4, False), ("llama", 2, 4, 2, True), ("mistral", 1, 4, 2, True)])
def test_sdpa_attention_with_a_mask_input(tmp_path, family, exporter, blocks, heads, kv_heads, causal):
    # Default (sdpa) attention: Softmax, IsNaN, Where, MatMul; the mask a graph input.
    work = _import(tmp_path, DATA / f"{family}.{exporter}.onnx")
    attention = [layer.attention for layer in work.layers if layer.kind == "attention"]
    assert len(attention) == blocks
    assert {(a.heads, a.kv_heads, a.head_dim, a.causal) for a in attention} == {(heads, kv_heads, 16, causal)}
    assert not any(layer.kind == "position" and layer.params > 64 * 64 + 2 * 64 for layer in work.layers)


@pytest.mark.parametrize("exporter", ["ts", "dynamo"])
def test_bert_pooler_reads_the_first_token(tmp_path, exporter):
    work = _import(tmp_path, DATA / f"bert.{exporter}.onnx")
    select, pooler, tanh = work.layers[-3:]
    assert select.kind == "elementwise" and select.out_shape == (64,)
    assert pooler.kind == "fc" and pooler.params == 64 * 64 + 64 and tanh.kind == "elementwise"


@pytest.mark.parametrize("exporter", ["ts", "dynamo"])
def test_mobilenet_squeeze_excitation_and_hardswish(tmp_path, exporter):
    work = _import(tmp_path, DATA / f"mobilenetv3.{exporter}.onnx")
    gates = [layer for layer in work.layers if layer.kind == "elementwise" and len(layer.inputs) == 2]
    assert len(gates) == 1 and gates[0].out_shape == (64, 16, 16)  # the gate broadcast over the map
    pools = [layer for layer in work.layers if layer.kind == "avgpool"]
    assert [p.out_shape for p in pools] == [(64, 1, 1), (16, 1, 1)]  # the SE squeeze and the head


def test_a_bfloat16_model_carries_its_precision(tmp_path):
    work = _import(tmp_path, DATA / "llama_bf16.dynamo.onnx")
    assert work.params == EXPECTED["llama_bf16"]["params"]
    assert work.precision_bytes == 2 and work.master_weights is True


def test_external_data_is_read_beside_the_model(tmp_path):
    model = onnx.load(str(DATA / "llama.dynamo.onnx"))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data",
              size_threshold=0)
    work = _import(tmp_path, tmp_path / "ext.onnx")
    assert work.params == EXPECTED["llama"]["params"]
    assert [a.attention.causal for a in work.layers if a.kind == "attention"] == [True, True]


def test_a_model_over_2_gb_imports_without_reading_its_weights(tmp_path):
    # A 3.2 GB embedding table in an external (sparse) file: shape inference works on the
    # graph, the weights are never loaded, so protobuf's 2 GB limit does not apply.
    vocab, hidden, tokens = 50_000, 16_384, 8
    table = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[vocab, hidden])
    table.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "big.bin"), ("offset", "0"), ("length", str(vocab * hidden * 4))):
        table.external_data.add(key=key, value=value)
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(vocab * hidden * 4)  # sparse: no disk used
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")], "big",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", tokens])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", tokens, hidden])],
                              [table])
    path = tmp_path / "big.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]).SerializeToString())
    work = _import(tmp_path, path)
    assert work.params == vocab * hidden and work.layers[1].out_shape == (tokens, hidden)


def test_lenient_stand_ins_take_their_outputs_sizes_and_say_what_they_cover(tmp_path, capsys):
    # The GPT-2 export with its attention hidden from the pattern (Softmax replaced by an
    # operator mcdla does not know): the multi-output Split and the MatMuls become stand-ins.
    model = onnx.load(str(DATA / "gpt2.ts.onnx"))
    for node in model.graph.node:
        if node.op_type == "Softmax":
            node.op_type = "LogSoftmax"
    path = tmp_path / "hidden.onnx"
    onnx.save(model, str(path))
    work = _import(tmp_path, path, "--lenient")
    err = capsys.readouterr().err
    assert "Split x2" in err and "LogSoftmax x2" in err
    qk = 2 * 4 * 16 * 16 * 16  # per block: Q K^T and P V, 4 heads of 16 tokens x 16
    assert f"0 parameters and {2 * qk:,} multiply-adds per sample" in err
    ts = load_workload(str(_import_to(tmp_path, DATA / "gpt2.ts.onnx")))
    assert work.params == ts.params  # every weight still counted by its own layer
    assert work.macs_fwd_per_sample == ts.macs_fwd_per_sample - 2 * qk  # what the message says is missing


def _import_to(tmp_path, path):
    out = tmp_path / "ref.yaml"
    assert main(["import", str(path), "-o", str(out)]) == 0
    return out


def test_the_export_script_is_documented():
    text = (DATA / "export.py").read_text()
    assert "python tests/data/onnx/export.py" in text
    assert np.all([f"{family}.ts.onnx" in {p.name for p in DATA.iterdir()} for family in FAMILIES])


def test_dynamo_layers_are_named_after_their_modules(tmp_path):
    work = _import(tmp_path, DATA / "llama.dynamo.onnx")
    names = [layer.name for layer in work.layers]
    assert "model_model_layers.0_self_attn" in names and "model_model_layers.1_mlp_gate_up" in names


def test_an_elementwise_layer_of_a_gate_and_of_a_given_shape(tmp_path):
    # What the importer writes, as a hand-written file: a gate broadcast over a map; a
    # selection of the given shape; a pair that does not broadcast is refused.
    from mcdla.errors import InputError
    from mcdla.hw.workload import read_workload

    layers = [{"name": "map", "kind": "conv", "out_channels": 8, "kernel": 1},
              {"name": "squeeze", "kind": "avgpool", "output_size": 1},
              {"name": "gate", "kind": "elementwise", "inputs": ["map", "squeeze"]},
              {"name": "pick", "kind": "elementwise", "shape": [8]}]
    doc = {"name": "se", "input": {"channels": 3, "height": 4, "width": 4}, "layers": layers}
    work = read_workload(doc, "se.yaml")
    assert work.layer("gate").out_shape == (8, 4, 4) and work.layer("pick").out_shape == (8,)
    layers[2]["inputs"] = ["squeeze", "map"]
    with pytest.raises(InputError, match="does not broadcast"):
        read_workload(doc, "se.yaml")
