"""A fluid flow network on SimPy: transfers share channels and ports max-min fairly.

A *flow* moves ``size_bytes`` along a path of resources (directed channels, memory
ports, reduction units). Its life has two phases:

1. a pure delay of ``latency_s`` (the summed hop latency: wire, switch and protocol
   time), during which it occupies no bandwidth;
2. a fluid phase in which it streams at its max-min fair share of every resource on
   its path, until its last byte is delivered.

A flow alone on an idle path therefore takes exactly
``latency_s + size_bytes / min(capacity on the path)`` (docs/model.md, "Network model").

Rates change only when a flow joins the sharing or leaves it, so the network solves
:func:`mcdla.hw.maxmin.max_min_rates` only then, and only for the flows connected to
the change through shared resources; it advances every flow's remaining bytes by
``rate * dt`` and keeps a single pending SimPy timeout for the earliest next
completion. The number of SimPy events is proportional to the number of flows, not to
the number of bytes. Flows that join at the same simulated instant (a collective's
rings, a DMA's stripes) are batched into one rate computation.

Accounting (read with :meth:`FlowNetwork.stats`): per-resource bytes carried (the
time integral of the resource's load) and busy time (time with at least one flow on
it), flows started and finished, bytes sent and delivered, and the number of rate
computations. For drawing link utilization over time, pass ``on_rates`` (called with
the resources whose load changed) or ``record_timeline=True`` (a piecewise-constant
``(time_s, load_Bps)`` list per resource).

Capacity invariant: every load the network computes is compared with its resource's
capacity at the moment it is computed (only the loads that changed, so the check
costs one comparison per changed resource); the worst excess is kept in
:attr:`FlowNetwork.overload` for :mod:`mcdla.sim.invariants` to report, because an
exception raised inside a SimPy callback would lose the iteration's context.

Determinism: flows are kept in start order and resources in first-use order; nothing
iterates over a set.

Rank symmetry (``classes``, from :mod:`mcdla.hw.symmetry`): resources of one class
carry the same load at every instant, so the network keeps one of them, the class's
first, and a flow started with ``copies=m`` stands for m identical flows, one per rank
of a class. On a resource class of k members, a flow crossing c of them loads each
member with ``m x c / k`` times its rate (an integer for a flow of a class of ranks:
each member of the class is crossed by as many of the m flows); the max-min rates
are solved with those weights (:func:`~mcdla.hw.maxmin.max_min_rates`). Counts and
bytes count every copy, and :meth:`FlowNetwork.stats` and :attr:`FlowNetwork.timeline`
report every member of a class.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cached_property
from operator import attrgetter
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import simpy

from mcdla.hw.maxmin import UNIT_WEIGHTS, max_min_rates
from mcdla.sim.flowpaths import LONG_PATH, PathClasses
from mcdla.sim.flowsetup import add_each, per_class
from mcdla.sim.flowstats import ByClass, ChangedLoads, NetworkStats, members_of

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FlowNetwork", "NetworkStats"]

# A flow whose remaining bytes fall to this fraction of its size is delivered: the
# rate * dt updates accumulate rounding of this order and must not leave a sliver.
_DONE_FRACTION = 1e-9
# Relative slack when comparing a completion time with the clock: the timeout's
# ``now + (finish - now)`` may differ from ``finish`` in the last bits.
_TIME_SLACK = 1e-12
# Relative slack of the capacity invariant: a load is the sum of max-min shares, which
# may exceed the capacity it splits by a few ulps, never by more.
CAPACITY_SLACK = 1e-9
# From this many resources on, loads and accounting are numpy arrays (one vector
# operation per update instead of one per resource); below it, dicts, which avoid
# numpy's import (about 80 ms, more than a small simulation) and per-call overhead.
# Basis (measured here): advancing the accounting costs about 0.16 us per loaded
# resource as dicts, 13 us for 2,048 resources as arrays (336 us as dicts if all are
# loaded); an 8-device design has 74-315 resources, a 64-device ring 1,536.
VECTOR_RESOURCES = 2048
# Bound on the memory of solved components: the flows listed in their keys, in all
# (a key's entry and its rate about 30 bytes: some 60 MB at the bound, beside the GBs
# of a 16,384-device run). An iteration's kinds of components are few (9 at 1,024
# devices), so the bound is only reached by runs with very many distinct components.
_SOLVED_FLOWS = 2_000_000
# Per searched component, the distinct rate solutions whose loads are kept as arrays:
# a component meets a handful of flow mixes in an iteration; the bound caps memory.
_LOADS_PER_COMPONENT = 64


class _Flow:
    """Mutable state of one flow (internal; users only see its completion event)."""

    __slots__ = ("id", "size_bytes", "path", "pid", "tag", "done", "remaining_bytes", "rate_Bps", "finish_s",
                 "done_below", "copies")

    def __init__(self, flow_id: int, size_bytes: float, path: tuple[str, ...], pid: int, tag: str,
                 done: simpy.Event, copies: int = 1):
        self.id = flow_id
        self.size_bytes = size_bytes
        self.path = path  # constrained resources only
        self.pid = pid  # the network's number for this path (equal paths, equal numbers)
        self.tag = tag
        self.done = done
        self.remaining_bytes = size_bytes
        self.rate_Bps = 0.0
        self.finish_s = math.inf
        self.done_below = _DONE_FRACTION * size_bytes  # remaining bytes that count as delivered
        self.copies = copies  # the identical flows this one stands for (rank symmetry)


_start_order = attrgetter("id")
_finish_of = attrgetter("finish_s")


class FlowNetwork:
    """Flows over resources with capacities, shared max-min fairly.

    ``capacities_Bps`` maps resource ids to bandwidths (bytes/s, > 0); a resource id
    absent from it is unconstrained. ``on_rates(now_s, {resource: load_Bps})`` is
    called after every rate computation with the resources whose load changed (a
    load of 0 means the resource went idle), as a read-only mapping.
    ``record_timeline=True`` keeps the same changes in :attr:`timeline`.
    ``classes`` (resource -> the first resource of its class; absent: a class of its
    own) lumps resources that rank symmetry shows carry equal loads (module docstring):
    ``on_rates`` then reports the classes' first resources. ``orbits``: the translation
    (mcdla.hw.translation) whose orbits every class is a union of, if known (the
    symmetry's): a ring bound by period under it is counted by period (:meth:`by_period`).
    """

    def __init__(
        self,
        env: simpy.Environment,
        capacities_Bps: Mapping[str, float],
        *,
        on_rates: Callable[[float, dict[str, float]], None] | None = None,
        record_timeline: bool = False,
        classes: Mapping[str, str] | None = None,
        also: Mapping[str, tuple[str, ...]] | None = None,
        orbits=None,
    ):
        self.env = env
        # Resource -> the resources a flow over it loads too (a shared NIC's ports behind
        # each of its devices' links): added to every path that crosses it.
        self.also: Mapping[str, tuple[str, ...]] = also or {}
        set_up = per_class(capacities_Bps, classes or {})  # (the map, the firsts), or None: one by one
        self._capacities: dict[str, float] = set_up[0] if set_up else {}
        # Rank symmetry: resource -> its class's first resource; each first -> its members, counted.
        self._rep: Mapping[str, str] = classes or {}
        self._sizes: dict[str, int] = dict(Counter(self._rep.values()))
        self._firsts = frozenset(self._sizes)
        self._classes = PathClasses(self._capacities, self._rep, self._sizes, self.also, orbits)  # each path once
        self.orbits = orbits if self._sizes else None  # alike in capacity along them (ringsplit reads by period)
        self._weights: list[tuple[float, ...] | None] = []  # path number -> weights (None: all 1)
        self._credits: list[tuple] = []  # path number -> its resources' numbers and weights, as arrays (_credit)
        self._added: dict[int, tuple] = {}  # id(resource tuple) -> (it, capacity) added (add_resources)
        # Paths, numbered: a path as given -> (its constrained resources, their number),
        # so that a path is checked and filtered once, not at every transfer.
        self._given: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
        self._resources(capacities_Bps, set_up)
        self._long: dict[tuple[int, int], tuple] = {}  # (id(path), copies) -> (path, known): long paths
        self._on_rates = on_rates
        self._timeline: dict[str, list[tuple[float, float]]] | None = {} if record_timeline else None
        self._flows: dict[int, _Flow] = {}  # flows in the fluid phase, in join order
        self._joining: list[_Flow] = []  # flows whose latency elapsed at this instant
        self._flush_pending, self._next_id = False, 0
        self._last_s = env.now
        self._timer_s: float | None = None
        self._timer_gen = 0
        self._users: dict[str, dict[int, None]] = {}  # resource -> flows on it, in join order
        self._touched: dict[str, None] = {}  # resources whose flows changed since the last computation
        # accounting
        self._flows_started = 0
        self._flows_finished = 0
        self._bytes_sent = 0.0
        self._bytes_delivered = 0.0
        self._rate_computations = 0
        # The worst load above capacity seen: (load / capacity, resource, time_s, load_Bps).
        self.overload: tuple[float, str, float, float] | None = None
        self._pids: dict[tuple[str, ...], int] = {}  # constrained path -> number
        self._paths: list[tuple[str, ...]] = []  # number -> constrained path
        # Solved components: the paths of a component's flows, in order, -> their max-min
        # rates and the loads they put on each resource. Rates depend on nothing else
        # (capacities never change), and an iteration's components repeat: a data-parallel
        # ResNet-34 iteration solves 444 components of only 9 kinds.
        self._solved: dict[tuple[int, ...], tuple[list[float], dict[str, float]]] = {}
        self._solved_size = 0  # flows held in _solved's keys, bounded by _SOLVED_FLOWS
        # Components searched: (touched resources, paths of all flows in join order) ->
        # [positions of the component's flows (None: all), the resources reached, their
        # numbers and their new loads per rates object (arrays only)].
        self._components: dict[tuple, list] = {}
        self._components_size = 0

    def _resources(self, capacities_Bps: Mapping[str, float], set_up) -> None:
        """The resources' state. Resources are numbered in the order they were added. In a
        large network their state is arrays (grown by _sync when resources are added):
        capacity, load (the sum of its flows' rates; 0 when idle), bytes carried, busy
        time, and whether it ever carried anything; an update of every resource is,
        element by element, the same float operation as the dicts' one resource at a
        time. In a small one, dicts: resource -> load (> 0), bytes carried, busy time.
        ``set_up``: the classes' set-up (flowsetup.per_class), or None: one by one."""
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        # The resources it keeps: a class's first for its members. Counted among the
        # capacities only: the classes also list resources added later (the devices'
        # reduction units, one class a device class), which counted as members lumped a
        # 4,096-GPU run's 3,586 kept resources to -382 and kept it on dicts.
        if set_up:
            kept = len(set_up[1])
        elif self._rep:
            kept = len(set(map(self._rep.get, capacities_Bps, capacities_Bps)))
        else:
            kept = len(capacities_Bps)
        self._vector = kept >= VECTOR_RESOURCES
        if self._vector:
            import numpy

            self._np = numpy
            self._cap = self._loadv = self._bytes = self._busy = numpy.zeros(0)
            self._ever = numpy.zeros(0, dtype=bool)
        self._load: dict[str, float] = {}
        self._bytes_by_resource: dict[str, float] = {}
        self._busy_s_by_resource: dict[str, float] = {}
        if set_up:
            self._names, self._index = set_up[1], {name: i for i, name in enumerate(set_up[1])}
        else:
            self._add_many(capacities_Bps.items())

    # -- construction -------------------------------------------------------------

    @property
    def capacities_Bps(self) -> Mapping[str, float]:
        return self._capacities

    @property
    def timeline(self) -> dict[str, list[tuple[float, float]]] | None:
        """Every load change per resource (``record_timeline``), every member of a class listed."""
        if self._timeline is None or not self._sizes:
            return self._timeline
        members = self._members
        return {m: changes for r, changes in self._timeline.items() for m in members.get(r, (r,))}

    def representative(self, resource: str) -> str:
        """The resource that stands for ``resource``'s class (itself without symmetry)."""
        return self._rep.get(resource, resource)

    @cached_property  # listed when first asked (the timeline, the accounting iterated), not at set-up
    def _members(self) -> dict[str, list[str]]:
        return members_of(self._rep)

    def _expand(self, by_resource: dict[str, float]) -> Mapping[str, float]:
        """The accounting of every member of a class: its first's, answered when asked."""
        if not self._sizes:
            return by_resource
        return ByClass(by_resource, self._rep, self._firsts, lambda: self._members)

    def add_resource(self, resource: str, capacity_Bps: float, copies: int = 1) -> None:
        """Adds a constrained resource, or checks that an existing one has this capacity.

        Used by collectives for per-rank reduction units, which several collectives
        (and rings) on the same device share. ``copies``: with rank symmetry, the alike
        resources it stands for, unnamed (a library's rate cap on each of the rings of
        ``copies`` alike groups of ranks); they are not listed in the accounting.
        """
        if copies > 1 and self._sizes and self._sizes.get(resource, 1) != copies:
            self._classes.clear()  # a class resized: its paths' weights change
            self._sizes[resource] = copies
        self._add_many(((resource, capacity_Bps),))

    def _add_many(self, items) -> None:
        """:meth:`add_resource` of each (resource, capacity) without its class size: the
        loop every resource goes through where the classes allow no set-up per class."""
        if add_each(items, self._capacities, self._rep, self._index, self._names) and self._given:
            self._given.clear()  # a given path may now cross one more constrained resource
            self._long.clear()
            self._classes.clear()

    def add_resources(self, resources: tuple[str, ...], capacity_Bps: float) -> None:
        """:meth:`add_resource` for each of ``resources``, once per distinct tuple: a
        collective's reduction units, asked for by every collective on a ring (and each
        ring's the others' reordered: looked up, not added again, once known)."""
        if self._added.get(id(resources), (None, None)) != (resources, capacity_Bps):
            if set(map(self._capacities.get, resources)) != {capacity_Bps}:
                self._add_many((resource, capacity_Bps) for resource in resources)
            self._added[id(resources)] = (resources, capacity_Bps)  # by identity: hashing 16k names costs

    # -- the one operation --------------------------------------------------------

    def transfer(
        self,
        size_bytes: float,
        path: Sequence[str],
        latency_s: float = 0.0,
        tag: str = "",
        copies: int = 1,
        even: bool = True,
    ) -> simpy.Event:
        """Starts a flow; the returned event succeeds (value: the tag) at its last byte.

        ``copies``: the identical flows this one stands for (rank symmetry: one per rank
        of a class), each on its own member of the path's resource classes; ``even``:
        they load every member of a class they cross alike (checked). A group of
        :meth:`alike` flows need not (a phase's groups do together), so is not checked."""
        size_bytes = float(size_bytes)
        latency_s = float(latency_s)
        if not 0.0 <= size_bytes < math.inf:  # NaN fails too
            raise ValueError(f"size_bytes must be a finite number >= 0, got {size_bytes!r}")
        if not 0.0 <= latency_s < math.inf:
            raise ValueError(f"latency_s must be a finite number >= 0, got {latency_s!r}")
        path = tuple(path)
        if len(path) > LONG_PATH:  # a ring's phase: the same tuple at every collective, known by identity
            hit = self._long.get((id(path), copies))
            known = hit[1] if hit is not None and hit[0] is path else None
            if known is None:
                known = self._given.get(path if copies == 1 else (path, copies)) or self._new_path(path, copies, even)
                self._long[(id(path), copies)] = (path, known)  # holding the path keeps its id its own
        else:
            known = self._given.get(path if copies == 1 else (path, copies)) or self._new_path(path, copies, even)
        done = self.env.event()
        flow = _Flow(self._next_id, size_bytes, known[0], known[1], tag, done, copies)
        self._next_id += 1
        self._flows_started += copies
        self._bytes_sent += size_bytes * copies
        if latency_s > 0:
            self.env.timeout(latency_s, flow).callbacks.append(self._latency_elapsed)
        else:
            self._enqueue(flow)
        return done

    @property
    def lumped(self) -> bool:
        """Whether resources stand for classes (rank symmetry)."""
        return bool(self._sizes)

    def alike(self, flows: Sequence[tuple[float, Sequence[str], float]]) -> list[tuple[float, tuple, float, int]]:
        """``(size_bytes, path, latency_s)`` flows to start at once (a collective phase's),
        as ``(size_bytes, path, latency_s, copies)``: with rank symmetry, flows alike (same
        size and latency, crossing the same resource classes as often) are one group, so
        a phase of one flow per rank costs one flow per class; without, one each, in order."""
        if not self._sizes:
            return [(size, tuple(path), latency, 1) for size, path, latency in flows]
        alike: dict[tuple, list] = {}
        for size, path, latency in flows:
            path = tuple(path)
            known = self._given.get(path)
            if known is None:  # kept as a path met again (the next phase's) is looked up, not classified
                known = self._given[path] = self._classes.by_sequence(path, self._new_path)
            key = (known[1], float(size), float(latency))
            group = alike.get(key)
            if group is None:
                alike[key] = [path, 1]
            else:
                group[1] += 1
        return [(size, path, latency, n) for (_, size, latency), (path, n) in alike.items()]

    def _latency_elapsed(self, event: simpy.Event) -> None:
        self._joining.append(event.value)  # the flow whose latency this timeout was
        self._request_flush()

    def by_period(self, path: tuple[str, ...], period: tuple) -> tuple[str, ...]:
        """``path``, marked as beginning with a ring's n hops bound by period and ending
        with its m reduction units (``period``: its translation, q, n, m; Ring.period), to
        be counted by period (flowpaths.PathClasses.mark)."""
        return self._classes.mark(path, period)

    def _new_path(self, path: tuple[str, ...], copies: int = 1, even: bool = True) -> tuple[tuple[str, ...], int]:
        """Checks a path not seen before and numbers its constrained resources (with
        symmetry: their classes, and the weight of the flow on each: flowpaths.PathClasses)."""
        constrained, weights = self._classes.classify(path, copies, even)
        key = constrained if weights is None else (constrained, weights)
        pid = self._pids.get(key)
        if pid is None:
            pid = self._pids[key] = len(self._paths)
            self._paths.append(constrained)
            self._weights.append(weights)
            if self._vector:  # residual * 1.0 is residual, to the bit
                self._credits.append((self._np.array([self._index[r] for r in constrained], dtype=self._np.intp),
                                      self._np.array(weights or [1.0] * len(constrained), dtype=float)))
        known = self._given[path if copies == 1 else (path, copies)] = (constrained, pid)
        return known

    # -- accounting ---------------------------------------------------------------

    def stats(self) -> NetworkStats:
        """The accounting up to ``env.now`` (loads held since the last change included)."""
        dt = self.env.now - self._last_s
        if self._vector:
            self._sync()
            carried, busy, ever = self._bytes.copy(), self._busy.copy(), self._ever.copy()
            if dt > 0:
                self._carry(carried, busy, ever, dt)
            names = self._names
            seen = ever.nonzero()[0].tolist()
            bytes_by = dict(zip([names[i] for i in seen], carried[seen].tolist()))
            busy_by = dict(zip([names[i] for i in seen], busy[seen].tolist()))
        else:
            bytes_by = dict(self._bytes_by_resource)
            busy_by = dict(self._busy_s_by_resource)
            if dt > 0:
                for resource, load in self._load.items():
                    bytes_by[resource] = bytes_by.get(resource, 0.0) + load * dt
                    busy_by[resource] = busy_by.get(resource, 0.0) + dt
        return NetworkStats(
            time_s=self.env.now,
            flows_started=self._flows_started,
            flows_finished=self._flows_finished,
            bytes_sent=self._bytes_sent,
            bytes_delivered=self._bytes_delivered,
            rate_computations=self._rate_computations,
            bytes_by_resource=self._expand(bytes_by),
            busy_s_by_resource=self._expand(busy_by),
        )

    # -- internals ----------------------------------------------------------------

    def _enqueue(self, flow: _Flow) -> None:
        """Queues a flow to join the sharing; one flush per instant joins them all."""
        self._joining.append(flow)
        self._request_flush()

    def _request_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            # A zero delay timeout runs after every event already scheduled for this
            # instant (including processes woken by completions, which may start new
            # flows), so all the changes of one instant share one rate computation.
            self.env.timeout(0).callbacks.append(self._flush)

    def _flush(self, _event: simpy.Event) -> None:
        self._flush_pending = False
        joining, self._joining = self._joining, []
        self._advance()
        flows, users, touched = self._flows, self._users, self._touched
        for flow in joining:
            if flow.size_bytes == 0 or not flow.path:
                self._deliver(flow)  # no bytes, or no constrained resource: infinite rate
                continue
            fid = flow.id
            flows[fid] = flow
            for resource in flow.path:
                on = users.get(resource)
                if on is None:
                    on = users[resource] = {}
                on[fid] = None
                touched[resource] = None
        if self._touched:
            self._recompute()

    def _advance(self) -> None:
        """Moves every flow and the accounting from the last change to ``now``."""
        now = self.env.now
        dt = now - self._last_s
        if dt <= 0:
            return
        self._last_s = now
        for flow in self._flows.values():
            flow.remaining_bytes -= flow.rate_Bps * dt
        if self._vector:
            self._sync()
            self._carry(self._bytes, self._busy, self._ever, dt)
            return
        bytes_by, busy_by = self._bytes_by_resource, self._busy_s_by_resource
        for resource, load in self._load.items():
            bytes_by[resource] = bytes_by.get(resource, 0.0) + load * dt
            busy_by[resource] = busy_by.get(resource, 0.0) + dt

    def _credit(self, flow: _Flow, residual: float) -> None:
        """Adds what a delivered flow had left (or overshot) to the bytes of its resources,
        so that what a resource carried is its flows' sizes. A flow is delivered within a
        slack relative to the clock (:data:`_TIME_SLACK`), which at a late clock (a run of
        1,000 s launch overheads) is a fraction of a microsecond, bytes at link rates: the
        rate * dt integral alone would lose them and break the byte accounting."""
        if self._vector:  # one vector operation: the same float additions, in path order
            self._sync()
            self._np.add.at(self._bytes, self._credits[flow.pid][0], residual * self._credits[flow.pid][1])
            return
        weights = self._weights[flow.pid] if self._sizes else None
        for resource, w in zip(flow.path, UNIT_WEIGHTS if weights is None else weights):
            self._bytes_by_resource[resource] = self._bytes_by_resource.get(resource, 0.0) + residual * w

    def _carry(self, carried: np.ndarray, busy: np.ndarray, ever: np.ndarray, dt: float) -> None:
        """Adds ``dt`` seconds at today's loads to ``carried`` bytes and ``busy`` time."""
        loaded = self._loadv > 0
        carried[loaded] += self._loadv[loaded] * dt
        busy[loaded] += dt
        ever |= loaded

    def _sync(self) -> None:
        """Grows the resource arrays to the resources added since."""
        grow = len(self._names) - len(self._cap)
        if grow:
            np, caps = self._np, self._capacities
            added = np.array([caps[name] for name in self._names[len(self._cap):]], dtype=float)
            self._cap = np.concatenate((self._cap, added))
            self._loadv, self._bytes, self._busy = (np.concatenate((a, np.zeros(grow)))
                                                    for a in (self._loadv, self._bytes, self._busy))
            self._ever = np.concatenate((self._ever, np.zeros(grow, dtype=bool)))

    def _recompute(self) -> None:
        """New fair rates where flows changed; new loads, completion times and timer.

        Only the flows connected (through shared resources, transitively) to a
        resource whose flows changed can get a new max-min rate, so only that
        component is solved: offloads of different devices, or a collective and
        an unrelated DMA, do not pay for each other's changes.

        Which flows and resources form the component is a function of the touched
        resources and the paths of the flows, in join order; like the rates, it is
        searched once per kind (see :meth:`_component`) and reused.
        """
        now = self.env.now
        self._rate_computations += 1
        touched, self._touched = self._touched, {}
        joined = list(self._flows.values())  # join order
        key = (frozenset(touched), tuple([flow.pid for flow in joined]))
        found = self._components.get(key)
        if found is None:
            found = self._component(touched, joined)
            if self._components_size + len(joined) > _SOLVED_FLOWS:
                self._components.clear()
                self._components_size = 0
            self._components[key] = found
            self._components_size += len(joined)
        positions = found[0]
        if positions is None:  # everything is connected: join order
            members = joined
        else:  # start order, whatever the search order was
            members = [joined[i] for i in positions]
            members.sort(key=_start_order)
        rates, sums = self._solve(tuple([flow.pid for flow in members]))
        for flow, rate in zip(members, rates):
            flow.rate_Bps = rate
            # A zero share (float residue of a saturated resource) waits for the next change.
            flow.finish_s = now + max(flow.remaining_bytes, 0.0) / rate if rate > 0 else math.inf
        # The component is closed: every flow on a reached resource is in it.
        if self._vector:
            self._vector_loads(found, sums)
        else:
            self._dict_loads(found[1], sums)
        self._schedule(min(map(_finish_of, joined), default=math.inf))

    def _dict_loads(self, reached, sums: Mapping[str, float]) -> None:
        """The component's new loads, resource by resource (no numpy)."""
        changed: dict[str, float] = {}
        load, users, caps = self._load, self._users, self._capacities
        for resource in reached:
            value = sums.get(resource, 0.0)
            if load.get(resource, 0.0) != value:
                changed[resource] = value
                if value > caps[resource] * (1 + CAPACITY_SLACK):
                    self._note_overload(resource, value)
            if value > 0:
                load[resource] = value
            else:
                load.pop(resource, None)
                if not users.get(resource, True):
                    del users[resource]
        if changed:
            self._publish(changed)

    def _vector_loads(self, found, sums: Mapping[str, float]) -> None:
        """The component's new loads as a vector, kept with it per rates object in the
        order of its reached resources."""
        np = self._np
        self._sync()
        reached, index, by_rates = found[1], found[2], found[3]
        if index is None:
            index = found[2] = np.array([self._index[resource] for resource in reached], dtype=np.intp)
        known = by_rates.get(id(sums))
        if known is None or known[0] is not sums:
            if len(by_rates) > _LOADS_PER_COMPONENT:
                by_rates.clear()
            values = [sums.get(resource, 0.0) for resource in reached]
            idle = tuple(resource for resource, value in zip(reached, values) if not value > 0)
            known = by_rates[id(sums)] = (sums, np.array(values, dtype=float), idle)
        new = known[1]
        loads = self._loadv
        differ = (loads[index] != new).nonzero()[0]
        if len(differ):
            where, values = index[differ], new[differ]
            loads[where] = values
            over = (values > self._cap[where] * (1 + CAPACITY_SLACK)).nonzero()[0]
            names = self._names
            for k in over.tolist():
                self._note_overload(names[where[k]], float(values[k]))
            self._publish(ChangedLoads(names, self._index, where, values))
        users = self._users
        for resource in known[2]:  # idle now: forgotten once no flow is on it
            if not users.get(resource, True):
                del users[resource]

    def _component(self, touched: dict[str, None], joined: list[_Flow]):
        """The flows connected to ``touched`` (None: all of them; else their positions in
        ``joined``) and the resources they and ``touched`` cover."""
        flows, users = self._flows, self._users
        component: dict[int, None] = {}
        reached = dict(touched)
        queue = list(touched)
        total = len(flows)
        while queue and len(component) < total:
            for fid in users.get(queue.pop(), ()):
                if fid not in component:
                    component[fid] = None
                    for resource in flows[fid].path:
                        if resource not in reached:
                            reached[resource] = None
                            queue.append(resource)
        if len(component) == total:  # everything is connected: skip the rest of the search
            reached.update(dict.fromkeys(users))
            positions = None
        else:
            positions = tuple(i for i, flow in enumerate(joined) if flow.id in component)
        # [positions, resources reached, their numbers (arrays only), id(rates) -> new loads]
        return [positions, tuple(reached), None, {}]

    def _solve(self, key: tuple[int, ...]) -> tuple[list[float], dict[str, float]]:
        """The max-min rates of flows on the paths numbered ``key`` (in that order) and
        the load they put on each resource (summed in that order), solved once per key."""
        solved = self._solved.get(key)
        if solved is None:
            paths = self._paths
            # With symmetry, each class's first resource, loaded by the weighted flows;
            # without, every weight is 1 (rate * 1 is rate, to the bit).
            weights = [self._weights[pid] for pid in key] if self._sizes else None
            by_position = max_min_rates({i: paths[pid] for i, pid in enumerate(key)}, self._capacities,
                                        None if weights is None else dict(enumerate(weights)))
            rates = [by_position[i] for i in range(len(key))]
            sums: dict[str, float] = {}
            for k, (pid, rate) in enumerate(zip(key, rates)):
                for resource, w in zip(paths[pid], UNIT_WEIGHTS if weights is None else weights[k]):
                    sums[resource] = sums.get(resource, 0.0) + rate * w
            if self._solved_size + len(key) > _SOLVED_FLOWS:
                self._solved.clear()
                self._solved_size = 0
            solved = self._solved[key] = (rates, sums)
            self._solved_size += len(key)
        return solved

    def _note_overload(self, resource: str, load_Bps: float) -> None:
        ratio = load_Bps / self._capacities[resource]
        if self.overload is None or ratio > self.overload[0]:
            self.overload = (ratio, resource, self.env.now, load_Bps)

    def _publish(self, changed: Mapping[str, float]) -> None:
        """Reports the resources whose load changed (0: went idle)."""
        now = self.env.now
        if self._timeline is not None:
            for resource, value in changed.items():
                self._timeline.setdefault(resource, []).append((now, value))
        if self._on_rates is not None:
            self._on_rates(now, changed)

    def _schedule(self, next_s: float) -> None:
        if next_s == self._timer_s:
            return
        self._timer_gen += 1
        if math.isinf(next_s):
            self._timer_s = None
            return
        self._timer_s = next_s
        gen = self._timer_gen
        delay = max(next_s - self.env.now, 0.0)
        self.env.timeout(delay).callbacks.append(lambda _event: self._on_timer(gen))

    def _on_timer(self, gen: int) -> None:
        if gen != self._timer_gen:
            return  # superseded by a later rate change
        self._timer_s = None
        self._advance()
        now = self.env.now
        horizon = now + _TIME_SLACK * max(abs(now), 1e-9)
        finished = [f for f in self._flows.values() if f.finish_s <= horizon or f.remaining_bytes <= f.done_below]
        if not finished:  # cannot happen with exact arithmetic; be safe with floats
            self._schedule(min(map(_finish_of, self._flows.values()), default=math.inf))
            return
        flows, users, touched = self._flows, self._users, self._touched
        for flow in finished:
            fid = flow.id
            del flows[fid]
            for resource in flow.path:
                del users[resource][fid]
                touched[resource] = None
            self._deliver(flow)
        # The new rates are computed by the flush of this instant, after the
        # processes woken by these completions have started their next flows.
        self._request_flush()

    def _deliver(self, flow: _Flow) -> None:
        if flow.remaining_bytes:
            self._credit(flow, flow.remaining_bytes)
        flow.remaining_bytes = 0.0
        flow.rate_Bps = 0.0
        self._flows_finished += flow.copies
        self._bytes_delivered += flow.size_bytes * flow.copies
        flow.done.succeed(flow.tag)
