"""Element-wise traffic of the cheap layer kinds (:mod:`mcdla.hw.layers`).

A table of data, apart so that layers.py stays small: which tensors each cheap kind
reads and writes per sample, forward and backward.
"""

from __future__ import annotations

__all__ = ["EW_TRAFFIC"]

# Element-wise traffic, per sample, as (forward, backward) in units of the layer's
# total input elements I and output elements O. Why these tensors:
# relu/dropout backward read dY and the mask (Y or the dropout bits, one tensor) and
# write dX; max-pool backward re-reads X to find each window's argmax; batch norm makes
# two passes (statistics, then normalize) forward and two backward (the dgamma/dbeta
# reductions read dY and X, then dX reads them again); LRN backward needs X, Y, dY;
# add and concat copy (a framework could alias them; we charge the copy).
EW_TRAFFIC: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    #            fwd (I, O)  bwd (I, O)
    "relu": ((1, 1), (1, 2)),
    "dropout": ((1, 1), (1, 2)),
    "maxpool": ((1, 1), (2, 1)),
    "avgpool": ((1, 1), (1, 1)),
    "lrn": ((1, 1), (2, 2)),
    "batchnorm": ((2, 1), (3, 2)),
    "concat": ((1, 1), (1, 1)),
    "add": ((1, 1), (1, 1)),
    "softmax": ((1, 1), (1, 1)),
    # Transformer kinds. An embedding gathers O elements of its table (reads them,
    # writes Y) and backward scatter-adds dY into dW (reads dY, reads and writes the
    # rows); a learned position table is added to X (reads X and the rows, writes Y;
    # backward passes dY to dX and accumulates the rows); layer and RMS norm make the
    # passes batch norm does; GELU and SiLU backward read X and dY and write dX;
    # SwiGLU reads both halves (I) and writes O, backward reads I and dY, writes dX;
    # cross-entropy over the vocabulary: below.
    "embedding": ((1, 2), (0, 3)),
    "position": ((1, 2), (1, 3)),
    "layernorm": ((2, 1), (3, 2)),
    "rmsnorm": ((2, 1), (3, 2)),
    "gelu": ((1, 1), (2, 1)),
    "silu": ((1, 1), (2, 1)),
    "swiglu": ((1, 1), (2, 1)),
    # Cross-entropy as Megatron-LM computes it, unfused and in fp32 (2021: gpt_model.py
    # passes output.float() to mpu/cross_entropy.py, commit a8d172b; 2024: the same
    # passes in megatron/core/tensor_parallel/cross_entropy.py), in units of
    # the layer's 16-bit elements (an fp32 tensor is 2): forward casts (reads 1, writes
    # 2), takes the max (reads 2), subtracts it, exponentiates and divides by the sum in
    # place (each reads 2, writes 2) and sums (reads 2); backward scales the kept
    # softmax by dY in place (reads 2, writes 2) and casts the gradient back (reads 2,
    # writes 1). The one-hot correction touches a row's target only.
    "cross_entropy": ((11, 8), (4, 3)),
    # Any other element-wise operator (sigmoid, tanh, an imported op priced by its
    # bytes): reads X, writes Y; backward reads X and dY, writes dX.
    "elementwise": ((1, 1), (2, 1)),
    # MoE routing (mcdla.hw.moe). Dispatch gathers the tokens into expert slots (reads
    # the tokens and scores, writes the slots); backward scatters dY back (reads the slot
    # gradients, writes dX, about the input's size). Combine reads the slots and gates,
    # writes the tokens; backward also re-reads the slots for the gates' gradient.
    "moe_dispatch": ((1, 1), (1, 1)),
    "moe_combine": ((1, 1), (2, 1)),
}
