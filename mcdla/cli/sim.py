"""``mcdla sim``: simulate one training iteration and report where the time goes."""

from __future__ import annotations

import argparse

from mcdla.cli.output import add_format_options, emit
from mcdla.config.point import DEFAULT_POINT as DEFAULTS
from mcdla.config.point import PARALLEL, POLICIES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sim",
        help="simulate one training iteration",
        description="Simulate one training iteration of a workload on a system design and "
        "report the iteration time, the Fig. 11 breakdown, link bytes and CPU memory bandwidth.",
    )
    parser.add_argument("--topology", default=DEFAULTS["topology"], metavar="NAME|FILE",
                        help="shipped topology name or YAML file (default: %(default)s)")
    parser.add_argument("--policy", default=DEFAULTS["policy"], choices=POLICIES,
                        help="page-allocation policy on memory-nodes (default: %(default)s)")
    parser.add_argument("--workload", default=DEFAULTS["workload"], metavar="NAME|FILE",
                        help="shipped workload name or YAML file (default: %(default)s)")
    parser.add_argument("--parallel", default=DEFAULTS["parallel"], choices=PARALLEL,
                        help="data- or model-parallel training (default: %(default)s)")
    parser.add_argument("--batch", default=DEFAULTS["batch"], type=int, metavar="N",
                        help="global batch size (default: %(default)s)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a loaded parameter by dotted key, e.g. "
                        "--set device.hbm_bw='1.2 TB/s' (repeatable)")
    parser.add_argument("--trace", metavar="FILE",
                        help="write a Chrome/Perfetto trace (JSON trace-event format) to FILE")
    add_format_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcdla.sim.run import simulate_from_args

    result = simulate_from_args(args)
    emit(result, args)
    return 0
