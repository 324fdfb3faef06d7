"""The collective-algorithm registry: every registered algorithm's simulation agrees
with its closed form on idle links and moves exactly the bytes its steps define."""

from __future__ import annotations

import pytest

from mcdla.errors import InputError
from mcdla.hw.collective_model import OPS
from mcdla.hw.topology import load_topology
from mcdla.sim.collectives import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork


def _run(algorithm, topology, op, size):
    env = CountingEnvironment()
    net = FlowNetwork(env, topology.capacities())
    process = algorithm.start(env, net, topology.rings, op, size)
    env.run()
    return process.value, net.stats().bytes_by_resource


@pytest.mark.parametrize("name", COLLECTIVES.names())
@pytest.mark.parametrize("topology", ["dc", "hc", "star", "ring"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [4e3, 8e6, 1e9])
def test_simulation_matches_closed_form_and_step_bytes(name, topology, op, size):
    algorithm = COLLECTIVES.get(name)()
    topo = load_topology(topology)
    record, carried = _run(algorithm, topo, op, size)
    closed = algorithm.time_s(op, size, topo.rings, topo.capacities())
    assert record.time_s == pytest.approx(closed, rel=1e-9)
    expected = algorithm.channel_bytes(op, size, topo.rings)
    for channel in topo.channels:
        assert carried.get(channel, 0.0) == pytest.approx(expected.get(channel, 0.0) * record.wire_factor,
                                                          rel=1e-9, abs=1e-6)


def test_an_unknown_algorithm_is_an_input_error():
    with pytest.raises(InputError, match="unknown collective algorithm 'tree'; expected one of ring"):
        COLLECTIVES.get("tree")


@pytest.mark.parametrize("name", COLLECTIVES.names())
@pytest.mark.parametrize("op", ["all_reduce", "reduce_scatter"])
def test_closed_form_holds_when_the_shared_reduction_units_bind(name, op):
    """Two rings share each rank's reduction unit: at 10 GB/s per rank each ring reduces
    at 5 GB/s, below its 25 GB/s links; the closed form must see the sharing."""
    from mcdla.sim.collectives import ring_of_devices

    rings, caps = ring_of_devices(4, 25e9, 1e-6)
    algorithm = COLLECTIVES.get(name)()
    env = CountingEnvironment()
    net = FlowNetwork(env, caps)
    process = algorithm.start(env, net, rings, op, 16e6, reduce_Bps=10e9)
    env.run()
    closed = algorithm.time_s(op, 16e6, rings, caps, reduce_Bps=10e9)
    assert process.value.time_s == pytest.approx(closed, rel=1e-9)
    free = algorithm.time_s(op, 16e6, rings, caps)
    assert closed > free * 1.5  # the units, not the links, set the reduce-scatter's pace
