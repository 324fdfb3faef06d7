"""A run's rings by name (mcdla.sim.training): a group's rings named at once and derived
when first asked (GroupRings), and every ring of a run looked up by name, the lazy groups'
derived on first lookup (RingsByName)."""

from __future__ import annotations

import pytest

from mcdla.hw.cache import Cache
from mcdla.hw.topology import load_topology
from mcdla.sim.training import GroupRings, RingsByName


@pytest.fixture(scope="module")
def dgx():
    return load_topology("dgx_h100")


def _group(topology, devices, label="tp0"):
    members = {topology.devices[d] for d in devices}
    through = tuple(ring for ring in topology.rings if members <= ring.position.keys())
    return GroupRings(topology, through, members, label, Cache()), through, members


def test_a_groups_rings_are_named_at_once_and_derived_when_iterated(dgx):
    group, through, members = _group(dgx, (0, 1, 2, 3))
    assert len(group) == len(through) > 1
    assert group.names == tuple(f"{ring.name}/tp0" for ring in through)
    assert group._rings is None  # naming derives nothing
    rings = list(group)
    assert [r.name for r in rings] == list(group.names)
    assert all(set(r.ranks) == members and r.size == 4 for r in rings)
    assert list(group) == rings and group._rings is not None  # derived once, kept


def test_by_period_after_deriving_gives_the_whole_rings(dgx):
    group, _, _ = _group(dgx, (0, 1, 2, 3))
    rings = list(group)
    assert group.by_period(translation=None) == [(ring, None) for ring in rings]


class _Lazy:
    """A group's rings that count how often they are derived."""

    def __init__(self, names):
        self.names, self.derived = tuple(names), 0

    def __iter__(self):
        self.derived += 1
        return iter([type("R", (), {"name": n})() for n in self.names])


def test_rings_by_name_derives_a_lazy_group_once_on_first_lookup():
    given = {"a": "ring a", "b": "ring b"}
    lazy = _Lazy(["b", "c/tp1", "d/tp1"])  # "b" is given already: not taken from the group
    rings = RingsByName(given, [lazy])
    assert len(rings) == 4 and list(rings) == ["a", "b", "c/tp1", "d/tp1"]
    assert lazy.derived == 0 and rings["a"] == "ring a"
    assert rings["c/tp1"].name == "c/tp1" and lazy.derived == 1
    assert rings["d/tp1"].name == "d/tp1" and lazy.derived == 1  # the group came whole at the first lookup
    with pytest.raises(KeyError):
        rings["e"]
