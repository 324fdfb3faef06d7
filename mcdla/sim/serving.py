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
import math
from collections import deque
from dataclasses import dataclass, field

from mcdla.config.serving import Request, ServingSpec
from mcdla.errors import InfeasibleError, InputError, InvariantError
from mcdla.hw.memory import reduction_rate_Bps
from mcdla.hw.network import p2p_paths, sub_ring
from mcdla.hw.parallelism import pipeline_stages
from mcdla.hw.serving import ServingModel
from mcdla.sim import fit
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.offload import block_of
from mcdla.sim.prefix_cache import PrefixCache

__all__ = ["ServingRun", "ServingRecord", "kv_routes", "tier_of", "serving_stages"]

# How KV blocks spread over the stores a device reaches (mcdla.config.placement).
KV_PLACEMENT = "bw_aware"
# A message tiny next to any all-reduce's, whose closed-form time is the collective's fixed cost.
_TINY_BYTES = 1.0


def serving_stages(workload, p: int) -> tuple[range, ...]:
    """The layers of each of ``p`` pipeline stages: the transformer blocks split evenly
    by count, whole (vLLM's and TensorRT-LLM's split), the embedding in the first stage,
    the final norm and the vocabulary projection in the last (() when p is 1)."""
    if p == 1:
        return ()
    layers = workload.layers
    blocks = sum(1 for layer in layers if layer.attention is not None)
    if p > blocks:
        raise InputError(f"pipeline_parallel={p} is more than the {blocks} transformer blocks of "
                         f"{workload.name}", key="serving.pipeline_parallel")
    names = [block_of(layer.name) for layer in layers]
    cuts = [i for i in range(1, len(layers)) if names[i] != names[i - 1]]  # where a block instance starts
    # A block counts 1 at its first layer (where a stage may start): the split whose
    # largest stage is least is an even one.
    attended = {names[i] for i, layer in enumerate(layers) if layer.attention is not None}
    starts = set(cuts)
    return pipeline_stages([float(i in starts and names[i] in attended) for i in range(len(layers))], p, cuts)


def tier_of(topology, kv_tier: str) -> str | None:
    """The memory tier (its kind, :attr:`~mcdla.hw.topology.Topology.tiers`) ``kv_tier``
    puts blocks in (None: HBM only); ``spill``: the nearest tier. A tier the design does
    not have is refused, naming the ones it has."""
    if kv_tier == "hbm":
        return None
    kinds = [t.kind for t in topology.tiers]
    if kv_tier == "spill":
        if not kinds:
            raise InputError(f"{topology.name} has no memory tier beyond HBM to spill to; use kv_tier=hbm",
                             key="serving.kv_tier")
        return kinds[0]
    if kv_tier not in kinds:
        raise InputError(f"{topology.name} has no {kv_tier} tier for the KV cache (its tiers: "
                         f"{', '.join(kinds) or 'none'}); use kv_tier=hbm or one of its tiers", key="serving.kv_tier")
    return kv_tier


def kv_routes(topology, tier: str, device: str, direction: str):
    """The stripes that move KV bytes between ``device`` and its stores in ``tier``
    (``prefetch``: to the device, ``offload``: from it): the topology's tier routes,
    the blocks striped over the stores a device reaches by their bandwidth (the
    ``bw_aware`` placement: two GPUs behind one PCIe switch use both its CXL expanders)."""
    return topology.tier_routes(device, tier, KV_PLACEMENT, direction)


def tier_capacity(topology, tier: str) -> float:
    """Bytes of ``tier`` the most constrained device may fill: each device's share of
    every store it reaches (a store split evenly among the devices it serves)."""
    found = topology.tier(tier)
    clients: dict[str, int] = {}
    for d in topology.devices:
        for store in found.serves.get(d, ()):
            clients[store] = clients.get(store, 0) + 1
    return min(sum(topology.memory_capacity(sub.store) * sub.share / clients.get(sub.store, 1)
                   for sub in kv_routes(topology, tier, device, "prefetch")) for device in topology.devices)


@dataclass
class _Req:
    """A request as the engine sees it (see the module docstring's invariant)."""

    id: int
    arrival_s: float
    prompt: int
    output: int
    target: int = 0  # tokens to prefill: the prompt, or everything after a recompute preemption
    computed: int = 0  # tokens whose K and V are cached
    generated: int = 0
    hbm_blocks: int = 0
    tier_blocks: int = 0
    swapped: bool = False
    handed: bool = False  # its cache came from a prefill instance (disaggregated serving)
    running: bool = False  # on the engine's running list (a flag: membership tests stay O(1))
    first_s: float | None = None
    done_s: float | None = None
    preemptions: int = 0
    prefix_id: str | None = None  # the shared prefix its prompt begins with (prefix caching)
    prefix_tokens: int = 0
    prefix_keys: list = field(default_factory=list)  # cached prefix blocks it references (not in hbm_blocks)


@dataclass
class ServingRecord:
    """What a serving run leaves: per request its times, per engine its iterations."""

    requests: list  # _Req, finished
    iterations: list = field(default_factory=list)  # (instance, start, end, tokens, decodes, prefills)
    transfers: list = field(default_factory=list)  # (instance, kind, start, end, bytes per device)
    peak_blocks: dict = field(default_factory=dict)  # tier -> peak blocks held, all instances
    preemptions: int = 0
    prefix: dict | None = None  # prefix caching: hit_tokens, queried_tokens, evictions (all instances)
    graph_iterations: int = 0  # decode iterations replayed as CUDA graphs
    events: int = 0
    stats: object = None  # the flow network's NetworkStats


class Engine:
    """One serving instance: its scheduler, cache blocks and iteration loop. Its
    ``role``: ``mixed`` (prefill and decode), or in disaggregated serving ``prefill``
    (hands each request on after its first token) or ``decode``."""

    def __init__(self, run: "ServingRun", index: int, devices: tuple[str, ...], rings, role: str = "mixed"):
        self.run, self.index, self.devices, self.rings, self.role = run, index, devices, rings, role
        self.spec: ServingSpec = run.spec
        self.waiting: deque = deque()
        self.running: list[_Req] = []
        self.pool = {"hbm": run.hbm_blocks, "tier": run.tier_blocks}  # its blocks (a virtual engine: a share)
        self.free = dict(self.pool)
        # Cached prefix blocks (their count not in free: evictable ones are taken on demand).
        self.cache = PrefixCache(self.spec.block_tokens) if self.spec.prefix_caching else None
        self.idle = run.env.event()

    @property
    def schedulers(self) -> tuple:
        """The engines holding blocks (an instance of several schedulers lists its own)."""
        return (self,)

    def arrive(self, req: _Req) -> None:
        self.waiting.append(req)
        self.wake()

    def wake(self) -> None:
        if not self.idle.triggered:
            self.idle.succeed()

    # -- cache blocks ----------------------------------------------------------------
    def _grow(self, req: _Req, tokens: int, hits: tuple = ()) -> bool:
        """Gives ``req`` the blocks ``tokens`` need (HBM first where the tier allows), the
        cached prefix blocks ``hits`` among them; False, taking none, when too few are
        free (with prefix caching, evictable cached blocks count as free)."""
        need = (math.ceil(tokens / self.spec.block_tokens) - req.hbm_blocks - req.tier_blocks
                - len(req.prefix_keys) - len(hits))
        if need <= 0 and not hits:
            return True
        need = max(need, 0)
        spare = self.cache.spare(hits) if self.cache else 0
        hbm = min(need, self.free["hbm"] + spare)
        if need - hbm > self.free["tier"]:
            return False
        if self.cache:
            self.cache.take(hits)
            req.prefix_keys.extend(hits)
            evicted = max(0, hbm - self.free["hbm"])
            self.cache.evict(evicted)
            self.free["hbm"] += evicted
        self.free["hbm"] -= hbm
        self.free["tier"] -= need - hbm
        req.hbm_blocks += hbm
        req.tier_blocks += need - hbm
        self.run.note_blocks()
        return True

    def release(self, req: _Req) -> None:
        self.free["hbm"] += req.hbm_blocks
        self.free["tier"] += req.tier_blocks
        req.hbm_blocks = req.tier_blocks = 0
        if self.cache:
            self.cache.release(req.prefix_keys)
            req.prefix_keys = []
        self.run.note_blocks()

    def _preempt(self, req: _Req, moves: dict) -> None:
        """Takes ``req`` off the running list (the module docstring); back to the front of
        the queue."""
        self.running.remove(req)
        req.running = False
        req.preemptions += 1
        self.run.preemptions += 1
        if self.spec.preemption == "swap" and req.hbm_blocks:
            moves["offload"] += req.hbm_blocks * self.spec.block_tokens  # its HBM blocks to the store
            self.free["hbm"] += req.hbm_blocks
            req.hbm_blocks, req.swapped = 0, True  # its tier blocks stay where they are
            self.run.note_blocks()
        else:
            self.release(req)
            req.computed, req.target = 0, req.prompt + req.generated
        self.waiting.appendleft(req)

    # -- scheduling -----------------------------------------------------------------
    def _schedule(self, moves: dict):
        """The iteration's batch: decodes (requests), prefills (request, chunk)."""
        spec = self.spec
        budget, decodes, prefills = spec.max_batch_tokens, [], []
        for req in list(self.running):
            if not req.running:  # preempted by one scheduled before it
                continue
            if len(decodes) + len(prefills) >= spec.max_seqs or budget == 0:
                break
            prefilling = req.computed < req.target
            step = min(req.target - req.computed, spec.chunk_tokens, budget) if prefilling else 1
            while not self._grow(req, req.computed + step):
                self._preempt(self.running[-1], moves)
                if not req.running:
                    break
            else:
                (prefills.append((req, step)) if prefilling else decodes.append(req))
                budget -= step
        while self.waiting and len(decodes) + len(prefills) < spec.max_seqs and budget > 0:
            req = self.waiting[0]
            hits = (self.cache.lookup(req.prefix_id, req.prefix_tokens, req.target)
                    if self.cache and req.computed == 0 else ())
            done = req.computed + len(hits) * spec.block_tokens  # a prefix hit's tokens are not prefilled
            prefilling = done < req.target  # not a request whose cache is back or handed on
            step = min(req.target - done, spec.chunk_tokens, budget) if prefilling else 1
            if not self._grow(req, done + step, hits):
                break
            if self.cache and req.computed == 0:
                self.cache.queried_tokens += req.target
                self.cache.hit_tokens += done
                req.computed = done
            if req.swapped:  # its cached tokens come back (the iteration's moves precede its compute)
                moves["prefetch"] += min(req.computed, req.hbm_blocks * spec.block_tokens)
            req.swapped = req.handed = False
            self._admit()
            (prefills.append((req, step)) if prefilling else decodes.append(req))
            budget -= step
        return decodes, prefills

    def _admit(self) -> None:
        req = self.waiting.popleft()
        req.running = True
        self.running.append(req)

    def _tier_tokens(self, req: _Req, upto: int) -> int:
        """Of ``req``'s first ``upto`` tokens, those whose blocks are in the tier."""
        return max(0, upto - (req.hbm_blocks + len(req.prefix_keys)) * self.spec.block_tokens)

    # -- the loop -------------------------------------------------------------------
    def process(self):
        env = self.run.env
        while True:
            moves, decodes, prefills = self.plan()
            if not decodes and not prefills and not any(moves.values()):  # until a request comes (the run
                if self.idle.triggered:                                     # ends when every one is done)
                    self.idle = env.event()
                yield self.idle
                continue
            start = env.now
            yield from self._move(moves)
            yield from self._compute(self.batch(decodes, prefills))
            self.finish(start, decodes, prefills)

    def plan(self):
        """The iteration's moves (tier tokens by direction), decodes and prefills."""
        moves = {"prefetch": 0, "offload": 0}
        decodes, prefills = self._schedule(moves)
        # The KV the batch reads from the tier, and the new KV it writes there.
        for req in decodes:
            moves["prefetch"] += self._tier_tokens(req, req.computed)
            moves["offload"] += self._tier_tokens(req, req.computed + 1) - self._tier_tokens(req, req.computed)
        for req, step in prefills:
            moves["prefetch"] += self._tier_tokens(req, req.computed)
            moves["offload"] += (self._tier_tokens(req, req.computed + step)
                                 - self._tier_tokens(req, req.computed))
        return moves, decodes, prefills

    def batch(self, decodes, prefills) -> tuple:
        """:meth:`ServingModel.step`'s arguments for the batch (a decode-only batch replayed
        as a CUDA graph when graphs are on and one is captured for its size)."""
        sampled = len(decodes) + sum(1 for req, step in prefills if req.computed + step == req.target)
        graph = self.run.graph_batch(len(decodes)) if not prefills else 0
        self.run.record.graph_iterations += graph > 0
        return (len(decodes), sum(r.computed + 1 for r in decodes),
                tuple((step, req.computed) for req, step in prefills), sampled, graph)

    def finish(self, start: float, decodes, prefills) -> None:
        """The iteration that began at ``start`` is done: recorded, its tokens computed."""
        tokens = len(decodes) + sum(step for _, step in prefills)
        self.run.record.iterations.append((self.index, start, self.run.env.now, tokens, len(decodes), len(prefills)))
        self._advance(decodes, prefills)

    def _compute(self, batch: tuple):
        """The batch (:meth:`ServingModel.step`'s arguments) through every layer, then the
        all-reduces and the sends (a virtual engine overrides it: mcdla.sim.serving_pipeline)."""
        cost = self.run.model.step(*batch)
        yield self.run.env.timeout(cost.compute_s)
        if cost.allreduces:
            yield from self._all_reduce(cost)
        if cost.sends:
            yield from self._send(cost)

    def _move(self, moves: dict):
        """The iteration's KV transfers, every device of the instance at once."""
        run, env = self.run, self.run.env
        flows = []
        for direction, tokens in moves.items():
            size = tokens * run.kv_device_bytes
            if size <= 0:
                continue
            for device in self.devices:
                for sub in kv_routes(run.topology, run.move_tier, device, direction):
                    flows.append(run.net.transfer(sub.share * size, sub.path, sub.latency_s, tag=f"kv {direction}"))
        if flows:
            start = env.now
            yield env.all_of(flows)
            run.record.transfers.append((self.index, "kv", start, env.now,
                                         sum(moves.values()) * run.kv_device_bytes))

    def _all_reduce(self, cost):
        yield from self.run.all_reduce(self.index, self.rings, cost)

    def _send(self, cost):
        """Pipeline parallelism: the batch's activations from each stage to the next, one
        boundary after another, rank r of a stage to rank r of the next (each rank holds
        them whole after its all-reduce) as point-to-point flows."""
        run, env, tp = self.run, self.run.env, self.run.spec.tensor_parallel
        start = env.now
        for s, size in enumerate(cost.sends):
            yield env.all_of(run.send(self.devices[s * tp:(s + 1) * tp], self.devices[(s + 1) * tp:(s + 2) * tp],
                                      size, "pp send", "serving.pipeline_parallel"))
        run.record.transfers.append((self.index, "pp send", start, env.now, sum(cost.sends)))

    def _advance(self, decodes, prefills) -> None:
        """The batch's tokens are computed: caches grow, tokens are sampled."""
        now = self.run.env.now
        sampled = list(decodes)
        for req in decodes:
            req.computed += 1
        for req, step in prefills:
            req.computed += step
            if self.cache:  # its full prefix blocks are cached now
                req.hbm_blocks -= self.cache.register(req.prefix_id, req.prefix_tokens, req.computed,
                                                      req.prefix_keys)
            if req.computed == req.target:
                sampled.append(req)
        for req in sampled:
            req.generated += 1
            if req.first_s is None:
                req.first_s = now
            if req.generated == req.output:
                req.done_s, req.running = now, False
                self.release(req)
                self.run.finish(req)
            elif self.role == "prefill":  # its cache goes to a decode instance
                req.running = False
                self.run.env.process(self.run.hand_on(self, req))
        if any(not req.running for req in sampled):
            self.running = [req for req in self.running if req.running]



class ComposedInstance:
    """An instance of several schedulers (virtual engines, attention groups): to the
    serving run it looks like an engine, its blocks and requests its schedulers'."""

    schedulers: list

    @property
    def pool(self) -> dict:
        return {tier: sum(e.pool[tier] for e in self.schedulers) for tier in ("hbm", "tier")}

    @property
    def free(self) -> dict:
        return {tier: sum(e.free[tier] for e in self.schedulers) for tier in ("hbm", "tier")}

    @property
    def running(self) -> list:
        return [req for e in self.schedulers for req in e.running]


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
        self.hbm_blocks, self.tier_blocks = self._blocks(requests)
        self.algorithm = COLLECTIVES.get(topology.collective, key="collective",
                                         file=topology.source or topology.name)(topology.device.launch_overhead)
        self.reduce_Bps = reduction_rate_Bps(topology.device)
        self.requests = requests
        self.preemptions = 0
        self.record = ServingRecord(requests=[])
        self.engines = self._engines()
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

    def _blocks(self, requests) -> tuple[int, int]:
        """An instance's cache blocks in HBM and in the tier (refusing a run that cannot hold
        its longest request)."""
        spec, topology, model = self.spec, self.topology, self.model
        block = spec.block_tokens * self.kv_device_bytes
        free = topology.device_memory_bytes * spec.memory_utilization - model.weight_bytes
        if free <= 0 or (spec.kv_tier in ("hbm", "spill") and free < block):
            raise InfeasibleError(
                f"device {topology.devices[0]}: the weights need {fit.size(model.weight_bytes)} of its "
                f"{fit.size(topology.device_memory_bytes * spec.memory_utilization)} (memory_utilization "
                f"{spec.memory_utilization:g}), no room for the KV cache; raise serving.tensor_parallel, "
                "lower workload.precision_bytes or use a device with more memory")
        hbm = int(free // block) if spec.kv_tier in ("hbm", "spill") else 0
        tier = int(tier_capacity(topology, self.tier) // block) if self.tier else 0
        capacity = (hbm + tier) * spec.block_tokens
        longest = max(r.prompt_tokens + r.output_tokens for r in requests)
        if longest > capacity:
            raise InfeasibleError(
                f"a request of {longest:,} tokens needs {fit.size(longest * self.kv_device_bytes)} of KV cache per "
                f"device, over the {fit.size(capacity * self.kv_device_bytes)} an instance has; raise "
                "serving.tensor_parallel, use kv_tier=spill or shorter requests")
        return hbm, tier

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
                from mcdla.sim.serving_expert import ExpertInstance

                engines.append(ExpertInstance(self, i, devices, rings, role))
            elif spec.pipeline_batches_in_flight > 1:  # several batches in flight: mcdla.sim.serving_pipeline
                from mcdla.sim.serving_pipeline import PipelinedInstance

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
        env = self.env
        start = env.now
        yield self.algorithm.start(env, self.net, rings, "all_reduce", cost.allreduce_bytes,
                                   reduce_Bps=self.reduce_Bps, tag=f"tp{index}")
        yield env.timeout((cost.allreduces - 1) * self.fixed_s)
        self.record.transfers.append((index, "all_reduce", start, env.now, cost.allreduce_bytes))

    def send(self, sources, targets, size: float, tag: str, key: str) -> list:
        """The flows of ``size`` bytes from each device of ``sources`` to the same rank of
        ``targets``, point to point over the design's links."""
        flows = []
        for src, dst in zip(sources, targets):
            flows += [self.net.transfer(share * size, path, latency, tag=tag)
                      for share, path, latency in self.ways(src, dst, key)]
        return flows

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
            # Evictable cached prefix blocks are free blocks that remember their tokens: not held.
            held = sum(e.pool[tier] - e.free[tier] - (len(e.cache.evictable) if e.cache and tier == "hbm" else 0)
                       for instance in self.engines for e in instance.schedulers)
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
        size = req.computed * self.kv_device_bytes
        flows = self.send(source.devices, target.devices, size, "kv hand-on", "serving.decode_devices")
        start = self.env.now
        yield self.env.all_of(flows)
        self.record.transfers.append((source.index, "kv hand-on", start, self.env.now, size))
        source.release(req)
        source.wake()  # its blocks are free for the next prefill
        req.handed = True
        target.arrive(req)

    def _check(self) -> None:
        """Conservation at the end: every block back in its pool, every flow delivered."""
        for engine in (e for instance in self.engines for e in instance.schedulers):
            free = dict(engine.free)
            if engine.cache:  # cached blocks no request references are free
                if engine.cache.referenced():
                    raise InvariantError(f"serving instance {engine.index} ends with {engine.cache.referenced()} "
                                         "cached prefix blocks still referenced")
                free["hbm"] += len(engine.cache.evictable)
            if free != engine.pool or engine.running:
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
        caches = [e.cache for instance in self.engines for e in instance.schedulers if e.cache]
        if caches:
            self.record.prefix = {name: sum(getattr(c, name) for c in caches)
                                  for name in ("hit_tokens", "queried_tokens", "evictions")}
        self.record.events = self.env.events_processed
        self.record.stats = self.net.stats()
        return self.record
