"""``mcdla plan``: the best ways to train one workload on one design.

The search space is every combination of the execution's strategies that applies to
data-parallel training on the design's devices: the tensor-parallel degree (every
divisor of the devices up to ``MAX_TENSOR``), the pipeline degree and its
micro-batches, the data-parallel degree (the rest), the ZeRO stage, the
activation-memory strategy (keep every feature map on the device, or a registered
offload policy) and activation checkpointing; for a mixture-of-experts workload, the
expert-parallel degree too (every divisor of the experts that divides the
data-parallel degree; mcdla.sim.expert). The global batch is the user's.

Each candidate is first judged without simulating, from its plan (per-layer kernel
times and tensor sizes, :func:`mcdla.sim.training.make_plan`): it is infeasible for
certain when its model state and input do not fit the device memory, and its
iteration time is estimated from its compute (forward, backward, optimizer step; with
a pipeline, m + p - 1 passes of the slowest stage) plus the tensor-parallel
all-reduces and expert parallelism's all-to-alls, which sit on the critical path, at
the design's per-device collective bandwidth: a lower bound without a pipeline, the iteration itself for equal stages
and free communication, and it can exceed the iteration when the stages are unequal.
The ``simulate`` most promising candidates by that estimate are then simulated, in
order, until that many are found feasible: a
simulation may still find a candidate infeasible (its working set does not fit), with
the simulator's reason.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, get_args, get_type_hints

from mcdla.config.training import TrainingSpec
from mcdla.hw.collective_model import bus_factor
from mcdla.hw.memory import optimizer_state_bytes
from mcdla.sim import fit
from mcdla.units import format_time

from mcdla.errors import InfeasibleError, InputError, excerpt

__all__ = ["Candidate", "PlanRow", "MemberRow", "candidates", "plan", "largest", "plan_point", "no_fit",
           "MAX_TENSOR"]

# Largest tensor-parallel degree tried: Megatron-LM keeps tensor groups inside one
# NVLink domain (8 GPUs); beyond it the activation all-reduces dominate.
MAX_TENSOR = 8
ZERO_STAGES = (0, 1, 2, 3)
# Memory strategies: "none" keeps every feature map on the device (virtualization off).
KEEP = "none"
CHECKPOINTS = get_args(get_type_hints(TrainingSpec)["checkpoint"])  # none, full, selective


# A candidate without a pipeline runs without the user's pipeline options
# (--set training.schedule=gpipe is for the pipeline candidates).
NO_PIPELINE = (("training.micro_batches", 1), ("training.schedule", "1f1b"))


# The search axes a fixed ``--set`` names: key -> (the Candidate field it fixes, the spec
# whose field's type reads the value). training.virtualization fixes the memory axis
# too: false is KEEP, true any offload policy.
AXES = {
    "execution.tensor_parallel": "tensor_parallel", "execution.pipeline_parallel": "pipeline_parallel",
    "training.micro_batches": "micro_batches", "execution.zero": "zero", "execution.offload": "offload",
    "training.checkpoint": "checkpoint", "execution.offload_optimizer": "offload_optimizer",
    "execution.sequence_parallel": "sequence_parallel", "execution.offload_params": "offload_params",
    "training.virtualization": "offload", "execution.expert_parallel": "expert_parallel",
}


@dataclass(frozen=True)
class Candidate:
    tensor_parallel: int
    zero: int
    offload: str  # KEEP, or a registered offload policy
    checkpoint: str = "none"  # activation checkpointing (training.checkpoint)
    pipeline_parallel: int = 1
    micro_batches: int = 1
    offload_optimizer: bool = False  # ZeRO-Offload: optimizer state in the backing store
    sequence_parallel: bool = False
    offload_params: bool = False  # ZeRO-Infinity: the weights in the backing store too
    expert_parallel: int = 1  # MoE workloads: the routed experts spread over e ranks

    def sets(self) -> list[tuple[str, Any]]:
        sets: list[tuple[str, Any]] = [("execution.tensor_parallel", self.tensor_parallel),
                                       ("execution.zero", self.zero)]
        if self.pipeline_parallel > 1:
            sets += [("execution.pipeline_parallel", self.pipeline_parallel),
                     ("training.micro_batches", self.micro_batches)]
        else:
            sets += NO_PIPELINE
        if self.offload == KEEP:
            sets.append(("training.virtualization", False))
        else:
            sets.append(("execution.offload", self.offload))
        sets.append(("training.checkpoint", self.checkpoint))
        if self.offload_optimizer:
            sets.append(("execution.offload_optimizer", True))
        if self.sequence_parallel:
            sets.append(("execution.sequence_parallel", True))
        if self.offload_params:
            sets.append(("execution.offload_params", True))
        if self.expert_parallel > 1:
            sets.append(("execution.expert_parallel", self.expert_parallel))
        return sets

    def label(self) -> str:
        parts = [f"tp{self.tensor_parallel}", f"pp{self.pipeline_parallel}x{self.micro_batches}",
                 f"zero{self.zero}", self.offload]
        if self.checkpoint != "none":
            parts.append(f"ckpt:{self.checkpoint}")
        if self.offload_optimizer:
            parts.append("zero-infinity" if self.offload_params else "zero-offload")
        if self.sequence_parallel:
            parts.append("seq")
        if self.expert_parallel > 1:
            parts.append(f"ep{self.expert_parallel}")
        return " ".join(parts)


@dataclass
class PlanRow:
    candidate: Candidate
    devices: int
    estimate_s: float | None = None
    resident_bytes: float | None = None
    feasible: bool | None = None  # None: not simulated (ranked out)
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The plan in one line (as the API's candidates have it)."""
        return self.candidate.label()

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"tensor_parallel": c.tensor_parallel, "pipeline_parallel": c.pipeline_parallel,
                "micro_batches": c.micro_batches,
                "data_parallel": self.devices // (c.tensor_parallel * c.pipeline_parallel),
                "zero": c.zero, "offload_optimizer": c.offload_optimizer, "offload_params": c.offload_params,
                "sequence_parallel": c.sequence_parallel, "memory": c.offload,
                "checkpoint": c.checkpoint, "expert_parallel": c.expert_parallel,
                "estimate_s": self.estimate_s, "resident_bytes": self.resident_bytes,
                "feasible": self.feasible, "reason": self.reason, **self.result}


def candidates(devices: int, batch: int, offloads: Sequence[str], *, optimizer: bool = True,
               attention: bool = True, experts: int = 0) -> list[Candidate]:
    """Every candidate that divides the design and the batch. Pipelines run 1F1B with
    m = p, 2p or 4p micro-batches, feature maps on the device, ZeRO 0 or 1. With a
    backing store (``offloads`` not empty), ZeRO-Offload too, without pipelines. With
    ``experts`` (a mixture of experts' routed experts per layer), every expert-parallel
    degree that divides them and the data-parallel degree (ZeRO 0-2; 0 with pipelines)."""
    out = []
    for tp, pp in itertools.product(range(1, min(devices, MAX_TENSOR) + 1), range(1, devices + 1)):
        if devices % (tp * pp):
            continue
        dp = devices // (tp * pp)
        for m in ((1,) if pp == 1 else (pp, 2 * pp, 4 * pp)):
            if batch % (dp * m):
                continue
            for zero, offload, checkpoint in itertools.product(ZERO_STAGES, (KEEP, *offloads), CHECKPOINTS):
                if checkpoint == "selective" and not attention:
                    continue  # recomputes attention only: the same plan as none without attention
                if (zero and dp == 1) or (pp > 1 and (zero > 1 or offload != KEEP or checkpoint != "none")):
                    continue  # nothing to shard over; what pipelines do not compose with
                # Model state on the device; the optimizer's in the backing store (ZeRO-Offload,
                # where there is optimizer state); the weights there too (ZeRO-Infinity, stage 3).
                storages = [(False, False)]
                if offloads and pp == 1 and optimizer:
                    storages += [(True, False)] + ([(True, True)] if zero == 3 else [])
                eps = [e for e in range(1, dp + 1) if e == 1 or (experts and experts % e == 0 and dp % e == 0
                                                                 and not (pp > 1 and zero))]
                for sequence, e in itertools.product((False, True) if tp > 1 else (False,), eps):
                    out += [Candidate(tp, zero, offload, checkpoint, pp, m, offload_optimizer=opt,
                                      sequence_parallel=sequence, offload_params=params, expert_parallel=e)
                            for opt, params in storages]
    return out


def fixed_axes(sets: Sequence[tuple[str, Any]]) -> list[tuple[str, Callable[["Candidate"], bool]]]:
    """The user's ``--set`` pairs that name a search axis, as (``KEY=VALUE``, test of a candidate):
    a fixed option fixes its axis, so only the candidates with its value are searched
    (the candidates' own settings would otherwise override it)."""
    from mcdla.config.execution import ExecutionSpec
    from mcdla.config.schema import Where, convert
    from mcdla.sim.offload import OFFLOADS

    tests: list[tuple[str, Callable[[Candidate], bool]]] = []
    for key, value in sets:
        if key not in AXES:
            continue
        head, _, name = key.partition(".")
        spec = TrainingSpec if head == "training" else ExecutionSpec
        value = convert(get_type_hints(spec, include_extras=True)[name], value, Where("--set", key))
        field_name, shown = AXES[key], f"{key}={excerpt(value, 20)}"
        if key == "training.virtualization":
            tests.append((shown, lambda c, on=value: (c.offload != KEEP) == on))
            continue
        if key == "execution.offload":
            OFFLOADS.get(value, key=key)
        tests.append((shown, lambda c, f=field_name, v=value: getattr(c, f) == v))
    return tests


def _keep_fixed(found: list[Candidate], sets: Sequence[tuple[str, Any]]) -> list[Candidate]:
    """The candidates that agree with every fixed axis; none is a bad input naming the
    option that leaves none (or the options that together do)."""
    tests = fixed_axes(sets)
    kept = [c for c in found if all(test(c) for _, test in tests)]
    if found and not kept:
        alone = [key for key, test in tests if not any(test(c) for c in found)]
        keys = alone[:1] or [key for key, _ in tests]
        raise InputError(f"no candidate of the search has {' and '.join(keys)} (searched: tensor "
                         f"degrees to {MAX_TENSOR}, pipelines with 1, 2 or 4 micro-batches per stage, "
                         "dividing the devices and the batch; ZeRO 0-1 with pipelines)", key="--set")
    return kept


def _candidates_of(topo, work, batch: int) -> list[Candidate]:
    """:func:`candidates` for a workload on a design."""
    from mcdla.sim.expert import routed_experts
    from mcdla.sim.offload import OFFLOADS

    # The policies a framework would pick (not vdnn_conv, a reading of the paper); none
    # where there is nowhere to offload to.
    offloads = tuple(n for n in OFFLOADS.names() if OFFLOADS.get(n).searched) if topo.backing != "none" else ()
    return candidates(len(topo.devices), batch, offloads, optimizer=work.optimizer != "none",
                      attention=any(l.kind == "attention" for l in work.layers), experts=routed_experts(work))


def _estimate(iteration, virtualization_Bps: float) -> tuple[float, float]:
    """(the iteration time's estimate, the bytes resident on a device); see the module's docstring."""
    plan, topology, pipe = iteration.plan, iteration.topology, iteration.pipe
    if pipe is None:
        compute = sum(plan.fwd_s) + sum(plan.bwd_s) + plan.step_s
    else:  # m micro-batches through the slowest stage, plus the fill and drain (the bubble)
        m, p, v = iteration.inputs.execution.training.micro_batches, pipe.stages, pipe.chunks
        slowest = max(sum(plan.fwd_s[i] + plan.bwd_s[i] for c in range(v) for i in pipe.layers[c * p + s])
                      for s in range(p))
        # Interleaved over v chunks, the bubble is (p - 1) / v stage passes (Narayanan et al. SC'21, 2.2.2).
        compute = (m + (p - 1) / v) * slowest + max(pipe.step_s)
    degree = iteration.inputs.execution.tensor_parallel
    moved = 0.0
    if degree > 1:
        reduced = [plan.group_full_bytes[i] for i in plan.tp.reduce_out]
        prec = iteration.inputs.workload.precision_bytes  # the partial dX are gradients
        reduced += [plan.moved_bytes(p, prec) for ps in plan.tp.partial_dx.values() for p in ps]
        moved = sum(reduced) * bus_factor("all_reduce", degree)  # the bytes each rank's link carries
    if plan.ep is not None:  # dispatch and combine, forward and backward, of each MoE layer
        moved += 4 * sum(plan.tensor_bytes[i] for i in plan.ep.dispatch) * bus_factor("all_to_all", plan.ep.degree)
    bandwidth = topology.collective_bw_Bps if topology.rings else math.inf
    # Offloaded feature maps (and ZeRO-Offload's state) must also cross to the backing
    # store and back; that may overlap compute, so the longer of the two bounds the time.
    execution = iteration.inputs.execution
    tiered = 2 * sum(plan.tensor_bytes[t] for t in plan.first_need)
    if execution.offload_optimizer:
        tiered += 2 * optimizer_state_bytes(iteration.inputs.workload, plan.updated_params)
    virtual = tiered / virtualization_Bps if tiered else 0.0
    return max(compute + moved / bandwidth, virtual), iteration.model_state_bytes + plan.tensor_bytes[0]



def _kept_peak(iteration) -> float:
    """The device-memory peak of a plan that keeps every feature map on the device
    (mcdla.sim.liveness: exact when nothing is offloaded); 0 for any other plan, whose
    peak depends on how its transfers overlap (the simulation decides)."""
    from mcdla.sim.liveness import peak_bytes

    plan = iteration.plan
    if iteration.virtualize or iteration.pipe is not None or any(plan.offloaded):
        return 0.0
    return peak_bytes(iteration.inputs.workload.layers, plan.tensor_bytes, plan.offloaded, plan.recomputed,
                      virtualize=False, lookahead=iteration.inputs.execution.training.lookahead,
                      resident_bytes=iteration.model_state_bytes)


def state_lower_bound(workload, execution, devices: int) -> float:
    """The model state a device holds, from the weights alone (no plan built): exact
    without pipelines, the stages' average (a lower bound of the largest) with them."""
    from mcdla.hw.memory import with_precision
    from mcdla.hw.parallelism import tensor_split
    from mcdla.sim.expert import expert_split, held_params
    from mcdla.sim.plan import device_group_params, device_model_state

    work = with_precision(workload, execution.training.precision, execution.training.grad_reduce_dtype)
    shards = tensor_split(work.layers, execution.tensor_parallel, execution.sequence_parallel).shards
    split = expert_split(work, execution, devices // (execution.tensor_parallel * execution.pipeline_parallel))
    params = held_params(device_group_params(work, shards), split)
    pp = execution.pipeline_parallel
    if pp > 1:
        params = {g: n / pp for g, n in params.items()}
        devices //= pp
    return device_model_state(work, execution, devices, params, split)


def _metrics(record, result: dict[str, Any]) -> dict[str, Any]:
    """What a planner reads of a simulated candidate: time, throughput, model FLOP/s, memory per tier."""
    workload, execution, topology = record.inputs.workload, record.inputs.execution, record.inputs.topology
    time_s = record.iteration_time_s
    shape = workload.layers[0].out_shape
    tokens = execution.batch * (shape[0] if len(shape) == 1 else 1)  # token ids (seq,): a sequence model
    flops = 6.0 * workload.macs_fwd_per_sample * execution.batch  # forward 2 FLOP/MAC, backward twice that
    per_device = flops / time_s / len(topology.devices)
    # The capacity tier's memory traffic (memory-node or CPU DRAM ports), per device.
    tier = [p for p in topology.ports.values() if p.node in topology.memory_nodes or p.node in topology.sockets]
    tier_bytes = sum(record.network.bytes_by_resource.get(p.id, 0.0) for p in tier)
    return {
        "devices": len(topology.devices),
        "iteration_time_s": time_s,
        "samples_per_s": execution.batch / time_s,
        "tokens_per_s": tokens / time_s,
        "model_flops_per_device": per_device,
        # of the peak of the lanes this precision runs on (a V100's FP32 lanes for fp32)
        "peak_fraction": per_device / (2 * topology.device.pes * topology.device.lanes(workload.precision_bytes)
                                       * topology.device.clock),
        "device_mem_peak_bytes": result["device_mem_peak_bytes"],
        "backing_peak_bytes": max(record.store_peak_bytes.values(), default=0.0),
        "backing_Bps": tier_bytes / time_s / len(topology.devices),
        "busy_s": result["busy_s"],
        "exposed_s": result["exposed_s"],
    }


def plan(topology: str, workload: str, *, batch: int, sets: Sequence[tuple[str, Any]] = (),
         devices: int | None = None, simulate: int = 16, policy: str = "bw_aware",
         progress: Callable[[int, int, str], None] | None = None, members: int | None = None) -> list[PlanRow]:
    """Every candidate, estimated; the most promising simulated until ``simulate`` fit.
    Rows come best first: simulated feasible by iteration time, then the rest."""
    from mcdla.hw.budget import check_budget, check_plan_budget, estimate_work
    from mcdla.metrics.summary import summarize
    from mcdla.run import load_inputs
    from mcdla.sim.training import Iteration

    cache: dict = {}
    # The design and workload (the candidates set the execution).
    topo, work, _ = load_inputs(topology, workload, [*sets, *NO_PIPELINE], cache, batch=batch, policy=policy)
    n = len(topo.devices)
    if devices is not None and devices != n:
        raise InputError(f"topology {topo.name} has {n} devices, not {devices}", key="--devices")
    rows = [PlanRow(c, n) for c in _keep_fixed(_candidates_of(topo, work, batch), sets)]
    virtualization_Bps = topo.virtualization_bw_Bps if topo.backing != "none" else math.inf
    if not rows:
        raise InputError(f"no tensor-parallel degree up to {MAX_TENSOR} divides both the {n} devices "
                         f"and the batch of {batch}", key="--batch")
    if members is None:  # a family's search is bounded once, by largest()
        check_plan_budget(n, len(rows), simulate)
    built = {}
    states: dict[tuple, float] = {}
    for row in rows:
        try:
            t, w, e = load_inputs(topology, workload, [*sets, *row.candidate.sets()], cache, batch=batch,
                                  policy=policy)
            # (with sequence parallelism the per-token layers' weights are split too, as the iteration splits them)
            key = (e.tensor_parallel, e.pipeline_parallel, e.zero, e.offload_optimizer, e.offload_params,
                   e.sequence_parallel, e.training.precision, e.expert_parallel)
            if key not in states:
                states[key] = state_lower_bound(w, e, n)
            if states[key] > t.device_memory_bytes:  # certain before building any plan
                row.feasible, row.resident_bytes = False, states[key]
                row.reason = (f"model state needs at least {fit.size(states[key])} of the device's "
                              f"{fit.size(t.device_memory_bytes)}")
                continue
            iteration = Iteration(t, w, e)
        except InputError as exc:
            row.feasible, row.reason = False, str(exc)
            continue
        row.estimate_s, row.resident_bytes = _estimate(iteration, virtualization_Bps)
        capacity = t.device_memory_bytes
        if row.resident_bytes > capacity:
            row.feasible = False
            row.reason = (f"model state and input need {fit.size(row.resident_bytes)} of the device's "
                          f"{fit.size(capacity)}")
            continue
        peak = _kept_peak(iteration)
        if peak > capacity * (1 + 1e-9):  # nothing leaves the device: this peak is certain
            row.feasible = False
            row.reason = (f"keeping every feature map needs {fit.size(peak)} of the device's "
                          f"{fit.size(capacity)}")
            continue
        built[id(row)] = iteration
    ranked = sorted((r for r in rows if id(r) in built), key=lambda r: (r.estimate_s, r.candidate.label()))
    found = 0
    for k, row in enumerate(ranked):
        if found == simulate:  # enough feasible ones: the rest are estimated slower
            row.reason = "not simulated: a slower estimate than the simulated candidates"
            continue
        if progress is not None:
            progress(k, len(ranked), row.candidate.label())
        iteration = built.pop(id(row))
        try:  # each simulation within the budget too, checked before it runs
            e = iteration.inputs.execution
            check_budget(estimate_work(iteration.topology, iteration.workload, len(iteration.symmetry.device_classes),
                                       stages=e.pipeline_parallel, micro_batches=e.training.micro_batches))
        except InputError as exc:
            row.reason = f"not simulated: {exc}"
            continue
        try:
            record = iteration.run()
        except InfeasibleError as exc:
            row.feasible, row.reason = False, str(exc)
            continue
        row.feasible, found = True, found + 1
        row.result = _metrics(record, summarize(record, 0.0))

    def order(row: PlanRow):
        state = 0 if row.feasible else (1 if row.feasible is None else 2)
        time_s = row.result.get("iteration_time_s", row.estimate_s or math.inf)
        return (state, time_s, row.candidate.label())

    return sorted(rows, key=order)


@dataclass
class MemberRow:
    """One size of a family on the design: its best plan, or why none trains."""

    name: str
    params: int
    trains: bool
    best: PlanRow | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        best = self.best.as_dict() if self.best is not None else {}
        return {"member": self.name, "params": self.params, "trains": self.trains, "reason": self.reason,
                **{k: v for k, v in best.items() if k not in ("reason", "feasible")}}


def _plan_member(topology: str, family, member, *, batch: int, sets, simulate: int, devices: int | None = None,
                 policy: str = "bw_aware", members: int | None = None):
    """(parameters, the best feasible plan or None, why none fits) of one family member."""
    from mcdla.hw.workload import load_workload

    member_sets = family.member_sets(member)
    try:
        params = load_workload(family.workload, [(k.partition(".")[2], v) for k, v in member_sets]).params
    except InputError as exc:  # the member's key, named where the user wrote it
        raise InputError(f"family {family.name}, member {member['name']}: {exc}", key="members") from None
    rows = plan(topology, family.workload, batch=batch, sets=[*sets, *member_sets], devices=devices,
                simulate=simulate, policy=policy, members=members)
    best = next((r for r in rows if r.feasible), None)
    if best is not None:
        return params, best, ""
    return params, None, closest_reason(rows)


def closest_reason(rows: Sequence) -> str:
    """Why the candidate that came closest does not fit: the least resident model state."""
    failed = sorted((r for r in rows if r.feasible is False),
                    key=lambda r: (r.resident_bytes is None, r.resident_bytes or 0.0, r.label))
    if not failed:
        return "no candidate"
    return f"{failed[0].label}: {failed[0].reason.split('; ')[0]}"  # (the search is the way out)


def no_fit(rows: Sequence, workload: str, topology: str, batch: int) -> InfeasibleError:
    """The error of a plan none of whose candidates fits: the closest one's reason, and
    what is left to change (the search already tried ZeRO, offload and checkpointing)."""
    return InfeasibleError(f"no way to train {workload} at batch {batch} fits {topology}: every strategy searched "
                           f"(tensor, pipeline, ZeRO, offload, checkpointing) was refused; a smaller batch, more "
                           f"devices or a design with more memory; the closest, {closest_reason(rows)}")


def largest(topology: str, family: str, *, batch: int, sets: Sequence[tuple[str, Any]] = (),
            devices: int | None = None, budget_s: float | None = None, simulate: int = 4,
            progress: Callable[[int, int, str], None] | None = None) -> list[MemberRow]:
    """Plans every member of ``family`` on the design (smallest first): a member trains
    when a candidate fits and its iteration takes at most ``budget_s``. The largest
    that trains is the answer to the paper's Section V-E question, made quantitative."""
    from mcdla.config.family import read_family

    from mcdla.hw.budget import check_plan_budget
    from mcdla.run import load_inputs

    spec = read_family(family)
    per_member = {key for member in spec.members for key, _ in spec.member_sets(member)}
    clash = next((key for key, _ in sets if key in per_member), None)
    if clash is not None:  # the member's value would silently replace the user's
        raise InputError(f"{clash}: family {spec.name} sets it for each member", key="--set")
    # The whole family's search bounded before the first member is planned.
    topo, work, _ = load_inputs(topology, spec.workload, [*sets, *NO_PIPELINE], batch=batch)
    check_plan_budget(len(topo.devices), len(_candidates_of(topo, work, batch)), simulate, members=len(spec.members))
    rows = []
    for k, member in enumerate(spec.members):
        if progress is not None:
            progress(k, len(spec.members), member["name"])
        params, best, reason = _plan_member(topology, spec, member, batch=batch, sets=sets, devices=devices,
                                            simulate=simulate, members=len(spec.members))
        if best is None:
            rows.append(MemberRow(member["name"], params, False, None, reason))
        elif budget_s is not None and best.result["iteration_time_s"] > budget_s:
            rows.append(MemberRow(member["name"], params, False, best,
                                  f"fastest plan takes {format_time(best.result['iteration_time_s'], 3)}, over "
                                  f"the budget of {format_time(budget_s, 3)}"))
        else:
            rows.append(MemberRow(member["name"], params, True, best))
    return rows


def plan_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """A ``kind: plan`` sweep point: one family member on one design, its best plan.

    Keys: ``topology``, ``policy``, ``model`` (``FAMILY/MEMBER``), ``batch``, ``simulate``,
    and dotted ``--set`` keys fixed for every candidate. The result says whether any
    candidate fits (``trains``), and the best one's strategy and figures (raw SI)."""
    from mcdla.config.family import read_family

    point = dict(point)
    family_name, _, member_name = str(point.pop("model", "")).partition("/")
    family = read_family(family_name)
    member = next((m for m in family.members if m["name"] == member_name), None)
    if member is None:
        names = ", ".join(m["name"] for m in family.members)
        raise InputError(f"family {family.name} has no member {member_name!r}; it has {names}", key="model")
    topology, policy = point.pop("topology"), point.pop("policy", "bw_aware")
    batch, simulate = int(point.pop("batch")), int(point.pop("simulate", 2))
    params, best, reason = _plan_member(topology, family, member, batch=batch, sets=list(point.items()),
                                        simulate=simulate, policy=policy)
    out: dict[str, Any] = {"member": member_name, "family": family.name, "params": params,
                           "topology": topology, "policy": policy, "batch": batch, "trains": best is not None}
    if best is None:
        out["reason"] = reason
        return out
    out["plan"] = best.candidate.label()
    out.update(best.result)
    return out
