"""mcdla import: small ONNX graphs built in code (no downloads), their parameter and MAC
counts checked against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mcdla.cli.main import main  # noqa: E402
from mcdla.hw.workload import load_workload  # noqa: E402


def _init(name, *shape):
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def _save(tmp_path, nodes, inits, inp, out_name, out_shape, name="g"):
    graph = helper.make_graph(nodes, name, [inp],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def _import(tmp_path, path, *extra):
    out = tmp_path / "w.yaml"
    assert main(["import", path, "-o", str(out), *extra]) == 0
    return load_workload(str(out)), out


def resnet_block(tmp_path):
    """conv3x3-BN-ReLU-conv3x3-BN + identity, ReLU, global pool, fc (a ResNet basic block)."""
    c, h = 16, 8
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g1", "b1", "m1", "v1"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "g2", "b2", "m2", "v2"], ["n2"], name="bn2"),
        helper.make_node("Add", ["n2", "x"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("w1", c, c, 3, 3), _init("w2", c, c, 3, 3), _init("wf", 10, c), _init("bf", 10)]
    for i in (1, 2):
        inits += [_init(f"{k}{i}", c) for k in "gbmv"]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])
    return _save(tmp_path, nodes, inits, inp, "y", [1, 10], "resblock")


def test_a_resnet_basic_block_imports_with_its_counts(tmp_path):
    work, _ = _import(tmp_path, resnet_block(tmp_path))
    c, h = 16, 8
    conv = c * c * 9  # no bias: ONNX Conv without a third input
    assert work.params == 2 * conv + 2 * (2 * c) + (10 * c + 10)  # convs, BN gamma/beta, fc
    assert work.macs_fwd_per_sample == 2 * conv * h * h + 10 * c
    kinds = [layer.kind for layer in work.layers]
    assert kinds == ["input", "conv", "batchnorm", "relu", "conv", "batchnorm", "add", "relu", "avgpool", "fc"]
    add = work.layer("add")
    assert [work.layers[i].name for i in add.inputs] == ["bn2", "input"]


def transformer_block(tmp_path, with_unknown=False):
    """LayerNorm, MatMul+bias, Gelu, MatMul+bias, residual Add, over (batch, 32 tokens, 64)."""
    s, d, f = 32, 64, 256
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_g", "ln_b"], ["n"], name="ln", axis=-1),
        helper.make_node("MatMul", ["n", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="fc1_bias"),
        helper.make_node("Gelu", ["a1"], ["g"], name="gelu"),
        helper.make_node("MatMul", ["g", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b2"], ["a2"], name="fc2_bias"),
        helper.make_node("Add", ["a2", "x"], ["y0"], name="residual"),
    ]
    out = "y0"
    if with_unknown:
        nodes.append(helper.make_node("Mish", ["y0"], ["y"], name="mish"))
        out = "y"
    inits = [_init("ln_g", d), _init("ln_b", d), _init("w1", d, f), _init("b1", f), _init("w2", f, d), _init("b2", d)]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, s, d])
    return _save(tmp_path, nodes, inits, inp, out, [1, s, d], "mlpblock")


def test_a_transformer_mlp_block_imports_with_its_counts(tmp_path):
    # A (tokens, features) input with float values reads as a sequence of vectors.
    work, text = _import(tmp_path, transformer_block(tmp_path))
    s, d, f = 32, 64, 256
    assert work.params == 2 * d + (d * f + f) + (f * d + d)  # layer norm, two linears with bias
    assert work.macs_fwd_per_sample == s * (d * f + f * d)
    assert [layer.kind for layer in work.layers] == ["input", "layernorm", "linear", "gelu", "linear", "add"]
    assert "kind: linear" in text.read_text()  # a readable file, one layer a line


def test_an_unknown_operator_is_an_error_naming_the_node(tmp_path, capsys):
    path = transformer_block(tmp_path, with_unknown=True)
    assert main(["import", path, "-o", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'mish'" in err and "Mish" in err and err.count("\n") == 1
    assert not (tmp_path / "w.yaml").exists()


def test_lenient_prices_it_as_elementwise_and_says_so(tmp_path, capsys):
    work, _ = _import(tmp_path, transformer_block(tmp_path, with_unknown=True), "--lenient")
    assert work.layers[-1].kind == "elementwise"
    assert "mish (Mish)" in capsys.readouterr().err


def test_a_file_that_is_not_onnx_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    assert main(["import", str(path), "-o", str(tmp_path / "w.yaml")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
