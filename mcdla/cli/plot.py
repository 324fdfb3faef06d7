"""``mcdla plot``: draw an experiment's figures from its results table, or one run's
per-link utilization over time from its trace (``--trace``)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Draw the figures an experiment declares, as PNG and SVG, from the "
                          "results table its sweep wrote.")
    parser.add_argument("experiment", metavar="EXPERIMENT", nargs="?",
                        help="experiment name or YAML file (omit with --trace)")
    parser.add_argument("--trace", metavar="FILE",
                        help="draw per-link utilization over time from a trace of mcdla sim --trace")
    parser.add_argument("--results", metavar="DIR",
                        help="sweep folder to read (default: results/<name>/)")
    parser.add_argument("--out", metavar="DIR",
                        help="where to write the figures (default: the sweep folder, or the trace's folder)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from mcdla.errors import InputError
    from mcdla.io.write import check_folder

    if (args.experiment is None) == (args.trace is None):
        raise InputError("give either EXPERIMENT or --trace FILE")
    if args.out is not None:  # a file, '' or an unwritable place: refused before drawing
        check_folder(args.out, "--out")
    if args.results == "":
        raise InputError("expected a directory, got an empty string", key="--results")
    if args.trace is not None:
        from mcdla.plots.links import render_link_utilization

        for path in render_link_utilization(args.trace, args.out):
            print(path, file=sys.stderr)
        return 0

    from mcdla.config.experiment import load_experiment
    from mcdla.plots.figures import plot_experiment
    from mcdla.sweep.engine import default_folder

    experiment = load_experiment(args.experiment)
    results = Path(args.results) if args.results else default_folder(experiment)
    for path in plot_experiment(experiment, results, args.out):
        print(path, file=sys.stderr)
    return 0
