"""``mcdla plot``: draw an experiment's figures from its results table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plot",
        help="draw an experiment's figure from its results",
        description="Draw the figures an experiment declares, as PNG and SVG, from the "
        "results table its sweep wrote.",
    )
    parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or YAML file")
    parser.add_argument("--results", metavar="DIR",
                        help="sweep folder to read (default: results/<name>/)")
    parser.add_argument("--out", metavar="DIR", help="where to write the figures (default: the sweep folder)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from mcdla.config.experiment import load_experiment
    from mcdla.plots.figures import plot_experiment
    from mcdla.sweep.engine import default_folder

    experiment = load_experiment(args.experiment)
    results = Path(args.results) if args.results else default_folder(experiment)
    for path in plot_experiment(experiment, results, args.out):
        print(path, file=sys.stderr)
    return 0
