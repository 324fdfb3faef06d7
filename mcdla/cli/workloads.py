"""``mcdla workloads``: list the shipped workloads (not yet implemented)."""

from __future__ import annotations

import argparse

from mcdla.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("workloads", help="list the shipped workloads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("not implemented yet", key="workloads")
