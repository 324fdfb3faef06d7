"""Ring collectives as flows on the shared :class:`~mcdla.sim.flownet.FlowNetwork`.

The message is split over all the given directed rings, which run concurrently, in
proportion to what each carries with all of them active on idle links (its max-min
fair rate, :func:`~mcdla.sim.ringsplit.ring_fractions`), so that they end together as NCCL's channels do; rings
alike, as on every paper design, split it evenly. The collective ends when its last
ring does.

**Ring steps (all-reduce, all-gather, reduce-scatter).** With p ranks a ring runs
2(p-1) steps for all-reduce (p-1 of reduce-scatter, then p-1 of all-gather) and p-1
for the others; in every step each rank sends an n/p piece of its ring's share to its
successor, all at once. The steps of one phase run back to back at the ring's
slowest hop (each step needs the previous one's data, and every channel carries the
same bytes), so a phase is modelled as ONE flow of (steps x n/p) bytes whose path is
every channel of the ring, with latency steps x the largest segment latency. On idle
rings that is exactly the alpha-beta closed form of :mod:`mcdla.hw.collective_model`;
under contention it differs from step-by-step flows only in that the ring does not
pause during each step's latency (a fraction a / (a + n/(pB)) of a step). Events are
proportional to phases: two flows per ring for an all-reduce, not 2(p-1). Memory-nodes
on a ring only relay: a segment that passes through one is cut-through, so it costs
its summed hop latency and no store-and-forward time.

**Chunks and latency.** Latency is a wire delay that consecutive chunks overlap
(NCCL keeps several chunks in flight per connection), so a step pays it once, not
once per chunk, and for the step-wise collectives the chunk size does not change the
time. Broadcast is where it matters: the root streams its share along the ring in
chunks and every intermediate rank forwards a chunk once it has received it whole.
That is one flow of the ring's share over the p-1 segments from the root, with
latency = summed segment latencies + (p-2) chunk / b (the pipeline fill at the idle
ring bandwidth b; under contention the fill is this idle estimate, a term that
vanishes as the chunk shrinks). The results converge as the chunk shrinks;
:data:`DEFAULT_CHUNK_BYTES` (4 KB, the message size of the paper's Fig. 9) is within
1% of the limit for messages of a few MB and more on rings of up to 16 ranks.

**Reduction.** Reduction arithmetic overlaps the transfer as in NCCL's fused
kernels: with ``reduce_Bps`` given, every reduce-scatter step flow also crosses a
reduction unit ``reduce:<rank>`` of that bandwidth at every rank of its ring, so its
rate is min(link share, reduction share) and it costs time only where it is slower
than the link. The units are shared by all rings and collectives on a device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Sequence

import simpy

from mcdla.errors import InputError
from mcdla.hw.cache import Cache
from mcdla.hw.collective_model import (
    GATHERING,
    OPS,
    REDUCING,
    bottleneck_Bps,
    pipeline_latency_s,
    ring_steps,
    ring_time_s,
)
from mcdla.hw.network import Ring, channel_id
from mcdla.registry import Registry
from mcdla.sim.chains import in_turn
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.ringsplit import net_fractions, ring_fractions, ring_shares

__all__ = [
    "COLLECTIVES",
    "CollectiveAlgorithm",
    "RingAlgorithm",
    "RingCosts",
    "IDEAL",
    "DEFAULT_CHUNK_BYTES",
    "CollectiveRecord",
    "SentPerRing",
    "CollectiveRun",
    "collective",
    "run_collective",
    "ring_of_devices",
    "check_request",
]

# The paper's Fig. 9 message size ("4 KB"); see the module docstring on convergence.
DEFAULT_CHUNK_BYTES = 4e3




class SentPerRing(SequenceABC):
    """The bytes the ranks of each ring put on the wire, ``share`` times ``per_byte(ring)``
    (0 for a ring of one), counted when first read: listing every piece of a collective
    over a 100,000-rank ring to count them takes seconds, and no run reads them (the
    checks of the collectives' properties do)."""

    def __init__(self, rings: Sequence[Ring], share: float, per_byte) -> None:
        self._rings, self._share, self._per_byte = rings, share, per_byte

    @cached_property
    def _values(self) -> tuple[float, ...]:
        share = self._share
        return tuple(share * self._per_byte(r) if share > 0 and r.size > 1 else 0.0 for r in self._rings)

    def __getitem__(self, i):
        return self._values[i]

    def __len__(self) -> int:
        return len(self._rings)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, SequenceABC) else NotImplemented

    def __hash__(self) -> int:  # as the tuple's (a record is hashable)
        return hash(self._values)

    def __repr__(self) -> str:
        return repr(self._values)


@dataclass(frozen=True)
class CollectiveRecord:
    """What one collective did: the value of the process :func:`collective` returns.

    ``bytes_per_ring`` is each ring's share of the message; ``bytes_sent_per_ring``
    the bytes all ranks of that ring put on the wire together (steps x share for the
    step-wise collectives, (p-1) x share for broadcast); ``flows`` the flows started.
    """

    op: str
    tag: str
    size_bytes: float
    ranks: int
    rings: tuple[str, ...]
    start_s: float
    end_s: float
    flows: int
    bytes_per_ring: tuple[float, ...]
    bytes_sent_per_ring: Sequence[float]  # a tuple, or counted when read (SentPerRing)
    protocol: str = ""  # the NCCL protocol a cost-model algorithm chose ("" for the ideal ring)
    wire_factor: float = 1.0  # bytes on the wire per data byte (a protocol's flags)
    algorithm: str = ""  # the registered algorithm that ran it, when not the execution's
    axis: str = ""  # the parallel axis whose communicator ran it (dp, tp; mcdla.sim.training.AXES)

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s


def collective(
    env: simpy.Environment,
    net: FlowNetwork,
    rings: Sequence[Ring],
    op: str,
    size_bytes: float,
    *,
    chunk_bytes: float = DEFAULT_CHUNK_BYTES,
    root: int = 0,
    reduce_Bps: float | None = None,
    tag: str = "",
    costs: "RingCosts | None" = None,
    copies: int = 1,
) -> simpy.Process:
    """Starts ``op`` on ``size_bytes`` over ``rings``; the process returns a :class:`CollectiveRecord`.

    ``root`` (broadcast only) indexes the ranks of the first ring. ``costs`` adds a
    library's costs to the ideal ring (:class:`RingCosts`; None: the paper's ring).
    ``copies``: the alike groups this collective stands for (rank symmetry), each on
    its own rings; their flows start as one each.
    """
    check_request(op, rings, size_bytes, chunk_bytes, root)
    for ring in rings:
        if ring.repeats_channel:
            raise ValueError(f"ring {ring.name!r} crosses a channel twice")
    root_rank = rings[0].ranks[root]
    if op == "broadcast":
        for ring in rings:
            if root_rank not in ring.ranks:
                raise ValueError(f"root {root_rank!r} is not on ring {ring.name!r}")
    reduce_ids: dict[str, tuple[str, ...]] = {}
    if reduce_Bps is not None and op in ("all_reduce", "reduce_scatter"):
        for ring in rings:
            reduce_ids[ring.name] = units = ring.reduce_units
            net.add_resources(units, reduce_Bps)
    costs = costs or IDEAL
    for ring in rings:
        if ring.name in costs.cap_Bps:
            net.add_resource(costs.cap_id(ring), costs.cap_Bps[ring.name], copies)  # one per alike group's ring
    shares = ring_shares(float(size_bytes), rings, net_fractions(net, rings))
    return env.process(_run(env, net, tuple(rings), op, float(size_bytes), shares, chunk_bytes, root_rank,
                            reduce_ids, tag, costs, copies))


def check_request(op: str, rings: Sequence[Ring], size_bytes: float, chunk_bytes: float = DEFAULT_CHUNK_BYTES,
                  root: int = 0) -> None:
    """The arguments every algorithm's ``start`` takes, checked (a ValueError: a bug in
    the caller, not in the input)."""
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if not rings:
        raise ValueError("a collective needs at least one ring")
    if not size_bytes >= 0:
        raise ValueError(f"size_bytes must be >= 0, got {size_bytes!r}")
    if not chunk_bytes > 0:
        raise ValueError(f"chunk_bytes must be > 0, got {chunk_bytes!r}")
    if not 0 <= root < rings[0].size:
        raise ValueError(f"root {root} is not a rank of ring {rings[0].name!r} ({rings[0].size} ranks)")


@dataclass(frozen=True)
class RingCosts:
    """What a communication library adds to the ideal ring (defaults: nothing).

    ``fixed_s`` is paid once per collective before any data moves (launch and
    synchronization); ``step_latency_s``, when set, is the least latency of a ring step
    over a machine's own links and ``net_step_latency_s`` of one between machines (a
    segment whose own latency is longer keeps it); every data byte puts
    ``wire_factor`` bytes on the wire; ``cap_Bps`` (ring name -> wire bytes/s) caps a
    ring's rate through a resource of its own, ``cap:<protocol>:<op>:<ring>``.

    The paper's ring (no ``step_latency_s``) charges every step its slowest segment. A
    library's ring pipelines chunks through the ranks, so a phase of ``p-1`` steps pays
    each segment's own latency once, as NCCL's tuning model counts it: the ``p-1``
    segments summed, the slowest one left out (``nsteps - nInterSteps`` machine steps
    and ``nInterSteps`` network steps per phase, :mod:`mcdla.hw.nccl`).
    """

    protocol: str = ""
    op: str = ""
    fixed_s: float = 0.0
    step_latency_s: float | None = None
    wire_factor: float = 1.0
    cap_Bps: Mapping[str, float] = field(default_factory=dict)
    net_step_latency_s: float | None = None

    def cap_id(self, ring: Ring) -> str:
        return f"cap:{self.protocol}:{self.op}:{ring.name}"

    def cap_path(self, ring: Ring) -> tuple[str, ...]:
        return (self.cap_id(ring),) if ring.name in self.cap_Bps else ()

    def segment_latency_s(self, ring: Ring, i: int) -> float:
        if self.step_latency_s is None:
            return ring.latency_s[i]
        crosses = self.net_step_latency_s is not None and ring.leaves_node(i)
        return max(self.net_step_latency_s if crosses else self.step_latency_s, ring.latency_s[i])

    def step_s(self, ring: Ring) -> float:
        """The mean latency of a step of ``ring`` (a phase of ``p-1`` steps pays ``p-1``
        of it): the paper's ring its slowest segment's (a step needs the previous one's
        data); a library's ring the ``p-1`` fastest segments' latencies summed (see the
        class docstring), each as :meth:`segment_latency_s` gives it."""
        if self.step_latency_s is None:
            return ring.max_latency_s  # cached: asked by every collective on the ring
        p = ring.size
        if p == 1:
            return 0.0

        def mean() -> float:
            each = [self.segment_latency_s(ring, i) for i in range(p)]
            return (sum(each) - max(each)) / (p - 1)

        return ring.memo(("pipelined step", self.step_latency_s, self.net_step_latency_s), mean)

    def path_s(self, ring: Ring, start: int = 0) -> float:
        """The summed latency of the p-1 segments of ``ring`` from position ``start``: a
        broadcast's from its root."""
        p = ring.size
        return sum(self.segment_latency_s(ring, (start + i) % p) for i in range(p - 1))


IDEAL = RingCosts()  # the paper's ring: no library costs


def _run(env, net, rings, op, size_bytes, shares, chunk_bytes, root_rank, reduce_ids, tag, costs, copies=1):
    start_s = env.now
    flows = [0]
    if costs.fixed_s > 0 and size_bytes > 0 and rings[0].size > 1:
        yield env.timeout(costs.fixed_s)
    plans = [_ring(net, ring, op, share, chunk_bytes, root_rank, reduce_ids.get(ring.name, ()), costs)
             for ring, share in zip(rings, shares)]

    def started(phase):
        flows[0] += 1
        size, path, latency_s = phase
        return [net.transfer(size, path, latency_s, tag, copies, even=False)]
    yield in_turn(env, plans, started)  # each ring's phases one after another, every ring at once
    sent = []
    for ring, share in zip(rings, shares):
        if ring.size == 1:
            sent.append(0.0)
        elif op == "broadcast":
            sent.append((ring.size - 1) * share)
        else:
            sent.append(ring_steps(op, ring.size) * share)
    return CollectiveRecord(
        op=op,
        tag=tag,
        size_bytes=size_bytes,
        ranks=rings[0].size,
        rings=tuple(r.name for r in rings),
        start_s=start_s,
        end_s=env.now,
        flows=flows[0],
        bytes_per_ring=tuple(shares),
        bytes_sent_per_ring=tuple(sent),
        protocol=costs.protocol,
        wire_factor=costs.wire_factor,
    )


def _ring(net, ring, op, share, chunk_bytes, root_rank, reduce_path, costs) -> list[tuple]:
    """One directed ring's part of the collective (see the module docstring): its phases
    in turn, each one flow ``(wire bytes, path, latency)``."""
    p = ring.size
    if p == 1 or share == 0:
        return []
    wire = costs.wire_factor
    cap = costs.cap_path(ring)
    if op == "broadcast":
        start = ring.ranks.index(root_rank)
        path = tuple(c for i in range(p - 1) for c in ring.segments[(start + i) % p]) + cap
        latency_s = pipeline_latency_s(costs.path_s(ring, start), p - 2, chunk_bytes, share,
                                       bottleneck_Bps(path, net.capacities_Bps), wire)
        return [(share * wire, path, latency_s)]
    step_bytes = share / p * wire
    step_latency_s = costs.step_s(ring)
    # The phases' paths begin with the ring's hops (and a reduce-scatter's end with its
    # ranks' units): bound by period, counted by period (FlowNetwork.by_period).
    period = (*ring.period, len(ring.channels)) if ring.period else None

    def marked(path, units=()):
        return net.by_period(path, (*period, len(units))) if period else path
    # One flow per phase: its steps run back to back (see the module docstring). The
    # phases' paths are built once per ring (and cap), not concatenated per collective.
    channels = ring.memo(("channels", cap), lambda: ring.channels + cap)
    if op == "all_to_all":  # pairwise: one phase, k pieces on every channel in step k
        pieces = ring_steps(op, p)
        return [(pieces * step_bytes, marked(channels), pieces * step_latency_s)]
    phases = []
    if op in REDUCING:
        reducing = ring.memo(("reducing", cap, reduce_path), lambda: channels + reduce_path)
        phases.append(((p - 1) * step_bytes, marked(reducing, reduce_path), (p - 1) * step_latency_s))
    if op in GATHERING:
        phases.append(((p - 1) * step_bytes, marked(channels), (p - 1) * step_latency_s))
    return phases


@dataclass(frozen=True)
class CollectiveRun:
    """One collective simulated alone on an idle network, with the simulation's own cost."""

    record: CollectiveRecord
    events: int
    rate_computations: int
    wall_s: float


def run_collective(
    rings: Sequence[Ring],
    capacities_Bps: Mapping[str, float],
    op: str,
    size_bytes: float,
    *,
    chunk_bytes: float = DEFAULT_CHUNK_BYTES,
    root: int = 0,
    reduce_Bps: float | None = None,
    algorithm: str = "ring",
    launch_s: float = 0.0,
    also: Mapping[str, tuple[str, ...]] | None = None,
    hot_share: float | None = None,
    nccl=None,
    classes: Mapping[str, str] | None = None,
    orbits=None,
) -> CollectiveRun:
    """Simulates one collective on idle ``rings`` (``mcdla collective``, Fig. 9, benchmarks)
    with a registered ``algorithm``; ``also``: the resources a flow over a channel loads
    too (a shared NIC's ports, Topology.nic_ports); ``hot_share``: an all-to-allv's skew,
    the hot rank ``root``'s share of every rank's data (None: uniform); ``nccl``: the
    NCCL constants (:func:`mcdla.hw.nccl.nccl_tuning`) an NCCL algorithm runs with
    (None: its default version's); ``classes``, ``orbits``: the resources' classes and
    the translation they are unions of orbits of (:meth:`mcdla.hw.symmetry.Symmetry.
    with_units`), each class simulated once, the same times (None: every rank)."""
    env = CountingEnvironment()
    net = FlowNetwork(env, capacities_Bps, also=also, classes=classes, orbits=orbits)
    wall = time.perf_counter()
    try:
        chosen = COLLECTIVES.get(algorithm, key="--algorithm")(launch_s, hot_share)
        if nccl is not None and chosen.nccl is not None:  # an NCCL algorithm: it runs that version's
            chosen.nccl = nccl
        proc = chosen.start(
            env, net, rings, op, size_bytes, chunk_bytes=chunk_bytes, root=root, reduce_Bps=reduce_Bps)
    except InputError as exc:  # an algorithm that refuses these rings: here chosen by --algorithm
        raise InputError(exc.detail, key="--algorithm") from None
    env.run()
    wall_s = time.perf_counter() - wall
    return CollectiveRun(proc.value, env.events_processed, net.stats().rate_computations, wall_s)


def ring_of_devices(n: int, link_bw_Bps: float, latency_s: float) -> tuple[tuple[Ring, Ring], dict[str, float]]:
    """One bidirectional ring of ``n`` device-nodes ``D0..D{n-1}`` (paper Fig. 9's setting).

    There are n full-duplex links, link i joining D_i and D_{i+1 mod n}; each gives a
    channel per direction of ``link_bw_Bps``. The result is the two directed rings
    (clockwise and counter-clockwise, channel-disjoint) and the channel capacities.
    For n = 2 the two links are parallel (indices 0 and 1), so a 2-node ring has the
    same per-node bandwidth as a larger one.
    """
    if n < 2:
        raise ValueError(f"a ring needs at least 2 devices, got {n}")
    names = tuple(f"D{i}" for i in range(n))
    forward: list[str] = []
    backward: list[str] = []  # backward[i]: the channel from D_{i+1} to D_i over link i
    for i in range(n):
        a, b = names[i], names[(i + 1) % n]
        k = 1 if (n == 2 and i == 1) else 0  # a 2-ring's second link is parallel to its first
        forward.append(channel_id(a, b, k))
        backward.append(channel_id(b, a, k))
    capacities = {c: float(link_bw_Bps) for c in forward + backward}
    cw = Ring(
        name="ring0+",
        ranks=names,
        segments=tuple((c,) for c in forward),
        latency_s=tuple(float(latency_s) for _ in range(n)),
    )
    # Counter-clockwise: D0 -> D{n-1} -> ... -> D1 -> D0 over links n-1, ..., 0.
    ccw_ranks = (names[0],) + tuple(reversed(names[1:]))
    ccw_segments = tuple((backward[(n - 1 - i) % n],) for i in range(n))
    ccw = Ring(
        name="ring0-",
        ranks=ccw_ranks,
        segments=ccw_segments,
        latency_s=tuple(float(latency_s) for _ in range(n)),
    )
    return (cw, ccw), capacities


# -- the collective-algorithm registry ------------------------------------------------

COLLECTIVES: Registry[type["CollectiveAlgorithm"]] = Registry("collective algorithm")


class CollectiveAlgorithm:
    """How a communicator runs a collective on the shared flow network.

    Three things, each checked against the others by the tests and the invariants:
    :meth:`start` (the simulation), :meth:`time_s` (its closed form on idle links) and
    :meth:`channel_bytes` (what its steps move over each channel, by the algorithm's
    definition, written step by step and independent of how :meth:`start` batches
    steps into flows).

    ``launch_s`` is the host's cost of launching the collective's kernels before any
    data moves (one launch per device; N x one launch when one host thread launches
    on N devices one after another, as nccl-tests ``-g N`` does); the ideal ring of the
    paper ignores it.
    """

    name = ""  # as registered
    ops = OPS  # the operations it carries; it refuses the others (:meth:`carries`)
    # NCCL's constants (mcdla.hw.nccl.nccl_tuning): NCCL's algorithms (mcdla.sim.nccl_collectives)
    # carry and read them; None for the others, which run without.
    nccl = None

    # How its kernels stage data in each rank's HBM (mcdla.hw.nccl_hbm): through FIFO
    # buffers, or (the switch reducing and multicasting) through NVLS's multicast buffer.
    staging = "fifo"

    # Whether its flows treat every rank of a ring alike, so rank symmetry may simulate
    # one device per class (held against exact runs by tests/test_symmetry.py); a tree,
    # which singles out its root, does not.
    symmetric = True

    def __init__(self, launch_s: float = 0.0, hot_share: float | None = None):
        self.launch_s = float(launch_s)
        # all-to-allv's skew: the share of every rank's data bound for the hot rank (the
        # one ``root`` names); None: uniform (mcdla.hw.collective_model.destination_shares)
        self.hot_share = None if hot_share is None else float(hot_share)
        # What the algorithm plans once and asks again (its units and plans per rings, its
        # member algorithms): the instance's, made per communicator, so per run.
        self.cache = Cache()

    @classmethod
    def rank_symmetric(cls, rings: Sequence[Ring], capacities_Bps: Mapping[str, float]) -> bool:
        """Whether it treats every rank of ``rings`` alike there (its ``symmetric``; an
        algorithm that chooses among others by the rings says per design)."""
        return cls.symmetric

    def weighed_s(self, time_s, op, size_bytes, rings, capacities_Bps=None, **run) -> float:
        """What NCCL's tuner weighs for it (:meth:`~mcdla.sim.nccl_collectives.NcclAlgorithm.tune`):
        its time on ``capacities_Bps`` (``run``: its chunk and reduction rate), unless
        NCCL's own model leaves part of it out (NVLS's chunk pipeline) or credits it with
        less of its links (the trees' network)."""
        return time_s

    def check(self, op: str, rings: Sequence[Ring], capacities_Bps: Mapping[str, float]) -> None:
        """Raises an InputError for rings this algorithm cannot run (any ring: none)."""

    def hbm_staging(self, op, size_bytes, rings, capacities_Bps, **run) -> tuple[str, float]:
        """How what runs ``op`` stages its data in HBM (:data:`staging`) and its wire bytes
        per data byte (a protocol's flags), for :func:`mcdla.hw.nccl_hbm.hbm_bytes`."""
        return self.staging, 1.0

    def carries(self, op: str) -> None:
        """Raises an InputError naming this algorithm where it does not carry ``op``."""
        if op in OPS and op not in self.ops:
            carriers = ", ".join(n for n in COLLECTIVES.names() if op in COLLECTIVES.get(n).ops)
            raise InputError(f"collective algorithm {self.name!r} does not carry {op}; use one that does "
                             f"({carriers})", key="execution.collective")

    @staticmethod
    def _units(op, rings, reduce_Bps) -> dict[str, float]:
        """Each rank's reduction unit and its rate, for a reducing ``op``."""
        if reduce_Bps is None or op not in REDUCING:
            return {}
        return {unit: reduce_Bps for ring in rings for unit in ring.reduce_units}

    def start(self, env, net: FlowNetwork, rings: Sequence[Ring], op: str, size_bytes: float, *,
              chunk_bytes: float = DEFAULT_CHUNK_BYTES, root: int = 0, reduce_Bps: float | None = None,
              tag: str = "", copies: int = 1) -> simpy.Process:
        """A process whose value is the :class:`CollectiveRecord` (``root``: broadcast's).
        ``copies``: the alike groups of ranks it stands for (rank symmetry: each group's
        flows on its own rings, started as one flow per flow of this group)."""
        raise NotImplementedError

    def time_s(self, op: str, size_bytes: float, rings: Sequence[Ring], capacities_Bps: Mapping[str, float], *,
               chunk_bytes: float = DEFAULT_CHUNK_BYTES, reduce_Bps: float | None = None) -> float:
        raise NotImplementedError

    def channel_bytes(self, op: str, size_bytes: float, rings: Sequence[Ring],
                      capacities_Bps: Mapping[str, float] | None = None,
                      also: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, float]:
        """``capacities_Bps``, ``also``: the links' rates and shared NIC ports, for an
        algorithm whose split over the rings follows them (:func:`~mcdla.sim.ringsplit.ring_fractions`)."""
        raise NotImplementedError

    def period_bytes(self, op: str, size_bytes: float, rings: Sequence[Ring],
                     capacities_Bps: Mapping[str, float] | None = None,
                     also: Mapping[str, tuple[str, ...]] | None = None,
                     orbits=None) -> tuple[dict[str, float], int] | None:
        """:meth:`channel_bytes` of one period of rings bound by period, and the times each
        hop stands for, where the algorithm's law is alike at every hop of an orbit
        (:meth:`RingAlgorithm.period_bytes`); None: not known to be (every other algorithm).
        ``orbits``: a translation alike in capacity along its orbits (ringsplit.ring_fractions)."""
        return None


@COLLECTIVES.register("ring")
class RingAlgorithm(CollectiveAlgorithm):
    """The message split evenly over every directed ring, each running NCCL's ring
    algorithm (see the module docstring); the paper's collectives."""

    name = "ring"
    ops = tuple(op for op in OPS if op != "all_to_allv")  # its pairwise steps move equal pieces

    def costs_for(self, op, size_bytes, rings, capacities_Bps, *, chunk_bytes=DEFAULT_CHUNK_BYTES,
                  reduce_Bps=None) -> RingCosts:
        """What a library adds to the rings for this collective: nothing, for the paper's."""
        return IDEAL

    def start(self, env, net, rings, op, size_bytes, *, chunk_bytes=DEFAULT_CHUNK_BYTES, root=0,
              reduce_Bps=None, tag="", copies=1):
        self.carries(op)
        costs = self.costs_for(op, size_bytes, rings, net.capacities_Bps, chunk_bytes=chunk_bytes,
                               reduce_Bps=reduce_Bps)
        return collective(env, net, rings, op, size_bytes, chunk_bytes=chunk_bytes, root=root,
                          reduce_Bps=reduce_Bps, tag=tag, costs=costs, copies=copies)

    def time_s(self, op, size_bytes, rings, capacities_Bps, *, chunk_bytes=DEFAULT_CHUNK_BYTES,
               reduce_Bps=None):
        self.carries(op)
        costs = self.costs_for(op, size_bytes, rings, capacities_Bps, chunk_bytes=chunk_bytes,
                               reduce_Bps=reduce_Bps)
        return self.costed_time_s(costs, op, size_bytes, rings, capacities_Bps, chunk_bytes, reduce_Bps)

    @staticmethod
    def costed_time_s(costs: RingCosts, op, size_bytes, rings, capacities_Bps, chunk_bytes, reduce_Bps):
        """Alpha-beta per ring on idle links, for the flows :func:`collective` starts
        with ``costs``: the fixed cost, then each ring moves its share (with the wire's
        flag bytes) at its max-min fair rate with every ring active (rings that share a
        channel, a cap or a reduction unit split it), by the one ring formula
        (:func:`~mcdla.hw.collective_model.ring_time_s`); the collective ends with its
        slowest ring. Exact while the rings' phases stay aligned (equal segment
        latencies, or channel-disjoint rings)."""
        from mcdla.hw.maxmin import max_min_rates, overlaid

        if size_bytes == 0 or rings[0].size == 1:
            return 0.0
        shares = dict(zip((r.name for r in rings),
                          ring_shares(size_bytes, rings, ring_fractions(rings, capacities_Bps))))
        caps = overlaid(capacities_Bps,
                        {costs.cap_id(r): costs.cap_Bps[r.name] for r in rings if r.name in costs.cap_Bps})
        plain = max_min_rates({r.name: r.channels + costs.cap_path(r) for r in rings}, caps)
        reducing = plain
        units = CollectiveAlgorithm._units(op, rings, reduce_Bps)
        if units:
            reducing = max_min_rates({r.name: r.channels + costs.cap_path(r)
                                      + r.reduce_units for r in rings},
                                     overlaid(caps, units))
        broadcast = op == "broadcast"  # from root 0; the pipeline fills at the idle ring's rate
        worst = 0.0
        for r in rings:
            t = ring_time_s(op, r.size, shares[r.name], plain[r.name], costs.step_s(r),
                            reduce_rate_Bps=reducing[r.name],
                            wire_factor=costs.wire_factor, chunk_bytes=chunk_bytes,
                            fill_Bps=bottleneck_Bps(r.channels + costs.cap_path(r), caps) if broadcast else None,
                            path_latency_s=costs.path_s(r) if broadcast else None)
            worst = max(worst, t)
        return costs.fixed_s + worst

    def channel_bytes(self, op, size_bytes, rings, capacities_Bps=None, also=None):
        """Step by step: in each step every rank sends one n/p piece of its ring's share
        (:func:`~mcdla.sim.ringsplit.ring_fractions`; evenly without ``capacities_Bps``) to its successor
        (broadcast: the root's share hops once along each segment; all-to-all: rank i's
        piece for rank i+k crosses the k segments from i)."""
        return self._carried(op, size_bytes, rings, capacities_Bps, also, None)

    def period_bytes(self, op, size_bytes, rings, capacities_Bps=None, also=None, orbits=None):
        """(:meth:`channel_bytes` of the segments of each ring's first period of ranks, the
        translation's order) for rings bound by period under one translation
        (``Ring.period``): in an all-reduce, reduce-scatter or all-gather every rank sends
        alike, so rank i's segment carries what rank i mod (p / order)'s does, each hop
        standing for its orbit's ``order`` members (the invariants' law per class, at the
        cost of one period). None for other operations (a broadcast's root singles out
        rank 0) or rings not so bound."""
        periods = [getattr(r, "period", ()) for r in rings]
        t = periods[0][0] if periods[0] else None
        if op not in ("all_reduce", "reduce_scatter", "all_gather") or t is None or \
                any(not p or p[0] is not t or r.size % t.order for r, p in zip(rings, periods)):
            return None
        return self._carried(op, size_bytes, rings, capacities_Bps, also, t.order, orbits), t.order

    def _carried(self, op, size_bytes, rings, capacities_Bps, also, order, orbits=None):
        """:meth:`channel_bytes`, of the first ``size / order`` ranks' segments of each
        ring (:meth:`period_bytes`; None: every rank's)."""
        self.carries(op)
        carried: dict[str, float] = {}
        shares = ring_shares(size_bytes, rings, ring_fractions(rings, capacities_Bps, also, orbits))
        for ring, share in zip(rings, shares):
            p = ring.size
            if p == 1 or share == 0:
                continue
            if op == "broadcast":
                sends = [(i, share) for i in range(p - 1)]  # root is rank 0
            elif op == "all_to_all":
                # Rank i's pieces for ranks i+1..i+p-1: the h-th segment from i is crossed
                # by those k > h segments away, p-1-h pieces.
                sends = [((i + h) % p, (p - 1 - h) * (share / p)) for i in range(p) for h in range(p - 1)]
            else:
                reduce_steps = p - 1 if op in ("all_reduce", "reduce_scatter") else 0
                gather_steps = p - 1 if op in ("all_reduce", "all_gather") else 0
                # In every step every rank sends one piece: per rank, steps pieces (summed
                # per rank, not listed per step, which was quadratic in the ranks).
                sends = [(rank, (reduce_steps + gather_steps) * (share / p))
                         for rank in range(p if order is None else p // order)]
            for rank, piece in sends:
                for channel in ring.segments[rank]:
                    carried[channel] = carried.get(channel, 0.0) + piece
        return carried
