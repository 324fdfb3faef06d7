"""The collective-algorithm registry: every registered algorithm's simulation agrees
with its closed form on idle links and moves exactly the bytes its steps define."""

from __future__ import annotations

import pytest
import yaml

from mcdla.errors import InputError
from mcdla.hw.collective_model import OPS
from mcdla.hw.topology import load_topology
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.environment import CountingEnvironment
from mcdla.sim.flownet import FlowNetwork


# Switched designs beside the paper's: one NVSwitch system of 8 devices (with SHARP),
# and two domains of 4 under two spine switches.
SWITCHED = {
    "switch8": {"name": "switch8", "description": "8 devices on one NVSwitch system", "device": "h100_sxm5",
                "fabric_switch": {"preset": "nvswitch3", "chips": 4}, "links": {"nvlink": "nvlink4"},
                "generator": {"name": "switch", "devices": 8, "links_per_device": 18}},
    "two_level": {"name": "two_level", "description": "2 domains of 4 under 2 spines", "device": "h100_sxm5",
                  "fabric_switch": "nvswitch3", "links": {"nvlink": "nvlink4"},
                  "generator": {"name": "two_level_switch", "domains": 2, "devices_per_domain": 4,
                                "links_per_device": 4, "spines": 2, "uplinks": 2}},
}
# dgx_a100: switch rings, no SHARP; dgx_h100_4node: NVLink domains joined over NICs
DESIGNS = ["dc", "hc", "star", "ring", "dgx_a100", "dgx_h100_4node", *SWITCHED]


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    """Design name -> its topology (the switched ones from their generator docs)."""
    folder = tmp_path_factory.mktemp("designs")
    loaded = {}
    for name in DESIGNS:
        if name in SWITCHED:
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump(SWITCHED[name]))
            name_or_path = str(path)
        else:
            name_or_path = name
        loaded[name] = load_topology(name_or_path)
    return loaded


# The operations an algorithm carries where not all of them (it refuses the others by
# name), and the algorithms that run an operation on every design (a switch algorithm
# needs a switch; all of them run on switch8).
_NO_ALL_TO_ALL = tuple(op for op in OPS if op not in ("all_to_all", "all_to_allv"))
CARRIES = {name: _NO_ALL_TO_ALL for name in ("in_switch", "nvls", "nccl_tree", "nvls_tree")}
CARRIES |= {name: _NO_ALL_TO_ALL + ("all_to_all",) for name in ("ring", "tree", "hierarchical")}
CARRIES["nccl_p2p"] = ("all_to_all", "all_to_allv")  # NCCL's grouped sends: nothing else
# NCCL's families run their all-to-alls as nccl_p2p (hierarchical's across switch domains).
EVERYWHERE = {op: ("ring", "nccl", "hierarchical") for op in _NO_ALL_TO_ALL} | {
    "all_to_all": ("ring", "tree", "hierarchical", "nccl", "nccl_ring"), "all_to_allv": ()}


def _refuses(algorithm, topo, op) -> bool:
    """Whether ``algorithm`` cannot run ``op`` on ``topo``'s rings (a switch algorithm on
    rings that are not on a switch): then start and time_s must both say so."""
    try:
        algorithm.time_s(op, 1e6, topo.rings, topo.capacities())
    except InputError:
        env = CountingEnvironment()
        with pytest.raises(InputError):
            algorithm.start(env, FlowNetwork(env, topo.capacities()), topo.rings, op, 1e6)
        return True
    return False


def _run(algorithm, topology, op, size):
    env = CountingEnvironment()
    net = FlowNetwork(env, topology.capacities())
    process = algorithm.start(env, net, topology.rings, op, size)
    env.run()
    return process.value, net.stats().bytes_by_resource


@pytest.mark.parametrize("name", COLLECTIVES.names())
@pytest.mark.parametrize("topology", DESIGNS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [4e3, 8e6, 1e9])
def test_simulation_matches_closed_form_and_step_bytes(name, topology, op, size, designs):
    algorithm = COLLECTIVES.get(name)()
    topo = designs[topology]
    if op not in CARRIES.get(name, OPS):
        with pytest.raises(InputError, match=f"collective algorithm '{name}' does not carry {op}"):
            algorithm.time_s(op, size, topo.rings, topo.capacities())
        assert _refuses(algorithm, topo, op)
        return
    if name in EVERYWHERE[op] or topology == "switch8":
        assert not _refuses(algorithm, topo, op)  # these run everywhere
    elif _refuses(algorithm, topo, op):
        return
    record, carried = _run(algorithm, topo, op, size)
    closed = algorithm.time_s(op, size, topo.rings, topo.capacities())
    assert record.time_s == pytest.approx(closed, rel=1e-9)
    # A tuner that picked another registered algorithm names it in the record; its steps
    # define the bytes (as the invariants count them).
    expected = (COLLECTIVES.get(record.algorithm)() if record.algorithm else algorithm).channel_bytes(
        op, size, topo.rings, topo.capacities(), topo.nic_ports)  # the rings' shares follow their rates
    for channel in topo.channels:
        assert carried.get(channel, 0.0) == pytest.approx(expected.get(channel, 0.0) * record.wire_factor,
                                                          rel=1e-9, abs=1e-6)


def test_an_unknown_algorithm_is_an_input_error():
    with pytest.raises(InputError, match="unknown collective algorithm 'butterfly'; expected one of ring"):
        COLLECTIVES.get("butterfly")


@pytest.mark.parametrize("name", COLLECTIVES.names())
@pytest.mark.parametrize("op", ["all_reduce", "reduce_scatter"])
def test_closed_form_holds_when_the_shared_reduction_units_bind(name, op, designs):
    """Two rings share each rank's reduction unit: at 10 GB/s per rank each ring reduces
    at 5 GB/s, below its 25 GB/s links; the closed form must see the sharing. (A switch
    algorithm runs on the 8-device switch instead: 18 rings share each unit.)"""
    from mcdla.sim.collectives import ring_of_devices

    rings, caps = ring_of_devices(4, 25e9, 1e-6)
    algorithm = COLLECTIVES.get(name)()
    if op not in algorithm.ops:  # nccl_p2p: NCCL's all-to-all only, no reductions
        assert name == "nccl_p2p"
        return
    try:
        algorithm.time_s(op, 16e6, rings, caps)
    except InputError:
        rings, caps = designs["switch8"].rings, designs["switch8"].capacities()
    env = CountingEnvironment()
    net = FlowNetwork(env, caps)
    process = algorithm.start(env, net, rings, op, 16e6, reduce_Bps=10e9)
    env.run()
    closed = algorithm.time_s(op, 16e6, rings, caps, reduce_Bps=10e9)
    assert process.value.time_s == pytest.approx(closed, rel=1e-9)
    free = algorithm.time_s(op, 16e6, rings, caps)
    if name in ("in_switch", "nvls", "nvls_tree"):
        assert closed == free  # the switch reduces, not the devices
    else:
        assert closed > free * 1.5  # the units, not the links, set the reduce-scatter's pace


# NCCL's algorithms checked against the ideal algorithm each adds its costs to (not
# against their own closed forms): on one machine a library only adds time, at least
# its fixed cost (the protocol's or NVLS's latency and the launch).
NCCL_OVER_IDEAL = {"nccl_ring": ("ring", 3.6e-6), "nvls": ("in_switch", 25e-6)}


@pytest.mark.parametrize("name", NCCL_OVER_IDEAL)
@pytest.mark.parametrize("topology", ["dc", "ring", "dgx_a100", "switch8"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [4e3, 8e6, 1e9])
def test_nccl_algorithms_cost_at_least_their_ideal_algorithm_and_fixed_cost(name, topology, op, size, designs):
    base, fixed_s = NCCL_OVER_IDEAL[name]
    topo = designs[topology]
    algorithm, ideal = COLLECTIVES.get(name)(5e-6), COLLECTIVES.get(base)()
    if op not in CARRIES.get(name, OPS):
        assert _refuses(algorithm, topo, op)
        return
    if op in ("all_to_all", "all_to_allv"):  # not the ring with NCCL's costs: grouped sends (nccl_p2p)
        try:
            picked = algorithm.tune(op, size, topo.rings, topo.capacities())[0].name
        except InputError as exc:  # uneven, off one fabric switch: no algorithm runs it; refused with the way out
            assert op == "all_to_allv" and "use all_to_all, its even form" in str(exc)
            return
        assert picked in ("nccl_p2p", "hierarchical")
        return
    if _refuses(ideal, topo, op):
        assert _refuses(algorithm, topo, op)
        return
    t = algorithm.time_s(op, size, topo.rings, topo.capacities())
    assert t >= ideal.time_s(op, size, topo.rings, topo.capacities()) + fixed_s + 5e-6
