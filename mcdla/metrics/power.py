"""Memory-node power (paper Table IV, Section V-C) and performance per watt.

A memory-node's power is its DIMMs' TDP: ``dimms x dimm_power_W`` of a memory-node
preset (``topologies/presets/hardware.yaml``, ``memory_nodes``); a point may override
any preset field by ``memory_node.FIELD`` to describe another DIMM type. Adding
``memory_nodes`` of them to a system of ``system_power_W`` (DGX-1V: 3,200 W) raises
its power by ``added / system``, and the paper's performance per watt over DC-DLA is

    perf/W = speedup / (1 + memory_nodes x node_power_W / system_power_W)

(Section V-C: 2.8x / 1.31 = 2.1x with 128 GB LRDIMMs, 2.8x / 1.07 = 2.6x with 8 GB
RDIMMs). Capacity per watt uses decimal GB (1e9 bytes), as the paper's table does.
"""

from __future__ import annotations

from typing import Any, Mapping

from mcdla.errors import InputError

__all__ = ["memory_node_power", "perf_per_watt"]


def memory_node_power(point: Mapping[str, Any]) -> dict[str, Any]:
    """The power figures of one memory-node design (a ``kind: power`` sweep point)."""
    from mcdla.config.hardware import MemoryNodeSpec
    from mcdla.config.loader import apply_overrides
    from mcdla.config.schema import Where, build
    from mcdla.config.topology import PRESETS_FILE, load_presets, resolve_presets

    stray = [k for k in point if "." in k and not k.startswith("memory_node.")]
    if stray:
        raise InputError("a power point only accepts memory_node.FIELD overrides", key=stray[0])
    name = str(point.get("memory_node", "table2"))
    doc = resolve_presets({"memory_node": name}, load_presets(), "point")
    overrides = [(k, v) for k, v in point.items() if k.startswith("memory_node.")]
    doc = apply_overrides(doc, overrides)
    spec = build(MemoryNodeSpec, doc["memory_node"], Where(str(PRESETS_FILE), f"memory_nodes.{name}"))
    count = int(point.get("memory_nodes", 8))
    system_W = float(point.get("system_power_W", 3200.0))
    node_W = spec.power_W
    return {
        "dimm_capacity_bytes": spec.dimm_capacity,
        "dimm_power_W": spec.dimm_power_W,
        "node_power_W": node_W,
        "node_capacity_bytes": spec.capacity_bytes,
        "GB_per_W": spec.capacity_bytes / 1e9 / node_W,
        "added_power_W": count * node_W,
        "power_increase": count * node_W / system_W,
        "pool_bytes": count * spec.capacity_bytes,
    }


def perf_per_watt(speedup: float, power_increase: float) -> float:
    """Performance per watt over the baseline system: speedup / (1 + relative added power)."""
    return speedup / (1.0 + power_increase)


def power_table(table, deps):
    """Table IV plus perf/W, with the overall MC-DLA(B) speedup from fig11_13 when run."""
    import math

    import pandas as pd

    from mcdla.metrics import compare

    speedup = math.nan
    source = deps.get("fig11_13")
    if source is not None and len(source):
        sp = compare.speedups(compare.with_design(source), designs=["ring+bw_aware"])
        speedup = compare.harmonic_mean(sp["speedup"])
    ok = table[table["status"] == "ok"] if "status" in table else table
    rows = []
    for _, row in ok.iterrows():
        rows.append({
            "dimm": row.get("label", row.get("memory_node")),
            "node_power_W": row["node_power_W"],
            "GB_per_W": row["GB_per_W"],
            "power_increase": row["power_increase"],
            "speedup": speedup,
            "perf_per_W": perf_per_watt(speedup, row["power_increase"]),
        })
    return pd.DataFrame(rows)
