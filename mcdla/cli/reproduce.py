"""``mcdla reproduce``: run every paper experiment, draw its figures, write the report
(and the studies beyond the paper, each its own section of the report).

Each experiment's sweep is resumable (``DIR/results/<name>/``), so an interrupted
reproduce picks up where it stopped. One experiment that cannot run (an unknown
topology, say) is noted in the report and the others go on.
"""

from __future__ import annotations

import argparse

from mcdla.cli.output import positive_int

# The paper's experiments, in the order they run; power reads fig11_13's speedups;
# headline_sensitivity re-runs fig11_13's DC-DLA, HC-DLA and MC-DLA(B) under other readings of the paper.
PAPER_EXPERIMENTS = ("fig09", "fig11_13", "fig14", "pcie4", "dgx2", "tpuv2", "cdma", "scalability", "power",
                     "headline_sensitivity")
# Studies beyond the paper that the report also presents (their own sections).
BEYOND_EXPERIMENTS = ("llm_memory", "memory_centric_2026", "scale_out", "cluster_fabric", "frontier_scale",
                      "moe_memory", "serving_memory_2026")
EXPERIMENTS = PAPER_EXPERIMENTS + BEYOND_EXPERIMENTS


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Run every paper experiment (resumably), draw the figures and write a "
                          "Markdown report with mcdla's numbers beside the paper's.")
    parser.add_argument("--out", metavar="DIR", default=".",
                        help="root folder: results in DIR/results/, figures in DIR/plots/, "
                        "report DIR/docs/results.md (default: the current folder)")
    parser.add_argument("--jobs", type=positive_int, metavar="N", help="points run at once (default: the number of CPUs)")
    parser.add_argument("--plots", metavar="DIR", help="figure folder (default: DIR/plots)")
    parser.add_argument("--report", metavar="FILE", help="report file (default: DIR/docs/results.md)")
    parser.add_argument("--only", action="append", choices=EXPERIMENTS, metavar="NAME",
                        help="run only this experiment (repeatable; the report uses every table present)")
    parser.add_argument("--report-only", action="store_true",
                        help="no sweeps: redraw the figures and rewrite the report from the results present")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local worker processes or a Dask cluster (default: %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    from mcdla.config.experiment import load_experiment
    from mcdla.errors import InputError
    from mcdla.io.write import check_folder, check_output, make_folder, write_text
    from mcdla.plots.figures import load_results, plot_experiment
    from mcdla.sweep.engine import run_sweep
    from mcdla.sweep.report import ExperimentStatus, render_report
    from mcdla.sweep.store import TABLE, read_journal

    started = time.monotonic()
    # Every output place is checked before any sweep runs.
    root = check_folder(args.out, "--out")
    plots = check_folder(args.plots, "--plots") if args.plots is not None else root / "plots"
    if args.plots is None:
        check_folder(plots, "--out")
    if args.report is not None:
        report = Path(args.report)
        check_output(report, "--report")
    else:
        report = root / "docs" / "results.md"
        check_folder(report.parent, "--out")
    experiments = [load_experiment(name) for name in EXPERIMENTS]  # all valid before any runs
    selected = set(args.only or EXPERIMENTS)
    statuses, tables, figures = [], {}, {}
    for experiment in experiments:
        folder = root / "results" / experiment.name
        problem, ran, failed, unfit, simulated_s, swept = "", 0, 0, 0, 0.0, False
        if experiment.name in selected and not args.report_only:
            try:
                result = run_sweep(experiment, out=folder, jobs=args.jobs, executor=args.executor,
                                   scheduler=args.scheduler, progress=not args.quiet)
                ran, failed, swept = result.ran, result.failed, True
            except InputError as exc:  # e.g. a topology not shipped yet: note it, go on
                problem = f"not run: {exc}"
                print(f"mcdla reproduce: {experiment.name}: {problem}", file=sys.stderr)
        table = None
        if (folder / TABLE).is_file():
            try:
                table = load_results(folder)
            except InputError as exc:  # a damaged table: noted in the report, the others go on
                problem = (problem + "; " if problem else "") + f"unreadable results: {exc}"
                print(f"mcdla reproduce: {experiment.name}: {problem}", file=sys.stderr)
        if table is not None:
            tables[experiment.name] = table
            records = read_journal(folder / "journal.jsonl")
            simulated_s = sum(float(r.get("elapsed_s", 0.0)) for r in records.values())
            # A point that does not fit its design is a result of a memory study (what fits
            # where), counted apart; any other error is a failure.
            bad = table["status"] != "ok"
            unfit = int((bad & (table.get("error_kind") == "infeasible")).sum()) if "error_kind" in table else 0
            failed = int(bad.sum()) - unfit
            if not ran and not records:
                problem = problem or "no journal"
            try:
                plot_experiment(experiment, folder, plots)
                figures[experiment.name] = experiment.figures
            except Exception as exc:  # noqa: BLE001 - a figure bug must not lose the report
                problem = (problem + "; " if problem else "") + f"figure failed: {type(exc).__name__}: {exc}"
                print(f"mcdla reproduce: {experiment.name}: {problem}", file=sys.stderr)
        elif not problem:
            problem = "no results"
        statuses.append(ExperimentStatus(experiment.name, points=len(experiment.points), failed=failed,
                                         ran=ran, problem=problem, simulated_s=simulated_s,
                                         swept=swept, unfit=unfit))
    if not tables:  # an all-"n/a" report would only destroy the one already there
        raise InputError(f"no results under {root / 'results'}: not writing a report without numbers "
                         "(run without --report-only first)", file=str(report))
    text = render_report(tables, statuses, time.monotonic() - started, plots, report, figures)
    if args.report is None:
        make_folder(report.parent, "--out")
    write_text(report, text, option="--report")
    print(f"mcdla reproduce: report written to {report}", file=sys.stderr)
    troubled = [s.name for s in statuses if s.failed or (s.problem and s.name in selected)]
    if troubled:  # the report says what; the exit status must not say all is well
        print(f"mcdla reproduce: failed points or problems in {', '.join(troubled)}; see the report",
              file=sys.stderr)
        return 1
    return 0
