"""The sweep engine: run an experiment's points that are not done yet, record each at once.

Phases, in order: expand and validate the experiment (done by
:func:`mcdla.config.experiment.load_experiment`); check the names its points refer to
(for the simulator's own runner), so a typo stops the sweep before anything is
written; open the folder's journal and find the points already finished; run the rest
on an executor, appending each record to the journal as it arrives; write the results
table from the journal, also when the run is interrupted.

The runner (the function that runs one point) is a parameter: by default the one the
experiment's kind names, resolved lazily inside the workers; tests pass a fake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from mcdla.config.experiment import Experiment, point_key
from mcdla.errors import InputError
from mcdla.sweep import store
from mcdla.sweep.executors import EXECUTORS, run_dask, run_local
from mcdla.sweep.progress import Progress

__all__ = ["SweepResult", "run_sweep", "default_folder", "runner_name"]


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: counts over the experiment's points, and where the table is."""

    experiment: str
    folder: str
    table: str
    points: int
    ran: int
    skipped: int
    failed: int  # points whose (latest) record is an error, this run or an earlier one
    complete: bool


def default_folder(experiment: Experiment) -> Path:
    return Path("results") / experiment.name


def runner_name(runner: str | Callable[..., Any]) -> str:
    if isinstance(runner, str):
        return runner
    return f"{runner.__module__}:{runner.__qualname__}"


def _check_names(experiment: Experiment) -> None:
    """Refuses unknown topology or workload names before anything runs (exit 2)."""
    from mcdla.config.loader import find_input

    folders = {"topology": "topologies", "workload": "workloads"}
    for key, folder in folders.items():
        for name in dict.fromkeys(p[key] for p in experiment.points if key in p):
            try:
                find_input(str(name), folder, key)
            except InputError as exc:
                raise InputError(exc.detail, file=experiment.source, key=key) from None


def run_sweep(
    experiment: Experiment,
    out: Path | str | None = None,
    jobs: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    runner: str | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Runs the unfinished points of ``experiment`` into ``out`` and writes its table."""
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}",
                         key="--executor")
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise InputError(f"must be >= 1, got {jobs}", key="--jobs")
    runner = runner if runner is not None else experiment.runner
    name = runner_name(runner)
    if name == experiment.kind_spec.runner and experiment.kind == "sim":
        _check_names(experiment)
    folder = Path(out) if out is not None else default_folder(experiment)
    keyed = [(point_key(experiment.kind, name, p), p) for p in experiment.points]

    with store.Journal(folder) as journal:
        records = journal.records()

        def pending(key: str) -> bool:
            record = records.get(key)
            return record is None or (retry_failed and record["status"] != "ok")

        tasks = [(runner, key, dict(point)) for key, point in keyed if pending(key)]
        bar = Progress(len(keyed), len(keyed) - len(tasks), experiment.name, enabled=progress)
        ran = 0
        try:
            if tasks:
                stream = (run_local(tasks, jobs) if executor == "local"
                          else run_dask(tasks, jobs, scheduler))
                for record in stream:
                    journal.append(record)
                    records[record["key"]] = record
                    ran += 1
                    bar.advance(record["status"] == "ok")
        finally:
            bar.close()
            header, rows = store.table_rows(experiment.columns, keyed, records)
            table = store.write_table(folder, header, rows)
    failed = sum(1 for key, _ in keyed if key in records and records[key]["status"] != "ok")
    return SweepResult(
        experiment=experiment.name,
        folder=str(folder),
        table=str(table),
        points=len(keyed),
        ran=ran,
        skipped=len(keyed) - len(tasks),
        failed=failed,
        complete=all(key in records for key, _ in keyed),
    )
