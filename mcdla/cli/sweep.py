"""``mcdla sweep``: run an experiment's points in parallel, resumably."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mcdla.cli.output import add_format_options, emit, emit_text, positive_int, render


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Run the points of an experiment (a shipped name or a YAML file) and "
                          "write results.csv in the sweep folder. Each finished point is journaled at once; "
                          "a rerun skips the points already done.")
    parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or YAML file")
    parser.add_argument("--out", metavar="DIR", help="sweep folder (default: results/<name>/)")
    parser.add_argument("--jobs", type=positive_int, metavar="N",
                        help="points run at once (default: the number of CPUs)")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local worker processes or a Dask cluster (default: %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler address (default: a local Dask cluster of --jobs workers)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the points recorded with an error")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_format_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mcdla.sweep.engine import prepare_sweep, run_sweep

    # mcdla.sweep (the API) in two steps, so that --output is checked before anything runs.
    experiment, folder = prepare_sweep(args.experiment, out=args.out, executor=args.executor,
                                       scheduler=args.scheduler)
    _check_output(args, folder)
    result = run_sweep(experiment, out=args.out, jobs=args.jobs, executor=args.executor,
                       scheduler=args.scheduler, retry_failed=args.retry_failed,
                       progress=not args.quiet)
    summary = dataclasses.asdict(result)
    speedups = _speedups(result.table)
    if args.format == "json":
        emit({**summary, "speedups": speedups}, args)
    elif args.format == "table" and speedups:  # the counts, then speedups over DC-DLA
        emit_text(render(summary, "table") + "\nspeedup over dc (iteration time of dc / of the design):\n"
                  + render(speedups, "table"), args)
    else:
        emit(summary, args)
    if result.failed:  # the table has them; the exit status must not say all is well
        print(f"mcdla sweep: {result.failed} of {result.points} points failed; their errors are in "
              f"the error column of {result.table}", file=sys.stderr)
        return 1
    return 0


def _check_output(args: argparse.Namespace, folder) -> None:
    """Refuses, before any point runs, an ``--output`` that would overwrite the sweep's
    own files (its journal, say)."""
    from mcdla.errors import InputError
    from mcdla.io.write import same_target
    from mcdla.sweep.store import JOURNAL, PARQUET, TABLE
    from pathlib import Path

    if args.output is None or args.output == "-":
        return
    import os

    if os.path.realpath(args.output) in map(str, Path(os.path.realpath(folder)).parents):  # created by the sweep
        raise InputError(f"is a folder the sweep folder {str(folder)!r} is created in; write the summary "
                         "elsewhere", key="--output")
    for own in ("", JOURNAL, TABLE, PARQUET, ".lock"):
        if same_target(args.output, folder / own if own else folder):
            what = f"the sweep's {own}" if own else "the sweep folder"
            raise InputError(f"would overwrite {what} in {str(folder)!r}; write the summary elsewhere",
                             key="--output")


def _speedups(table_path: str) -> list[dict]:
    """Speedups over dc per workload and design, when the sweep has dc rows."""
    from pathlib import Path

    import pandas as pd

    from mcdla.metrics.compare import speedup_pivot

    if not Path(table_path).is_file():
        return []
    table = pd.read_csv(table_path)
    if "topology" not in table or "iteration_time_s" not in table:
        return []
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for row in speedup_pivot(table)]
