"""The figure of ``mcdla validate --plot``: measured beside simulated.

Left: every collective row that measures bus bandwidth, measured and simulated over
the message size (the nccl-tests curves, one per table and configuration). Right: every other row as simulated /
measured (for an overhead: 1 + the difference), with its tolerance band.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mcdla.plots.save import save_figure

__all__ = ["draw_validation", "VERDICT_COLORS"]

# A row's bar: green when mcdla is within the row's tolerance of the measurement, red when not.
VERDICT_COLORS = {True: "#55a868", False: "#c44e52"}


def draw_validation(outcomes: Sequence, path: str | os.PathLike) -> Path:
    from mcdla import units
    from mcdla.plots.figures import _plt

    plt = _plt()
    curve = [o for o in outcomes if o.measure == "busbw" and o.simulated is not None]
    others = [o for o in outcomes if o.measure != "busbw" and o.simulated is not None]
    fig = plt.figure(figsize=(12.0, 6.0 + 0.16 * len(others)))
    # The curves with their legend in an axis of its own beside them, the bars under both at the
    # figure's width: their labels are long (placed beside the curves, the legend was cut off).
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1], height_ratios=[5.0, 0.16 * len(others) + 1.0])
    left, key_axis, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    key_axis.axis("off")
    # One curve per table, configuration (operation, algorithm, overrides, design) and source: a
    # table may hold several (NVLS on and off, node counts, two clusters' sweeps), each over its sizes.
    def series(o):
        return (o.table, o.args.get("op", "all_reduce"), o.args.get("algorithm") or "",
                tuple(sorted((o.args.get("set") or {}).items())), o.args.get("topology") or "", o.source_title)
    sweeps: dict[tuple, list[str]] = {}  # a configuration measured by several sources: which one a curve is
    for o in curve:
        titles = sweeps.setdefault(series(o)[:5], [])
        if o.source_title not in titles:
            titles.append(o.source_title)

    colours = plt.get_cmap("tab20").colors  # more curves than the default cycle's ten colours
    for n, key in enumerate(dict.fromkeys(series(o) for o in curve)):
        rows = sorted(((units.parse(o.args["size"], "size"), o) for o in curve if series(o) == key),
                      key=lambda row: row[0])
        sizes = [s for s, _ in rows]
        op = "" if key[1] == "all_reduce" else key[1]
        titles = sweeps[key[:5]]
        which = f"(source {titles.index(key[5]) + 1} of {len(titles)})" if len(titles) > 1 else ""
        name = " ".join(str(part) for part in (key[0], key[4], op, key[2], *(f"{k}={v}" for k, v in key[3]), which)
                        if part)
        colour = colours[n % len(colours)]
        left.plot(sizes, [o.measured / 1e9 for _, o in rows], "o-", color=colour, label=name)
        left.plot(sizes, [o.simulated / 1e9 for _, o in rows], "s--", color=colour, alpha=0.6)
    left.set_xscale("log", base=2)
    left.set_xlabel("message size (bytes)")
    left.set_ylabel("bus bandwidth (GB/s)")
    left.set_title("collectives (measured: solid, mcdla: dashed)", fontsize=10)
    left.grid(alpha=0.3)
    if curve:
        key_axis.legend(*left.get_legend_handles_labels(), fontsize=7, loc="upper left", frameon=False)
    ratios = [1 + o.error if o.measure == "overhead" else o.simulated / o.measured for o in others]
    ys = range(len(others))
    right.barh(list(ys), [r - 1 for r in ratios], left=1, color=[VERDICT_COLORS[o.verdict == "pass"]
                                                                   for o in others], height=0.6)
    for y, o in zip(ys, others):
        right.plot([1 - o.tolerance, 1 + o.tolerance], [y, y], "|", color="grey", markersize=14)
    if others:  # what the colours and the ticks mean
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        right.legend(handles=[Patch(color=VERDICT_COLORS[True], label="pass: within its tolerance"),
                              Patch(color=VERDICT_COLORS[False], label="miss: outside it"),
                              Line2D([], [], marker="|", linestyle="none", color="grey", markersize=10,
                                     label="tolerance")],
                     fontsize=8, loc="upper right", bbox_to_anchor=(1.0, -0.14), ncol=3, frameon=False)
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_yticks(list(ys))
    right.set_yticklabels([f"{o.table}: {o.quantity}" for o in others], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("mcdla / measured (tolerance marked)")
    right.set_title("steps, memory, overhead")
    fig.tight_layout()
    out = save_figure(fig, path, bbox_inches="tight")  # the long labels and the legend kept whole
    plt.close(fig)
    return out
