"""The paper's figures, drawn from results tables (the only module importing matplotlib).

Each figure is a function ``(table, deps) -> matplotlib Figure``; ``table`` is the
sweep's results table (pandas), ``deps`` the tables of the experiments it depends on
(the power figure takes its speedup from ``fig11_13``). :func:`draw` saves a figure
as PNG and SVG. matplotlib is imported inside, with the Agg backend, so that importing
this module (and ``mcdla --help``) stays fast and no display is ever needed.

Where the paper gives a number, it is drawn beside mcdla's as a black marker or a
dashed line labelled "paper". Derived quantities (speedups, harmonic means, scaling)
come from :mod:`mcdla.metrics.compare`, the same code the report uses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from mcdla.io.write import make_folder
from mcdla.metrics import compare
from mcdla.metrics.paper import PAPER, TABLE_IV
from mcdla.plots.save import save_figure

__all__ = ["draw", "render"]

_COLORS = {"compute": "#4c72b0", "sync": "#dd8452", "virtualization": "#55a868"}
_DESIGN_COLORS = {
    "dc": "#8c8c8c", "hc": "#dd8452", "star": "#937860", "ring+local": "#64b5cd",
    "ring+bw_aware": "#4c72b0", "oracle": "#55a868", "dc+pcie4": "#c44e52",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Stable SVG ids and no timestamps: the same table gives the same files.
    matplotlib.rcParams["svg.hashsalt"] = "mcdla"
    return plt


def _name(design: str) -> str:
    return compare.DESIGN_NAMES.get(design, design)


def _workloads(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["workload"])) if "workload" in table else []


def _parallel_modes(table: pd.DataFrame) -> list[str]:
    modes = list(dict.fromkeys(table["parallel"])) if "parallel" in table else ["data"]
    return modes or ["data"]


def _panels(plt, count: int, width: float = 11.0, height: float = 3.6):
    fig, axes = plt.subplots(count, 1, figsize=(width, height * count), squeeze=False)
    return fig, [row[0] for row in axes]


def _paper_marker(ax, x: float, value: float | None, label_once: list[bool]) -> None:
    if value is None:
        return
    ax.plot([x], [value], marker="D", color="black", markersize=6, linestyle="none",
            label=None if label_once[0] else "paper")
    label_once[0] = True


def fig09(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    plt = _plt()
    data = compare.normalized_collectives(table)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    keys = ["op", "size"] if "size" in data else ["op"]
    for key, group in data.groupby(keys, sort=False):
        op, size = key[0], (key[1] if len(key) > 1 else None)
        group = group.sort_values("ring")
        label = op.replace("_", "-") + (f" ({size})" if size is not None and data["size"].nunique() > 1 else "")
        ax.plot(group["ring"], group["normalized"], marker="o", label=label)
    rings = sorted(data["ring"].unique()) if len(data) else []
    ax.set_xticks(rings)
    ax.set_xlabel("nodes in the ring")
    ax.set_ylabel("latency (normalized to the smallest ring)")
    ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
    ax.set_title("Fig. 9: ring collective latency vs ring size")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _design_order(data: pd.DataFrame) -> list[str]:
    """The designs present, in the paper's order (others, e.g. labels, as they appear)."""
    present = list(dict.fromkeys(data["design"]))
    return [d for d in compare.DESIGNS if d in present] or present


def _by_design(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The finished rows with their design, the designs in paper order, the parallel modes."""
    data = compare.with_design(table)
    return data, _design_order(data), _parallel_modes(data)


def fig11(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """Stacked busy time per workload and design, normalized to each workload's tallest bar."""
    plt = _plt()
    data, designs, modes = _by_design(table)
    fig, axes = _panels(plt, len(modes), width=max(11.0, 0.22 * len(designs) * len(_workloads(data)) + 2))
    parts = ("compute", "sync", "virtualization")
    for ax, mode in zip(axes, modes):
        panel = data[data["parallel"] == mode]
        ticks, labels = [], []
        x = 0.0
        for workload in _workloads(panel):
            rows = panel[panel["workload"] == workload]
            totals = sum(rows[f"busy_s.{p}"].fillna(0) for p in parts)
            tallest = float(totals.max()) if len(rows) else 1.0
            tallest = tallest if tallest > 0 else 1.0
            for design in designs:
                row = rows[rows["design"] == design]
                if not row.empty:
                    bottom = 0.0
                    for part in parts:
                        height = float(row[f"busy_s.{part}"].fillna(0).iloc[0]) / tallest
                        ax.bar(x, height, bottom=bottom, width=0.8, color=_COLORS[part],
                               label=part if (x == 0.0) else None)
                        bottom += height
                ticks.append(x)
                labels.append(_name(design))
                x += 1.0
            ax.text(x - len(designs) / 2 - 0.5, 1.04, workload, ha="center", fontsize=8)
            x += 1.0
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("busy time (normalized)")
        ax.set_title(f"Fig. 11: latency breakdown, {mode}-parallel (normalized to each workload's tallest bar)", fontsize=10)
        handles, names = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles[:3], names[:3], fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _grouped_bars(ax, data: pd.DataFrame, value: str, designs: list[str], scale: float = 1.0,
                  extra: dict[str, pd.Series] | None = None) -> list[str]:
    groups = _workloads(data)
    width = 0.8 / max(len(designs), 1)
    for i, design in enumerate(designs):
        rows = data[data["design"] == design].set_index("workload")
        heights = [float(rows[value].get(w, math.nan)) / scale if w in rows.index else math.nan for w in groups]
        if extra and design in extra:
            heights.append(extra[design])
        xs = [g + (i - (len(designs) - 1) / 2) * width for g in range(len(heights))]
        ax.bar(xs, heights, width=width, color=_DESIGN_COLORS.get(design), label=_name(design))
    return groups


def fig12(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """CPU memory bandwidth used by offload traffic, average (bars) and peak (ticks)."""
    plt = _plt()
    data, designs, modes = _by_design(table)
    fig, axes = _panels(plt, len(modes))
    for ax, mode in zip(axes, modes):
        panel = data[data["parallel"] == mode]
        groups = _grouped_bars(ax, panel, "cpu_mem_bw_Bps.avg", designs, scale=1e9)
        width = 0.8 / max(len(designs), 1)
        for i, design in enumerate(designs):
            rows = panel[panel["design"] == design].set_index("workload")
            for g, workload in enumerate(groups):
                if workload in rows.index:
                    peak = float(rows["cpu_mem_bw_Bps.peak"].get(workload)) / 1e9
                    x = g + (i - (len(designs) - 1) / 2) * width
                    ax.plot([x - width / 2, x + width / 2], [peak, peak], color="black", linewidth=1)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, fontsize=8)
        ax.set_ylabel("CPU memory bandwidth (GB/s)")
        ax.set_title(f"Fig. 12: CPU memory bandwidth per busiest socket, {mode}-parallel "
                     "(bars: average, ticks: peak)", fontsize=10)
        # Only the designs that use CPU memory: the memory-centric ones offload to their
        # memory-nodes, and the oracle offloads nothing, so their bars are zero.
        used = {_name(d) for d in designs
                if (panel.loc[panel["design"] == d, "cpu_mem_bw_Bps.avg"].astype(float) > 0).any()}
        handles, names = ax.get_legend_handles_labels()
        shown = [(h, n) for h, n in zip(handles, names) if n in used]
        unused = [_name(d) for d in designs if _name(d) not in used]
        if shown:
            ax.legend(*zip(*shown), fontsize=7, ncol=len(shown), title_fontsize=7,
                      title=f"0 GB/s, not shown: {', '.join(unused)}" if unused else None)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def fig13(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame], paper: bool = True) -> Any:
    """Speedup over DC-DLA per workload and design, with the harmonic mean (HM); with
    ``paper``, Fig. 13's own values beside the means."""
    plt = _plt()
    data = compare.with_design(table)
    speedups = compare.speedups(data)
    designs = [d for d in compare.DESIGNS if d in set(speedups["design"])]
    modes = _parallel_modes(data)
    fig, axes = _panels(plt, len(modes))
    for ax, mode in zip(axes, modes):
        panel = speedups[speedups["parallel"] == mode]
        means = {d: compare.harmonic_mean(panel[panel["design"] == d]["speedup"]) for d in designs}
        groups = _grouped_bars(ax, panel.rename(columns={"speedup": "value"}), "value", designs, extra=means)
        width = 0.8 / max(len(designs), 1)
        once = [False]
        for i, design in enumerate(designs):
            x = len(groups) + (i - (len(designs) - 1) / 2) * width
            if paper:
                _paper_marker(ax, x, PAPER.get(f"fig13.{design}.{mode}"), once)
        ax.set_xticks(range(len(groups) + 1))
        ax.set_xticklabels(groups + ["HM"], fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.6)
        ax.set_ylabel("speedup over DC-DLA")
        ax.set_ylim(0, 1.25 * max([v for v in panel["speedup"] if v == v] + [1.0]))
        ax.set_title(f"Fig. 13: performance, {mode}-parallel", fontsize=10)
        ax.legend(fontsize=7, ncol=len(designs) + 1)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _fig13_as(title: str) -> Callable[[pd.DataFrame, Mapping[str, pd.DataFrame]], Any]:
    """Fig. 13's speedup panels for a sensitivity experiment of Section V-B (without
    Fig. 13's paper values: the paper gives these rows one overall number, in the report)."""
    def draw(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
        fig = fig13(table, deps, paper=False)
        for ax in fig.axes:
            ax.set_title(ax.get_title().replace("Fig. 13", title), fontsize=10)
        return fig
    return draw


# Section V-B's sensitivity rows: a scaled-up node, a faster device-node, compressed offloads.
dgx2 = _fig13_as("DGX-2-class node (16 devices)")
tpuv2 = _fig13_as("TPUv2-class devices")
cdma = _fig13_as("Over DC-DLA with cDMA (2.6x)")


def fig14(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """Speedup of MC-DLA(B) over DC-DLA vs batch size, per workload and harmonic mean."""
    plt = _plt()
    speedups = compare.speedups(compare.with_design(table))
    speedups = speedups[speedups["design"] == "ring+bw_aware"]
    modes = _parallel_modes(speedups) if len(speedups) else ["data"]
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.0), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        panel = speedups[speedups["parallel"] == mode]
        for workload in _workloads(panel):
            rows = panel[panel["workload"] == workload].sort_values("batch")
            ax.plot(rows["batch"], rows["speedup"], marker=".", linewidth=0.8, alpha=0.7, label=workload)
        hm = panel.groupby("batch")["speedup"].apply(compare.harmonic_mean)
        ax.plot(hm.index, hm.values, color="black", linewidth=2.2, marker="o", label="HM")
        ax.axhline(PAPER["fig14.ring+bw_aware.all"], color="black", linestyle="--", linewidth=1,
                   label="paper avg 2.17x")
        ax.set_xscale("log", base=2)
        batches = sorted(panel["batch"].unique()) if len(panel) else []
        ax.set_xticks(batches)
        ax.set_xticklabels([str(int(b)) for b in batches])
        ax.set_xlabel("batch size (global)")
        ax.set_ylabel("speedup of MC-DLA(B) over DC-DLA")
        ax.set_title(f"Fig. 14: batch sensitivity, {mode}-parallel", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def pcie4(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    plt = _plt()
    summary = compare.pcie_summary(table)
    bars = [("DC-DLA gen4\nover gen3", summary["dc_gain"], PAPER["pcie4.dc_gain"]),
            ("MC-DLA(B)\nover DC-DLA gen3", summary["ring_over_dc"], PAPER["fig13.ring+bw_aware.all"]),
            ("MC-DLA(B)\nover DC-DLA gen4", summary["gap"], PAPER["pcie4.gap"])]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    once = [False]
    for i, (_label, value, paper) in enumerate(bars):
        ax.bar(i, value, color="#4c72b0", label="mcdla" if i == 0 else None)
        _paper_marker(ax, i, paper, once)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b[0] for b in bars], fontsize=8)
    ax.set_ylabel("speedup (harmonic mean)")
    ax.set_title("DC-DLA with PCIe gen4 (all workloads, data + model)", fontsize=10)
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def headlines(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    plt = _plt()
    rows = compare.headline_readings(table)
    names = {"fig13.hc.data": "HC-DLA over DC-DLA, data", "fig13.hc.model": "HC-DLA over DC-DLA, model",
             "fig13.ring+bw_aware.model": "MC-DLA(B) over DC-DLA, model",
             "fig13.ring+bw_aware.data": "MC-DLA(B) over DC-DLA, data (reproduced)"}
    fig, axes = plt.subplots(1, len(names), figsize=(15, 4.0), sharey=False)
    for ax, (key, title) in zip(axes, names.items()):
        values = [r[key] for r in rows]
        ax.barh(range(len(rows)), values, color="#4c72b0")
        ax.axvline(PAPER[key], color="#c44e52", linestyle="--", label=f"paper {PAPER[key]:.2f}x")
        ax.set_yticks(range(len(rows)), [r["reading"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("speedup (harmonic mean)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("The unreproduced headlines, one changed reading of the paper at a time", fontsize=10)
    fig.tight_layout()
    return fig


def scalability(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    plt = _plt()
    key = "training.virtualization"
    data = compare.scaling(table, key)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for setting, style in ((True, "-"), (False, "--")):
        rows = data[data[key].astype(str).str.lower() == str(setting).lower()] if key in data else data
        if rows.empty:
            continue
        name = "virtualization on" if setting else "virtualization off"
        hm = rows.groupby("devices")["speedup"].apply(compare.harmonic_mean)
        ax.plot(hm.index, hm.values, linestyle=style, marker="o", linewidth=2, label=f"mcdla, {name} (HM)")
        tag = "virt" if setting else "novirt"
        paper = [(d, PAPER.get(f"scalability.{tag}.{d}")) for d in (4, 8)]
        ax.plot([1] + [d for d, _ in paper], [1.0] + [v for _, v in paper], linestyle="none", marker="D",
                color="black" if setting else "gray", label=f"paper, {name}")
    ax.plot([1, 8], [1, 8], color="black", linewidth=0.5, linestyle=":", label="perfect scaling")
    ax.set_xticks([1, 4, 8])
    ax.set_xlabel("devices (DC-DLA)")
    ax.set_ylabel("speedup over 1 device (same global batch)")
    ax.set_title("Section V-D: scalability of the 4 CNNs", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def power(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    plt = _plt()
    from mcdla.metrics.power import power_table

    data = power_table(table, deps)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = list(data["dimm"])
    xs = range(len(names))
    panels = (("node_power_W", "memory-node TDP (W)", 0), ("GB_per_W", "capacity per watt (GB/W)", 1))
    for column, label, index in panels:
        ax = axes[index]
        ax.bar(xs, data[column], color="#4c72b0", label="mcdla")
        once = [False]
        for x, name in zip(xs, names):
            paper = TABLE_IV.get(name)
            _paper_marker(ax, x, paper[index] if paper else None, once)
        ax.set_ylabel(label)
    ax = axes[2]
    ax.bar(xs, data["perf_per_W"], color="#55a868", label="mcdla")
    once = [False]
    for x, name in zip(xs, names):
        _paper_marker(ax, x, PAPER.get(f"power.perf_per_W.{name}"), once)
    speedup = data["speedup"].iloc[0] if len(data) else math.nan
    ax.set_ylabel("perf/W over DC-DLA")
    ax.set_title(f"MC-DLA(B) speedup {speedup:.2f}x / (1 + added power / 3200 W)"
                 if speedup == speedup else "perf/W (run fig11_13 for the speedup)", fontsize=8)
    for ax in axes:
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=30, fontsize=7, ha="right")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Table IV: memory-node power (10 DIMMs, DDR4-2400) and performance per watt", fontsize=10)
    fig.tight_layout()
    return fig


def link_bytes(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """Bytes carried by all links in one iteration, per workload and design."""
    plt = _plt()
    data, designs, modes = _by_design(table)
    columns = [c for c in data.columns if c.startswith("link_bytes.")]
    data["link_bytes_total"] = data[columns].fillna(0).sum(axis=1) if columns else 0.0
    fig, axes = _panels(plt, len(modes))
    for ax, mode in zip(axes, modes):
        panel = data[data["parallel"] == mode]
        groups = _grouped_bars(ax, panel, "link_bytes_total", designs, scale=1e9)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, fontsize=8)
        ax.set_ylabel("bytes on all links (GB)")
        ax.set_title(f"Link traffic per iteration, {mode}-parallel", fontsize=10)
        ax.legend(fontsize=7, ncol=len(designs))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def llm_memory(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """The LLM study: the largest model each design trains (and within the time
    budget), and the best throughput of each GPT-3 size per design."""
    plt = _plt()
    data = compare.with_design(table)
    designs = _design_order(data)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    families = list(dict.fromkeys(data["family"]))
    width = 0.8 / (2 * max(1, len(families)))
    for k, (budget, hatch) in enumerate(((None, ""), (compare.LLM_BUDGET_S, "//"))):
        found = compare.largest_models(table, budget)
        for f, family in enumerate(families):
            rows = found[found["family"] == family].set_index("design")
            xs = [i + (2 * f + k - len(families) + 0.5) * width for i in range(len(designs))]
            values = [rows["params"].get(d, 0.0) / 1e9 for d in designs]
            what = "fits" if budget is None else f"within {budget:g} s/iteration"
            left.bar(xs, values, width, hatch=hatch, color=f"C{f}", edgecolor="white",
                     label=f"{family}, {what}")
    left.set_yscale("log")
    left.set_ylim(bottom=0.05)  # log bars need a floor below the smallest model
    left.set_xticks(range(len(designs)))
    left.set_xticklabels([_name(d) for d in designs], fontsize=8)
    left.set_ylabel("largest trainable model (billion parameters)")
    left.set_title("Largest model that trains, 8 devices, batch 16", fontsize=10)
    left.legend(fontsize=7)
    left.grid(axis="y", alpha=0.3)
    gpt = data[(data["family"] == families[0]) & data["trains"]]
    for design in designs:
        rows = gpt[gpt["design"] == design].sort_values("params")
        right.plot(rows["params"].astype(float) / 1e9, rows["tokens_per_s"].astype(float), marker="o",
                   label=_name(design))
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("model (billion parameters)")
    right.set_ylabel("tokens/s, best plan")
    right.set_title(f"Best throughput per size ({families[0]})", fontsize=10)
    right.legend(fontsize=7)
    right.grid(alpha=0.3, which="both")
    return fig


def memory_2026(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """The 2026 study: each model's best iteration time per design (where it trains),
    split into compute and what compute waits for, and the capacity tier's bandwidth used."""
    plt = _plt()
    data = compare.with_design(table)
    designs = list(dict.fromkeys(data["design"]))
    models = list(dict.fromkeys(data["model"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.4))
    width = 0.8 / max(1, len(models))
    missed = []  # (x of each design where the model does not fit, its colour)
    for m, model in enumerate(models):
        rows = data[data["model"] == model].set_index("design")
        xs = [i + (m - (len(models) - 1) / 2) * width for i in range(len(designs))]
        trains = [bool(rows["trains"].get(d, False)) for d in designs]

        def value(column, d, ok):
            return float(rows[column].get(d, 0.0)) if ok and column in rows else 0.0

        compute = [value("busy_s.compute", d, ok) for d, ok in zip(designs, trains)]
        total = [value("iteration_time_s", d, ok) for d, ok in zip(designs, trains)]
        left.bar(xs, compute, width, color=f"C{m}", label=f"{model.partition('/')[2]}: compute")
        left.bar(xs, [t - c for t, c in zip(total, compute)], width, bottom=compute, color=f"C{m}", alpha=0.45,
                 label=f"{model.partition('/')[2]}: waiting (communication, offload)")
        misses = [x for x, ok in zip(xs, trains) if not ok]
        right.bar(xs, [value("backing_Bps", d, ok) / 1e9 for d, ok in zip(designs, trains)], width,
                  color=f"C{m}", label=model.partition("/")[2])
        missed.append((misses, f"C{m}"))
    for ax in (left, right):
        ax.set_xticks(range(len(designs)))
        ax.set_xticklabels(designs, fontsize=7, rotation=20)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=6)
    left.set_yscale("log")
    positive = [float(v) for v in data.get("busy_s.compute", []) if float(v) == float(v) and float(v) > 0]
    floor = min(positive, default=1.0) / 3
    left.set_ylim(bottom=floor)  # log bars need a floor below the shortest
    for xs, colour in missed:
        for x in xs:
            left.text(x, floor * 1.1, "x", ha="center", va="bottom", fontsize=10, color=colour)
    left.set_ylabel("iteration time, best plan (s; x: does not fit)")
    left.set_title("Best plan per design", fontsize=10)
    right.set_ylabel("capacity-tier traffic per device (GB/s)")
    right.set_title("Capacity tier used", fontsize=10)
    return fig


def scale_out(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """Weak scaling (throughput per device at a fixed batch per device) and strong
    scaling (speedup at a fixed global batch) per design; labels are DESIGN+weak|strong."""
    plt = _plt()
    data = compare.scale_out_rows(table)
    _, per_device, batch, _ = compare.scale_out_setup(data)
    fig, (weak, strong) = plt.subplots(1, 2, figsize=(12, 4.2))
    for design in dict.fromkeys(data["design"]):
        rows = data[(data["design"] == design) & (data["scaling"] == "weak")].sort_values("devices")
        weak.plot(rows["devices"], rows["batch"] / rows["iteration_time_s"] / rows["devices"], marker="o",
                  label=compare.SCALE_OUT_NAMES.get(design, design))
        rows = data[(data["design"] == design) & (data["scaling"] == "strong")].sort_values("devices")
        if not rows.empty:
            base = rows.iloc[0]
            speedup = float(base["iteration_time_s"]) / rows["iteration_time_s"]
            strong.plot(rows["devices"], speedup * float(base["devices"]), marker="o",
                        label=compare.SCALE_OUT_NAMES.get(design, design))
    devices = sorted(set(data[data["scaling"] == "strong"]["devices"]))
    strong.plot(devices, devices, color="black", linewidth=0.5, linestyle=":", label="perfect")
    for ax in (weak, strong):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("devices")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    weak.set_ylabel("samples/s per device")
    weak.set_title(f"Weak scaling ({per_device} samples per device)", fontsize=10)
    strong.set_yscale("log", base=2)
    strong.set_ylabel("speedup x smallest system's devices")
    strong.set_title(f"Strong scaling (global batch {batch:,}, from the smallest system run)", fontsize=10)
    return fig


def cluster_fabric(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """One 3D-parallel iteration per cluster fabric: its time split into compute and
    the time compute waits (communication and the pipeline's bubble)."""
    plt = _plt()
    data = compare.fabric_rows(table)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(data) + 1.2))
    y = range(len(data))[::-1]
    compute = data["busy_s.compute"].astype(float)
    waits = data["iteration_time_s"].astype(float) - compute
    ax.barh(list(y), compute, color="#4c72b0", label="compute")
    ax.barh(list(y), waits, left=compute, color="#dd8452", label="waiting (communication, bubble)")
    for yi, total, ratio in zip(y, data["iteration_time_s"], data["vs_rails"]):
        ax.text(float(total), yi, f" {float(total):.3f} s ({float(ratio):.2f}x)", va="center", fontsize=7)
    ax.set_yticks(list(y), list(data["name"]), fontsize=8)
    ax.set_xlabel("iteration time (s)")
    ax.set_xlim(0, float(data["iteration_time_s"].max()) * 1.3)
    ax.legend(fontsize=7, loc="upper right")
    gpus = f" on {int(data['devices'].iloc[0]):,} H100s" if "devices" in data else ""
    ax.set_title(f"GPT-3 175B{gpus} (t 8, p 16, d 8), by cluster fabric", fontsize=10)
    return fig


def frontier_scale(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """3D-parallel LLM training on the three-tier fat tree as it grows (labels
    MODEL+SCALING): tokens/s per GPU, and each axis's communication in flight as a share
    of the iteration (tensor parallelism on NVLink, pipeline and data over the fabric), and
    for runs counted per class of link each fabric tier's busiest link's share."""
    plt = _plt()
    data = compare.frontier_rows(table)
    fig, (left, right, tiers) = plt.subplots(1, 3, figsize=(17, 4.2))
    tier_styles = {"device-spine1": "-", "spine1-spine2": "--", "spine2-spine3": ":"}
    styles = {"tp": ":", "pp": "--", "dp": "-"}
    for i, (label, rows) in enumerate(data.groupby("label", sort=False)):
        rows = rows.sort_values("devices")
        first = rows.iloc[0]
        name = (f"{compare.FRONTIER_MODELS.get(first['model'], first['model'])}, {first['scaling']}, "
                f"{compare.FRONTIER_DESIGNS.get(first['design'], first['design'])}")
        left.plot(rows["devices"], rows["tokens_per_s"], marker="o", color=f"C{i}", label=name)
        for axis, style in styles.items():
            right.plot(rows["devices"], rows[f"share_{axis}"] * 100, marker=".", linestyle=style, color=f"C{i}",
                       label=f"{name}: {compare.FRONTIER_AXES[axis]}")
        busy = [compare.tier_busy(row) for _, row in rows.iterrows()]
        for tier, style in tier_styles.items():
            shown = [(gpus, b[tier] * 100) for gpus, b in zip(rows["devices"], busy) if tier in b]
            if shown:
                tiers.plot(*zip(*shown), marker=".", linestyle=style, color=f"C{i}", label=f"{name}: {tier}")
    for ax in (left, right, tiers):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs")
        ax.grid(alpha=0.3, which="both")
    left.set_ylim(bottom=0)
    left.set_ylabel("training tokens/s per GPU")
    left.set_title("Throughput per GPU (weak: batch grows with the GPUs; strong: fixed)", fontsize=9)
    right.set_ylabel("communication in flight (% of the iteration)")
    right.set_title("Each axis's share of the iteration (axes overlap)", fontsize=9)
    tiers.set_ylabel("busiest link busy (% of the iteration)")
    from mcdla.metrics.summary import LINK_LIST_DEVICES

    tiers.set_title(f"Fabric tiers (NIC-leaf, leaf-pod spine, pod spine-core), runs past {LINK_LIST_DEVICES:,} GPUs",
                    fontsize=9)
    # Colour is the series (the left panel's legend), line style the axis or the tier:
    # one short legend each, not one entry per line.
    from matplotlib.lines import Line2D

    left.legend(fontsize=7)
    right.legend([Line2D([], [], color="0.3", linestyle=s) for s in styles.values()],
                 [compare.FRONTIER_AXES[a] for a in styles], fontsize=7)
    if tiers.lines:
        tiers.legend([Line2D([], [], color="0.3", linestyle=s) for s in tier_styles.values()],
                     list(tier_styles), fontsize=7)
    return fig


def moe_memory(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """Mixture-of-experts training per point: its iteration split into compute, the
    expert all-to-alls (comm_s.ep, as far as compute waits) and the rest of the waiting,
    with tokens/s per GPU; the points that do not fit marked."""
    plt = _plt()
    data = compare.moe_rows(table)
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(data) + 1.3))
    y = list(range(len(data)))[::-1]
    ok = data["fits"]
    total = data["iteration_time_s"].astype(float).where(ok, 0.0)
    compute = data["busy_s.compute"].astype(float).where(ok, 0.0)
    waits = (total - compute).clip(lower=0.0)
    ep = data["comm_s.ep"].astype(float).where(ok, 0.0).clip(upper=waits)
    ax.barh(y, compute, color="#4c72b0", label="compute")
    ax.barh(y, ep, left=compute, color="#c44e52", label="waiting: up to the expert all-to-alls' time")
    ax.barh(y, waits - ep, left=compute + ep, color="#dd8452", label="waiting: the rest")
    for yi, (_, row) in zip(y, data.iterrows()):
        text = (f" {float(row['tokens_per_s']):,.0f} tok/s/GPU, peak {float(row['device_mem_peak_bytes']) / 1e9:.0f} GB"
                if row["fits"] else " does not fit")
        ax.text(float(row["iteration_time_s"]) if row["fits"] else 0.0, yi, text, va="center", fontsize=7)
    ax.set_yticks(y, [f"{m} {d} {p}" for m, d, p in zip(data["model"], data["design"], data["plan"])], fontsize=7)
    ax.set_xlabel("iteration time (s)")
    ax.set_xlim(0, float(total.max() or 1.0) * 1.6)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Mixture-of-experts training by expert-parallel degree and expert placement", fontsize=10)
    return fig


def serving_memory(table: pd.DataFrame, deps: Mapping[str, pd.DataFrame]) -> Any:
    """Serving (experiment serving_memory_2026): output tokens/s and p99 TPOT against the
    request rate, per design; a filled marker where the run meets its objective."""
    from mcdla.metrics.serving import meets_slo

    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.4))
    data = table[table.get("status", "ok") == "ok"] if "status" in table else table
    for i, (label, runs) in enumerate(data.groupby("label", sort=False)):
        runs = runs.sort_values("serving.rate")
        rates = runs["serving.rate"].astype(float)
        met = [meets_slo(r) for _, r in runs.iterrows()]
        style = dict(color=f"C{i % 10}", linestyle="-" if i < 10 else "--")
        for ax, column, scale in ((left, "throughput_tokens_s", 1.0), (right, "tpot_s.p99", 1e3)):
            values = runs[column].astype(float) * scale
            ax.plot(rates, values, label=label, **style)
            ax.scatter(rates, values, facecolors=[style["color"] if m else "none" for m in met],
                       edgecolors=style["color"], zorder=3)
    bound = data["slo.tpot_s"].dropna().astype(float) if "slo.tpot_s" in data else pd.Series(dtype=float)
    if len(bound):
        right.axhline(float(bound.iloc[0]) * 1e3, color="k", linestyle=":", label="TPOT objective")
    ticks = sorted(data["serving.rate"].astype(float).unique())
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("request rate (requests/s)")
        ax.grid(alpha=0.3)
    left.set_ylabel("output tokens/s (filled: meets the objective)")
    right.set_ylabel("p99 time per output token (ms)")
    right.set_yscale("log")
    left.legend(fontsize=6)
    right.legend(fontsize=6)
    left.set_title("Throughput", fontsize=10)
    right.set_title("Decode latency", fontsize=10)
    return fig


def _drawers() -> dict[str, Callable[[pd.DataFrame, Mapping[str, pd.DataFrame]], Any]]:
    """Figure name (the one list: mcdla.config.experiment.FIGURES) -> its drawing function."""
    from mcdla.config.experiment import FIGURES as NAMES

    return {name: globals()[name] for name in NAMES}




def render(name: str, table: pd.DataFrame, deps: Mapping[str, pd.DataFrame], out: Path | str) -> list[Path]:
    """Draws figure ``name`` and writes ``out/name.png`` and ``out/name.svg``."""
    plt = _plt()
    out = make_folder(out, "--out")
    fig = _drawers()[name](table, deps)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    try:
        for path in paths:
            save_figure(fig, path, option="--out", bbox_inches="tight")
    finally:
        plt.close(fig)
    return paths


def draw(figures: tuple[str, ...], table: pd.DataFrame, deps: Mapping[str, pd.DataFrame],
         out: Path | str) -> list[Path]:
    """Draws every figure an experiment declares; returns the files written."""
    paths: list[Path] = []
    for name in figures:
        paths += render(name, table, deps, out)
    return paths


def load_results(folder: Path | str) -> pd.DataFrame:
    """The results table of a sweep folder; a damaged one (not UTF-8, empty, not CSV,
    without a ``status`` column) is one InputError line naming the file."""
    from mcdla.errors import InputError
    from mcdla.sweep.store import TABLE, read_table

    path = str(Path(folder) / TABLE)
    try:
        table = read_table(folder)
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text: a damaged results table", file=path) from None
    except pd.errors.EmptyDataError:
        raise InputError("empty: a damaged results table (rerun mcdla sweep)", file=path) from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else "unreadable"
        raise InputError(f"not a CSV results table: {first}", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    if "status" not in table.columns:
        raise InputError("not a results table: no 'status' column", file=path)
    return table


def plot_experiment(experiment: Any, results: Path | str, out: Path | str | None = None) -> list[Path]:
    """Draws ``experiment``'s figures from its sweep folder ``results`` into ``out``.

    The tables of the experiments it ``depends`` on are read from sibling folders
    (``results/../<name>``) when they exist; a figure then falls back to what it can
    draw without them. A table lacking a column a figure needs is an InputError.
    """
    from mcdla.errors import InputError
    from mcdla.sweep.store import TABLE

    results = Path(results)
    table = load_results(results)
    deps = {}
    for name in experiment.depends:
        folder = results.parent / name
        if (folder / TABLE).is_file():
            deps[name] = load_results(folder)
    try:
        return draw(experiment.figures, table, deps, out if out is not None else results)
    except KeyError as exc:
        missing = str(exc.args[0] if exc.args else exc)[:80]
        raise InputError(f"the results table lacks a column its figures need: {missing}",
                         file=str(results / TABLE)) from None
