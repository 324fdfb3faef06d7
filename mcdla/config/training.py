"""How one training iteration is run: the knobs of the training driver.

These are set with ``--set training.KEY=VALUE``; every field has a physical or
algorithmic meaning documented here, and the defaults are the paper's setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from mcdla.config.hardware import AttentionKernel
from mcdla.config.schema import BlockSize, PositiveInt, Range

__all__ = ["TrainingSpec"]


# The most a compressing DMA engine can shrink a feature map: zero-value compression
# (ZVC of cDMA, Rhu et al. HPCA 2018) stores a 1-bit mask per element plus the
# non-zero values, so an all-zero map of 32-bit elements is 1/32 of its size.
MAX_COMPRESSION = 32.0

@dataclass(frozen=True)
class TrainingSpec:
    """Parameters of the training iteration and of memory virtualization.

    - ``virtualization``: offload every feature map after its last forward use and
      prefetch it back in backward (vDNN offload-all, the paper's stress policy).
      Off, every design keeps all feature maps in device memory (like the oracle).
    - ``lookahead``: how many layers ahead of the backward pass prefetches are issued
      (at least one, as vDNN does).
    - ``recompute_cheap``: recompute the outputs of cheap layers (activation, pooling,
      normalization, dropout, add, concat) in backward instead of moving them
      (MXNet's policy, paper footnote 4).
    - ``regather``: in model-parallel training a device holds only its 1/D shard of
      each feature map (docs/model.md), yet dW needs the whole input X. Off (the paper's and
      docs/model.md's collectives), that cost is not modeled; on, each weighted layer
      all-gathers its input again in backward before computing dW.
    - ``dx_reduction``: the collective that sums a tensor's partial dX in
      model-parallel training. ``reduce_scatter`` (default): each device receives only
      the shard of the sum it works on (docs/model.md says why). ``all_reduce``: every
      device receives the whole sum, as the paper's Fig. 4 names it ("all-reduce (dX
      and dW)"); twice the bytes, the second half dropped. A reading of the paper for
      the headline_sensitivity experiment; the paper presets keep the default.
    - ``chunk``: the pipelining chunk of ring collectives; ``None`` uses the
      collectives' converged default. A bare number (bytes) under 1 KiB is refused as a
      missing unit, for ``bucket`` too.
    - ``bucket``: gradient bucketing (PyTorch DDP's ``bucket_cap_mb``, 25 MiB there):
      weight groups' gradients join a bucket in the order backward finishes them, and
      a bucket is all-reduced once it holds at least this many bytes (the last one at
      the end of backward). ``None``, the paper's: one all-reduce per weight group.
    - ``precision``: ``fp32`` (4-byte activations, weights and gradients; fp32 math) or
      ``mixed`` (2-byte activations, weights and gradients on the tensor lanes, an fp32
      master copy of the weights and fp32 optimizer state) or ``fp8``: mixed precision
      with the transformer's linear layers in FP8 as Transformer Engine's hybrid recipe
      runs them under Megatron-Core (E4M3 forward, E5M2 gradients; cast-transpose
      kernels, cached FP8 weight copies: mcdla.hw.fp8), on a device with FP8 lanes only;
      ``None`` keeps the workload file's ``precision_bytes`` and ``master_weights``.
    - ``inplace``: element-wise layers frameworks run in place reuse their input's
      buffer when they are its only consumer: ReLU (``inplace=True``) and a residual
      add into its first input (``out += identity``). Off, the paper's: every layer's
      output is its own buffer.
    - ``fuse_bn_relu``: a batch norm followed by a ReLU runs as one kernel (cuDNN's
      fused BN+ReLU): one launch, and the intermediate tensor is neither written nor
      read back, forward and backward. Implies the ReLU runs in place.
    - ``fuse_dropout_add``: a residual add after a dropout runs in the dropout's
      kernel (Megatron-LM's bias-dropout-add fusion, on by default there), the same
      way. Implies the add runs in place.
    - ``compression``: the ratio by which a compressing DMA engine (cDMA, Rhu et al.
      HPCA 2018) shrinks every offloaded feature map on the links and in the backing
      store, by the zeros of its activations; 1, the paper's, is none. cDMA measured
      2.6 on average (13.8 at most) over the CNNs it studied (its abstract). At most
      :data:`MAX_COMPRESSION` = 32: cDMA's zero-value compression keeps one mask bit per
      element, so even an all-zero map of 32-bit values shrinks at most 32 times (a
      ratio of 1e9 would make an offload free).
    - ``micro_batches``: each replica's share of the batch runs as this many
      micro-batches, whose gradients accumulate before one reduction: through the
      pipeline stages, or, without pipeline parallelism, gradient accumulation.
    - ``schedule``: the order of the micro-batches' passes (mcdla.sim.schedule):
      ``1f1b`` (PipeDream-Flush, Megatron's default; without stages, a forward and a
      backward per micro-batch), ``gpipe`` (every forward, then every backward) or
      ``interleaved`` (Megatron's interleaved 1F1B, Narayanan et al. SC'21, over
      ``virtual_stages`` chunks per stage).
    - ``virtual_stages``: with the ``interleaved`` schedule, the chunks of layers each
      pipeline stage holds (Megatron's ``--num-layers-per-virtual-pipeline-stage``
      expressed as chunks per stage); 1 otherwise.
    - ``checkpoint``: activation checkpointing. ``none``, the paper's: every feature
      map backward reads is stored (kept or offloaded). ``full``: only each block
      instance's input is stored and the block reruns whole before its backward, its
      tensor-parallel collectives too (Megatron's full recomputation); ``selective``: only attention
      cores are recomputed (Megatron's selective recomputation). Recomputes are
      charged to compute; a recomputed map is never offloaded.
    - ``optimizer_passes``: the optimizer step's passes over HBM (mcdla.hw.memory).
      ``fused``: one fused kernel (apex's FusedAdam reading the gradient and writing the
      weights it updates). ``megatron_fp16_2021``: Megatron-LM's fp16 optimizer of 2021
      (local DDP's flatten, divide and copy-back; gradients to fp32, unscale and inf
      check, gradient norm, Adam, weights to fp16, each its own kernel);
      ``megatron_core_2024``: Megatron-Core's BF16 distributed optimizer of 2024 (the
      fp32 gradient buckets' NaN-check norm and 1/dp scaling; gradient norm, Adam,
      weights to bf16 over the shard). Both need Adam in mixed precision.
    - ``norm_kernel``: the layer-norm kernels' speed. ``stream``: at the device's stream
      rate, as every memory-bound kernel; ``apex_2021``: apex's affine LayerNorm as
      Megatron-LM built it in 2021, whose backward attains 0.712 of it (NVIDIA/apex PR
      1037's A100 measurement; mcdla.hw.ew_traffic.KERNEL_STREAM).
    - ``attention_kernel``: the fused attention kernel (``workload.flash``) a run uses:
      ``flash2`` (FlashAttention-2), ``flash3`` (FlashAttention-3) or ``cudnn`` (cuDNN's
      fused attention, Transformer Engine's FusedAttention), at the rates the device
      measured for it (mcdla.config.hardware.AttentionKernel); ``None``, the device's
      default kernel. A kernel the device has no rates for is refused.
    - ``grad_reduce_dtype``: the gradients' element type as the device holds and
      data parallelism reduces them (mcdla.hw.memory). ``model``: the workload's
      precision. ``fp32``: 4 bytes a gradient, as Megatron-LM forces for bf16
      (``accumulate_allreduce_grads_in_fp32``, ``megatron/training/arguments.py``; the
      fp32 main-gradient buffer of Megatron-Core's DDP, ``grad_reduce_in_fp32``): the
      gradient all-reduce or reduce-scatter (and its buckets) carries 4 bytes an element
      and the buffer holds 4 bytes a parameter; the weights' all-gathers stay at the
      workload's precision. Not with ZeRO-Offload (its tiers keep the gradients at the
      workload's precision).
    """

    virtualization: bool = True
    lookahead: PositiveInt = 1
    recompute_cheap: bool = True
    regather: bool = False
    dx_reduction: Literal["reduce_scatter", "all_reduce"] = "reduce_scatter"
    chunk: BlockSize | None = None
    bucket: BlockSize | None = None
    precision: Literal["fp32", "mixed", "fp8"] | None = None
    inplace: bool = False
    fuse_bn_relu: bool = False
    fuse_dropout_add: bool = False
    compression: Annotated[float, Range(minimum=1.0, maximum=MAX_COMPRESSION)] = 1.0
    micro_batches: PositiveInt = 1
    schedule: Literal["1f1b", "gpipe", "interleaved"] = "1f1b"
    virtual_stages: PositiveInt = 1
    checkpoint: Literal["none", "full", "selective"] = "none"
    optimizer_passes: Literal["fused", "megatron_fp16_2021", "megatron_core_2024"] = "fused"
    norm_kernel: Literal["stream", "apex_2021"] = "stream"
    grad_reduce_dtype: Literal["model", "fp32"] = "model"
    attention_kernel: AttentionKernel | None = None
