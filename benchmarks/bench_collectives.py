"""Cost of simulating collectives and busy flow networks: events and wall time.

Run ``python benchmarks/bench_collectives.py``. Cases:

- an all-reduce on one bidirectional 16-node ring (MC-DLA's ring, Fig. 9);
- an all-reduce on 6 directed 8-rank rings (DC-DLA's cube-mesh rings);
- the same all-reduce while 40 offload flows contend for the rings' channels;
- a flow network with ~50 concurrent flows and thousands of flow events.

The target is well under 100 ms of wall time per all-reduce.
"""

from __future__ import annotations

import random
import statistics
import time

import simpy

from mcdla.hw.network import Ring, channel_id
from mcdla.sim.collectives import collective, ring_of_devices, run_collective
from mcdla.sim.flownet import FlowNetwork

LINK_Bps = 25e9
HOP_S = 500e-9
SIZE_BYTES = 64e6


def six_rings_of_eight() -> tuple[list[Ring], dict[str, float]]:
    """Six directed 8-rank rings: three Hamiltonian cycles, each used both ways, on parallel links."""
    orders = [list(range(8)), [0, 2, 4, 6, 1, 3, 5, 7], [0, 3, 6, 1, 4, 7, 2, 5]]
    rings, caps = [], {}
    for k, order in enumerate(orders):
        for direction, seq in (("+", order), ("-", [order[0]] + order[:0:-1])):
            ranks = tuple(f"D{i}" for i in seq)
            segments = []
            for i in range(8):
                a, b = ranks[i], ranks[(i + 1) % 8]
                segments.append((channel_id(a, b, k),))
            rings.append(Ring(f"r{k}{direction}", ranks, tuple(segments), (HOP_S,) * 8))
            caps.update({seg[0]: LINK_Bps for seg in segments})
    return rings, caps


def bench(name, fn, repeat=5):
    walls, last = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = fn()
        walls.append(time.perf_counter() - t0)
    print(f"{name:<44} {last:<40} wall median {statistics.median(walls) * 1e3:8.2f} ms")


def allreduce(rings, caps):
    run = run_collective(rings, caps, "all_reduce", SIZE_BYTES)
    return f"events {run.events}, flows {run.record.flows}, rates {run.rate_computations}"


def allreduce_with_offload(rings, caps):
    rng = random.Random(0)
    env = simpy.Environment()
    net = FlowNetwork(env, caps)
    channels = sorted(caps)

    def offloads():
        for _ in range(200):
            yield net.transfer(rng.uniform(1e5, 2e6), rng.sample(channels, 2), HOP_S)

    for _ in range(40):
        env.process(offloads())
    proc = collective(env, net, rings, "all_reduce", SIZE_BYTES)
    env.run()
    stats = net.stats()
    return f"flows {stats.flows_finished}, rates {stats.rate_computations}, AR {proc.value.time_s * 1e3:.3f} ms"


def busy_network():
    rng = random.Random(1)
    env = simpy.Environment()
    caps = {f"c{i}": LINK_Bps for i in range(96)}
    net = FlowNetwork(env, caps)
    names = list(caps)

    def worker():
        for _ in range(100):
            yield net.transfer(rng.uniform(1e5, 1e7), rng.sample(names, rng.randint(1, 16)), HOP_S)

    for _ in range(50):
        env.process(worker())
    env.run()
    stats = net.stats()
    return f"flows {stats.flows_finished}, rates {stats.rate_computations}"


def main() -> None:
    ring16 = ring_of_devices(16, LINK_Bps, HOP_S)
    six = six_rings_of_eight()
    bench("all-reduce 64 MB, 16-node ring (2 rings)", lambda: allreduce(*ring16))
    bench("all-reduce 64 MB, 6 directed 8-rank rings", lambda: allreduce(*six))
    bench("all-reduce + 8000 offload flows, 6 rings", lambda: allreduce_with_offload(*six), repeat=1)
    bench("50 concurrent flows, 5000 flows, 96 links", busy_network, repeat=1)


if __name__ == "__main__":
    main()
