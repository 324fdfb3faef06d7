"""Where the points of a sweep run: local worker processes, or a Dask cluster.

Both executors take the same tasks -- ``(runner, key, point)`` of plain data -- and
yield each point's record (see :func:`mcdla.sweep.runners.execute`) as soon as it
finishes, in completion order; the engine writes it to the journal at once. Neither
writes anything itself, so the journal has a single writer.

- ``local``: a process pool of ``jobs`` workers (``jobs=1`` runs the points in this
  process, one after the other, which is what a debugger or profiler wants).
- ``dask``: a ``dask.distributed`` client on the scheduler at ``address``, or on a
  local cluster of ``jobs`` single-threaded worker processes when no address is given.
  Dask is optional (the ``dask`` extra) and imported only here, when asked for.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Iterator, Sequence

from mcdla.errors import InputError
from mcdla.sweep.runners import execute

__all__ = ["run_local", "run_dask", "EXECUTORS", "WorkerDied"]

Task = tuple[Any, str, dict[str, Any]]


class WorkerDied(Exception):
    """A worker process ended without a result (killed, out of memory, ``os._exit``)."""


def _die_with_parent(parent: int) -> None:
    """Worker initializer: a worker never outlives the sweep that started it.

    Ctrl-C and SIGTERM are the parent's to handle (it kills the workers); on Linux the
    kernel kills the worker when the parent dies, even by ``kill -9``
    (PR_SET_PDEATHSIG); everywhere, a thread polls the parent's pid as a fallback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the call above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mcdla-parent-watch", daemon=True).start()


def _kill_workers(pool) -> None:
    """Ends the pool's workers now: an interrupted sweep does not wait for their points
    (they are not journaled, and run again on resume)."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        try:
            process.kill()
        except (OSError, AttributeError):
            pass
    for process in processes:
        process.join(timeout=1.0)


def run_local(tasks: Sequence[Task], jobs: int) -> Iterator[dict[str, Any]]:
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield execute(*task)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), initializer=_die_with_parent,
                               initargs=(os.getpid(),))
    finished = False
    try:
        futures = [pool.submit(execute, *task) for task in tasks]
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                # A worker died (killed, out of memory): which point killed it is unknown,
                # so nothing is recorded for the points in flight; a rerun resumes them.
                raise WorkerDied("a worker process died (killed, or out of memory: fewer --jobs use "
                                 "less); the finished points are saved, rerun the sweep to resume") from None
        finished = True
    finally:
        # On Ctrl-C, SIGTERM or an error, drop the queued points and end the running ones.
        if not finished:
            _kill_workers(pool)
        pool.shutdown(wait=finished, cancel_futures=not finished)


def run_dask(tasks: Sequence[Task], jobs: int, address: str | None = None) -> Iterator[dict[str, Any]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("the dask executor needs dask.distributed: pip install 'mcdla[dask]'",
                         key="--executor") from None
    cluster = None
    if address:
        try:
            client = Client(address, timeout="10s")
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler: {exc}", key="--scheduler") from None
    else:
        cluster = LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        futures = [client.submit(execute, *task, pure=False) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


EXECUTORS = ("local", "dask")
