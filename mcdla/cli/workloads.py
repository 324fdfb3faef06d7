"""``mcdla workloads``: list the shipped workloads, one row each, or summarize any
workload file (``--workload FILE``, repeatable) to check it against a reference.

Fields: name, layers (weighted layers as Table III counts them: conv and fc, or
timesteps for the RNNs), params, active_params (those one token uses: a mixture of
experts' unrouted experts left out), macs_fwd_per_sample, weight_bytes,
activation_bytes_per_sample. Everything is inferred from the workload files.
"""

from __future__ import annotations

import argparse

from mcdla.cli.output import add_format_options, emit


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("List the shipped workloads with their inferred sizes, or (--workload) "
                          "summarize the named workloads or files.")
    parser.add_argument("--workload", action="append", metavar="NAME|FILE",
                        help="summarize this workload or file instead (repeatable)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that ``mcdla --help`` does not pay for the workload machinery.
    from mcdla.config.loader import shipped
    from mcdla.hw.workload import load_workload

    names = args.workload or shipped("workloads")
    rows = [load_workload(name).summary() for name in names]
    emit(rows, args)
    return 0
