"""A generator's own symmetry (mcdla.hw.translation): the classes it gives the run are
the whole refinement's, the runs on them equal the exact ones, and what does not fit
falls back to the refinement."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from mcdla.errors import InputError
from mcdla.hw import binding
from mcdla.hw.cache import Cache
from mcdla.hw.symmetry import by_translation, rank_classes
from mcdla.hw.topology import load_topology
from mcdla.hw.translation import Translation
from mcdla.run import simulate
from test_symmetry import differences


def _ring(tmp_path, n: int, links: int = 3, memory: bool = True) -> str:
    path = tmp_path / f"ring{n}_{links}_{memory}.yaml"
    path.write_text(f"name: ring{n}\ndescription: a generated ring\ndevice: table2\nmemory_node: table2\n"
                    f"links:\n  nvlink: nvlink2\n"
                    f"generator: {{name: ring, devices: {n}, links_per_pair: {links}, "
                    f"memory_nodes: {str(memory).lower()}}}\n")
    return str(path)


def _without(topology):
    """``topology`` as a hand-written file of the same graph would load: no translation."""
    return dataclasses.replace(topology, translation=None, cache=Cache())


# Every generator that hands over a translation, on small instances of it.
GENERATED = [(n, links, memory) for n in (3, 4, 5, 8) for links in (1, 3) for memory in (True, False)] + \
            [(2, 3, True)]


@pytest.mark.parametrize("n, links, memory", GENERATED)
@pytest.mark.parametrize("policy", ["bw_aware", "local"])
def test_the_generators_classes_are_the_refinements(tmp_path, n, links, memory, policy):
    topology = load_topology(_ring(tmp_path, n, links, memory))
    assert topology.translation is not None
    handed = by_translation(topology, policy, topology.rings, None)
    assert handed is not None  # the quotient was used, not the fallback
    refined = rank_classes(_without(topology), policy)
    assert handed == refined
    assert rank_classes(topology, policy) == refined
    assert len(handed.device_classes) == 1


def _two_level(tmp_path, domains: int, per: int, spines: int) -> str:
    path = tmp_path / f"tl{domains}_{per}_{spines}.yaml"
    path.write_text(yaml.safe_dump(
        {"name": "tl", "description": "domains under spines", "device": "h100_sxm5", "fabric_switch": "nvswitch3",
         "links": {"nvlink": "nvlink4"},
         "generator": {"name": "two_level_switch", "domains": domains, "devices_per_domain": per,
                       "links_per_device": 4, "spines": spines, "uplinks": 2}}))
    return str(path)


# The shipped designs of the switch and superchip generators (host memory over PCIe,
# memory-nodes on the switch, CXL expanders, NVMe drives, C2C superchips) and of the ring's.
SHIPPED = ["dc16", "dgx_a100", "dgx_h100", "dgx_h100_nvme", "dgx_h100_memnodes", "dgx_h100_cxl", "gh200_nvl32",
           "gb200_nvl72", "ring16"]


@pytest.mark.parametrize("design", SHIPPED)
@pytest.mark.parametrize("policy", ["bw_aware", "local"])
def test_the_shipped_generators_classes_are_the_refinements(design, policy):
    topology = load_topology(design)
    assert topology.translation is not None and topology.translation.order > 1
    handed = by_translation(topology, policy, topology.rings, None)
    assert handed is not None
    assert handed == rank_classes(_without(topology), policy)
    assert topology.virtualization_rate_Bps(policy) == _without(topology).virtualization_rate_Bps(policy)


@pytest.mark.parametrize("design", ["dgx_h100_nvme", "dgx_h100_cxl", "ring16"])
def test_the_one_pass_keys_are_the_orbits(design):
    topology = load_topology(design)
    names = list(topology.capacities()) + list(topology.graph)
    keys = topology.translation.keys(names)
    assert keys == {name: topology.translation.orbit(name)[0] for name in names}
    assert len(set(keys.values())) * topology.translation.order > len(names) // 2  # orbits, not one key for all
    # numbered in first-member order, each orbit's key and first member beside its number
    numbers, orbit_keys, firsts = topology.translation.numbers(names)
    assert numbers == [list(dict.fromkeys(keys.values())).index(keys[name]) for name in names]
    assert orbit_keys == list(dict.fromkeys(keys.values()))
    assert firsts == [next(name for name in names if keys[name] == key) for key in orbit_keys]


@pytest.mark.parametrize("design", ["dgx_h100_nvme", "dgx_h100_cxl", "ring16"])
def test_the_numbers_link_by_link_are_the_numbers_name_by_name(design):
    """Translation.numbers given the physical links numbers their channels link by link,
    none of their names read: the same numbers, keys and first members as reading every
    name; and the whole orbit of vertices the quotient gets from them is the same."""
    topology = load_topology(design)
    capacities = topology.capacities()
    assert len(capacities) == len(topology.channels) + len(topology.ports)
    t = topology.translation
    assert t.numbers(capacities, topology.physical_links) == t.numbers(capacities)
    assert t._link_numbers(topology.physical_links, [], lambda key, name: 0, {}) == len(topology.channels)


@pytest.mark.parametrize("n, links, memory", GENERATED)
def test_the_generated_rings_numbers_link_by_link_are_name_by_names(tmp_path, n, links, memory):
    topology = load_topology(_ring(tmp_path, n, links, memory))
    if topology.translation is None:
        return
    capacities = topology.capacities()
    assert topology.translation.numbers(capacities, topology.physical_links) == \
        topology.translation.numbers(capacities)


def test_a_pair_of_two_links_is_numbered_name_by_name():
    """Two links on one pair (their channels' indices run on across both): no channel
    numbered link by link, every name read, the same numbers."""
    t = Translation.of([f"{p}{i}" for p in "DM" for i in range(4)], {"D": 1, "M": 1})
    physical = [(f"D{i}", f"M{i}", "nvlink", 1) for i in range(4)] * 2
    names = [f"{a}>{b}:{k}" for k in (0, 1) for i in range(4) for a, b in ((f"D{i}", f"M{i}"), (f"M{i}", f"D{i}"))]
    out: list[int] = []
    assert t._link_numbers(physical, out, lambda key, name: 0, {}) == 0 and out == []
    assert t.numbers(names, physical) == t.numbers(names)


@pytest.mark.parametrize("domains, per, spines", [(2, 4, 2), (3, 2, 1), (4, 2, 2)])
def test_the_two_level_switchs_classes_are_the_refinements(tmp_path, domains, per, spines):
    topology = load_topology(_two_level(tmp_path, domains, per, spines))
    assert topology.translation.order == domains
    handed = by_translation(topology, "bw_aware", topology.rings, None)
    assert handed is not None
    assert handed == rank_classes(_without(topology), "bw_aware")


def test_the_tiers_a_run_names_are_seen_as_the_refinement_sees_them():
    topology = load_topology("dgx_h100_nvme")
    handed = by_translation(topology, "bw_aware", topology.rings, ("host", "nvme"))
    assert handed is not None
    assert handed == rank_classes(_without(topology), "bw_aware", tiers=("host", "nvme"))


@pytest.mark.parametrize("n", [4, 8])
def test_runs_on_the_generators_classes_equal_exact_runs(tmp_path, n):
    path = _ring(tmp_path, n)
    symmetric, exact = (simulate(path, "bw_aware", "resnet34", "data", 4 * n, [("execution.exact", flag)],
                                 budget=math.inf) for flag in (False, True))
    assert symmetric["rank_classes"] == 1 and exact["rank_classes"] == n
    assert differences(symmetric, exact) == []


@pytest.mark.parametrize("n", [3, 8, 64])
@pytest.mark.parametrize("policy", ["bw_aware", "local"])
@pytest.mark.parametrize("direction", ["offload", "prefetch"])
def test_the_virtualization_rate_from_one_cell_is_the_whole_ones(tmp_path, n, policy, direction):
    topology = load_topology(_ring(tmp_path, n))
    cell = topology.translation.cell(topology.devices)
    assert cell == ("D0",)
    # Bit for bit: the plan and every result read it.
    assert topology.virtualization_rate_Bps(policy, direction) == \
        _without(topology).virtualization_rate_Bps(policy, direction)


def test_a_translation_that_is_no_symmetry_falls_back_to_the_refinement(tmp_path):
    topology = load_topology(_ring(tmp_path, 8))
    # Moving the devices but not their memory-nodes maps no ring onto itself.
    wrong = dataclasses.replace(topology, translation=Translation.of(topology.graph, {"D": 1}), cache=Cache())
    assert by_translation(wrong, "bw_aware", wrong.rings, None) is None
    assert rank_classes(wrong, "bw_aware") == rank_classes(_without(topology), "bw_aware")
    # It moves D0's channels to M0 onto no channel (D1>M0): the rate is solved whole.
    cell = wrong.translation.cell(wrong.devices)
    paths, _shares = wrong._offload_flows(cell, "bw_aware", "offload")
    assert not wrong.translation.apart(wrong._capacities_of(paths), lambda r: r in wrong.channels)
    assert wrong.virtualization_rate_Bps() == _without(topology).virtualization_rate_Bps()


def test_a_translation_whose_steps_do_not_close_is_none(tmp_path):
    topology = load_topology(_ring(tmp_path, 8))
    assert Translation.of(topology.graph, {"D": 1, "M": 2}) is None  # 8 steps against 4
    assert Translation.of(topology.graph, {"D": 3, "M": 3}) is None  # 8 devices are no whole number of 3s
    assert Translation.of(topology.graph, {"D": 8, "M": 8}) is None  # order 1: nothing moves


def test_a_hand_written_file_may_not_claim_a_translation(tmp_path):
    text = open(_ring(tmp_path, 4)).read()
    listed = tmp_path / "listed.yaml"
    listed.write_text(text.replace("generator: {name: ring, devices: 4, links_per_pair: 3, memory_nodes: true}",
                                   "devices: 2\nconnections:\n  - [D0, D1, nvlink, 1]\ntranslation: {D: 1}"))
    with pytest.raises(InputError, match="generators only") as caught:
        load_topology(str(listed))
    assert caught.value.key == "translation"


def test_a_translation_within_blocks_moves_each_node_around_its_own_block():
    """Blocks of 8 devices (a pipeline stage's), two devices a step: order 4; a name's
    orbit key is the same from every member, and the fast keys agree with it."""
    names = [f"D{i}" for i in range(16)] + [f"SW{i}" for i in range(8)] + ["SP0"]
    t = Translation.of(names, {"D": 2, "SW": 1}, {"D": 8, "SW": 4})
    assert t is not None and t.order == 4
    assert [t.shift(f"D{i}", 1) for i in (0, 6, 7, 9, 15)] == ["D2", "D0", "D1", "D11", "D9"]
    assert t.shift("SW7", 1) == "SW4" and t.shift("SP0", 1) == "SP0"
    assert t.orbit("D13") == ((("D", 9),), 2)
    channels = ["D13>SP0:0", "D13>SW5:1", "SW6>D12:0", "D3>D14:2", "D13/SW7", "SP0>D5:0"]
    for name in channels + names:
        assert t.shift(name, t.order) == name
        key = t.orbit(name)[0]
        assert all(t.orbit(t.shift(name, k))[0] == key for k in range(t.order))
    assert t.keys(channels) == {name: t.orbit(name)[0] for name in channels}
    assert t.orbit("D13>SW5:1") == ((("D", 9), ">", ("SW", 7), ":", "1"), 2)  # the switch moved back with it


def test_blocks_that_do_not_fit_are_no_translation():
    names = [f"D{i}" for i in range(12)]
    assert Translation.of(names, {"D": 2}, {"D": 8}) is None  # 12 devices are no whole number of 8s
    assert Translation.of(names, {"D": 4}, {"D": 6}) is None  # a block of 6 is no whole number of 4s
    assert Translation.of(names, {"D": 3}, {"D": 3}) is None  # order 1: nothing moves
    assert Translation.of(names, {"D": 1}, {"D": 6}).order == 6


def _bound(topology) -> list[tuple]:
    """What binding gives each ring: its links hop by hop and its ranks' way home."""
    return [(r.name, r.ranks, r.segments, r.latency_s, r.switch_out, r.switch_in, r.home_out, r.home_in, r.node)
            for r in topology.rings]


def _derived(monkeypatch):
    """Loads as if the ring generator handed no rings over: binding derives them by search."""
    import mcdla.hw.topology as topology_module

    read = topology_module.read_topology_doc
    monkeypatch.setattr(topology_module, "read_topology_doc", lambda *args, **kwargs: dataclasses.replace(
        read(*args, **kwargs), ring_prefixes=(), ring_copies=0))


@pytest.mark.parametrize("path", [*[(n, links, memory) for n, links, memory in GENERATED], *SHIPPED])
def test_rings_bound_by_period_take_the_links_binding_hop_by_hop_takes(tmp_path, monkeypatch, path):
    """Each derived ring's links chosen for one period of the translation and repeated
    (mcdla.hw.binding._periods) are those the least-used choice takes hop by hop."""
    source = _ring(tmp_path, *path) if isinstance(path, tuple) else path
    if isinstance(path, tuple) or path == "ring16":
        topology = load_topology(source)
        assert binding._periods(topology.translation, topology.ring_cycles)  # the ring's are bound by period
        assert all(ring.period == (topology.translation, len(ring.channels) // topology.translation.order)
                   for ring in topology.rings)
        # The quotient reads one period of each ring's hops and ranks: the classes it reads whole.
        whole = [dataclasses.replace(ring, period=()) for ring in topology.rings]
        for policy in ("bw_aware", "local"):
            assert by_translation(topology, policy, topology.rings, None) == \
                by_translation(topology, policy, whole, None) is not None
    by_period = _bound(load_topology(source))
    monkeypatch.setattr(binding, "_periods", lambda translation, cycles: None)
    _derived(monkeypatch)  # a generated ring's handed-over cycle is bound by period without asking _periods
    hop_by_hop = load_topology(source)
    assert all(not ring.period for ring in hop_by_hop.rings)
    assert by_period == _bound(hop_by_hop)


@pytest.mark.parametrize("n, links, memory", GENERATED + [(2, 1, True), (6, 2, False)])
def test_the_ring_generators_rings_are_the_derived_ones(tmp_path, monkeypatch, n, links, memory):
    """The ring generator hands its rings over (ring_prefixes, ring_copies: no search at
    load): the same cycles, bound to the same links, as the search over the graph finds."""
    source = _ring(tmp_path, n, links, memory)
    with monkeypatch.context() as patched:
        patched.setattr(binding, "derive_rings", lambda *args: pytest.fail("searched"))
        handed = load_topology(source)
    _derived(monkeypatch)
    derived = load_topology(source)
    assert handed.ring_cycles == derived.ring_cycles and len(handed.ring_cycles) == links
    assert _bound(handed) == _bound(derived)
    # Its period by arithmetic (its prefixes' hops) is the translation's, found by Translation.period.
    assert [r.period[1] for r in handed.rings] == [r.period[1] for r in derived.rings] == \
        [len(handed.ring_cycles[0]) // handed.translation.order] * 2 * links


def test_two_devices_alone_have_no_ring_handed_over_nor_derived(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="need at least one collective ring") as handed:
        load_topology(_ring(tmp_path, 2, 3, False))
    _derived(monkeypatch)
    with pytest.raises(InputError, match="need at least one collective ring") as derived:
        load_topology(_ring(tmp_path, 2, 3, False))
    assert str(handed.value) == str(derived.value)


def test_listed_rings_win_over_the_generators(tmp_path):
    """A generated ring's file may list its rings: those are bound, not the generator's."""
    path = tmp_path / "listed.yaml"
    path.write_text(open(_ring(tmp_path, 4)).read() + "rings: [[D0, M0, D1, M1, D2, M2, D3, M3]]\n")
    assert [r.name for r in load_topology(str(path)).rings] == ["ring0.fwd", "ring0.rev"]


def test_a_period_is_found_only_where_the_translation_carries_the_ring_onto_itself():
    names = [f"D{i}" for i in range(4)] + [f"M{i}" for i in range(4)] + ["SW0"]
    t = Translation.of(names, {"D": 1, "M": 1})
    ring = ["D0", "M0", "D1", "M1", "D2", "M2", "D3", "M3"]
    assert t.period(ring) == 2 and t.period(ring[::-1]) == 2 and t.period(ring[3:] + ring[:3]) == 2
    assert t.period(["D0", "M0", "D1", "M1", "D3", "M3", "D2", "M2"]) is None  # two devices swapped
    assert t.period(["D0", "D1", "D2", "D3"]) == 1
    assert t.period(["D0", "SW0", "D1", "SW0", "D2", "SW0", "D3", "SW0"]) == 2  # through a switch that stays put
    assert t.period(["D0", "D1", "D2", "M0", "D3"]) is None  # 5 hops are no whole number of periods
    assert t.period(["D0", "M0", "M1", "D1", "M1", "M2", "D2", "M2", "M3", "D3", "M3", "M0"]) == 3
    # The hop between the two switches, which stay put, is crossed at every period: bound hop by hop.
    t = Translation.of(names + ["SW1"], {"D": 1})
    assert t.period(["D0", "SW0", "SW1", "D1", "SW0", "SW1", "D2", "SW0", "SW1", "D3", "SW0", "SW1"]) is None


@pytest.mark.parametrize("n, links, memory", GENERATED)
def test_rings_bound_by_period_are_apart_and_alike_as_their_channels_say(tmp_path, n, links, memory):
    """The rings' even split read from their periods (ringsplit._apart_by_period) agrees
    with the pass over every channel (_apart_and_alike), and gives way to it where one
    channel's capacity differs, where one is unconstrained or where the rings are whole."""
    from mcdla.sim.ringsplit import _apart_and_alike, _apart_by_period, ring_fractions

    topology = load_topology(_ring(tmp_path, n, links, memory))
    rings, caps = topology.rings, topology.capacities()
    assert all(ring.period for ring in rings)
    channels = {r.name: r.channels for r in rings}
    assert _apart_by_period(rings, caps) is _apart_and_alike(channels, caps) is True
    slower = dict(caps, **{rings[-1].channels[-1]: caps[rings[-1].channels[-1]] / 2})  # one ring's bottleneck
    assert _apart_by_period(rings, slower) is _apart_and_alike(channels, slower) is False
    assert ring_fractions(rings, slower) == ring_fractions([dataclasses.replace(r, period=()) for r in rings], slower)
    unconstrained = {c: bw for c, bw in caps.items() if c != rings[0].channels[0]}
    assert _apart_by_period(rings, unconstrained) is False  # the pass over every channel decides
    assert not _apart_by_period([dataclasses.replace(r, period=()) for r in rings], caps)
    # Under the translation whose orbits are alike in capacity (the symmetry's), one period's
    # hops stand for the rest: the same answers where a whole orbit of hops is slower.
    t = rings[0].period[0]
    assert _apart_by_period(rings, caps, t) is True
    hop = rings[-1].channels[-1]
    orbit_slower = dict(caps, **{t.shift(hop, k): caps[hop] / 2 for k in range(t.order)})
    assert _apart_by_period(rings, orbit_slower, t) is _apart_and_alike(channels, orbit_slower) is False
    assert ring_fractions(rings, orbit_slower, orbits=t) == \
        ring_fractions([dataclasses.replace(r, period=()) for r in rings], orbit_slower)


@pytest.mark.parametrize("n, links, memory", [(4, 3, True), (8, 1, True), (5, 3, False), (64, 3, True)])
def test_a_ring_counted_by_period_loads_the_classes_counting_every_hop_does(tmp_path, monkeypatch, n, links, memory):
    """The flow network counts a phase over a ring bound by period from one period's hops
    and reduction units (flowpaths.PathClasses, the symmetry's translation): the whole
    result is the one counting every hop and unit gives, and the exact run's."""
    from mcdla.sim.flowpaths import PathClasses

    path, original, counted = _ring(tmp_path, n, links, memory), PathClasses._counts, []

    def spy(self, given, longer, period):
        counted.append(period)
        return original(self, given, longer, period)

    def run(exact=False):
        return simulate(path, "bw_aware", "resnet34", "data", 4 * n, [("execution.exact", exact)], budget=math.inf)

    monkeypatch.setattr(PathClasses, "_counts", spy)
    by_period = run()
    assert any(counted)  # the ring's phases were counted by period
    assert any(p and p[3] for p in counted)  # and a reduce-scatter's reduction units with them
    monkeypatch.setattr(PathClasses, "_counts", lambda self, given, longer, period: original(self, given, longer, None))
    every_hop = run()
    assert by_period["rank_classes"] == 1
    assert differences(by_period, every_hop) == [] and differences(by_period, run(exact=True)) == []


@pytest.mark.parametrize("n, links, memory", GENERATED)
def test_a_ring_bound_by_period_repeats_no_channel_as_its_channels_say(tmp_path, n, links, memory):
    """Ring.repeats_channel answered from the period (none twice) is what the ring's
    channels say."""
    for ring in load_topology(_ring(tmp_path, n, links, memory)).rings:
        assert ring.period and not ring.repeats_channel
        assert not dataclasses.replace(ring, period=()).repeats_channel
        assert len(set(ring.channels)) == len(ring.channels)


@pytest.mark.parametrize("n, links, memory", GENERATED)
def test_a_ring_collectives_bytes_by_period_are_every_hops(tmp_path, n, links, memory):
    """RingAlgorithm.period_bytes: one period's hops, each standing for its orbit's
    ``order`` members, carry what channel_bytes gives every member of the orbit; a
    broadcast (its root singles out rank 0) and rings not bound by period have none."""
    from mcdla.sim.collectives import COLLECTIVES

    topology = load_topology(_ring(tmp_path, n, links, memory))
    rings, caps, t = topology.rings, topology.capacities(), topology.translation
    ring = COLLECTIVES.get("ring")()
    for op in ("all_reduce", "reduce_scatter", "all_gather"):
        every = ring.channel_bytes(op, 3e6, rings, caps)
        one, times = ring.period_bytes(op, 3e6, rings, caps)
        assert times == t.order and len(one) * times == len(every)
        for channel, size in every.items():  # each member carries its orbit's one-period hop's bytes
            (hop,) = [c for c in one if t.orbit(c)[0] == t.orbit(channel)[0]]
            assert size == one[hop]
    assert ring.period_bytes("broadcast", 3e6, rings, caps) is None
    assert ring.period_bytes("all_reduce", 3e6, [dataclasses.replace(r, period=()) for r in rings], caps) is None


@pytest.mark.parametrize("n, links, memory", [(4, 3, True), (8, 1, False), (64, 3, True)])
def test_the_invariants_law_by_period_is_every_channels(tmp_path, monkeypatch, n, links, memory):
    """The byte law per class (invariants.expected_class_bytes) read from one period of a
    ring bound by period gives each class what the pass over every channel gives, and a
    class that carried 1 % too little is still caught."""
    from mcdla.errors import InvariantError
    from mcdla.run import load_inputs
    from mcdla.sim import invariants
    from mcdla.sim.collectives import RingAlgorithm
    from mcdla.sim.training import Iteration

    record = Iteration(*load_inputs(_ring(tmp_path, n, links, memory), "resnet34", batch=4 * n)).run()
    assert record.rank_classes and record.class_orbits is record.inputs.topology.translation
    asked = []
    original = RingAlgorithm.period_bytes
    monkeypatch.setattr(RingAlgorithm, "period_bytes", lambda *a: asked.append(original(*a)) or asked[-1])
    by_period = invariants.expected_class_bytes(record)
    assert asked and all(found is not None for found in asked)
    every = invariants.expected_class_bytes(dataclasses.replace(record, class_orbits=None))
    assert by_period.keys() == every.keys()
    assert by_period == pytest.approx(every, rel=1e-12)
    carried = dict(record.network.bytes_by_resource)
    ring_hop = record.inputs.topology.rings[0].channels[0]
    carried[record.resource_classes.get(ring_hop, ring_hop)] *= 0.99
    with pytest.raises(InvariantError, match="alike channels"):
        invariants.check_iteration(dataclasses.replace(record, network=dataclasses.replace(
            record.network, bytes_by_resource=carried)))


@pytest.mark.parametrize("units_classed", [True, False])
def test_a_reduce_scatters_units_counted_by_period_are_every_units(units_classed):
    """flowpaths.PathClasses counts a phase marked with its ring's reduction units from one
    period's units where they are in classes (their devices'), and every unit where they
    are in none: either way the classes and weights of counting the unmarked path."""
    from collections import Counter

    from mcdla.sim.flowpaths import PathClasses

    devices = [f"D{i}" for i in range(4)]
    t = Translation.of(devices, {"D": 1})
    hops = tuple(f"D{i}>D{(i + 1) % 4}:0" for i in range(4))
    units = tuple(f"reduce:D{i}" for i in range(4))
    caps = dict.fromkeys(hops + units, 1.0)
    rep = {h: hops[0] for h in hops} | ({u: units[0] for u in units} if units_classed else {})
    sizes = dict(Counter(rep.values()))
    marked = PathClasses(caps, rep, sizes, {}, t)
    path = hops + units
    marked.mark(path, (t, 1, 4, 4))
    found = marked.classify(path, 4, True)
    assert found == PathClasses(caps, rep, sizes, {}, t).classify(tuple(path), 4, True)
    assert found[1] == ((4.0, 4.0) if units_classed else (4.0,) * 5)  # 4 copies over each class


@pytest.mark.parametrize("n, links, memory", [(4, 3, True), (8, 1, False), (5, 3, True)])
def test_the_link_classes_by_orbit_are_the_pass_over_every_channel(tmp_path, n, links, memory):
    """summary.link_classes from the orbits of channels (rank symmetry's, Symmetry.orbits)
    gives what the pass over every channel gives, to the bit, and declines (the pass then
    decides) where a class's pairs carry different bytes."""
    from mcdla.metrics import summary
    from mcdla.run import load_inputs
    from mcdla.sim.flowstats import ByClass
    from mcdla.sim.training import Iteration

    record = Iteration(*load_inputs(_ring(tmp_path, n, links, memory), "resnet34", batch=4 * n)).run()
    topology, carried, orbits = record.inputs.topology, record.network.bytes_by_resource, record.resource_orbits
    assert orbits and isinstance(carried, ByClass)
    tiers = summary._tiers(topology)
    assert summary._by_orbit(topology, carried, orbits, tiers) is not None
    assert summary.link_classes(topology, carried, orbits) == summary.link_classes(topology, carried)
    assert sum(c["count"] for c in summary.link_classes(topology, carried).values()) == len(topology.directed_links())
    # Orbits of another size than their pairs', or bytes not read through the classes:
    # declined, and the pass decides.
    resized = (orbits[0], (orbits[1][0] - 1, *orbits[1][1:]))
    unclassed = ByClass(dict(carried), {}, set(), dict)
    for given, bytes_by in ((resized, carried), (orbits, unclassed)):
        assert summary._by_orbit(topology, bytes_by, given, tiers) is None
        assert summary.link_classes(topology, bytes_by, given) == summary.link_classes(topology, bytes_by)
    if links > 1:
        # One class's bytes changed: a pair's parallel channels (of other classes) no longer
        # carry the same bytes: declined, and the pass decides.
        name = next(first for first, members in zip(*orbits) if first in topology.channels and members > 1)
        first = carried._rep.get(name, name)
        bumped = ByClass({**carried._by_first, first: carried[name] + 1.0},
                         carried._rep, carried._firsts, carried._members)
        assert summary._by_orbit(topology, bumped, orbits, tiers) is None
        assert summary.link_classes(topology, bumped, orbits) == summary.link_classes(topology, bumped)


def test_the_quotients_vertex_of_each_resource_is_its_orbits_before_and_past_the_whole_map(tmp_path):
    """Quotient.vertices numbers the orbits of resources on from the vertices made before,
    in first-member order, outside the index of keys: two resources share a vertex
    exactly when the translation puts them in one orbit, the vertex's colour is its
    members' capacity and its size the orbit's. Its map answers each resource by its
    orbit's key, and past its lookups by orbit from the map of every resource, which lets
    the keys go: the same vertex either way; a name that is no resource is a KeyError."""
    from mcdla.hw.quotient import Quotient

    topology = load_topology(_ring(tmp_path, 128))
    t, capacities = topology.translation, topology.capacities()
    assert len(capacities) > 1024  # past the lookups by orbit
    q = Quotient(t)
    device = q.vertex("d", "D0", ())
    vertices = q.vertices(capacities, topology.physical_links)
    assert not any(kind == "r" for kind, _ in q.index)
    by_key: dict = {}
    for name in capacities:
        v = vertices[name]
        assert by_key.setdefault(t.orbit(name)[0], v) == v
        assert q.colours[v] == ("r", capacities[name]) and q.sizes[v] == t.size(t.orbit(name)[0])
    assert sorted(by_key.values()) == list(range(device + 1, len(q.colours)))  # one each, after the device's
    assert len(vertices._known) == len(capacities) and vertices._keys is None  # the whole map, made once
    with pytest.raises(KeyError):
        vertices["D0>D1:0"]
