"""Several batches in flight through a pipeline-parallel serving instance.

vLLM (v0) runs a pipeline-parallel engine as ``pipeline_parallel`` virtual engines:
each has its own scheduler, its own share of the KV cache blocks (``num_gpu_blocks //=
pipeline_parallel_size`` in ``vllm/core/scheduler.py``) and one batch in flight; a new
request goes to the virtual engine with the fewest unfinished requests
(``LLMEngine._add_processed_request``). Stage s computes one virtual engine's batch
while stage s + 1 computes the previous one's.

Here a :class:`PipelinedInstance` holds ``serving.pipeline_batches`` (default: one a
stage) :class:`VirtualEngine` s, the serving engine's scheduler each (mcdla.sim.serving),
and one process per stage. A virtual engine schedules its batch, moves its KV bytes
(a tier's fetches), puts the batch in the first stage's queue and waits for the last
stage to finish it before it schedules again (vLLM's virtual engine waits for its
step's output). A stage takes batches first come first served: it computes its
layers (:meth:`~mcdla.hw.serving.ServingModel.step` of that stage), runs its tensor
group's all-reduces on its own group's rings, then sends the activations to the next
stage's ranks as point-to-point flows, all on the flow network; the stage is busy
until its send ends (vLLM's send to the next stage completes before the worker
returns).
"""

from __future__ import annotations

import simpy

from mcdla.sim.serving_engine import ComposedInstance, Engine, stage_devices

__all__ = ["PipelinedInstance", "VirtualEngine"]


class VirtualEngine(Engine):
    """A scheduler of a pipelined instance: the engine's, its batch computed by the
    instance's stages instead of at once."""

    def __init__(self, instance: PipelinedInstance, pool: dict):
        super().__init__(instance.run, instance.index, instance.devices, instance.rings, instance.role)
        self.instance = instance
        self.pool, self.free = pool, dict(pool)

    @property
    def unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def _compute(self, batch: tuple):
        done = self.run.env.event()
        self.instance.queues[0].put((batch, done))
        yield done


class PipelinedInstance(ComposedInstance):
    """A serving instance of ``pipeline_parallel`` stages with several batches in flight
    (the module docstring). To the serving run it looks like an engine: requests
    ``arrive``, its blocks are its virtual engines'."""

    def __init__(self, run, index: int, devices: tuple[str, ...], rings, role: str):
        self.run, self.index, self.devices, self.rings, self.role = run, index, devices, rings, role
        spec = run.spec
        batches = spec.pipeline_batches_in_flight
        # Each virtual engine has an equal share of the blocks (vLLM divides them, the rest unused).
        pool = {"hbm": run.hbm_blocks // batches, "tier": run.tier_blocks // batches}
        run.hold_longest(pool["hbm"] + pool["tier"], f"one of the {batches} batches in flight has (each holds an "
                         "equal share of the cache)", "lower serving.pipeline_batches or use shorter requests")
        self.engines = [VirtualEngine(self, dict(pool)) for _ in range(batches)]
        self.queues = [simpy.Store(run.env) for _ in range(spec.pipeline_parallel)]
        self.stage_devices = stage_devices(devices, spec.tensor_parallel)  # each stage's tensor group
        self.stage_rings = [rings] + [run.group_rings(g, f"serve{index}s{s}", index)
                                      for s, g in enumerate(self.stage_devices) if s > 0]

    @property
    def schedulers(self) -> list:
        return self.engines

    def arrive(self, req) -> None:
        """To the virtual engine with the fewest unfinished requests (the first of equals)."""
        min(self.engines, key=lambda e: e.unfinished).arrive(req)

    def process(self):
        env = self.run.env
        for engine in self.engines:
            env.process(engine.process())
        for s in range(len(self.stage_devices)):
            env.process(self._stage(s))
        yield self.run.all_done

    def _stage(self, s: int):
        """Stage ``s``: each batch's layers, all-reduces and send to the next stage."""
        run, env = self.run, self.run.env
        last = s == len(self.stage_devices) - 1
        while True:
            batch, done = yield self.queues[s].get()
            cost = run.model.step(*batch, stage=s)
            yield env.timeout(cost.compute_s)
            if cost.allreduces:
                yield from run.all_reduce(self.index, self.stage_rings[s], cost)
            if cost.sends:
                stages = self.stage_devices
                yield from run.send(self.index, [(stages[s], stages[s + 1], cost.sends[0])], "pp send",
                                    "serving.pipeline_parallel")
            if last:
                done.succeed()
            else:
                self.queues[s + 1].put((batch, done))
