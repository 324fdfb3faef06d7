"""A flow network's resources set up per class (mcdla.sim.flowsetup.per_class) are what
adding them one by one gives (add_each): the same map, in the same order, and the same
classes' firsts; where the classes do not allow it, per_class declines."""

from __future__ import annotations

import math

import pytest

from mcdla.hw.topology import load_topology
from mcdla.run import load_inputs
from mcdla.sim.flowsetup import add_each, per_class
from mcdla.sim.training import Iteration
from test_translation import _ring


def _one_by_one(caps, rep):
    kept, index, names = {}, {}, []
    add_each(caps.items(), kept, rep, index, names)
    return kept, names


@pytest.mark.parametrize("n, links, memory", [(4, 3, True), (8, 1, False), (5, 3, True)])
def test_per_class_is_one_by_one_on_a_runs_classes(tmp_path, monkeypatch, n, links, memory):
    import mcdla.sim.flownet as flownet

    made = []  # what the run's network's set-up per class gave (None: it declined)
    monkeypatch.setattr(flownet, "per_class", lambda *args: made.append(per_class(*args)) or made[-1])
    iteration = Iteration(*load_inputs(_ring(tmp_path, n, links, memory), "resnet34", batch=4 * n))
    caps, rep = iteration.inputs.topology.capacities(), iteration.symmetry.resources
    assert len(rep) == len(caps)  # every resource in a class of more than one
    found = per_class(caps, rep)
    assert found is not None
    kept, names = _one_by_one(caps, rep)
    assert list(found[0].items()) == list(kept.items()) and found[1] == names
    assert len(names) < len(caps)
    assert iteration.net._names == names
    assert made and all(m is not None for m in made)  # the run's network was set up per class


def test_per_class_declines_what_one_by_one_would_order_or_refuse_otherwise(tmp_path):
    caps = load_topology(_ring(tmp_path, 4)).capacities()
    names = list(caps)
    by_capacity: dict[float, str] = {}
    rep = {r: by_capacity.setdefault(caps[r], r) for r in names}  # classes of equal capacity, firsts met first
    assert per_class(caps, rep) is not None
    assert per_class(caps, {}) is None  # no classes
    assert per_class(caps, dict(list(rep.items())[1:])) is None  # a resource in none
    assert per_class(caps, dict(reversed(rep.items()))) is None  # the classes list them in another order
    later = dict(rep, **{names[0]: names[1], names[1]: names[1]})  # a class whose first is met after a member
    assert per_class(caps, later) is None
    assert _one_by_one(caps, later)[1][0] == names[1]  # (one by one it is kept where its member is met)
    assert per_class(dict(caps, **{names[1]: caps[names[1]] / 2}), rep) is None  # a member unlike its first
    assert per_class(dict(caps, **{names[-1]: math.inf}), rep) is None  # no constraint: absent
    assert per_class({r: int(c) for r, c in caps.items()}, rep) is None  # not floats: converted one by one
