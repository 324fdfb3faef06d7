"""``mcdla plot``: draw an experiment's figure from its results (not yet implemented)."""

from __future__ import annotations

import argparse

from mcdla.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plot", help="draw an experiment's figure from its results")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("not implemented yet", key="plot")
