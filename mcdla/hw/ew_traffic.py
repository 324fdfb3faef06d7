"""Element-wise traffic of the cheap layer kinds (:mod:`mcdla.hw.layers`).

A table of data, apart so that layers.py stays small: which tensors each cheap kind
reads and writes per sample, forward and backward.
"""

from __future__ import annotations

import dataclasses

__all__ = ["EW_TRAFFIC", "KERNEL_STREAM", "with_norm_kernel"]

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


# A framework's kernels that stream their traffic (above) slower than a stream
# benchmark: training.norm_kernel -> layer kind -> (fwd, bwd) fraction of the device's
# stream rate (hbm_bw x hbm_efficiency) they attain. "apex_2021": apex's affine
# LayerNorm (csrc/layer_norm_cuda_kernel.cu), which Megatron-LM of 2021 built as its
# fused layer norm (megatron/fused_kernels/layer_norm_cuda_kernel.cu, "copied from
# NVIDIA apex", commit a8d172b). NVIDIA/apex PR 1037 (January 2021) timed it on an A100
# over 16.8M fp16 elements (32 x 512 x 1024): forward 75.1 us, backward 176.2 us. Its
# backward's three kernels read dY and X twice and write dX (five tensors, 167.8 MB):
# less mcdla's fixed cost of a kernel on the a100_sxm4_40gb preset (5 us launch + 400
# cycles at 1.41 GHz), 167.8 MB in 170.9 us is 982 GB/s, 0.712 of that card's stream
# rate (1,555 GB/s x 0.886). Its forward (three tensors: X read twice, Y written) takes
# 78 us at the full stream rate in mcdla, within 4% of the 75.1 us: 1.
KERNEL_STREAM: dict[str, dict[str, tuple[float, float]]] = {
    "stream": {},
    "apex_2021": {"layernorm": (1.0, 0.712)},
}


def with_norm_kernel(workload, kernel: str):
    """``workload`` with its layers' kernels as ``kernel`` (training.norm_kernel) runs them."""
    rates = KERNEL_STREAM[kernel]
    if not rates:
        return workload
    layers = tuple(dataclasses.replace(l, stream=rates[l.kind]) if l.kind in rates else l for l in workload.layers)
    return dataclasses.replace(workload, layers=layers)
