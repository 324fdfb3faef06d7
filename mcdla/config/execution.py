"""How a run executes: the third input of a run, beside the hardware (the topology) and
the workload.

One validated spec holds the parallel mode and degrees, the global batch, the
strategies by name (placement, offload, collective algorithm: each a registry), and
the training options (:class:`~mcdla.config.training.TrainingSpec`). ``mcdla sim``'s
options and ``--set execution.KEY`` / ``--set training.KEY`` fill it; sweeps fill it
from a point's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from mcdla.config.point import Batch, Parallel, Policy
from mcdla.config.schema import PositiveInt, Range
from mcdla.config.axes import check_axes, refuse as _refuse
from mcdla.config.training import TrainingSpec

__all__ = ["ExecutionSpec", "EXECUTION_KEYS", "PlaceSpec", "TIER_KINDS"]

# Where state may live: the device's HBM or a memory tier (mcdla.hw.tiers), tiers nearest first.
Placement = Literal["hbm", "memory_node", "cxl", "host", "nvme"]
TIER_KINDS = get_args(Placement)[1:]


@dataclass(frozen=True)
class PlaceSpec:
    """Which memory holds each kind of state (``execution.place.KEY``): ``hbm`` or a
    tier kind; unset (None), as the flags say (mcdla.hw.tiers.state_tier).

    - ``activations``: the feature maps the offload policy sends away;
    - ``optimizer``: the fp32 master and optimizer state (ZeRO-Offload), implies
      ``offload_optimizer``;
    - ``params``: the weights' shard and their gradients (ZeRO-Infinity), implies
      ``offload_params``; they live where the optimizer state does;
    - ``kv``: the KV cache of a serving run.
    """

    activations: Placement | None = None
    optimizer: Placement | None = None
    params: Placement | None = None
    kv: Placement | None = None


@dataclass(frozen=True)
class ExecutionSpec:
    """The execution of one iteration.

    - ``parallel``: ``data`` (each device the whole model, batch/D samples) or ``model``
      (each device 1/D of every layer, the whole batch), the paper's two modes.
    - ``batch``: the global batch (samples; sequences for sequence models).
    - ``policy``: the placement policy of offloaded pages (mcdla.config.placement).
    - ``offload``: the offload policy, which feature maps leave the device
      (mcdla.sim.offload; ``offload_all`` is the paper's vDNN stress policy,
      ``capacity_aware`` offloads only what the device's memory cannot hold).
    - ``collective``: the collective algorithm (mcdla.sim.collectives; ``ring``).
    - ``tensor_parallel``: the tensor-parallel degree t (Megatron-style, data mode
      only): groups of t consecutive devices split every GEMM, attention and
      per-feature layer (mcdla.hw.parallelism); the data-parallel degree is the
      devices over t (and p). ``pipeline_parallel``: p stages of consecutive layers
      (mcdla.sim.pipeline; ``training.micro_batches``, ``training.schedule``).
    - ``zero``: the ZeRO stage over the data-parallel group (data mode only): 1 shards
      the optimizer state, 2 the gradients too (reduce-scatter instead of all-reduce),
      3 the weights as well (gathered one layer ahead in forward and backward).
    - ``offload_optimizer``: ZeRO-Offload (Ren et al. 2021): the fp32 master and the
      optimizer state live in the backing store; each iteration the gradients go there
      and the step runs where the state lives: on the host CPU at its DRAM bandwidth
      (then the updated weights come back), or, behind memory-nodes that have no
      processor, on the device after fetching the state (then it goes back).
    - ``offload_params``: ZeRO-Infinity (Rajbhandari et al. 2021) with stage 3 and
      ZeRO-Offload: the device's shard of the fp16 weights and gradients lives in the
      backing store as well; each weight group's shard is fetched before its all-gather
      (one group ahead, beside the compute), each reduced gradient shard goes back.
    - ``rank_order``: the device each rank runs on, as device names separated by
      commas (a permutation of the topology's devices); default the topology's order.
      Ranks are grouped as Megatron-LM groups them: tensor groups of t consecutive
      ranks, then data-parallel replicas, then pipeline stages. A run with tensor or
      pipeline parallelism reports its groups (``groups`` in the result).
    - ``sequence_parallel``: Megatron-LM's sequence parallelism over the tensor group
      (Korthikanti et al. 2022): the tensors between blocks and the per-token layers
      (norms, residual adds, dropout) are split over the tokens; each all-reduce becomes
      a reduce-scatter and an all-gather (the same bytes), and activations shrink.
    - ``tp_comm_overlap``: Megatron-Core's ``--tp-comm-overlap`` (Transformer Engine's
      userbuffers): each layer's sequence-parallel all-gather and reduce-scatter run
      beside the layer's own kernel, split in chunks, instead of before or after it
      (mcdla.sim.tensor.overlapped; docs/model.md). Needs ``sequence_parallel``, as
      Megatron-Core does.
    - ``expert_parallel``: the expert-parallel degree e (mcdla.sim.expert): each MoE
      layer's routed experts are spread over groups of e ranks formed inside the
      data-parallel dimension (Megatron-Core's order; dp a multiple of e), each rank
      holding E/e of them; tokens go to their experts and back by all-to-alls over the
      group; the experts' gradients are reduced over the expert-data-parallel group
      (dp/e ranks), the rest over dp. ``expert_skew``: the share of every rank's routed
      tokens bound for the hottest rank's experts (deterministic; None: uniform, 1/e),
      which makes the all-to-alls unequal (all_to_allv) and the hot rank's expert
      compute larger. ``expert_offload``: the routed experts' weights (with
      ``offload_optimizer``, which puts their optimizer state there too) live in the
      backing store; each expert bank's weights are fetched one bank ahead of its
      forward and again of its backward, and its reduced gradient is written back, as
      expert-offloading systems do, instead of keeping them in device memory.
      ``expert_tensor_parallel``: the expert-tensor degree et (Megatron-Core's
      ``--expert-tensor-parallel-size``; None: the tensor degree): the routed experts'
      GEMMs split over et ranks instead of the tensor group's t, their collectives over
      the expert-tensor group; et divides t (1: each expert whole on a rank), and
      below t needs ``sequence_parallel`` (as Megatron-Core does).
    - ``exact``: simulate every rank. By default ranks that rank symmetry shows to be
      equivalent (mcdla.hw.symmetry) are simulated once each and stand for their class,
      which gives the same results (to float rounding) at a cost that grows with the
      classes; ``exact`` is the check of that, and the way to time the full simulation.
    """

    parallel: Parallel = "data"
    batch: Batch = 512
    policy: Policy = "bw_aware"
    offload: str = "offload_all"
    collective: str = "ring"
    tensor_parallel: PositiveInt = 1
    pipeline_parallel: PositiveInt = 1
    zero: Literal[0, 1, 2, 3] = 0
    offload_optimizer: bool = False
    rank_order: str | None = None
    sequence_parallel: bool = False
    tp_comm_overlap: bool = False
    offload_params: bool = False
    exact: bool = False
    expert_parallel: PositiveInt = 1
    expert_skew: Annotated[float, Range(minimum=0.0, maximum=1.0)] | None = None
    expert_offload: bool = False
    expert_tensor_parallel: PositiveInt | None = None
    training: TrainingSpec = field(default_factory=TrainingSpec)
    place: PlaceSpec = field(default_factory=PlaceSpec)

    def __post_init__(self) -> None:
        self._place_flags()
        if self.offload_optimizer and self.training.grad_reduce_dtype != "model":
            # ZeRO-Offload's tiers take the gradients at the workload's precision.
            raise _refuse("training.grad_reduce_dtype", "fp32 gradients are Megatron's, not ZeRO-Offload's: "
                          "drop execution.offload_optimizer or set training.grad_reduce_dtype=model")
        check_axes(self)  # each parallel axis's own rules (mcdla.config.axes)

    def _place_flags(self) -> None:
        """A tier named for the optimizer state or the weights turns on the offload that
        puts them there (the flags are the placements' shorthand); hbm with the flag on
        contradicts it."""
        place = self.place
        for state, flag in (("optimizer", "offload_optimizer"), ("params", "offload_params")):
            named = getattr(place, state)
            if named == "hbm" and getattr(self, flag):
                raise _refuse(f"execution.place.{state}", f"hbm keeps it on the device, but execution.{flag} "
                              "is true: drop one of them")
            if named not in (None, "hbm"):
                object.__setattr__(self, flag, True)  # frozen: the normalized spec is what every reader sees
        if place.params not in (None, "hbm"):
            object.__setattr__(self, "offload_optimizer", True)  # ZeRO-Infinity offloads the optimizer too
        if self.offload_params and None not in (place.optimizer, place.params) and place.optimizer != place.params:
            raise _refuse("execution.place.params", f"the weights and gradients live where the optimizer state "
                          f"is (its step reads both): set execution.place.optimizer={place.params} too")


# The keys --set execution.KEY may name (training options go through training.KEY).
EXECUTION_KEYS = ("offload", "collective", "tensor_parallel", "pipeline_parallel", "zero", "offload_optimizer",
                  "rank_order", "sequence_parallel", "tp_comm_overlap", "offload_params", "exact", "place", "expert_parallel",
                  "expert_skew", "expert_offload", "expert_tensor_parallel")
