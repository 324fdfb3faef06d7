"""A roofline plot of one device-node with a workload's kernels as points (``mcdla layers --plot``).

Log-log axes, as seed 003 draws them: arithmetic intensity (MAC per byte of HBM
traffic) across, attained throughput (MAC/s) up. The device's ceiling is
``min(peak, intensity x HBM bandwidth)``: a slope of one decade per decade up to the
ridge point, flat after it. Each kernel with MACs is a point, coloured by phase,
shaped by what it computes (forward GEMM, dX, dW) and sized by its share of the
phase's time, so the kernels that matter stand out; the slowest few are labelled.
Element-wise, pooling and normalization kernels have no MACs, so they have no place
on a log axis; the legend says how many there are and what share of the time they
take.

matplotlib is imported inside :func:`draw_roofline` with the Agg backend, so
importing this module (as ``mcdla layers`` does to check ``--plot`` early) is cheap.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from mcdla.plots.save import SUFFIXES, check_plot_path, save_figure

__all__ = ["SUFFIXES", "check_plot_path", "draw_roofline"]

_PHASE_COLORS = {"fwd": "#4c72b0", "bwd": "#dd8452", "recompute": "#55a868"}
# What a GEMM kernel computes -> marker; forward and recompute kernels are both "fwd"-like.
_MARKERS = {"fwd": ("o", "forward GEMM"), "dx": ("^", "dX GEMM"), "dw": ("s", "dW GEMM")}
_LABELLED = 5  # the slowest kernels get their name written beside them


def _si(value: float, unit: str) -> str:
    """1.28e14, "MAC/s" -> "128 TMAC/s"."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _marker(kernel: str) -> str:
    return _MARKERS.get(kernel, _MARKERS["fwd"])[0]


def draw_roofline(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Draws ``report`` (:func:`mcdla.metrics.roofline.layer_report`) to ``path`` (PNG or SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    matplotlib.rcParams["svg.hashsalt"] = "mcdla"  # stable SVG ids: same report, same file
    path = check_plot_path(path)
    roof = report["roofline"]
    peak, bw, ridge = roof["peak_MACps"], roof["hbm_bw_Bps"], roof["ridge_MAC_per_B"]
    kernels = report["kernels"]
    points = [k for k in kernels if k["macs"] > 0]
    streams = [k for k in kernels if k["macs"] == 0]
    phase_time = {t["phase"]: t["time_s"] for t in report["totals"]}
    total_s = sum(phase_time.values())

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    intensities = [k["intensity_MAC_per_B"] for k in points] or [ridge]
    x_lo = min(min(intensities), ridge) / 4
    x_hi = max(max(intensities), ridge) * 4
    # The ceiling, drawn as its two straight pieces (exact on log-log axes).
    ax.plot([x_lo, ridge], [x_lo * bw, peak], color="black", linewidth=1.6)
    ax.plot([ridge, x_hi], [peak, peak], color="black", linewidth=1.6)
    ax.axvline(ridge, color="grey", linestyle=":", linewidth=1.0)

    # Marker area grows with the kernel's share of its phase's time.
    longest = max((k["time_s"] for k in points), default=1.0)
    for phase, color in _PHASE_COLORS.items():
        for kernel_kind in ("fwd", "dx", "dw"):
            mine = [k for k in points if k["phase"] == phase
                    and (k["kernel"] if k["kernel"] in _MARKERS else "fwd") == kernel_kind]
            if not mine:
                continue
            ax.scatter([k["intensity_MAC_per_B"] for k in mine], [k["attained_MACps"] for k in mine],
                       s=[12 + 200 * k["time_s"] / longest for k in mine], c=color,
                       marker=_marker(kernel_kind), alpha=0.75, edgecolors="black", linewidths=0.4,
                       zorder=3)

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    y_lo = min([k["attained_MACps"] for k in points] + [x_lo * bw]) / 2
    ax.set_ylim(y_lo, peak * 3)
    # The slowest kernels often sit close together near the ridge, so their labels go
    # in a column in the empty corner above the memory slope, each with a leader line;
    # ordered top to bottom as the points are, so the lines do not cross.
    slowest = sorted(points, key=lambda k: -k["time_s"])[:_LABELLED]
    for rank, k in enumerate(sorted(slowest, key=lambda k: (-k["attained_MACps"], k["intensity_MAC_per_B"]))):
        ax.annotate(f"{k['layer']}:{k['kernel']} ({k['time_s'] * 1e3:.2g} ms)",
                    (k["intensity_MAC_per_B"], k["attained_MACps"]),
                    xytext=(0.03, 0.93 - 0.055 * rank), textcoords="axes fraction", fontsize=6.5,
                    ha="left", va="center",
                    arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5,
                                "shrinkB": 4})
    ax.annotate(f"peak {_si(peak, 'MAC/s')}", (x_hi, peak), xytext=(-4, 4), textcoords="offset points",
                ha="right", va="bottom", fontsize=8)
    ax.annotate(f"ridge {ridge:.3g} MAC/B", (ridge, peak * 3), xytext=(3, -3), textcoords="offset points",
                ha="left", va="top", fontsize=8, color="dimgrey")
    ax.set_xlabel("arithmetic intensity (MAC/byte of HBM traffic)")
    ax.set_ylabel("attained throughput (MAC/s)")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)

    phases = [p for p in _PHASE_COLORS if p in phase_time]
    handles = [Line2D([], [], marker="o", linestyle="none", color=_PHASE_COLORS[p],
                      label=f"{p} ({phase_time[p] * 1e3:.3g} ms"
                      f"{'' if any(k['phase'] == p for k in points) else ', no MACs'})")
                for p in phases]
    kinds = {k["kernel"] if k["kernel"] in _MARKERS else "fwd" for k in points}
    handles += [Line2D([], [], marker=m, linestyle="none", color="grey", label=label)
                for kind, (m, label) in _MARKERS.items() if kind in kinds]
    if streams:
        stream_s = sum(k["time_s"] for k in streams)
        share = f", {stream_s / total_s:.0%} of the time" if total_s else ""
        handles.append(Line2D([], [], linestyle="none", label=f"+{len(streams)} kernels without MACs "
                              f"(element-wise, pool, norm){share}: not drawn"))
    ax.legend(handles=handles, fontsize=7, loc="lower right", title="marker area ~ kernel time",
              title_fontsize=7)
    per_device = (f"{report['local_batch']} samples per device" if report["shards"] == 1
                  else f"whole batch {report['local_batch']}, 1/{report['shards']} of each layer")
    ax.set_title(f"Roofline: {report['workload']} on a {report['topology']} device-node\n"
                 f"{report['parallel']}-parallel, {per_device}", fontsize=10)
    fig.tight_layout()
    # The slope label follows the line's angle on screen, which depends on the axes' aspect.
    (x0, y0), (x1, y1) = ax.transData.transform([(x_lo, x_lo * bw), (ridge, peak)])
    slope_x = x_lo * 1.5
    ax.annotate(f"HBM {_si(bw, 'B/s')}", (slope_x, slope_x * bw), xytext=(6, -6),
                textcoords="offset points", ha="left", va="top", fontsize=8,
                rotation=math.degrees(math.atan2(y1 - y0, x1 - x0)), rotation_mode="anchor")

    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path
