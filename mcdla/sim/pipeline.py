"""Pipeline parallelism: stages of consecutive layers, micro-batches, their schedule.

With ``execution.pipeline_parallel`` = p, the devices form p stages of dp x t devices
each (Megatron's order: tensor groups innermost, then data-parallel replicas, then
stages); the layers are split into p x v contiguous virtual stages of near-equal
compute (:func:`mcdla.hw.parallelism.pipeline_stages`; v = ``training.virtual_stages``
chunks per stage with the interleaved schedule, stage s holding virtual stages s,
s + p, ...), and each replica's share of the global batch runs as
``training.micro_batches`` micro-batches.

A :class:`PipelineStage` is one device's process: a
:class:`~mcdla.sim.device.DeviceCompute` running its stage's schedule
(:mod:`mcdla.sim.schedule`) with the same forward and backward passes as any device
(recompute, offload and gradient bookkeeping included); the stage only adds what is
pipeline-specific. A forward of virtual stage k > 0 waits for its micro-batch's
activations from virtual stage k - 1; a backward of k < p v - 1 waits for their
gradient from k + 1; both are point-to-point flows on the network
(:class:`PipeLinks`), contending with the collectives. Gradients accumulate over the
micro-batches; each weight group is reduced over the data-parallel group during the
last micro-batch's backward, then the optimizer steps. ZeRO stage 1 composes (as
Megatron's distributed optimizer); 2 and 3 do not (DeepSpeed refuses them with
pipelines too).
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from mcdla.hw.cache import Cache
from mcdla.hw.compute import optimizer_step_time
from mcdla.hw.fp8 import copied_params
from mcdla.hw.memory import updated_params
from mcdla.hw.network import p2p_paths
from mcdla.hw.parallelism import even_stages, pipeline_stages
from mcdla.sim.device import DeviceCompute
from mcdla.sim.offload import block_of
from mcdla.sim.passes import DeviceWork, PassPlan, pass_plan
from mcdla.sim.schedule import Step, steps

__all__ = ["PipeLinks", "PipelineStage", "PipelinePlan", "pipeline_plan", "pipeline_route"]


def pipeline_route(topology, cache: Cache, src: str, dst: str) -> tuple:
    """The flows of a send from ``src`` to ``dst`` (:func:`mcdla.hw.network.p2p_paths`),
    derived once in the run's ``cache``: the rank classes read every pair's route, and
    the sends read them again (at 16,384 GPUs, 61,440 routes of 18 rings each)."""
    return cache.get(("pipeline route", src, dst),
                     lambda: p2p_paths(topology.rings, src, dst, topology.reverse_of, topology.channels))


class PipeLinks:
    """Point-to-point transfers between pipeline stages, as flows on the network.

    A transfer is split over every topology ring through both devices, each share on
    that ring's shortest way between them (:func:`mcdla.hw.network.p2p_paths`: straight
    through a switch they share, NVSwitch or a rail, else along the ring)."""

    def __init__(self, env, net, topology, cache: Cache):
        self.env, self.net, self.topology = env, net, topology
        self.cache = cache  # the run's, where the routes are kept (pipeline_route)
        self._arrivals: dict[tuple, simpy.Event] = {}
        self.sent: list[tuple[tuple[str, ...], float]] = []  # (path, bytes): for the invariants
        self.spans: list[tuple[float, float]] = []  # (start, end) of each send: the pp axis's time

    def arrival(self, key: tuple) -> simpy.Event:
        if key not in self._arrivals:
            self._arrivals[key] = self.env.event()
        return self._arrivals[key]

    def send(self, src: str, dst: str, key: tuple, size_bytes: float, pairs: tuple = ()) -> None:
        """Sends from ``src`` to ``dst``; with rank symmetry, for each (source, peer) of
        ``pairs`` (``src``'s class), as flows standing for them all."""
        copies = max(1, len(pairs))
        # For the invariants, which count by classes of resources under rank symmetry:
        # every pair of ``src``'s class crosses as many resources of each class with each
        # share (the classes' link edges say so), so ``src``'s route, its bytes times the
        # pairs, stands for theirs, which are not derived.
        self.sent.extend((path, share * size_bytes * copies) for share, path, _ in self._route(src, dst))
        flows = self.net.alike([(share * size_bytes, path, latency) for share, path, latency in self._route(src, dst)])
        tag = "/".join(map(str, key))
        done = self.env.all_of([self.net.transfer(size, path, latency, tag=tag, copies=n * copies, even=False)
                                for size, path, latency, n in flows])
        arrival, start = self.arrival(key), self.env.now

        def arrived(_event):
            self.spans.append((start, self.env.now))
            arrival.succeed()

        done.callbacks.append(arrived)

    def _route(self, src: str, dst: str) -> tuple:
        return pipeline_route(self.topology, self.cache, src, dst)


class PipelineStage(DeviceCompute):
    """One device of one pipeline stage: what the stage adds to a device's passes, the
    sends and waits between stages."""

    def __init__(self, *args, stage: int, pipe: "PipelinePlan", links: PipeLinks, peers: tuple,
                 pairs: tuple = ((), ()), **kwargs):
        # peers: (the device of the previous stage, of the next stage; interleaved, the
        # last stage's next is the first's), None at the ends; pairs: with rank symmetry,
        # (device, peer) of each device of the class, each way.
        self.stage, self.pipe, self.links, self.peers, self.pairs = stage, pipe, links, peers, pairs
        super().__init__(*args, **kwargs)
        self.name = self.inputs.topology.devices[self.device]

    def _virtual(self, step: Step) -> int:
        return step.chunk * self.pipe.stages + self.stage

    def _key(self, kind: str, device: str, step: Step, virtual: int) -> tuple:
        """A transfer's name: what, to whom, of which micro-batch (and virtual stage)."""
        return (kind, device, step.micro) + ((virtual,) if self.pipe.chunks > 1 else ())

    def _receive(self, step: Step):
        k, last = self._virtual(step), len(self.pipe.layers) - 1
        if step.kind == "F" and k > 0:
            yield self.links.arrival(self._key("act", self.name, step, k))
        elif step.kind == "B" and k < last:
            yield self.links.arrival(self._key("grad", self.name, step, k))

    def _send(self, step: Step) -> None:
        k, last = self._virtual(step), len(self.pipe.layers) - 1
        previous, following = self.peers
        if step.kind == "F" and k < last:
            self.links.send(self.name, following, self._key("act", following, step, k + 1),
                            self.pipe.boundary_bytes[k], self.pairs[1])
        elif step.kind == "B" and k > 0:
            self.links.send(self.name, previous, self._key("grad", previous, step, k - 1),
                            self.pipe.boundary_bytes[k - 1], self.pairs[0])


@dataclass(frozen=True)
class PipelinePlan:
    """What every stage needs of the pipeline, per micro-batch (by virtual stage:
    stage s's chunk c is virtual stage c x stages + s; one chunk each but interleaved)."""

    stages: int
    chunks: int
    layers: tuple[range, ...]  # virtual stage -> its layers
    passes: tuple[PassPlan, ...]  # virtual stage -> its forward and backward pass
    boundary_bytes: tuple[float, ...]  # virtual stage k -> bytes sent from k to k + 1 (and their gradient back)
    stage_weight_bytes: tuple[float, ...]  # stage -> its weights on one device (after tensor parallelism)
    step_s: tuple[float, ...]  # stage -> its optimizer step
    stage_fp8_params: tuple[float, ...]  # stage -> its weights in FP8 layers (mcdla.hw.fp8.copied_params)

    @property
    def held_bytes(self) -> tuple[float, ...]:
        """Virtual stage -> the activations one micro-batch holds there until its backward."""
        return tuple(p.stash_bytes for p in self.passes)

    def work(self, stage: int, schedule: str, micro_batches: int) -> DeviceWork:
        """What a device of ``stage`` runs."""
        order = steps(schedule, stage, self.stages, micro_batches, self.chunks)
        return DeviceWork(tuple(order), tuple(self.passes[c * self.stages + stage] for c in range(self.chunks)),
                          micro_batches, self.step_s[stage], self.stage_weight_bytes[stage], True)


def pipeline_plan(plan, inputs, dp: int, virtualize: bool = False) -> PipelinePlan:
    """Splits the layers into (virtual) stages and sizes what moves between them."""
    workload, execution, device = inputs.workload, inputs.execution, inputs.topology.device
    layers, p = workload.layers, execution.pipeline_parallel
    v = execution.training.virtual_stages
    blocks = [block_of(layer.name) for layer in layers]
    cuts = [i for i in range(1, len(layers)) if blocks[i] != blocks[i - 1]]  # where a block instance starts
    costs = [f + b for f, b in zip(plan.fwd_s, plan.bwd_s)]
    starts = [0, *cuts]  # each run of one block instance (or of layers outside any): its layers
    runs = [range(a, b) for a, b in zip(starts, [*cuts, len(layers)]) if blocks[a]]
    stages = even_stages(costs, p * v, runs) or pipeline_stages(costs, p * v, cuts)
    stage_of = {i: s for s, members in enumerate(stages) for i in members}
    boundary = [0.0] * (p * v)
    crossing: set[tuple[int, int]] = set()  # (tensor, boundary) pairs already counted
    for i, layer in enumerate(layers):
        for q in layer.inputs:
            for s in range(stage_of[q], stage_of[i]):
                boundary[s] += plan.tensor_bytes[q] if (q, s) not in crossing else 0.0
                crossing.add((q, s))
    # Each virtual stage keeps its own outputs and what it received (as autograd does).
    passes = tuple(pass_plan(plan, layers, members, virtualize, boundary[s - 1] if s else 0.0)
                   for s, members in enumerate(stages))
    prec = workload.precision_bytes
    weights = [0.0] * p
    groups: list[dict[str, float]] = [{} for _ in range(p)]  # stage -> weight group -> its parameters
    for group, size in plan.group_bytes.items():
        stage = stage_of[plan.group_first[group]] % p
        weights[stage] += size
        groups[stage][group] = size / prec
    params = tuple(w / prec for w in weights)
    updated = [updated_params(n, execution.zero, dp) for n in params]
    fp8 = tuple(copied_params(workload, g) for g in groups)
    return PipelinePlan(p, v, stages, passes, tuple(boundary), tuple(weights),
                        tuple(optimizer_step_time(device, workload, n, h, execution.training.optimizer_passes, f)
                              for n, h, f in zip(updated, params, fp8)), fp8)
