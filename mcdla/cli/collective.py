"""``mcdla collective``: run one ring collective and report time, algbw and busbw.

The collective runs alone on idle rings, either those of a topology (``--topology``)
or one bidirectional ring of N device-nodes (``--ring N``, the setting of the
paper's Fig. 9). Bandwidths follow nccl-tests: algbw = size / time and busbw =
algbw x (2(n-1)/n for all-reduce, (n-1)/n for all-gather and reduce-scatter, 1 for
broadcast).
"""

from __future__ import annotations

import argparse

from mcdla import units
from mcdla.errors import InputError
from mcdla.hw.collective_model import OPS, algbw_Bps, busbw_Bps

# --ring's default link: the NVLink 2.0 preset, read from the same file the
# topologies use so that the number lives in one place.
# Relative to mcdla.config.loader.DATA_ROOT; the loader (and PyYAML) is imported only
# when the command runs, so that ``mcdla --help`` stays fast.
# Largest --ring: as mcdla.hw.topology.MAX_NODES, far above Fig. 9's 16 ranks.
_MAX_RING = 4096
_DEFAULT_LINK = "nvlink2"


def register(sub: argparse._SubParsersAction) -> None:
    from mcdla.cli.output import add_format_options

    parser = sub.add_parser(
        "collective",
        help="run one ring collective and report time, algbw and busbw",
        description="Simulate one ring collective alone on idle rings and report its time "
        "and nccl-tests bandwidths.",
    )
    parser.add_argument("--op", required=True, choices=OPS, help="the collective")
    parser.add_argument("--size", required=True, metavar="SIZE", help="message size, e.g. '8 MB'")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--topology", metavar="NAME|FILE", help="use the collective rings of a topology")
    where.add_argument("--ring", type=int, metavar="N", help="one bidirectional ring of N device-nodes")
    parser.add_argument(
        "--link-bw",
        metavar="BW",
        help=f"--ring: bandwidth per direction of each link (default: the {_DEFAULT_LINK} preset, 25 GB/s)",
    )
    parser.add_argument(
        "--link-latency",
        metavar="T",
        help=f"--ring: latency of each hop (default: the {_DEFAULT_LINK} preset, 500 ns)",
    )
    parser.add_argument("--chunk", metavar="SIZE", help="pipelining chunk size (default: 4 KB)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def _quantity(value: str, kind: str, option: str, *, positive: bool) -> float:
    """``value`` parsed as ``kind``; a malformed or out-of-range value names ``option``."""
    try:
        number = units.parse(value, kind)
    except units.UnitError as exc:
        raise InputError(str(exc), key=option) from None
    if number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise InputError(f"must be {bound}, got {value!r}", key=option)
    from mcdla.config.schema import Where, check_physical

    return check_physical(number, kind, Where("", option), value)


def _default_link() -> tuple[float, float]:
    from mcdla.config.hardware import LinkSpec
    from mcdla.config.schema import Where, build
    from mcdla.config.topology import PRESETS_FILE, load_presets

    link = build(LinkSpec, load_presets()["links"][_DEFAULT_LINK],
                 Where(str(PRESETS_FILE), f"links.{_DEFAULT_LINK}"))
    return link.effective_bw_Bps, link.latency


def run(args: argparse.Namespace) -> int:
    from mcdla.cli.output import emit
    from mcdla.sim.collectives import DEFAULT_CHUNK_BYTES, ring_of_devices, run_collective

    size_bytes = _quantity(args.size, "size", "--size", positive=False)
    chunk_bytes = DEFAULT_CHUNK_BYTES if args.chunk is None else _quantity(args.chunk, "size", "--chunk", positive=True)
    if args.ring is not None:
        if args.ring < 2:
            raise InputError(f"a ring needs at least 2 devices, got {args.ring}", key="--ring")
        if args.ring > _MAX_RING:  # refused before building a ring that exhausts memory
            raise InputError(f"{args.ring} is more than the supported maximum of {_MAX_RING} devices",
                             key="--ring")
        bw_Bps, latency_s = _default_link()
        if args.link_bw is not None:
            bw_Bps = _quantity(args.link_bw, "bandwidth", "--link-bw", positive=True)
        if args.link_latency is not None:
            latency_s = _quantity(args.link_latency, "time", "--link-latency", positive=False)
        rings, capacities = ring_of_devices(args.ring, bw_Bps, latency_s)
        name = f"ring{args.ring}"
    else:
        for option, value in (("--link-bw", args.link_bw), ("--link-latency", args.link_latency)):
            if value is not None:
                raise InputError("only applies to --ring; a topology sets its own links", key=option)
        from mcdla.hw.topology import load_topology

        topology = load_topology(args.topology)
        if not topology.rings:
            raise InputError(f"topology {topology.name!r} has no collective rings", key="--topology")
        rings, capacities, name = topology.rings, topology.capacities(), topology.name
    result = run_collective(rings, capacities, args.op, size_bytes, chunk_bytes=chunk_bytes)
    record = result.record
    ranks = record.ranks
    emit(
        {
            "op": args.op,
            "size_bytes": size_bytes,
            "ranks": ranks,
            "rings": len(rings),
            "time_s": record.time_s,
            "algbw_Bps": algbw_Bps(size_bytes, record.time_s),
            "busbw_Bps": busbw_Bps(args.op, size_bytes, record.time_s, ranks),
            "topology": name,
            "chunk_bytes": chunk_bytes,
            "flows": record.flows,
            "events": result.events,
            "wall_s": result.wall_s,
        },
        args,
    )
    return 0
