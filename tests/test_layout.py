"""The rank layout with named axes (mcdla.hw.layout): groups, stages and peers."""

from __future__ import annotations

import pytest

from mcdla.hw.layout import Axis, RankLayout


def test_megatron_order_on_16_ranks():
    # tp=2 innermost, dp=2, pp=4: Megatron's parallel_state enumeration, written out.
    layout = RankLayout.of(tuple(range(16)), tp=2, dp=2, pp=4)
    assert layout.groups("tp")[:3] == ((0, 1), (2, 3), (4, 5))
    assert layout.groups("dp")[:4] == ((0, 2), (1, 3), (4, 6), (5, 7))
    assert layout.groups("pp")[:2] == ((0, 4, 8, 12), (1, 5, 9, 13))
    assert [layout.along("pp")[d] for d in (0, 3, 4, 15)] == [0, 0, 1, 3]
    assert layout.neighbours("pp")[4] == (0, 8)
    assert layout.neighbours("pp")[1] == (None, 5) and layout.neighbours("pp")[13] == (9, None)


def test_groups_follow_the_placement():
    order = (3, 2, 1, 0)
    layout = RankLayout.of(order, tp=2, dp=2)
    assert layout.groups("tp") == ((3, 2), (1, 0))
    assert layout.groups("dp") == ((3, 1), (2, 0))


def test_any_order_of_axes_and_a_new_axis():
    layout = RankLayout.of(tuple(range(8)), ep=2, tp=2, dp=2)  # an expert axis innermost
    assert layout.groups("ep") == ((0, 1), (2, 3), (4, 5), (6, 7))
    assert layout.groups("tp") == ((0, 2), (1, 3), (4, 6), (5, 7))
    assert layout.degree("pp") == 1 and layout.along("pp") == {d: 0 for d in range(8)}
    # Every axis's groups partition the devices.
    for name in ("ep", "tp", "dp"):
        assert sorted(d for g in layout.groups(name) for d in g) == list(range(8))


def test_a_layout_must_cover_its_ranks():
    with pytest.raises(ValueError, match="do not cover"):
        RankLayout.of(tuple(range(6)), tp=4, dp=2)
    with pytest.raises(ValueError, match="degree"):
        Axis("tp", 0)


def test_each_ranks_coordinates_are_its_place_in_the_grid():
    """RankLayout.coordinates: each rank's index along an axis (tp innermost), 0 along an
    axis the layout lacks; the groups, stages and peers read them."""
    layout = RankLayout.of(tuple(range(24)), tp=2, dp=3, pp=4)
    assert layout.coordinates("tp")[:8] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert layout.coordinates("dp")[:8] == [0, 0, 1, 1, 2, 2, 0, 0]
    assert layout.coordinates("pp")[4:8] == [0, 0, 1, 1] and layout.coordinates("pp")[-1] == 3
    assert layout.coordinates("ep") == [0] * 24
    assert layout.along("pp")[5] == 0 and layout.along("pp")[6] == 1 and layout.along("pp")[23] == 3
    assert layout.groups("dp")[:2] == ((0, 2, 4), (1, 3, 5))
    assert layout.neighbours("pp")[7] == (1, 13) and layout.neighbours("pp")[19] == (13, None)
