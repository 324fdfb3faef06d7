"""FP8 training as Transformer Engine's hybrid recipe runs it under Megatron-Core
(``training.precision: fp8``; docs/model.md, "FP8 training").

Megatron-Core's ``--fp8-format hybrid`` (``TransformerConfig.fp8``: E4M3 for weights and
activations, E5M2 for the output gradients; ``fp8_recipe`` "delayed" by default,
``megatron/core/transformer/transformer_config.py``, Megatron-LM d98e8a6) runs the
transformer blocks' linear layers through Transformer Engine (QKV and FC1 as
``TELayerNormColumnParallelLinear``, the attention projection and FC2 as
``TERowParallelLinear``, an MoE's experts as ``TEGroupedLinear``). Read from TE
2.20.0.dev0 (commit d0067d0), ``transformer_engine/pytorch/module/linear.py`` and
``layernorm_linear.py``:

- forward, each such GEMM runs on FP8 operands (the weights and its input) and writes
  BF16; its input is quantized once, rowwise for the GEMM and columnwise (transposed)
  for the weight gradient, in one fused cast-transpose kernel
  (``input_quantizer.set_usage(rowwise=True, columnwise=backward_needs_input)``), or,
  after a norm (LayerNormLinear), by the norm kernel itself
  (``with_quantized_norm``: the norm writes FP8, so no extra pass);
- the weights are quantized (rowwise and columnwise) on a step's first micro-batch
  only and the FP8 copies cached (``update_ws = is_first_microbatch is None or
  is_first_microbatch``, ``cache_name = "weight"``; Megatron-Core passes
  ``is_first_microbatch``, ``megatron/core/extensions/transformer_engine.py``, and
  sets it on each step's first micro-batch, ``pipeline_parallel/schedules.py``): one
  cast of every FP8 weight per iteration, and both copies stay resident;
- backward, the output gradient is quantized (E5M2) rowwise and columnwise in one
  cast-transpose pass; dgrad (FP8 weights x FP8 gradient) and wgrad (FP8 gradient x
  the saved FP8 input) both run on the FP8 lanes;
- the vocabulary projection (Megatron's own ``ColumnParallelLinear``) and an MoE's
  router stay BF16, as do attention's BMMs (``fp8_dpa`` off by default, TE
  ``common/recipe/__init__.py``); the gradients' reduction stays as the run sets it
  (bf16, or fp32 with ``training.grad_reduce_dtype``).

The kernels themselves are :func:`mcdla.hw.layers.fp8_cast` and
:func:`mcdla.hw.layers.on_fp8_lanes` (serving's FP8 GEMMs use them too); a layer's
``fp8`` field says it runs them. The FP8 weights a device holds are
:func:`copied_params`: their copies in :func:`mcdla.hw.memory.model_state_bytes`, their
cast in :func:`mcdla.hw.memory.optimizer_passes`; the saved FP8 inputs are in the
driver's plan (``mcdla.sim.plan.element_bytes``), the FP8 sequence-parallel gathers in
``mcdla.sim.tensor.before_forward``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from mcdla.errors import InputError
from mcdla.hw.layers import LM_HEAD, readers

__all__ = ["FP8_BYTES", "with_fp8_linears", "copied_params", "require_fp8_lanes", "WEIGHT_COPY_BYTES",
           "WEIGHT_CAST_BYTES", "BF16_LINEARS"]

# An FP8 element (E4M3 or E5M2).
FP8_BYTES = 1
# The FP8 copies TE caches of each FP8 weight: rowwise for the forward GEMM and
# columnwise (its transpose) for dgrad, one byte an element each (Hopper's FP8 GEMMs
# take only the TN layout, so both are materialized; linear.py ``weight_quantizer.set_usage``).
WEIGHT_COPY_BYTES = 2
# The once-per-iteration weight cast: reads the BF16 weight, writes both FP8 copies.
WEIGHT_CAST_BYTES = 2 + WEIGHT_COPY_BYTES
# Linear layers Megatron does not run through TE: the vocabulary projection
# (GPTModel.output_layer, tensor_parallel.ColumnParallelLinear) and the MoE router
# (TopKRouter, its own weight in a torch GEMM). Names as mcdla's templates give them.
BF16_LINEARS = (LM_HEAD, "router")
# Norm kinds whose kernel quantizes its output for the linear layer after it (TE's
# LayerNormLinear: layer norm and RMSNorm).
_NORMS = ("layernorm", "rmsnorm")


def with_fp8_linears(workload):
    """``workload`` with its transformer linear layers marked to run in FP8: ``fp8`` is
    ``"norm"`` where a norm read only by it quantizes its input (LayerNormLinear),
    ``"cast"`` where its own cast-transpose kernel does (see the module docstring)."""
    layers = workload.layers
    read_by = readers(layers)

    def mode(layer):
        producer = layers[layer.inputs[0]] if len(layer.inputs) == 1 else None
        fed_by_norm = producer is not None and producer.kind in _NORMS and read_by[layer.inputs[0]] == 1
        return "norm" if fed_by_norm else "cast"

    # A block's layers are named "blocks/router", "blocks.N/router": the last part decides.
    marked = tuple(dataclasses.replace(l, fp8=mode(l)) if l.kind == "linear" and l.weighted
                   and l.name.rpartition("/")[2] not in BF16_LINEARS else l for l in layers)
    return dataclasses.replace(workload, layers=marked)


def copied_params(workload, group_params: Mapping[str, float]) -> float:
    """Of the parameters a device holds (``group_params``: weight group -> its part of
    it), those TE keeps FP8 copies of and casts once an iteration: the FP8 layers' share
    of each group it holds. So a pipeline stage counts its own blocks' linear layers and
    no embedding, head or router; a tensor-parallel rank its shards of them and not its
    replicated norms; an expert-parallel rank its 1/e of each expert bank."""
    shares = workload.fp8_groups
    return sum(n * shares[g] for g, n in group_params.items() if g in shares)


def require_fp8_lanes(device, name: str) -> None:
    """Refuses ``training.precision: fp8`` on a device without FP8 tensor lanes (A100,
    V100, the paper's PE array): its FP8 GEMMs would have no rate."""
    if device.fp8_macs_per_pe is None:
        raise InputError(f"{name} has no FP8 tensor lanes (device.fp8_macs_per_pe); "
                         "train it with training.precision=mixed", key="training.precision")
