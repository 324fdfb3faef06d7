"""Per-link utilization over one iteration, drawn from a trace (no re-simulation).

``mcdla sim --trace FILE`` writes, besides the spans, one counter per directed node
pair (``D0>M0``): the fraction of the pair's capacity in use, piecewise constant
between changes (see :mod:`mcdla.io.trace`). This module reads those counters back
and draws a heatmap, links x time: one row per directed link, the colour of a cell
the link's *average* utilization over that time bin (the exact time integral of the
step function, so a short burst is not lost between two samples). Beneath it, the
same bins as lines for the busiest links and the mean over all links, to read
values off an axis.

matplotlib is imported inside the drawing function (Agg backend), as in
:mod:`mcdla.plots.figures`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcdla.errors import InputError
from mcdla.io.write import make_folder
from mcdla.plots.save import save_figure

__all__ = ["read_link_counters", "binned", "render_link_utilization"]

_LINK_CATEGORY = "link_utilization"  # mcdla.io.trace.LINK_CATEGORY
_BINS = 200
_LINES = 8  # busiest links drawn as lines


def read_link_counters(path: Path | str) -> tuple[dict[str, list[tuple[float, float]]], float, dict[str, Any]]:
    """``(link -> [(time_us, utilization)], iteration_time_us, otherData)`` of a trace file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not a JSON trace: {exc.msg} at line {exc.lineno}", file=str(path)) from None
    events = document.get("traceEvents") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise InputError("not a trace: no traceEvents list", file=str(path))
    links: dict[str, list[tuple[float, float]]] = {}
    end_us = 0.0
    for event in events:
        if not isinstance(event, dict):
            continue
        try:
            if event.get("ph") == "C" and event.get("cat") == _LINK_CATEGORY:
                links.setdefault(str(event["name"]), []).append(
                    (float(event["ts"]), float(event["args"]["utilization"])))
            if event.get("ph") == "X":
                end_us = max(end_us, float(event["ts"]) + float(event["dur"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"malformed trace event {json.dumps(event)[:80]}", file=str(path)) from None
    if not links:
        raise InputError("no link utilization counters (write it with mcdla sim --trace)", file=str(path))
    other = document.get("otherData") or {}
    end_us = float(other.get("iteration_time_us", end_us) or end_us)
    for series in links.values():
        series.sort()
        end_us = max(end_us, series[-1][0])
    return dict(sorted(links.items())), end_us, other


def binned(series: list[tuple[float, float]], end: float, bins: int) -> list[float]:
    """Average of a step function ``series`` over ``bins`` equal bins of ``[0, end]``."""
    if end <= 0:
        return [series[-1][1] if series else 0.0] * bins
    width = end / bins
    totals = [0.0] * bins
    points = list(series) + [(end, 0.0)]
    for (t0, value), (t1, _next) in zip(points, points[1:]):
        t0, t1 = max(t0, 0.0), min(t1, end)
        if t1 <= t0 or value == 0:
            continue
        first, last = int(t0 // width), min(int(t1 // width), bins - 1)
        for b in range(first, last + 1):
            lo, hi = max(t0, b * width), min(t1, (b + 1) * width)
            if hi > lo:
                totals[b] += value * (hi - lo)
    return [t / width for t in totals]


def render_link_utilization(trace: Path | str, out: Path | str | None = None) -> list[Path]:
    """Draws ``<trace stem>_links.png`` and ``.svg`` into ``out`` (default: beside the trace)."""
    from mcdla.plots.figures import _plt

    trace = Path(trace)
    links, end_us, other = read_link_counters(trace)
    out = make_folder(out if out is not None else trace.parent, "--out")
    names = list(links)
    grid = [binned(links[n], end_us, _BINS) for n in names]
    plt = _plt()
    rows = len(names)
    fig, (heat, lines) = plt.subplots(
        2, 1, figsize=(11.0, 2.5 + 0.18 * rows + 3.0),
        gridspec_kw={"height_ratios": [max(2.0, 0.18 * rows), 3.0]}, squeeze=True)
    end_ms = end_us / 1e3
    image = heat.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0,
                        vmax=1.0, extent=(0.0, end_ms, rows - 0.5, -0.5))
    heat.set_yticks(range(rows))
    heat.set_yticklabels(names, fontsize=max(4, min(8, int(400 / max(rows, 1)))))
    heat.set_xlabel("time (ms)")
    heat.set_ylabel("directed link")
    title = " ".join(str(other[k]) for k in ("workload", "topology", "policy", "parallel") if k in other)
    heat.set_title(f"Link utilization over one iteration{': ' + title if title else ''}")
    fig.colorbar(image, ax=heat, label="utilization (fraction of capacity)", pad=0.01)
    # Lines of the binned averages (raw steps of dozens of links are unreadable):
    # the busiest links, and the mean over all links.
    centers = [(b + 0.5) * end_ms / _BINS for b in range(_BINS)]
    busiest = sorted(range(rows), key=lambda r: (-sum(grid[r]), names[r]))[:_LINES]
    for r in busiest:
        lines.plot(centers, grid[r], label=names[r], linewidth=0.9)
    mean = [sum(col) / rows for col in zip(*grid)]
    lines.plot(centers, mean, color="black", linewidth=1.8, label="mean of all links")
    lines.set_xlim(0.0, end_ms)
    lines.set_ylim(0.0, 1.05)
    lines.set_xlabel("time (ms)")
    lines.set_ylabel("utilization")
    lines.set_title(f"The {len(busiest)} busiest links and the mean, averaged over {end_ms / _BINS:.3g} ms bins")
    lines.legend(fontsize=7, ncol=4, loc="upper right")
    lines.grid(alpha=0.3)
    fig.tight_layout()
    paths = [out / f"{trace.stem}_links.png", out / f"{trace.stem}_links.svg"]
    try:
        for path in paths:
            save_figure(fig, path, option="--out")
    finally:
        plt.close(fig)
    return paths
