"""Paper Fig. 9: ring collective latency vs. the number of nodes, normalized to 2 nodes.

Every point is one collective alone on one bidirectional ring of N device-nodes
(:func:`mcdla.sim.collectives.ring_of_devices`, 25 GB/s per direction per link, the
NVLink 2.0 hop latency), synchronizing 8 MB in 4 KB chunks. The parameters come
from ``experiments/fig09.yaml`` (``base`` and ``axes``, the format ``mcdla sweep``
runs; top-level keys are read too). Run ``python -m mcdla.sim.fig09 [FILE]
[--ranks 2,3,...]``; it prints one row per op and ring size with the time, its ratio
to the 2-node ring and the closed form.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping, Sequence

from mcdla import units
from mcdla.config.loader import DATA_ROOT, read_yaml
from mcdla.hw.collective_model import collective_time_s
from mcdla.sim.collectives import ring_of_devices, run_collective

__all__ = ["fig09_rows", "main"]

_DEFAULT_FILE = DATA_ROOT / "experiments" / "fig09.yaml"
_PRESETS = DATA_ROOT / "topologies" / "presets" / "hardware.yaml"


def _setting(doc: Mapping[str, Any], key: str) -> Any:
    """``key`` from ``base``, ``axes`` or the top level of an experiment file."""
    for section in (doc.get("base") or {}, doc.get("axes") or {}, doc):
        if key in section:
            return section[key]
    return None


def fig09_rows(
    ops: Sequence[str],
    ranks: Sequence[int],
    size_bytes: float,
    chunk_bytes: float,
    link_bw_Bps: float,
    latency_s: float,
) -> list[dict[str, Any]]:
    """One row per (op, ring size): time, normalized time and the closed form."""
    rows = []
    for op in ops:
        base_s = None
        for n in ranks:
            rings, capacities = ring_of_devices(n, link_bw_Bps, latency_s)
            run = run_collective(rings, capacities, op, size_bytes, chunk_bytes=chunk_bytes)
            time_s = run.record.time_s
            if base_s is None:
                base_s = time_s
            closed = collective_time_s(
                op, size_bytes, n, len(rings) * link_bw_Bps, latency_s, rings=len(rings), chunk_bytes=chunk_bytes
            )
            rows.append(
                {
                    "op": op,
                    "ranks": n,
                    "time_s": time_s,
                    "normalized": time_s / base_s if base_s else float("nan"),
                    "closed_form_s": closed,
                    "events": run.events,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcdla.sim.fig09", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(_DEFAULT_FILE), help="experiment YAML (default: fig09)")
    parser.add_argument("--ranks", help="comma-separated ring sizes (default: 2..16)")
    args = parser.parse_args(argv)
    doc = read_yaml(args.file)
    ops = _setting(doc, "ops") or _setting(doc, "op") or ["all_gather", "broadcast", "all_reduce"]
    ops = [ops] if isinstance(ops, str) else list(ops)
    if args.ranks:
        ranks = [int(r) for r in args.ranks.split(",")]
    else:
        ranks = list(range(2, 17))
    link = read_yaml(_PRESETS)["links"]["nvlink2"]
    link_bw = _setting(doc, "link_bw") or link["bw"]
    latency = _setting(doc, "link_latency") or link["latency"]
    rows = fig09_rows(
        ops,
        ranks,
        units.parse_size(_setting(doc, "size")),
        units.parse_size(_setting(doc, "chunk")),
        units.parse_bandwidth(link_bw),
        units.parse_time(latency),
    )
    from mcdla.cli.output import render

    sys.stdout.write(render(rows, "table"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
