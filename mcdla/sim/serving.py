"""LLM serving: continuous batching over a paged KV cache, a driver beside training.

The topology's devices form serving instances of ``serving.tensor_parallel`` x
``serving.pipeline_parallel`` devices each (consecutive devices: a tensor group per
pipeline stage, the stages in order); requests are dealt to the instances in turn as
they arrive. Each :class:`Engine` runs iterations as vLLM's
scheduler and Sarathi-Serve's chunked prefill do:

1. the running requests, in admission order: a decode token each, or the next prefill
   chunk of one still prefilling; each first gets the cache blocks its new tokens
   need, and when none is free the most recently admitted request is preempted
   (``recompute``: its blocks freed, prefilled again later; ``swap``: its blocks copied
   to the design's backing store, copied back when it resumes);
2. then waiting requests, first come first served, a prefill chunk each, while the
   token budget (``max_batch_tokens``), the sequence limit and free blocks allow.

An iteration then (a) moves the KV bytes that live off the device: each request's
cached tokens in the tier fetched, its new tokens' KV written there, swaps, as flows
over the design's links from every device of the instance at once, sharing them with
the other instances' (:func:`kv_routes`); (b) computes for the time
:class:`~mcdla.hw.serving.ServingModel` gives; (c) runs tensor parallelism's
all-reduces on the flow network: one collective carrying the bytes of all of them
(the step's 2 per layer are alike), and the fixed cost (launch, latency) of each
other one from the algorithm's closed form at a tiny size; (d) with pipeline stages,
sends the batch's activations from each stage to the next (:meth:`Engine._send`); with
several batches in flight (``pipeline_batches``), an instance is virtual engines and a
process per stage instead (mcdla.sim.serving_pipeline). Events grow with
iterations and transfers, never with tokens x requests. A request's first token
comes at the end of the iteration that completes its prefill; each later one at the
end of an iteration that decodes it.
"""

from __future__ import annotations

import bisect

from mcdla.config.serving import Request, ServingSpec
from mcdla.errors import InfeasibleError, InputError, InvariantError
from mcdla.hw.memory import reduction_rate_Bps
from mcdla.hw.network import p2p_paths, sub_ring
from mcdla.hw.serving import ServingModel
from mcdla.sim import fit
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.serving_engine import (_TINY_BYTES, Engine, ServingRecord, _Req, kv_routes, serving_stages, tier_capacity,
                                      tier_of)
from mcdla.sim.serving_expert import ExpertInstance
from mcdla.sim.serving_pipeline import PipelinedInstance

__all__ = ["ServingRun", "ServingRecord", "kv_routes", "tier_of", "serving_stages"]


class ServingRun:
    """Builds the engines of a serving run over ``topology``; :meth:`run` simulates it."""

    def __init__(self, topology, model: ServingModel, spec: ServingSpec, requests: list[Request]):
        self.topology, self.model, self.spec = topology, model, spec
        tp, pp = spec.tensor_parallel, spec.pipeline_parallel
        if len(model.stages) != pp or model.ep != spec.expert_parallel:
            raise ValueError(f"the serving model has {len(model.stages)} stages and expert degree {model.ep}, "
                             f"the spec {pp} and {spec.expert_parallel}")
        if len(topology.devices) % spec.instance_devices:
            what, key = ((f"tensor_parallel x pipeline_parallel = {tp * pp}", "serving.pipeline_parallel") if pp > 1
                         else (f"expert_parallel={spec.expert_parallel}", "serving.expert_parallel")
                         if spec.expert_parallel > 1 else (f"tensor_parallel={tp}", "serving.tensor_parallel"))
            raise InputError(f"{what} does not divide the {len(topology.devices)} devices of {topology.name}", key=key)
        self.env = CountingEnvironment()
        self.net = FlowNetwork(self.env, topology.capacities(), also=topology.nic_ports)
        self.kv_device_bytes = model.kv_device_bytes
        self._ways: dict = {}
        self.tier = tier_of(topology, spec.kv_tier)
        # Where blocks move: the KV tier, or (a swap out of HBM) the design's nearest tier.
        self.move_tier = self.tier or next((t.kind for t in topology.tiers), None)
        if spec.preemption == "swap" and self.move_tier is None:
            raise InputError(f"{topology.name} has no backing store to swap KV blocks to; use preemption=recompute",
                             key="serving.preemption")
        self.requests = requests
        self.hbm_blocks, self.tier_blocks = self._blocks()
        self.algorithm = COLLECTIVES.get(topology.collective, key="collective",
                                         file=topology.source or topology.name)(topology.device.launch_overhead)
        self.reduce_Bps = reduction_rate_Bps(topology.device)
        self.preemptions = 0
        self.record = ServingRecord(requests=[])
        self.engines = self._engines()
        # The engines holding blocks: an instance's own, or its schedulers' (virtual engines, attention groups).
        self.schedulers = [e for instance in self.engines for e in instance.schedulers]
        self.fixed_s = (self.algorithm.time_s("all_reduce", _TINY_BYTES, self.engines[0].rings,
                                              self.net.capacities_Bps, reduce_Bps=self.reduce_Bps)
                        if tp > 1 else 0.0)
        self.entry = [e for e in self.engines if e.role != "decode"]  # where requests arrive
        self.capture_sizes = spec.capture_sizes if spec.cuda_graphs else ()
        if spec.cuda_graphs:
            model.graph_device  # refuses a device without graph costs before the run
        self.decoders = [e for e in self.engines if e.role == "decode"]
        self._handed = 0  # requests handed on so far: the next decode instance is the next in turn
        self.all_done = self.env.event()

    def _blocks(self) -> tuple[int, int]:
        """An instance's cache blocks in HBM and in the tier (refusing a run that cannot hold
        its longest request)."""
        spec, topology, model = self.spec, self.topology, self.model
        block = spec.block_tokens * self.kv_device_bytes
        budget = topology.device_memory_bytes * spec.memory_utilization  # what the engine may fill
        free = budget - model.weight_bytes
        in_hbm = spec.kv_tier in ("hbm", "spill")  # blocks in HBM (spill: the first ones)
        if free <= 0 or (in_hbm and free < block):
            raise InfeasibleError(
                f"device {topology.devices[0]}: the weights need {fit.size(model.weight_bytes)} of its "
                f"{fit.size(budget)} (memory_utilization "
                f"{spec.memory_utilization:g}), no room for the KV cache; raise serving."
                f"{'expert_parallel' if spec.expert_parallel > 1 else 'tensor_parallel'}, "
                "lower workload.precision_bytes or use a device with more memory")
        hbm = int(free // block) if in_hbm else 0
        tier = int(tier_capacity(topology, self.tier) // block) if self.tier else 0
        self.hold_longest(hbm + tier, "an instance has", "raise serving.tensor_parallel, use kv_tier=spill or "
                          "shorter requests")
        return hbm, tier

    def hold_longest(self, blocks: int, holder: str, way_out: str) -> None:
        """Refuses a run whose longest request needs more than ``blocks`` cache blocks
        (``holder``: who has them, in the message; ``way_out``: what to change)."""
        capacity = blocks * self.spec.block_tokens
        longest = max(r.prompt_tokens + r.output_tokens for r in self.requests)
        if longest > capacity:
            raise InfeasibleError(
                f"a request of {longest:,} tokens needs {fit.size(longest * self.kv_device_bytes)} of KV cache per "
                f"device, over the {fit.size(capacity * self.kv_device_bytes)} {holder}; {way_out}")

    def _engines(self) -> list[Engine]:
        """One engine per instance of consecutive devices: every device's (mixed), or the
        first ``prefill_devices``' prefill instances and the next ``decode_devices``' decode ones."""
        spec, topology = self.spec, self.topology
        names, tp = topology.devices, spec.tensor_parallel
        size = spec.instance_devices  # an instance: its stages' tensor groups, in turn (or its expert devices)
        if spec.prefill_devices:
            if spec.prefill_devices + spec.decode_devices > len(names):
                raise InputError(f"prefill_devices + decode_devices = {spec.prefill_devices + spec.decode_devices} "
                                 f"is more than the {len(names)} devices of {topology.name}",
                                 key="serving.decode_devices")
            roles = ["prefill"] * (spec.prefill_devices // size) + ["decode"] * (spec.decode_devices // size)
        else:
            roles = ["mixed"] * (len(names) // size)
        engines = []
        for i, role in enumerate(roles):
            # One batch at a time: the all-reduces run on the first stage's group (the
            # stages' groups are alike and run in turn, docs/serving.md).
            devices = tuple(names[i * size:(i + 1) * size])
            rings = self.group_rings(devices[:tp], f"serve{i}", i)
            if spec.expert_parallel > 1:  # attention groups joined by the experts: mcdla.sim.serving_expert
                engines.append(ExpertInstance(self, i, devices, rings, role))
            elif spec.pipeline_batches_in_flight > 1:  # several batches in flight: mcdla.sim.serving_pipeline
                engines.append(PipelinedInstance(self, i, devices, rings, role))
            else:
                engines.append(Engine(self, i, devices, rings, role))
        return engines

    def graph_batch(self, decodes: int) -> int:
        """The capture size a decode-only batch of ``decodes`` requests is padded to and
        replayed at (vLLM's CUDA graphs); 0: it runs eagerly (graphs off, or a batch
        above the largest size)."""
        sizes = self.capture_sizes
        at = bisect.bisect_left(sizes, decodes)
        return sizes[at] if at < len(sizes) else 0

    def group_rings(self, group, name: str, instance: int, key: str = "serving.tensor_parallel") -> tuple:
        """The rings of a group's collectives (() for one device)."""
        topology, members = self.topology, set(group)
        if len(members) == 1:
            return ()
        rings = tuple(sub_ring(r, members, f"{r.name}/{name}", topology.reverse_of(r), topology.channels)
                      for r in topology.rings if members <= r.position.keys())
        if not rings:
            raise InputError(f"no ring of {topology.name} passes through the devices of instance {instance}",
                             key=key)
        return rings

    def all_reduce(self, index: int, rings, cost):
        """A step's all-reduces on ``rings`` (the module docstring's (c))."""
        yield from self.collective(index, "all_reduce", rings, cost.allreduce_bytes, cost.allreduces, self.fixed_s,
                                   tag=f"tp{index}", reduce_Bps=self.reduce_Bps)

    def collective(self, index: int, kind: str, rings, size: float, count: int, fixed_s: float, **options):
        """``count`` alike collectives of instance ``index`` on ``rings``: one carrying the
        ``size`` bytes of all of them on the flow network, then ``fixed_s`` (the fixed
        cost, launch and latency) for each other one; recorded as one transfer.
        ``options``: the algorithm's (its flows' tag, the reduction rate)."""
        start = self.env.now
        yield self.algorithm.start(self.env, self.net, rings, kind, size, **options)
        yield self.env.timeout((count - 1) * fixed_s)
        self.note_transfer(index, kind, start, size)

    def send(self, index: int, hops, kind: str, key: str):
        """Point-to-point sends of instance ``index`` over the design's links, each hop
        ``(sources, targets, size)`` after the one before: ``size`` bytes from each device
        of ``sources`` to the same rank of ``targets``; recorded as one transfer."""
        start = self.env.now
        for sources, targets, size in hops:
            flows = []
            for src, dst in zip(sources, targets):
                flows += [self.net.transfer(share * size, path, latency, tag=kind)
                          for share, path, latency in self.ways(src, dst, key)]
            yield self.env.all_of(flows)
        self.note_transfer(index, kind, start, sum(size for _, _, size in hops))

    def note_transfer(self, index: int, kind: str, start: float, size: float) -> None:
        """Records a transfer of instance ``index`` from ``start`` until now, ``size`` bytes a device."""
        self.record.transfers.append((index, kind, start, self.env.now, size))

    def ways(self, src: str, dst: str, key: str) -> tuple:
        """The flows of a send from ``src`` to ``dst`` (:func:`p2p_paths`), found once."""
        found = self._ways.get((src, dst))
        if found is None:
            topology = self.topology
            try:
                found = p2p_paths(topology.rings, src, dst, topology.reverse_of, topology.channels)
            except InputError:
                raise InputError(f"no ring of {topology.name} joins {src} and {dst}", key=key) from None
            self._ways[(src, dst)] = found
        return found

    def note_blocks(self) -> None:
        """Keeps the peak of the blocks held in each tier, every instance summed."""
        for tier in ("hbm", "tier"):
            held = sum(e.pool[tier] - e.unheld(tier) for e in self.schedulers)
            peak = self.record.peak_blocks
            peak[tier] = max(peak.get(tier, 0), held)

    def finish(self, req: _Req) -> None:
        self.record.requests.append(req)
        if len(self.record.requests) == len(self.requests):
            self.all_done.succeed()

    def hand_on(self, source: Engine, req: _Req):
        """Disaggregated serving: ``req``'s cache copied from each device of its prefill
        instance to the same rank of the next decode instance in turn (point-to-point
        flows over the design's links, as a pipeline's sends), then freed at the source."""
        target = self.decoders[self._handed % len(self.decoders)]
        self._handed += 1
        yield from self.send(source.index, [(source.devices, target.devices, req.computed * self.kv_device_bytes)],
                             "kv hand-on", "serving.decode_devices")
        source.release(req)
        source.wake()  # its blocks are free for the next prefill
        target.arrive(req)

    def _check(self) -> None:
        """Conservation at the end: every block back in its pool, every flow delivered."""
        for engine in self.schedulers:
            if engine.cache and engine.cache.referenced():
                raise InvariantError(f"serving instance {engine.index} ends with {engine.cache.referenced()} "
                                     "cached prefix blocks still referenced")
            if any(engine.unheld(tier) != blocks for tier, blocks in engine.pool.items()) or engine.running:
                raise InvariantError(f"serving instance {engine.index} ends holding cache blocks: {engine.free}")
        stats = self.net.stats()
        if abs(stats.bytes_sent - stats.bytes_delivered) > 1e-6 * max(1.0, stats.bytes_sent):
            raise InvariantError(f"the flow network delivered {stats.bytes_delivered} of {stats.bytes_sent} bytes")

    def _arrivals(self):
        for n, request in enumerate(self.requests):
            if request.arrival_s > self.env.now:
                yield self.env.timeout(request.arrival_s - self.env.now)
            self.entry[n % len(self.entry)].arrive(_Req(n, request.arrival_s, request.prompt_tokens,
                                                        request.output_tokens, target=request.prompt_tokens,
                                                        prefix_id=request.prefix_id,
                                                        prefix_tokens=request.prefix_tokens))

    def run(self) -> ServingRecord:
        """Runs until every request has its last token (idle engines wait for work)."""
        self.env.process(self._arrivals())
        for engine in self.engines:
            self.env.process(engine.process())
        self.env.run(self.all_done)
        self._check()
        self.record.requests.sort(key=lambda r: r.id)
        self.record.preemptions = self.preemptions
        caches = [e.cache for e in self.schedulers if e.cache]
        if caches:
            self.record.prefix = {name: sum(getattr(c, name) for c in caches)
                                  for name in ("hit_tokens", "queried_tokens", "evictions")}
        self.record.events = self.env.events_processed
        self.record.stats = self.net.stats()
        return self.record
