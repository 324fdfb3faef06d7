"""The figure of ``mcdla validate --plot``: measured beside simulated.

Left: every collective row that measures bus bandwidth, measured and simulated over
the message size (the nccl-tests curve). Right: every other row as simulated /
measured (for an overhead: 1 + the difference), with its tolerance band.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mcdla.plots.save import save_figure

__all__ = ["draw_validation"]


def draw_validation(outcomes: Sequence, path: str | os.PathLike) -> Path:
    from mcdla import units
    from mcdla.plots.figures import _plt

    plt = _plt()
    curve = [o for o in outcomes if o.measure == "busbw" and o.simulated is not None]
    others = [o for o in outcomes if o.measure != "busbw" and o.simulated is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.4), gridspec_kw={"width_ratios": [1, 1.3]})
    for table in dict.fromkeys(o.table for o in curve):
        rows = sorted((units.parse(o.args["size"], "size"), o) for o in curve if o.table == table)
        sizes = [s for s, _ in rows]
        left.plot(sizes, [o.measured / 1e9 for _, o in rows], "o-", color="black", label=f"measured ({table})")
        left.plot(sizes, [o.simulated / 1e9 for _, o in rows], "s--", color="#dd8452", label="mcdla")
    left.set_xscale("log", base=2)
    left.set_xlabel("message size (bytes)")
    left.set_ylabel("bus bandwidth (GB/s)")
    left.set_title("collectives")
    left.grid(alpha=0.3)
    if curve:
        left.legend(fontsize=8)
    ratios = [1 + o.error if o.measure == "overhead" else o.simulated / o.measured for o in others]
    ys = range(len(others))
    right.barh(list(ys), [r - 1 for r in ratios], left=1, color=["#55a868" if o.verdict == "pass" else "#c44e52"
                                                                   for o in others], height=0.6)
    for y, o in zip(ys, others):
        right.plot([1 - o.tolerance, 1 + o.tolerance], [y, y], "|", color="grey", markersize=14)
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_yticks(list(ys))
    right.set_yticklabels([o.quantity for o in others], fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("mcdla / measured (tolerance marked)")
    right.set_title("steps, memory, overhead")
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out
