"""``mcdla sim``: simulate one training iteration and report where the time goes.

The table leads with the answer: the iteration time, the throughput, and where each
device's time goes as a share of the iteration, with a bar per part; then every field
of the result by its dotted name. Per-link byte counters (32 lines on the ring) are
listed only with ``--links``; JSON and CSV carry them too, in raw SI units, except for
runs past :data:`mcdla.metrics.summary.LINK_LIST_DEVICES` devices, which sum them up per
class of link unless ``--links`` (or ``--exact``) asks for every link.
"""

from __future__ import annotations

import argparse

from typing import Any, Mapping

from mcdla.cli.output import add_format_options, emit_text, render
from mcdla.config.point import DEFAULT_POINT as DEFAULTS
from mcdla.config.point import PARALLEL
from mcdla.config.placement import PLACEMENTS


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Simulate one training iteration of a workload on a system design and "
                          "report the iteration time, the Fig. 11 breakdown, link bytes and CPU memory bandwidth.")
    parser.add_argument("--topology", default=DEFAULTS["topology"], metavar="NAME|FILE",
                        help="shipped topology name or YAML file (default: %(default)s)")
    parser.add_argument("--policy", default=DEFAULTS["policy"], choices=PLACEMENTS.names(),
                        help="page-allocation policy on memory-nodes (default: %(default)s)")
    add_run_options(parser, "override a loaded parameter by dotted key, e.g. "
                    "--set device.hbm_bw='1.2 TB/s' (repeatable)")
    parser.add_argument("--execution", metavar="NAME|FILE",
                        help="an execution file (executions/): its execution and training keys, "
                        "as --set execution.KEY and training.KEY; a --set overrides it")
    parser.add_argument("--device", metavar="PRESET",
                        help="the device preset of every device-node (presets: topologies/"
                        "presets/hardware.yaml), the same as --set device=PRESET")
    parser.add_argument("--trace", metavar="FILE",
                        help="write a Chrome/Perfetto trace (JSON trace-event format) to FILE")
    parser.add_argument("--budget", type=float, metavar="N",
                        help="work budget in channel updates (default 1e10, or MCDLA_WORK_BUDGET): "
                        "runs estimated over it are refused before they start")
    parser.add_argument("--exact", action="store_true",
                        help="simulate every rank, not one per class of equivalent ranks (rank symmetry: "
                        "the same results to float rounding, at a cost that grows with the devices); "
                        "the same as --set execution.exact=true")
    parser.add_argument("--links", action="store_true",
                        help="table: also list the bytes carried by every directed link; runs of more "
                        "than a few thousand devices have them per class of link unless --links or --exact is given "
                        "(docs/cli.md)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def add_run_options(parser: argparse.ArgumentParser, set_help: str) -> None:
    """The options a run of one workload takes (mcdla sim, mcdla compare)."""
    parser.add_argument("--workload", default=DEFAULTS["workload"], metavar="NAME|FILE",
                        help="shipped workload name or YAML file (default: %(default)s)")
    parser.add_argument("--parallel", default=DEFAULTS["parallel"], choices=PARALLEL,
                        help="data- or model-parallel training (default: %(default)s)")
    parser.add_argument("--batch", default=DEFAULTS["batch"], type=int, metavar="N",
                        help="global batch size (default: %(default)s)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help=set_help)


def run(args: argparse.Namespace) -> int:
    from mcdla.api import simulate
    from mcdla.errors import InputError
    from mcdla.io.write import same_target

    if args.trace is not None and same_target(args.trace, args.output):
        raise InputError("--trace and --output name the same file; one would overwrite the other",
                         key="--trace")
    result = simulate(topology=args.topology, policy=args.policy, workload=args.workload, parallel=args.parallel,
                      batch=args.batch, set=args.sets, device=args.device, trace=args.trace, budget=args.budget,
                      exact=args.exact, execution=args.execution, links=args.links).to_dict()
    if args.format == "table":
        emit_text(table(result, links=args.links), args)
    else:
        emit_text(render(result, args.format), args)
    return 0


# The parts of an iteration, as a share of it (the Fig. 11 breakdown): label, field.
BREAKDOWN = (
    ("compute", "busy_s.compute"),
    ("of which recompute", "recompute_s"),
    ("sync, busy", "busy_s.sync"),
    ("sync, exposed", "exposed_s.sync"),
    ("comm in flight, dp", "comm_s.dp"),
    ("comm in flight, tp", "comm_s.tp"),
    ("comm in flight, pp", "comm_s.pp"),
    ("comm in flight, ep", "comm_s.ep"),
    ("virtualization, busy", "busy_s.virtualization"),
    ("virtualization, exposed", "exposed_s.virtualization"),
)


# Breakdown lines shown only when not zero: recompute, and each axis's communication.
OPTIONAL = ("recompute_s", "comm_s.dp", "comm_s.tp", "comm_s.pp", "comm_s.ep")


def throughput(result: Mapping[str, Any]) -> str:
    """Samples trained per second: the batch over the iteration time."""
    from mcdla.metrics.summary import samples_per_s

    rate = samples_per_s(result["batch"], result["iteration_time_s"])
    if rate != rate:
        return "n/a"
    return f"{rate:,.0f} samples/s" if rate >= 100 else f"{rate:.3g} samples/s"


def breakdown(result: Mapping[str, Any], indent: str = "  ") -> list[str]:
    """One line per part of the iteration: a bar, its share of the iteration, its time."""
    from mcdla.io.humane import bar, format_value, percent
    from mcdla.io.records import flatten

    flat = flatten(result)
    time_s = result["iteration_time_s"]
    width = max(len(label) for label, _ in BREAKDOWN)
    lines = []
    for label, field in BREAKDOWN:
        value = flat.get(field)
        if value is None or (field in OPTIONAL and not value):  # shown when there is any
            continue
        share = value / time_s if time_s else 0.0
        lines.append(f"{indent}{label:<{width}}  {bar(share)}  {percent(share):>6}  "
                     f"{format_value(value, 'time')}")
    return lines


def layout(result: Mapping[str, Any]) -> str:
    """How the run is parallel: ``data-parallel``, or its degrees (``tp 8 x pp 16 x dp 8,
    16 micro-batches``) when tensor or pipeline parallelism splits the replicas; ZeRO's stage."""
    lay = result.get("layout") or {}
    text = f"{result['parallel']}-parallel"
    if result["parallel"] == "data" and (lay.get("tensor", 1) > 1 or lay.get("pipeline", 1) > 1):
        text = f"tp {lay['tensor']} x pp {lay['pipeline']} x dp {lay['data']}"
    if lay.get("pipeline", 1) > 1 or lay.get("micro_batches", 1) > 1:  # through stages, or accumulated
        text += f", {lay['micro_batches']} micro-batches"
    return text + (f", ZeRO-{lay['zero']}" if lay.get("zero") else "")


def offloaded(result: Mapping[str, Any]) -> str:
    """What left the device: the offload policy and what it moved, or that nothing did."""
    from mcdla.io.humane import format_value

    if result.get("offload", "none") == "none":
        return "feature maps: all kept on the device"
    return (f"feature maps: {result['offloaded_maps']} offloaded ({result['offload']} policy), "
            f"{format_value(result['offloaded_bytes'], 'size')} a device")


def table(result: Mapping[str, Any], *, links: bool = False) -> str:
    """The table form of a sim result (see the module docstring)."""
    from mcdla.io.humane import format_value

    heading = [
        f"iteration time  {format_value(result['iteration_time_s'], 'time')}",
        f"throughput      {throughput(result)}",
        "",
        f"{result['workload']}, {layout(result)}, batch {result['batch']}, on {result['topology']} "
        f"({result['devices']} devices" + (f", {result['policy']} policy)" if result.get("memory_nodes") else ")"),
        offloaded(result),
        "",
        "time per device as a share of the iteration (busy: the stream works; exposed: "
        "compute waits for it):",
        *breakdown(result),
        "",
    ]
    details = dict(result) if links else {k: v for k, v in result.items() if k != "link_bytes"}
    return "\n".join(heading) + "\n" + render(details, "table")
