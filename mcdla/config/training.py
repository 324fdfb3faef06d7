"""How one training iteration is run: the knobs of the training driver.

These are set with ``--set training.KEY=VALUE``; every field has a physical or
algorithmic meaning documented here, and the defaults are the paper's setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcdla.config.schema import PositiveInt, Size

__all__ = ["TrainingSpec"]


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
    - ``chunk``: the pipelining chunk of ring collectives; ``None`` uses the
      collectives' converged default.
    """

    virtualization: bool = True
    lookahead: PositiveInt = 1
    recompute_cheap: bool = True
    regather: bool = False
    chunk: Size | None = None
