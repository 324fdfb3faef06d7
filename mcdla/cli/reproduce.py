"""``mcdla reproduce``: run every paper experiment and write figures and a report (not yet implemented)."""

from __future__ import annotations

import argparse

from mcdla.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reproduce", help="run every paper experiment and write figures and a report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("not implemented yet", key="reproduce")
