"""The model state a device keeps for the whole iteration, per parameter.

Weights at the workload's precision, gradients at theirs (the workload's, or fp32 with
``training.grad_reduce_dtype: fp32``, Megatron-LM's fp32 main gradients under bf16
weights: 2 + 4 + 12 = 18 bytes per parameter with Adam, 6 + 12/d with its distributed
optimizer, Megatron-LM docs/user-guide/features/dist_optimizer.md); an fp32 master
copy of the weights when training in mixed precision (``master_weights``); the
optimizer's state in fp32: none (the paper's model: weights and gradients only), SGD
(none), SGD with momentum (one buffer) or Adam (two moments). Mixed-precision Adam
is 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter (ZeRO, Rajbhandari et al. 2020, Section
3.1); fp32 Adam also 16; the paper's fp32 weights and gradients 8.
"""

from __future__ import annotations

import dataclasses

from mcdla.errors import InputError
from mcdla.hw import fp8

__all__ = ["OPTIMIZER_STATE_BYTES", "model_state_bytes", "step_bytes_per_param", "optimizer_passes",
           "OPTIMIZER_PASSES", "with_precision", "PRECISIONS", "optimizer_state_bytes", "gradient_bytes"]

# fp32 optimizer state per parameter: SGD keeps none, momentum one buffer, Adam two.
OPTIMIZER_STATE_BYTES = {"none": 0, "sgd": 0, "momentum": 4, "adam": 8}
MASTER_BYTES = 4  # an fp32 copy of the weights


def _optimizer_bytes_per_param(workload) -> int:
    """The fp32 master (in mixed precision) and the optimizer state, per parameter."""
    return (MASTER_BYTES if workload.master_weights else 0) + OPTIMIZER_STATE_BYTES[workload.optimizer]


def model_state_bytes(workload, shards: int = 1, *, params: float | None = None, fp8_params: float = 0.0,
                      zero: int = 0, dp: int = 1, offload_optimizer: bool = False) -> float:
    """Bytes of model state one device holds when the model is split ``shards`` ways
    (or when it holds ``params`` of it, after tensor parallelism, ``fp8_params`` of them
    in FP8 layers: :func:`mcdla.hw.fp8.copied_params`), with ZeRO stage ``zero`` over a
    data-parallel group of ``dp`` (Rajbhandari et al. 2020, Fig. 1): stage 1 shards the
    optimizer state (and the fp32 master), stage 2 the gradients too, stage 3 the
    weights as well. ``offload_optimizer`` (ZeRO-Offload): the optimizer state and
    master live in the backing store (:func:`optimizer_state_bytes`)."""
    if params is None:
        held, split, copied = workload.params, shards, fp8.copied_params(workload, workload.weight_groups)
    else:
        held, split, copied = params, 1, fp8_params
    e = workload.precision_bytes
    g = workload.gradient_element_bytes
    optimizer = 0 if offload_optimizer else _optimizer_bytes_per_param(workload)
    unsharded, sharded = {0: (e + g + optimizer, 0), 1: (e + g, optimizer), 2: (e, g + optimizer),
                          3: (0, e + g + optimizer)}[zero]
    # In FP8 training TE's cached FP8 weight copies sit beside the weights (mcdla.hw.fp8),
    # sharded as they are.
    copies = fp8.WEIGHT_COPY_BYTES * copied
    near, far = (0, copies) if zero == 3 else (copies, 0)
    return float(held * unsharded + near + (held * sharded + far) / dp) / split


def updated_params(params: float, zero: int, dp: int) -> float:
    """The parameters one device's optimizer step updates: all it holds, or under any
    ZeRO stage its 1/dp shard of them (each rank steps its shard; Rajbhandari et al.
    2020, Section 5)."""
    return params / (dp if zero else 1)


# Bytes of HBM traffic per output byte of an element-wise reduction (a collective's sum
# of a received chunk into the local one): two operands read, one result written. The
# kernel is memory-bound, so the device reduces at its HBM bandwidth / 3.
REDUCTION_TRAFFIC_PER_BYTE = 3


def reduction_rate_Bps(device) -> float:
    """The rate a device sums collective data at, in output bytes per second."""
    return device.effective_hbm_bw_Bps / REDUCTION_TRAFFIC_PER_BYTE


def step_bytes_per_param(workload) -> int:
    """HBM bytes the optimizer step moves per parameter, as one memory-bound pass
    (a fused multi-tensor kernel, apex's FusedSGD/FusedAdam): it reads the gradient,
    reads and writes the weights it updates (the fp32 master copy, which then writes
    the low-precision weights, in mixed precision) and reads and writes its state.
    0 for no optimizer (the paper's model, which does not charge the step)."""
    if workload.optimizer == "none":
        return 0
    e = workload.precision_bytes
    weights = 2 * MASTER_BYTES + e if workload.master_weights else 2 * e
    return workload.gradient_element_bytes + weights + 2 * OPTIMIZER_STATE_BYTES[workload.optimizer]


# Apex's FusedAdam over fp32 master weights: reads the fp32 gradient, reads and writes
# the weight and both moments (apex csrc/multi_tensor_adam.cu).
_ADAM_FP32 = 4 + 2 * MASTER_BYTES + 2 * OPTIMIZER_STATE_BYTES["adam"]


def _megatron_fp16_2021(e: int) -> tuple[tuple[str, int, str], ...]:
    """Megatron-LM's fp16 step of April 2021 (commit a8d172b, the SC'21 rows' release):
    ``--DDP-impl local`` without contiguous buffers (off by default in fp16) flattens
    the fp16 gradients into one tensor, divides it by the data-parallel size and copies
    it back after the all-reduce (``megatron/model/distributed.py``,
    ``allreduce_gradients``); ``Float16OptimizerWithFloat16Params.step``
    (``megatron/optimizer/optimizer.py``) then copies the gradients to fp32
    (``main_grad.float()``), unscales them and checks for inf
    (``_amp_foreach_non_finite_check_and_unscale_``, the default dynamic loss scale),
    takes their L2 norm (``clip_grad_norm_fp32``: apex ``multi_tensor_l2norm``,
    ``--clip-grad`` 1.0), runs apex's FusedAdam and copies the fp32 weights into the
    fp16 ones (``multi_tensor_scale`` by 1.0). The clip's rescale of the gradients runs
    only when their norm exceeds 1.0 (data-dependent: not charged)."""
    return (("gradients flattened", 2 * e, "held"), ("gradients divided by dp", 2 * e, "held"),
            ("gradients unflattened", 2 * e, "held"), ("gradients to fp32", e + 4, "updated"),
            ("unscale and inf check", 8, "updated"), ("gradient norm", 4, "updated"),
            ("adam", _ADAM_FP32, "updated"), ("weights to fp16", 4 + e, "updated"))


def _megatron_core_2024(e: int) -> tuple[tuple[str, int, str], ...]:
    """Megatron-Core's BF16 step of July 2024 (commit fd5cfec) with the distributed
    optimizer: gradients accumulate in an fp32 buffer (``accumulate_allreduce_grads_in_fp32``
    is forced on for bf16, ``megatron/training/arguments.py``); before each bucket's
    reduce-scatter the whole bucket's norm is taken as a NaN check
    (``check_for_nan_in_grad``, on by default) and the bucket is scaled by 1/dp
    (``gradient_scaling_factor``, ``average_in_collective`` off), both over every
    gradient a device holds (``param_and_grad_buffer.py``, ``start_grad_sync``);
    ``DistributedOptimizer`` then, over its shard, takes the gradient norm, runs
    FusedAdam and copies the fp32 weights into the bf16 parameter buffer
    (``distrib_optimizer.py``); the fp32 gradient's ``.float()`` copies nothing and
    bf16 has no loss scale to unscale. mcdla charges the bucket passes with the step
    (in Megatron they run on the compute stream in backward, before each bucket's
    reduce-scatter); its gradients are fp32 (training.grad_reduce_dtype: fp32)."""
    return (("gradient NaN check (norm)", 4, "held"), ("gradients scaled by 1/dp", 8, "held"),
            ("gradient norm", 4, "updated"), ("adam", _ADAM_FP32, "updated"), ("weights to bf16", 4 + e, "updated"))


# training.optimizer_passes -> the passes of the optimizer step, by the workload's
# element bytes: (what the pass does, HBM bytes per parameter, over which parameters:
# "updated", those this device steps (its ZeRO shard), or "held", every gradient it holds).
OPTIMIZER_PASSES = {"megatron_fp16_2021": _megatron_fp16_2021, "megatron_core_2024": _megatron_core_2024}


def optimizer_passes(workload, impl: str = "fused", fp8_params: float = 0.0) -> tuple[tuple[str, int, str], ...]:
    """The optimizer step's memory-bound passes: ``fused``, one pass of
    :func:`step_bytes_per_param` (none with no optimizer); or a framework's, each pass
    its own kernel (:data:`OPTIMIZER_PASSES`), for Adam in mixed precision only. In FP8
    training TE's once-per-iteration cast of the FP8 weights follows, over the
    ``fp8_params`` FP8 weights the device holds ("fp8"; :func:`mcdla.hw.fp8.copied_params`;
    none where it holds none)."""
    casts = (("weights to fp8", fp8.WEIGHT_CAST_BYTES, "fp8"),) if fp8_params else ()
    return _step_passes(workload, impl) + casts


def _step_passes(workload, impl: str) -> tuple[tuple[str, int, str], ...]:
    """The optimizer's own passes (:func:`optimizer_passes`)."""
    if impl == "fused":
        per_param = step_bytes_per_param(workload)
        return (("step", per_param, "updated"),) if per_param else ()
    if workload.optimizer != "adam" or not workload.master_weights:
        raise InputError(f"{impl} runs Adam in mixed precision; set training.precision=mixed with an Adam "
                         f"workload, or training.optimizer_passes=fused", key="training.optimizer_passes")
    # Each framework's passes are those of its gradients' width: Megatron-Core's fp32
    # buffer (bf16 forces it), Megatron 2021's fp16 gradients.
    wanted = {"megatron_core_2024": 4, "megatron_fp16_2021": workload.precision_bytes}[impl]
    if workload.gradient_element_bytes != wanted:
        raise InputError(f"{impl} runs {'fp32' if wanted == 4 else 'the model precision'}'s gradients; set "
                         f"training.grad_reduce_dtype={'fp32' if wanted == 4 else 'model'}",
                         key="training.grad_reduce_dtype")
    return OPTIMIZER_PASSES[impl](workload.precision_bytes)


# training.precision -> (bytes per activation, weight and gradient element; fp32 master copy).
# fp8 keeps mixed precision's BF16 tensors and fp32 master: only the transformer's linear
# layers' GEMMs run on FP8 copies (mcdla.hw.fp8.with_fp8_linears).
PRECISIONS = {"fp32": (4, False), "mixed": (2, True), "fp8": (2, True)}

# training.grad_reduce_dtype -> the gradients' element bytes (None: the workload's precision)
GRAD_REDUCE_BYTES = {"model": None, "fp32": 4}


def with_precision(workload, precision: str | None, grad_reduce_dtype: str = "model"):
    """``workload`` trained at ``precision`` (``None``: as its file says), its
    gradients held and reduced as ``grad_reduce_dtype`` says."""
    if precision is not None:
        element_bytes, master = PRECISIONS[precision]
        workload = dataclasses.replace(workload, precision_bytes=element_bytes, master_weights=master)
        if precision == "fp8":
            workload = fp8.with_fp8_linears(workload)
    grad = GRAD_REDUCE_BYTES[grad_reduce_dtype]
    return workload if grad is None else dataclasses.replace(workload, grad_precision_bytes=grad)


def gradient_bytes(workload, weight_bytes: float) -> float:
    """The gradient of ``weight_bytes`` of weights, as a device holds and data
    parallelism reduces it: the same elements at the gradients' precision."""
    return weight_bytes * (workload.gradient_element_bytes / workload.precision_bytes)


def optimizer_state_bytes(workload, params: float) -> float:
    """Bytes of fp32 master and optimizer state for ``params`` parameters: what
    ZeRO-Offload keeps in the backing store instead of the device."""
    return float(params * _optimizer_bytes_per_param(workload))
