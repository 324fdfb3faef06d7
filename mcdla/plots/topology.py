"""Drawings of the design points: nodes by kind, physical links, rings in colour.

One PNG per topology for ``docs/topologies.md``. Devices are blue squares,
memory-nodes green circles, PCIe switches grey diamonds, fabric switches purple
octagons, CPU sockets orange hexagons. Every physical link is a grey line labelled with its number of parallel
links when more than one (dashed and bent for links to the host). Each listed ring is drawn
over the links it uses, in its own colour, offset sideways so rings sharing a link
stay visible. Only this module imports matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mcdla.config.nodes import NODE_KINDS  # noqa: E402
from mcdla.hw.topology import Topology  # noqa: E402
from mcdla.plots.save import save_figure  # noqa: E402

__all__ = ["draw_topology", "layout"]

_STYLE = {
    "device": dict(marker="s", color="#4c72b0", size=900),
    "memory": dict(marker="o", color="#55a868", size=800),
    "switch": dict(marker="D", color="#8c8c8c", size=500),
    "fabric": dict(marker="8", color="#8172b2", size=1400),
    "cpu": dict(marker="h", color="#dd8452", size=1200),
    "nvme": dict(marker="v", color="#937860", size=1100),
}
_RING_COLOURS = ("#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#937860", "#da8bc3")


def _circle(nodes, radius, phase=math.pi / 2):
    n = len(nodes)
    return {
        node: (radius * math.cos(phase - 2 * math.pi * i / n), radius * math.sin(phase - 2 * math.pi * i / n))
        for i, node in enumerate(nodes)
    }


def layout(topo: Topology) -> dict[str, tuple[float, float]]:
    """Positions chosen so each design point reads like the paper's figures."""
    devs = topo.devices
    kinds = dict(topo.graph.nodes(data="kind"))
    pos: dict[str, tuple[float, float]] = {}
    fabric = [n for n, k in kinds.items() if NODE_KINDS.get(k).pairs]
    if len(devs) == 1:
        pos[devs[0]] = (0.0, 0.0)
    elif len([n for n in fabric if not topo.graph.nodes[n].get("spine")]) > 1:
        # Several domains (a cluster, a two-level switch): each switch with its devices
        # round it, side by side; the spines in a row above.
        leaves = [n for n in fabric if not topo.graph.nodes[n].get("spine")]
        spines = [n for n in fabric if topo.graph.nodes[n].get("spine")]
        for j, leaf in enumerate(leaves):
            pos[leaf] = (3.2 * j, 0.0)
            members = [d for d in devs if topo.graph.has_edge(d, leaf)]
            pos.update({d: (3.2 * j + x, y) for d, (x, y) in _circle(members, 1.2).items()})
        for i, spine in enumerate(spines):
            pos[spine] = (3.2 * (len(leaves) - 1) * (i + 0.5) / len(spines), 2.4)
    elif fabric:
        # Switched: devices round their switches, memory-nodes on the switch inside them.
        pos.update(_circle(devs, 2.4))
        for i, n in enumerate(fabric):
            pos[n] = (1.4 * (i - (len(fabric) - 1) / 2), 0.0)
        on_switch = [m for m in topo.memory_nodes if any(NODE_KINDS.get(kinds[o]).pairs for o in topo.graph.successors(m))]
        pos.update(_circle(on_switch, 1.3, math.pi / 2 - math.pi / max(len(on_switch), 1)))
    elif topo.memory_nodes and all(len(topo.serves.get(d, ())) == 1 for d in devs):
        # Star: own memory-node inside each device, memory ring folded inward.
        pos.update(_circle(devs, 2.2))
        pos.update(_circle(topo.memory_nodes, 1.1))
    elif topo.memory_nodes and topo.ring_cycles:
        # Ring: devices and memory-nodes alternate on one circle, in ring order.
        pos.update(_circle(list(topo.ring_cycles[0]), 2.4))
    elif len(devs) in (4, 8):
        # A square, or a cube in perspective: D0-D3 on the front face, D4-D7 behind.
        # dc's quads D0-D3 / D4-D7 are the faces; hc's 3-cube numbers neighbours by bit.
        for i, d in enumerate(devs):
            x, y, z = i & 1, (i >> 1) & 1, (i >> 2) & 1
            pos[d] = (2.0 * x + 1.1 * z, -2.0 * y + 0.8 * z)
    else:
        pos.update(_circle(devs, 2.0))
    xs = [p[0] for p in pos.values()]
    left, right, bottom = min(xs), max(xs), min(p[1] for p in pos.values())
    for cpu in (n for n, k in kinds.items() if k == "cpu"):
        # A superchip's CPU sits just outside its devices.
        own = [pos[d] for d in topo.graph.successors(cpu) if kinds[d] == "device"]
        if own:
            x, y = sum(p[0] for p in own) / len(own), sum(p[1] for p in own) / len(own)
            pos[cpu] = (1.25 * x, 1.25 * y)
    for row, kind in ((1.3, "switch"), (1.9, "memory"), (2.5, "cpu"), (3.1, "nvme")):
        members = [n for n, k in kinds.items() if k == kind and n not in pos]
        for i, n in enumerate(members):
            frac = (i + 0.5) / len(members)
            pos[n] = (left - 0.5 + (right - left + 1.0) * frac, bottom - row)
    return pos


def _offset(p, q, amount):
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = math.hypot(dx, dy) or 1.0
    nx_, ny_ = -dy / length * amount, dx / length * amount
    return (p[0] + nx_, p[1] + ny_), (q[0] + nx_, q[1] + ny_)


def draw_topology(topo: Topology, path: str | Path) -> None:
    """Writes a PNG drawing of ``topo`` to ``path``."""
    pos = layout(topo)
    kinds = dict(topo.graph.nodes(data="kind"))
    fig, ax = plt.subplots(figsize=(7.5, 7.0))
    # Links listed more than once between one pair are drawn once, with the total.
    pairs: dict[frozenset, tuple[str, str, int]] = {}
    for a, b, _alias, count in topo.physical_links:
        key = frozenset((a, b))
        pairs[key] = (a, b, pairs.get(key, (a, b, 0))[2] + count)
    for a, b, count in pairs.values():
        host = not (NODE_KINDS.get(kinds[a]).on_rings and NODE_KINDS.get(kinds[b]).on_rings)  # PCIe, a socket
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if host:
            # Host links bend, so a line to a switch never hides behind another device.
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=1, arrowprops=dict(
                arrowstyle="-", color="#b0b0b0", lw=1.0 + 1.2 * min(count, 4), ls="--",
                connectionstyle="arc3,rad=0.3", shrinkA=0, shrinkB=0))
        else:
            ax.plot([x0, x1], [y0, y1], color="#b0b0b0", lw=1.0 + 1.2 * min(count, 4),
                    zorder=1, solid_capstyle="round")
        if count > 1:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"x{count}", fontsize=7, color="#404040",
                    ha="center", va="center", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    # Rings: one colour each, shifted sideways so rings on one link sit side by side.
    # At most one ring per colour: a switch's many rings all run over the same links.
    cycles = topo.ring_cycles[:len(_RING_COLOURS)]
    spread = 0.07
    for r, cycle in enumerate(cycles):
        colour = _RING_COLOURS[r % len(_RING_COLOURS)]
        shift = (r - (len(cycles) - 1) / 2) * spread
        hops = list(zip(cycle, cycle[1:] + cycle[:1]))
        for k, (a, b) in enumerate(hops):
            # Offset in a direction-independent frame, so a ring and its reverse overlap.
            p, q = (pos[a], pos[b]) if a < b else (pos[b], pos[a])
            (x0, y0), (x1, y1) = _offset(p, q, shift)
            ax.plot([x0, x1], [y0, y1], color=colour, lw=1.6, zorder=2,
                    label=f"ring {r} ({sum(1 for _ in hops)} hops)" if k == 0 else None)
    for kind, style in _STYLE.items():
        nodes = [n for n, k in kinds.items() if k == kind]
        if not nodes:
            continue
        scale = min(1.0, 16 / len(nodes))  # crowded circles (NVL72) get smaller marks
        ax.scatter([pos[n][0] for n in nodes], [pos[n][1] for n in nodes], s=style["size"] * scale,
                   marker=style["marker"], color=style["color"], edgecolors="black", zorder=3)
        for n in nodes:
            ax.text(pos[n][0], pos[n][1], n, ha="center", va="center", fontsize=8 * max(scale, 0.5),
                    color="white", fontweight="bold", zorder=5)
    ax.set_title(f"{topo.name}: {topo.description}", fontsize=9)
    if len(topo.ring_cycles) > len(cycles):
        ax.plot([], [], color="none", label=f"... {len(topo.ring_cycles) - len(cycles)} more rings")
    if cycles:
        ax.legend(loc="upper left", fontsize=7, framealpha=0.9, bbox_to_anchor=(1.0, 1.0))
    ax.set_aspect("equal")
    ax.margins(0.12)
    ax.axis("off")
    fig.tight_layout()
    try:
        save_figure(fig, path, option="path", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
