"""One training iteration over D device-nodes: the assembly of its components.

:class:`Iteration` lays the ranks out on named axes (:mod:`mcdla.hw.layout`), builds
the plan (:mod:`mcdla.sim.plan`), the communicators of each group
(:mod:`mcdla.sim.communicator`), memory and backing stores (:mod:`mcdla.sim.memory`)
and one compute stream per simulated device (:mod:`mcdla.sim.device`, or a pipeline
stage, :mod:`mcdla.sim.pipeline`), runs them, and assembles the typed record
(:mod:`mcdla.sim.records`) that summary, trace and invariants read:

- :class:`~mcdla.sim.device.DeviceCompute`, one per device: computes its layers in
  order (forward, then backward in reverse), asks memory for room, hands feature maps
  to its DMA engines and joins collectives;
- :class:`~mcdla.sim.memory.DmaEngine`, one or two per device: moves feature maps
  between device memory and the backing store, one tensor at a time, in FIFO order;
- :class:`~mcdla.sim.memory.DeviceMemory`, one per device: a capacity whose
  allocations wait for room; :class:`~mcdla.sim.memory.BackingStores`: what each
  backing store holds, against its capacity;
- :class:`~mcdla.sim.communicator.CollectiveStream`: a communicator; collectives run
  one at a time in launch order (one NCCL stream), each when every device of its group
  has joined it, by the execution's collective algorithm.

Data-parallel (paper Fig. 3(a)): each device holds the whole model and batch/D
samples; a weight group's dW is all-reduced as soon as every device has finished the
backward of the group's last layer, overlapping the rest of backward.
Model-parallel (Fig. 3(b), Krizhevsky-style): each device holds the whole batch and
1/D of every layer's output features; what each weighted layer reads of its inputs is
all-gathered before its forward (once per tensor), and each tensor's partial dX is
reduce-scattered after the backward of its last consumer; dW stays local. Cheap layers
run on the device's feature shard, or whole where that saves a gather
(:func:`mcdla.hw.parallelism.model_split`).

Memory virtualization: the execution's offload policy (:mod:`mcdla.sim.offload`;
vDNN offload-all by default) says which feature maps leave the device after their last
forward use; each is prefetched back ``lookahead`` layers ahead of the backward layer
that first needs it, and that layer waits for its prefetch. Recomputed maps are rebuilt
in backward from their nearest offloaded ancestors, charged to compute.

The components decide *when*; how long a kernel takes comes from
:mod:`mcdla.hw.compute` and how long a transfer takes from the flow network.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from mcdla.config.execution import ExecutionSpec
from mcdla.errors import InfeasibleError, InputError
from mcdla.hw.cache import Cache
from mcdla.hw.ew_traffic import with_norm_kernel
from mcdla.hw.fusion import inplace_workload
from mcdla.hw.fp8 import require_fp8_lanes
from mcdla.hw.gpu import with_attention_kernel
from mcdla.hw.layout import RankLayout
from mcdla.hw.memory import model_state_bytes, optimizer_state_bytes, reduction_rate_Bps, with_precision
from mcdla.hw.network import sub_ring, sub_ring_period
from mcdla.hw.parallelism import device_share
from mcdla.hw.symmetry import Symmetry, line_up, rank_classes
from mcdla.hw.tiers import state_routes, state_tier, used_tiers
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.communicator import CollectiveStream
from mcdla.sim.device import DeviceCompute
from mcdla.sim import expert
from mcdla.sim import fit
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.invariants import check_iteration
from mcdla.sim.memory import BackingStores, DeviceMemory
from mcdla.sim.passes import DeviceWork, whole_pass
from mcdla.sim.pipeline import PipeLinks, PipelineStage, pipeline_plan, pipeline_route
from mcdla.sim.plan import device_model_state, make_plan
from mcdla.sim.records import ClassRecords, DeviceRecord, IterationRecord, RunInputs

__all__ = ["Iteration"]


def _rank_order(order: str | None, topology) -> tuple[int, ...]:
    """Rank -> device index: the topology's device order, or ``order`` (device names,
    a permutation of the topology's devices, comma-separated)."""
    names = topology.devices
    if order is None:
        return tuple(range(len(names)))
    given = [n.strip() for n in order.split(",")]
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in given if n not in index]
    if unknown or len(given) != len(names) or len(set(given)) != len(given):
        what = f"unknown device {unknown[0][:40]!r}" if unknown else "each device once"
        first = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(f"expected a permutation of the {len(names)} devices of {topology.name}, {first} "
                         f"({what})",
                         key="execution.rank_order")
    return tuple(index[n] for n in given)


def _wrap(peers: dict) -> dict:
    """Pipeline peers with the ends joined: the last stage's next is the first stage
    of its line, whose previous is that last stage (the interleaved schedule's chunk
    after the last stage's runs on the first)."""
    wrapped = dict(peers)
    for d, (previous, _) in peers.items():
        if previous is None:  # the first stage: walk its line to the last
            last = d
            while peers[last][1] is not None:
                last = peers[last][1]
            wrapped[d] = (last, wrapped[d][1])
            wrapped[last] = (wrapped[last][0], d)
    return wrapped


class GroupRings:
    """A group's rings: each topology ring of ``through`` restricted to ``members``
    (:func:`mcdla.hw.network.sub_ring`), named at once and derived when first iterated.
    With rank symmetry a run needs those of one group per orbit (the classes) and of the
    simulated devices' groups (their communicators), and only the names of the rest;
    the classes read one period of a group the shift keeps (:meth:`by_period`)."""

    __slots__ = ("names", "_topology", "_through", "_members", "_cache", "_rings")

    def __init__(self, topology, through, members, group: str, cache: Cache) -> None:
        self.names = tuple(f"{ring.name}/{group}" for ring in through)
        self._topology, self._through, self._members, self._cache = topology, through, members, cache
        self._rings = None

    def _one(self, ring, name: str):
        """``ring`` restricted to the group, derived once (the classes may ask before the
        communicators iterate)."""
        topology = self._topology
        return self._cache.get(("group ring", name), lambda: sub_ring(
            ring, self._members, name, topology.reverse_of(ring), topology.channels, self._cache))

    def __iter__(self):
        if self._rings is None:
            self._rings = tuple(map(self._one, self._through, self.names))
        return iter(self._rings)

    def __len__(self) -> int:
        return len(self.names)

    def by_period(self, translation) -> list[tuple]:
        """What the rank classes read of the rings when ``translation`` keeps the group:
        (ring, what is read of it by period) for each ring, by period where it has one
        (:func:`mcdla.hw.network.sub_ring_period`), else (the whole sub-ring, None)."""
        if self._rings is not None:  # derived whole already
            return [(ring, None) for ring in self._rings]
        topology = self._topology
        found = []
        for ring, name in zip(self._through, self.names):
            one = sub_ring_period(ring, self._members, name, translation, topology.channels,
                                  topology.reverse_of(ring), self._cache)
            found.append((one.ring, one) if one is not None else (self._one(ring, name), None))
        return found


class RingsByName(Mapping):
    """Every ring of a run by name: those given at once, the other groups' (``lazy``:
    each group's rings) derived when first looked up (a symmetric run's communicators
    use the simulated groups' only; the per-channel laws of the invariants read all)."""

    def __init__(self, rings: dict, lazy) -> None:
        self._rings = rings
        self._lazy = {name: group for group in lazy for name in group.names if name not in rings}

    def __getitem__(self, name: str):
        if name not in self._rings:
            self._rings.update((ring.name, ring) for ring in self._lazy[name])
        return self._rings[name]

    def __iter__(self):
        return iter({**dict.fromkeys(self._rings), **dict.fromkeys(self._lazy)})

    def __len__(self) -> int:
        return len(set(self._rings) | set(self._lazy))


class Iteration:
    """Builds the components of one iteration; :meth:`run` simulates it."""

    def __init__(self, topology, workload, execution: ExecutionSpec, *, record_timeline: bool = False):
        training = execution.training
        # The workload as this execution trains it: its precision, in-place and fused layers.
        if training.precision == "fp8":
            require_fp8_lanes(topology.device, f"the device of {topology.name}")
        precise = with_precision(workload, training.precision, training.grad_reduce_dtype)
        precise = with_attention_kernel(precise, training.attention_kernel, topology.device,
                                        f"the device of {topology.name}")
        workload = inplace_workload(with_norm_kernel(precise, training.norm_kernel), inplace=training.inplace,
                                    fuse_bn_relu=training.fuse_bn_relu, fuse_dropout_add=training.fuse_dropout_add)
        self.inputs = RunInputs(topology, workload, execution)
        devices = len(topology.devices)
        t, pp = execution.tensor_parallel, execution.pipeline_parallel
        if devices % (t * pp):
            key = "execution.tensor_parallel" if devices % t else "execution.pipeline_parallel"
            raise InputError(f"tensor x pipeline degrees {t} x {pp} do not divide the {devices} devices of "
                             f"{topology.name}", key=key)
        dp = devices // (t * pp)
        # One replica's share of the batch (refuses a batch the replicas cannot split evenly).
        self.share = device_share(execution.parallel, execution.batch, dp)
        micro = training.micro_batches
        # In model-parallel training every device holds the whole batch: no replicas to split it over.
        replicas = dp if execution.parallel == "data" else 1
        if execution.batch % (replicas * micro):
            raise InputError(f"{execution.batch} is not divisible by {replicas} data-parallel replicas x {micro} "
                             "micro-batches", key="batch")
        # Rank placement (Megatron's order, mcdla.hw.layout): tensor groups innermost, then
        # data-parallel replicas, then pipeline stages. ``execution.rank_order`` overrides
        # which device each rank runs on.
        self.rank_device = _rank_order(execution.rank_order, topology)
        self.layout = RankLayout.of(self.rank_device, tp=t, dp=dp, pp=pp)
        self.tensor_groups = self.layout.groups("tp")
        self.data_groups = self.layout.groups("dp")
        self.stage_of = self.layout.along("pp")
        self.cache = Cache()  # what the run derives (its sub-rings, its pipeline routes), shared with no other run
        # Expert parallelism's groups, cut from the data-parallel replicas (mcdla.sim.expert).
        self.expert_groups, self.expert_data_groups, self.expert_tensor_groups = expert.expert_groups(
            self.rank_device, t, dp, pp, execution.expert_parallel, execution.expert_tensor_parallel)
        self.group_rings = self._group_rings()
        # Pipeline peers: device -> (the previous stage's device, the next stage's).
        self.peers = self.layout.neighbours("pp")
        self.env = CountingEnvironment()
        self._record_timeline = record_timeline
        self.socket_ports = tuple(p.id for p in topology.ports.values() if p.node in topology.sockets)
        self.virtualize = state_tier(topology, execution, "activations") is not None
        if training.virtual_stages > 1:  # interleaved: the last stage's next chunk is on the first stage
            self.peers = _wrap(self.peers)
        self.pipe = None
        self._works: dict = {}  # stage (None without micro-batches) -> what its devices run
        if pp > 1 or micro > 1:
            # Each pass runs one micro-batch: the plan's per-layer times and sizes are a micro-batch's.
            self.plan = make_plan(self.inputs, self.virtualize, micro_batch=execution.batch // (dp * micro), dp=dp)
            self.pipe = pipeline_plan(self.plan, self.inputs, dp, self.virtualize)
        else:
            self.plan = make_plan(self.inputs, self.virtualize)
        # Weights, gradients and optimizer state stay in device memory (1/D of them per
        # device in model-parallel training); the steady state an iteration returns to.
        self.device_state_bytes: tuple[float, ...] = ()
        if self.pipe is not None:  # each device holds its stage's weights
            per_stage = [model_state_bytes(workload, params=w / workload.precision_bytes, fp8_params=f,
                                           zero=execution.zero, dp=dp)
                         for w, f in zip(self.pipe.stage_weight_bytes, self.pipe.stage_fp8_params)]
            self.device_state_bytes = tuple(per_stage[self.stage_of[d]] for d in range(devices))
            self.model_state_bytes = max(per_stage)
        else:
            params = {g: b / workload.precision_bytes for g, b in self.plan.group_bytes.items()}
            self.model_state_bytes = device_model_state(workload, execution, devices, params, self.plan.ep)
        if execution.offload_optimizer and state_tier(topology, execution, "optimizer") is None:
            raise InputError(f"{topology.name} has no backing store to keep the optimizer state in",
                             key="execution.offload_optimizer")
        self.reduce_Bps = reduction_rate_Bps(topology.device)

    # The classes and the flow network are built when first asked (simulate asks for the
    # classes to check the work budget, run for the network): a planner that only
    # estimates an iteration from its plan pays for neither.
    @cached_property
    def _classes(self):
        return self._symmetry()

    @property
    def symmetry(self) -> Symmetry:
        return self._classes[0]

    @property
    def stream_weights(self):
        return self._classes[1]

    @cached_property
    def net(self) -> FlowNetwork:
        topology = self.inputs.topology
        # A device's reduction unit is in its class: added to the symmetry's own map
        # (Symmetry.with_units), not a copy of it (5.3M resources at 131,072 GPUs). The
        # capacities read, not copied: the network keeps its own (flowsetup.per_class).
        net = FlowNetwork(self.env, topology.read_capacities(), on_rates=self._on_rates,
                          record_timeline=self._record_timeline, classes=self.symmetry.with_units(topology.devices),
                          also=topology.nic_ports,
                          orbits=self.symmetry.translation)
        # Peak load of each CPU socket's DRAM port (Fig. 12), seen at every rate change
        # (with symmetry, on the port that stands for its class).
        self.port_peak_Bps = {port: 0.0 for port in dict.fromkeys(map(net.representative, self.socket_ports))}
        return net

    def _store_tiers(self) -> tuple[str, ...] | None:
        """The tiers whose stores tell devices apart: None (the backing store, as ever)
        unless the run places state on another tier, then the backing store's and those."""
        topology = self.inputs.topology
        kinds = used_tiers(topology, self.inputs.execution)
        if all(k == topology.default_tier_kind for k in kinds):
            return None
        return tuple(dict.fromkeys(k for k in (topology.default_tier_kind, *kinds) if k is not None))

    def _symmetry(self):
        """Which devices are simulated once for their class (mcdla.hw.symmetry), and each
        communicator's weights: what a simulated device's join counts for (the devices
        of its class in the group) and how many groups the communicator stands for.
        Every device is its own class with ``execution.exact``, with collective
        algorithms whose flows single out ranks, and where the groups do not line up
        with the classes (below)."""
        execution, topology = self.inputs.execution, self.inputs.topology
        names = topology.devices
        pp = execution.pipeline_parallel
        algorithm = COLLECTIVES.get(execution.collective, key="execution.collective")
        supported = (not execution.exact and algorithm.rank_symmetric(topology.rings, topology.read_capacities())
                     and execution.expert_skew is None)  # a skewed routing singles out each ep group's hot rank
        links = None
        if pp > 1 and supported:
            def links(devices) -> list:  # those of ``devices``: the quotient's asks for one device's per orbit
                wanted = set(devices)
                return [(kind, names[d], names[peer], pipeline_route(topology, self.cache, names[d], names[peer]))
                        for d, pair in self.peers.items() if names[d] in wanted
                        for kind, peer in zip(("prev", "next"), pair) if peer is not None]
        # With communicators of groups, the topology's own rings carry nothing, nor do a
        # group of one's (it never communicates): only the groups' sub-rings tell
        # devices apart.
        symmetry = rank_classes(topology, execution.policy, supported,
                                colours=[self.stage_of[d] for d in range(len(names))] if pp > 1 else (),
                                groups=[(kind, [names[d] for d in group], rings if len(group) > 1 else ())
                                        for kind, _, group, rings in self.group_rings], links=links or (),
                                rings=() if self.group_rings else topology.rings, tiers=self._store_tiers(),
                                translation=self._stage_shift() if links else None)
        if not self.group_rings:  # one communicator over every device
            return symmetry, [({group[0]: len(group) for group in symmetry.device_classes}, 1, ())]
        groups = [(kind, group) for kind, _, group, _ in self.group_rings]
        lined = line_up(symmetry, groups, self.rank_device, self.peers)
        if lined is None:
            lined = line_up(Symmetry.exact(len(names)), groups, self.rank_device, self.peers)
        return lined

    def _stage_shift(self):
        """The shift of every node two on within its pipeline stage's block of nodes, or
        within its leaf where a stage holds whole leaves (mcdla.hw.translation, NodeCells),
        an automorphism of the run when the cluster hands over its node cell, Megatron's
        order puts every stage on whole contiguous nodes and the pipeline's peers move with
        it; else None (the whole refinement)."""
        topology, pp = self.inputs.topology, self.inputs.execution.pipeline_parallel
        cells, n = topology.node_cells, len(topology.devices)
        if cells is None or any(self.stage_of[d] != d * pp // n for d in range(n)):
            return None
        shift = cells.within_stage_leaves(topology.graph, n, pp)
        if shift is None:
            return None
        position = {d: k for k, d in enumerate(topology.devices)}
        moved = [position[shift.shift(d, 1)] for d in topology.devices]
        if any(self.peers.get(moved[d]) != tuple(None if p is None else moved[p] for p in pair)
               for d, pair in self.peers.items()):
            return None
        return shift

    @property
    def topology(self):
        return self.inputs.topology

    @property
    def workload(self):
        return self.inputs.workload

    def _on_rates(self, now_s: float, load_Bps: dict[str, float]) -> None:
        for port in self.port_peak_Bps:
            load = load_Bps.get(port, 0.0)
            if load > self.port_peak_Bps[port]:
                self.port_peak_Bps[port] = load

    def _groups(self) -> dict:
        """The rank placement by device name, when there is more than data parallelism."""
        if len(self.data_groups) == 1 and not self.expert_groups:
            return {}
        names = self.topology.devices
        stages: dict[int, list[str]] = {}
        rank = {d: r for r, d in enumerate(self.rank_device)}
        for d, s in sorted(self.stage_of.items(), key=lambda item: (item[1], rank[item[0]])):
            stages.setdefault(s, []).append(names[d])
        found = {"tensor": [[names[d] for d in g] for g in self.tensor_groups],
                 "data": [[names[d] for d in g] for g in self.data_groups],
                 "stages": list(stages.values())}
        if self.expert_groups:
            found["expert"] = [[names[d] for d in g] for g in self.expert_groups]
            found["expert_data"] = [[names[d] for d in g] for g in self.expert_data_groups]
        if self.expert_tensor_groups:
            found["expert_tensor"] = [[names[d] for d in g] for g in self.expert_tensor_groups]
        return found

    def _group_rings(self) -> list[tuple[str, int, tuple[int, ...], "GroupRings"]]:
        """The communicators of tensor and pipeline parallelism: (kind, number, devices,
        their rings: each topology ring through them restricted to them, derived when
        first asked); none without."""
        topology = self.inputs.topology
        if len(self.data_groups) == 1 and not self.expert_groups:
            return []
        found = []
        for kind, groups in (("dp", self.data_groups), ("tp", self.tensor_groups), ("ep", self.expert_groups),
                             ("edp", self.expert_data_groups), ("etp", self.expert_tensor_groups)):
            for n, group in enumerate(groups):
                members = {topology.devices[d] for d in group}
                through = tuple(ring for ring in topology.rings if members <= ring.position.keys())
                if not through:
                    raise InputError(f"no ring of {topology.name} passes through all devices of {kind} group {n}",
                                     key="execution.expert_parallel" if kind in expert.KINDS
                                     else "execution.tensor_parallel")
                found.append((kind, n, group, GroupRings(topology, through, members, f"{kind}{n}", self.cache)))
        return found

    def _communicators(self):
        """Device -> (its data-parallel communicator, its tensor-parallel one or None),
        every ring of the run by name, and each communicator's rings -> the rings of every
        group it stands for (rank symmetry). Without tensor or pipeline parallelism there
        is one communicator over the topology's rings, the paper's. With symmetry only
        the groups of simulated devices get one, standing for their alike groups."""
        topology = self.topology
        rings = {ring.name: ring for ring in topology.rings}
        if not self.group_rings:  # no tensor or pipeline parallelism
            weights, _, _ = self.stream_weights[0]
            # The paper's model-parallel mode splits every layer over all devices: the tensor axis.
            axis = "tp" if self.inputs.execution.parallel == "model" else "dp"
            stream = CollectiveStream(self.env, self.net, self.inputs, self.reduce_Bps, weights=weights, axis=axis)
            return [(stream, None)] * len(topology.devices), rings, {}
        kinds = ("dp", "tp", *expert.KINDS)
        streams: list[list] = [[None] * len(kinds) for _ in topology.devices]
        stands: dict[tuple, tuple] = {}
        for (kind, _, group, group_rings), plan in zip(self.group_rings, self.stream_weights):
            if plan is None:  # no simulated device in it: another group stands for it (its rings not derived)
                continue
            rings.update((r.name, r) for r in group_rings)
            weights, copies, alike = plan
            stream = CollectiveStream(self.env, self.net, self.inputs, self.reduce_Bps, tuple(group_rings), len(group),
                                      weights=weights, copies=copies, axis=expert.AXIS_OF.get(kind, kind),
                                      hot_share=self.inputs.execution.expert_skew if kind == "ep" else None)
            if kind == "ep" and self.inputs.execution.expert_skew is not None:
                stream.algorithm.carries("all_to_allv")  # refuses an algorithm without the unequal all-to-all
            for d in group:
                streams[d][kinds.index(kind)] = stream
            stands[group_rings.names] = tuple(self.group_rings[k][3].names for k in alike)
        return [tuple(pair) for pair in streams], RingsByName(rings, [g[3] for g in self.group_rings]), stands

    def _work(self, d: int) -> DeviceWork:
        """What device ``d`` runs: its stage's schedule over its chunks, or one pass
        (built once per stage)."""
        stage = self.stage_of[d] if self.pipe is not None else None
        if stage not in self._works:
            training = self.inputs.execution.training
            self._works[stage] = (whole_pass(self.plan, self.workload.layers, self.virtualize) if stage is None
                                  else self.pipe.work(stage, training.schedule, training.micro_batches))
        return self._works[stage]

    def _streams(self, memories, stores, streams):
        """One compute stream per simulated device (a pipeline stage's, with pipelines,
        and the links between stages): their processes, and the links or None."""
        env, inputs, topology = self.env, self.inputs, self.inputs.topology
        # Each device's plan (its expert compute follows the routing) and expert communicators.
        plan_of = {k: expert.rank_plan(self.plan, k) for k in range(self.inputs.execution.expert_parallel)}
        ep_rank = {d: k for g in self.expert_groups for k, d in enumerate(g)}
        if inputs.execution.pipeline_parallel == 1:
            state = self.device_state_bytes
            return [DeviceCompute(env, self.net, inputs, group[0], plan_of[ep_rank.get(group[0], 0)],
                                  memories[group[0]], stores, streams[group[0]][0],
                                  state[group[0]] if state else self.model_state_bytes, self._work(group[0]),
                                  streams[group[0]][1], members=group,
                                  expert_streams=tuple(streams[group[0]][2:5]) or (None,) * 3).process
                    for group in self.symmetry.device_classes], None
        links = PipeLinks(env, self.net, topology, self.cache)
        names = topology.devices
        devices = []
        for group in self.symmetry.device_classes:
            d = group[0]
            peers = tuple(names[p] if p is not None else None for p in self.peers[d])
            # Each device of the class sends to its own peers (PipeLinks: one flow for all).
            pairs = tuple(tuple((names[e], names[self.peers[e][k]]) for e in group) if self.peers[d][k] is not None
                          else () for k in (0, 1))
            devices.append(PipelineStage(env, self.net, inputs, d, plan_of[ep_rank.get(d, 0)], memories[d], stores,
                                         streams[d][0], self.device_state_bytes[d], self._work(d), streams[d][1],
                                         expert_streams=tuple(streams[d][2:5]) or (None,) * 3, stage=self.stage_of[d],
                                         pipe=self.pipe, links=links, peers=peers, pairs=pairs,
                                         members=group).process)
        return devices, links

    def run(self) -> IterationRecord:
        env, inputs, topology = self.env, self.inputs, self.inputs.topology
        capacity = topology.device_memory_bytes
        simulated = [c[0] for c in self.symmetry.device_classes]  # one device per class
        records = ClassRecords(topology.devices, self.symmetry.device_classes,
                               {d: DeviceRecord(topology.devices[d]) for d in simulated})
        resident = self.model_state_bytes + self.plan.tensor_bytes[0]  # weights, gradients, input
        if resident > capacity:  # the same on every device
            raise InfeasibleError(
                f"device {topology.devices[0]}: the model state (weights, gradients, optimizer) and the input batch need "
                f"{fit.size(resident)}, over its {fit.size(capacity)} of memory; "
                f"{fit.state_way_out(inputs.execution, topology.backing != 'none')}")
        stores = BackingStores(topology, self.symmetry.stores)
        if inputs.execution.offload_optimizer:  # ZeRO-Offload: every device's state, stored for good
            state = optimizer_state_bytes(inputs.workload, self.plan.updated_params)
            if inputs.execution.offload_params:  # ZeRO-Infinity: its shard of the weights and gradients too
                state += 2 * self.plan.updated_params * inputs.workload.precision_bytes
            # offloaded experts: their weights and gradients too
            state += 2 * expert.stored_params(self.plan, inputs.workload.precision_bytes) * inputs.workload.precision_bytes
            for group in self.symmetry.device_classes:  # the weights live where the optimizer state does
                for sub in state_routes(topology, inputs.execution, "optimizer", topology.devices[group[0]], "offload"):
                    stores.hold(sub.store, sub.share * state, len(group))
        streams, rings, stands = self._communicators()
        memories = {d: DeviceMemory(env, records[d], capacity) for d in simulated}
        devices, links = self._streams(memories, stores, streams)
        communicators = list(dict.fromkeys(s for pair in streams for s in pair if s is not None))
        done = env.all_of(devices)
        # Runs until nothing is scheduled: devices done, and every collective and DMA
        # they launched has finished (the engines then wait on empty queues).
        env.run()
        waiting = [(d, what, size) for d, m in memories.items() for what, size in m.waiting.items()]
        if not done.triggered and waiting:
            device, what, need = min(waiting)
            record = records[device]
            how = "even with virtualization" if self.virtualize else "with virtualization off"
            raise InfeasibleError(
                f"device {record.name} cannot fit {what} ({fit.size(need)}) beside the {fit.size(record.memory_bytes)} "
                f"it holds, within its {fit.size(capacity)} of memory, {how}; "
                f"{fit.maps_way_out(inputs.execution, self.virtualize, topology.backing != 'none')}")
        if not done.triggered or any(c.unfinished() for c in communicators):
            raise RuntimeError("simulation deadlocked: a device or collective never finished")
        classes = self.symmetry.device_classes  # a class's other devices did what its first did (records)
        ports = self.port_peak_Bps
        record = IterationRecord(
            inputs=inputs,
            iteration_time_s=env.now,
            devices=records,
            collectives=[r for c in communicators for r in c.records],
            store_peak_bytes=stores.expanded(stores.peak),
            store_end_bytes=stores.expanded(stores.used),
            events=env.events_processed,
            network=self.net.stats(),
            # The network's own map, not a copy (5.3M resources at 131,072 GPUs): the run is
            # over, nothing adds to it, and the record only reads it.
            capacities_Bps=self.net.capacities_Bps,
            overload=self.net.overload,
            timeline=self.net.timeline,
            port_peak_Bps={port: ports[self.net.representative(port)] for port in self.socket_ports},
            plan=self.plan,
            model_state_bytes=self.model_state_bytes,
            virtualize=self.virtualize,
            rings=rings,
            device_state_bytes=self.device_state_bytes,
            transfers=(tuple(links.sent) if links is not None else ()) + tuple(stores.moved),
            pipeline_sends=tuple(links.spans) if links is not None else (),
            store_resident_bytes=stores.expanded(stores.resident),
            groups=self._groups(),
            rank_classes=classes if len(classes) < len(records) else (),
            equivalent_rings=stands if len(classes) < len(records) else {},
            device_work=tuple(self._work(d) for d in range(len(records))),
            resource_classes=self.symmetry.resources if len(classes) < len(records) else {},
            class_orbits=self.symmetry.translation if len(classes) < len(records) else None,
            resource_orbits=self.symmetry.orbits if len(classes) < len(records) else (),
        )
        check_iteration(record)  # conservation laws; raises on a bug
        return record
