"""``mcdla sweep``: run an experiment's points in parallel, resumably (not yet implemented)."""

from __future__ import annotations

import argparse

from mcdla.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="run an experiment's points in parallel, resumably")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("not implemented yet", key="sweep")
