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

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from mcdla.config.experiment import Experiment, point_key
from mcdla.errors import InputError, Terminated
from mcdla.sweep.store import Journal, table_rows, write_table
from mcdla.sweep.executors import EXECUTORS, WorkerDied, run_dask, run_local
from mcdla.sweep.progress import Progress

__all__ = ["SweepResult", "run_sweep", "prepare_sweep", "sweep", "default_folder", "runner_name"]


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


def _check_points(experiment: Experiment) -> None:
    """Refuses, before anything runs (exit 2), a point whose inputs do not load: an
    unknown topology, workload or preset, a bad value (``device.hbm_bw: nope``). Each
    distinct topology and workload is loaded once, the points visited by topology with
    one held at a time (memory: the largest, not their sum), so the first bad point
    reported is the first in that order, named by its index; nothing is simulated."""
    from mcdla.run import OneTopology, check_point, topology_key

    cache = OneTopology()
    points = experiment.points
    for i in sorted(range(len(points)), key=lambda i: topology_key(points[i])):
        point = points[i]
        try:
            check_point(point, cache)
        except InputError as exc:
            raise InputError(f"point {i} ({_label(point)}): {exc}", file=experiment.source) from None


def _label(point: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in point.items())
    return text if len(text) <= 80 else text[:77] + "..."


# Input files a point of each kind reads, by role: (folder, point key, default).
_PRESETS = ("topologies/presets", None, "hardware")
_INPUT_FILES = {
    "sim": {"topology": ("topologies", "topology", None), "workload": ("workloads", "workload", None),
            "presets": _PRESETS},
    "collective": {"topology": ("topologies", "topology", None), "presets": _PRESETS},
    "power": {"presets": _PRESETS},
    "serve": {"topology": ("topologies", "topology", None), "workload": ("workloads", "workload", None),
              "presets": _PRESETS},
}


def _input_hashes(experiment: Experiment, point: Mapping[str, Any], seen: dict) -> dict[str, str]:
    """Role -> content hash of each input file ``point`` reads (each file hashed once)."""
    import hashlib

    from mcdla.config.loader import DATA_ROOT, find_input

    hashes = {}
    for role, (folder, key, default) in _INPUT_FILES.get(experiment.kind, {}).items():
        name = point.get(key, default) if key else default
        if name is None:
            continue
        try:
            path = (DATA_ROOT / folder / f"{name}.yaml" if key is None
                    else find_input(str(name), folder, role))
            resolved = str(path.resolve())
            if resolved not in seen:
                seen[resolved] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except (InputError, OSError):
            continue  # the runner reports a missing file as the point's error
        hashes[role] = seen[resolved]
    return hashes


def _say_changed(experiment, name, records, keyed, tasks, folder) -> None:
    """One line when journaled points run again because an input file changed."""
    if not tasks or not records:
        return
    before = {point_key(experiment.kind, name, r.get("point", {})) for r in records.values()}
    pending = {key for _, key, _ in tasks}
    changed = sum(1 for key, point in keyed
                  if key in pending and point_key(experiment.kind, name, point) in before)
    if changed:
        print(f"mcdla sweep: {experiment.name}: {changed} point(s) in {folder} ran with other "
              "input files (topology, workload or presets changed); running them again",
              file=sys.stderr)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM is handled like Ctrl-C: the journal stays whole and the table is written."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        _check_points(experiment)
    folder = Path(out) if out is not None else default_folder(experiment)
    seen: dict[str, str] = {}
    keyed = [(point_key(experiment.kind, name, p, _input_hashes(experiment, p, seen)), p)
             for p in experiment.points]

    with Journal(folder) as journal:
        records = journal.records()

        def pending(key: str) -> bool:
            record = records.get(key)
            return record is None or (retry_failed and record["status"] != "ok")

        tasks = [(runner, key, dict(point)) for key, point in keyed if pending(key)]
        _say_changed(experiment, name, records, keyed, tasks, folder)
        bar = Progress(len(keyed), len(keyed) - len(tasks), experiment.name, enabled=progress)
        ran = 0
        try:
            if tasks:
                stream = (run_local(tasks, jobs) if executor == "local"
                          else run_dask(tasks, jobs, scheduler))
                with contextlib.closing(stream), _sigterm_as_interrupt():
                    for record in stream:
                        journal.append(record)
                        records[record["key"]] = record
                        ran += 1
                        bar.advance(record["status"] == "ok")
        except WorkerDied as exc:  # one line, exit 2, the table written below
            raise InputError(str(exc), key=experiment.name) from None
        except KeyboardInterrupt:
            done = sum(1 for key, _ in keyed if key in records)
            print(f"mcdla sweep: {experiment.name}: interrupted; {done} of {len(keyed)} points are "
                  f"saved in {folder}; run the same command again to resume", file=sys.stderr)
            raise
        finally:
            bar.close()
            header, rows = table_rows(experiment.columns, keyed, records)
            table = write_table(folder, header, rows)
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


def prepare_sweep(experiment: str, *, out: Path | str | None = None, executor: str = "local",
                  scheduler: str | None = None) -> tuple[Experiment, Path]:
    """The loaded experiment and its sweep folder, checked before anything runs: the
    options (``mcdla sweep``'s, by their option names), the experiment file, and a
    folder that can hold the sweep (nothing is created)."""
    from mcdla.config.experiment import load_experiment
    from mcdla.io.write import check_folder

    if scheduler and executor != "dask":
        raise InputError("--scheduler needs --executor dask", key="--scheduler")
    loaded = load_experiment(experiment)
    return loaded, check_folder(out if out is not None else default_folder(loaded), "--out")


def sweep(experiment: str, *, out: Path | str | None = None, jobs: int | None = None,
          executor: str = "local", scheduler: str | None = None, retry_failed: bool = False,
          quiet: bool = False):
    """Runs an experiment's unfinished points (as ``mcdla sweep``, whose options these
    are) and returns its results table as a pandas DataFrame, one row per point.

    Points that failed are rows with their ``error``; ``attrs["sweep"]`` holds what the
    sweep did (the fields of :class:`SweepResult`: counts, folder, table path).
    """
    import dataclasses

    from mcdla.sweep.store import read_table

    loaded, _ = prepare_sweep(experiment, out=out, executor=executor, scheduler=scheduler)
    result = run_sweep(loaded, out=out, jobs=jobs, executor=executor, scheduler=scheduler,
                       retry_failed=retry_failed, progress=not quiet)
    table = read_table(result.folder)
    table.attrs["sweep"] = dataclasses.asdict(result)
    return table
