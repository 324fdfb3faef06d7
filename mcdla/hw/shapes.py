"""Shape inference: a layer's output shape, parameters and GEMM lowering from its shape
parameters (kernel, stride, channels, ...), the lowering rules of :mod:`mcdla.hw.layers`'
docstring; and one unrolled timestep of a recurrent layer."""

from __future__ import annotations

import math

from mcdla.hw.ew_traffic import EW_TRAFFIC as _EW_TRAFFIC  # which tensors each cheap kind streams
from mcdla.hw.layers import (RECURRENT_KINDS, STATE_CARRIED, STATE_STORED, Attention, Lowering, Shaped,
                             ceil_div)
from mcdla.hw.moe import combined, dispatched

__all__ = ["infer", "recurrent_step"]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _prod(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _window_out(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Output length of a sliding window, with PyTorch's ceil_mode rule."""
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"window {kernel} with padding {padding} is larger than the input ({size})")
    if not ceil_mode:
        return span // stride + 1
    out = ceil_div(span, stride) + 1
    if (out - 1) * stride >= size + padding:  # the last window must start inside the input
        out -= 1
    return out


def _image(in_shapes: list[tuple[int, ...]], kind: str) -> tuple[int, int, int]:
    if len(in_shapes) != 1:
        raise ValueError(f"a {kind} layer takes exactly one input, got {len(in_shapes)}")
    shape = in_shapes[0]
    if len(shape) != 3:
        raise ValueError(f"a {kind} layer needs a (channels, height, width) input, got shape {shape}")
    return shape  # type: ignore[return-value]


def _conv(in_shapes, *, out_channels, kernel, stride=1, padding=0, groups=1, bias=True,
          dx: bool, **_ignored) -> Shaped:
    c, h, w = _image(in_shapes, "conv")
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    if c % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide the input ({c}) and output ({out_channels}) channels")
    ho = _window_out(h, kh, sh, ph, False)
    wo = _window_out(w, kw, sw, pw, False)
    reduce = c // groups * kh * kw
    weights = out_channels * reduce + (out_channels if bias else 0)
    out = (out_channels, ho, wo)
    lowering = Lowering(
        out_features=out_channels // groups,
        reduce=reduce,
        positions=ho * wo,
        groups=groups,
        dx_rows=reduce if dx else 0,
        weight_elems=weights,
        in_elems=c * h * w,
        dx_elems=c * h * w if dx else 0,
        out_elems=_prod(out),
        conv3x3=(kh, kw, sh, sw, groups) == (3, 3, 1, 1, 1),  # cuDNN's Winograd class
        conv1x1=(kh, kw, groups) == (1, 1, 1),  # a pointwise convolution, any stride
    )
    return Shaped(out, weights, lowering)


def _fc(in_shapes, *, out_features, bias=True, dx: bool, **_ignored) -> Shaped:
    if len(in_shapes) != 1:
        raise ValueError(f"an fc layer takes exactly one input, got {len(in_shapes)}")
    features = _prod(in_shapes[0])  # flattens a feature map, as torch.flatten does
    weights = out_features * features + (out_features if bias else 0)
    lowering = Lowering(
        out_features=out_features,
        reduce=features,
        positions=1,
        groups=1,
        dx_rows=features if dx else 0,
        weight_elems=weights,
        in_elems=features,
        dx_elems=features if dx else 0,
        out_elems=out_features,
    )
    return Shaped((out_features,), weights, lowering)


def _pool(kind, in_shapes, *, kernel=None, stride=None, padding=0, ceil_mode=False,
          output_size=None, **_ignored) -> Shaped:
    c, h, w = _image(in_shapes, kind)
    if output_size is not None:  # adaptive pooling: the output size is given
        oh, ow = _pair(output_size)
        if oh > h or ow > w:
            raise ValueError(f"output_size {output_size} is larger than the input ({h}x{w})")
    else:
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride if stride is not None else kernel)
        ph, pw = _pair(padding)
        oh = _window_out(h, kh, sh, ph, ceil_mode)
        ow = _window_out(w, kw, sw, pw, ceil_mode)
    return Shaped((c, oh, ow), 0)


def _same(kind, in_shapes) -> tuple[int, ...]:
    if len(in_shapes) != 1:
        raise ValueError(f"a {kind} layer takes exactly one input, got {len(in_shapes)}")
    return in_shapes[0]


def _broadcast(in_shapes) -> tuple[int, ...]:
    """The first input's shape, to which the others broadcast (squeeze-excitation's gate)."""
    first = _same("elementwise", in_shapes[:1])
    for other in in_shapes[1:]:
        if len(other) > len(first) or any(o not in (1, f) for o, f in zip(other[::-1], first[::-1])):
            raise ValueError(f"shape {other} does not broadcast to the first input's {first}")
    return first


def _concat(in_shapes) -> Shaped:
    if len(in_shapes) < 2:
        raise ValueError("a concat layer needs at least two inputs")
    first = in_shapes[0]
    for shape in in_shapes[1:]:
        if len(shape) != len(first) or shape[1:] != first[1:]:
            raise ValueError(f"cannot concatenate shapes {first} and {shape}: all but the channels must agree")
    return Shaped((sum(s[0] for s in in_shapes),) + tuple(first[1:]), 0)


def _add(in_shapes) -> Shaped:
    if len(in_shapes) < 2:
        raise ValueError("an add layer needs at least two inputs")
    for shape in in_shapes[1:]:
        if shape != in_shapes[0]:
            raise ValueError(f"cannot add shapes {in_shapes[0]} and {shape}")
    return Shaped(in_shapes[0], 0)


def _tokens(kind, in_shapes) -> tuple[int, int]:
    """The (seq, features) of a token-wise layer's single input."""
    shape = _same(kind, in_shapes)
    if len(shape) != 2:
        raise ValueError(f"a {kind} layer needs a (tokens, features) input, got shape {shape}")
    return shape  # type: ignore[return-value]


def _linear(in_shapes, *, out_features, bias=True, tied=False, experts=1, top_k=1, dx: bool,
            **_ignored) -> Shaped:
    """A token-wise linear layer: the same GEMM at every position of the sequence; or
    ``experts`` of them over routed slots, ``top_k`` used per token (mcdla.hw.moe)."""
    seq, features = _tokens("linear", in_shapes)
    if top_k > experts:
        raise ValueError(f"top_k={top_k} is more than its {experts} experts")
    one = out_features * features + (out_features if bias else 0)
    weights = experts * one
    lowering = Lowering(
        out_features=out_features,
        reduce=features,
        positions=seq,
        groups=1,
        dx_rows=features if dx else 0,
        weight_elems=weights,
        in_elems=seq * features,
        dx_elems=seq * features if dx else 0,
        out_elems=seq * out_features,
    )
    # A tied layer reads and updates another layer's weights: they count once, there.
    if tied:
        return Shaped((seq, out_features), out_features if bias else 0, lowering)
    return Shaped((seq, out_features), weights, lowering, active_params=top_k * one)


def _attention(in_shapes, *, heads, kv_heads=None, causal=True, flash=False, v_head_dim=None,
               dropout=False, **_ignored) -> Shaped:
    seq, width = _tokens("attention", in_shapes)
    kv_heads = heads if kv_heads is None else kv_heads
    if heads % kv_heads:
        raise ValueError(f"kv_heads={kv_heads} must divide heads={heads}")
    # Q and K heads of one size; V heads of the same or (v_head_dim) another.
    qk, per = (width, heads + 2 * kv_heads) if v_head_dim is None else (width - kv_heads * v_head_dim, heads + kv_heads)
    if qk <= 0 or qk % per:
        raise ValueError(f"the input's {width} features are not {per} heads of one size"
                         + (f" and {kv_heads} value heads of {v_head_dim}" if v_head_dim else ""))
    head_dim = qk // per
    core = Attention(heads, kv_heads, head_dim, seq, causal, flash, v_head_dim, dropout and not flash)
    out = (seq, heads * (v_head_dim or head_dim))
    stats = heads * seq if flash else heads * seq * seq * (1 + core.dropout)  # backward's, besides Q, K, V, O: P (P')
    return Shaped(out, 0, attention=core, kept_elems=_prod(out) + stats)


def infer(kind: str, in_shapes: list[tuple[int, ...]], *, dx: bool = True, **params) -> Shaped:
    """Output shape, parameters and work of a non-recurrent layer.

    ``params`` are the layer's shape parameters from the workload file; ``dx`` says
    whether backward must produce the input gradient (False when the only input is
    the data layer). Raises ValueError with a sentence when the shapes do not fit.
    """
    if kind == "conv":
        shaped = _conv(in_shapes, dx=dx, **params)
    elif kind == "fc":
        shaped = _fc(in_shapes, dx=dx, **params)
    elif kind in ("maxpool", "avgpool"):
        shaped = _pool(kind, in_shapes, **params)
    elif kind == "concat":
        shaped = _concat(in_shapes)
    elif kind == "add":
        shaped = _add(in_shapes)
    elif kind == "batchnorm":
        shape = _same(kind, in_shapes)
        shaped = Shaped(shape, 2 * shape[0])  # gamma and beta per channel; running stats are buffers
    elif kind == "elementwise":  # a given shape (an imported stand-in: its inputs may be any), or broadcast
        shaped = Shaped(tuple(params["shape"]) if params.get("shape") else _broadcast(in_shapes), 0)
    elif kind in ("moe_dispatch", "moe_combine"):  # token routing (mcdla.hw.moe)
        shaped = Shaped((dispatched if kind == "moe_dispatch" else combined)(in_shapes, **params), 0)
    elif kind in ("relu", "dropout", "lrn", "softmax", "gelu", "silu", "cross_entropy"):
        shaped = Shaped(_same(kind, in_shapes), 0)
    elif kind == "linear":
        shaped = _linear(in_shapes, dx=dx, **params)
    elif kind == "attention":
        return _attention(in_shapes, **params)
    elif kind == "embedding":
        shape = _same(kind, in_shapes)
        if len(shape) != 1:
            raise ValueError(f"an embedding reads token ids (tokens,), got shape {shape}")
        shaped = Shaped((shape[0], params["hidden"]), params["vocab"] * params["hidden"])
    elif kind == "position":
        seq, hidden = _tokens(kind, in_shapes)
        if seq > params["max_positions"]:
            raise ValueError(f"{seq} tokens, more than the table's max_positions={params['max_positions']}")
        shaped = Shaped((seq, hidden), (params["max_positions"] + params.get("types", 0)) * hidden)
    elif kind in ("layernorm", "rmsnorm"):
        seq, hidden = _tokens(kind, in_shapes)
        shaped = Shaped((seq, hidden), (2 if kind == "layernorm" else 1) * hidden)  # gain (and bias)
    elif kind == "swiglu":
        seq, width = _tokens(kind, in_shapes)
        if width % 2:
            raise ValueError(f"swiglu splits its input into gate and up halves; {width} features is odd")
        shaped = Shaped((seq, width // 2), 0)
    else:
        raise ValueError(f"no shape rule for layer kind {kind!r}")
    if kind in _EW_TRAFFIC:
        i_elems = sum(_prod(s) for s in in_shapes)
        o_elems = _prod(shaped.out_shape)
        (fi, fo), (bi, bo) = _EW_TRAFFIC[kind]
        shaped = Shaped(shaped.out_shape, shaped.params, None, fi * i_elems + fo * o_elems,
                        bi * i_elems + bo * o_elems)
    return shaped


def recurrent_step(kind: str, features: int, hidden: int, *, first: bool, bias: bool = True) -> Shaped:
    """One unrolled timestep of a recurrent layer (see the module docstring).

    ``params`` of the result is the whole weight group's size; the caller assigns it
    to one timestep only.
    """
    gates = RECURRENT_KINDS[kind]
    reduce = features + hidden  # [x_t; h_{t-1}], the initial state counts as an input
    weights = gates * hidden * reduce + (gates * hidden if bias else 0)
    stored = STATE_STORED[kind] * hidden
    carried = STATE_CARRIED[kind] * hidden
    # Gate kernel: forward reads the G*hidden pre-activations (and c_{t-1} for the
    # LSTM) and writes the stored state; backward reads dh (and dc), the stored state,
    # and writes the pre-activation gradients.
    c_prev = hidden if kind == "lstm" else 0
    lowering = Lowering(
        out_features=gates * hidden,
        reduce=reduce,
        positions=1,
        groups=1,
        dx_rows=0 if first else hidden,
        weight_elems=weights,
        in_elems=reduce,
        dx_elems=0 if first else hidden,
        out_elems=gates * hidden,
        gates_fwd_elems=gates * hidden + c_prev + stored,
        gates_bwd_elems=carried + stored + gates * hidden,
    )
    return Shaped((stored,), weights, lowering)
