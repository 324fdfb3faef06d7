"""Pipeline parallelism: stages of consecutive layers, micro-batches, 1F1B or GPipe.

With ``execution.pipeline_parallel`` = p, the devices form p stages of dp x t devices
each (Megatron's order: tensor groups innermost, then data-parallel replicas, then
stages); the layers are split into p contiguous stages of near-equal compute
(:func:`mcdla.hw.parallelism.pipeline_stages`), and each replica's share of the
global batch runs as ``training.micro_batches`` micro-batches.

A :class:`PipelineStage` is one device's process. Its schedule is a list of forward
and backward passes of micro-batches (:func:`schedule`): 1F1B (PipeDream-Flush,
Narayanan et al. 2021: p - s - 1 warm-up forwards on stage s, then one forward and
one backward in turn, then the remaining backwards) or GPipe (every forward, then
every backward). A forward on stage s > 0 waits for its micro-batch's activations
from stage s - 1; a backward on stage s < p - 1 waits for their gradient from stage
s + 1; both are point-to-point flows on the network (:class:`PipeLinks`), contending
with the collectives. A micro-batch's stage activations are held from its forward to
its backward (so 1F1B holds at most p - s micro-batches on stage s, GPipe all m).
Gradients accumulate over the micro-batches; each weight group is all-reduced over
the data-parallel group during the last micro-batch's backward, as the last
gradients complete (DDP's ``no_sync`` for the others), then the optimizer steps.
Feature maps stay on the device (no offload, no activation checkpointing); ZeRO stage 1
composes, 2 and 3 do not (DeepSpeed refuses them with pipelines too).
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from mcdla.hw.compute import optimizer_step_time
from mcdla.hw.memory import updated_params
from mcdla.hw.network import p2p_paths
from mcdla.hw.parallelism import pipeline_stages
from mcdla.sim.device import DeviceCompute
from mcdla.sim.offload import block_of

__all__ = ["schedule", "PipeLinks", "PipelineStage", "PipelinePlan", "pipeline_plan"]


def schedule(kind: str, stage: int, stages: int, micro_batches: int) -> list[tuple[str, int]]:
    """The passes stage ``stage`` runs, in order: ("F" or "B", micro-batch)."""
    m = micro_batches
    if kind == "gpipe":
        return [("F", j) for j in range(m)] + [("B", j) for j in range(m)]
    warmup = min(stages - stage - 1, m)
    passes = [("F", j) for j in range(warmup)]
    for j in range(m - warmup):
        passes += [("F", warmup + j), ("B", j)]
    return passes + [("B", j) for j in range(m - warmup, m)]


class PipeLinks:
    """Point-to-point transfers between pipeline stages, as flows on the network.

    A transfer is split over every topology ring through both devices, each share on
    that ring's shortest way between them (:func:`mcdla.hw.network.p2p_paths`: straight
    through a switch they share, NVSwitch or a rail, else along the ring)."""

    def __init__(self, env, net, topology):
        self.env, self.net, self.topology = env, net, topology
        self._arrivals: dict[tuple, simpy.Event] = {}
        self._routes: dict[tuple[str, str], tuple] = {}
        self.sent: list[tuple[tuple[str, ...], float]] = []  # (path, bytes): for the invariants
        self.spans: list[tuple[float, float]] = []  # (start, end) of each send: the pp axis's time

    def arrival(self, key: tuple) -> simpy.Event:
        if key not in self._arrivals:
            self._arrivals[key] = self.env.event()
        return self._arrivals[key]

    def send(self, src: str, dst: str, key: tuple, size_bytes: float, pairs: tuple = ()) -> None:
        """Sends from ``src`` to ``dst``; with rank symmetry, for each (source, peer) of
        ``pairs`` (``src``'s class), as flows standing for them all."""
        for a, b in pairs or ((src, dst),):
            self.sent.extend((path, share * size_bytes) for share, path, _ in self._route(a, b))
        flows = self.net.alike([(share * size_bytes, path, latency) for share, path, latency in self._route(src, dst)])
        copies = max(1, len(pairs))
        tag = "/".join(map(str, key))
        done = self.env.all_of([self.net.transfer(size, path, latency, tag=tag, copies=n * copies, even=False)
                                for size, path, latency, n in flows])
        arrival, start = self.arrival(key), self.env.now

        def arrived(_event):
            self.spans.append((start, self.env.now))
            arrival.succeed()

        done.callbacks.append(arrived)

    def _route(self, src: str, dst: str) -> tuple:
        route = self._routes.get((src, dst))
        if route is None:
            topology = self.topology
            route = self._routes[(src, dst)] = p2p_paths(topology.rings, src, dst, topology.reverse_of,
                                                          topology.channels)
        return route


class PipelineStage(DeviceCompute):
    """One device of one pipeline stage: its passes over the micro-batches."""

    def __init__(self, *args, stage: int, pipe: "PipelinePlan", links: PipeLinks, peers: tuple,
                 pairs: tuple = ((), ()), **kwargs):
        # peers: (the device of the previous stage, of the next stage), None at the ends;
        # pairs: with rank symmetry, (device, peer) of each device of the class, each way.
        self.stage, self.pipe, self.links, self.peers, self.pairs = stage, pipe, links, peers, pairs
        super().__init__(*args, **kwargs)

    def _run(self):
        plan, memory, env = self.plan, self.memory, self.env
        execution = self.inputs.execution
        layers = self.inputs.workload.layers
        pipe = self.pipe
        own = pipe.layers[self.stage]
        previous, following = self.peers
        name = self.inputs.topology.devices[self.device]
        memory.hold(self.model_state_bytes)
        # A weight group is the stage's that holds its first layer (a recurrent layer's
        # timesteps may span stages; its gradient is reduced once, by that stage).
        groups_left: dict[str, int] = {}
        for i in own:
            group = layers[i].weight_group
            if group is not None and plan.group_first[group] in own:
                groups_left[group] = groups_left.get(group, 0) + 1
        last = execution.training.micro_batches - 1
        for kind, j in schedule(execution.training.schedule, self.stage, pipe.stages,
                                execution.training.micro_batches):
            if kind == "F":
                if previous is not None:
                    yield self.links.arrival(("act", name, j))
                yield from memory.reserve(pipe.held_bytes[self.stage], f"micro-batch {j}'s activations")
                for i in own:
                    if i == 0:
                        continue
                    yield from self._tp_before_forward(i, (j,))
                    yield from self._compute(plan.fwd_s[i], f"fwd {layers[i].name} mb{j}", "fwd")
                    yield from self._tp_after_forward(i, (j,))
                if following is not None:
                    self.links.send(name, following, ("act", following, j), pipe.boundary_bytes[self.stage],
                                    self.pairs[1])
                continue
            if following is not None:
                yield self.links.arrival(("grad", name, j))
            for i in reversed(own):
                if i == 0:
                    continue
                yield from self._tp_before_backward(i, (j,))
                yield from self._compute(plan.bwd_s[i], f"bwd {layers[i].name} mb{j}", "bwd")
                yield from self._tp_after_backward(i, (j,))
                group = layers[i].weight_group
                if j == last and group in groups_left:
                    groups_left[group] -= 1
                    if groups_left[group] == 0:  # the accumulated gradient is complete
                        self._gradient_ready(group, plan.group_bytes[group])
            memory.free(pipe.held_bytes[self.stage])
            if previous is not None:
                self.links.send(name, previous, ("grad", previous, j), pipe.boundary_bytes[self.stage - 1],
                                self.pairs[0])
        self._flush_bucket()
        if pipe.step_s[self.stage] > 0 or execution.zero == 1:
            yield env.all_of(self._reductions)
            yield from self._compute(pipe.step_s[self.stage], "optimizer step", "step")
        if execution.zero == 1 and self.stream.devices > 1:
            yield self.stream.join(("W", "step"), "all_gather", pipe.stage_weight_bytes[self.stage], device=self.device)


@dataclass(frozen=True)
class PipelinePlan:
    """What every stage needs of the pipeline, per micro-batch."""

    stages: int
    layers: tuple[range, ...]  # stage -> its layers
    held_bytes: tuple[float, ...]  # stage -> activations one micro-batch holds there until its backward
    boundary_bytes: tuple[float, ...]  # stage s -> bytes sent from s to s + 1 (and their gradient back)
    stage_weight_bytes: tuple[float, ...]  # stage -> its weights on one device (after tensor parallelism)
    step_s: tuple[float, ...]  # stage -> its optimizer step


def pipeline_plan(plan, inputs, dp: int) -> PipelinePlan:
    """Splits the layers into stages and sizes what moves between them."""
    workload, execution, device = inputs.workload, inputs.execution, inputs.topology.device
    layers, p = workload.layers, execution.pipeline_parallel
    blocks = [block_of(layer.name) for layer in layers]
    cuts = [i for i in range(1, len(layers)) if blocks[i] != blocks[i - 1]]  # where a block instance starts
    stages = pipeline_stages([f + b for f, b in zip(plan.fwd_s, plan.bwd_s)], p, cuts)
    stage_of = {i: s for s, members in enumerate(stages) for i in members}
    held, boundary = [0.0] * p, [0.0] * p
    crossing: set[tuple[int, int]] = set()  # (tensor, boundary) pairs already counted
    for i, layer in enumerate(layers):
        for q in layer.inputs:
            for s in range(stage_of[q], stage_of[i]):
                boundary[s] += plan.tensor_bytes[q] if (q, s) not in crossing else 0.0
                crossing.add((q, s))
    for s, members in enumerate(stages):
        # Its own outputs, and what it received (kept for backward, as autograd does).
        held[s] = sum(plan.tensor_bytes[i] for i in members) + (boundary[s - 1] if s else 0.0)
    prec = workload.precision_bytes
    weights = [0.0] * p
    for group, size in plan.group_bytes.items():
        weights[stage_of[plan.group_first[group]]] += size
    params = tuple(w / prec for w in weights)
    updated = [updated_params(n, execution.zero, dp) for n in params]
    return PipelinePlan(p, stages, tuple(held), tuple(boundary), tuple(weights),
                        tuple(optimizer_step_time(device, workload, n) for n in updated))
