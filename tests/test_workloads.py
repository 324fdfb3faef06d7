"""The eight workloads: reference counts, DAG structure, lowering, bad files, the CLI.

Reference parameter and MAC counts are torchvision's model documentation
(pytorch.org/vision/stable/models.html, "Params" and "GFLOPS", where GFLOPS are
multiply-accumulates of conv and linear layers for one 224x224 image):
alexnet 61.1 M / 0.71, vgg19 143.7 M / 19.63, resnet34 21.8 M / 3.66,
googlenet (aux_logits=False) 6.6 M / 1.50. The exact parameter counts are those
torchvision's models report with ``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mcdla.cli.main import main
from mcdla.config.loader import shipped
from mcdla.config.workload import SPECS
from mcdla.hw.workload import load_workload
from mcdla.errors import InputError
from mcdla.hw import layers as hw

ALL = ("alexnet", "googlenet", "vgg_e", "resnet34", "rnn_gemv", "rnn_lstm1", "rnn_lstm2", "rnn_gru")

# name -> (exact torchvision parameter count, forward GMACs per 224x224 image)
CNN_REFERENCE = {
    "alexnet": (61_100_840, 0.714),
    "vgg_e": (143_667_240, 19.63),
    "resnet34": (21_797_672, 3.66),
    "googlenet": (6_624_904, 1.50),
}

# Table III of the paper: layers of the CNNs, timesteps of the RNNs.
TABLE_III = {
    "alexnet": 8,
    "googlenet": 58,
    "vgg_e": 19,
    "resnet34": 34,
    "rnn_gemv": 50,
    "rnn_lstm1": 25,
    "rnn_lstm2": 25,
    "rnn_gru": 187,
}


@pytest.fixture(scope="module")
def workloads():
    return {name: load_workload(name) for name in ALL}


def write(tmp_path, text: str):
    path = tmp_path / "w.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


# --- shipped workloads --------------------------------------------------------------


# Beyond the paper's eight: the transformer families (tests/test_transformer.py).
LLMS = ("bert_large", "gpt2", "gpt2_xl", "gpt3_175b", "llama2_7b", "llama2_13b", "llama2_70b",
        "llama3_8b", "llama3_70b", "llama3_405b")


# Mixture-of-experts transformers (tests/test_moe.py).
MOES = ("deepseek_v3", "mixtral_8x7b")


# Real-machine validation networks (tests/test_workloads_real.py).
REAL = ("resnet50", "vgg16", "alexnet_bvlc")


def test_every_shipped_workload_is_the_papers_or_a_transformer():
    assert tuple(sorted(shipped("workloads"))) == tuple(sorted(ALL + LLMS + MOES + REAL))


@pytest.mark.parametrize("name", sorted(CNN_REFERENCE))
def test_cnn_params_match_torchvision(workloads, name):
    params, _ = CNN_REFERENCE[name]
    assert workloads[name].params == pytest.approx(params, rel=0.01)


@pytest.mark.parametrize("name", sorted(CNN_REFERENCE))
def test_cnn_macs_match_torchvision(workloads, name):
    _, gmacs = CNN_REFERENCE[name]
    assert workloads[name].macs_fwd_per_sample == pytest.approx(gmacs * 1e9, rel=0.01)


@pytest.mark.parametrize("name", ALL)
def test_depth_matches_table_iii(workloads, name):
    assert workloads[name].weighted_layers == TABLE_III[name]


def test_googlenet_is_57_convs_and_one_fc(workloads):
    kinds = [l.kind for l in workloads["googlenet"].layers if l.weighted]
    assert (kinds.count("conv"), kinds.count("fc")) == (57, 1)


def test_resnet34_projection_shortcuts_are_weighted_but_not_in_depth(workloads):
    shortcuts = [l.name for l in workloads["resnet34"].layers if l.weighted and not l.in_depth]
    assert shortcuts == ["layer2.0/proj", "layer3.0/proj", "layer4.0/proj"]


@pytest.mark.parametrize(
    "name, cell, hidden, gates",
    [("rnn_gemv", "rnn", 2560, 1), ("rnn_lstm1", "lstm", 1024, 4), ("rnn_lstm2", "lstm", 4096, 4),
     ("rnn_gru", "gru", 2816, 3)],
)
def test_rnn_params_are_one_weight_group(workloads, name, cell, hidden, gates):
    w = workloads[name]
    # input size = hidden: gates x hidden x (input + hidden) weights and one bias per gate
    expected = gates * hidden * (2 * hidden) + gates * hidden
    assert w.weight_groups == {cell: expected}
    steps = [l for l in w.layers if l.kind == cell]
    assert {l.weight_group for l in steps} == {cell}
    # Timestep 0 owns the parameters: its backward is the last, so dW is ready then.
    assert [l.params for l in steps] == [expected] + [0] * (len(steps) - 1)


def test_rnn_timesteps_chain_through_their_state(workloads):
    w = workloads["rnn_lstm1"]
    t0, t1 = w.layer("lstm/t0"), w.layer("lstm/t1")
    assert t0.inputs == (0,)
    assert t1.inputs == (0, w.index["lstm/t0"])
    # h, c and the four gates are kept for backward; x_t, h and c are read.
    assert t1.out_elems_per_sample == 6 * 1024
    assert t1.in_elems_per_sample == 1024 + 2 * 1024
    assert w.layers[0].out_elems_per_sample == 25 * 1024


def test_hidden_is_a_parameter():
    w = load_workload("rnn_lstm1", [("hidden", 512)])
    assert w.params == 4 * 512 * 1024 + 4 * 512
    assert w.layers[0].out_shape == (25, 512)


def test_precision_is_a_parameter():
    w = load_workload("alexnet", [("precision_bytes", 2)])
    assert w.weight_bytes == 2 * 61_100_840


@pytest.mark.parametrize("name", ALL)
def test_dag_is_topological_with_the_data_first(workloads, name):
    w = workloads[name]
    data = w.layers[0]
    assert (data.kind, data.inputs, data.cheap, data.kernels("fwd", 8, 4)) == ("input", (), False, ())
    for i, layer in enumerate(w.layers[1:], start=1):
        assert layer.inputs and all(0 <= j < i for j in layer.inputs)
        assert layer.in_elems_per_sample > 0 and layer.out_elems_per_sample > 0
    assert sum(w.weight_groups.values()) == sum(l.params for l in w.layers)


def test_inception_concatenates_four_branches(workloads):
    w = workloads["googlenet"]
    concat = w.layer("3a/concat")
    producers = [w.layers[j].name for j in concat.inputs]
    assert producers == ["3a/b1/relu", "3a/b2/relu", "3a/b3/relu", "3a/b4/relu"]
    assert concat.out_shape == (256, 28, 28)
    assert concat.in_elems_per_sample == concat.out_elems_per_sample


def test_residual_add_takes_the_block_input(workloads):
    w = workloads["resnet34"]
    add = w.layer("layer1.2/add")
    assert [w.layers[j].name for j in add.inputs] == ["layer1.2/bn2", "layer1.1/relu2"]


def test_activation_and_offload_bytes(workloads):
    w = workloads["alexnet"]
    # Offloaded: the input and the conv/fc outputs (cheap layers are recomputed).
    outputs = 3 * 224 * 224 + 64 * 55 * 55 + 192 * 27 * 27 + 384 * 13 * 13 + 2 * 256 * 13 * 13
    outputs += 4096 + 4096 + 1000
    assert w.offload_bytes_per_sample == 4 * outputs
    assert w.activation_bytes_per_sample > w.offload_bytes_per_sample


def test_summary_has_the_cli_fields(workloads):
    assert list(workloads["vgg_e"].summary()) == [
        "name", "layers", "params", "active_params", "macs_fwd_per_sample", "weight_bytes",
        "activation_bytes_per_sample"]
    # A dense network uses every parameter for every sample.
    assert workloads["vgg_e"].summary()["active_params"] == workloads["vgg_e"].params


def test_kinds_and_specs_agree():
    assert set(SPECS) == set(hw.KINDS) - {"input"}


# --- lowering to kernels ------------------------------------------------------------


def test_conv_lowers_by_im2col(workloads):
    conv2 = workloads["alexnet"].layer("conv2")  # 64 -> 192, 5x5, 27x27 output
    (fwd,) = conv2.kernels("fwd", 2, 4)
    assert fwd.gemm == hw.Gemm(m=192, n=2 * 27 * 27, k=64 * 25)
    dx, dw = conv2.kernels("bwd", 2, 4)
    assert dx.gemm == hw.Gemm(m=64 * 25, n=2 * 27 * 27, k=192)
    assert dw.gemm == hw.Gemm(m=192, n=64 * 25, k=2 * 27 * 27)
    assert fwd.macs == dx.macs == dw.macs == 2 * conv2.macs_fwd_per_sample
    # compulsory traffic: weights + input map + output map, not the im2col matrix
    weights = 192 * 64 * 25 + 192
    assert fwd.bytes == 4 * (weights + 2 * 64 * 27 * 27 + 2 * 192 * 27 * 27)


def test_first_layer_has_no_input_gradient(workloads):
    kernels = workloads["alexnet"].layer("conv1").kernels("bwd", 4, 4)
    assert [k.name for k in kernels] == ["conv1:dw"]
    assert [k.name for k in workloads["rnn_gru"].layer("gru/t0").kernels("bwd", 4, 4)] == [
        "gru/t0:gates_bwd", "gru/t0:dw"]


def test_fc_flattens_its_input(workloads):
    fc6 = workloads["alexnet"].layer("fc6")
    (fwd,) = fc6.kernels("fwd", 16, 4)
    assert fwd.gemm == hw.Gemm(m=4096, n=16, k=256 * 6 * 6)


def test_lstm_timestep_kernels(workloads):
    step = workloads["rnn_lstm1"].layer("lstm/t3")
    gemm, gates = step.kernels("fwd", 512, 4)
    assert gemm.gemm == hw.Gemm(m=4 * 1024, n=512, k=2 * 1024)
    assert gates.gemm is None and gates.macs == 0
    names = [k.name for k in step.kernels("bwd", 512, 4)]
    assert names == ["lstm/t3:gates_bwd", "lstm/t3:dx", "lstm/t3:dw"]
    dx = step.kernels("bwd", 512, 4)[1]
    assert dx.gemm == hw.Gemm(m=1024, n=512, k=4 * 1024)  # towards h_{t-1} only


def test_shards_split_the_output_features(workloads):
    fc7 = workloads["alexnet"].layer("fc7")
    (fwd,) = fc7.kernels("fwd", 512, 4, shards=8)
    assert fwd.gemm == hw.Gemm(m=512, n=512, k=4096)
    dx, dw = fc7.kernels("bwd", 512, 4, shards=8)
    assert dx.gemm == hw.Gemm(m=4096, n=512, k=512)  # partial sums, all-reduced by the caller
    assert dw.gemm == hw.Gemm(m=512, n=4096, k=512)
    relu = workloads["alexnet"].layer("relu7")
    (whole,) = relu.kernels("fwd", 512, 4)
    (part,) = relu.kernels("fwd", 512, 4, shards=8)
    assert part.bytes == whole.bytes // 8


def test_grouped_conv_counts_groups(tmp_path):
    path = write(tmp_path, """
        name: grouped
        input: {channels: 8, height: 4, width: 4}
        layers:
          - {kind: conv, out_channels: 16, kernel: 1, groups: 4, bias: false}
          - {kind: relu}
          - {kind: conv, out_channels: 16, kernel: 3, padding: 1, groups: 4, bias: false}
    """)
    w = load_workload(path)
    (fwd,) = w.layers[3].kernels("fwd", 1, 4)
    assert fwd.gemm == hw.Gemm(m=4, n=16, k=4 * 9, count=4)
    assert w.params == 16 * 2 + 16 * 4 * 9


def test_cheap_layers_recompute_their_forward(workloads):
    bn = workloads["resnet34"].layer("bn1")
    assert bn.cheap and bn.params == 128 and bn.weight_group == "bn1"
    assert bn.kernels("recompute", 8, 4)[0].bytes == bn.kernels("fwd", 8, 4)[0].bytes


def test_unknown_phase_is_refused(workloads):
    with pytest.raises(ValueError, match="phase"):
        workloads["alexnet"].layer("conv1").kernels("sideways", 1, 4)


def test_ceil_mode_pooling(workloads):
    # torchvision googlenet: 112 -> 56 with a 3x3/2 max-pool in ceil mode
    assert workloads["googlenet"].layer("pool1").out_shape == (64, 56, 56)
    assert workloads["googlenet"].layer("pool4").out_shape == (832, 7, 7)


# --- bad workload files -------------------------------------------------------------

GOOD = """
    name: tiny
    input: {channels: 3, height: 8, width: 8}
    layers:
      - {name: c1, kind: conv, out_channels: 4, kernel: 3}
      - {name: r1, kind: relu}
"""


def test_a_small_file_loads(tmp_path):
    w = load_workload(write(tmp_path, GOOD))
    assert [l.out_shape for l in w.layers] == [(3, 8, 8), (4, 6, 6), (4, 6, 6)]


@pytest.mark.parametrize(
    "text, key, message",
    [
        (GOOD.replace("kernel: 3}", "kernel: 3, colour: red}"), r"layers\[0\]\.colour", "unknown key"),
        (GOOD.replace("kind: relu", "kind: swish"), r"layers\[1\]\.kind", "unknown layer kind 'swish'"),
        (GOOD.replace("kind: relu}", "kind: relu, inputs: [c9]}"), r"layers\[1\]\.inputs", "'c9'"),
        (GOOD.replace("out_channels: 4", "out_channels: 0"), r"layers\[0\]\.out_channels", ">= 1"),
        (GOOD.replace("out_channels: 4", "out_channels: -4"), r"layers\[0\]\.out_channels", ">= 1"),
        (GOOD.replace("out_channels: 4", "out_channels: four"), r"layers\[0\]\.out_channels", "integer"),
        (GOOD.replace("out_channels: 4, ", ""), r"layers\[0\]\.out_channels", "missing"),
        (GOOD.replace("name: tiny", "nom: tiny"), r"nom", "unknown key"),
        (GOOD.replace("    name: tiny\n", ""), r"name", "missing"),
        (GOOD.replace("height: 8", "height: 0"), r"input\.height", ">= 1"),
        (GOOD.replace("out_channels: 4", "out_channels: $hidden"), r"layers\[0\]\.out_channels",
         "unknown variable"),
        (GOOD.replace("kernel: 3}", "kernel: 30}"), r"layers\[0\]", "larger than the input"),
        (GOOD.replace("kind: relu}", "kind: add, inputs: [c1, input]}"), r"layers\[1\]", "cannot add"),
        (GOOD.replace("{name: r1, kind: relu}", "{name: c1, kind: relu}"), r"layers\[1\]\.name", "exists"),
        (GOOD + "      - [not, a, mapping]\n", r"layers\[2\]", "mapping"),
        (GOOD.replace("name: tiny", "name: tiny\n    precision_bytes: 0"), "precision_bytes", ">= 1"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=rf"w\.yaml: {key}:") as info:
        load_workload(path)
    assert info.value.file == path
    assert message in str(info.value)


BLOCKS = """
    name: blocky
    input: {channels: 4, height: 8, width: 8}
    blocks:
      pair:
        args: [c]
        layers:
          - {name: a, kind: conv, out_channels: $c, kernel: 1}
          - {name: b, kind: add, inputs: [a, in]}
    layers:
      - {block: pair, name: p, repeat: 2, args: {c: 4}}
"""


def test_blocks_expand_in_a_chain(tmp_path):
    w = load_workload(write(tmp_path, BLOCKS))
    assert [l.name for l in w.layers] == ["input", "p.1/a", "p.1/b", "p.2/a", "p.2/b"]
    assert w.layer("p.2/b").inputs == (3, 2)


SHRINKING = """
    name: shrinking
    input: {channels: 2, height: 16, width: 16}
    blocks:
      down:
        layers:
          - {kind: conv, out_channels: 4, kernel: 3, stride: 2, padding: 1}
          - {kind: relu}
    layers:
      - {block: down, name: d, repeat: 3}
"""


def test_a_repeated_blocks_instances_take_their_own_input_shapes(tmp_path):
    # The builder reuses an entry's reading and inferred shapes across instances: the
    # shapes still follow each instance's input, and only the data's reader skips dX.
    w = load_workload(write(tmp_path, SHRINKING))
    assert [(l.name, l.out_shape) for l in w.layers] == [
        ("input", (2, 16, 16)),
        ("d.1/conv1", (4, 8, 8)), ("d.1/relu2", (4, 8, 8)),
        ("d.2/conv3", (4, 4, 4)), ("d.2/relu4", (4, 4, 4)),
        ("d.3/conv5", (4, 2, 2)), ("d.3/relu6", (4, 2, 2)),
    ]
    convs = [l for l in w.layers if l.kind == "conv"]
    assert [l.params for l in convs] == [2 * 9 * 4 + 4, 4 * 9 * 4 + 4, 4 * 9 * 4 + 4]
    assert w.weight_groups == {"d.1/conv1": 76, "d.2/conv3": 148, "d.3/conv5": 148}
    # Same-size instances (4 channels in and out, stride 1): alike but for reading the data.
    same_size = SHRINKING.replace("channels: 2", "channels: 4").replace("stride: 2", "stride: 1")
    same = load_workload(write(tmp_path, same_size))
    assert {l.out_shape for l in same.layers} == {(4, 16, 16)}
    assert [l.lowering.dx_rows for l in same.layers if l.kind == "conv"] == [0, 4 * 9, 4 * 9]  # Cin x kh x kw


def test_a_later_instance_that_does_not_fit_is_named(tmp_path):
    # The first three instances fit 16 x 16 down to 2 x 2; the fourth's 3 x 3 window does not.
    text = SHRINKING.replace("stride: 2, padding: 1", "stride: 1, padding: 0").replace("repeat: 3", "repeat: 8")
    with pytest.raises(InputError, match=r"blocks\.down\.layers\[0\]") as info:
        load_workload(write(tmp_path, text))
    assert "instance 'd.8'" in str(info.value) and "'d.8/conv15'" in str(info.value)


def test_entries_alike_but_for_the_order_of_their_keys_build_alike(tmp_path):
    text = GOOD.replace("{name: r1, kind: relu}",
                        "{kernel: 3, inputs: [input], out_channels: 4, kind: conv, name: c2}")
    w = load_workload(write(tmp_path, text))
    c1, c2 = w.layer("c1"), w.layer("c2")
    assert (c2.params, c2.out_shape, c2.lowering) == (c1.params, c1.out_shape, c1.lowering)
    assert c1.params == 3 * 9 * 4 + 4 and c1.out_shape == (4, 6, 6)


@pytest.mark.parametrize(
    "old, new, key, message",
    [
        ("args: {c: 4}", "args: {c: 4, d: 1}", r"layers\[0\]\.args\.d", "no such argument"),
        ("args: {c: 4}", "args: {}", r"layers\[0\]\.args\.c", "missing"),
        ("block: pair", "block: trio", r"layers\[0\]\.block", "unknown block"),
        ("args: {c: 4}", "args: {c: 0}", r"blocks\.pair\.layers\[0\]\.out_channels", "instance 'p.1'"),
        ("inputs: [a, in]", "inputs: [a, input]", r"blocks\.pair\.layers\[1\]\.inputs", "'input'"),
        ("repeat: 2", "repeat: 0", r"layers\[0\]\.repeat", ">= 1"),
    ],
)
def test_bad_blocks(tmp_path, old, new, key, message):
    path = write(tmp_path, BLOCKS.replace(old, new))
    with pytest.raises(InputError, match=rf"w\.yaml: {key}:") as info:
        load_workload(path)
    assert message in str(info.value) and info.value.file == path


def test_unknown_shipped_name_lists_the_shipped():
    with pytest.raises(InputError, match="alexnet"):
        load_workload("lenet")


def test_bad_set_is_caught_with_its_key():
    with pytest.raises(InputError, match="hidden"):
        load_workload("rnn_gru", [("hidden", -1)])
    with pytest.raises(InputError, match="hiden"):
        load_workload("rnn_gru", [("hiden", 10)])


# --- the command line ---------------------------------------------------------------


def test_cli_table(capsys):
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "layers", "params", "active_params", "macs_fwd_per_sample", "weight_bytes",
                                "activation_bytes_per_sample"]
    assert len(lines) == 2 + len(ALL) + len(LLMS) + len(MOES) + len(REAL)
    assert "61100840" in out


def test_cli_json(capsys, workloads):
    assert main(["workloads", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r for r in rows}["resnet34"] == workloads["resnet34"].summary()


def test_cli_csv_to_a_file(tmp_path, capsys):
    out = tmp_path / "w.csv"
    assert main(["workloads", "--format", "csv", "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    lines = out.read_text().splitlines()
    assert lines[0] == "name,layers,params,active_params,macs_fwd_per_sample,weight_bytes,activation_bytes_per_sample"
    assert "googlenet,58,6624904,6624904," in "\n".join(lines)


def test_cli_starts_without_pandas_or_matplotlib():
    code = (
        "import sys; from mcdla.cli.main import main; main(['workloads', '--format', 'json']); "
        "bad = [m for m in ('pandas', 'matplotlib') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["name"] == "alexnet"
