"""``mcdla compare``: one workload on several design points, side by side.

A design point is a topology with, on topologies with memory-nodes, a page-allocation
policy: ``ring:local`` is MC-DLA(L), ``ring:bw_aware`` MC-DLA(B); a bare name takes
the default policy. The default list is the paper's six (Section V). Each design runs
through :func:`mcdla.run.simulate`, as ``mcdla sim`` does; the speedup of a design
is the first design's iteration time over its own. ``--plot FILE`` draws the
breakdown of every design as stacked bars (:mod:`mcdla.plots.compare`).
"""

from __future__ import annotations

import argparse
from typing import Any

from mcdla.cli.output import add_format_options, emit_text, render
from mcdla.cli.sim import add_run_options
from mcdla.config.point import DEFAULT_POINT as DEFAULTS
from mcdla.config.placement import PLACEMENTS

# The paper's six design points (mcdla.metrics.compare.DESIGNS), as --designs spells them.
DEFAULT_DESIGNS = "dc,hc,star,ring:local,ring:bw_aware,oracle"
# More designs than a table can show side by side are refused before any runs
# (a sweep is the tool for grids).
MAX_DESIGNS = 32


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Simulate one training iteration of a workload on each design point and "
                          "print them side by side: iteration time, speedup over the first design and where "
                          "the time goes.")
    parser.add_argument("--designs", default=DEFAULT_DESIGNS, metavar="LIST",
                        help="comma-separated TOPOLOGY[:POLICY] (policy: local or bw_aware); the "
                        "first is the baseline of the speedups (default: %(default)s)")
    add_run_options(parser, "override a loaded parameter of every design by dotted key, as in "
                    "mcdla sim (repeatable)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the designs' breakdowns as stacked bars to FILE (.png or .svg)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def parse_designs(text: str) -> list[tuple[str, str]]:
    """``"dc,ring:local"`` -> ``[("dc", default policy), ("ring", "local")]``; checked."""
    from mcdla.errors import InputError

    items = text.split(",")
    if len(items) > MAX_DESIGNS:
        raise InputError(f"{len(items)} designs; at most {MAX_DESIGNS} fit side by side "
                         "(run a grid with mcdla sweep)", key="--designs")
    designs = []
    for item in items:
        topology, _, policy = item.strip().partition(":")
        if not topology:
            raise InputError(f"expected TOPOLOGY[:POLICY] items separated by commas, got {text[:80]!r}",
                             key="--designs")
        policy = policy or DEFAULTS["policy"]
        if policy not in PLACEMENTS:
            raise InputError(f"unknown policy {policy[:40]!r} in {item.strip()[:80]!r}; expected one of "
                             f"{', '.join(PLACEMENTS.names())}", key="--designs")
        if (topology, policy) in designs:
            raise InputError(f"design {item.strip()[:80]!r} is listed twice", key="--designs")
        designs.append((topology, policy))
    return designs


def design_name(topology: str, policy: str) -> str:
    """The paper's name of a design point (MC-DLA(B)), or ``topology:policy``."""
    from mcdla.metrics.compare import DESIGN_NAMES, design_of

    return DESIGN_NAMES.get(design_of(topology, policy), f"{topology}:{policy}" if topology == "ring"
                            else topology)


def compare(designs: list[tuple[str, str]], workload: str, parallel: str, batch: int,
            sets: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """One row per design: its name, speedup over the first, and the sim result
    (without the per-link counters, which differ in number between designs)."""
    from mcdla.run import simulate

    rows = []
    for topology, policy in designs:
        result = simulate(topology, policy, workload, parallel, batch, sets)
        result = {k: v for k, v in result.items() if k != "link_bytes"}
        rows.append({"design": design_name(topology, policy), **result})
    base = rows[0]["iteration_time_s"]
    for row in rows:
        time_s = row["iteration_time_s"]
        row["speedup"] = base / time_s if time_s else float("nan")
    return [{"design": r["design"], "speedup": r["speedup"],
             **{k: v for k, v in r.items() if k not in ("design", "speedup")}} for r in rows]


def table(rows: list[dict[str, Any]]) -> str:
    """Designs side by side: time, speedup and the breakdown, with a bar of each
    design's iteration (compute, exposed sync, exposed virtualization) to scale."""
    from mcdla.io.humane import format_value, percent

    first = rows[0]
    longest = max(r["iteration_time_s"] for r in rows) or 1.0
    width = 24
    header = (f"{first['workload']}, {first['parallel']}-parallel, batch {first['batch']}; "
              f"speedup over {first['design']}; bars to scale: "
              "█ compute, ▒ exposed sync, ░ exposed virtualization")
    cells = []
    for r in rows:
        time_s = r["iteration_time_s"]
        compute, sync = r["busy_s"]["compute"], r["exposed_s"]["sync"]
        virt = r["exposed_s"]["virtualization"]
        parts = [round(width * v / longest) for v in (compute, sync, virt)]
        drawn = ("█" * parts[0] + "▒" * parts[1] + "░" * parts[2])[:width]
        share = (lambda v: percent(v / time_s) if time_s else "n/a")
        ignored = any("ignored" in note and note.startswith("policy") for note in r.get("notes") or ())
        point = r["topology"] if ignored else f"{r['topology']}:{r['policy']}"
        cells.append([r["design"], point, format_value(time_s, "time"),
                      f"{r['speedup']:.2f}x", share(compute), share(sync), share(virt), drawn])
    names = ["design", "point", "iteration", "speedup", "compute", "exp. sync", "exp. virt", "breakdown"]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    right = {2, 3, 4, 5, 6}

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    lines = [header, "", line(names), line(["-" * w for w in widths])] + [line(c) for c in cells]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from mcdla.config.loader import find_input, parse_set
    from mcdla.config.point import Batch, Parallel, check_option
    from mcdla.errors import InputError
    from mcdla.io.write import same_target

    designs = parse_designs(args.designs)
    parallel = check_option(Parallel, args.parallel, "parallel")
    batch = check_option(Batch, args.batch, "batch")
    sets = [parse_set(item) for item in args.sets]
    for topology, _ in designs:  # every name known before the first simulation
        find_input(topology, "topologies", "topology")
    find_input(args.workload, "workloads", "workload")
    if args.plot is not None:
        from mcdla.plots.save import check_plot_path

        check_plot_path(args.plot)
        if same_target(args.plot, args.output):
            raise InputError("--plot and --output name the same file", key="--plot")
    rows = compare(designs, args.workload, parallel, batch, sets)
    if args.plot is not None:
        from mcdla.plots.compare import draw_compare

        draw_compare(rows, args.plot)
    emit_text(table(rows) if args.format == "table" else render(rows, args.format), args)
    return 0
