"""``mcdla validate``: mcdla beside public measurements (docs/validation.md).

Runs the shipped validation tables (validation/*.yaml, or files named with
--table) and prints, per row, the measured value, mcdla's, the error and a verdict
(pass within the row's tolerance, miss outside it, error when the run failed). A miss
is a finding, not a failure: the exit status is 1 only when a row's run failed.
"""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    from mcdla.cli.output import add_format_options

    parser.description = ("Run the validation tables and print measured, simulated, "
                          "error and verdict per row.")
    parser.add_argument("--table", action="append", default=[], metavar="NAME|FILE",
                        help="a validation table (repeatable; default: every shipped one)")
    parser.add_argument("--reduced", action="store_true", help="only the rows marked for the reduced (CI) run")
    parser.add_argument("--all", action="store_true", dest="all_rows",
                        help="also the slow rows (minutes of CPU and gigabytes each)")
    parser.add_argument("--plot", metavar="FILE", help="also draw measured against simulated (.png or .svg)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_format_options(parser)
    parser.set_defaults(run=run)


def _human(o) -> dict:
    from mcdla.config.validation import MEASURES
    from mcdla.io.humane import format_value, percent

    kind = MEASURES[o.measure][0] or "plain"
    if o.measure == "overhead":
        kind = "percent"
    elif o.measure == "flops_per_device":  # a plain number in the file, a rate to read
        kind = "flop_rate"
    return {
        "table": o.table,
        "quantity": o.quantity,
        "measured": format_value(o.measured, kind),
        "mcdla": "—" if o.simulated is None else format_value(o.simulated, kind),
        "error": "—" if o.error is None else ("+" if o.error >= 0 else "") + percent(o.error),
        "tolerance": percent(o.tolerance),
        "verdict": o.verdict,
    }


def run(args: argparse.Namespace) -> int:
    from mcdla.api import validate
    from mcdla.cli.output import emit

    if args.plot:
        from mcdla.plots.save import check_plot_path

        check_plot_path(args.plot)

    def progress(n, total, quantity):
        if not args.quiet and sys.stderr.isatty():
            print(f"\r[{n + 1}/{total}] {quantity[:60]:<60}", end="", file=sys.stderr, flush=True)

    outcomes = validate(table=args.table, reduced=args.reduced, all_rows=args.all_rows, progress=progress)
    if not args.quiet and sys.stderr.isatty():
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    if args.format == "table":
        emit([_human(o) for o in outcomes], args)
        passed = sum(o.verdict == "pass" for o in outcomes)
        print(f"{passed} of {len(outcomes)} rows within tolerance", file=sys.stderr)
    else:
        emit([o.to_dict() for o in outcomes], args)
    if args.plot:
        from mcdla.plots.validation import draw_validation

        draw_validation(outcomes, args.plot)
    return 1 if any(o.verdict == "error" for o in outcomes) else 0
