"""``mcdla topologies``: one row per shipped design point (or per named file).

Each row states what the design gives without running a simulation: the per-device
collective bandwidth of its rings and the per-device memory-virtualization bandwidth
with every device offloading at once (``bw_aware`` policy). Presets are building
blocks, not design points, and are not listed. The listing of every shipped design
passes over the frontier-scale ones (more than :data:`LISTED_NODES` graph nodes): each
takes minutes to build in full (docs/performance.md); named, they are built.
"""

from __future__ import annotations

import argparse
import sys

from mcdla.cli.output import add_format_options, emit

# Graph nodes of the largest design the full listing builds: above the 16,384-device
# rings with their memory-nodes (32,768), below the 100,000-GPU class (117,504 and more),
# whose build alone takes minutes on the project's 2-core machines.
LISTED_NODES = 65536


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("List the shipped design points (or the named ones) with their ring "
                          "count and per-device collective and virtualization bandwidths.")
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME|FILE",
        help="topologies to describe (default: every shipped one)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter of every listed topology by dotted key "
        "(e.g. links.pcie=pcie4_x16)",
    )
    add_format_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcdla.config.loader import parse_set, shipped
    from mcdla.hw.topology import load_topology

    from mcdla.config.generators import TooLarge

    sets = [parse_set(item) for item in args.sets]
    # Build every row before printing, so a bad input writes nothing.
    if args.names:
        rows = [load_topology(name, sets).summary() for name in args.names]
    else:  # every shipped one but those too large to build today, each named on stderr
        rows = []
        for name in shipped("topologies"):
            try:
                rows.append(load_topology(name, sets, max_nodes=LISTED_NODES).summary())
            except TooLarge as error:
                print(f"mcdla topologies: {name} not listed: {error.detail} in a listing; name it to build it "
                      "in full (minutes), or reduced with --set generator.nodes=N (and its tiers)", file=sys.stderr)
    emit(rows, args)
    return 0
