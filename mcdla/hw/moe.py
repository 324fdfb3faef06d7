"""Mixture-of-experts routing: the shapes of token dispatch and combine.

A routed MoE FFN (Shazeer et al. 2017; Mixtral, Jiang et al. 2024; DeepSeek-V3,
DeepSeek-AI 2024) is written with ordinary layers plus two routing kinds:

- a router, ``linear`` hidden -> experts, whose scores go through ``softmax`` (Mixtral)
  or a sigmoid (``elementwise``, DeepSeek-V3);
- ``moe_dispatch`` (inputs: the tokens and the scores) gathers each token once per
  expert it is routed to: ``seq`` tokens become ``ceil(seq x top_k x capacity_factor)``
  expert slots. The capacity factor is the slack each expert's buffer has over a
  uniform share (GShard, Lepikhin et al. 2021; Switch, Fedus et al. 2022): at 1.0
  (default) every slot holds a token; above 1.0 the padded slots are computed too;
  below 1.0 the tokens that do not fit are dropped (they skip the experts and pass on
  through the residual), so the experts compute fewer slots;
- the experts' ``linear`` layers with ``experts: E`` and ``top_k: k``: one GEMM over
  all slots with a weight ``E`` times a single expert's, so their MACs scale with the
  routed slots (top-k), their parameters with E, and the parameters one token uses
  (active) are k experts' worth;
- ``moe_combine`` (inputs: the experts' output slots and the scores) sums each
  token's k expert outputs weighted by its gate values, back to ``seq`` tokens.

Pure shape rules, no imports from the layer model (mcdla.hw.layers uses them).
"""

from __future__ import annotations

import math

__all__ = ["dispatched", "combined"]


def _two(kind: str, in_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if len(in_shapes) != 2 or any(len(s) != 2 for s in in_shapes):
        raise ValueError(f"a {kind} layer reads two (tokens, features) inputs, the tokens and the "
                         f"router's scores; got shapes {in_shapes}")
    return in_shapes[0], in_shapes[1]


def dispatched(in_shapes: list[tuple[int, ...]], *, top_k: int, capacity_factor: float = 1.0,
               **_ignored) -> tuple[int, int]:
    """The expert slots (slots, hidden) that ``seq`` tokens routed to ``top_k`` experts fill."""
    (seq, hidden), (scored, experts) = _two("moe_dispatch", in_shapes)
    if scored != seq:
        raise ValueError(f"the scores cover {scored} tokens, the input {seq}")
    if top_k > experts:
        raise ValueError(f"top_k={top_k} is more than the router's {experts} experts")
    return max(1, math.ceil(seq * top_k * capacity_factor)), hidden


def combined(in_shapes: list[tuple[int, ...]], **_ignored) -> tuple[int, int]:
    """The tokens (seq, hidden) the expert slots are summed back into."""
    (_slots, hidden), (seq, _experts) = _two("moe_combine", in_shapes)
    return seq, hidden
