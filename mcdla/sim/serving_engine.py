"""The serving engine: one scheduler over a paged KV cache (:class:`Engine`), the
requests as it sees them, and the pieces an instance of several schedulers shares
(:class:`ComposedInstance`); the run that builds and drives them is
:class:`mcdla.sim.serving.ServingRun` (whose docstring describes an iteration)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from mcdla.config.serving import ServingSpec
from mcdla.errors import InputError
from mcdla.hw.parallelism import pipeline_stages
from mcdla.sim.offload import block_of
from mcdla.sim.prefix_cache import PrefixCache

__all__ = ["Engine", "Sleeper", "ComposedInstance", "ServingRecord", "kv_routes", "tier_of", "tier_capacity",
           "serving_stages"]

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


def stage_devices(devices: tuple[str, ...], tp: int) -> list[tuple[str, ...]]:
    """An instance's devices by pipeline stage: ``tp`` consecutive devices (its tensor
    group) each, the stages in order."""
    return [devices[s:s + tp] for s in range(0, len(devices), tp)]


def batch_tokens(decodes, prefills) -> int:
    """The tokens a batch computes: one a decode, a prefill's chunk."""
    return len(decodes) + sum(step for _, step in prefills)


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


class Sleeper:
    """An iteration loop that, with nothing to do, sleeps until :meth:`wake` (a request
    arrives, blocks are freed): an engine's, or an expert-parallel instance's."""

    idle: object  # the event the loop sleeps on (set by the subclass: run.env.event())
    run: object

    def wake(self) -> None:
        if not self.idle.triggered:
            self.idle.succeed()

    def sleep(self):
        """The event to wait on: a fresh one when a wake-up already came (the plan that
        found nothing to do has seen what it woke for); the run ends when every request
        is done, whoever sleeps."""
        if self.idle.triggered:
            self.idle = self.run.env.event()
        return self.idle

    @staticmethod
    def has_work(moves: dict, decodes, prefills) -> bool:
        """Whether a scheduler's plan (:meth:`Engine.plan`) moves or computes anything."""
        return bool(decodes or prefills or any(moves.values()))


class Engine(Sleeper):
    """One serving instance: its scheduler, cache blocks and iteration loop. Its
    ``role``: ``mixed`` (prefill and decode), or in disaggregated serving ``prefill``
    (hands each request on after its first token) or ``decode``."""

    def __init__(self, run: "ServingRun", index: int, devices: tuple[str, ...], rings, role: str = "mixed"):
        self.run, self.index, self.devices, self.rings, self.role = run, index, devices, rings, role
        self.spec: ServingSpec = run.spec
        self.stage_devices = stage_devices(devices, self.spec.tensor_parallel)  # each pipeline stage's tensor group
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

    def unheld(self, tier: str) -> int:
        """Blocks of ``tier`` no request holds: the free ones and, with prefix caching, the
        evictable cached ones (free blocks that remember their tokens)."""
        return self.free[tier] + (len(self.cache.evictable) if self.cache and tier == "hbm" else 0)

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
            prefilling, step = self._step(req, req.computed, budget)
            while not self._grow(req, req.computed + step):
                self._preempt(self.running[-1], moves)
                if not req.running:
                    break
            else:
                (prefills.append((req, step)) if prefilling else decodes.append(req))
                budget -= step
        while self.waiting and len(decodes) + len(prefills) < spec.max_seqs and budget > 0:
            req = self.waiting[0]
            looks_up = self.cache is not None and req.computed == 0  # nothing cached yet: its prompt looked up
            hits = self.cache.lookup(req.prefix_id, req.prefix_tokens, req.target) if looks_up else ()
            done = req.computed + len(hits) * spec.block_tokens  # a prefix hit's tokens are not prefilled
            prefilling, step = self._step(req, done, budget)  # a decode: a request whose cache is back or handed on
            if not self._grow(req, done + step, hits):
                break
            if looks_up:
                self.cache.queried_tokens += req.target
                self.cache.hit_tokens += done
                req.computed = done
            if req.swapped:  # its cached tokens come back (the iteration's moves precede its compute)
                moves["prefetch"] += min(req.computed, req.hbm_blocks * spec.block_tokens)
            req.swapped = False
            self._admit()
            (prefills.append((req, step)) if prefilling else decodes.append(req))
            budget -= step
        return decodes, prefills

    def _step(self, req: _Req, done: int, budget: int) -> tuple[bool, int]:
        """Whether ``req``, ``done`` tokens cached, prefills, and the tokens it computes this
        iteration: its next chunk within ``budget``, or a decode's one."""
        if done < req.target:
            return True, min(req.target - done, self.spec.chunk_tokens, budget)
        return False, 1

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
            if not self.has_work(moves, decodes, prefills):
                yield self.sleep()
                continue
            start = env.now
            yield from self._move(moves)
            yield from self._compute(self.batch(decodes, prefills))
            self.finish(start, decodes, prefills)

    def plan(self):
        """The iteration's moves (tier tokens by direction), decodes and prefills."""
        moves = {"prefetch": 0, "offload": 0}
        decodes, prefills = self._schedule(moves)
        # The KV the batch reads from the tier, and the new KV it writes there (a decode: one token).
        for req, step in [*((req, 1) for req in decodes), *prefills]:
            cached = self._tier_tokens(req, req.computed)
            moves["prefetch"] += cached
            moves["offload"] += self._tier_tokens(req, req.computed + step) - cached
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
        self.run.record.iterations.append((self.index, start, self.run.env.now, batch_tokens(decodes, prefills),
                                           len(decodes), len(prefills)))
        self._advance(decodes, prefills)

    def _compute(self, batch: tuple):
        """The batch (:meth:`ServingModel.step`'s arguments) through every layer, then the
        all-reduces and the sends (a virtual engine overrides it: mcdla.sim.serving_pipeline)."""
        cost = self.run.model.step(*batch)
        yield self.run.env.timeout(cost.compute_s)
        if cost.allreduces:
            yield from self.run.all_reduce(self.index, self.rings, cost)
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
            run.note_transfer(self.index, "kv", start, sum(moves.values()) * run.kv_device_bytes)

    def _send(self, cost):
        """Pipeline parallelism: the batch's activations from each stage to the next, one
        boundary after another, rank r of a stage to rank r of the next (each rank holds
        them whole after its all-reduce) as point-to-point flows."""
        hops = [(self.stage_devices[s], self.stage_devices[s + 1], size) for s, size in enumerate(cost.sends)]
        yield from self.run.send(self.index, hops, "pp send", "serving.pipeline_parallel")

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
