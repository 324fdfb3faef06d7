"""``mcdla import MODEL.onnx``: an ONNX graph -> a readable mcdla workload file.

A hostile or invalid file stops with one line naming the node (docs/workloads.md): the
model must pass ``onnx.checker`` and strict shape inference, constant folding is bounded
(MAX_VALUE, MAX_FOLDED, FOLDABLE), control flow is refused, windows are checked, and the
built workload's layer sizes are checked against the graph's inferred shapes.

The graph is read with the ``onnx`` package (an optional extra: ``pip install
'mcdla[onnx]'``; it is the format's own reference reader, and shape inference is part
of it), its shapes inferred, and its operators mapped to mcdla layers by their shape
parameters; mcdla then infers every count itself, so an import can be checked with
``mcdla workloads --workload FILE`` against the framework's numbers.

Two passes. The first groups the subgraphs a framework's exporter writes for one
layer into fused nodes, by following single-consumer chains from an anchor operator:

- a linear layer: MatMul or Gemm with a weight (an initializer, or a static view of
  one such as its Transpose), and a following Add of a bias; ``linear`` on a sequence,
  ``fc`` otherwise. A weight that is the token embedding's table, or a copy of it (an
  exporter folds the Transpose into a new initializer), is ``tied_to`` the embedding.
- attention, anchored at Softmax: ``S = MatMul(Q, K^T)`` of two activations, Cast,
  Mul or Div by a constant (the scale), an Add or Where of a constant mask, Softmax,
  Cast or Dropout, ``MatMul(P, V)``. Q, K and V are followed back through views
  (Reshape, Transpose, Squeeze, Unsqueeze, Expand), the Split, Slice or Gather of a
  fused projection, a scale on Q or K (``scaled_dot_product_attention``'s export) and
  rotary embeddings (``x cos + rotate_half(x) sin``) to their projections, which
  become one ``linear`` (separate q/k/v projections of one input are merged: the same
  parameters and MACs) feeding mcdla's ``attention`` kind (the core only: mcdla's
  attention reads the fused QKV projection). Head size from Q's shape (or the scale,
  1/sqrt(head_dim)); heads from Q's projection, its shape or an even split; kv_heads
  from the rest. ``causal`` when the mask comes from a Trilu or is a constant lower
  triangle (allowed entries on and below the diagonal), else false; ``flash: false``
  (an exported graph materializes the scores).
- decomposed layers, found as the element-wise region (Add, Sub, Mul, Div, Pow, Sqrt,
  Reciprocal, Erf, Tanh, Sigmoid, ReduceMean, Cast) that reads one activation x and
  leaves one tensor, anchored at ReduceMean, Erf, Tanh or Sigmoid: LayerNorm (two
  ReduceMeans and x - mean) -> ``layernorm``; RMSNorm (x squared, one ReduceMean, x
  times the reciprocal root) -> ``rmsnorm``; GELU's Erf form and tanh form, and
  x sigmoid(1.702 x) -> ``gelu``; x sigmoid(x) -> ``silu``, and SiLU(gate(x)) times
  up(x) -> ``swiglu`` after a ``linear`` that merges the gate and up projections.

The second pass maps the fused nodes and every other operator: Conv, Gather of token
ids from an embedding table (``embedding``), Add of a constant table of positions or
token types (``position``: a Gather from a table, or the table itself),
BatchNormalization, LayerNormalization, Relu, Clip and LeakyRelu (``relu``), Gelu,
Sigmoid, Tanh, HardSigmoid, HardSwish (``elementwise``), Softmax, MaxPool, AveragePool,
GlobalAveragePool, Add of two activations (a residual), Concat on channels, arithmetic
of one activation with a constant (``elementwise``). Flatten, Reshape, Squeeze,
Unsqueeze, Transpose, Identity, Dropout and Cast are free (a view or a no-op in
training's cost model), and so is everything computed only from constants and shapes
(Constant, Shape, Gather on shapes, ConstantOfShape, Range, ...). Anything else is an
error naming the node and its op type, or, with ``lenient``, an element-wise stand-in
per output, of the output's size, priced by its bytes; the import lists them with the
parameters and multiply-adds they leave out (:class:`Approximation`).

Exporter output (docs/workloads.md): the first graph input is the data, the others
(masks, token types, position ids) side inputs, free like constants; the sdpa export's
NaN guard after the Softmax belongs to attention; a ReduceMean over an image's height
and width is global average pooling; arithmetic of two activations one of which
broadcasts (squeeze-excitation) and a Gather or Slice of an activation (a pooler) are
``elementwise``; dynamo layers are named after their modules; the precision is the
weights'.
"""

from __future__ import annotations

import ast
import heapq
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mcdla.errors import InputError, excerpt
from mcdla.importers import clean_name as _clean

__all__ = ["import_onnx", "ImportResult", "Approximation"]

FREE = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout", "Cast"}
ACTIVATIONS = {"Relu": "relu", "Clip": "relu", "LeakyRelu": "relu", "Gelu": "gelu", "Sigmoid": "elementwise",
               "Tanh": "elementwise", "HardSigmoid": "elementwise", "HardSwish": "elementwise",
               "Softmax": "softmax"}
# Arithmetic of one activation with a constant scalar (a scale, a shift): an element-wise layer.
ARITHMETIC = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Exp", "Reciprocal"}
SHAPE_OPS = {"Shape", "Size"}  # their outputs are static: what is computed from them is free
# The operators a decomposed normalization or activation is written with.
REGION_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Erf", "Tanh", "Sigmoid", "ReduceMean",
              "Cast", "Identity"}
REGION_ANCHORS = {"ReduceMean", "Erf", "Tanh", "Sigmoid"}
MAX_REGION = 24  # nodes: the decomposed forms have at most a dozen
# Between a projection and attention's Q, K or V: views, and the selections of a fused projection.
VIEWS = FREE | {"Expand"}
SELECTIONS = {"Split", "Slice", "Gather"}
ROTATE_OPS = VIEWS | {"Concat", "Neg", "Slice", "Split", "Mul"}  # rotate_half(x) = Concat(-x2, x1)
WEIGHT_VIEWS = {"Identity", "Cast", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Slice", "Gather"}
# Constant folding is bounded: only the scales, masks and shapes of a graph are needed,
# small tensors all. A larger tensor is not evaluated (its value is unknown), and once
# MAX_FOLDED elements were evaluated in all, nothing more is: a small hostile file cannot
# cost minutes or gigabytes.
MAX_VALUE = 1 << 22  # elements of one evaluated tensor (a 2048x2048 causal mask)
MAX_FOLDED = 1 << 24  # elements evaluated in all (128 MB at 8 bytes an element)
# The operators folded: deterministic, no subgraphs, their cost bounded by the sizes _fold_size tells.
FOLDABLE = {"Constant", "Identity", "Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Trilu",
            "Slice", "Split", "Neg", "Not", "Abs", "Sqrt", "Reciprocal", "CumSum", "ReduceMean", "ReduceSum",
            "ReduceMax", "ReduceMin", "ReduceProd", "Concat", "Gather", "ConstantOfShape", "Expand", "Tile",
            "Range", "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "LessOrEqual",
            "GreaterOrEqual", "Where", "And", "Or", "Xor", "Min", "Max", "Mod", "Floor", "Ceil", "Exp", "Log",
            "Sin", "Cos", "IsNaN", "IsInf", "Sign", "Erf", "Tanh", "Sigmoid", "Relu", "Softmax"}
MASKED = -1e4  # an additive mask entry at or below this masks its score


@dataclass
class Approximation:
    """A node ``--lenient`` priced as element-wise: what its stand-in leaves out."""

    node: str
    op: str
    params: int  # its weights' elements
    macs: int  # multiply-adds per sample (MatMul, Gemm, Conv; 0 for the others)


@dataclass
class ImportResult:
    document: dict[str, Any]
    workload: Any  # the document, built (a mcdla.hw Workload) and checked against the graph's shapes
    approximated: list[Approximation] = field(default_factory=list)  # nodes priced as element-wise (lenient)


@dataclass
class _Group:
    """Nodes mapped together: to one mcdla layer of ``kind``, or to none (``free``).

    ``emit`` is the node at which the layer is written: every input exists there, and
    every reader of ``outputs`` comes later. ``label`` names a fused group after its
    nodes' common scope.
    """

    kind: str
    nodes: list[int]
    inputs: list[str]
    outputs: list[str]
    emit: int
    entry: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    weight: str | None = None  # a linear layer's weight initializer (for tying)


def _inline_small(onnx, model, path: str) -> None:
    """Reads the small initializers kept in external files into the graph (shape inference
    reads the values of axes and shapes, and cannot read them there); large ones stay out."""
    base = os.path.dirname(os.path.abspath(path))
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL or math.prod(tensor.dims) > 1024:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        file = os.path.normpath(os.path.join(base, info.get("location", "")))
        if os.path.commonpath([base, file]) != base or not os.path.isfile(file):
            raise InputError(f"initializer {tensor.name!r}: its external data {info.get('location')!r} is not "
                             "a file beside the model", file=path)
        size = math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        with open(file, "rb") as f:
            f.seek(int(info.get("offset", 0)))
            tensor.raw_data = f.read(size)
        if len(tensor.raw_data) != size:
            raise InputError(f"initializer {tensor.name!r}: its external data {info.get('location')!r} is "
                             "shorter than its shape", file=path)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _load(path: str):
    """The model, checked and with its shapes inferred; its weights stay in their files.

    The weights are not read (``load_external_data=False``): shape inference then works
    on a small proto, whatever the model's size (protobuf cannot serialize 2 GB), and a
    weight is read, mapped from its file, only when a value is needed.
    """
    try:
        import onnx
    except ImportError:
        raise InputError("importing ONNX needs the onnx package: pip install 'mcdla[onnx]'",
                         key="import") from None
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise InputError(f"not a readable ONNX model: {excerpt(str(exc), 120)}", file=path) from None
    try:  # the format's own rules: registered opsets, SSA form, nodes in topological order
        onnx.checker.check_model(path)  # by path: external data is found beside the model
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"not a valid ONNX model: {excerpt(str(exc), 160)}", file=path) from None
    _inline_small(onnx, model, path)
    for info in model.graph.input:  # the batch is mcdla's: a symbolic one is fixed to 1
        dims = info.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    try:  # data propagation resolves reshapes to shapes computed with Shape, Gather, Concat
        model = onnx.shape_inference.infer_shapes(model, data_prop=True, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - an inconsistent graph (shapes that do not fit)
        raise InputError(f"not a valid ONNX model: {excerpt(str(exc), 160)}", file=path) from None
    return onnx, model


class _Graph:
    """The node list with its tensors' producers, readers, shapes and static values.

    A tensor is static when it does not depend on the data (initializers, constants,
    shapes and what is computed from them only); static values are evaluated on
    demand, node by node, with onnx's reference evaluator.
    """

    def __init__(self, onnx, model, path: str):
        graph = model.graph
        self.path = path
        self.onnx = onnx
        self.nodes = list(graph.node)
        self.inits = {t.name: t for t in graph.initializer}
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
        self.shapes: dict[str, tuple[int, ...]] = {}
        for info in (*graph.input, *graph.value_info, *graph.output):
            if info.type.tensor_type.HasField("shape"):
                dims = info.type.tensor_type.shape.dim
                self.shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        for t in graph.initializer:
            self.shapes[t.name] = tuple(int(d) for d in t.dims)
        self.outputs = {o.name for o in graph.output}
        self.producer: dict[str, int] = {}
        self._readers: dict[str, list[int]] = {}
        # The first input is the data; the others (attention masks, token types, position
        # ids) are side inputs: like constants whose values are unknown, so what is computed
        # from them alone (a mask) is free, as shapes are.
        inputs = [info for info in graph.input if info.name not in self.inits]
        if not inputs:
            raise InputError("the graph has no data input", file=path)
        self.data = inputs[0]
        self.side = {info.name: info.type.tensor_type.elem_type for info in inputs[1:]}
        self.static = set(self.inits) | set(self.side)
        known = {info.name for info in graph.input} | set(self.inits)  # what exists before the first node
        graph_attrs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        # Nodes with subgraphs (If, Loop, Scan) read the outer graph's tensors without
        # naming them: never static, and refused where they are mapped.
        self.control = {i for i, node in enumerate(self.nodes) if any(a.type in graph_attrs for a in node.attribute)}
        for i, node in enumerate(self.nodes):
            for t in node.input:
                if t:
                    # The checker's rules, kept here: every walk back through producers ends.
                    if t not in self.producer and t not in known:
                        raise InputError(f"node {self.name(i)!r} ({node.op_type}) reads {t!r} before any node "
                                         "writes it (nodes out of order, or a cycle)", file=path)
                    self._readers.setdefault(t, []).append(i)
            for t in node.output:
                if t:
                    if t in self.producer or t in known:
                        raise InputError(f"node {self.name(i)!r} ({node.op_type}) writes {t!r}, "
                                         "which another node or an initializer writes too", file=path)
                    self.producer[t] = i
            if i not in self.control and (node.op_type in SHAPE_OPS or all(t in self.static for t in node.input if t)):
                self.static.update(t for t in node.output if t)
        self._values: dict[str, Any] = {}
        self._folded = 0  # elements evaluated so far (see MAX_FOLDED)
        self.batch = 1  # the data input's first dimension

    def name(self, i: int) -> str:
        return self.nodes[i].name or f"{self.nodes[i].op_type.lower()}{i}"

    def label(self, i: int) -> str:
        """The name a layer written for node ``i`` takes: its module path when the dynamo
        exporter recorded it (``pkg.torch.onnx.name_scopes``: ``/model/layers.0/mlp/add``,
        as the TorchScript exporter names its nodes), else the node's name."""
        scopes = next((p.value for p in self.nodes[i].metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        try:
            paths = ast.literal_eval(scopes) if scopes else None
        except (ValueError, SyntaxError):
            paths = None
        if not isinstance(paths, list) or len(paths) < 2 or not all(isinstance(p, str) for p in paths):
            return self.name(i)
        parts = [path[len(parent) + 1:] if parent and path.startswith(parent + ".") else path
                 for parent, path in zip(paths[1:-1], paths[2:-1])]
        return "/" + "/".join([paths[1], *parts, paths[-1]])

    def attrs(self, i: int) -> dict[str, Any]:
        get = self.onnx.helper.get_attribute_value
        return {a.name: get(a) for a in self.nodes[i].attribute}

    def dyn(self, i: int) -> list[str]:
        """The node's activation inputs (those that depend on the data)."""
        return [t for t in self.nodes[i].input if t and t not in self.static]

    def is_static(self, i: int) -> bool:
        return all(t in self.static for t in self.nodes[i].output if t)

    def readers(self, t: str) -> list[int]:
        """The nodes that read ``t``'s values (Shape and Size read only its shape)."""
        return [i for i in self._readers.get(t, []) if self.nodes[i].op_type not in SHAPE_OPS]

    def shape(self, t: str) -> tuple[int, ...]:
        return self.shapes.get(t, ())

    def sample_shape(self, t: str) -> tuple[int, ...] | None:
        """``t``'s shape per sample (without the batch; flattened when the batch is merged
        into another dimension), or None when ONNX does not know it."""
        shape = self.shapes.get(t)
        if not shape or min(shape) < 1:
            return None
        if shape[0] == self.batch and len(shape) > 1:
            return shape[1:]
        return (math.prod(shape) // self.batch,) if math.prod(shape) % self.batch == 0 else None

    def value(self, t: str):
        """The value of a static tensor, or None when it cannot be told (or is too large)."""
        if t not in self._values:
            self._values[t] = None  # also the guard against a cycle
            try:
                with np.errstate(all="ignore"):
                    self._values[t] = self._evaluate(t)
            except Exception:  # noqa: BLE001 - an operator the evaluator lacks, a bad constant
                self._values[t] = None
        return self._values[t]

    def array(self, t: str):
        """An initializer's values; a weight in an external file is mapped, not read."""
        tensor = self.inits[t]
        if tensor.data_location != self.onnx.TensorProto.EXTERNAL:
            return self.onnx.numpy_helper.to_array(tensor)
        from onnx.external_data_helper import ExternalDataInfo

        info = ExternalDataInfo(tensor)
        base = os.path.dirname(os.path.abspath(self.path))
        file = os.path.normpath(os.path.join(base, info.location))
        dtype = self.onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        shape = tuple(int(d) for d in tensor.dims)
        if os.path.commonpath([base, file]) != base or not os.path.isfile(file):
            raise InputError(f"initializer {t!r}: its external data {info.location!r} is not a file "
                             "beside the model", file=self.path)
        if math.prod(shape) * np.dtype(dtype).itemsize > max(os.path.getsize(file) - info.offset, 0):
            raise InputError(f"initializer {t!r}: its external data {info.location!r} is shorter than "
                             f"its shape {shape}", file=self.path)
        return np.memmap(file, dtype=dtype, mode="r", offset=info.offset, shape=shape)

    def _evaluate(self, t: str):
        if t in self.inits:
            size = math.prod(self.inits[t].dims)
            return self.array(t) if self._fold(size) else None
        if t in self.side:  # all ones: an attention mask without padding (what tells a causal mask)
            shape = self.shape(t)
            if not shape or min(shape) < 1 or not self._fold(math.prod(shape)):
                return None
            dtype = self.onnx.helper.tensor_dtype_to_np_dtype(self.side[t])
            return np.ones(shape, dtype=dtype)
        i = self.producer.get(t)
        if i is None or t not in self.static:
            return None
        node = self.nodes[i]
        if node.op_type in SHAPE_OPS:
            shape = self.shape(node.input[0])
            if node.op_type == "Shape":  # the dimensions asked for may be known when the batch is not
                attrs = self.attrs(i)
                shape = shape[attrs.get("start", 0):attrs.get("end", len(shape))]
            if not shape or min(shape) < 1:
                return None
            return np.array(shape if node.op_type == "Shape" else math.prod(shape), dtype=np.int64)
        if node.op_type not in FOLDABLE:
            return None  # its cost is not bounded by its sizes (or not deterministic, or control flow)
        feeds = {}
        for name in node.input:
            if name:
                feeds[name] = self.value(name)
                if feeds[name] is None:
                    return None
        size = _fold_size(node.op_type, [feeds.get(name) for name in node.input], self.attrs(i))
        if size is None or not self._fold(size):
            return None
        from onnx.reference import ReferenceEvaluator

        results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        for name, result in zip(node.output, results):
            self._values[name] = np.asarray(result)
        return self._values[t]

    def _fold(self, size: int) -> bool:
        """Whether a value of ``size`` elements is within the bounds, counted if so."""
        if size > MAX_VALUE or self._folded + size > MAX_FOLDED:
            return False
        self._folded += size
        return True

    def scalar(self, t: str) -> float | None:
        value = self.value(t)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def source(self, t: str) -> str | None:
        """The initializer (or Constant) a static tensor is a view or a part of."""
        for _ in range(16):
            if t in self.inits:
                return t
            i = self.producer.get(t)
            if i is None or t not in self.static:
                return None
            if self.nodes[i].op_type == "Constant":
                return t
            if self.nodes[i].op_type not in WEIGHT_VIEWS:
                return None
            t = self.nodes[i].input[0]
        return None

    def same_table(self, weight: str | None, table: str) -> bool:
        """Whether a projection's weight initializer holds a table's values (or their transpose).

        Large tables are compared on their first rows: enough to tell a tied copy from
        an independent matrix of the same shape.
        """
        if weight not in self.inits or table not in self.inits or weight == table:
            return False
        w, t = self.shape(weight), self.shape(table)
        if len(t) != 2 or t[0] == t[1] or w not in (t, t[::-1]):
            return False
        w_values, t_values = self.array(weight), self.array(table)
        rows = min(t[0], 64)
        w_rows = w_values[:rows] if w == t else w_values[:, :rows].T
        return bool(np.array_equal(w_rows, t_values[:rows]))

    def static_ancestors(self, t: str, limit: int = 64) -> list[int]:
        found, stack, seen = [], [t], set()
        while stack and len(found) < limit:
            i = self.producer.get(stack.pop())
            if i is None or i in seen:
                continue
            seen.add(i)
            found.append(i)
            stack.extend(x for x in self.nodes[i].input if x and x in self.static)
        return found

    def root(self, t: str) -> str:
        """``t`` followed back through free views: the tensor whose layer it stands for."""
        while (i := self.producer.get(t)) is not None and self.nodes[i].op_type in FREE and len(self.dyn(i)) == 1:
            t = self.dyn(i)[0]
        return t


def _fold_size(op: str, inputs: list, attrs: dict[str, Any]) -> int | None:
    """The elements a foldable operator writes (a MatMul: its multiply-adds), from its inputs."""
    shapes = [x.shape for x in inputs if x is not None]
    if op in ("Constant", "Identity", "Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Trilu",
              "Slice", "Split", "Neg", "Not", "Abs", "Sqrt", "Reciprocal", "CumSum") or op.startswith("Reduce"):
        return inputs[0].size if inputs else 1
    if op == "Concat":
        return sum(x.size for x in inputs if x is not None)
    if op == "Gather":
        data, indices = inputs[0], inputs[1]
        axis = int(attrs.get("axis", 0)) % max(data.ndim, 1)
        return indices.size * (data.size // max(data.shape[axis], 1) if data.ndim else 1)
    if op == "ConstantOfShape":
        return math.prod(int(d) for d in inputs[0].reshape(-1))
    if op == "Expand":
        return math.prod(np.broadcast_shapes(inputs[0].shape, tuple(int(d) for d in inputs[1].reshape(-1))))
    if op == "Tile":
        return inputs[0].size * math.prod(int(r) for r in inputs[1].reshape(-1))
    if op == "Range":
        start, limit, delta = (float(v) for v in inputs[:3])
        return int(abs((limit - start) / delta)) + 1 if delta else None
    if op == "MatMul":
        a = shapes[0] if len(shapes[0]) > 1 else (1,) + shapes[0]  # a vector: one row
        b = shapes[1] if len(shapes[1]) > 1 else shapes[1] + (1,)  # a vector: one column
        return math.prod(np.broadcast_shapes(a[:-2], b[:-2])) * a[-2] * a[-1] * b[-1]
    return math.prod(np.broadcast_shapes(*shapes))  # element-wise


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape and min(shape) > 0 else (1 if shape == () else -1)


# ---------------------------------------------------------------------------------------
# First pass: fused groups.

def _fuse(g: _Graph) -> dict[int, _Group]:
    """Node index -> the group it belongs to, for the nodes that are mapped together."""
    claims: dict[int, _Group] = {}
    linears: dict[str, _Group] = {}  # a linear group's output tensor -> the group

    def claim(group: _Group) -> None:
        for i in group.nodes:
            claims[i] = group
        if group.kind == "linear":
            for t in group.outputs:
                linears[t] = group

    for i in range(len(g.nodes)):
        if i not in claims and (group := _linear(g, i)) is not None:
            claim(group)
    for i, node in enumerate(g.nodes):
        if node.op_type == "Softmax" and i not in claims:
            for group in _attention(g, i, claims, linears) or ():
                claim(group)
    silus = []
    for i, node in enumerate(g.nodes):
        if node.op_type in REGION_ANCHORS and i not in claims and (group := _region(g, i, claims)) is not None:
            claim(group)
            if group.kind == "silu":
                silus.append(group)
    for silu in silus:
        for group in _swiglu(g, silu, claims, linears) or ():
            claim(group)
    return claims


def _linear(g: _Graph, i: int) -> _Group | None:
    """MatMul or Gemm of an activation with a weight, and the Add of a bias after it."""
    node = g.nodes[i]
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    x, w = node.input[0], node.input[1]
    attrs = g.attrs(i)
    if x in g.static or w not in g.static or attrs.get("transA", 0):
        return None
    shape = g.shape(w)
    if len(shape) != 2 or min(shape) < 1:
        return None
    out = shape[0] if (node.op_type == "Gemm" and attrs.get("transB", 0)) else shape[1]
    bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
    nodes, output = [i], node.output[0]
    readers = g.readers(output)
    if not bias and len(readers) == 1 and output not in g.outputs:
        add = g.nodes[readers[0]]
        other = [t for t in add.input if t != output]
        if add.op_type == "Add" and len(other) == 1 and other[0] in g.static and _numel(g.shape(other[0])) == out:
            nodes.append(readers[0])
            output, bias = add.output[0], True
    return _Group("linear", nodes, [x], [output], i, {"out_features": int(out), "bias": bias}, weight=g.source(w))


def _merge(groups: list[_Group], label: str) -> _Group:
    """Linear layers of one input as one (q, k and v; gate and up): the same weights and MACs."""
    first = min(groups, key=lambda grp: grp.emit)  # written there: its input exists
    return _Group("linear", sorted(i for grp in groups for i in grp.nodes), list(first.inputs),
                  [t for grp in groups for t in grp.outputs], first.emit,
                  {"out_features": sum(grp.entry["out_features"] for grp in groups),
                   "bias": groups[0].entry["bias"]}, label)


def _mergeable(g: _Graph, groups: list[_Group]) -> bool:
    return (not any(grp.label for grp in groups)  # not merged already
            and len({g.root(grp.inputs[0]) for grp in groups}) == 1
            and len({grp.entry["bias"] for grp in groups}) == 1)


@dataclass
class _Trace:
    origin: str  # the tensor Q, K or V is a view of
    nodes: list[int]  # the views, selections, scales and rotations on the way
    scale: float | None  # the product of the scales, None if one is not known


def _trace(g: _Graph, t: str, claims: dict[int, _Group]) -> _Trace:
    nodes: list[int] = []
    scale: float | None = 1.0
    while (i := g.producer.get(t)) is not None and (i not in claims or claims[i].kind == "free"):
        node, dyn = g.nodes[i], g.dyn(i)
        op = node.op_type
        if len(dyn) == 1 and dyn[0] == node.input[0] and (op in VIEWS or op in SELECTIONS):
            nodes.append(i)
        elif op in ("Mul", "Div") and len(dyn) == 1 and (op == "Mul" or dyn[0] == node.input[0]):
            other = next(x for x in node.input if x != dyn[0])
            if _numel(g.shape(other)) > 1:
                break  # not a scale
            factor = g.scalar(other)
            scale = None if (scale is None or not factor) else scale * (1 / factor if op == "Div" else factor)
            nodes.append(i)
        elif op == "Add" and len(dyn) == 2 and (rope := _rotary(g, i, claims)) is not None:
            dyn, rotation = [rope[0]], rope[1]
            nodes += [i, *rotation]
        else:
            break
        t = dyn[0]
    return _Trace(t, nodes, scale)


def _rotary(g: _Graph, i: int, claims: dict[int, _Group]) -> tuple[str, list[int]] | None:
    """``x cos + rotate_half(x) sin`` at the Add ``i``: (x, the nodes), or None."""
    muls = []
    for t in g.nodes[i].input:
        j = g.producer.get(t)
        if j is None or j in claims or g.nodes[j].op_type != "Mul" or len(g.dyn(j)) != 1 or len(g.readers(t)) != 1:
            return None
        muls.append(j)
    xs = [g.dyn(j)[0] for j in muls]
    for plain, rotated in ((0, 1), (1, 0)):
        nodes, stack, seen = [], [xs[rotated]], set()
        while stack and len(nodes) <= 16:
            t = stack.pop()
            j = g.producer.get(t)
            if t == xs[plain] or j in seen:
                continue
            if j is None or j in claims or g.nodes[j].op_type not in ROTATE_OPS or not g.dyn(j):
                nodes = []
                break
            seen.add(j)
            nodes.append(j)
            stack.extend(g.dyn(j))
        if nodes and not stack and any(g.nodes[j].op_type == "Concat" for j in nodes):
            return xs[plain], muls + nodes
    return None


def _attention(g: _Graph, i: int, claims: dict[int, _Group],
               linears: dict[str, _Group]) -> list[_Group] | None:
    """The attention core around the Softmax ``i``, with its projections; None if it is not one."""
    chain = [i]
    scale: float | None = 1.0
    masks = []
    t = g.nodes[i].input[0]
    while True:  # back from the softmax: [Cast] [mask] [scale] ... to S = Q K^T
        j = g.producer.get(t)
        if j is None or j in claims or len(g.readers(t)) != 1:
            return None
        node, dyn = g.nodes[j], g.dyn(j)
        op = node.op_type
        if op == "MatMul" and len(dyn) == 2:
            qk = j
            break
        if len(dyn) != 1:
            return None
        other = [x for x in node.input if x and x != dyn[0]]
        if op in ("Cast", "Identity"):
            pass
        elif op in ("Mul", "Div") and (op == "Mul" or node.input[0] == dyn[0]):
            factor = g.scalar(other[0])
            scale = None if (scale is None or not factor) else scale * (1 / factor if op == "Div" else factor)
        elif op == "Add":
            masks.append(("add", other[0], False))
        elif op == "Where" and node.input[0] in g.static:
            masks.append(("where", node.input[0], node.input[2] == dyn[0]))  # allowed where the scores pass
        else:
            return None
        chain.append(j)
        t = dyn[0]
    t = g.nodes[i].output[0]
    while True:  # forward: [Cast] [Dropout] [NaN guard] to O = P V
        readers = g.readers(t)
        if len(readers) == 2 and (nan := _nan_guard(g, t, readers, claims)) is not None:
            chain += nan  # a fully masked row's NaNs set to 0 (what the sdpa export writes)
            t = g.nodes[nan[-1]].output[0]
            continue
        if len(readers) != 1 or readers[0] in claims:
            return None
        j = readers[0]
        node = g.nodes[j]
        if node.op_type == "MatMul" and node.input[0] == t and node.input[1] not in g.static:
            av = j
            break
        if node.op_type not in ("Cast", "Identity", "Dropout") or node.input[0] != t:
            return None
        chain.append(j)
        t = node.output[0]
    q, k, v = g.nodes[qk].input[0], g.nodes[qk].input[1], g.nodes[av].input[1]
    traces = [_trace(g, x, claims) for x in (q, k, v)]
    projections = [linears.get(tr.origin) for tr in traces]
    if any(p is None for p in projections):
        return None
    distinct = list({id(p): p for p in projections}.values())
    if len(distinct) > 1 and not _mergeable(g, distinct):
        return None
    width = sum(p.entry["out_features"] for p in distinct)
    # Head size: Q's last dimension, or from the scale 1/sqrt(head_dim).
    q_shape = g.shape(q)
    head_dim = q_shape[-1] if q_shape and q_shape[-1] > 0 else None
    scales = [scale, traces[0].scale, traces[1].scale]
    if head_dim is None and None not in scales and 0 < math.prod(scales) < 1:
        head_dim = round(1 / math.prod(scales) ** 2)
    if not head_dim or width % head_dim:
        return None
    if projections[0] is not projections[1] and projections[0] is not projections[2]:
        heads = projections[0].entry["out_features"] // head_dim  # Q's own projection
    elif len(q_shape) == 4 and q_shape[1] > 0:
        heads = q_shape[1]  # (batch, heads, tokens, head_dim)
    else:
        heads = width // head_dim // 3
    kv_twice = width // head_dim - heads
    if heads < 1 or kv_twice < 2 or kv_twice % 2 or heads % (kv_twice // 2):
        return None
    groups: list[_Group] = []
    if len(distinct) > 1:
        groups.append(_merge(distinct, "qkv"))
    views = dict.fromkeys(j for tr in traces for j in tr.nodes if j not in claims)  # a Split is on three paths
    groups += [_Group("free", [j], [], [], j) for j in views]
    entry = {"heads": heads, "kv_heads": kv_twice // 2, "causal": any(_causal(g, m) for m in masks),
             "flash": False}
    groups.append(_Group("attention", sorted(chain + [qk, av]), [q, k, v], [g.nodes[av].output[0]], av,
                         entry, "attention"))
    return groups


def _broadcast(g: _Graph, acts: list[str]) -> list[str] | None:
    """Two activations, the one of the output's shape first (the other broadcasts to it), or None."""
    shapes = [g.shape(t) for t in acts]
    if any(not s or min(s) < 1 for s in shapes):
        return None
    big = max(range(2), key=lambda k: math.prod(shapes[k]))
    try:
        if np.broadcast_shapes(*shapes) != shapes[big]:
            return None
    except ValueError:
        return None
    return [acts[big], acts[1 - big]]


def _spatial_mean(g: _Graph, i: int) -> bool:
    """A ReduceMean over the height and width of an image (N, C, H, W): global average pooling."""
    node, shape = g.nodes[i], g.shape(g.nodes[i].input[0])
    axes = g.attrs(i).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = g.value(node.input[1])
    if len(shape) != 4 or axes is None:
        return False
    return sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) == [2, 3]


def _uncovered(g: _Graph, i: int) -> tuple[int, int]:
    """The parameters (its weight initializers) and multiply-adds per sample of a node that
    a stand-in approximates: what the stand-in does not count."""
    node = g.nodes[i]
    weights = {src for t in node.input if t and (src := g.source(t)) in g.inits}
    params = sum(_numel(g.shape(w)) for w in weights if _numel(g.shape(w)) > 1)
    shape = g.shape(node.output[0])
    if shape and shape[0] < 1 and g.batch == 1:  # an unknown first dimension: the batch, fixed to 1
        shape = (1,) + shape[1:]
    out = _numel(shape) // max(g.batch, 1)
    macs = 0
    if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and out > 0:
        a = g.shape(node.input[0])
        reduce = (a[-2] if g.attrs(i).get("transA") else a[-1]) if a else 0
        macs = out * max(reduce, 0)
    elif node.op_type in ("Conv", "ConvTranspose") and out > 0 and len(g.shape(node.input[1])) > 2:
        w = g.shape(node.input[1])
        macs = out * math.prod(w[1:]) if node.op_type == "Conv" else _numel(g.shape(node.input[0])) * math.prod(w[1:])
    return params, macs


def _nan_guard(g: _Graph, t: str, readers: list[int], claims: dict[int, _Group]) -> list[int] | None:
    """``Where(IsNaN(t), 0, t)`` on the probabilities ``t``: [IsNaN, Where], or None."""
    isnan = next((j for j in readers if g.nodes[j].op_type == "IsNaN"), None)
    where = next((j for j in readers if g.nodes[j].op_type == "Where"), None)
    if isnan is None or where is None or isnan in claims or where in claims:
        return None
    cond, other, passed = g.nodes[where].input
    if cond != g.nodes[isnan].output[0] or passed != t or other not in g.static or g.readers(cond) != [where]:
        return None
    return [isnan, where]


def _causal(g: _Graph, mask: tuple[str, str, bool]) -> bool:
    """Whether an attention mask is the causal one (a Trilu, or a constant lower triangle)."""
    kind, tensor, flip = mask
    ancestors = g.static_ancestors(tensor)
    if any(g.nodes[j].op_type == "Trilu" for j in ancestors):
        return True
    value = g.value(tensor)
    if value is not None:
        allowed = value > MASKED if kind == "add" else value.astype(bool) != flip
        return _lower_triangle(allowed)
    # Cut from a larger constant triangle (GPT-2's causal buffer sliced to the sequence).
    tables = {x for j in ancestors for x in g.nodes[j].input if x in g.inits and len(g.shape(x)) >= 2}
    return any((table := g.value(x)) is not None and _lower_triangle(table.astype(bool)) for x in tables)


def _lower_triangle(allowed) -> bool:
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.ndim < 2 or min(allowed.shape[-2:]) < 2:
        return False
    rows, cols = allowed.shape[-2:]
    planes = allowed.reshape(-1, rows, cols)
    return bool((planes == planes[0]).all()
                and np.array_equal(planes[0], np.tril(np.ones((rows, cols), dtype=bool), cols - rows)))


def _region(g: _Graph, anchor: int, claims: dict[int, _Group]) -> _Group | None:
    """The decomposed normalization or activation around ``anchor``, or None."""
    candidates: list[str] = []  # its source x: a dynamic tensor among the anchor's ancestors, nearest first
    frontier, seen = [anchor], {anchor}
    for _ in range(8):
        upstream = []
        for j in frontier:
            for t in g.dyn(j):
                if t not in candidates:
                    candidates.append(t)
                p = g.producer.get(t)
                if p is not None and p not in seen and p not in claims and g.nodes[p].op_type in REGION_OPS:
                    seen.add(p)
                    upstream.append(p)
        frontier = upstream
    for x in candidates:
        members = _closure(g, x, claims)
        if members is None or anchor not in members:
            continue
        inside = set(members)
        exits = [t for j in members for t in g.nodes[j].output
                 if t in g.outputs or any(r not in inside for r in g.readers(t))]
        if len(exits) == 1 and (kind := _classify(g, x, members)) is not None:
            return _Group(kind, members, [x], exits, g.producer[exits[0]], label=kind)
    return None


def _closure(g: _Graph, x: str, claims: dict[int, _Group]) -> list[int] | None:
    """The element-wise nodes computed from ``x`` (and constants) only, in order."""
    available, members, seen = {x}, [], set()
    heap = list(g.readers(x))
    heapq.heapify(heap)
    while heap:  # in node order: a node's producers are decided before it
        j = heapq.heappop(heap)
        if j in seen:
            continue
        seen.add(j)
        if j in claims or g.nodes[j].op_type not in REGION_OPS or not all(t in available for t in g.dyn(j)):
            continue
        members.append(j)
        if len(members) > MAX_REGION:
            return None
        for t in g.nodes[j].output:
            available.add(t)
            for r in g.readers(t):
                heapq.heappush(heap, r)
    return members


def _classify(g: _Graph, x: str, members: list[int]) -> str | None:
    nodes = [g.nodes[j] for j in members]
    ops = Counter(n.op_type for n in nodes)
    exponent = {n.input[0]: g.scalar(n.input[1]) for n in nodes if n.op_type == "Pow"}
    squares = exponent.get(x) == 2 or any(n.op_type == "Mul" and n.input[0] == n.input[1] == x for n in nodes)
    cubes = exponent.get(x) == 3 or any(n.op_type == "Mul" and n.input[0] == n.input[1] == x for n in nodes)

    def unscaled(t: str) -> str:  # c x -> x
        while t != x and (i := g.producer.get(t)) is not None and len(dyn := g.dyn(i)) == 1:
            op = g.nodes[i].op_type
            if not (op in ("Mul", "Cast") or (op == "Div" and g.nodes[i].input[0] == dyn[0])):
                break
            t = dyn[0]
        return t

    # x times (or over) a tensor computed from it: the gate, the root; x maybe scaled first
    times_x = any(len(g.dyn(j)) == 2 and (n.op_type == "Mul" and x in map(unscaled, n.input)
                                          or n.op_type == "Div" and unscaled(n.input[0]) == x)
                  for j, n in zip(members, nodes))
    transcendental = ops["Erf"] + ops["Tanh"] + ops["Sigmoid"]
    if ops["ReduceMean"] == 2 and not transcendental and any(n.op_type == "Sub" and n.input[0] == x for n in nodes):
        return "layernorm"
    if ops["ReduceMean"] == 1 and not transcendental and not ops["Sub"] and squares and times_x:
        return "rmsnorm"
    if ops["ReduceMean"] or transcendental != 1 or not times_x:
        return None
    if ops["Erf"] and set(ops) <= {"Div", "Mul", "Add", "Erf", "Cast", "Identity"}:
        return "gelu"
    if ops["Tanh"] and cubes and set(ops) <= {"Pow", "Mul", "Add", "Div", "Tanh", "Cast", "Identity"}:
        return "gelu"
    if ops["Sigmoid"] and set(ops) <= {"Sigmoid", "Mul", "Cast", "Identity"}:
        sigmoid = next(n for n in nodes if n.op_type == "Sigmoid")
        return "silu" if g.root(sigmoid.input[0]) == g.root(x) else "gelu"  # x sigmoid(1.702 x): GELU
    return None


def _swiglu(g: _Graph, silu: _Group, claims: dict[int, _Group],
            linears: dict[str, _Group]) -> list[_Group] | None:
    """SiLU(gate(x)) * up(x): the gate and up projections merged, then ``swiglu``."""
    (x,), (y,) = silu.inputs, silu.outputs
    gate, readers = linears.get(x), g.readers(y)
    if gate is None or len(gate.outputs) != 1 or set(g.readers(x)) - set(silu.nodes) or len(readers) != 1:
        return None
    j = readers[0]
    mul = g.nodes[j]
    if mul.op_type != "Mul" or j in claims or len(g.dyn(j)) != 2 or y not in mul.input:
        return None
    u = next(t for t in mul.input if t != y)
    up = linears.get(u)
    if up is None or up is gate or len(up.outputs) != 1 or len(g.readers(u)) != 1 or not _mergeable(g, [gate, up]):
        return None
    return [_merge([gate, up], "gate_up"), _Group("swiglu", sorted(silu.nodes + [j]), [x], [mul.output[0]], j,
                                                  label="swiglu")]


# ---------------------------------------------------------------------------------------
# Second pass: the layers.

def _scope(names: list[str]) -> str:
    """The common scope of node names: ``/h.0/attn/MatMul`` and ``/h.0/attn/Softmax`` -> ``h.0/attn``."""
    names = [n for n in names if n]
    if not names:
        return ""
    if all("/" in n for n in names):
        common = []
        for level in zip(*(n.strip("/").split("/")[:-1] for n in names)):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        return "/".join(common)
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind(c) for c in "_-.")
    return prefix[:cut] if cut > 0 else ""


def import_onnx(path: str, build: Callable[[dict[str, Any], str], Any], *, name: str | None = None,
                lenient: bool = False) -> ImportResult:
    """The workload an ONNX file describes; ``build`` (mcdla.hw.workload.read_workload, passed
    by the caller: importers sit below hw) builds the document, to check it against the graph."""
    onnx, model = _load(path)
    graph = model.graph
    g = _Graph(onnx, model, path)
    data = [g.data]
    g.batch = g.shape(data[0].name)[0] if g.shape(data[0].name) else 1
    data_shape = g.shape(data[0].name)[1:]  # without the batch dimension
    if any(d < 1 for d in data_shape):
        raise InputError(f"the data input's shape {g.shape(data[0].name)} is not fixed", file=path)
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

    claims = _fuse(g)
    tokens = input_doc.get("tokens") or input_doc.get("timesteps") or 1
    layer_of: dict[str, str] = {data[0].name: "input"}  # tensor -> the mcdla layer producing it
    sequence = {"input": "tokens" in input_doc or "timesteps" in input_doc}  # layer -> (tokens, features)?
    owner: dict[str, str] = {}  # weight initializer -> the layer that owns it (for tying)
    embeddings: dict[str, str] = {}  # token table -> its embedding layer
    tables: dict[str, list[int]] = {}  # position layer -> the rows of the tables it adds
    layers: list[dict[str, Any]] = []
    approximated: list[Approximation] = []
    used: set[str] = set()
    origins: dict[str, tuple[int, list[str]]] = {}  # layer -> the node it is written at, the tensors it stands for

    def refer(tensor: str, i: int) -> str:
        if tensor not in layer_of:
            raise InputError(f"node {g.name(i)!r} ({g.nodes[i].op_type}) reads {tensor!r}, "
                             "which no mapped node produces", file=path)
        return layer_of[tensor]

    def add(node: int, base: str, entry: dict[str, Any], inputs: list[str], outputs: list[str]) -> str:
        base = _clean(base)
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
        origins[name] = (node, outputs)
        sequence[name] = entry["kind"] == "embedding" or (entry["kind"] != "fc" and sequence[inputs[0]]
                                                          and len(entry.get("shape", (0, 0))) == 2)
        for t in outputs:
            layer_of[t] = name
        return name

    def emit(group: _Group) -> None:
        i = group.emit
        if group.kind == "free":
            source = refer(g.dyn(i)[0], i)
            for t in g.nodes[i].output:
                layer_of[t] = source
            return
        inputs = list(dict.fromkeys(refer(t, i) for t in group.inputs))
        if len(inputs) != 1:  # Q, K and V from one projection, by construction
            raise InputError(f"node {g.name(i)!r} ({g.nodes[i].op_type}) reads layers {inputs}, "
                             "expected one", file=path)
        base = g.label(i)
        if group.label:
            scope = _scope([g.label(j) for j in group.nodes])
            base = f"{scope}/{group.label}" if scope and group.kind == "linear" else scope or group.label
        entry = {"kind": group.kind, **group.entry}
        if group.kind == "linear":
            entry["kind"] = "linear" if sequence[inputs[0]] else "fc"
            if entry["kind"] == "linear":
                # The same initializer, or (an exporter folds the Transpose) a copy of a token table.
                tied = owner.get(group.weight) or next(
                    (layer for table, layer in embeddings.items() if g.same_table(group.weight, table)), None)
                if tied is not None:
                    entry["tied_to"] = tied
        name = add(i, base, entry, inputs, group.outputs)
        if entry["kind"] == "linear" and group.weight and group.weight not in owner:
            owner[group.weight] = name

    for i, node in enumerate(g.nodes):
        if i in g.control:  # even --lenient: what a branch or loop body holds is unknown, and may be most
            raise InputError(f"node {g.name(i)!r}: operator {node.op_type} holds subgraphs (control flow), "
                             "which mcdla does not import; export the path taken (a traced export)", file=path)
        if i in claims:
            if claims[i].emit == i:
                emit(claims[i])
            continue
        if g.is_static(i):
            continue  # shapes and constants
        op, attrs, acts = node.op_type, g.attrs(i), g.dyn(i)
        consts = [t for t in node.input if t and t in g.static]
        if op in FREE:
            layer_of[node.output[0]] = refer(acts[0], i)
        elif op == "Conv":
            w = g.shape(node.input[1]) if node.input[1] in g.static else ()
            if len(w) != 4:
                raise InputError(f"node {g.name(i)!r} (Conv) has no 2-D weight initializer", file=path)
            channels, groups = g.shape(acts[0])[1:2], int(attrs.get("group", 1))
            if channels != (w[1] * groups,):  # mcdla counts the weights from the channels it reads
                raise InputError(f"node {g.name(i)!r} (Conv): a weight of shape {w} with group={groups} reads "
                                 f"{w[1] * groups} channels, its input has {channels or 'unknown'}", file=path)
            bias = len(node.input) > 2 and bool(node.input[2])
            if bias and g.shape(node.input[2]) != (w[0],):
                raise InputError(f"node {g.name(i)!r} (Conv): bias of shape {g.shape(node.input[2])}, "
                                 f"expected ({w[0]},)", file=path)
            entry = {"kind": "conv", "out_channels": int(w[0]), **_window(g, i, w[2:]), "groups": groups,
                     "bias": bias}
            add(i, g.label(i), entry, [refer(acts[0], i)], node.output[:1])
        elif op == "Gather" and node.input[0] in g.static and len(g.shape(node.input[0])) == 2 and acts:
            vocab, hidden = g.shape(node.input[0])
            layer = add(i, g.label(i), {"kind": "embedding", "vocab": vocab, "hidden": hidden},
                        [refer(acts[0], i)], node.output[:1])
            if (table := g.source(node.input[0])) is not None:
                owner.setdefault(table, layer)
                embeddings.setdefault(table, layer)
        elif op == "Add" and len(acts) == 1 and len(consts) == 1 and _is_table(g, consts[0], acts[0]) \
                and sequence[refer(acts[0], i)]:
            source, rows = refer(acts[0], i), _table_rows(g, consts[0])
            if layers and layers[-1]["name"] == source and layers[-1]["kind"] == "position":
                tables[source].append(rows)  # token types added after positions, or before
                layers[-1]["max_positions"] = max(tables[source])
                layers[-1]["types"] = sum(tables[source]) - max(tables[source])
                layer_of[node.output[0]] = source
            else:
                layer = add(i, g.label(i), {"kind": "position", "max_positions": rows}, [source], node.output[:1])
                tables[layer] = [rows]
        elif op == "Add" and len(acts) == 2 and not ((order := _broadcast(g, acts)) and order[1] != order[0] and
                                                     g.shape(order[0]) != g.shape(order[1])):  # a residual
            add(i, g.label(i), {"kind": "add"}, [refer(t, i) for t in acts], node.output[:1])
        elif op in ("Add", "Sub", "Mul", "Div") and len(acts) == 2 and (order := _broadcast(g, acts)):
            # a gate times a map (squeeze-excitation), or any arithmetic of two activations
            add(i, g.label(i), {"kind": "elementwise"}, [refer(t, i) for t in order], node.output[:1])
        elif op == "ReduceMean" and len(acts) == 1 and _spatial_mean(g, i):  # the dynamo export's average pool
            add(i, g.label(i), {"kind": "avgpool", "output_size": 1}, [refer(acts[0], i)], node.output[:1])
        elif op in ("Gather", "Slice") and len(acts) == 1 and acts[0] == node.input[0] and \
                (shape := g.sample_shape(node.output[0])):  # a selection of tokens (a pooler's first token)
            add(i, g.label(i), {"kind": "elementwise", "shape": list(shape)}, [refer(acts[0], i)], node.output[:1])
        elif op == "Concat" and int(attrs.get("axis", 1)) == 1 and len(acts) == len([t for t in node.input if t]):
            add(i, g.label(i), {"kind": "concat"}, [refer(t, i) for t in acts], node.output[:1])
        elif op == "BatchNormalization":
            add(i, g.label(i), {"kind": "batchnorm"}, [refer(acts[0], i)], node.output[:1])
        elif op == "LayerNormalization":
            add(i, g.label(i), {"kind": "layernorm"}, [refer(acts[0], i)], node.output[:1])
        elif op in ACTIVATIONS and len(acts) == 1:
            add(i, g.label(i), {"kind": ACTIVATIONS[op]}, [refer(acts[0], i)], node.output[:1])
        elif op in ARITHMETIC and len(acts) == 1 and all(_numel(g.shape(t)) == 1 for t in consts):
            add(i, g.label(i), {"kind": "elementwise"}, [refer(acts[0], i)], node.output[:1])
        elif op in ("MaxPool", "AveragePool"):
            entry = {"kind": "maxpool" if op == "MaxPool" else "avgpool", **_window(g, i, None),
                     "ceil_mode": bool(attrs.get("ceil_mode", 0))}
            add(i, g.label(i), entry, [refer(acts[0], i)], node.output[:1])
        elif op == "GlobalAveragePool":
            add(i, g.label(i), {"kind": "avgpool", "output_size": 1}, [refer(acts[0], i)], node.output[:1])
        elif lenient and acts:  # a stand-in per output, of the output's size, priced by its bytes
            params, macs = _uncovered(g, i)
            approximated.append(Approximation(g.name(i), op, params, macs))
            sources = list(dict.fromkeys(refer(t, i) for t in acts))
            for t in node.output:
                if t:
                    shape = g.sample_shape(t)
                    if shape and sequence[sources[0]] and len(shape) != 2 and math.prod(shape) % tokens == 0:
                        shape = (tokens, math.prod(shape) // tokens)  # on a sequence: (tokens, features)
                    entry = {"kind": "elementwise", **({"shape": list(shape)} if shape else {})}
                    add(i, g.label(i), entry, sources if shape else sources[:1], [t])
        else:
            hint = (" of two activations outside a recognized attention pattern" if op == "MatMul" and len(acts) == 2
                    else "")
            raise InputError(f"node {node.name or '?'!r}: operator {op}{hint} has no mcdla layer "
                             "(--lenient prices it as element-wise by its bytes)", file=path)
    if not layers:
        raise InputError("the graph has no layer mcdla can map", file=path)
    model_name = _clean(name or graph.name or "imported")
    document = {"name": model_name, "description": f"imported from {path.rsplit('/', 1)[-1]}",
                "input": input_doc, **_precision(g), "layers": layers}
    return ImportResult(document, _verify(g, document, origins, build), approximated)


def _precision(g: _Graph) -> dict[str, Any]:
    """The model's precision: that of most of its floating-point weights. A half-precision
    model (fp16, bf16) trains in mixed precision, with fp32 master weights in the optimizer
    (Micikevicius et al., "Mixed Precision Training", ICLR 2018)."""
    counts: Counter[int] = Counter()
    for tensor in g.inits.values():
        dtype = g.onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type) if tensor.data_type else None
        if tensor.data_type == g.onnx.TensorProto.BFLOAT16 or (dtype is not None and dtype.kind == "f"):
            counts[2 if tensor.data_type == g.onnx.TensorProto.BFLOAT16 else dtype.itemsize] += \
                math.prod(tensor.dims)
    size = counts.most_common(1)[0][0] if counts else 4
    return {"precision_bytes": size, "master_weights": True} if size < 4 else {"precision_bytes": size}


def _verify(g: _Graph, document: dict[str, Any], origins: dict[str, tuple[int, list[str]]],
            build: Callable[[dict[str, Any], str], Any]) -> Any:
    """The workload, built; its errors name the ONNX node, and each layer's output must hold
    as many elements per sample as ONNX infers for the tensors it stands for (an attribute
    read wrong, or one mcdla does not model, shows there)."""
    def node_of(layer: str) -> str:
        i = origins[layer][0]
        return f"node {g.name(i)!r} ({g.nodes[i].op_type})"

    try:
        work = build(document, g.path)
    except InputError as exc:
        index = re.match(r"layers\[(\d+)\]", exc.key or "")
        where = node_of(document["layers"][int(index[1])]["name"]) + ": " if index else ""
        raise InputError(where + exc.detail, file=g.path) from None
    batch = max(g.batch, 1)
    for layer in work.layers[1:]:
        outputs = origins[layer.name][1]
        sizes = [_numel(g.shapes[t]) if t in g.shapes else -1 for t in outputs]
        if min(sizes) < 1 or sum(sizes) % batch:
            continue  # a shape ONNX does not know
        expected, mcdla = sum(sizes) // batch, math.prod(layer.out_shape)
        if expected != mcdla:
            shapes = ", ".join(str(g.shape(t)) for t in outputs)
            raise InputError(f"{node_of(layer.name)}: mcdla's {layer.kind} layer writes {mcdla:,} elements per "
                             f"sample {layer.out_shape}, ONNX infers {expected:,} ({shapes}): an attribute "
                             "mcdla does not model?", file=g.path)
    return work


def _is_table(g: _Graph, table: str, tokens: str) -> bool:
    """A constant of (tokens, features) added to a sequence (batch, tokens, features): positions
    or types. Not a mask: nothing computed from a side input (an attention mask) is a table."""
    shape, x = g.shape(table), g.shape(tokens)
    if len(shape) < 2 or len(x) != 3 or shape[-1] != x[-1] or x[-1] < 1 or shape[-2] not in (x[-2], -1):
        return False
    return not any(t in g.side for j in g.static_ancestors(table) for t in g.nodes[j].input)


def _table_rows(g: _Graph, t: str) -> int:
    """The rows of the position (or token type) table a constant added to the tokens comes from."""
    i = g.producer.get(t)
    if i is not None and g.nodes[i].op_type == "Gather" and len(g.shape(g.nodes[i].input[0])) == 2:
        return g.shape(g.nodes[i].input[0])[0]  # a lookup of position ids in a table
    source = g.source(t)
    shape = g.shape(source) if source else g.shape(t)
    if len(shape) == 2:
        return shape[0]
    return math.prod(d for d in shape[:-1] if d > 0)  # (1, tokens, hidden): the table itself


def _window(g: _Graph, i: int, weight: tuple[int, ...] | None) -> dict[str, Any]:
    """A convolution's or pool's 2-D window as mcdla's kernel, stride and padding.

    ``auto_pad`` is resolved to pads as ONNX defines them; what mcdla's window does not
    model (dilations, asymmetric padding, a ``kernel_shape`` other than the weight's)
    is an error naming the node.
    """
    attrs, node = g.attrs(i), g.nodes[i]
    where = f"node {g.name(i)!r} ({node.op_type})"
    kernel = attrs.get("kernel_shape", weight)
    if kernel is None:
        raise InputError(f"{where} has no kernel_shape", file=g.path)
    kernel = [int(k) for k in kernel]
    if len(kernel) != 2 or min(kernel) < 1:
        raise InputError(f"{where}: kernel {kernel}; mcdla maps 2-D windows only", file=g.path)
    if weight is not None and tuple(kernel) != tuple(weight):
        raise InputError(f"{where}: kernel_shape {kernel} differs from its weight's {list(weight)}", file=g.path)
    strides = [int(v) for v in attrs.get("strides", [1, 1])]
    if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
        raise InputError(f"{where}: dilations {list(attrs['dilations'])}; mcdla's windows are not dilated",
                         file=g.path)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # the output is ceil(input / stride)
        size = g.shape(g.dyn(i)[0])[2:]
        if len(size) != 2 or min(size) < 1:
            raise InputError(f"{where}: auto_pad {auto_pad} on an input of unknown size", file=g.path)
        total = [max((-(-n // s) - 1) * s + k - n, 0) for n, s, k in zip(size, strides, kernel)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad == "NOTSET":
        pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    else:
        raise InputError(f"{where}: unknown auto_pad {auto_pad!r}", file=g.path)
    if pads[:2] != pads[2:]:
        raise InputError(f"{where} has asymmetric padding {pads}; mcdla pads both sides alike", file=g.path)
    return {"kernel": _pair(kernel), "stride": _pair(strides), "padding": _pair(pads[:2])}


def _pair(values) -> int | list[int]:
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values
