"""Comparing design points: speedups over a baseline and their harmonic means.

The paper's definitions, in one place so every figure and the report agree:

- the *design* of a row is its topology, except on ``ring`` where the page-allocation
  policy makes two designs (``ring+local`` = MC-DLA(L), ``ring+bw_aware`` = MC-DLA(B));
  a row's ``label``, when present, names its design instead (e.g. ``dc+pcie4``);
- the speedup of design X = iteration time of the baseline (``dc``) / iteration time of
  X, for the same workload, parallel mode and batch (the ``by`` columns);
- averages over workloads are harmonic means (paper Section V: "All average values are
  based on harmonic means"); a ratio of two designs is the ratio of their times.

Every function takes and returns pandas tables: rows of a results table (failed
points are ignored: ``status != "ok"``).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import pandas as pd

__all__ = [
    "BASELINE",
    "DESIGNS",
    "DESIGN_NAMES",
    "LLM_BUDGET_S",
    "largest_models",
    "scale_out_rows",
    "scale_out_setup",
    "FABRIC_NAMES",
    "fabric_rows",
    "FRONTIER_MODELS",
    "FRONTIER_AXES",
    "FRONTIER_DESIGNS",
    "FRONTIER_PUBLISHED",
    "frontier_rows",
    "tier_busy",
    "tier_bytes",
    "tokens_per_device_s",
    "design_of",
    "with_design",
    "harmonic_mean",
    "time_ratio",
    "speedups",
    "mean_speedups",
]

BASELINE = "dc"
# The six design points of paper Section V, in the paper's order.
DESIGNS = ("dc", "hc", "star", "ring+local", "ring+bw_aware", "oracle")
DESIGN_NAMES = {
    "dc": "DC-DLA",
    "hc": "HC-DLA",
    "star": "MC-DLA(S)",
    "ring+local": "MC-DLA(L)",
    "ring+bw_aware": "MC-DLA(B)",
    "oracle": "DC-DLA(O)",
    "dc+pcie4": "DC-DLA (PCIe gen4)",
}
GROUP = ("workload", "parallel", "batch")


def design_of(topology: str, policy: str | None) -> str:
    """The design point a (topology, policy) pair stands for."""
    if topology == "ring":
        return f"ring+{policy}"
    return str(topology)


def with_design(table: pd.DataFrame) -> pd.DataFrame:
    """The finished rows of ``table`` with a ``design`` column added (and a plan table's
    ``trains`` as booleans: a CSV reads them back as text)."""
    ok = table[table["status"] == "ok"].copy() if "status" in table else table.copy()
    if "trains" in ok:
        ok["trains"] = ok["trains"].astype(str).str.lower() == "true"
    designs = [design_of(t, p) for t, p in zip(ok["topology"], ok.get("policy", [None] * len(ok)))]
    if "label" in ok:
        designs = [lab if isinstance(lab, str) and lab else d for lab, d in zip(ok["label"], designs)]
    ok["design"] = designs
    return ok


def harmonic_mean(values: Iterable[float]) -> float:
    """n / sum(1/x); NaN for no values. Speedups are positive, so zero is a bug upstream."""
    items = [float(v) for v in values if v == v]  # drop NaN (a failed or missing point)
    if not items:
        return math.nan
    if any(v <= 0 for v in items):
        raise ValueError(f"harmonic mean of non-positive values: {items}")
    return len(items) / sum(1.0 / v for v in items)


def _group_columns(table: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return [c for c in by if c in table.columns]


def time_ratio(table: pd.DataFrame, design: str, reference: str, by: Sequence[str] = GROUP,
               value: str = "iteration_time_s") -> pd.DataFrame:
    """Per group: time of ``reference`` / time of ``design`` (> 1: ``design`` is faster).

    ``table`` must have a ``design`` column (see :func:`with_design`). Groups where
    either design is missing are left out. Columns: the ``by`` columns and ``ratio``.
    """
    cols = _group_columns(table, by)
    mine = table[table["design"] == design][cols + [value]]
    ref = table[table["design"] == reference][cols + [value]]
    merged = mine.merge(ref, on=cols, suffixes=("", "_ref"), how="inner", sort=False)
    merged["ratio"] = merged[f"{value}_ref"] / merged[value]
    return merged[cols + ["ratio"]].reset_index(drop=True)


def speedups(table: pd.DataFrame, baseline: str = BASELINE, by: Sequence[str] = GROUP,
             designs: Sequence[str] | None = None) -> pd.DataFrame:
    """Speedup of every design over ``baseline``: columns ``design``, the ``by`` columns, ``speedup``.

    Rows keep the order of the designs (``DESIGNS`` first, then others as they appear)
    and, within a design, the order of ``table``.
    """
    table = table if "design" in table else with_design(table)
    present = list(dict.fromkeys(table["design"]))
    order = designs if designs is not None else [d for d in DESIGNS if d in present] + [
        d for d in present if d not in DESIGNS]
    parts = []
    for design in order:
        ratio = time_ratio(table, design, baseline, by).rename(columns={"ratio": "speedup"})
        ratio.insert(0, "design", design)
        parts.append(ratio)
    if not parts:
        return pd.DataFrame(columns=["design", *_group_columns(table, by), "speedup"])
    return pd.concat(parts, ignore_index=True)


def mean_speedups(speedup_table: pd.DataFrame, by: Sequence[str] = ("parallel",)) -> pd.DataFrame:
    """Harmonic-mean speedup per design and ``by`` group, plus an ``all`` group per design."""
    rows = []
    cols = [c for c in by if c in speedup_table.columns]
    for design in dict.fromkeys(speedup_table["design"]):
        mine = speedup_table[speedup_table["design"] == design]
        if cols:
            for key, group in mine.groupby(cols, sort=False):
                key = key if isinstance(key, tuple) else (key,)
                rows.append({"design": design, **dict(zip(cols, key)),
                             "speedup": harmonic_mean(group["speedup"])})
        rows.append({"design": design, **{c: "all" for c in cols},
                     "speedup": harmonic_mean(mine["speedup"])})
    return pd.DataFrame(rows)


def scaling(table: pd.DataFrame, key: str = "training.virtualization") -> pd.DataFrame:
    """Section V-D: speedup of D devices over one, per workload and ``key`` setting.

    The speedup is iteration time on 1 device / iteration time on D devices at the
    same global batch (the same work per iteration). Columns: ``workload, KEY,
    devices, speedup``.
    """
    ok = table[table["status"] == "ok"].copy() if "status" in table else table.copy()
    cols = [c for c in ("workload", key, "parallel", "batch") if c in ok.columns]
    single = ok[ok["devices"] == 1][cols + ["iteration_time_s"]]
    merged = ok.merge(single, on=cols, suffixes=("", "_1"), how="inner", sort=False)
    merged["speedup"] = merged["iteration_time_s_1"] / merged["iteration_time_s"]
    merged["devices"] = merged["devices"].astype(int)
    return merged[[c for c in ("workload", key) if c in merged] + ["devices", "speedup"]]


def normalized_collectives(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 9: collective time normalized to the smallest ring, per op (and size)."""
    ok = table[table["status"] == "ok"].copy() if "status" in table else table.copy()
    cols = [c for c in ("op", "size") if c in ok.columns]
    smallest = ok.loc[ok.groupby(cols, sort=False)["ring"].idxmin(), cols + ["time_s"]]
    merged = ok.merge(smallest, on=cols, suffixes=("", "_min"), how="inner", sort=False)
    merged["normalized"] = merged["time_s"] / merged["time_s_min"]
    return merged


def pcie_summary(table: pd.DataFrame) -> dict[str, float]:
    """The PCIe gen4 study: harmonic means over all its (workload, parallel) points of
    gen4 DC-DLA over gen3 (``dc_gain``), MC-DLA(B) over gen3 (``ring_over_dc``) and
    MC-DLA(B) over gen4 (``gap``)."""
    data = table if "design" in table else with_design(table)
    gain = time_ratio(data, "dc+pcie4", "dc")["ratio"]
    ring = time_ratio(data, "ring+bw_aware", "dc")["ratio"]
    gap = time_ratio(data, "ring+bw_aware", "dc+pcie4")["ratio"]
    return {"dc_gain": harmonic_mean(gain), "ring_over_dc": harmonic_mean(ring), "gap": harmonic_mean(gap)}


def speedup_pivot(table: pd.DataFrame, baseline: str = BASELINE) -> list[dict]:
    """The paper grid as rows: one per (parallel, workload[, batch]) with each design's
    speedup over ``baseline`` as a column, then one harmonic-mean row per parallel mode
    and one over everything. Empty when the table has no baseline rows."""
    data = with_design(table)
    if baseline not in set(data["design"]) or "iteration_time_s" not in data or "workload" not in data:
        return []  # not a grid of simulated iterations (a plan sweep, say)
    sp = speedups(data, baseline)
    designs = list(dict.fromkeys(sp["design"]))
    keys = [c for c in ("parallel", "workload", "batch") if c in sp.columns
            and (c != "batch" or sp["batch"].nunique() > 1)]
    rows = []
    for key, group in sp.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        by_design = dict(zip(group["design"], group["speedup"]))
        rows.append({**dict(zip(keys, key)), **{d: by_design.get(d, math.nan) for d in designs}})
    groups = [("parallel", p) for p in dict.fromkeys(sp["parallel"])] if "parallel" in sp else []
    for column, value in groups + [(None, "all")]:
        part = sp if column is None else sp[sp[column] == value]
        label = {k: "" for k in keys}
        label[keys[0]] = value
        if len(keys) > 1:
            label[keys[1]] = "harmonic mean"
        rows.append({**label, **{d: harmonic_mean(part[part["design"] == d]["speedup"]) for d in designs}})
    return rows


# The designs of experiment scale_out, by the first part of their labels.
SCALE_OUT_NAMES = {"ring": "MC-DLA(B) ring of N (flat ring collectives)",
                   "mcring": "MC-DLA(B) ring nodes on EDR IB rails (snaking rings)",
                   "cluster": "DGX H100 nodes on 400G IB (hierarchical)",
                   "fig15": "Fig. 15 scale-out MC-DLA on EDR IB (hierarchical)"}

def scale_out_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The finished rows of a scale_out sweep with ``design`` and ``scaling`` (weak or
    strong) split from their labels, DESIGN+SCALING."""
    data = table[table["status"] == "ok"].copy()
    data["design"] = [str(label).partition("+")[0] for label in data["label"]]
    data["scaling"] = [str(label).partition("+")[2] for label in data["label"]]
    return data


def scale_out_setup(data: pd.DataFrame) -> tuple[int, int, int, int]:
    """What a scale_out sweep ran (from :func:`scale_out_rows`): (the most devices, the
    samples per device of weak scaling, the global batch of strong scaling, the
    fewest devices of strong scaling); 0 where a kind is missing."""
    weak, strong = data[data["scaling"] == "weak"], data[data["scaling"] == "strong"]
    per = int((weak["batch"] // weak["devices"]).max()) if not weak.empty else 0
    return (int(data["devices"].max()), per, int(strong["batch"].max()) if not strong.empty else 0,
            int(strong["devices"].min()) if not strong.empty else 0)


# The cluster_fabric experiment's points, by label: what a person reads.
FABRIC_NAMES = {
    "rails": "a switch per rail",
    "leaf32": "fat tree, leaves of 32 nodes",
    "leaf8": "fat tree, leaves of 8 nodes",
    "leaf8_2to1": "leaves of 8, 2:1 uplinks",
    "leaf8_4to1": "leaves of 8, 4:1 uplinks",
    "nic4": "4 NICs a node (2 GPUs each)",
    "nic2": "2 NICs a node (4 GPUs each)",
    "roce": "RoCE (Spectrum-4, 400 GbE)",
}


def fabric_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The finished rows of a cluster_fabric sweep in file order, with ``name`` (what a
    person reads) and ``vs_rails`` (iteration time over the one-switch-per-rail point's)."""
    data = table[table["status"] == "ok"].copy()
    data["name"] = [FABRIC_NAMES.get(str(label), str(label)) for label in data["label"]]
    base = data[data["label"] == "rails"]["iteration_time_s"]
    data["vs_rails"] = data["iteration_time_s"] / float(base.iloc[0]) if not base.empty else float("nan")
    return data


# The iteration time that counts as training in the LLM study's "largest model within a
# budget" (docs/results.md): 10 s for a batch of 16 sequences, i.e. over 3,000 tokens/s
# on eight devices for 2,048-token sequences.
LLM_BUDGET_S = 10.0


def largest_models(table: pd.DataFrame, budget_s: float | None = None) -> pd.DataFrame:
    """Per design and family (a ``kind: plan`` sweep): the largest model that trains
    (any candidate fits; within ``budget_s`` per iteration when given), by parameters."""
    data = with_design(table)
    data = data[data["trains"]]
    if budget_s is not None:
        data = data[data["iteration_time_s"].astype(float) <= budget_s]
    rows = []
    for (design, family), group in data.groupby(["design", "family"], sort=False):
        best = group.loc[group["params"].astype(float).idxmax()]
        rows.append({"design": design, "family": family, "model": str(best["model"]).partition("/")[2],
                     "params": float(best["params"]), "iteration_time_s": float(best["iteration_time_s"])})
    return pd.DataFrame(rows, columns=["design", "family", "model", "params", "iteration_time_s"])


# The paper's unreproduced headlines and the reproduced one they are weighed against
# (experiment ``headline_sensitivity``): (key, design over DC-DLA, parallel mode), each
# the harmonic mean over the workloads.
HEADLINES = (("fig13.hc.data", "hc", "data"), ("fig13.hc.model", "hc", "model"),
             ("fig13.ring+bw_aware.model", "ring+bw_aware", "model"),
             ("fig13.ring+bw_aware.data", "ring+bw_aware", "data"))
# The reading every other is a change of: the paper presets.
BASE_READING = "paper"


def headline_readings(table: pd.DataFrame) -> list[dict]:
    """Per reading (the part of a ``READING/DESIGN`` label before the slash), in the
    sweep's order: each of :data:`HEADLINES` as the HM speedup over DC-DLA. A reading
    runs only the designs and parallel modes it changes; for the others its speedup
    takes :data:`BASE_READING`'s runs. NaN where neither has the runs."""
    data = table if "design" in table else with_design(table)
    readings = list(dict.fromkeys(d.partition("/")[0] for d in data["design"] if "/" in d))
    rows = []
    for reading in readings:
        row: dict = {"reading": reading}
        for key, design, mode in HEADLINES:
            part = data[data["parallel"] == mode] if "parallel" in data else data
            present = set(part["design"])
            own, dc = (f"{reading}/{d}" for d in (design, "dc"))
            ratio = time_ratio(part, own if own in present else f"{BASE_READING}/{design}",
                               dc if dc in present else f"{BASE_READING}/dc")["ratio"]
            row[key] = harmonic_mean(ratio) if len(ratio) else math.nan
        rows.append(row)
    return rows


def moe_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a moe_memory sweep in file order, with ``model``, ``design`` and
    ``plan`` (its label's three parts), ``fits`` and, where it trains, ``tokens_per_s``
    per device (:func:`tokens_per_device_s`)."""
    data = table.copy()
    parts = [str(label).split("/", 2) + ["", ""] for label in data["label"]]
    data["model"], data["design"], data["plan"] = ([p[k] for p in parts] for k in range(3))
    data["fits"] = data["status"] == "ok"
    data["tokens_per_s"] = tokens_per_device_s(data).where(data["fits"])
    return data


def tokens_per_device_s(data: pd.DataFrame) -> pd.Series:
    """Training tokens/s per device of each row: the batch's sequences of its workload's
    tokens (the first layer's output length) over the iteration time and the devices."""
    from mcdla.hw.workload import load_workload

    seq = {name: load_workload(name).layers[0].out_shape[0] for name in dict.fromkeys(data["workload"])}
    tokens = data["batch"].astype(float) * [seq[w] for w in data["workload"]]
    time_s = data["iteration_time_s"].astype(float) if "iteration_time_s" in data else float("nan")
    devices = data["devices"].astype(float) if "devices" in data else float("nan")
    return tokens / time_s / devices


# The frontier_scale experiment's models, by the first part of their labels.
FRONTIER_MODELS = {"gpt3": "GPT-3 175B", "llama": "Llama 3.1 405B"}
FRONTIER_DESIGNS = {"fat": "fat tree", "mc": "fat tree + memory-nodes"}
# The communication axes of a 3D-parallel iteration and where they travel on the fat
# tree (docs/topologies.md): tensor parallelism inside a node, the pipeline's sends and
# the data-parallel all-reduce over the rails' leaves and the tiers above them.
FRONTIER_AXES = {"tp": "tensor (NVLink)", "pp": "pipeline (fabric)", "dp": "data (fabric)"}
# The published per-GPU model throughput of the runs frontier_scale's models are laid
# out after, by model label: (model FLOP/s per GPU, the run). For validation only:
# nothing in mcdla is fitted to them (docs/results.md, "frontier-scale training").
FRONTIER_PUBLISHED = {
    # Llama 3 Herd of Models (Grattafiori et al. 2024), Table 4: Llama 3.1 405B on 16,384
    # H100, TP 8, PP 16, DP 128, 16 sequences of 8,192 per replica (16M tokens a step),
    # 400 TFLOPs/GPU (BF16 MFU 41 %; 430 at 8,192 GPUs, DP 64).
    "llama": (400e12, "Llama 3 (Table 4): 16,384 H100, TP 8, PP 16, DP 128"),
    # NVIDIA/Megatron-LM README, "Strong Scaling Results": GPT-3 175B (a larger
    # vocabulary) from 96 to 4,608 H100 at a batch of 1,152 sequences, MFU 47 % down to
    # 42 %; 42 % of the H100 SXM's 989 TFLOP/s dense BF16 (NVIDIA H100 datasheet).
    "gpt3": (0.42 * 989e12, "Megatron-LM README: 4,608 H100, 42 % MFU"),
}


def frontier_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The finished rows of a frontier_scale sweep with ``design``, ``model`` and
    ``scaling`` (their labels' parts, [DESIGN+]MODEL+SCALING; design "fat" unless given,
    "mc" for the memory-centric variant), ``tokens_per_s`` per GPU and, per axis of
    :data:`FRONTIER_AXES`, ``share_<axis>``: the time its communication is in flight over
    the iteration time (axes overlap, so shares may add past 1)."""
    data = table[table["status"] == "ok"].copy()
    parts = [(["fat"] + str(label).split("+"))[-3:] for label in data["label"]]
    data["design"], data["model"], data["scaling"] = ([p[k] for p in parts] for k in range(3))
    data["tokens_per_s"] = tokens_per_device_s(data)
    for axis in FRONTIER_AXES:
        column = f"comm_s.{axis}"
        in_flight = data[column].astype(float) if column in data else float("nan")
        data[f"share_{axis}"] = in_flight / data["iteration_time_s"].astype(float)
    return data


def _tier_columns(row: pd.Series, stat: str):
    """Each ``link_classes.<class>.<stat>`` column of ``row`` with its class and its
    tier: the class's two ends without their order or link kind ("spine1-spine2")."""
    suffix = f".{stat}"
    for column in row.index:
        if column.startswith("link_classes.") and column.endswith(suffix):
            name = column[len("link_classes."):-len(suffix)]
            yield column, name, "-".join(sorted(name.partition(":")[0].split(">")))


def tier_busy(row: pd.Series) -> dict[str, float]:
    """Per tier of links (as :func:`tier_bytes` names them), the share of the iteration
    its busiest link was busy: the most bytes one of its directed links carried
    (``link_classes.<class>.max``) at that class's slowest link's bandwidth (``.bw_Bps``)
    over ``iteration_time_s``, the larger of the two directions. Exact where a class's
    links share one rate (every fat-tree tier), at most the slowest link's otherwise; a
    lower bound on the time the link was busy, which runs below its rate when its flows
    are bound elsewhere. {} for a row that listed every link instead, or one whose
    classes carry no bandwidth."""
    busy: dict[str, float] = {}
    iteration = float(row.get("iteration_time_s", float("nan")))
    for column, name, tier in _tier_columns(row, "max"):
        bw = row.get(f"link_classes.{name}.bw_Bps")
        if bw is None or not bw > 0 or row[column] != row[column]:
            continue
        busy[tier] = max(busy.get(tier, 0.0), float(row[column]) / float(bw) / iteration)
    return busy


def tier_bytes(row: pd.Series) -> dict[str, float]:
    """Bytes a row's iteration moved over each tier of links, from its per-class link
    counters (``link_classes.<class>.mean`` x ``.count``; runs past
    metrics.summary.LINK_LIST_DEVICES devices), the two directions of a tier summed: the
    tier is the class's two ends without their order or link kind, e.g. "device-spine1"
    (a GPU's NIC and its rail leaf). {} for a row that listed every link instead."""
    tiers: dict[str, float] = {}
    for column, name, tier in _tier_columns(row, "mean"):
        count = row.get(f"link_classes.{name}.count")
        if count != count or row[column] != row[column]:
            continue
        tiers[tier] = tiers.get(tier, 0.0) + float(row[column]) * float(count)
    return tiers
