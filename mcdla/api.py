"""The Python API: mcdla's commands as functions, for scripts and notebooks.

    import mcdla

    r = mcdla.simulate(topology="ring", workload="resnet34", batch=512,
                       set={"training.lookahead": 2})
    r.iteration_time_s, r.samples_per_s, r.to_dict()
    mcdla.collective(op="all_reduce", size="64 MB", topology="dc").busbw_Bps
    mcdla.serve(workload="llama3_70b", set={"serving.tensor_parallel": 8}).tpot_s["p99"]
    mcdla.sweep("fig09")                       # a pandas DataFrame, one row per point
    mcdla.plan(workload="gpt2_xl", topology="ring", batch=32)[0].label
    mcdla.validate(table="nccl_dgx1v")         # mcdla beside public measurements

Each function takes its command's options as keyword arguments: the same names (``_``
for ``-``), the same defaults and the same checks, so a bad value raises
:class:`~mcdla.errors.InputError` with the message the command prints before it exits
2 (an input the machine cannot run raises :class:`~mcdla.errors.InfeasibleError`).
Options that only shape the printout (``--format``, ``--output``, ``--links``, ``--top``,
``--all``) are not arguments: a result holds everything, and its ``to_dict()`` is what
``--format json`` prints (with a non-finite float where JSON has null). The commands
(mcdla/cli/) call these functions and print.

Results are frozen dataclasses whose fields are the keys of the command's JSON, in its
order; a field that the command prints only when it applies (a collective's
``protocol``, a plan's simulated figures) is None when it does not, and left out of
``to_dict()``. Nested mappings (``busy_s``) stay dicts.

``import mcdla`` loads none of this: the package's ``__getattr__`` imports this module
on first use, so a script pays for SimPy and pandas only when it runs something.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Mapping, Sequence

from mcdla.config.point import DEFAULT_POINT, Batch, check_option
from mcdla.errors import InputError, InvariantError, excerpt

__all__ = ["simulate", "collective", "serve", "sweep", "plan", "validate", "SimResult", "CollectiveResult", "ServeResult",
           "PlanCandidate", "FamilyMember", "ValidationOutcome"]

# A --set argument: {"training.lookahead": 2}, [("training.lookahead", 2)] or ["training.lookahead=2"].
Sets = Mapping[str, Any] | Sequence[tuple[str, Any] | str] | str


def _optional(**kwargs):
    """A field the command's JSON has only when it applies: None, and left out, otherwise."""
    return dataclasses.field(default=None, metadata={"optional": True}, **kwargs)


class _Result:
    """A command's JSON record as a frozen dataclass (the subclasses)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """The result of a record; a key without a field is a bug (the CLI would lose it)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in data if key not in names]
        if unknown:
            raise InvariantError(f"{cls.__name__} has no field for {', '.join(unknown)}: add it in mcdla/api.py")
        return cls(**copy.deepcopy(dict(data)))

    def to_dict(self) -> dict[str, Any]:
        """The command's ``--format json`` record (raw SI numbers; a copy). When the
        command gains a key, from_dict refuses it until it has a field here."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None or not f.metadata.get("optional"):
                out[f.name] = copy.deepcopy(value)
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimResult(_Result):
    """One simulated training iteration (``mcdla sim``; the fields: README.md)."""

    topology: str
    policy: str
    memory_nodes: int  # the design's memory-nodes (the policy places pages only on them)
    workload: str
    parallel: str
    batch: int
    devices: int
    layout: dict[str, int]  # tensor, pipeline, data degrees; micro_batches; zero
    offload: str  # the offload policy that ran (none: virtualization off)
    offloaded_maps: int  # feature maps it offloads
    offloaded_bytes: float  # bytes a device sent out, on average
    iteration_time_s: float
    busy_s: dict[str, float]  # compute, sync, virtualization: mean per device (Fig. 11)
    exposed_s: dict[str, float]  # sync, virtualization: the busy time compute does not hide
    comm_s: dict[str, float]  # dp, tp, pp, ep: time each axis's communication is in flight
    recompute_s: float
    cpu_mem_bw_Bps: dict[str, float]  # avg, peak of the busiest CPU memory port
    device_mem_peak_bytes: float
    remote_mem_bytes: float
    link_bytes: dict[str, float] | None = _optional()  # bytes per directed link, "D0>M0"
    # Past metrics.summary.LINK_LIST_DEVICES devices, instead of link_bytes (unless links=True or
    # exact): per class of link ("spine2>spine3:isl"), count and bytes min, mean, max.
    link_classes: dict[str, dict[str, float]] | None = _optional()
    events: int
    rank_classes: int
    wall_s: float
    notes: list[str]
    groups: dict[str, Any] | None = _optional()  # tensor/data groups and stages (t or p > 1)

    @property
    def samples_per_s(self) -> float:
        """Training throughput: the batch over the iteration time (NaN for a zero time)."""
        from mcdla.metrics.summary import samples_per_s

        return samples_per_s(self.batch, self.iteration_time_s)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectiveResult(_Result):
    """One collective alone on idle rings (``mcdla collective``; bandwidths as nccl-tests)."""

    op: str
    size_bytes: float
    ranks: int
    rings: int
    time_s: float
    algbw_Bps: float
    busbw_Bps: float
    topology: str
    algorithm: str
    protocol: str | None = _optional()  # NCCL's protocol, for the nccl algorithm
    picked: str | None = _optional()  # the registered algorithm NCCL ran, when not its ring (nvls, nccl_p2p)
    nccl_version: str | None = _optional()  # the NCCL constants, when --nccl-version names them
    iters: int | None = _optional()  # collectives run back to back (nccl-tests -n), when more than 1
    chunk_bytes: float
    flows: int
    events: int
    wall_s: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServeResult(_Result):
    """One simulated serving run (``mcdla serve``; the fields: docs/cli.md, docs/serving.md)."""

    topology: str
    workload: str
    tensor_parallel: int
    pipeline_parallel: int  # stages of tensor_parallel devices per instance
    instances: int  # serving instances: the devices over tensor_parallel x pipeline_parallel
    kv_tier: str
    requests: int
    rate_requests_s: float | None  # the arrival rate (None: a trace's requests)
    makespan_s: float  # first arrival to last token
    ttft_s: dict[str, float | None]  # time to first token: p50, p90, p99
    tpot_s: dict[str, float | None]  # time per output token after the first: p50, p90, p99
    throughput_tokens_s: float | None  # output tokens over the makespan
    requests_s: float | None
    goodput_requests_s: float | None  # requests meeting the SLO per second (None: no --slo)
    slo: dict[str, Any] | None  # ttft_s, tpot_s and the requests that met them (None: no --slo)
    weight_bytes: float  # weights per device
    kv_bytes_per_token: float  # the whole model's KV cache per token
    kv_capacity_tokens: int  # tokens an instance's cache holds (HBM and tier; its virtual engines' or groups')
    kv_peak_bytes: dict[str, float]  # per tier (hbm, and the tier's name), every device summed
    iterations: int
    mean_batch_tokens: float
    preemptions: int
    link_bytes: dict[str, float]  # bytes per directed link, "D0>FS0"
    events: int
    wall_s: float
    # With serving.prefix_caching (absent without): the share of the prompt tokens
    # admitted that were found cached, those tokens (prefill skipped), the cached blocks evicted.
    prefix_hit_rate: float | None = _optional()
    prefix_tokens_saved: int | None = _optional()
    prefix_evicted_blocks: int | None = _optional()
    graph_iterations: int | None = _optional()  # with serving.cuda_graphs: decode iterations replayed as graphs


class _Labelled:
    """A plan's one-line label, as ``mcdla plan`` shows it (the label is not in the JSON)."""

    @property
    def label(self) -> str | None:
        """The plan in one line, "tp2 pp1x1 zero1 none" (None: no plan)."""
        from mcdla.sweep.plan import Candidate

        if self.tensor_parallel is None:
            return None
        return Candidate(tensor_parallel=self.tensor_parallel, zero=self.zero, offload=self.memory,
                         checkpoint=self.checkpoint, pipeline_parallel=self.pipeline_parallel,
                         micro_batches=self.micro_batches, offload_optimizer=self.offload_optimizer,
                         sequence_parallel=self.sequence_parallel, offload_params=self.offload_params,
                         expert_parallel=self.expert_parallel).label()


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanCandidate(_Labelled, _Result):
    """One way to train a workload on a design (``mcdla plan``): its strategy, the
    estimate that ranked it, and, when simulated and feasible, its figures."""

    tensor_parallel: int
    pipeline_parallel: int
    micro_batches: int
    data_parallel: int
    zero: int
    offload_optimizer: bool
    offload_params: bool
    sequence_parallel: bool
    memory: str  # "none" (feature maps stay on the device) or the offload policy
    checkpoint: str
    expert_parallel: int  # the expert-parallel degree (1 without; MoE workloads)
    estimate_s: float | None  # lower bound of the iteration time (None: not estimated)
    resident_bytes: float | None
    feasible: bool | None  # None: not simulated (ranked out by its estimate)
    reason: str  # why it is infeasible or was not simulated
    devices: int | None = _optional()
    iteration_time_s: float | None = _optional()
    samples_per_s: float | None = _optional()
    tokens_per_s: float | None = _optional()
    model_flops_per_device: float | None = _optional()
    peak_fraction: float | None = _optional()
    device_mem_peak_bytes: float | None = _optional()
    backing_peak_bytes: float | None = _optional()
    backing_Bps: float | None = _optional()
    busy_s: dict[str, float] | None = _optional()
    exposed_s: dict[str, float] | None = _optional()


# One size of a model family (``mcdla plan --largest``): whether it trains, and its best
# plan's fields (those of PlanCandidate but its reason and feasibility), None without one.
FamilyMember = dataclasses.make_dataclass(
    "FamilyMember",
    [("member", str), ("params", int), ("trains", bool), ("reason", str),
     *[(f.name, f"{f.type} | None", _optional()) for f in dataclasses.fields(PlanCandidate)
       if f.name not in ("reason", "feasible")]],
    bases=(_Labelled, _Result), frozen=True, kw_only=True)
FamilyMember.__module__ = __name__
FamilyMember.__doc__ = "One size of a model family on a design (``mcdla plan --largest``) and its best plan."


def _sets(value: Sets) -> list[tuple[str, Any]]:
    """``set=`` as (dotted key, value) pairs; a ``"KEY=VALUE"`` string is read as ``--set`` reads it."""
    from mcdla.config.loader import parse_set

    if isinstance(value, str):
        items = [value]
    elif isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = list(value)
    pairs = []
    for item in items:
        if isinstance(item, str):
            pairs.append(parse_set(item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            pairs.append(item)
        else:
            raise InputError(f"expected KEY=VALUE or a (key, value) pair, got {excerpt(item)}", key="--set")
    return pairs


def simulate(*, topology: str = DEFAULT_POINT["topology"], policy: str = DEFAULT_POINT["policy"],
             workload: str = DEFAULT_POINT["workload"], parallel: str = DEFAULT_POINT["parallel"],
             batch: int = DEFAULT_POINT["batch"], set: Sets = (), device: str | None = None,
             trace: str | None = None, budget: float | None = None, exact: bool = False,
             execution: str | None = None, links: bool = False) -> SimResult:
    """Simulates one training iteration, as ``mcdla sim``.

    ``set`` overrides loaded parameters by dotted key, as ``--set``; ``execution`` is
    ``--execution``, an execution file (name or path) whose keys ``set`` overrides;
    ``device`` is ``--device`` (the same as ``set={"device": PRESET}``), ``exact`` is
    ``--exact``, ``links`` is ``--links`` (every link's bytes, however large the run),
    ``trace`` a Perfetto trace file to write, ``budget`` the work budget.
    """
    from mcdla.run import simulate as run

    sets = _sets(set)
    if execution is not None:
        from mcdla.config.execution_file import read_execution

        sets = read_execution(execution) + sets  # the command line's --set after: it overrides
    if device:
        sets.insert(0, ("device", device))  # a later set device.KEY still overrides a field
    if exact:
        sets.append(("execution.exact", True))
    return SimResult.from_dict(run(topology, policy, workload, parallel, batch, sets, trace=trace, budget=budget,
                                   links=links))


def collective(*, op: str, size: Any, topology: str | None = None, ring: int | None = None,
               link_bw: Any = None, link_latency: Any = None, chunk: Any = None, algorithm: str | None = None,
               launch_serial: int = 1, set: Sets = (), hot_share: float | None = None,
               nccl_version: str | None = None, iters: int = 1, exact: bool = False) -> CollectiveResult:
    """Runs one collective alone on idle rings, as ``mcdla collective``: a topology's
    rings (``set``: its parameters overridden by dotted key, ``generator.nodes``, ...),
    or one ring of ``ring`` devices joined by ``link_bw``/``link_latency``; ``hot_share``:
    an all-to-allv's skew (the hot rank's share of every rank's data); ``nccl_version``:
    NCCL's constants (``mcdla.hw.nccl.NCCL_VERSIONS``); ``iters``: the time per
    collective of that many back to back, as nccl-tests' timing loop (``-n``); ``exact``:
    simulate every rank of a cluster, not one per class (the same times)."""
    from mcdla.run import simulate_collective

    return CollectiveResult.from_dict(simulate_collective(
        op, size, ring=ring, topology=topology, link_bw=link_bw, link_latency=link_latency, chunk=chunk,
        algorithm=algorithm, launch_serial=launch_serial, sets=_sets(set), hot_share=hot_share,
        nccl_version=nccl_version, iters=iters, exact=exact))


def serve(*, topology: str = "dgx_h100", workload: str = "llama3_8b", set: Sets = (), slo: str | None = None,
          device: str | None = None, trace: str | None = None) -> ServeResult:
    """Simulates serving requests, as ``mcdla serve``: ``set`` holds ``serving.*`` keys
    (rate, requests, tensor_parallel, kv_tier, ...: docs/serving.md) and the topology's
    and workload's, ``slo`` is ``--slo ttft=T,tpot=T``, ``device`` ``--device``."""
    from mcdla.run import serve as run

    sets = _sets(set)
    if device:
        sets.insert(0, ("device", device))
    return ServeResult.from_dict(run(topology, workload, sets, slo=slo, trace=trace))


def _count(value: Any, option: str) -> int:
    """A count of at least 1 (``--devices``, ``--simulate``), as the command's option checks it."""
    from typing import Annotated

    from mcdla.config.schema import Range

    return check_option(Annotated[int, Range(minimum=1)], value, option)


def plan(workload: str | None = None, *, topology: str, batch: int, largest: str | None = None,
         time_budget: Any = None, devices: int | None = None, set: Sets = (), simulate: int | None = None,
         progress: Callable[[int, int, str], None] | None = None) -> list:
    """Searches the ways to train ``workload`` on a design, as ``mcdla plan``: every
    candidate as a :class:`PlanCandidate`, best first (simulated and feasible by
    iteration time, then those ranked out by their estimate, then the infeasible).

    With ``largest=FAMILY`` instead: every size of the family, smallest first, as
    :class:`FamilyMember`; one trains when a plan fits within ``time_budget``.
    ``simulate`` is how many candidates to simulate (16; 4 per size with ``largest``);
    ``progress(k, n, label)`` is called before each simulation.
    """
    from mcdla.sweep import plan as planner

    if (workload is None) == (largest is None):
        raise InputError("give exactly one of --workload and --largest", key="--workload")
    batch = check_option(Batch, batch, "--batch")
    devices = None if devices is None else _count(devices, "--devices")
    simulate = None if simulate is None else _count(simulate, "--simulate")
    sets = _sets(set)
    if largest is None:
        if time_budget is not None:
            raise InputError("applies to --largest", key="--time-budget")
        rows = planner.plan(topology, workload, batch=batch, sets=sets, devices=devices, simulate=simulate or 16,
                            progress=progress)
        return [PlanCandidate.from_dict(row.as_dict()) for row in rows]
    from mcdla.run import parse_quantity

    budget = None if time_budget is None else parse_quantity(time_budget, "time", "--time-budget")
    members = planner.largest(topology, largest, batch=batch, sets=sets, devices=devices, budget_s=budget,
                              simulate=simulate or 4, progress=progress)
    if members and not any(m.trains for m in members):  # not even the smallest: a bad input, saying why
        from mcdla.errors import InfeasibleError

        raise InfeasibleError(f"no member of {largest} trains on {topology} at batch {batch}; "
                              f"the smallest, {members[0].name}: {members[0].reason}")
    return [FamilyMember.from_dict(member.as_dict()) for member in members]


def sweep(experiment: str, **options):
    """Runs an experiment's unfinished points, as ``mcdla sweep``, and returns its results
    table (:func:`mcdla.sweep.engine.sweep`, whose options these are). Imported when
    called: the sweep machinery is not loaded for the other commands."""
    from mcdla.sweep.engine import sweep as run

    return run(experiment, **options)


def _validation_outcome():
    """ValidationOutcome: the fields of mcdla.sweep.validate.Outcome (listed there once)."""
    from mcdla.sweep.validate import Outcome

    fields = [(f.name, f.type, dataclasses.field(default=f.default) if f.default is not dataclasses.MISSING
               else dataclasses.field()) for f in dataclasses.fields(Outcome)]
    cls = dataclasses.make_dataclass("ValidationOutcome", fields, bases=(_Result,), frozen=True, kw_only=True)
    cls.__module__ = __name__
    cls.__doc__ = ("One row of a validation table (``mcdla validate``): the measured value, mcdla's, "
                   "the error and the verdict (pass, miss or error).")
    return cls


def __getattr__(name: str):
    # ValidationOutcome is made from mcdla.sweep.validate's Outcome when first asked for,
    # so that the other commands do not load the validation machinery at start-up.
    if name == "ValidationOutcome":
        cls = globals()[name] = _validation_outcome()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate(*, table: str | Sequence[str] = (), reduced: bool = False, all_rows: bool = False,
             progress: Callable[[int, int, str], None] | None = None) -> list:
    """Runs validation tables (default: every shipped one), as ``mcdla validate``: one
    :class:`ValidationOutcome` per row; ``reduced``: only the rows of the reduced (CI) run;
    ``all_rows``: the slow rows too (``--all``)."""
    from mcdla.sweep.validate import validate as run

    tables = [table] if isinstance(table, str) else list(table)
    outcome = globals().get("ValidationOutcome") or __getattr__("ValidationOutcome")
    return [outcome.from_dict(o.as_dict()) for o in run(tables, reduced=reduced, all_rows=all_rows,
                                                        progress=progress)]
