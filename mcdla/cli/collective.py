"""``mcdla collective``: run one ring collective and report time, algbw and busbw.

The collective runs alone on idle rings, either those of a topology (``--topology``)
or one bidirectional ring of N device-nodes (``--ring N``, the setting of the
paper's Fig. 9). Bandwidths follow nccl-tests: algbw = size / time and busbw =
algbw x (2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter and
all-to-all(v), 1 for broadcast).
"""

from __future__ import annotations

import argparse

from mcdla.hw.collective_model import OPS

_DEFAULT_LINK = "nvlink2"  # --ring's link preset (mcdla.run.DEFAULT_RING_LINK), for --help


def register(parser: argparse.ArgumentParser) -> None:
    from mcdla.cli.output import add_format_options

    parser.description = ("Simulate one ring collective alone on idle rings and report its time "
                          "and nccl-tests bandwidths.")
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
    parser.add_argument("--algorithm", metavar="NAME",
                        help="collective algorithm: ring (ideal, the paper's), nccl (NCCL's tuner: ring "
                        "protocols, NVLS, its tree across machines), nccl_ring (NVLS off), ...; "
                        "default: the topology's, else ring")
    parser.add_argument("--launch-serial", type=int, default=1, metavar="N",
                        help="devices whose kernels one host thread launches in turn, as nccl-tests -g N "
                        "(the launch cost is N x the device's launch_overhead; default 1)")
    parser.add_argument("--nccl-version", metavar="VERSION",
                        help="NCCL's constants for its algorithms: 2.7 (the default), 2.18 or 2.26 (the "
                        "ring's protocols, NVLS's and the trees' latencies and the launch mode of that version)")
    parser.add_argument("--iters", type=int, default=1, metavar="N",
                        help="report the time per collective of N run back to back, as nccl-tests' "
                        "timing loop (-n, 20 by default there): the host launches the next while the "
                        "GPUs run the one before (default 1: one collective alone)")
    parser.add_argument("--hot-share", metavar="SHARE",
                        help="--op all_to_allv: the share of every rank's data bound for one hot rank (the "
                        "hottest expert's), the rest split evenly; default uniform (1/ranks)")
    parser.add_argument("--exact", action="store_true",
                        help="--topology: simulate every rank, where a cluster's ranks are simulated once per "
                        "class of equivalent ranks (the same times, fewer events)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="--topology: override a loaded parameter by dotted key, as mcdla sim --set "
                        "(e.g. --set generator.nodes=16; repeatable)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcdla.api import collective
    from mcdla.cli.output import emit

    emit(collective(op=args.op, size=args.size, ring=args.ring, topology=args.topology,
                    link_bw=args.link_bw, link_latency=args.link_latency, chunk=args.chunk,
                    algorithm=args.algorithm, launch_serial=args.launch_serial, set=args.sets,
                    hot_share=args.hot_share, nccl_version=args.nccl_version, iters=args.iters,
                    exact=args.exact).to_dict(),
         args)
    return 0
