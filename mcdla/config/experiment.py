"""Experiments: a named set of points to simulate, and the figure they feed.

An experiment YAML (``experiments/*.yaml``) names a ``base`` point, the ``axes`` to
sweep and/or an explicit list of ``points``; :func:`expand` turns it into the ordered
list of flat points a sweep runs. A *point* is a flat mapping of what one run needs:
for ``kind: sim`` the options of ``mcdla sim`` (``topology, policy, workload,
parallel, batch``) plus any dotted ``--set`` key (``device.hbm_bw: 1.2 TB/s``,
``training.virtualization: false``).

Order of the points, which is also the row order of the results table: the axes form a
cartesian product in the order they are written, the first axis varying slowest;
``points``, when given, is one more, innermost axis of partial points merged over the
rest. Design points that are pairs (``topology`` + ``policy``) are therefore listed
under ``points`` rather than as two independent axes, which would run the whole
product. Precedence, lowest first: the kind's defaults, ``base``, the axes, the
point. ``label`` is a free-form name for a point (shown in the table and on plots,
never passed to the simulator).

Everything is checked when the file is read, before anything runs: an unknown key, an
empty axis, a value of the wrong type or a repeated point is an
:class:`~mcdla.errors.InputError` naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping

from mcdla.config.loader import find_input, read_yaml
from mcdla.config.point import COLLECTIVE_OPS, DEFAULT_POINT, Batch, Parallel, Policy
from mcdla.config.schema import Label, Bandwidth, PositiveFloat, PositiveInt, Range, Size, Time, Where, build
from mcdla.errors import InputError, excerpt

__all__ = ["Experiment", "FIGURES", "KINDS", "load_experiment", "expand", "point_key", "POINT_LABEL"]

# Figures mcdla.plots can draw; an experiment may feed several (one sweep, Fig. 11-13).
FIGURES = ("fig09", "fig11", "fig12", "fig13", "fig14", "pcie4", "scalability", "power", "link_bytes",
           "llm_memory", "memory_2026", "dgx2", "cdma", "scale_out", "tpuv2", "cluster_fabric", "headlines",
           "moe_memory", "serving_memory", "frontier_scale")

POINT_LABEL = "label"

# A ring collective needs at least two ranks.
RingSize = Annotated[int, Range(minimum=2)]

# A name becomes a folder (results/<name>/), so it is kept to portable characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SimKeys:
    """The plain (undotted) keys of a ``kind: sim`` point: the options of ``mcdla sim``."""

    topology: str | None = None
    policy: Policy | None = None
    workload: str | None = None
    parallel: Parallel | None = None
    batch: Batch | None = None
    label: str | None = None
    # The work budget (channel updates, mcdla sim --budget) the experiment's author declares
    # its points need beyond the default's (mcdla.hw.budget), as a validation row's ``budget``:
    # a finite number, so a point can never run unbounded by accident.
    budget: PositiveFloat | None = None


@dataclass(frozen=True)
class CollectiveKeys:
    """The keys of a ``kind: collective`` point: the options of ``mcdla collective``."""

    op: Literal[COLLECTIVE_OPS] | None = None
    size: Size | None = None
    ring: RingSize | None = None
    topology: str | None = None
    link_bw: Bandwidth | None = None
    link_latency: Time | None = None
    chunk: Size | None = None
    label: str | None = None


@dataclass(frozen=True)
class PowerKeys:
    """The plain keys of a ``kind: power`` point (memory-node power, paper Table IV).

    ``memory_node`` names a preset of ``topologies/presets/hardware.yaml``; dotted
    ``memory_node.FIELD`` keys override its fields (a DIMM type per point).
    """

    memory_node: str | None = None
    memory_nodes: PositiveInt | None = None
    system_power_W: PositiveFloat | None = None
    label: str | None = None


@dataclass(frozen=True)
class PlanKeys:
    """The plain keys of a ``kind: plan`` point: one model of a family planned on one
    design (``mcdla plan``); ``model`` is ``FAMILY/MEMBER`` (``gpt3/gpt3_13b``)."""

    topology: str | None = None
    policy: Policy | None = None
    model: str | None = None
    batch: Batch | None = None
    simulate: PositiveInt | None = None
    label: str | None = None


@dataclass(frozen=True)
class ServeKeys:
    """The plain keys of a ``kind: serve`` point: the options of ``mcdla serve``
    (``serving.*`` and the topology's and workload's keys are dotted)."""

    topology: str | None = None
    workload: str | None = None
    device: str | None = None
    slo: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Kind:
    """What a kind of experiment runs: the runner (``module:function``), its keys and defaults.

    The runner is named, not imported, so that ``mcdla --help`` and the loading of an
    experiment never import the simulator, and so a worker process resolves it itself.
    """

    runner: str
    keys: type
    dotted: bool  # whether dotted --set style keys are accepted
    defaults: Mapping[str, Any] = field(default_factory=dict)


# Defaults of mcdla sim (mcdla/cli/sim.py) and of Fig. 9's collectives, filled into
# every point so that the results table always carries these columns.
_SIM_DEFAULTS = DEFAULT_POINT

# Runners an experiment may name: a name -> ``module:function``, never imported here.
# An experiment file names one of these, so a shared file cannot run arbitrary code;
# a user adds their own through the environment (MCDLA_RUNNERS="name=module:function,
# ..." or a bare "module:function"), which is their own code on their own machine.
RUNNERS = {
    "sim": "mcdla.run:simulate_point",
    "collective": "mcdla.sweep.runners:collective_point",
    "power": "mcdla.metrics.power:memory_node_power",
    "plan": "mcdla.sweep.plan:plan_point",
    "serve": "mcdla.run:serve_point",
}


def runners() -> dict[str, str]:
    """The registered runners, shipped ones and those of ``MCDLA_RUNNERS``."""
    import os

    found = dict(RUNNERS)
    for entry in os.environ.get("MCDLA_RUNNERS", "").split(","):
        name, sep, target = entry.strip().rpartition("=")
        target = target.strip()
        if not target:
            continue
        if not _RUNNER.match(target):
            raise InputError(f"expected name=module:function entries, got {excerpt(entry)}",
                             key="MCDLA_RUNNERS")
        found[name.strip() if sep else target] = target
    return found


KINDS: dict[str, Kind] = {
    "sim": Kind(RUNNERS["sim"], SimKeys, dotted=True, defaults=_SIM_DEFAULTS),
    "collective": Kind(RUNNERS["collective"], CollectiveKeys, dotted=False,
                       defaults={"op": "all_reduce"}),
    "power": Kind(RUNNERS["power"], PowerKeys, dotted=True,
                  defaults={"memory_node": "table2", "memory_nodes": 8, "system_power_W": 3200}),
    "plan": Kind(RUNNERS["plan"], PlanKeys, dotted=True,
                 defaults={"policy": "bw_aware", "batch": 16, "simulate": 2}),
    "serve": Kind(RUNNERS["serve"], ServeKeys, dotted=True, defaults={"topology": "dgx_h100", "workload": "llama3_8b"}),
}


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file. ``points`` are the expanded, ordered points."""

    name: str
    kind: str
    figures: tuple[str, ...]
    title: str
    runner: str
    columns: tuple[str, ...]  # the point keys, in table order
    points: tuple[Mapping[str, Any], ...]
    depends: tuple[str, ...] = ()
    source: str = ""

    @property
    def kind_spec(self) -> Kind:
        return KINDS[self.kind]


@dataclass(frozen=True)
class _ExperimentFile:
    """The literal shape of an experiment YAML, checked by :func:`~mcdla.config.schema.build`."""

    name: Label
    kind: Literal["sim", "collective", "power", "plan", "serve"]
    figure: str | list[str]
    title: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    runner: str | None = None
    depends: list[str] = field(default_factory=list)
    description: str = ""


_RUNNER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _check_point(kind: Kind, point: Mapping[str, Any], where: Where) -> None:
    """Checks the keys and values of a (partial) point; raises InputError at ``where``."""
    plain = {k: v for k, v in point.items() if "." not in str(k)}
    for key, value in point.items():
        if not isinstance(key, str) or not key:
            raise where.error(f"expected text keys, got {key!r}")
        if "." in key:
            if not kind.dotted:
                raise where.child(key).error("dotted --set keys are not accepted by this kind")
            if any(not part for part in key.split(".")):
                raise where.child(key).error("expected a dotted key like device.hbm_bw")
        if not isinstance(value, (str, int, float, bool)):
            raise where.child(key).error(f"expected a single value (text, number or true/false), got {value!r}")
    # build() refuses unknown keys and values of the wrong type; its result is thrown
    # away because the runner converts the raw values itself (as mcdla sim does).
    build(kind.keys, plain, where)


def _canonical_order(kind: Kind, keys: list[str]) -> tuple[str, ...]:
    plain_fields = [f.name for f in dataclasses.fields(kind.keys)]
    first = [POINT_LABEL] if POINT_LABEL in keys else []
    first += [k for k in plain_fields if k in keys and k != POINT_LABEL]
    return tuple(first + [k for k in keys if k not in first])


def expand(spec: _ExperimentFile, kind: Kind) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The columns and the ordered points of an experiment (see the module docstring)."""
    axis_names = list(spec.axes)
    axis_values = [spec.axes[name] for name in axis_names]
    partials = spec.points or [{}]
    points = []
    for combo in itertools.product(*axis_values):
        for partial in partials:
            point = dict(kind.defaults)
            point.update(spec.base)
            point.update(zip(axis_names, combo))
            point.update(partial)
            points.append(point)
    seen_keys = list(dict.fromkeys(k for p in points for k in p))
    return _canonical_order(kind, seen_keys), points


def point_key(kind: str, runner: str, point: Mapping[str, Any],
              inputs: Mapping[str, str] | None = None) -> str:
    """The stable identity of a point: a hash of its canonical JSON.

    The kind and runner are part of it so that results of a different runner (a test's
    fake) sharing a folder are never taken for this one's; ``inputs`` (role -> content
    hash of each input file the point reads) so that a result computed from an older
    topology, workload or presets file is never taken for the current one's.
    """
    identity: dict[str, Any] = {"kind": kind, "runner": runner, "point": point}
    if inputs:
        identity["inputs"] = dict(inputs)
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def load_experiment(name_or_path: str) -> Experiment:
    """Reads and validates an experiment: a shipped name (``fig11_13``) or a YAML path."""
    path = find_input(name_or_path, "experiments", "experiment")
    data = read_yaml(path)
    where = Where(str(path))
    spec = build(_ExperimentFile, data, where)
    if not _NAME.match(spec.name):
        raise where.child("name").error("expected letters, digits, '_', '-' or '.' (it names a folder)")
    figures = (spec.figure,) if isinstance(spec.figure, str) else tuple(spec.figure)
    if not figures:
        raise where.child("figure").error("expected at least one figure")
    for i, figure in enumerate(figures):
        if figure not in FIGURES:
            key = where.child("figure") if isinstance(spec.figure, str) else where.child("figure").child(i)
            raise key.error(f"unknown figure {figure!r}; expected one of {', '.join(FIGURES)}")
    kind = KINDS[spec.kind]
    known = runners()
    if spec.runner is not None and spec.runner not in known:
        raise where.child("runner").error(
            f"unknown runner {excerpt(spec.runner)}; registered: {', '.join(sorted(known))} "
            "(add your own with MCDLA_RUNNERS=name=module:function)")
    _check_point(kind, spec.base, where.child("base"))
    for axis, values in spec.axes.items():
        axis_where = where.child("axes").child(axis)
        if not values:
            raise axis_where.error("empty axis: expected a list of at least one value")
        for value in values:
            _check_point(kind, {axis: value}, where.child("axes"))
    for i, partial in enumerate(spec.points):
        _check_point(kind, partial, where.child("points").child(i))
    if "points" in data and not spec.points:
        raise where.child("points").error("empty list: expected at least one point")
    for i, dep in enumerate(spec.depends):
        if not _NAME.match(dep):
            raise where.child("depends").child(i).error(f"expected an experiment name, got {dep!r}")
    columns, points = expand(spec, kind)
    first_seen: dict[str, int] = {}
    runner = known[spec.runner] if spec.runner is not None else kind.runner
    for i, point in enumerate(points):
        key = point_key(spec.kind, runner, point)
        if key in first_seen:
            raise where.error(f"point {i} repeats point {first_seen[key]}: {point}")
        first_seen[key] = i
    return Experiment(
        name=spec.name,
        kind=spec.kind,
        figures=figures,
        title=spec.title or spec.name,
        runner=runner,
        columns=columns,
        points=tuple(points),
        depends=tuple(spec.depends),
        source=str(path),
    )

