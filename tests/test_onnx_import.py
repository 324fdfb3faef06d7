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
    err = capsys.readouterr().err
    assert "1 nodes (Mish x1) approximated" in err and "0 parameters and 0 multiply-adds" in err and "mish" in err


def test_a_file_that_is_not_onnx_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    assert main(["import", str(path), "-o", str(tmp_path / "w.yaml")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Transformers as exporters write them: decomposed norms and activations, attention as
# MatMul/Softmax subgraphs, shapes computed with Shape/Gather/Concat.

S, D, HEADS, FFN, VOCAB, POSITIONS = 16, 64, 4, 256, 100, 32
DH = D // HEADS


class Graph:
    """Nodes and constants of a graph under construction, named as torch.onnx names them."""

    def __init__(self):
        self.nodes, self.values, self.count = [], {}, 0

    def const(self, value, dtype=np.float32):
        self.count += 1
        name = f"const{self.count}"
        self.values[name] = np.asarray(value, dtype=dtype)
        return name

    def weight(self, *shape, seed=None):
        return self.const(np.zeros(shape) if seed is None else np.random.default_rng(seed).normal(size=shape))

    def __call__(self, scope, op, *inputs, outputs=1, **attrs):
        self.count += 1
        names = [f"t{self.count}_{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=f"{scope}/{op}_{self.count}", **attrs))
        return names[0] if outputs == 1 else names

    def dim(self, scope, x, axis):
        """A dimension of x as a 1-D tensor, computed from its shape (what exporters write)."""
        return self(scope, "Unsqueeze", self(scope, "Gather", self(scope, "Shape", x), self.const(axis, np.int64)),
                    self.const([0], np.int64))

    def save(self, tmp_path, x, y, opset=17, name="block", shape=(1, S, D)):
        out = helper.make_tensor_value_info(y, TensorProto.FLOAT, list(shape))
        inits = [numpy_helper.from_array(value, key) for key, value in self.values.items()]
        graph = helper.make_graph(self.nodes, name, [x], [out], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(model)
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        return str(path)


def layer_norm(g, scope, x, d):
    """torch's layer_norm decomposed (opsets before 17)."""
    mean = g(scope, "ReduceMean", x, axes=[-1])
    centred = g(scope, "Sub", x, mean)
    var = g(scope, "ReduceMean", g(scope, "Pow", centred, g.const(2.0)), axes=[-1])
    normed = g(scope, "Div", centred, g(scope, "Sqrt", g(scope, "Add", var, g.const(1e-5))))
    return g(scope, "Add", g(scope, "Mul", normed, g.weight(d)), g.weight(d))


def rms_norm(g, scope, x, d, form="reciprocal"):
    """Llama's RMSNorm: x * rsqrt(mean(x^2) + eps) * gamma (opset 18: ReduceMean's axes an input)."""
    var = g(scope, "ReduceMean", g(scope, "Pow", x, g.const(2.0)), g.const([-1], np.int64))
    root = g(scope, "Sqrt", g(scope, "Add", var, g.const(1e-6)))
    if form == "divide":
        normed = g(scope, "Div", x, root)
    else:
        inv = g(scope, "Reciprocal", root) if form == "reciprocal" else g(scope, "Div", g.const(1.0), root)
        normed = g(scope, "Mul", x, inv)
    return g(scope, "Mul", g.weight(d), normed)


def linear(g, scope, x, d_in, d_out, bias=True):
    y = g(scope, "MatMul", x, g.weight(d_in, d_out))
    return g(scope, "Add", y, g.weight(d_out)) if bias else y


def gelu_erf(g, scope, x):
    cdf = g(scope, "Add", g(scope, "Erf", g(scope, "Div", x, g.const(1.4142135))), g.const(1.0))
    return g(scope, "Mul", g(scope, "Mul", x, cdf), g.const(0.5))


def gelu_tanh(g, scope, x, cube="pow"):
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x3 = g(scope, "Pow", x, g.const(3.0)) if cube == "pow" else g(scope, "Mul", g(scope, "Mul", x, x), x)
    inner = g(scope, "Mul", g(scope, "Add", x, g(scope, "Mul", x3, g.const(0.044715))), g.const(0.7978846))
    half = g(scope, "Mul", g.const(0.5), x)
    return g(scope, "Mul", half, g(scope, "Add", g.const(1.0), g(scope, "Tanh", inner)))


def heads_of(g, scope, x, heads, head_dim, perm=(0, 2, 1, 3)):
    """(batch, tokens, heads x head_dim) -> (batch, heads, tokens, head_dim), the shape from Shape ops."""
    shape = g(scope, "Concat", g.dim(scope, x, 0), g.dim(scope, x, 1), g.const([heads], np.int64),
              g.const([head_dim], np.int64), axis=0)
    return g(scope, "Transpose", g(scope, "Reshape", x, shape), perm=list(perm))


def merge_heads(g, scope, o, width, tokens):
    o = g(scope, "Transpose", o, perm=[0, 2, 1, 3])
    return g(scope, "Reshape", o, g.const([1, tokens, width], np.int64))


def gpt2(tmp_path, mask="where", embed=False, head="tied", blocks=1, split="split"):
    """GPT-2 blocks as torch.onnx writes them (opset 17, nothing fused): decomposed
    LayerNorm, one QKV projection and Split, heads by Reshape/Transpose, QK^T / sqrt(d),
    a causal mask, Softmax, PV, the output projection as a Gemm (HF's Conv1D), Erf GELU."""
    g = Graph()
    if embed:
        ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, S])
        wte = g.weight(VOCAB, D, seed=1)
        tokens = g("/wte", "Gather", wte, "ids")
        length = g("/wpe", "Squeeze", g.dim("/wpe", "ids", 1), g.const([0], np.int64))
        positions = g("/wpe", "Range", g.const(0, np.int64), length, g.const(1, np.int64))
        x = g("/", "Add", tokens, g("/wpe", "Gather", g.weight(POSITIONS, D), positions))
        inp = ids
    else:
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D])
        x = "x"
    for b in range(blocks):
        h = layer_norm(g, f"/h.{b}/ln_1", x, D)
        qkv = linear(g, f"/h.{b}/attn/c_attn", h, D, 3 * D)
        if split == "split":
            q, k, v = g(f"/h.{b}/attn", "Split", qkv, g.const([D, D, D], np.int64), outputs=3, axis=2)
        else:  # three Slices of the last axis
            q, k, v = (g(f"/h.{b}/attn", "Slice", qkv, g.const([j * D], np.int64), g.const([j * D + D], np.int64),
                         g.const([-1], np.int64)) for j in range(3))
        q, v = heads_of(g, f"/h.{b}/attn", q, HEADS, DH), heads_of(g, f"/h.{b}/attn", v, HEADS, DH)
        k_t = heads_of(g, f"/h.{b}/attn", k, HEADS, DH, perm=(0, 2, 3, 1))  # K^T
        a = f"/h.{b}/attn"
        if mask == "sdpa":  # scaled_dot_product_attention's export: sqrt(scale) on both sides
            head = g(a, "Cast", g(a, "Slice", g(a, "Shape", q), g.const([-1], np.int64), g.const([4], np.int64)), to=1)
            root = g(a, "Sqrt", g(a, "Div", g.const([1.0]), g(a, "Sqrt", head)))
            q, k_t = g(a, "Mul", q, root), g(a, "Mul", k_t, root)
        scores = g(a, "MatMul", q, k_t)
        if mask != "sdpa":
            scores = g(a, "Div", scores, g.const(np.sqrt(DH)))
        if mask == "where":  # HF: the causal buffer cut to the sequence, then where(mask, scores, min)
            table = g.const(np.tril(np.ones((1, 1, POSITIONS, POSITIONS), dtype=bool)), dtype=bool)
            n = g.dim(a, q, 2)
            ends = g(a, "Concat", n, n, axis=0)
            cut = g(a, "Slice", table, g.const([0, 0], np.int64), ends, g.const([2, 3], np.int64))
            scores = g(a, "Where", cut, scores, g.const(np.finfo(np.float32).min))
        elif mask == "add":  # a constant additive triangle
            scores = g(a, "Add", scores, g.const(np.triu(np.full((S, S), -1e9), 1)))
        elif mask == "sdpa":  # is_causal: Trilu of ones, then -inf above the diagonal
            size = g(a, "Concat", g.dim(a, q, 2), g.dim(a, k_t, 3), axis=0)
            tri = g(a, "Trilu", g(a, "Expand", g.const([1.0]), size), upper=0)
            scores = g(a, "Add", scores, g(a, "Where", g(a, "Equal", tri, g.const([0.0])), g.const([-np.inf]),
                                           g.const([0.0])))
        elif mask == "huge":  # cut from a constant of 2^40 elements: not evaluated, not causal
            zeros = g(a, "ConstantOfShape", g.const([1 << 20, 1 << 20], np.int64))
            cut = g(a, "Slice", zeros, g.const([0, 0], np.int64), g.const([S, S], np.int64))
            scores = g(a, "Add", scores, cut)
        elif mask == "hostile":  # a mask from a random tensor plus a 2048^3 product of constants
            big = g(a, "ConstantOfShape", g.const([2048, 2048], np.int64), value=numpy_helper.from_array(
                np.ones(1, np.float32)))
            product = g(a, "Slice", g(a, "MatMul", big, big), g.const([0, 0], np.int64), g.const([S, S], np.int64))
            scores = g(a, "Add", scores, g(a, "Add", product, g(a, "RandomNormal", shape=[S, S])))
        elif mask == "padding":  # not causal: the last key masked for every query
            scores = g(a, "Add", scores, g.const(np.where(np.arange(S) == S - 1, -1e9, 0.0)[None, :].repeat(S, 0)))
        probs = g(a, "Softmax", scores, axis=-1)
        o = merge_heads(g, a, g(a, "MatMul", g(a, "Dropout", probs), v), D, S)
        flat = g(f"/h.{b}/attn/c_proj", "Reshape", o, g.const([-1, D], np.int64))
        proj = g(f"/h.{b}/attn/c_proj", "Gemm", flat, g.weight(D, D), g.weight(D))
        proj = g(f"/h.{b}/attn/c_proj", "Reshape", proj, g.const([1, S, D], np.int64))
        res1 = g(f"/h.{b}", "Add", proj, x)
        h = layer_norm(g, f"/h.{b}/ln_2", res1, D)
        h = gelu_erf(g, f"/h.{b}/mlp/act", linear(g, f"/h.{b}/mlp/c_fc", h, D, FFN))
        x = g(f"/h.{b}", "Add", res1, linear(g, f"/h.{b}/mlp/c_proj", h, FFN, D))
    y = x
    if embed:
        y = layer_norm(g, "/ln_f", y, D)
        if head == "tied":  # wte's transpose
            y = g("/lm_head", "MatMul", y, g("/lm_head", "Transpose", wte, perm=[1, 0]))
        else:  # a folded copy of wte's transpose (what constant folding writes), or a matrix of its own
            weight = g.values[wte].T + (head == "own")
            y = g("/lm_head", "MatMul", y, g.const(weight))
    return g.save(tmp_path, inp, y, opset=17, name="gpt2", shape=(1, S, VOCAB if embed else D))


def gpt2_counts(s, d, f):
    """The block's parameters and forward MACs per sequence, by hand."""
    params = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * f + f) + (f * d + d)
    macs = s * d * 3 * d + s * s * d + s * s * d + s * d * d + s * d * f + s * f * d  # QKV, QK^T, PV, out, MLP
    return params, macs


GPT2_KINDS = ["layernorm", "linear", "attention", "linear", "add", "layernorm", "linear", "gelu", "linear", "add"]


@pytest.mark.parametrize("mask, causal", [("where", True), ("add", True), ("sdpa", True), ("padding", False),
                                          ("huge", False), (None, False)])
def test_a_decomposed_gpt2_block_imports_with_its_counts(tmp_path, mask, causal):
    work, _ = _import(tmp_path, gpt2(tmp_path, mask))  # no --lenient
    params, macs = gpt2_counts(S, D, FFN)
    assert work.params == params
    assert work.macs_fwd_per_sample == macs
    assert [layer.kind for layer in work.layers] == ["input"] + GPT2_KINDS
    attention = work.layers[3]
    assert (attention.attention.heads, attention.attention.kv_heads, attention.attention.head_dim) == (HEADS, HEADS, DH)
    assert attention.attention.causal is causal and attention.attention.flash is False
    assert attention.name == "h.0_attn" and work.layers[1].name == "h.0_ln_1"
    assert attention.inputs == (2,)  # the QKV projection, through the Split and the head views


def test_a_fused_projection_cut_by_slices(tmp_path):
    work, _ = _import(tmp_path, gpt2(tmp_path, split="slice"))
    assert (work.params, work.macs_fwd_per_sample) == gpt2_counts(S, D, FFN)
    assert [layer.kind for layer in work.layers] == ["input"] + GPT2_KINDS


@pytest.mark.parametrize("head", ["tied", "copy", "own"])
def test_gpt2_with_embeddings_and_a_tied_head(tmp_path, head):
    work, text = _import(tmp_path, gpt2(tmp_path, embed=True, head=head, blocks=2))
    params, macs = gpt2_counts(S, D, FFN)
    # Token and position tables, two blocks, the final norm; a tied head shares the token table.
    assert work.params == VOCAB * D + POSITIONS * D + 2 * params + 2 * D + (D * VOCAB if head == "own" else 0)
    assert work.macs_fwd_per_sample == 2 * macs + S * D * VOCAB
    kinds = [layer.kind for layer in work.layers]
    assert kinds == ["input", "embedding", "position"] + 2 * GPT2_KINDS + ["layernorm", "linear"]
    (qkv,) = work.layer("h.1_attn").inputs  # the second block's attention reads its own projection
    assert work.layers[qkv].name.startswith("h.1_attn_c_attn_MatMul")
    assert ("tied_to: wte_Gather" in text.read_text()) == (head != "own")


def test_bert_embeddings_token_types_and_positions_are_one_position_layer(tmp_path):
    g = Graph()
    x = g("/embeddings", "Gather", g.weight(VOCAB, D), "ids")
    types = g("/embeddings", "Gather", g.weight(2, D), g.const(np.zeros((1, S)), np.int64))  # a constant buffer
    x = g("/embeddings", "Add", x, types)
    positions = g("/embeddings", "Gather", g.weight(POSITIONS, D), g.const(np.arange(S)[None], np.int64))
    x = g("/embeddings", "Add", x, positions)
    y = linear(g, "/pooler", layer_norm(g, "/embeddings/LayerNorm", x, D), D, D)
    work, text = _import(tmp_path, g.save(tmp_path, helper.make_tensor_value_info("ids", TensorProto.INT64, [1, S]), y))
    assert [layer.kind for layer in work.layers] == ["input", "embedding", "position", "layernorm", "linear"]
    assert work.params == VOCAB * D + (POSITIONS + 2) * D + 2 * D + (D * D + D)
    assert "max_positions: 32, types: 2" in text.read_text()


def llama(tmp_path):
    """A Llama block as exported (opset 18): RMSNorm decomposed, separate q/k/v projections
    without bias, grouped-query attention (K/V heads repeated by Expand), rotary
    embeddings, a causal mask from Trilu, SiLU(gate) * up."""
    h, kv = HEADS, HEADS // 2
    g = Graph()
    x = "x"
    a = "/layers.0/self_attn"
    n = rms_norm(g, "/layers.0/input_layernorm", x, D)
    q = heads_of(g, a, linear(g, f"{a}/q_proj", n, D, h * DH, bias=False), h, DH)
    k = heads_of(g, a, linear(g, f"{a}/k_proj", n, D, kv * DH, bias=False), kv, DH)
    v = heads_of(g, a, linear(g, f"{a}/v_proj", n, D, kv * DH, bias=False), kv, DH)
    cos, sin = g.weight(1, 1, S, DH), g.weight(1, 1, S, DH)

    def rotate(t):  # x cos + rotate_half(x) sin
        first = g(a, "Slice", t, g.const([0], np.int64), g.const([DH // 2], np.int64), g.const([-1], np.int64))
        second = g(a, "Slice", t, g.const([DH // 2], np.int64), g.const([DH], np.int64), g.const([-1], np.int64))
        half = g(a, "Concat", g(a, "Neg", second), first, axis=-1)
        return g(a, "Add", g(a, "Mul", t, cos), g(a, "Mul", half, sin))

    def repeat(t):  # repeat_kv: (1, kv, S, DH) -> (1, h, S, DH)
        t = g(a, "Expand", g(a, "Unsqueeze", t, g.const([2], np.int64)), g.const([1, kv, h // kv, S, DH], np.int64))
        return g(a, "Reshape", t, g.const([1, h, S, DH], np.int64))

    q, k, v = rotate(q), repeat(rotate(k)), repeat(v)
    scores = g(a, "Mul", g(a, "MatMul", q, g(a, "Transpose", k, perm=[0, 1, 3, 2])), g.const(DH ** -0.5))
    upper = g(a, "Trilu", g(a, "ConstantOfShape", g.const([S, S], np.int64)), g.const(1, np.int64), upper=1)
    scores = g(a, "Add", scores, g(a, "Mul", upper, g.const(-1e9)))
    o = merge_heads(g, a, g(a, "MatMul", g(a, "Softmax", scores, axis=-1), v), h * DH, S)
    res1 = g("/layers.0", "Add", x, linear(g, f"{a}/o_proj", o, h * DH, D, bias=False))
    n = rms_norm(g, "/layers.0/post_attention_layernorm", res1, D, form="one_over")
    m = "/layers.0/mlp"
    gate = linear(g, f"{m}/gate_proj", n, D, FFN, bias=False)
    silu = g(f"{m}/act_fn", "Mul", gate, g(f"{m}/act_fn", "Sigmoid", gate))
    up = linear(g, f"{m}/up_proj", n, D, FFN, bias=False)
    down = linear(g, f"{m}/down_proj", g(m, "Mul", silu, up), FFN, D, bias=False)
    y = g("/layers.0", "Add", res1, down)
    return g.save(tmp_path, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D]), y, opset=18,
                  name="llama")


def test_a_decomposed_llama_block_imports_with_its_counts(tmp_path):
    work, _ = _import(tmp_path, llama(tmp_path))  # no --lenient
    s, d, h, kv, dh, f = S, D, HEADS, HEADS // 2, DH, FFN
    qkv = (h + 2 * kv) * dh
    assert work.params == d + d * qkv + h * dh * d + d + d * 2 * f + f * d  # norms, QKV, out, gate+up, down
    assert work.macs_fwd_per_sample == s * d * qkv + 2 * s * s * h * dh + s * h * dh * d + s * d * 2 * f + s * f * d
    assert [layer.kind for layer in work.layers] == ["input", "rmsnorm", "linear", "attention", "linear", "add",
                                                     "rmsnorm", "linear", "swiglu", "linear", "add"]
    attention = work.layers[3].attention
    assert (attention.heads, attention.kv_heads, attention.head_dim, attention.causal) == (h, kv, dh, True)
    names = [layer.name for layer in work.layers]
    assert "layers.0_self_attn_qkv" in names and "layers.0_mlp_gate_up" in names


@pytest.mark.parametrize("form, kind", [("tanh", "gelu"), ("tanh_mul", "gelu"), ("quick", "gelu"),
                                        ("silu", "silu")])
def test_decomposed_activations(tmp_path, form, kind):
    g = Graph()
    h = linear(g, "/fc1", "x", D, FFN)
    if form.startswith("tanh"):
        h = gelu_tanh(g, "/act", h, cube="pow" if form == "tanh" else "mul")
    else:
        gate = g("/act", "Mul", h, g.const(1.702)) if form == "quick" else h
        h = g("/act", "Mul", h, g("/act", "Sigmoid", gate))
    y = linear(g, "/fc2", h, FFN, D)
    work, _ = _import(tmp_path, g.save(tmp_path, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D]), y))
    assert [layer.kind for layer in work.layers] == ["input", "linear", kind, "linear"]
    assert work.params == (D * FFN + FFN) + (FFN * D + D)
    assert work.macs_fwd_per_sample == 2 * S * D * FFN


@pytest.mark.parametrize("norm, kind, params", [("layernorm", "layernorm", 2 * D), ("reciprocal", "rmsnorm", D),
                                                ("one_over", "rmsnorm", D), ("divide", "rmsnorm", D)])
def test_decomposed_norms(tmp_path, norm, kind, params):
    g = Graph()
    n = layer_norm(g, "/norm", "x", D) if norm == "layernorm" else rms_norm(g, "/norm", "x", D, form=norm)
    y = linear(g, "/fc", n, D, D)
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D])
    work, _ = _import(tmp_path, g.save(tmp_path, inp, y, opset=17 if norm == "layernorm" else 18))
    assert [layer.kind for layer in work.layers[1:]] == [kind, "linear"] and work.layers[1].name == "norm"
    assert work.params == params + D * D + D


def test_a_matmul_of_two_activations_outside_attention_is_an_error(tmp_path, capsys):
    g = Graph()
    y = g("/odd", "MatMul", "x", g("/odd", "Transpose", "x", perm=[0, 2, 1]))  # no softmax: not attention
    path = g.save(tmp_path, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D]), y, shape=(1, S, S))
    assert main(["import", path, "-o", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'/odd/MatMul_2'" in err and "outside a recognized attention pattern" in err


def test_an_erf_that_is_not_a_gelu_is_an_error_naming_it(tmp_path, capsys):
    g = Graph()
    y = g("/odd", "Erf", linear(g, "/fc", "x", D, D))
    path = g.save(tmp_path, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D]), y)
    assert main(["import", path, "-o", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err
    assert "/odd/Erf" in err and "operator Erf has no mcdla layer" in err


@pytest.mark.parametrize("build", [gpt2, llama])
def test_attention_without_inferred_shapes_reads_the_head_size_off_the_scale(tmp_path, monkeypatch, build):
    # A graph whose intermediate shapes are unknown: 1/sqrt(head_dim) still tells them.
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda model, **_: model)
    work, _ = _import(tmp_path, build(tmp_path))
    attention = next(layer.attention for layer in work.layers if layer.kind == "attention")
    assert (attention.heads, attention.head_dim) == (HEADS, DH)
    assert attention.kv_heads == (HEADS if build is gpt2 else HEADS // 2)


# ---------------------------------------------------------------------------------------
# Hostile and invalid files: refused with one line naming the node, in bounded time.

def _refused(tmp_path, capsys, path, *extra):
    out = tmp_path / "w.yaml"
    assert main(["import", path, "-o", str(out), *extra]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "w.yaml" not in err  # the ONNX file is named, not the unwritten output
    return err


def _model(nodes, inits=(), x_shape=(1, S, D), y_rank=None, opset=20, y="y"):
    y_shape = [f"y{k}" for k in range(y_rank or len(x_shape))]  # left to shape inference
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, y_shape)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _write(tmp_path, model, name="hostile"):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())  # onnx.save would refuse some of them
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("cycle", "topologically sorted"), ("opset0", "domain_version of 0"), ("two_producers", "static single"),
])
def test_an_invalid_graph_is_refused_by_the_checker(tmp_path, capsys, case, message):
    relu = helper.make_node("Relu", ["x"], ["y"], name="relu")
    if case == "cycle":  # a -> b -> a: a walk back through producers would not end
        nodes = [helper.make_node("Identity", ["b"], ["a"], name="id_a"), helper.make_node("Identity", ["a"], ["b"]),
                 helper.make_node("Add", ["x", "a"], ["y"], name="add")]
    elif case == "two_producers":
        nodes = [relu, helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid")]
    else:
        nodes = [relu]
    model = _model(nodes, opset=0 if case == "opset0" else 20)
    err = _refused(tmp_path, capsys, _write(tmp_path, model), "--lenient")
    assert "not a valid ONNX model" in err and message in err.replace("SSA", "static single")


def test_constant_folding_skips_what_it_cannot_bound(tmp_path, monkeypatch):
    # A mask computed from a random tensor and from a 2048^3 MatMul of constants: neither is
    # evaluated (not deterministic; its cost is not bounded by its size), the import goes on.
    from onnx import reference

    evaluated = []
    real = reference.ReferenceEvaluator

    class Recording(real):
        def __init__(self, node, **kwargs):
            evaluated.append(node.op_type)
            super().__init__(node, **kwargs)

    monkeypatch.setattr(reference, "ReferenceEvaluator", Recording)
    work, _ = _import(tmp_path, gpt2(tmp_path, mask="hostile"))
    assert work.layers[3].kind == "attention" and work.layers[3].attention.causal is False
    assert "ConstantOfShape" in evaluated  # folding runs
    assert "RandomNormal" not in evaluated and "MatMul" not in evaluated


def test_control_flow_is_refused_even_lenient(tmp_path, capsys):
    # An If whose branches hold a 64x64 MatMul of x: skipping it would read the Add as a bias.
    def branch(name):
        w = numpy_helper.from_array(np.ones((D, D), np.float32), f"w_{name}")
        out = helper.make_tensor_value_info(f"o_{name}", TensorProto.FLOAT, [1, S, D])
        return helper.make_graph([helper.make_node("MatMul", ["x", w.name], [f"o_{name}"])], name, [], [out], [w])

    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("If", ["cond"], ["branch"], name="the_if", then_branch=branch("then"),
                              else_branch=branch("else")),
             helper.make_node("Add", ["x", "branch"], ["y"], name="add")]
    err = _refused(tmp_path, capsys, _write(tmp_path, _model(nodes, [cond])), "--lenient")
    assert "'the_if'" in err and "If holds subgraphs" in err


C, H = 8, 10


def _conv(tmp_path, w_shape=(C, C, 3, 3), x_channels=C, **attrs):
    w = numpy_helper.from_array(np.zeros(w_shape, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)]
    return _write(tmp_path, _model(nodes, [w], x_shape=(1, x_channels, H, H)))


@pytest.mark.parametrize("auto_pad, stride, out", [("SAME_UPPER", 1, H), ("SAME_LOWER", 1, H), ("VALID", 1, H - 2)])
def test_conv_auto_pad_is_resolved(tmp_path, auto_pad, stride, out):
    work, text = _import(tmp_path, _conv(tmp_path, auto_pad=auto_pad, strides=[stride, stride]))
    assert work.layers[1].out_shape == (C, out, out)


@pytest.mark.parametrize("w_shape, x_channels, attrs, message", [
    ((C, C, 3, 3), C, {"dilations": [2, 2]}, "dilations [2, 2]"),
    ((C, C, 3, 3), C, {"kernel_shape": [5, 5]}, "kernel_shape [5, 5] differs from its weight's [3, 3]"),
    ((C, 3, 3, 3), C, {}, "reads 3 channels, its input has (8,)"),
    ((C, C // 2, 3, 3), C, {"group": 2, "pads": [0, 0, 1, 1]}, "asymmetric padding [0, 0, 1, 1]"),
    ((C, C, 3, 3), C, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, "asymmetric padding [0, 0, 1, 1]"),
])
def test_a_conv_mcdla_cannot_express_is_refused(tmp_path, capsys, w_shape, x_channels, attrs, message):
    path = _conv(tmp_path, w_shape, x_channels, **attrs)
    err = _refused(tmp_path, capsys, path, "--lenient")
    assert "node 'conv' (Conv)" in err and message in err


@pytest.mark.parametrize("attrs, message", [({}, "kernel_shape"), ({"kernel_shape": [2, 2], "dilations": [2, 2]},
                                                                    "dilations")])
def test_a_pool_without_a_window_mcdla_models_is_refused(tmp_path, capsys, attrs, message):
    model = _model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", **attrs)], x_shape=(1, C, H, H))
    err = _refused(tmp_path, capsys, _write(tmp_path, model))
    assert message in err


def test_a_layer_whose_size_differs_from_the_graph_is_refused(tmp_path, capsys):
    # Flatten(axis=2) keeps the channels apart: the Gemm runs per channel, not on the whole map.
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flatten", axis=2),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    w = numpy_helper.from_array(np.zeros((10, H * H), np.float32), "w")
    err = _refused(tmp_path, capsys, _write(tmp_path, _model(nodes, [w], x_shape=(1, C, H, H), y_rank=2)))
    assert "node 'fc' (Gemm): mcdla's fc layer writes 10 elements" in err and f"ONNX infers {C * 10}" in err


def test_an_error_of_the_built_workload_names_the_node(tmp_path, capsys):
    # Token ids in a grid: mcdla's embedding reads a sequence of ids.
    table = numpy_helper.from_array(np.zeros((VOCAB, D), np.float32), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="the_lookup")], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, D])], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    err = _refused(tmp_path, capsys, _write(tmp_path, model))
    assert "node 'the_lookup' (Gather)" in err and "an embedding reads token ids" in err


@pytest.mark.parametrize("location", ["../outside.bin", "missing.bin", "short.bin"])
def test_external_data_outside_the_model_folder_missing_or_short_is_refused(tmp_path, capsys, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4 * D)
    (folder / "short.bin").write_bytes(b"\0" * 4)
    bias = TensorProto(name="bias", data_type=TensorProto.FLOAT, dims=[D])
    bias.data_location = TensorProto.EXTERNAL
    bias.external_data.add(key="location", value=location)
    nodes = [helper.make_node("Add", ["x", "bias"], ["y"], name="add")]
    path = folder / "m.onnx"
    path.write_bytes(_model(nodes, [bias]).SerializeToString())
    out = tmp_path / "w.yaml"
    assert main(["import", str(path), "-o", str(out)]) == 2
    assert not out.exists() and capsys.readouterr().err.count("\n") == 1
