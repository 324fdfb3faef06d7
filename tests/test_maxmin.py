"""Max-min fair rates by progressive filling (mcdla.hw.maxmin)."""

from __future__ import annotations

import math

import pytest

from mcdla.hw.maxmin import caps_on, max_min_rates


def test_single_flow_gets_its_bottleneck():
    assert max_min_rates({"f": ["a", "b"]}, {"a": 10.0, "b": 4.0}) == {"f": pytest.approx(4.0)}


def test_k_flows_on_one_bottleneck_share_equally():
    paths = {i: ["link"] for i in range(7)}
    rates = max_min_rates(paths, {"link": 21.0})
    assert all(r == pytest.approx(3.0) for r in rates.values())


def test_parking_lot():
    # One long flow over links 1..3, one short flow on each link; all links of capacity 1:
    # each link is shared by 2 flows, so everyone gets 1/2.
    paths = {"long": ["l1", "l2", "l3"], "s1": ["l1"], "s2": ["l2"], "s3": ["l3"]}
    rates = max_min_rates(paths, {"l1": 1.0, "l2": 1.0, "l3": 1.0})
    assert rates == {k: pytest.approx(0.5) for k in paths}


def test_unequal_parking_lot_gives_leftover_to_the_unconstrained():
    # l1 (capacity 1) is shared by long and s1; l2 (capacity 3) by long and s2.
    # long and s1 freeze at 1/2 on l1; s2 takes the rest of l2: 3 - 1/2.
    paths = {"long": ["l1", "l2"], "s1": ["l1"], "s2": ["l2"]}
    rates = max_min_rates(paths, {"l1": 1.0, "l2": 3.0})
    assert rates == {"long": pytest.approx(0.5), "s1": pytest.approx(0.5), "s2": pytest.approx(2.5)}


def test_unconstrained_flow_is_infinite():
    rates = max_min_rates({"f": ["x"], "g": ["a"]}, {"a": 2.0})
    assert rates["f"] == math.inf
    assert rates["g"] == pytest.approx(2.0)


def test_no_resource_over_capacity_and_every_flow_bottlenecked():
    paths = {
        0: ["a", "b", "c"],
        1: ["a"],
        2: ["b", "d"],
        3: ["c", "d"],
        4: ["d"],
        5: ["a", "d"],
    }
    caps = {"a": 5.0, "b": 3.0, "c": 7.0, "d": 4.0}
    rates = max_min_rates(paths, caps)
    load = {r: sum(rates[f] for f, p in paths.items() if r in p) for r in caps}
    for r, cap in caps.items():
        assert load[r] <= cap * (1 + 1e-12)
    # Max-min optimality: every flow crosses a saturated resource where it has a
    # rate at least as large as every other flow there.
    for f, path in paths.items():
        assert any(
            load[r] == pytest.approx(caps[r]) and all(rates[f] >= rates[g] - 1e-12 for g, q in paths.items() if r in q)
            for r in path
        )


def test_order_of_flows_does_not_change_rates():
    paths = {"x": ["a", "b"], "y": ["b"], "z": ["a"]}
    caps = {"a": 3.0, "b": 2.0}
    forward = max_min_rates(paths, caps)
    backward = max_min_rates(dict(reversed(list(paths.items()))), caps)
    assert forward == pytest.approx(backward)


def test_caps_on_reads_the_paths_resources_as_a_merge_of_the_maps_gives_them():
    """caps_on holds each resource on the paths at the first map's capacity that has it
    (a merge's, the later map over the earlier, read in reverse), none off the paths and
    none that no map has (unconstrained, as absent from the merge): max_min_rates then
    gives what it gives over the merge."""
    capacities = {"a": 10.0, "b": 4.0, "c": 6.0, "off": 1.0}
    units = {"u": 3.0, "b": 8.0}
    own = {"c": 2.0}
    paths = {"x": ("a", "b", "u"), "y": ("b", "c", "free"), "z": ("a",)}
    caps = caps_on(paths.values(), own, units, capacities)
    assert caps == {"a": 10.0, "b": 8.0, "u": 3.0, "c": 2.0}
    merged = {**capacities, **units, **own}
    assert max_min_rates(paths, caps) == max_min_rates(paths, merged)
