"""Running one point: resolving the runner by name and turning any failure into a record.

A runner is a function ``point -> dict`` named ``module:function`` (``mcdla.run:
simulate_point`` for ``kind: sim``). Workers resolve the name themselves, so a task
carries only strings and plain data, and the same task runs in this process, in a
process pool or on a Dask worker.

:func:`execute` never raises: a failing point becomes a record with its error and one
of three error kinds, matching mcdla's three kinds of failure -- ``input`` (the point
is invalid), ``infeasible`` (valid but the machine cannot run it) and ``internal``
(any other exception: a bug, a runner calling ``sys.exit``, a result that is not a
mapping of JSON values). A sweep records it and goes on. A result's non-finite numbers
are recorded as ``null``, as mcdla's JSON output writes them: the journal is strict JSON.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from typing import Any, Callable, Mapping

from mcdla.config.experiment import POINT_LABEL
from mcdla.errors import InfeasibleError, InputError

__all__ = ["resolve", "execute", "collective_point"]

Runner = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def resolve(runner: str | Runner) -> Runner:
    """The function a registered ``module:function`` designates (a callable as is).

    Only registered targets are imported (mcdla.config.experiment.runners): a task that
    names anything else is refused, whoever built it.
    """
    if callable(runner):
        return runner
    from mcdla.config.experiment import runners

    if runner not in runners().values():
        raise InputError(f"runner {runner!r} is not registered", key="runner")
    module_name, _, function = runner.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function)
    except AttributeError:
        raise ImportError(f"{module_name} has no function {function!r}") from None


def execute(runner: str | Runner, key: str, point: Mapping[str, Any]) -> dict[str, Any]:
    """Runs one point and returns its journal record (never raises, except on Ctrl-C)."""
    started = time.perf_counter()
    record: dict[str, Any] = {"key": key, "point": dict(point)}
    # A label names the point in tables and plots; it is never a runner's argument.
    arguments = {k: v for k, v in point.items() if k != POINT_LABEL}
    try:
        result = resolve(runner)(arguments)
        record.update(status="ok", result=_plain(result))
    except SystemExit as exc:  # a runner must not end the sweep (exit 0 with nothing written)
        record.update(status="error", error_kind="internal", error=f"the runner called sys.exit({exc.code!r})")
    except InputError as exc:
        record.update(status="error", error_kind="input", error=str(exc))
    except InfeasibleError as exc:
        record.update(status="error", error_kind="infeasible", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any other failure is a bug, recorded, not fatal
        record.update(status="error", error_kind="internal", error=f"{type(exc).__name__}: {exc}")
    record["elapsed_s"] = time.perf_counter() - started
    return record


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain(result: Any) -> dict[str, Any]:
    """``result`` as a journal holds it: a mapping of JSON values, non-finite numbers as
    None; anything else is a TypeError (recorded as the point's internal error)."""
    if not isinstance(result, Mapping):
        raise TypeError(f"a runner returns a mapping, not {type(result).__name__}")
    plain = _finite(dict(result))
    try:
        json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the result is not JSON data: {exc}") from None
    return plain


def collective_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """One Fig. 9 point: its keys are ``mcdla collective``'s options (``op, size, ring,
    topology, link_bw, link_latency, chunk``), run by the same function the command runs."""
    from mcdla.run import simulate_collective

    unknown = sorted(set(point) - {"op", "size", "ring", "topology", "link_bw", "link_latency", "chunk"})
    if unknown:
        raise InputError(f"mcdla collective has no option --{unknown[0].replace('_', '-')}", key="point")
    return simulate_collective(**point)
