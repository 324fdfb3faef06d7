"""In-place element-wise layers and fused BatchNorm+ReLU: a workload rewritten as
frameworks run it (``training.inplace``, ``training.fuse_bn_relu``).

A layer that runs in place writes its output over its input's buffer, so the two are
one feature map: here the layer is merged into its producer, whose buffer then holds
the merged output, and consumers read the merged layer. Frameworks do this for

- ReLU (PyTorch ``inplace=True``): its backward needs only its output (the mask is
  ``y > 0``), so the merged layer's backward reads its own output, besides what the
  producer's backward reads;
- a residual add into its first input (torchvision's ``out += identity``), whose
  backward reads nothing.

Either runs in place only when its input has no other consumer and is not the input
batch: overwriting a tensor someone else still reads is a wrong gradient, which a
framework refuses. A producer's backward must not need its own output (no layer here
does, except a merged ReLU, whose output is the merged buffer itself).

With ``fuse_bn_relu``, a ReLU right after a batch norm runs in the batch norm's kernel
(cuDNN's fused BN+ReLU), forward and backward: one launch and the tensor between them
is never written and read back (:meth:`mcdla.hw.layers.Layer.kernels`). With
``fuse_dropout_add``, a residual add whose first input is a dropout runs in the
dropout's kernel the same way (Megatron-LM's bias-dropout-add fusion,
``--bias-dropout-fusion``, on by default: ``residual + dropout(x + bias)`` in one
kernel; the bias is the linear layer's, charged with its GEMM).
"""

from __future__ import annotations

import dataclasses

from mcdla.hw.layers import NO_INPUT_NEEDED, Layer, Workload, readers

__all__ = ["inplace_workload"]


def _merges(layers, inplace: bool, fuse_bn_relu: bool, fuse_dropout_add: bool = False) -> dict[int, tuple[int, bool]]:
    """Layer -> (the layer whose buffer it writes into, fused into its kernel)."""
    consumers = readers(layers)
    merges: dict[int, tuple[int, bool]] = {}
    for i, layer in enumerate(layers):
        if not layer.inputs or layer.kind not in ("relu", "add"):
            continue
        p = layer.inputs[0]
        if p == 0 or consumers[p] != 1:
            continue
        fuse = ((fuse_bn_relu and layer.kind == "relu" and layers[p].kind == "batchnorm")
                or (fuse_dropout_add and layer.kind == "add" and layers[p].kind == "dropout"))
        if inplace or fuse:
            merges[i] = (p, fuse)
    return merges


def inplace_workload(workload: Workload, *, inplace: bool, fuse_bn_relu: bool,
                     fuse_dropout_add: bool = False) -> Workload:
    """``workload`` with its in-place layers merged into their producers."""
    if not (inplace or fuse_bn_relu or fuse_dropout_add):
        return workload
    layers = workload.layers
    merges = _merges(layers, inplace, fuse_bn_relu, fuse_dropout_add)
    if not merges:
        return workload
    root = list(range(len(layers)))  # layer -> the layer whose buffer holds its output
    parts: dict[int, list[int]] = {}
    for i in range(len(layers)):
        if i in merges:
            root[i] = root[merges[i][0]]
            parts.setdefault(root[i], []).append(i)
    index: dict[int, int] = {}  # old root index -> new index
    for i in range(len(layers)):
        if root[i] == i:
            index[i] = len(index)
    new_of = [index[root[i]] for i in range(len(layers))]
    merged: list[Layer] = []
    for i, layer in enumerate(layers):
        if root[i] != i:
            continue
        chain = [layer] + [layers[j] for j in parts.get(i, ())]
        members = {i, *parts.get(i, ())}
        inputs = list(dict.fromkeys(new_of[p] for p in layer.inputs))
        for j in parts.get(i, ()):
            inputs += [new_of[p] for p in layers[j].inputs if p not in members and new_of[p] not in inputs]
        if len(chain) == 1:
            merged.append(dataclasses.replace(layer, inputs=tuple(inputs)))
            continue
        # Backward reads what the producer's backward reads, and the merged buffer
        # when a ReLU's mask lives in it (an add reads nothing).
        reads = [] if layer.kind in NO_INPUT_NEEDED else [new_of[p] for p in layer.inputs]
        if any(layers[j].kind == "relu" for j in parts[i]):
            reads.append(index[i])
        last = chain[-1]
        merged.append(dataclasses.replace(
            layer, name="+".join(l.name for l in chain), inputs=tuple(inputs),
            cheap=all(l.cheap for l in chain), out_elems_per_sample=last.out_elems_per_sample,
            out_shape=last.out_shape, fused=tuple(chain[1:]),
            fuse_with_prev=tuple(merges[j][1] for j in parts[i]), bwd_reads=tuple(dict.fromkeys(reads))))
    names = {l.name: n for n, l in enumerate(merged)}
    return dataclasses.replace(workload, layers=tuple(merged), index=names)
