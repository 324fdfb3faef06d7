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
