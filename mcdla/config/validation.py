"""A validation file: public measurements beside the mcdla run that should reproduce them.

Each row names one measured quantity, the configuration as mcdla arguments, the value
measured on real hardware, the source and a tolerance::

    name: nccl_dgx1v
    description: one line
    rows:
      - quantity: all-reduce bus bandwidth, 1 MiB
        kind: collective            # collective (mcdla collective) | sim (mcdla sim) | transfer (a copy)
        args: {topology: dgx1v, op: all_reduce, size: 1 MiB, launch_serial: 8}
        measure: busbw              # what of the run is compared (MEASURES)
        measured: 20.56 GB/s
        tolerance: 0.10             # |simulated / measured - 1| that passes
        source: {title: ..., url: ...}
        reduced: true               # part of the reduced run (mcdla validate --reduced, CI)
        slow: true                  # minutes of CPU: only with mcdla validate --all
        budget: 1e12                # a slow sim row's work budget (mcdla sim --budget)

A ``sim`` row's args are ``mcdla sim``'s (topology, workload, batch, parallel, policy,
device, and ``set``: dotted keys); ``measure: overhead`` compares the run with a
``baseline`` run (args merged over the row's) as time / baseline time - 1, and
``measure: scaling`` as throughput / the baseline's throughput; ``measure:
flops_per_device`` as the FLOPs of the iteration, counted as the source counts them
(``flops: megatron``), over the iteration time and the devices. A ``serve`` row is a
serving run (``mcdla serve``: ``serving.*`` keys in ``set``) measuring ``ttft``, ``tpot``
(medians) or ``output_tokens_per_s``. A ``transfer`` row is
one copy (``src``, ``dst``: devices, or ``host`` for a device's backing store;
:func:`mcdla.run.simulate_transfer`), measuring ``time`` or ``bandwidth``.
Measurements are never fitted: calibration lives in the presets (docs/validation.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcdla.config import loader
from mcdla.config.schema import PositiveFloat, Range, Where, build
from mcdla.errors import InputError, excerpt

__all__ = ["ARGS", "MEASURES", "Source", "ValidationRow", "ValidationFile", "read_validation", "measured_value"]

# measure -> (unit kind of the measured value, or "" for a plain number; what it reads)
MEASURES: dict[str, tuple[str, str]] = {
    "busbw": ("bandwidth", "nccl-tests bus bandwidth of the collective"),
    "bandwidth": ("bandwidth", "size / time of a copy"),
    "time": ("time", "time of the collective"),
    "iteration_time": ("time", "time of one training iteration"),
    "throughput": ("", "samples per second: batch / iteration time"),
    "memory_peak": ("size", "peak device memory"),
    "model_state": ("size", "model state one device holds (weights, gradients, optimizer state; no run)"),
    "overhead": ("", "iteration time / the baseline's - 1"),
    "scaling": ("", "throughput / the baseline's (8 devices over 1, say)"),
    "flops_per_device": ("", "model FLOP/s per device, FLOPs counted by the row's flops formula"),
    "ttft": ("time", "median time to first token of a serving run"),
    "tpot": ("time", "median time per output token after the first of a serving run"),
    "output_tokens_per_s": ("", "output tokens per second of a serving run (over its makespan)"),
}
SERVE_MEASURES = ("ttft", "tpot", "output_tokens_per_s")

# How a source counts the FLOPs of one iteration (``flops:`` of a flops_per_device
# row), from the workload template's parameters: per source, the count it publishes.
FLOPS_FORMULAS = ("megatron", "megatron_core", "dgxc")


# The arguments a row may give, by kind: mcdla collective's and mcdla sim's options.
ARGS = {"collective": ("topology", "op", "size", "algorithm", "launch_serial", "nccl_version", "iters", "ring",
                       "set"),
        "sim": ("topology", "workload", "batch", "parallel", "policy", "device", "set"),
        "transfer": ("topology", "src", "dst", "size", "set"),
        "serve": ("topology", "workload", "device", "set")}


@dataclass(frozen=True)
class Source:
    title: str
    url: str


@dataclass(frozen=True)
class ValidationRow:
    quantity: str
    kind: Literal["collective", "sim", "transfer", "serve"]
    args: dict[str, Any]
    measure: Literal["busbw", "time", "bandwidth", "iteration_time", "throughput", "memory_peak", "model_state",
                     "overhead", "scaling", "flops_per_device", "ttft", "tpot", "output_tokens_per_s"]
    measured: Any
    tolerance: Annotated[float, Range(minimum=0.0, maximum=10.0, inclusive=False)]
    source: Source
    baseline: dict[str, Any] = field(default_factory=dict)
    reduced: bool = False
    note: str = ""
    flops: Literal[FLOPS_FORMULAS] | None = None  # for measure flops_per_device
    # Minutes of CPU: run only by ``mcdla validate --all``, with the work budget
    # (channel updates, mcdla sim --budget) its run needs beyond the default's.
    slow: bool = False
    budget: PositiveFloat | None = None


@dataclass(frozen=True)
class ValidationFile:
    name: str
    description: str
    rows: tuple[ValidationRow, ...]


def measured_value(row: ValidationRow, where: Where) -> float:
    """The row's measured value in SI units (a bare number: the base unit)."""
    from mcdla import units

    kind = MEASURES[row.measure][0]
    try:
        value = units.parse(row.measured, kind) if kind else float(row.measured)
    except (units.UnitError, TypeError, ValueError):
        raise where.child("measured").error(
            f"expected a {kind or 'number'} for measure {row.measure}, got {row.measured!r:.60}") from None
    if not math.isfinite(value):  # NaN would pass no comparison and fail none
        raise where.child("measured").error(f"expected a finite measurement, got {row.measured!r:.60}")
    if not value > 0 and row.measure != "overhead":
        raise where.child("measured").error("must be > 0")
    return value


def read_validation(name_or_path: str) -> tuple[str, ValidationFile]:
    """A validation file by shipped name or path, checked; (its display name, the file)."""
    path = loader.find_input(name_or_path, "validation", "validation file")
    doc = loader.read_yaml(path)
    shown = loader.display_path(path)
    where = Where(shown)
    spec = build(ValidationFile, doc, where)
    if not spec.rows:
        raise where.child("rows").error("expected at least one row")
    for i, row in enumerate(spec.rows):
        at = where.child("rows").child(i)
        measured_value(row, at)
        for part, args in (("args", row.args), ("baseline", row.baseline)):
            unknown = [k for k in args if k not in ARGS[row.kind]]
            if unknown:
                raise at.child(part).child(str(unknown[0])).error(
                    f"unknown key; a {row.kind} row takes {', '.join(ARGS[row.kind])}")
            if not isinstance(args.get("set") or {}, dict):
                raise at.child(part).child("set").error(
                    f"expected a mapping of dotted keys to values, got {excerpt(args['set'])}")
        if row.measure in ("overhead", "scaling") and not row.baseline:
            raise at.child("baseline").error(f"measure {row.measure} needs a baseline run")
        if row.budget is not None and not (row.slow and row.kind == "sim"):
            raise at.child("budget").error("only a slow sim row (slow: true) takes a work budget")
        if row.measure == "flops_per_device" and row.flops is None:
            raise at.child("flops").error(
                f"measure flops_per_device needs a flops formula: {', '.join(FLOPS_FORMULAS)}")
        if row.kind == "collective" and row.measure not in ("busbw", "time"):
            raise at.child("measure").error("a collective row measures busbw or time")
        if row.kind == "transfer" and row.measure not in ("bandwidth", "time"):
            raise at.child("measure").error("a transfer row measures bandwidth or time")
        if (row.kind == "serve") != (row.measure in SERVE_MEASURES):
            raise at.child("measure").error(f"a serve row, and only a serve row, measures {', '.join(SERVE_MEASURES)}")
        if row.kind == "sim" and row.measure in ("busbw", "time", "bandwidth"):
            raise at.child("measure").error(
                "a sim row measures iteration_time, throughput, memory_peak, overhead or scaling")
    return shown, spec


def shipped_validation() -> list[str]:
    names = loader.shipped("validation")
    if not names:
        raise InputError("no validation files are shipped", key="validate")
    return names
