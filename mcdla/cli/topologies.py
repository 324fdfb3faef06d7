"""``mcdla topologies``: list the shipped topologies (not yet implemented)."""

from __future__ import annotations

import argparse

from mcdla.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topologies", help="list the shipped topologies")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("not implemented yet", key="topologies")
