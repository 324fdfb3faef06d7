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

from mcdla.config.point import Batch, Parallel, Policy
from mcdla.config.schema import PositiveInt, Where
from mcdla.config.training import TrainingSpec

__all__ = ["ExecutionSpec", "EXECUTION_KEYS"]


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
    - ``tensor_parallel``, ``pipeline_parallel``: degrees of tensor and pipeline
      parallelism; the data-parallel degree is the devices over their product. Only 1
      runs today (the paper's modes); larger degrees are refused as not yet built.
    """

    parallel: Parallel = "data"
    batch: Batch = 512
    policy: Policy = "bw_aware"
    offload: str = "offload_all"
    collective: str = "ring"
    tensor_parallel: PositiveInt = 1
    pipeline_parallel: PositiveInt = 1
    training: TrainingSpec = field(default_factory=TrainingSpec)

    def __post_init__(self) -> None:
        for key in ("tensor_parallel", "pipeline_parallel"):
            if getattr(self, key) != 1:
                raise Where("execution", key).error(
                    "degrees above 1 are not built yet; the paper's data- and model-parallel "
                    "modes run with 1")


# The keys --set execution.KEY may name (training options go through training.KEY).
EXECUTION_KEYS = ("offload", "collective", "tensor_parallel", "pipeline_parallel")
