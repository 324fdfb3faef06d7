"""The model state a device keeps for the whole iteration, per parameter.

Weights and gradients at the workload's precision; an fp32 master copy of the weights
when training in mixed precision (``master_weights``); the optimizer's state in fp32:
none (the paper's model: weights and gradients only), SGD (none), SGD with momentum
(one buffer) or Adam (two moments). Mixed-precision Adam is 2 + 2 + 4 + 4 + 4 = 16
bytes per parameter (ZeRO, Rajbhandari et al. 2020, Section 3.1); fp32 Adam also 16;
the paper's fp32 weights and gradients 8.
"""

from __future__ import annotations

import dataclasses

__all__ = ["OPTIMIZER_STATE_BYTES", "model_state_bytes", "step_bytes_per_param",
           "with_precision", "PRECISIONS", "optimizer_state_bytes"]

# fp32 optimizer state per parameter: SGD keeps none, momentum one buffer, Adam two.
OPTIMIZER_STATE_BYTES = {"none": 0, "sgd": 0, "momentum": 4, "adam": 8}
MASTER_BYTES = 4  # an fp32 copy of the weights


def _optimizer_bytes_per_param(workload) -> int:
    """The fp32 master (in mixed precision) and the optimizer state, per parameter."""
    return (MASTER_BYTES if workload.master_weights else 0) + OPTIMIZER_STATE_BYTES[workload.optimizer]


def model_state_bytes(workload, shards: int = 1, *, params: float | None = None, zero: int = 0,
                      dp: int = 1, offload_optimizer: bool = False) -> float:
    """Bytes of model state one device holds when the model is split ``shards`` ways
    (or when it holds ``params`` of it, after tensor parallelism), with ZeRO stage
    ``zero`` over a data-parallel group of ``dp`` (Rajbhandari et al. 2020, Fig. 1):
    stage 1 shards the optimizer state (and the fp32 master), stage 2 the gradients
    too, stage 3 the weights as well. ``offload_optimizer`` (ZeRO-Offload): the
    optimizer state and master live in the backing store (:func:`optimizer_state_bytes`)."""
    held, split = (workload.params, shards) if params is None else (params, 1)
    e = workload.precision_bytes
    optimizer = 0 if offload_optimizer else _optimizer_bytes_per_param(workload)
    unsharded, sharded = {0: (2 * e + optimizer, 0), 1: (2 * e, optimizer), 2: (e, e + optimizer),
                          3: (0, 2 * e + optimizer)}[zero]
    return float(held * unsharded + held * sharded / dp) / split


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
    return e + weights + 2 * OPTIMIZER_STATE_BYTES[workload.optimizer]


# training.precision -> (bytes per activation, weight and gradient element; fp32 master copy)
PRECISIONS = {"fp32": (4, False), "mixed": (2, True)}


def with_precision(workload, precision: str | None):
    """``workload`` trained at ``precision`` (``None``: as its file says)."""
    if precision is None:
        return workload
    element_bytes, master = PRECISIONS[precision]
    return dataclasses.replace(workload, precision_bytes=element_bytes, master_weights=master)


def optimizer_state_bytes(workload, params: float) -> float:
    """Bytes of fp32 master and optimizer state for ``params`` parameters: what
    ZeRO-Offload keeps in the backing store instead of the device."""
    return float(params * _optimizer_bytes_per_param(workload))
