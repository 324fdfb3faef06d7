"""Layers of a training workload: shapes, parameters, MACs and their GEMM lowering.

A workload is a DAG of layers in topological order; ``layers[0]`` is the data layer
(kind ``input``). Each layer knows, per sample, how many elements its output feature
map holds and how much work its forward and backward passes are. Everything here is
inferred from shape parameters (kernel, stride, channels, ...) by
:func:`mcdla.hw.shapes.infer`; no
count is ever typed into a workload file.

Lowering to GEMMs (``C[m x n] = A[m x k] B[k x n]``, repeated ``count`` times):

- convolution via implicit im2col, per group g of ``groups``:
  forward ``Y = W X``: m = Cout/g, n = batch*Ho*Wo, k = Cin/g*kh*kw;
  backward ``dX = W^T dY``: m = Cin/g*kh*kw, n = batch*Ho*Wo, k = Cout/g (col2im fused);
  backward ``dW = dY X^T``: m = Cout/g, n = Cin/g*kh*kw, k = batch*Ho*Wo.
- fully connected: the same with Ho*Wo = 1, kh*kw = 1, Cin = flattened input.
- recurrent timestep (vanilla RNN, LSTM, GRU with G = 1, 4, 3 gates): the gate
  pre-activations ``W [x_t; h_{t-1}]``: m = G*hidden, n = batch, k = features+hidden;
  dX only towards h_{t-1} (x_t is data): m = hidden, n = batch, k = G*hidden;
  dW: m = G*hidden, n = features+hidden, k = batch. A memory-bound gate kernel follows
  the forward GEMM and precedes the backward ones.

The HBM traffic of a GEMM kernel is its compulsory traffic: the operands as tensors
(weights, the input feature map, the output), not the im2col-expanded matrix, which
the PE array builds on the fly. :mod:`mcdla.hw.compute` adds re-fetches when the
output tile does not fit on chip.

Element-wise, pooling, normalization, concat and add layers (``cheap``) have no GEMM:
their kernels stream tensors through HBM. The table ``_EW_TRAFFIC`` says which tensors
each one reads and writes, forward and backward. In the memory-virtualization model
these layers are recomputed in backward rather than offloaded (docs/model.md).

Recurrent state: each unrolled timestep is a layer whose output is what backward
needs of that step, stored as cuDNN's reserve space does rather than recomputed
(recomputing the gates would replay the whole gate GEMM): vanilla RNN h (tanh' comes
from h); LSTM h, c and the four gate activations (6 x hidden); GRU h, the three gates
and the hidden-side candidate term W_hn h + b_hn needed for dr (5 x hidden).
All timesteps of one recurrent layer share one weight group; its parameters are owned
by timestep 0, whose backward finishes last, so the group's dW is ready then.

Model parallelism (``shards`` = D, Krizhevsky-style): each device computes 1/D of a
layer's output features (the GEMM's output-feature dimension m forward and in dW, the
reduction k in dX, whose partial sums the caller reduces: docs/model.md) and 1/D of the
element-wise work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal, Mapping

from mcdla.hw.ew_traffic import EW_TRAFFIC as _EW_TRAFFIC  # which tensors each cheap kind streams

__all__ = ["LM_HEAD", "readers", "fp8_cast", "on_fp8_lanes", "Gemm", "Kernel", "Attention", "ATTENTION_KINDS", "Lowering", "Shaped", "Layer", "Workload",
           "GEMM_KINDS", "RECURRENT_KINDS", "CHEAP_KINDS", "KINDS", "PHASES", "NO_INPUT_NEEDED",
           "STATE_STORED", "STATE_CARRIED"]

GEMM_KINDS = ("conv", "fc", "linear")
RECURRENT_KINDS = {"rnn": 1, "lstm": 4, "gru": 3}  # kind -> gates per timestep
CHEAP_KINDS = (
    "relu",
    "dropout",
    "maxpool",
    "avgpool",
    "lrn",
    "batchnorm",
    "concat",
    "add",
    "softmax",
    "embedding",
    "position",
    "layernorm",
    "rmsnorm",
    "gelu",
    "silu",
    "swiglu",
    "cross_entropy",
    "elementwise",
    "moe_dispatch",
    "moe_combine",
)
ATTENTION_KINDS = ("attention",)
KINDS = ("input",) + GEMM_KINDS + tuple(RECURRENT_KINDS) + ATTENTION_KINDS + CHEAP_KINDS
PHASES = ("fwd", "bwd", "recompute")
# Layer kinds whose backward needs none of their input feature maps (a sum or a
# concatenation passes gradients through), so nothing is prefetched or recomputed for them.
NO_INPUT_NEEDED = frozenset({"add", "concat"})


# Recurrent state stored per timestep (see the module docstring), in units of hidden.
STATE_STORED = {"rnn": 1, "lstm": 6, "gru": 5}
# State the next timestep reads from the previous one: h, plus c for the LSTM.
STATE_CARRIED = {"rnn": 1, "lstm": 2, "gru": 1}


@dataclass(frozen=True)
class Gemm:
    """``C[m x n] = A[m x k] B[k x n]``, repeated ``count`` times (e.g. conv groups)."""

    m: int
    n: int
    k: int
    count: int = 1

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k * self.count


@dataclass(frozen=True)
class Kernel:
    """One kernel launch on a device.

    ``bytes`` is the compulsory HBM traffic; ``gemm`` is None for a memory-bound
    element-wise/pool/norm kernel. ``operand_bytes`` splits a GEMM's traffic into
    (A, B, C) so that :mod:`mcdla.hw.compute` can charge re-fetches of A and B when C
    is tiled; ``element_bytes`` is the precision.
    """

    name: str
    macs: int
    bytes: int
    gemm: Gemm | None
    operand_bytes: tuple[int, int, int] | None = None
    element_bytes: int = 4
    gemms: tuple[Gemm, ...] = ()  # a fused kernel's GEMMs, run on the PE array one after another
    conv3x3: str | None = None  # "fwd", "dx" or "dw" of a 3x3 stride-1 convolution (mcdla.hw.gpu)
    # The fraction of the device's stream rate a memory-bound kernel attains: 1, but for a
    # framework's kernel measured slower (mcdla.hw.ew_traffic.KERNEL_STREAM).
    stream: float = 1.0
    conv1x1: str | None = None  # "fwd", "dx" or "dw" of a 1x1 convolution (mcdla.hw.gpu)
    # A fused attention kernel's name (mcdla.config.hardware.AttentionKernel; None: the device's default kernel).
    attention: str | None = None


@dataclass(frozen=True)
class Lowering:
    """A weighted layer's GEMM shapes, per sample and per group.

    ``out_features`` and ``reduce`` are the forward GEMM's m and k; ``positions`` the
    output positions per sample (Ho*Wo; 1 for fc and recurrent); ``dx_rows`` the m of
    the dX GEMM (0 when the only input is the data layer: no dX is needed).
    ``in_elems``/``dx_elems``/``out_elems`` are the tensors the GEMMs read and write,
    per sample: the input feature map, the gradient written back, the GEMM output.
    ``gates_fwd_elems``/``gates_bwd_elems`` are the per-sample element traffic of the
    recurrent gate kernel (0 for conv and fc, whose bias and activation are fused or
    separate layers).
    """

    out_features: int
    reduce: int
    positions: int
    groups: int
    dx_rows: int
    weight_elems: int
    in_elems: int
    dx_elems: int
    out_elems: int
    gates_fwd_elems: int = 0
    gates_bwd_elems: int = 0
    conv3x3: bool = False  # an ungrouped 3x3 stride-1 convolution (cuDNN's Winograd class)
    conv1x1: bool = False  # an ungrouped 1x1 convolution, any stride (ResNet's pointwise class)


@dataclass(frozen=True)
class Shaped:
    """What :func:`infer` finds for one layer: output shape, parameters, work."""

    out_shape: tuple[int, ...]
    params: int
    lowering: Lowering | None = None
    ew_fwd_elems: int = 0
    ew_bwd_elems: int = 0
    attention: "Attention | None" = None
    kept_elems: int | None = None  # what the output holds for backward, if not prod(out_shape)
    active_params: int | None = None  # of ``params``, those one token uses (MoE experts), if fewer


@dataclass(frozen=True)
class Attention:
    """The core of multi-head or grouped-query attention over one sequence.

    Q, K and V come in one tensor (seq, (heads + 2 kv_heads) x head_dim); the output
    is (seq, heads x head_dim). Per head: S = Q K^T (seq x seq, reduction head_dim),
    P = softmax(S) with the causal mask, O = P V. Backward: dV = P^T dO, dP = dO V^T,
    dS = softmax'(dP), dQ = dS K, dK = dS^T Q. The materialized kernels keep P for
    backward (heads x seq^2 elements per sample) and stream S and P through HBM; the
    fused (FlashAttention-style) kernel keeps only the softmax statistics (heads x seq), never writes
    S or P, recomputes S in backward, and with the causal mask skips the blocks above the diagonal
    (half the products). ``v_head_dim`` (default head_dim): V's and O's head size when it differs
    from Q's and K's (DeepSeek's multi-head latent attention: 192 for Q and K, 128 for V); Q and K
    then take (heads + kv_heads) x head_dim of the input and V kv_heads x v_head_dim.
    ``dropout``: on P (Megatron's ``--attention-dropout``); a fused kernel draws its mask in registers.
    """

    heads: int
    kv_heads: int
    head_dim: int
    seq: int
    causal: bool = True
    flash: bool = False
    v_head_dim: int | None = None
    dropout: bool = False
    # The fused kernel that runs it (training.attention_kernel; None: the device's default).
    kernel: str | None = None

    @property
    def value_dim(self) -> int:
        """V's and O's head size: ``v_head_dim``, or head_dim when it is not set."""
        return self.v_head_dim or self.head_dim


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Layer:
    """One node of the workload DAG; sizes are per sample, in elements.

    ``in_elems_per_sample`` is the sum of the producers' outputs, except for a
    recurrent timestep, which reads only its x_t slice of the sequence and the carried
    state (h, and c for the LSTM), not the whole sequence or the stored gates.
    Batch-norm layers own a weight group (gamma, beta) although they are cheap.
    """

    name: str
    kind: str
    inputs: tuple[int, ...]
    cheap: bool
    weight_group: str | None
    params: int
    out_elems_per_sample: int
    in_elems_per_sample: int
    out_shape: tuple[int, ...] = ()
    lowering: Lowering | None = None
    ew_fwd_elems: int = 0
    ew_bwd_elems: int = 0
    # Counted in the network's depth as papers report it (ResNet's projection
    # shortcuts are not: ResNet-34 has 36 conv + 1 fc weighted layers but depth 34).
    in_depth: bool = True
    attention: Attention | None = None
    # Layers merged into this one by running in place (mcdla.hw.fusion): their kernels
    # follow this layer's forward and precede them backward; ``fuse_with_prev[j]`` says
    # part j runs in one kernel with the kernel before it.
    fused: tuple["Layer", ...] = ()
    fuse_with_prev: tuple[bool, ...] = ()
    # The feature maps backward reads, when not this layer's inputs (mcdla.sim.offload).
    bwd_reads: tuple[int, ...] | None = None
    # (fwd, bwd): the fraction of the stream rate its memory-bound kernels attain
    # (training.norm_kernel; mcdla.hw.ew_traffic.KERNEL_STREAM).
    stream: tuple[float, float] = (1.0, 1.0)
    # Of ``params``, those one token uses (a routed expert bank's top_k experts), if fewer.
    active_params: int | None = None
    # FP8 training (mcdla.hw.fp8): None, or how this linear layer's input reaches FP8:
    # "cast" (its own cast-transpose kernel) or "norm" (the norm before it writes FP8).
    fp8: Literal["cast", "norm"] | None = None

    @property
    def weighted(self) -> bool:
        return self.lowering is not None

    def gemm_reads(self, producer: "Layer") -> int:
        """Elements per sample of ``producer``'s output that this layer's GEMM reads: the
        feature map, except for a recurrent step reading the step before it, whose GEMM
        reads h_{t-1} only of the stored state (c_{t-1} and the gate activations are
        read per hidden unit by the gate kernel and backward, on the same unit's shard)."""
        if self.kind in RECURRENT_KINDS and producer.weight_group == self.weight_group:
            return self.lowering.out_features // RECURRENT_KINDS[self.kind]  # G x hidden / G
        return math.prod(producer.out_shape)

    @property
    def macs_fwd_per_sample(self) -> int:
        if self.attention is not None:
            return sum(k.macs for k in self.kernels("fwd", 1, 4))
        low = self.lowering
        if low is None:
            return 0
        return low.out_features * low.positions * low.reduce * low.groups

    def kernels(self, phase: str, batch: int, precision_bytes: int, shards: int = 1) -> tuple[Kernel, ...]:
        """The kernels of ``phase`` ("fwd", "bwd" or "recompute") for ``batch`` samples.

        "recompute" replays the forward (of a cheap layer, in backward). ``shards`` = D
        splits the output features (and element-wise work) D ways.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        if batch < 1 or shards < 1 or precision_bytes < 1:
            raise ValueError(f"batch, shards and precision_bytes must be >= 1, got {batch}, {shards}, {precision_bytes}")
        kernels = list(self._own_kernels(phase, batch, precision_bytes, shards))
        if not self.fused:
            return tuple(kernels)
        forward = phase != "bwd"
        previous = self
        for part, fuse in zip(self.fused, self.fuse_with_prev):
            own = list(part._own_kernels(phase, batch, precision_bytes, shards))
            if fuse:  # one memory-bound kernel: the tensor between them is never written or read back
                boundary = 2 * ceil_div(previous.out_elems_per_sample * batch, shards) * precision_bytes
                near, far = (kernels[-1], own[0]) if forward else (own[-1], kernels[0])
                merged = Kernel(f"{near.name}+{far.name.rpartition(':')[0]}", 0,
                                near.bytes + far.bytes - boundary, None, element_bytes=precision_bytes)
                if forward:
                    kernels[-1:], own = [merged], own[1:]
                else:
                    kernels[:1], own = [merged], own[:-1]
            kernels = kernels + own if forward else own + kernels
            previous = part
        return tuple(kernels)

    def _own_kernels(self, phase: str, batch: int, precision_bytes: int, shards: int) -> tuple[Kernel, ...]:
        if self.kind == "input":
            return ()
        forward = phase in ("fwd", "recompute")
        tag = "fwd" if phase == "fwd" else phase
        low = self.lowering
        e = precision_bytes
        if self.attention is not None:
            return self._attention_kernels(tag, forward, batch, e, shards)
        if low is None:
            elems = self.ew_fwd_elems if forward else self.ew_bwd_elems
            size = ceil_div(elems * batch, shards) * e
            return (Kernel(f"{self.name}:{tag}", 0, size, None, element_bytes=e,
                           stream=self.stream[0 if forward else 1]),)
        kernels: list[Kernel] = []
        m_out = ceil_div(low.out_features, shards)
        n = batch * low.positions
        weights = ceil_div(low.weight_elems, shards) * e
        out = ceil_div(low.out_elems * batch, shards) * e
        gates = low.gates_fwd_elems if forward else low.gates_bwd_elems
        # The measured convolution class the GEMMs belong to, if any (mcdla.hw.gpu.conv_class_seconds).
        conv = "conv3x3" if low.conv3x3 else "conv1x1" if low.conv1x1 else None
        gates_kernel = None
        if gates:
            gates_kernel = Kernel(f"{self.name}:gates_{tag}", 0, ceil_div(gates * batch, shards) * e,
                                  None, element_bytes=e)
        if forward:
            operands = (weights, low.in_elems * batch * e, out)
            gemm = Gemm(m_out, n, low.reduce, low.groups)
            kernels.append(self._gemm(f"{self.name}:{tag}", gemm, operands, e, conv, "fwd"))
            if gates_kernel:
                kernels.append(gates_kernel)
            return self._in_fp8(kernels, forward, e) if self.fp8 else tuple(kernels)
        if gates_kernel:
            kernels.append(gates_kernel)
        if low.dx_rows:
            operands = (weights, out, low.dx_elems * batch * e)
            gemm = Gemm(low.dx_rows, n, m_out, low.groups)
            kernels.append(self._gemm(f"{self.name}:dx", gemm, operands, e, conv, "dx"))
        operands = (out, low.in_elems * batch * e, weights)
        kernels.append(self._gemm(f"{self.name}:dw", Gemm(m_out, low.reduce, n, low.groups), operands, e, conv, "dw"))
        return self._in_fp8(kernels, forward, e) if self.fp8 else tuple(kernels)

    def _in_fp8(self, kernels: list[Kernel], forward: bool, e: int) -> tuple[Kernel, ...]:
        """A linear layer's GEMMs as Transformer Engine runs them in FP8 (mcdla.hw.fp8):
        each on FP8 operands, after a cast-transpose of the tensor it quantizes, which
        writes an FP8 copy and its transpose (wgrad reads the transposed ones): forward
        the input (unless the norm before it wrote FP8), backward the output gradient."""
        if forward:  # the forward GEMM's operands: (weights, input, out)
            cast = () if self.fp8 == "norm" else (fp8_cast(f"{self.name}:cast_fp8", kernels[0].operand_bytes[1], e, 2),)
        else:  # dW's, last: (output gradient, input, weights)
            cast = (fp8_cast(f"{self.name}:cast_grad_fp8", kernels[-1].operand_bytes[0], e, 2),)
        return cast + tuple(on_fp8_lanes(k, e) for k in kernels)

    def _attention_kernels(self, tag: str, forward: bool, batch: int, e: int, shards: int) -> tuple[Kernel, ...]:
        """The attention core's kernels (see :class:`Attention`); shards split the heads."""
        a = self.attention
        heads = ceil_div(a.heads, shards)
        s, d, dv = a.seq, a.head_dim, a.value_dim
        count = heads * batch
        # Fused kernels skip the masked half; materialized ones compute the full square.
        part = 0.5 if (a.flash and a.causal) else 1.0
        kv = ceil_div(a.kv_heads, shards)
        qkv = ((heads + kv) * d + kv * dv) * s * batch * e
        out = heads * s * dv * batch * e
        square = int(heads * s * s * batch * e * part)
        scores, values = Gemm(s, s, d, count), Gemm(s, dv, s, count)  # S = Q K^T, O = P V
        grad_p, grad_qk = Gemm(s, s, dv, count), Gemm(s, d, s, count)  # dP = dO V^T; dQ = dS K, dK

        def gemm(name, g, traffic):
            macs = int(g.macs * part)
            return Kernel(f"{self.name}:{name}", macs, traffic, g, None, e)

        if a.flash:  # one fused kernel each way: Q, K, V in, O out (backward: dO, O in, dQKV out)
            if forward:
                return (Kernel(f"{self.name}:{tag}", int((scores.macs + values.macs) * part),
                               qkv + out, None, None, e, gemms=(scores, values), attention=a.kernel),)
            gemms = (scores, grad_p, values, grad_qk, grad_qk)  # S recomputed, dP, dV, dQ, dK
            return (Kernel(f"{self.name}:{tag}", int(sum(g.macs for g in gemms) * part),
                           2 * qkv + 2 * out, None, None, e, gemms=gemms, attention=a.kernel),)
        ew = sum(_EW_TRAFFIC["dropout"][0 if forward else 1]) * square  # the dropout kind's traffic over P
        read = square // 2 if a.causal else square  # causal: Megatron's softmax reads the unmasked half, writes all
        drop = (Kernel(f"{self.name}:dropout_{tag}", 0, ew, None, element_bytes=e),) if a.dropout else ()
        if forward:
            return (gemm(f"qk_{tag}", scores, qkv + square),
                    Kernel(f"{self.name}:softmax_{tag}", 0, read + square, None, element_bytes=e), *drop,
                    gemm(f"av_{tag}", values, square + qkv // 3 + out))
        return (gemm("dv", values, square + out + qkv // 3),
                gemm("dp", grad_p, out + qkv // 3 + square), *drop,
                Kernel(f"{self.name}:softmax_bwd", 0, 2 * read + square, None, element_bytes=e),
                gemm("dq", grad_qk, square + qkv // 3 + qkv // 3),
                gemm("dk", grad_qk, square + qkv // 3 + qkv // 3))

    @staticmethod
    def _gemm(name: str, gemm: Gemm, operands: tuple[int, int, int], e: int, conv: str | None = None,
              direction: str | None = None) -> Kernel:
        """A GEMM kernel; ``conv`` names its convolution class field (``conv3x3``, ``conv1x1``),
        which is set to ``direction``."""
        return Kernel(name, gemm.macs, sum(operands), gemm, operands, e, **({conv: direction} if conv else {}))


# The vocabulary projection's layer name (mcdla.config.templates): serving keeps it at the
# activations' precision, FP8 training in BF16.
LM_HEAD = "lm_head"


def readers(layers) -> list[int]:
    """Each layer's count of the layers that read its output (a layer reading it twice
    counted twice)."""
    counts = [0] * len(layers)
    for layer in layers:
        for p in layer.inputs:
            counts[p] += 1
    return counts


def fp8_cast(name: str, tensor_bytes: int, act_bytes: int, copies: int) -> Kernel:
    """A memory-bound quantization kernel: reads a tensor of ``tensor_bytes`` at
    ``act_bytes`` an element and writes ``copies`` FP8 copies of it (1 byte an element;
    2: TE's fused cast-transpose, the copy and its transpose)."""
    return Kernel(name, 0, tensor_bytes + copies * (tensor_bytes // act_bytes), None, element_bytes=act_bytes)


def on_fp8_lanes(kernel: Kernel, act_bytes: int) -> Kernel:
    """GEMM ``kernel`` (operands at ``act_bytes``) run on FP8 operands: A and B read at
    one byte an element, C written as before (BF16, dequantized in the epilogue), on
    the device's FP8 lanes (element_bytes 1: mcdla.hw.gpu.gemm_rate)."""
    a, b, c = kernel.operand_bytes
    a8, b8 = a // act_bytes, b // act_bytes
    return replace(kernel, bytes=a8 + b8 + c, operand_bytes=(a8, b8, c), element_bytes=1)


@dataclass(frozen=True)
class Workload:
    """A network as a DAG of layers in topological order, ``layers[0]`` the data."""

    name: str
    layers: tuple[Layer, ...]
    weight_groups: Mapping[str, int]
    precision_bytes: int = 4
    optimizer: str = "none"  # model state besides weights and gradients: mcdla.hw.memory
    master_weights: bool = False
    # The gradients' element bytes as held and reduced (training.grad_reduce_dtype;
    # None: precision_bytes): Megatron's fp32 main gradients under bf16 weights.
    grad_precision_bytes: int | None = None
    description: str = ""
    source: str = ""  # the file it was read from, for messages
    index: Mapping[str, int] = field(default_factory=dict, compare=False)

    @property
    def params(self) -> int:
        return sum(self.weight_groups.values())

    @property
    def active_params(self) -> int:
        """Parameters one token uses: all but the experts it is not routed to."""
        return self.params - sum(l.params - l.active_params for l in self.layers if l.active_params is not None)

    @property
    def weighted_layers(self) -> int:
        """Depth as papers count it: conv, fc and recurrent timesteps (Table III)."""
        return sum(1 for layer in self.layers if layer.weighted and layer.in_depth)

    @property
    def macs_fwd_per_sample(self) -> int:
        return sum(layer.macs_fwd_per_sample for layer in self.layers)

    @cached_property
    def fp8_groups(self) -> dict[str, float]:
        """Weight group -> the share of its parameters in layers that train in FP8
        (mcdla.hw.fp8): the weights TE casts each iteration and keeps FP8 copies of.
        Empty without FP8 layers; a group of none is absent."""
        found: dict[str, int] = {}
        for l in self.layers:
            if l.fp8 and l.params:
                found[l.weight_group] = found.get(l.weight_group, 0) + l.params
        return {g: n / self.weight_groups[g] for g, n in found.items()}

    @property
    def gradient_element_bytes(self) -> int:
        return self.grad_precision_bytes or self.precision_bytes

    @property
    def weight_bytes(self) -> int:
        return self.params * self.precision_bytes

    @property
    def activation_bytes_per_sample(self) -> int:
        """Every layer's output, the data layer's included."""
        return sum(layer.out_elems_per_sample for layer in self.layers) * self.precision_bytes

    @property
    def offload_bytes_per_sample(self) -> int:
        """Outputs of the non-cheap layers, data included: what vDNN offloads."""
        return sum(l.out_elems_per_sample for l in self.layers if not l.cheap) * self.precision_bytes

    def layer(self, name: str) -> Layer:
        return self.layers[self.index[name]]

    def summary(self) -> dict:
        """The row ``mcdla workloads`` prints (README.md)."""
        return {
            "name": self.name,
            "layers": self.weighted_layers,
            "params": self.params,
            "active_params": self.active_params,
            "macs_fwd_per_sample": self.macs_fwd_per_sample,
            "weight_bytes": self.weight_bytes,
            "activation_bytes_per_sample": self.activation_bytes_per_sample,
        }
