"""``mcdla collective``: run one ring collective and report time, algbw and busbw (not yet implemented)."""

from __future__ import annotations

import argparse

from mcdla.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("collective", help="run one ring collective and report time, algbw and busbw")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("not implemented yet", key="collective")
