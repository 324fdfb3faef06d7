"""A communicator: the collectives of one group of devices, in launch order."""

from __future__ import annotations

from dataclasses import replace

import simpy

from mcdla.errors import InputError
from mcdla.hw.nccl_hbm import hbm_bytes
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.collectives import CollectiveRecord
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.records import RunInputs

__all__ = ["CollectiveStream"]


class CollectiveStream:
    """A communicator: collectives of one group of devices, in launch order, one at a time.

    Every device of the group calls :meth:`join` for the same collective; the last
    arrival queues it, and the stream runs it over the group's ``rings`` (all the
    topology's rings, or their restriction to a tensor- or data-parallel group) with
    the execution's collective algorithm. Communicators of different groups run
    concurrently, sharing the network.
    """

    def __init__(self, env, net: FlowNetwork, inputs: RunInputs, reduce_Bps: float, rings=None,
                 devices: int | None = None, *, weights: dict[int, int] | None = None, copies: int = 1,
                 axis: str = "dp", hot_share: float | None = None):
        self.env, self.net, self.inputs, self.reduce_Bps = env, net, inputs, reduce_Bps
        self.axis = axis  # the parallel axis of its group: its records say so
        # Rank symmetry: a simulated device's join counts for the devices of its class in
        # the group (``weights``), and the collectives stand for ``copies`` alike groups.
        self.weights, self.copies = weights or {}, copies
        self.devices = len(inputs.topology.devices) if devices is None else devices
        self.rings = inputs.topology.rings if rings is None else rings
        launch_s = inputs.topology.device.launch_overhead
        # ``hot_share``: a skewed all-to-allv's (expert parallelism's routing, mcdla.sim.expert)
        self.algorithm = COLLECTIVES.get(inputs.execution.collective, key="execution.collective")(launch_s, hot_share)
        # A group's communicator whose rings the algorithm cannot run (hierarchical on a
        # group spread unevenly over the nodes, direct on rings between nodes) runs the
        # ring, as NCCL picks per communicator; the design's own rings are refused instead.
        self.fallback = ""
        if rings is not None:
            try:  # (no algorithm's check depends on the operation but the tree's, stricter for all-reduce)
                self.algorithm.check("all_reduce", self.rings, net.capacities_Bps)
            except InputError:
                self.fallback = "ring"
                self.algorithm = COLLECTIVES.get("ring")(launch_s, hot_share)
        self.records: list[CollectiveRecord] = []
        self.running = False  # a collective of this group is on the wire (its kernels hold SMs)
        # The HBM bandwidth its latest collective's kernels take on each device of the group
        # (:meth:`_hbm_rate`), by (op, size) as computed.
        self.hbm_Bps = 0.0
        self._hbm_rates: dict[tuple[str, float], float] = {}
        self._queue: simpy.Store = simpy.Store(env)
        self._barriers: dict[tuple, list] = {}  # collective key -> [devices arrived, done event]
        env.process(self._serve())

    def join(self, key: tuple, op: str, size_bytes: float, device: int | None = None) -> simpy.Event:
        """``device`` joins a collective (with symmetry, for the devices of its class here)."""
        if key not in self._barriers:
            self._barriers[key] = [0, self.env.event()]
        barrier = self._barriers[key]
        barrier[0] += self.weights.get(device, 1)
        done = barrier[1]
        if barrier[0] == self.devices:
            if self.devices == 1 or size_bytes <= 0:
                done.succeed()
            else:
                self._queue.put((op, size_bytes, done, "/".join(map(str, key))))
        return done

    def unfinished(self) -> bool:
        return any(not event.triggered for _, event in self._barriers.values())

    def _serve(self):
        chunk = self.inputs.execution.training.chunk
        while True:
            op, size_bytes, done, label = yield self._queue.get()
            kwargs = {"reduce_Bps": self.reduce_Bps, "tag": label}
            if self.copies > 1:
                kwargs["copies"] = self.copies
            if chunk is not None:
                kwargs["chunk_bytes"] = chunk
            self.hbm_Bps = self._hbm_rate(op, size_bytes, kwargs)
            self.running = True
            record = yield self.algorithm.start(self.env, self.net, self.rings, op, size_bytes, **kwargs)
            self.running = False
            self.records.append(replace(record, algorithm=self.fallback or record.algorithm, axis=self.axis))
            done.succeed()

    def _hbm_rate(self, op: str, size_bytes: float, run: dict) -> float:
        """The HBM bytes per second NCCL's kernels take on each device of the group while
        ``op`` of ``size_bytes`` runs: the bytes they read and write there
        (:func:`mcdla.hw.nccl_hbm.hbm_bytes`, staged as the algorithm the communicator
        runs stages it) over the collective's time on idle links (the algorithm's closed
        form; a collective slowed by contention takes them at a lower rate, not modelled);
        0 on a device without NCCL kernels (no ``nccl_sms``, the paper's devices)."""
        if not self.inputs.topology.device.nccl_sms:
            return 0.0
        rate = self._hbm_rates.get((op, size_bytes))
        if rate is None:
            caps = self.net.capacities_Bps
            run = {k: run[k] for k in ("chunk_bytes", "reduce_Bps") if k in run}
            staging, wire_factor = self.algorithm.hbm_staging(op, size_bytes, self.rings, caps, **run)
            seconds = self.algorithm.time_s(op, size_bytes, self.rings, caps, **run)
            moved = hbm_bytes(op, size_bytes, self.devices, staging, wire_factor)
            rate = self._hbm_rates[(op, size_bytes)] = moved / seconds if seconds > 0 else 0.0
        return rate
