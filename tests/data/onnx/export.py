"""Export small models of each family with both of torch.onnx's exporters (the test data
of tests/test_onnx_exports.py).

Run where torch (and transformers, and onnxscript for the dynamo exporter) is installed;
none of them is an mcdla dependency::

    pip install torch transformers onnxscript
    python tests/data/onnx/export.py            # rewrites tests/data/onnx/*.onnx

Each model is small (a few hundred KB): the same operators and patterns as the full
size, with few layers and narrow widths. For each it writes ``NAME.ts.onnx`` (the
TorchScript exporter, ``dynamo=False``, opset 17) and ``NAME.dynamo.onnx`` (the dynamo
exporter, opset 20), and ``expected.json``: each model's parameter count as torch counts
it (``sum(p.numel() for p in model.parameters())``, tied weights once) and its
precision, the numbers the tests check the import against. The weights are random.
The CNNs are built here from torch.nn (the layers torchvision's ResNet and MobileNetV3
use: torchvision's wheels need not match torch's); the transformers come from
transformers' own model classes (GPT-2, BERT with its pooler, Llama and Mistral with
grouped-query attention and rotary embeddings) with small configs and their default
(sdpa) attention, ids and attention mask as graph inputs; the Llama also in bfloat16.
"""

from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = 16


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (3x3, 3x3, identity or 1x1 projection shortcut)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """A small ResNet: stem conv 7x7/2, max pool 3x3/2, two stages, adaptive average pool, fc."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation as MobileNetV3 uses it (ReLU, then Hardsigmoid)."""

    def __init__(self, channels, squeezed):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        scale = torch.nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """MobileNetV3's block: expand 1x1, depthwise 3x3, squeeze-excitation, project 1x1, residual."""

    def __init__(self, channels, expanded):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded),
                                    nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(expanded, expanded, 3, 1, 1, groups=expanded, bias=False),
                                       nn.BatchNorm2d(expanded), nn.Hardswish())
        self.se = SqueezeExcitation(expanded, expanded // 4)
        self.project = nn.Sequential(nn.Conv2d(expanded, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class MobileNetV3(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.block = InvertedResidual(16, 64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(16, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class Outputs(nn.Module):
    """A transformers model called with ids and mask by keyword, its outputs as a tuple."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=True)
        return tuple(v for v in out.values() if isinstance(v, torch.Tensor))


def transformers_models():
    import transformers as tf

    small = dict(vocab_size=256, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                 num_hidden_layers=2, max_position_embeddings=64)
    return {
        "gpt2": tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=256, n_embd=64, n_head=4, n_layer=2, n_positions=64)),
        "bert": tf.BertModel(tf.BertConfig(**small)),
        "llama": tf.LlamaForCausalLM(tf.LlamaConfig(**small, num_key_value_heads=2)),
        # One block (the files stay small); its sliding window (4096) is longer than the tokens.
        "mistral": tf.MistralForCausalLM(tf.MistralConfig(**{**small, "num_hidden_layers": 1},
                                                          num_key_value_heads=2)),
    }


def randomize(model):
    """Every parameter and buffer random and non-zero: an exporter's optimizer removes a bias of
    zeros and a batch norm that is the identity (torch's initial values), which trained
    models do not have. Integer buffers (position ids) are kept."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)


def folded_by_dynamo(model) -> int:
    """The parameters torch counts that the dynamo exporter's optimizer leaves out of the file:
    a batch norm folded into its convolution keeps C biases of its 2C parameters, and a
    position table looked up at constant positions keeps the rows of the exported tokens."""
    folded = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    for m in model.modules():
        if isinstance(m, nn.Embedding) and m.num_embeddings == getattr(model, "max_positions", None):
            folded += (m.num_embeddings - TOKENS) * m.embedding_dim
    return folded


def scrub(path):
    """Drops the dynamo exporter's stack traces: they name the files of this machine."""
    import onnx

    model = onnx.load(path)
    graphs = [model.graph, *(f for f in model.functions)]
    for graph in graphs:
        for node in graph.node:
            kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
    onnx.save(model, path)


def export(model, name, args, input_names, training=False):
    """Both exporters; ``training`` keeps batch norms as BatchNormalization (in eval mode
    torch folds them into the convolutions, as deployment wants and training does not)."""
    randomize(model)
    model.train(training)
    for dynamo, tag, opset in ((False, "ts", 17), (True, "dynamo", 20)):
        path = os.path.join(HERE, f"{name}.{tag}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = {"dynamo": dynamo, "opset_version": opset, "input_names": input_names}
            if dynamo:
                kwargs["external_data"] = False
            elif training:
                kwargs["training"] = torch.onnx.TrainingMode.TRAINING
                kwargs["do_constant_folding"] = False
            torch.onnx.export(model, args, path, **kwargs)
        if dynamo:
            scrub(path)
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")


def main() -> None:
    torch.manual_seed(0)
    expected = {}
    image = (torch.randn(1, 3, 32, 32),)
    for name, model in (("resnet", ResNet()), ("mobilenetv3", MobileNetV3())):
        export(model, name, image, ["x"], training=True)
        expected[name] = {"params": sum(p.numel() for p in model.parameters()),
                          "folded_by_dynamo": folded_by_dynamo(model)}
    ids = torch.randint(0, 256, (1, TOKENS))
    mask = torch.ones(1, TOKENS, dtype=torch.int64)
    for name, model in transformers_models().items():
        model.max_positions = model.config.max_position_embeddings
        export(Outputs(model), name, (ids, mask), ["input_ids", "attention_mask"])
        expected[name] = {"params": sum(p.numel() for p in model.parameters()),
                          "folded_by_dynamo": folded_by_dynamo(model)}
    # Half precision: the Llama in bfloat16, with the dynamo exporter only.
    model = transformers_models()["llama"].to(torch.bfloat16)
    randomize(model)
    model.eval()
    path = os.path.join(HERE, "llama_bf16.dynamo.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Outputs(model), (ids, mask), path, dynamo=True, opset_version=20,
                          input_names=["input_ids", "attention_mask"], external_data=False)
    scrub(path)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
    expected["llama_bf16"] = {"params": sum(p.numel() for p in model.parameters()), "folded_by_dynamo": 0}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
