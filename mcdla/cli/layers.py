"""``mcdla layers``: per-kernel roofline quantities of a workload on one device-node.

For each layer and phase, the kernels one device runs (its share of the batch as in
training: batch/D samples data-parallel, the whole batch and 1/D of each layer
model-parallel) with MACs, HBM bytes, arithmetic intensity, time, attained MAC/s,
utilization and whether compute or memory bounds it (docs/model.md, "Compute model of a
device-node"). ``--plot`` draws them on the device's roofline. The model lives in
:mod:`mcdla.metrics.roofline`; this module parses, checks and prints.
"""

from __future__ import annotations

import argparse

from mcdla.cli.output import add_format_options, emit_text, render
from mcdla.config.point import DEFAULT_POINT as DEFAULTS
from mcdla.config.point import PARALLEL

# Kept in step with mcdla.metrics.roofline.PHASE_CHOICES (a test checks), so that
# building the parser does not import the compute model.
PHASE_CHOICES = ("fwd", "bwd", "recompute", "all")


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Report, for every kernel of every layer, the roofline quantities of one "
                          "device-node: MACs, HBM bytes, arithmetic intensity, time, attained MAC/s, utilization "
                          "and whether it is compute- or memory-bound; the table ends with per-phase totals. "
                          "Each device's share of the batch follows --parallel exactly as in training.")
    parser.add_argument("--workload", default=DEFAULTS["workload"], metavar="NAME|FILE",
                        help="shipped workload name or YAML file (default: %(default)s)")
    parser.add_argument("--topology", default=DEFAULTS["topology"], metavar="NAME|FILE",
                        help="shipped topology name or YAML file; gives the device and the "
                        "device count D (default: %(default)s)")
    parser.add_argument("--batch", default=DEFAULTS["batch"], type=int, metavar="N",
                        help="global batch size (default: %(default)s)")
    parser.add_argument("--parallel", default=DEFAULTS["parallel"], choices=PARALLEL,
                        help="data: each device runs batch/D samples; model: each device runs "
                        "the whole batch on 1/D of every layer (default: %(default)s)")
    parser.add_argument("--phase", default="all", choices=PHASE_CHOICES,
                        help="fwd, bwd (dX and dW), recompute (forward replay of the cheap "
                        "layers memory virtualization recomputes in backward) or all "
                        "(default: %(default)s)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a loaded parameter by dotted key, as in mcdla sim: "
                        "workload.KEY, device.KEY, topology.KEY, ... (training.* does not "
                        "apply here) (repeatable)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the roofline plot to FILE (.png or .svg)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that ``mcdla --help`` does not pay for the compute model.
    from mcdla.config.loader import parse_set
    from mcdla.hw.workload import load_workload
    from mcdla.errors import InputError
    from mcdla.hw.topology import load_topology
    from mcdla.metrics.roofline import layer_report
    from mcdla.config.point import Batch, check_option
    from mcdla.run import route_sets

    if args.plot:  # refuse an unwritable figure before any work
        from mcdla.plots.roofline import check_plot_path

        check_plot_path(args.plot)
    batch = check_option(Batch, args.batch, "batch")
    workload_sets, execution, topology_sets = route_sets([parse_set(item) for item in args.sets])
    if execution:
        section = next(iter(execution))
        key = f"training.{next(iter(execution['training']))}" if section == "training" else f"execution.{section}"
        raise InputError(f"{key} does not apply to mcdla layers (no iteration is simulated)",
                         key="--set")
    topo = load_topology(args.topology, topology_sets)
    work = load_workload(args.workload, workload_sets)
    report = layer_report(work, topo.device, topology=topo.name, parallel=args.parallel, batch=batch,
                          devices=len(topo.devices), phase=args.phase)
    if args.plot:
        from mcdla.plots.roofline import draw_roofline

        draw_roofline(report, args.plot)
    emit_text(_text(report, args.format), args)
    return 0


def _text(report: dict, fmt: str) -> str:
    """JSON: the whole report. CSV: one row per kernel. Table: a header line, the
    kernels, then one totals row per phase."""
    if fmt == "json":
        return render(report, "json")
    if fmt == "csv":
        return render(report["kernels"], "csv")
    from mcdla.io.humane import format_field

    roof = report["roofline"]
    share = (f"{report['local_batch']} samples per device" if report["shards"] == 1
             else f"the whole batch on 1/{report['shards']} of each layer")
    header = (f"{report['workload']} on {report['topology']} ({report['devices']} devices, "
              f"{report['parallel']}-parallel, batch {report['batch']}: {share}); "
              f"device peak {format_field('peak_MACps', roof['peak_MACps'])}, "
              f"HBM {format_field('hbm_bw_Bps', roof['hbm_bw_Bps'])}, "
              f"ridge {format_field('ridge_MAC_per_B', roof['ridge_MAC_per_B'])}\n\n")
    return header + render(report["kernels"], "table") + "\n" + render(report["totals"], "table")
