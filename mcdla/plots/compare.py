"""The bar chart of ``mcdla compare --plot``: one stacked bar per design point.

Each bar is one design's iteration split as in the paper's Fig. 11: compute, then the
synchronization and the virtualization the compute stream waits for (exposed), in
milliseconds; the speedup over the first design is written above its bar.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcdla.plots.save import save_figure

__all__ = ["draw_compare"]

# (label, field path in a compare row, colour of mcdla.plots.figures' Fig. 11)
_PARTS = (
    ("compute", ("busy_s", "compute"), "compute"),
    ("exposed sync", ("exposed_s", "sync"), "sync"),
    ("exposed virtualization", ("exposed_s", "virtualization"), "virtualization"),
)


def draw_compare(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Draws ``rows`` (:func:`mcdla.cli.compare.compare`) to ``path`` (.png or .svg)."""
    from mcdla.plots.figures import _COLORS, _plt

    plt = _plt()
    names = [str(r["design"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2.0), 4.2))
    bottoms = [0.0] * len(rows)
    for label, (group, key), colour in _PARTS:
        heights = [1e3 * float(r[group][key]) for r in rows]
        ax.bar(range(len(rows)), heights, bottom=bottoms, color=_COLORS[colour], label=label, width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for i, r in enumerate(rows):
        ax.text(i, max(bottoms[i], 1e3 * float(r["iteration_time_s"])), f"{r['speedup']:.2f}x", ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("time per iteration (ms)")
    first = rows[0]
    ax.set_title(f"{first['workload']}, {first['parallel']}-parallel, batch {first['batch']}: "
                 f"speedup over {names[0]}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
