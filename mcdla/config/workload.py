"""The workload file format, and :func:`load_workload` that turns one into a DAG.

A workload file (``workloads/*.yaml``) describes a network by its layers' shape
parameters: this module is its schema; :mod:`mcdla.hw.workload` builds it, and
:mod:`mcdla.hw.layers` infers every shape, parameter count and MAC count.
The format, in full (docs/workloads.md has examples)::

    name: resnet34                 # required
    description: ...               # optional
    precision_bytes: 4             # bytes per element (fp32), default 4
    hidden: 1024                   # optional variables, referred to as "$hidden"
    timesteps: 25                  #   and "$timesteps" anywhere below
    input: {channels: 3, height: 224, width: 224}      # an image, or
    input: {timesteps: $timesteps, features: $hidden}  # a sequence
    defaults:                      # optional per-kind default keys
      conv: {bias: false}
    blocks:                        # optional named templates
      basic:
        args: [channels, stride]   # "$channels", "$stride" inside the block
        layers: [...]              # layer entries; "in" names the block's input
    layers:                        # entries, in topological order:
      - {kind: conv, name: conv1, out_channels: 64, kernel: 7, stride: 2, padding: 3}
      - {kind: add, inputs: [a, b]}           # inputs: names of earlier layers
      - {block: basic, name: layer1, repeat: 3, args: {channels: 64, stride: 1}}

A layer entry has ``kind``, an optional ``name`` (default: kind and index) and
optional ``inputs`` (default: the previous entry; a block instance's name stands for
its last layer) plus the shape keys of its kind (the ``*Spec`` classes below). A block
entry instantiates a template ``repeat`` times in a chain; its layers are named
``INSTANCE/LAYER`` (``INSTANCE.R/LAYER`` when repeated). A recurrent entry (rnn, lstm,
gru) reads a sequence and is unrolled into one layer per timestep, ``NAME/tT``.

Every key is checked: an unknown key or kind, a missing key, a non-positive size or a
reference to a layer that does not exist raises InputError naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcdla.config.schema import Label, NonNegativeInt, PositiveFloat, PositiveInt, Range, Where

# Limits on what a few YAML lines may ask for (each layer is simulated per device):
# the largest shipped network unrolls to a few thousand layers.
MAX_LAYERS = 50_000
MAX_REPEAT = 10_000
MAX_TIMESTEPS = 10_000

__all__ = ["SPECS", "WorkloadDoc", "MAX_LAYERS", "MAX_REPEAT", "MAX_TIMESTEPS"]

Pair = PositiveInt | tuple[PositiveInt, PositiveInt]
Padding = NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt]


@dataclass(frozen=True)
class InputDoc:
    """The data layer: an image (channels, height, width) or a sequence of vectors."""

    channels: PositiveInt | None = None
    height: PositiveInt | None = None
    width: PositiveInt | None = None
    features: PositiveInt | None = None
    timesteps: PositiveInt | None = None
    tokens: PositiveInt | None = None  # a sequence of token ids (a language model's input)

    def __post_init__(self) -> None:
        image = (self.channels, self.height, self.width)
        given = sum((self.features is not None, self.tokens is not None, any(v is not None for v in image)))
        if given != 1 or (self.features is None and self.tokens is None and None in image):
            raise ValueError("give channels, height and width (an image), features (a sequence of "
                             "vectors) or tokens (a sequence of token ids), exactly one")

    @property
    def shape(self) -> tuple[int, ...]:
        if self.tokens is not None:
            return (self.tokens,)
        if self.features is None:
            return (self.channels, self.height, self.width)  # type: ignore[return-value]
        if self.timesteps is None:
            return (self.features,)
        return (self.timesteps, self.features)


@dataclass(frozen=True)
class BlockDoc:
    """A named template of layer entries with arguments."""

    layers: tuple[Any, ...]
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadDoc:
    """The top level of a workload file."""

    name: Label
    input: InputDoc
    layers: tuple[Any, ...]
    description: str = ""
    precision_bytes: PositiveInt = 4
    # Model state per parameter besides the weights and gradients (both at
    # precision_bytes): the optimizer's state and an fp32 master copy of the weights.
    optimizer: Literal["none", "sgd", "momentum", "adam"] = "none"
    master_weights: bool = False
    hidden: PositiveInt | None = None
    timesteps: Annotated[int, Range(minimum=1, maximum=MAX_TIMESTEPS)] | None = None
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocks: dict[str, BlockDoc] = field(default_factory=dict)


# Shape keys per layer kind. ``name`` and ``inputs`` are common to all.
@dataclass(frozen=True)
class ConvSpec:
    out_channels: PositiveInt
    kernel: Pair
    stride: Pair = 1
    padding: Padding = 0
    groups: PositiveInt = 1
    bias: bool = True
    shortcut: bool = False  # a projection shortcut: not counted in the depth


@dataclass(frozen=True)
class FcSpec:
    out_features: PositiveInt
    bias: bool = True


@dataclass(frozen=True)
class PoolSpec:
    kernel: Pair | None = None
    stride: Pair | None = None
    padding: Padding = 0
    ceil_mode: bool = False
    output_size: Pair | None = None  # adaptive pooling

    def __post_init__(self) -> None:
        if (self.kernel is None) == (self.output_size is None):
            raise ValueError("give kernel (a window) or output_size (adaptive pooling), exactly one")


@dataclass(frozen=True)
class RecurrentSpec:
    hidden: PositiveInt
    bias: bool = True


@dataclass(frozen=True)
class DropoutSpec:
    rate: float = 0.5  # documentation only: dropout's cost does not depend on it


@dataclass(frozen=True)
class LrnSpec:
    size: PositiveInt = 5


@dataclass(frozen=True)
class NoSpec:
    pass


@dataclass(frozen=True)
class ElementwiseSpec:
    """An element-wise operator of one input, or of inputs that broadcast to the first
    (squeeze-excitation's gate times its feature map); ``shape`` is its output's shape
    per sample when that differs from the first input's (a selection, a reduction, an
    imported operator priced by its bytes)."""

    shape: tuple[PositiveInt, ...] | None = None


@dataclass(frozen=True)
class LinearSpec:
    """A token-wise linear layer; ``tied_to`` names the layer whose weights it shares
    (a language model's vocabulary projection tied to its token embedding)."""

    out_features: PositiveInt
    bias: bool = True
    tied_to: str | None = None
    experts: PositiveInt = 1  # a bank of routed experts over dispatched slots (mcdla.hw.moe)
    top_k: PositiveInt = 1  # experts one token uses: the bank's active parameters


@dataclass(frozen=True)
class MoeDispatchSpec:
    """Routes each token to ``top_k`` experts; ``capacity_factor`` scales the slots
    computed (padding above 1.0, dropped tokens below; mcdla.hw.moe)."""

    top_k: PositiveInt
    capacity_factor: PositiveFloat = 1.0


@dataclass(frozen=True)
class EmbeddingSpec:
    vocab: PositiveInt
    hidden: PositiveInt


@dataclass(frozen=True)
class PositionSpec:
    """A learned position table added to the tokens (and, BERT-style, token types)."""

    max_positions: PositiveInt
    types: NonNegativeInt = 0


@dataclass(frozen=True)
class AttentionSpec:
    heads: PositiveInt
    kv_heads: PositiveInt | None = None  # grouped-query attention: fewer K/V heads
    causal: bool = True
    flash: bool = False  # a fused kernel that never materializes the score matrix
    v_head_dim: PositiveInt | None = None  # V's head size when not Q's and K's (DeepSeek's MLA)
    dropout: bool = False  # dropout on the probabilities (materialized kernels: mcdla.hw.layers.Attention)


SPECS: dict[str, type] = {
    "conv": ConvSpec,
    "fc": FcSpec,
    "maxpool": PoolSpec,
    "avgpool": PoolSpec,
    "rnn": RecurrentSpec,
    "lstm": RecurrentSpec,
    "gru": RecurrentSpec,
    "dropout": DropoutSpec,
    "lrn": LrnSpec,
    "relu": NoSpec,
    "batchnorm": NoSpec,
    "concat": NoSpec,
    "add": NoSpec,
    "softmax": NoSpec,
    "linear": LinearSpec,
    "attention": AttentionSpec,
    "embedding": EmbeddingSpec,
    "position": PositionSpec,
    "layernorm": NoSpec,
    "rmsnorm": NoSpec,
    "gelu": NoSpec,
    "silu": NoSpec,
    "swiglu": NoSpec,
    "cross_entropy": NoSpec,
    "elementwise": ElementwiseSpec,
    "moe_dispatch": MoeDispatchSpec,
    "moe_combine": NoSpec,
}

@dataclass(frozen=True)
class RepeatDoc:
    repeat: Annotated[int, Range(minimum=1, maximum=MAX_REPEAT)] = 1


@dataclass(frozen=True)
class VariablesDoc:
    """The top-level keys that may be referred to as "$name"."""

    hidden: PositiveInt | None = None
    timesteps: Annotated[int, Range(minimum=1, maximum=MAX_TIMESTEPS)] | None = None


def substitute(value: Any, env: dict[str, Any], where: Where, key: str | int | None = None) -> Any:
    """``value``, at ``key`` under ``where``, with every "$name" string replaced by the
    variable ``name``. The key's Where is made only for an error or a nested value: a
    workload's every layer entry passes here, nearly all of it plain values."""
    if isinstance(value, str):
        if not value.startswith("$"):
            return value
        if value[1:] not in env:
            known = ", ".join("$" + k for k in sorted(env)) or "none"
            here = where if key is None else where.child(key)
            raise here.error(f"unknown variable {value!r}; defined here: {known}")
        return env[value[1:]]
    if isinstance(value, list):
        here = where if key is None else where.child(key)
        return [substitute(v, env, here, i) for i, v in enumerate(value)]
    if isinstance(value, dict):  # a block's args
        here = where if key is None else where.child(key)
        return {k: substitute(v, env, here, str(k)) for k, v in value.items()}
    return value
