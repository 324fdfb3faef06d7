"""Expert-parallel serving: attention data-parallel over tensor groups, the routed experts
split over the instance (SGLang's and vLLM's "DP attention + EP"; DeepSeek-V3's
deployment, DeepSeek-V3 technical report, arXiv:2412.19437, section 3.4).

An :class:`ExpertInstance` of ``expert_parallel`` = e devices is e / t attention groups
of ``tensor_parallel`` = t devices. Each group is an :class:`AttentionGroup`: the serving
engine's scheduler (mcdla.sim.serving) with its own batch and its own cache blocks; the
attention, dense and shared layers are replicated over the groups, tensor-split within
one. Each MoE layer's routed experts are split over the e devices, E/e whole experts on
each. The groups step together, as the MoE layers' dispatch and combine all-to-alls join
them at every layer (an idle group joins with an empty batch, as SGLang's idle DP ranks
do): an iteration

1. schedules every group's batch and moves its tier bytes (each group's devices);
2. computes for the slowest group's time without the experts (its batch's layers), plus
   the experts' time at the tokens of every group together (uniform routing: a device
   computes 1/e of the slots and reads the share of its experts they reach,
   :meth:`~mcdla.hw.serving.ServingModel.experts_s`);
3. runs each group's tensor all-reduces on its own rings, the groups at once;
4. runs the all-to-alls over the instance's devices on the flow network with the design's
   collective algorithm (the training side's: one collective carrying the bytes of all
   of them, then the fixed cost of each other one, as the all-reduces): each device sends
   the slots of its share of its group's tokens (the group's tokens over its t ranks, as
   DeepSeek's attention "TP with SP" holds them), the largest share setting the size.

Requests go to the groups in turn (SGLang's default round-robin load balancing).
"""

from __future__ import annotations

from mcdla.errors import InputError
from mcdla.sim.expert import routed_experts
from mcdla.sim.serving_engine import _TINY_BYTES, ComposedInstance, Engine, Sleeper, batch_tokens

__all__ = ["AttentionGroup", "ExpertInstance"]


class AttentionGroup(Engine):
    """One attention group of an expert-parallel instance: the engine's scheduler and
    cache; the instance runs its iterations."""

    def __init__(self, instance: ExpertInstance, devices: tuple[str, ...], rings):
        super().__init__(instance.run, instance.index, devices, rings, instance.role)
        self.instance = instance

    def wake(self) -> None:
        self.instance.wake()


class ExpertInstance(ComposedInstance, Sleeper):
    """A serving instance of e devices (the module docstring). To the serving run it
    looks like an engine: requests ``arrive``, its blocks are its groups'."""

    def __init__(self, run, index: int, devices: tuple[str, ...], rings, role: str):
        self.run, self.index, self.devices, self.rings, self.role = run, index, devices, rings, role
        spec, key = run.spec, "serving.expert_parallel"
        e, t = spec.expert_parallel, spec.tensor_parallel
        experts = routed_experts(run.model.workload)
        if not experts:
            raise InputError(f"{run.model.workload.name} has no routed experts to split over {e} devices; use "
                             "expert_parallel=1", key=key)
        if experts % e:
            raise InputError(f"expert_parallel={e} does not divide the {experts} routed experts of "
                             f"{run.model.workload.name}", key=key)
        self.groups = [AttentionGroup(self, devices[g * t:(g + 1) * t],
                                      rings if g == 0 else run.group_rings(devices[g * t:(g + 1) * t],
                                                                           f"serve{index}g{g}", index))
                       for g in range(e // t)]
        self.ep_rings = run.group_rings(devices, f"serve{index}ep", index, key)
        self.exchange_fixed_s = run.algorithm.time_s("all_to_all", _TINY_BYTES, self.ep_rings,
                                                     run.net.capacities_Bps)
        self.idle = run.env.event()
        self._arrived = 0

    @property
    def schedulers(self) -> list:
        return self.groups

    def arrive(self, req) -> None:
        self.groups[self._arrived % len(self.groups)].arrive(req)
        self._arrived += 1

    def process(self):
        run, env = self.run, self.run.env
        while True:
            plans = [group.plan() for group in self.groups]
            if not any(self.has_work(*plan) for plan in plans):
                yield self.sleep()
                continue
            start = env.now
            moving = [env.process(g._move(moves)) for g, (moves, _, _) in zip(self.groups, plans)
                      if any(moves.values())]  # a group with nothing to move starts no process
            if moving:
                yield env.all_of(moving)
            batches = [g.batch(decodes, prefills) if decodes or prefills else None
                       for g, (_, decodes, prefills) in zip(self.groups, plans)]
            tokens = [batch_tokens(decodes, prefills) for _, decodes, prefills in plans]
            costs = [(g, run.model.step(*b)) for g, b in zip(self.groups, batches) if b]
            yield env.timeout(max(cost.compute_s for _, cost in costs) + run.model.experts_s(sum(tokens)))
            reductions = [env.process(run.all_reduce(self.index, g.rings, cost)) for g, cost in costs
                          if cost.allreduces]
            if reductions:
                yield env.all_of(reductions)
            yield from self._exchange(max(tokens) / run.spec.tensor_parallel)
            for g, (_, decodes, prefills) in zip(self.groups, plans):
                if decodes or prefills:
                    g.finish(start, decodes, prefills)

    def _exchange(self, tokens: float):
        """The iteration's all-to-alls over the instance: ``tokens`` a device's slots' share."""
        run = self.run
        count, elems = run.model.exchange_elems
        size = tokens * elems * run.model.act  # the tokens travel as activations (BF16 with FP8 weights)
        if size > 0:
            yield from run.collective(self.index, "all_to_all", self.ep_rings, size, count, self.exchange_fixed_s,
                                      tag=f"ep{self.index}")
