"""``mcdla import MODEL.onnx``: an ONNX graph -> a readable mcdla workload file.

The graph is read with the ``onnx`` package (an optional extra: ``pip install
'mcdla[onnx]'``; it is the format's own reference reader, and shape inference is part
of it), its shapes inferred, and each operator mapped to an mcdla layer by its shape
parameters; mcdla then infers every count itself, so an import can be checked with
``mcdla workloads --workload FILE`` against the framework's numbers.

Mapped: Conv, Gemm and MatMul with a weight (fc, or a token-wise linear on 3-D inputs;
a following Add of a bias initializer is folded in), BatchNormalization,
LayerNormalization, Relu, Gelu (and the Erf form's Mul/Add are not needed: Gelu is an
op since opset 20), Sigmoid, Tanh, Softmax, MaxPool, AveragePool, GlobalAveragePool,
Add of two activations (a residual), Concat on channels; Flatten, Reshape, Squeeze,
Unsqueeze, Transpose, Identity, Dropout and Cast are free (a view or a no-op in
training's cost model). Anything else is an error naming the node and its op type,
or, with ``lenient``, an element-wise layer priced by its bytes, listed in a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcdla.errors import InputError, excerpt

__all__ = ["import_onnx", "ImportResult"]

FREE = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout", "Cast"}
ACTIVATIONS = {"Relu": "relu", "Gelu": "gelu", "Sigmoid": "elementwise", "Tanh": "elementwise",
               "Softmax": "softmax"}


@dataclass
class ImportResult:
    document: dict[str, Any]
    approximated: list[str] = field(default_factory=list)  # nodes priced as element-wise (lenient)


def _load(path: str):
    try:
        import onnx
    except ImportError:
        raise InputError("importing ONNX needs the onnx package: pip install 'mcdla[onnx]'",
                         key="import") from None
    try:
        model = onnx.load(path)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise InputError(f"not a readable ONNX model: {excerpt(str(exc), 120)}", file=path) from None
    return onnx, model


def import_onnx(path: str, *, name: str | None = None, lenient: bool = False) -> ImportResult:
    onnx, model = _load(path)
    graph = model.graph
    numpy_helper = onnx.numpy_helper
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    data = [i for i in graph.input if i.name not in weights]
    if len(data) != 1:
        raise InputError(f"expected one data input, found {len(data)}", file=path)
    data_shape = shapes[data[0].name][1:]  # without the batch dimension
    if any(d < 1 for d in data_shape):
        raise InputError(f"the data input's shape {shapes[data[0].name]} is not fixed", file=path)
    if len(data_shape) == 3:
        input_doc = {"channels": data_shape[0], "height": data_shape[1], "width": data_shape[2]}
    elif len(data_shape) == 1 and data[0].type.tensor_type.elem_type in (6, 7):  # int32/int64 ids
        input_doc = {"tokens": data_shape[0]}
    elif len(data_shape) == 1:
        input_doc = {"features": data_shape[0]}
    elif len(data_shape) == 2:
        input_doc = {"timesteps": data_shape[0], "features": data_shape[1]}
    else:
        raise InputError(f"cannot map a data input of shape {data_shape}", file=path)

    layer_of: dict[str, str] = {data[0].name: "input"}  # tensor -> the mcdla layer producing it
    layers: list[dict[str, Any]] = []
    approximated: list[str] = []
    used: set[str] = set()

    def refer(tensor: str, node) -> str:
        if tensor not in layer_of:
            raise InputError(f"node {node.name or node.op_type!r} ({node.op_type}) reads {tensor!r}, "
                             "which no mapped node produces", file=path)
        return layer_of[tensor]

    def add(node, entry: dict[str, Any], inputs: list[str]) -> None:
        base = _clean(node.name or f"{node.op_type.lower()}{len(layers)}")
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        entry = {"name": name, **entry}
        previous = layers[-1]["name"] if layers else "input"
        if inputs != [previous]:
            entry["inputs"] = inputs
        layers.append(entry)
        layer_of[node.output[0]] = name

    attrs_of = lambda node: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}  # noqa: E731
    for node in graph.node:
        op, attrs = node.op_type, attrs_of(node)
        acts = [t for t in node.input if t and t not in weights]
        if op in FREE:
            layer_of[node.output[0]] = refer(acts[0], node)
        elif op == "Conv":
            w = weights.get(node.input[1])
            if w is None:
                raise InputError(f"node {node.name!r} (Conv) has no weight initializer", file=path)
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise InputError(f"node {node.name!r} (Conv) has asymmetric padding {pads}", file=path)
            entry = {"kind": "conv", "out_channels": int(w.shape[0]), "kernel": _pair(w.shape[2:]),
                     "stride": _pair(attrs.get("strides", [1, 1])), "padding": _pair(pads[:2]),
                     "groups": int(attrs.get("group", 1)), "bias": len(node.input) > 2 and bool(node.input[2])}
            add(node, entry, [refer(acts[0], node)])
        elif op in ("Gemm", "MatMul") and len(acts) == 1 and any(t in weights for t in node.input[1:2]):
            w = weights[node.input[1]]
            out = int(w.shape[0] if (op == "Gemm" and attrs.get("transB", 0)) else w.shape[-1])
            src_shape = shapes.get(acts[0], ())
            kind = "linear" if len(src_shape) == 3 else "fc"
            entry = {"kind": kind, "out_features": out,
                     "bias": op == "Gemm" and len(node.input) > 2 and bool(node.input[2])}
            add(node, entry, [refer(acts[0], node)])
        elif op == "Add" and len(acts) == 1 and layers and layer_of.get(acts[0]) == layers[-1]["name"] \
                and layers[-1]["kind"] in ("fc", "linear") and not layers[-1]["bias"]:
            layers[-1]["bias"] = True  # a bias added after MatMul: the linear layer's bias
            layer_of[node.output[0]] = layers[-1]["name"]
        elif op == "Add" and len(acts) == 2:
            add(node, {"kind": "add"}, [refer(t, node) for t in acts])
        elif op == "Concat" and int(attrs.get("axis", 1)) == 1:
            add(node, {"kind": "concat"}, [refer(t, node) for t in acts])
        elif op == "BatchNormalization":
            add(node, {"kind": "batchnorm"}, [refer(acts[0], node)])
        elif op == "LayerNormalization":
            add(node, {"kind": "layernorm"}, [refer(acts[0], node)])
        elif op in ACTIVATIONS:
            add(node, {"kind": ACTIVATIONS[op]}, [refer(acts[0], node)])
        elif op in ("MaxPool", "AveragePool"):
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            entry = {"kind": "maxpool" if op == "MaxPool" else "avgpool",
                     "kernel": _pair(attrs["kernel_shape"]), "stride": _pair(attrs.get("strides", [1, 1])),
                     "padding": _pair(pads[:2]), "ceil_mode": bool(attrs.get("ceil_mode", 0))}
            add(node, entry, [refer(acts[0], node)])
        elif op == "GlobalAveragePool":
            add(node, {"kind": "avgpool", "output_size": 1}, [refer(acts[0], node)])
        elif lenient and acts:
            approximated.append(f"{node.name or '?'} ({op})")
            add(node, {"kind": "elementwise"}, [refer(acts[0], node)])
        else:
            raise InputError(f"node {node.name or '?'!r}: operator {op} has no mcdla layer "
                             "(--lenient prices it as element-wise by its bytes)", file=path)
    if not layers:
        raise InputError("the graph has no layer mcdla can map", file=path)
    model_name = _clean(name or graph.name or "imported")
    document = {"name": model_name, "description": f"imported from {path.rsplit('/', 1)[-1]}",
                "input": input_doc, "layers": layers}
    return ImportResult(document, approximated)


def _pair(values) -> int | list[int]:
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values


def _clean(text: str) -> str:
    """A layer name YAML and mcdla read back: no '/' (block paths) or spaces."""
    cleaned = "".join(c if (c.isalnum() or c in "_-.") else "_" for c in text).strip("_")
    return cleaned or "layer"
