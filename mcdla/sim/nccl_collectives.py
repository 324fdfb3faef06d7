"""NCCL's algorithms as the tuner weighs them: ``nccl``, ``nccl_ring``, ``nvls``, ``nccl_tree``.

Each runs on the shared flow network like the paper's algorithms, with NCCL's costs
from its own tuning model (:mod:`mcdla.hw.nccl`):

- ``nccl_ring``: the ring algorithm with a protocol (LL, LL128, Simple) picked by size,
  its fixed cost, per-hop latencies by hardware, flag bytes and per-channel caps; NCCL
  with NVLS off (``NCCL_NVLS_ENABLE=0``) or ``NCCL_ALGO=Ring``.
- ``nvls``: the in-switch algorithm (NVLink SHARP) with NVLS's latency and efficiency,
  an all-reduce lengthened by its chunk pipeline's fill (NCCL's kernel, not its tuner).
- ``nccl_tree``: the hierarchical algorithm pipelined across machines, with NCCL's tree
  latency, under Simple or (as the tuner weighs it) LL or LL128 with their flags and
  rate caps; ``nvls_tree`` the same with NVLS inside each machine (the domain's switch
  reduces and multicasts), with NVLS-tree's latency, NVLS's efficiency and its chunk
  pipeline inside each machine.
- ``nccl``: NCCL's default: the fastest of those that run on the rings, by size.
- ``nccl_p2p``: NCCL's all-to-all, which is not a collective of its tuner but grouped
  point-to-point operations (``ncclGroupStart``; ``ncclSend``/``ncclRecv`` to every
  peer; nccl-tests ``alltoall.cu``, Megatron-Core's all-to-all token dispatcher via
  ``torch.distributed.all_to_all_single``): each rank's piece for each peer is its own
  flow, straight through the switch of a single-switch domain (the ``direct``
  algorithm's flows; a uniform one as a single exchange flow, the same rates), paying the host's launch once and each path's latency; no
  protocol choice, flag bytes or tuner latency (NCCL's tuner costs collectives only).
  Across switch domains it runs the hierarchical algorithm's all-to-all (the pieces
  gathered per domain and sent over the rails, as NCCL's PXN routes a peer's data
  through the local GPU on the peer's rail). The ``nccl`` and ``nccl_ring`` families
  run their all-to-alls this way. NCCL's per-peer channel count is not modelled: a
  pair's flows get what the links give them.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import chain

from mcdla.errors import InputError
from mcdla.hw.collective_model import PERSONAL, bottleneck_Bps
from mcdla.hw.nccl import (
    NVLS_CHANNELS,
    NVLS_MAX_ARITY,
    TREE_PROTOCOLS,
    ll_max_bus_Bps,
    nccl_tuning,
    nvls_chunk_bytes,
    nvls_fraction,
    nvls_tree_chunk_bytes,
    pipeline_fill,
    ring_cap_Bps,
    tree_correction,
    tree_latency_s,
)
from mcdla.hw.maxmin import overlaid
from mcdla.hw.network import Ring, reduction_port
from mcdla.sim.collectives import (
    COLLECTIVES,
    DEFAULT_CHUNK_BYTES,
    CollectiveAlgorithm,
    RingAlgorithm,
    RingCosts,
    collective,
)
from mcdla.sim.fabric_collectives import (
    DirectAlgorithm,
    Flow,
    HierarchicalAlgorithm,
    InSwitchAlgorithm,
    _domains,
    _edges,
    _trees,
    spans_domains,
)

__all__ = ["NcclAlgorithm", "NcclTunedAlgorithm", "NvlsAlgorithm", "NcclTreeAlgorithm", "NvlsTreeAlgorithm",
           "picks_a_tree"]


@COLLECTIVES.register("nccl_ring")
class NcclAlgorithm(RingAlgorithm):
    """The rings of :class:`RingAlgorithm` with NCCL's costs (:mod:`mcdla.hw.nccl`): a
    fixed cost per collective, a protocol's step latency, its flag bytes on the wire and
    its rate cap per ring, with the protocol NCCL's tuner would pick for the size (the
    fastest by this same model on idle links). NCCL with its ring only (as with
    ``NCCL_ALGO=Ring``, or ``NCCL_NVLS_ENABLE=0`` on one machine)."""

    name = "nccl_ring"
    nccl = nccl_tuning()  # NCCL's constants: the default version's (run_collective's nccl= sets others)
    # NCCL runs all-to-all as grouped point-to-point sends, not on its ring (nccl_p2p)
    ops = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", *PERSONAL)
    protocols = ("LL", "LL128", "Simple")
    _TUNED_MAX = 4096  # tuned collectives kept; a training run has a few distinct ones

    def __init__(self, launch_s: float = 0.0, hot_share: float | None = None):
        super().__init__(launch_s, hot_share)
        self._tuned: dict[tuple, tuple[RingCosts, float]] = {}

    def protocol_costs(self, protocol: str, op: str, rings, capacities_Bps, size_bytes: float = 0.0) -> RingCosts:
        """``protocol``'s costs for ``op`` on ``rings``; of ``size_bytes`` for NCCL's
        plateau of a Simple all-reduce across machines (:meth:`NcclTuning.ring_plateau`)."""
        proto = self.nccl.protocols[protocol]
        machines = _machines(rings)
        if machines > 1 and proto.name == "LL" and self.nccl.ll_capped:  # LL's cap across machines, by their count
            proto = replace(proto, max_bus_Bps=ll_max_bus_Bps(machines))
        caps = {}
        for ring in rings:
            ring_Bps = bottleneck_Bps(ring.channels, capacities_Bps)
            caps[ring.name] = ring_cap_Bps(proto, op, ring_Bps, len(rings)) * proto.wire_factor
        hop_s = self.nccl.ring_hop_latency_s(proto, machines > 1)
        plateau = 1.0
        if machines > 1 and protocol == "Simple" and op == "all_reduce":
            plateau = self.nccl.ring_plateau(size_bytes, len(rings), rings[0].size)
        return RingCosts(protocol, op, proto.base_latency_s * plateau + self.launch_s, hop_s * plateau,
                         proto.wire_factor, caps, proto.net_hop_latency_s * plateau)

    def tune(self, op, size_bytes, rings, capacities_Bps, chunk_bytes=DEFAULT_CHUNK_BYTES,
             reduce_Bps=None) -> tuple[RingCosts | None, float]:
        """The ring protocol the tuner picks, the least modelled time (the earlier on a
        tie), and that time (None for the protocol where another algorithm is faster,
        :meth:`others`; the other algorithms weighed as NCCL's model sees them, their
        ``weighed_s``, and timed as they run).

        Each protocol's time solves the rings' max-min rates, so the answer is kept per
        collective: its op, size, chunk, reduction rate and rings, and the capacities of
        the rings' channels (all the time depends on; a training iteration launches
        thousands of collectives of a few sizes over the same rings)."""
        self.carries(op)
        if op in PERSONAL:  # grouped sends, not a tuned collective
            p2p = self.__dict__.get("_p2p") or self.__dict__.setdefault(
                "_p2p", COLLECTIVES.get("nccl_p2p")(self.launch_s, self.hot_share))
            return p2p.way(op, rings, capacities_Bps), None
        rings = tuple(rings)
        key = (op, size_bytes, chunk_bytes, reduce_Bps, self.launch_s, rings,
               tuple(map(capacities_Bps.get, chain.from_iterable(ring.channels for ring in rings))))
        tuned = self._tuned.get(key)
        if tuned is None:
            options = [self.protocol_costs(name, op, rings, capacities_Bps, size_bytes) for name in self.protocols]
            times = [self.costed_time_s(c, op, size_bytes, rings, capacities_Bps, chunk_bytes, reduce_Bps)
                     for c in options]
            best = min(range(len(options)), key=times.__getitem__)
            tuned, weighed = (options[best], times[best]), times[best]
            for other in self.others(op, rings, capacities_Bps):
                t = other.time_s(op, size_bytes, rings, capacities_Bps, chunk_bytes=chunk_bytes,
                                 reduce_Bps=reduce_Bps)
                w = other.weighed_s(t, op, size_bytes, rings, capacities_Bps,  # NCCL's tuner weighs its own model
                                    chunk_bytes=chunk_bytes, reduce_Bps=reduce_Bps)
                if w < weighed:
                    tuned, weighed = (other, t), w
            if len(self._tuned) >= self._TUNED_MAX:
                self._tuned.clear()
            self._tuned[key] = tuned
        return tuned

    def hbm_staging(self, op, size_bytes, rings, capacities_Bps, *, chunk_bytes=DEFAULT_CHUNK_BYTES,
                    reduce_Bps=None) -> tuple[str, float]:
        """The staging of what the tuner picks (:meth:`tune`): the ring's FIFOs with its
        protocol's flags, or the other algorithm's."""
        picked = self.tune(op, size_bytes, rings, capacities_Bps, chunk_bytes, reduce_Bps)[0]
        if isinstance(picked, RingCosts):
            return "fifo", picked.wire_factor
        return picked.hbm_staging(op, size_bytes, rings, capacities_Bps)

    def others(self, op, rings, capacities_Bps) -> list[CollectiveAlgorithm]:
        """The algorithms beside the ring NCCL's tuner weighs for ``op`` on ``rings``: none."""
        return []

    def costs_for(self, op, size_bytes, rings, capacities_Bps, *, chunk_bytes=DEFAULT_CHUNK_BYTES,
                  reduce_Bps=None) -> RingCosts:
        """The ring protocol the tuner picks (:meth:`tune`)."""
        picked = self.tune(op, size_bytes, rings, capacities_Bps, chunk_bytes, reduce_Bps)[0]
        if not isinstance(picked, RingCosts):
            raise ValueError(f"NCCL's tuner picks {picked.name} for this {op}, not the ring")
        return picked

    def start(self, env, net, rings, op, size_bytes, *, chunk_bytes=DEFAULT_CHUNK_BYTES, root=0,
              reduce_Bps=None, tag="", copies=1):
        picked = self.tune(op, size_bytes, rings, net.capacities_Bps, chunk_bytes, reduce_Bps)[0]
        if isinstance(picked, RingCosts):
            return collective(env, net, rings, op, size_bytes, chunk_bytes=chunk_bytes, root=root,
                              reduce_Bps=reduce_Bps, tag=tag, costs=picked, copies=copies)
        process = picked.start(env, net, rings, op, size_bytes, chunk_bytes=chunk_bytes, root=root,
                               reduce_Bps=reduce_Bps, tag=tag, copies=copies)
        return env.process(_named(process, picked.name))

    def time_s(self, op, size_bytes, rings, capacities_Bps, *, chunk_bytes=DEFAULT_CHUNK_BYTES,
               reduce_Bps=None):
        """The modelled time of what the tuner picks (:meth:`tune`; an all-to-all: its
        point-to-point sends')."""
        picked, t = self.tune(op, size_bytes, rings, capacities_Bps, chunk_bytes, reduce_Bps)
        return picked.time_s(op, size_bytes, rings, capacities_Bps, chunk_bytes=chunk_bytes) if t is None else t


@COLLECTIVES.register("nccl_p2p")
class NcclP2pAlgorithm(DirectAlgorithm):
    """NCCL's all-to-all as grouped sends and receives (module docstring): on one switch
    domain every pair's piece a flow through the switch, with the host's launch."""

    name = "nccl_p2p"
    ops = PERSONAL

    def fixed_s(self, op, rings):
        return self.launch_s  # the group's kernel launch; NCCL's tuner charges p2p nothing more

    def way(self, op, rings, capacities_Bps) -> CollectiveAlgorithm:
        """Itself on one switch domain; across domains, the hierarchical all-to-all (an
        InputError where that does not carry ``op`` either: the way out, not its name)."""
        try:
            self.check(op, rings, capacities_Bps)
            return self
        except InputError:
            across = COLLECTIVES.get("hierarchical")(self.launch_s)
            if op not in across.ops:
                raise InputError(f"{op} is modelled only among ranks on one fabric switch (NCCL's point-to-point "
                                 f"sends); these rings leave it (to other machines, or have none): use "
                                 f"{op.removesuffix('v')}, its even form", key="execution.collective") from None
            return across


def _machines(rings) -> int:
    """How many machines ``rings`` cross (1 where they name none)."""
    return max((len(set(ring.node)) for ring in rings if ring.node), default=1)


def _named(process, algorithm: str):
    """The record of ``process``, naming the registered ``algorithm`` that ran it (the
    invariants count its bytes by that algorithm's steps)."""
    record = yield process
    return replace(record, algorithm=algorithm)


@COLLECTIVES.register("nccl")
class NcclTunedAlgorithm(NcclAlgorithm):
    """NCCL as it runs by default: its tuner weighs the ring's protocols against NVLS
    (the NVSwitch reduces: NVLink SHARP, on a switch with a reduction engine) for
    all-reduce, reduce-scatter and all-gather on one machine, and against its tree
    across machines (``nccl_tree``, and ``nvls_tree`` where the domains' switches
    reduce: rings cut into switch domains) for all-reduce, and picks the fastest for
    the size."""

    name = "nccl"
    NVLS_OPS = ("all_reduce", "reduce_scatter", "all_gather")

    @classmethod
    def rank_symmetric(cls, rings, capacities_Bps) -> bool:
        """Symmetric where the tuner cannot pick a tree (across machines it may)."""
        return not picks_a_tree(rings, capacities_Bps)

    def _member(self, name, protocol=None):
        def make():
            member = COLLECTIVES.get(name)(self.launch_s)
            member.nccl = self.nccl  # the same NCCL version's constants
            if protocol is not None:
                member.protocol = protocol
            return member

        return self.cache.get(("member", name, protocol), make)

    # What the tuner weighs beside the ring: (algorithm, its protocol or None, the ops)
    _OTHERS = (("nvls", None, NVLS_OPS), *(("nccl_tree", p, ("all_reduce",)) for p in TREE_PROTOCOLS),
               ("nvls_tree", None, ("all_reduce",)))

    def others(self, op, rings, capacities_Bps):
        found = []
        for name, protocol, ops in self._OTHERS:
            if op not in ops:
                continue
            algorithm = self._member(name, protocol)
            try:
                algorithm.check(op, rings, capacities_Bps)
            except InputError:
                continue  # NVLS: not one switch with a reduction engine; trees: no domains, no engines
            if name == "nvls" or spans_domains(rings):
                found.append(algorithm)
        return found


class _ChunkPipeline:
    """NVLS's chunk pipeline (:mod:`mcdla.hw.nccl`, "NVLS's chunk pipeline"), beside a
    phased algorithm whose ``fill`` gives it: its data time lengthened by the pipeline's
    fill and drain, the links left to others meanwhile; NCCL's tuner weighs its own model,
    which has no fill (tuning.cc: a latency and a bandwidth)."""

    def fill(self, op, size_bytes, rings) -> float:
        raise NotImplementedError

    def time_s(self, op, size_bytes, rings, capacities_Bps, **kwargs):
        time_s = super().time_s(op, size_bytes, rings, capacities_Bps, **kwargs)
        fill = self.fill(op, size_bytes, rings)
        return time_s + (time_s - self.fixed_s(op, rings)) * fill if time_s > 0 and fill > 0 else time_s

    def weighed_s(self, time_s, op, size_bytes, rings, capacities_Bps=None, **run) -> float:
        """What NCCL's tuner weighs for a collective of ``time_s``: it without the fill
        (after what the algorithm beside it weighs)."""
        time_s = super().weighed_s(time_s, op, size_bytes, rings, capacities_Bps, **run)
        fixed_s = self.fixed_s(op, rings)
        return fixed_s + (time_s - fixed_s) / (1 + self.fill(op, size_bytes, rings)) if time_s > 0 else time_s

    def _run(self, env, net, rings, op, size_bytes, plans, tag, scale=1.0, copies=1):
        record = yield from super()._run(env, net, rings, op, size_bytes, plans, tag, scale, copies)
        fill = self.fill(op, size_bytes, rings)
        if fill > 0 and record.time_s > 0:
            # The data moved at the links' rates; the first loop's scatter and the last
            # one's gather run alone.
            yield env.timeout((record.time_s - self.fixed_s(op, rings)) * fill)
            record = replace(record, end_s=env.now)
        return record


@COLLECTIVES.register("nvls")
class NvlsAlgorithm(_ChunkPipeline, InSwitchAlgorithm):
    """NCCL's NVLS: the in-switch algorithm with NCCL's costs (:mod:`mcdla.hw.nccl`): the
    host's launch and NVLS's latency once per collective, and every flow at most
    :func:`~mcdla.hw.nccl.nvls_fraction` of its idle path's rate (a cap of its own,
    ``cap:NVLS:<ring>:<flow>``)."""

    name = "nvls"
    nccl = nccl_tuning()

    def fixed_s(self, op, rings):
        return self.launch_s + self.nccl.nvls_latency_s

    def fill(self, op, size_bytes, rings) -> float:
        """An all-reduce's chunk pipeline (:func:`~mcdla.hw.nccl.pipeline_fill`): loops of
        16 channels x one head per GPU of the switch's ring; NCCL's NVLS reduce-scatter
        and all-gather kernels are not modelled so."""
        live = [ring for ring in rings if ring.size > 1]
        if op != "all_reduce" or not live:
            return 0.0
        heads = min(live[0].size, NVLS_MAX_ARITY)
        return pipeline_fill(size_bytes, NVLS_CHANNELS * heads * nvls_chunk_bytes(size_bytes, heads))

    @staticmethod
    def _cap_id(ring: Ring, j: int) -> str:
        return f"cap:NVLS:{ring.name}:{j}"

    def _plain(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        return super().phases(op, ring, share, root, units, capacities_Bps, chunk_bytes)

    def phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        return [[Flow(f.size_bytes, f.path + (self._cap_id(ring, j),), f.latency_s) for j, f in enumerate(phase)]
                for phase in self._plain(op, ring, share, root, units, capacities_Bps, chunk_bytes)]

    def caps(self, op, rings, capacities_Bps):
        caps = {}
        for ring in rings:
            if ring.size > 1:  # the paths do not depend on the share or the root
                for phase in self._plain(op, ring, 1.0, 0, {}, capacities_Bps, DEFAULT_CHUNK_BYTES):
                    for j, f in enumerate(phase):
                        caps[self._cap_id(ring, j)] = nvls_fraction() * bottleneck_Bps(f.path, capacities_Bps)
        return caps


@COLLECTIVES.register("nccl_tree")
class NcclTreeAlgorithm(HierarchicalAlgorithm):
    """The hierarchical algorithm as NCCL runs an all-reduce across machines: the
    intra-domain reduce-scatter, a double binary tree across the domains (each group's
    ranks, one per domain on one rail, reduce up two mirrored binary trees and broadcast
    down them, each tree carrying half the piece: NCCL's tree) and the intra-domain
    all-gather run at once on successive chunks, not one after another, so the slowest
    of them sets the pace (one phase of all their flows). Its latency is NCCL's tree's
    (:func:`~mcdla.hw.nccl.tree_latency_s`) with the host's launch, paid once, in place of
    the links' (NCCL's hop latencies include the wire). The other operations cross the
    domains on the hierarchical algorithm's rings (NCCL runs them on its ring); broadcast
    runs as the hierarchical algorithm's, after the same fixed cost. Across domains it
    needs every rank's own way out (a NIC on a rail)."""

    symmetric = False  # a tree singles out its roots

    name = "nccl_tree"
    ops = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")  # NCCL's all-to-all is p2p, not modelled
    # The protocol of its all-reduce (mcdla.hw.nccl.TREE_PROTOCOLS); the tuner weighs all
    # three (NcclTunedAlgorithm), as NCCL's does. LL and LL128 put their flags on the wire
    # and cap each flow at their fraction of its idle path's rate (cap:tree<P>:<ring>:<j>).
    protocol = "Simple"

    def check(self, op, rings, capacities_Bps):
        super().check(op, rings, capacities_Bps)
        if op == "all_reduce" and spans_domains(rings):
            for ring in rings:
                if ring.size > 1 and (ring.fabric is None or not all(ring.fabric.exit(r) for r in ring.ranks)):
                    raise InputError(f"{self.name} crosses domains over every rank's NIC; ring {ring.name!r} has "
                                     "ranks without one", key="execution.collective")

    nccl = nccl_tuning()  # NCCL's constants: the default version's (run_collective's nccl= sets others)

    def _proto(self, op):
        """The tree's protocol for ``op`` (NCCL's tree runs all-reduce only; the other
        operations cross the domains as Simple)."""
        return self.nccl.tree_protocols[self.protocol if op == "all_reduce" else "Simple"]

    def hbm_staging(self, op, size_bytes, rings, capacities_Bps, **run):
        return self.staging, self._proto(op).wire_factor

    def fixed_s(self, op, rings):
        dom = _domains(rings[0])
        return self.launch_s + tree_latency_s(len(dom.ranks[0]), len(dom.ranks), self._proto(op).name,
                                              self.nccl.tree_protocols)

    def _pipelined(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        """The hierarchical phases as one phase of all their flows (the pipeline), with no
        latency of their own (NCCL's tree latency, paid once, includes the wire)."""
        phases = HierarchicalAlgorithm.phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes)
        return [Flow(f.size_bytes, f.path, 0.0) for phase in phases for f in phase]

    def phases(self, op, ring, share, root, units, capacities_Bps, chunk_bytes):
        if op == "broadcast":
            return super().phases(op, ring, share, root, units, capacities_Bps, chunk_bytes)
        flows = self._pipelined(op, ring, share, root, units, capacities_Bps, chunk_bytes)
        proto = self._proto(op)
        if proto.name != "Simple":
            flows = [Flow(f.size_bytes * proto.wire_factor, f.path + (self._cap_id(ring, j),), 0.0)
                     for j, f in enumerate(flows)]
        return [flows] if flows else []

    def _cap_id(self, ring, j):
        return f"cap:tree{self.protocol}:{ring.name}:{j}"

    def caps(self, op, rings, capacities_Bps):
        """LL's and LL128's cap on each flow: the protocol's fraction of its idle path's
        rate, in wire bytes."""
        proto, caps = self._proto(op), {}
        if proto.name == "Simple":  # every op but all-reduce crosses as Simple (_proto)
            return caps
        live = [ring for ring in rings if ring.size > 1]
        # LL (from 2.18.5): all channels together at most llMaxBw of busBw, half of it algorithm
        # bandwidth; a flow of b bytes per byte of its ring's share gets its part of it.
        alg_Bps = ll_max_bus_Bps(len(_domains(live[0]).ranks)) / 2 / len(live) \
            if proto.name == "LL" and live and self.nccl.ll_capped else float("inf")
        for ring in live:  # the paths and the bytes per byte of share do not depend on the share
            for j, f in enumerate(self._pipelined(op, ring, 1.0, 0, {}, capacities_Bps, DEFAULT_CHUNK_BYTES)):
                caps[self._cap_id(ring, j)] = proto.wire_factor * min(
                    proto.fraction * bottleneck_Bps(f.path, capacities_Bps), f.size_bytes * alg_Bps)
        return caps

    def weighed_s(self, time_s, op, size_bytes, rings, capacities_Bps=None, **run) -> float:
        """What NCCL's tuner weighs for its all-reduce: its time with the links between
        machines at the rate NCCL's model credits them with (:meth:`_credited_Bps`)."""
        if self.nccl.tree_net is None or capacities_Bps is None or op != "all_reduce" or time_s <= 0:
            return time_s
        live = [ring for ring in rings if ring.size > 1]
        nodes = len(_domains(live[0]).ranks) if live else 1
        credited = {}
        for ring in live:
            dom = _domains(ring)
            for reduce in (True, False):
                for *_, path in self._tree_edges(ring, dom, reduce):
                    for channel in path:
                        rate = self._credited_Bps(capacities_Bps[channel], nodes)
                        if rate is not None:
                            credited[channel] = rate
        return self.time_s(op, size_bytes, rings, overlaid(capacities_Bps, credited), **run) if credited else time_s

    def _credited_Bps(self, capacity_Bps, nodes) -> float | None:
        """What NCCL's model credits a link of ``capacity_Bps`` between ``nodes`` machines
        with for this tree (:class:`~mcdla.hw.nccl.TreeNetWeight`); None: all of it."""
        return self.nccl.tree_net.tree_Bps(self._proto("all_reduce").name, capacity_Bps, nodes)

    # NCCL's tree reaches a fraction of its modelled bandwidth at medium sizes
    # (mcdla.hw.nccl.tree_correction); NVLS-tree has none on the GPUs mcdla runs it on.
    corrected = True

    def correction(self, op, size_bytes) -> float:
        """The fraction of the rate the links give it that the tree reaches for ``op`` of
        ``size_bytes`` (NCCL's correction of its all-reduce, by protocol and size)."""
        if not self.corrected or op != "all_reduce":
            return 1.0
        return tree_correction(self.nccl.tree_correction, self._proto(op).name, size_bytes)

    def time_s(self, op, size_bytes, rings, capacities_Bps, **kwargs):
        """The flows' time over the links (the phased algorithms' model) stretched by the
        size's correction, after the fixed cost."""
        time_s = super().time_s(op, size_bytes, rings, capacities_Bps, **kwargs)
        correction = self.correction(op, size_bytes)
        if correction == 1.0 or time_s == 0:
            return time_s
        fixed_s = self.fixed_s(op, rings)
        return fixed_s + (time_s - fixed_s) / correction

    def _run(self, env, net, rings, op, size_bytes, plans, tag, scale=1.0, copies=1):
        record = yield from super()._run(env, net, rings, op, size_bytes, plans, tag, scale, copies)
        correction = self.correction(op, size_bytes)
        if correction != 1.0 and record.time_s > 0:
            # Its data moved at the links' rates; NCCL's tree at this size moves at that
            # fraction of them: the rest of its time, the links left to others.
            data_s = record.time_s - self.fixed_s(op, rings)
            yield env.timeout(data_s * (1 / correction - 1))
            record = replace(record, end_s=env.now)
        proto = self._proto(op)
        if proto.name == "Simple":
            return record
        return replace(record, protocol=proto.name, wire_factor=proto.wire_factor)

    @staticmethod
    def _tree_edges(ring, dom, reduce):
        """(group, the rank sending, the rank receiving, the path) of every edge of the
        double binary tree across the domains: child to parent (``reduce``) or back."""
        for k, group in enumerate(dom.groups):
            for child, parent in _edges(_trees(len(dom.ranks))):
                a, b = (group[child], group[parent]) if reduce else (group[parent], group[child])
                yield k, a, b, ring.over_rail(a, b)

    def _cross(self, op, ring, dom, piece, units, reduce):
        if op != "all_reduce":
            return super()._cross(op, ring, dom, piece, units, reduce)
        flows = []
        for _k, _a, b, path in self._tree_edges(ring, dom, reduce):
            unit = (units[ring.ranks[b]],) if reduce and ring.ranks[b] in units else ()
            flows.append(Flow(piece / 2, path + unit, 0.0))
        return flows

    def _cross_pieces(self, op, ring, dom, piece, reduce):
        if op != "all_reduce":
            return super()._cross_pieces(op, ring, dom, piece, reduce)
        return [(piece / 2, path) for *_, path in self._tree_edges(ring, dom, reduce)]


@COLLECTIVES.register("nvls_tree")
class NvlsTreeAlgorithm(_ChunkPipeline, NcclTreeAlgorithm):
    """NCCL's NVLS-tree: :class:`NcclTreeAlgorithm` with the intra-domain phases in the
    domain's switch (NVLS): for the reduce-scatter every rank sends its whole share up
    once, the switch reduces it and sends each rank its piece; for the all-gather every
    rank sends its piece up once and the switch multicasts it. Each domain's NVLS
    traffic reaches at most :func:`~mcdla.hw.nccl.nvls_fraction` of its ranks' link
    rate each way (``cap:NVLS:<ring>:<domain>:up|down``). Needs a reduction engine in
    every domain's switch."""

    name = "nvls_tree"
    staging = "nvls"  # its domains' phases in the switch, through NVLS's buffers
    corrected = False  # NCCL corrects NVLS-tree by size on Blackwell only (2.30), not on Hopper

    def check(self, op, rings, capacities_Bps):
        super().check(op, rings, capacities_Bps)
        for ring in rings:
            if ring.size > 1 and op != "broadcast":
                for hub in _domains(ring).hubs:
                    if not hub or reduction_port(hub) not in capacities_Bps:
                        raise InputError(f"nvls_tree needs a reduction engine in every domain's fabric switch; "
                                         f"ring {ring.name!r} has a domain without one", key="execution.collective")

    def fixed_s(self, op, rings):
        return self.launch_s + self.nccl.nvls_tree.latency_s(len(_domains(rings[0]).ranks))

    def _credited_Bps(self, capacity_Bps, nodes):
        return self.nccl.tree_net.nvls_tree_Bps(capacity_Bps, nodes)

    def fill(self, op, size_bytes, rings) -> float:
        """An all-reduce's chunk pipeline through NVLS's stages in each machine
        (:func:`~mcdla.hw.nccl.pipeline_fill`): loops of 16 channels x one head per GPU
        of a domain (each has its NIC: :meth:`check`), in NVLS-tree's chunks by size and
        machines (:attr:`~mcdla.hw.nccl.NcclTuning.nvls_tree_chunk`)."""
        live = [ring for ring in rings if ring.size > 1]
        if op != "all_reduce" or not live:
            return 0.0
        dom = _domains(live[0])
        heads = min(len(dom.ranks[0]), NVLS_MAX_ARITY)
        chunk = nvls_tree_chunk_bytes(size_bytes, heads, self.nccl.nvls_tree_first_chunk(len(dom.ranks)))
        return pipeline_fill(size_bytes, NVLS_CHANNELS * heads * chunk)

    @staticmethod
    def _ways(ring, dom, j):
        """Domain ``j``'s channels up into its switch and down from it, and its caps."""
        members = dom.ranks[j]
        ups = tuple(ring.home_out[i] for i in members)
        downs = tuple(ring.home_in[i] for i in members)
        cap = f"cap:NVLS:{ring.name}:{j}"
        return ups, downs, (cap + ":up",), (cap + ":down",)

    def _intra(self, ring, dom, share, units, reduce):
        q, flows = len(dom.ranks[0]), []
        for j, hub in enumerate(dom.hubs):
            ups, downs, cap_up, cap_down = self._ways(ring, dom, j)
            if reduce:  # all of it up through the engine; each rank's reduced piece down
                flows += [Flow(share, ups + (reduction_port(hub),) + cap_up, dom.intra_s),
                          Flow(share / q, downs + cap_down, dom.intra_s)]
            else:  # each rank's piece up; every other rank's piece down (multicast)
                flows += [Flow(share / q, ups + cap_up, dom.intra_s),
                          Flow((q - 1) * share / q, downs + cap_down, dom.intra_s)]
        return flows

    def _intra_pieces(self, ring, dom, share, reduce):
        q, pieces = len(dom.ranks[0]), []
        for members in dom.ranks:
            up, down = (share, share / q) if reduce else (share / q, (q - 1) * share / q)
            pieces += [(up, (ring.home_out[i],)) for i in members]
            pieces += [(down, (ring.home_in[i],)) for i in members]
        return pieces

    def caps(self, op, rings, capacities_Bps):
        caps = {}
        if op == "broadcast":
            return caps
        for ring in rings:
            if ring.size > 1:
                dom = _domains(ring)
                for j in range(len(dom.ranks)):
                    ups, downs, (cap_up,), (cap_down,) = self._ways(ring, dom, j)
                    caps[cap_up] = nvls_fraction() * bottleneck_Bps(ups, capacities_Bps)
                    caps[cap_down] = nvls_fraction() * bottleneck_Bps(downs, capacities_Bps)
        return caps


def picks_a_tree(rings, capacities_Bps) -> bool:
    """Whether NCCL's tuner may run an all-reduce on ``rings`` as a tree across machines
    (a tree singles out its roots: rank symmetry does not hold for it)."""
    return any(isinstance(a, NcclTreeAlgorithm) for a in NcclTunedAlgorithm().others("all_reduce", rings, capacities_Bps))
