"""Loading big topologies fast without changing what is loaded.

The fast paths of ring binding (a heap of link usage per node pair), of the schema
(lists whose items need no conversion) and of the loader (no cyclic garbage
collection while building) must give what the plain paths gave: the expected values
here were taken from the code before those paths existed.
"""

from __future__ import annotations

import gc

import pytest

from mcdla.errors import InputError
from mcdla.hw.topology import load_topology

# A ring that crosses M0 -> M1 twice (M0 and M1 relay twice, a device between), over
# ``links`` parallel links there: each crossing needs a link of its own.
TWICE = """\
name: twice
description: a ring crossing M0->M1 twice
device: table2
memory_node: table2
links: {{nvlink: nvlink2}}
devices: 2
memory_nodes: 2
connections:
  - [D0, M0, nvlink]
  - [M0, M1, nvlink, {links}]
  - [M1, D1, nvlink]
  - [D1, M0, nvlink]
  - [M1, D0, nvlink]
rings:
  - [D0, M0, M1, D1, M0, M1]
  - [M1, D0, M0, M1, D1, M0]
backing: memory_nodes
serves: {{D0: [M0], D1: [M1]}}
"""


def _write(tmp_path, text: str, name: str = "t.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_pair_crossed_twice_takes_the_least_used_free_links(tmp_path):
    topo = load_topology(_write(tmp_path, TWICE.format(links=3)))
    segments = {ring.name: ring.segments for ring in topo.rings}
    assert segments["ring0.fwd"] == (("D0>M0:0", "M0>M1:0", "M1>D1:0"), ("D1>M0:0", "M0>M1:1", "M1>D0:0"))
    assert segments["ring0.rev"] == (("D0>M1:0", "M1>M0:0", "M0>D1:0"), ("D1>M1:0", "M1>M0:1", "M0>D0:0"))
    # Links 0 and 1 carry a ring already: link 2 first, then the least used of the
    # others that this ring has not taken, the first on a tie.
    assert segments["ring1.fwd"] == (("D0>M0:0", "M0>M1:2", "M1>D1:0"), ("D1>M0:0", "M0>M1:0", "M1>D0:0"))
    assert segments["ring1.rev"] == (("D1>M1:0", "M1>M0:2", "M0>D0:0"), ("D0>M1:0", "M1>M0:0", "M0>D1:0"))


def test_a_pair_crossed_more_often_than_its_links_is_refused_at_the_hop(tmp_path):
    path = _write(tmp_path, TWICE.format(links=1))
    with pytest.raises(InputError) as err:
        load_topology(path)
    assert str(err.value) == (f"{path}: rings[0][5]: the ring crosses 'M0' -> 'M1' more often than its "
                              "1 parallel link(s): a ring may use each directed channel once")


def test_a_ring_node_that_is_no_string_is_named_as_before(tmp_path):
    text = TWICE.format(links=2).replace("  - [D0, M0, M1, D1, M0, M1]\n", "  - [D0, M0, 5, D1, M0, M1]\n")
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_topology(path)
    assert str(err.value) == f"{path}: rings[0][2]: expected a string, got 5"


@pytest.mark.parametrize("bad", [False, True])
def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path, bad):
    path = _write(tmp_path, TWICE.format(links=1 if bad else 2))
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        frozen = gc.get_freeze_count()
        try:
            if bad:
                with pytest.raises(InputError):
                    load_topology(path)
            else:
                load_topology(path)
            assert gc.isenabled() is enabled
            assert gc.get_freeze_count() == frozen
        finally:
            gc.enable()


def test_generated_cluster_rings_as_before():
    """A cluster of NVLink domains (derived snake rings, each rank's home and exit
    links): a few fields of the rings as the unoptimized binding gave them."""
    topo = load_topology("dgx_h100_4node", [("generator.nodes", 4)])
    assert len(topo.rings) == 18
    first, last = topo.rings[0], topo.rings[-1]
    assert (first.name, first.ranks[:4], first.segments[0]) == (
        "ring0", ("D0", "D1", "D2", "D3"), ("D0>FS0:0", "FS0>D1:0"))
    assert first.exit_out[:2] == ("D0>SP0:0", "D1>SP1:0")
    assert (last.name, last.ranks[:3]) == ("ring17", ("D0", "D8", "D15"))
    # Home links chosen where the ring leaves the domain (_home_links) and taken by it.
    assert last.home_out[:3] == ("D0>FS0:17", "D8>FS1:14", "D15>FS1:15")
    assert last.home_in[:3] == ("FS0>D0:14", "FS1>D8:17", "FS1>D15:14")
    ring5 = topo.rings[5]
    chosen = [(i, c) for i, c in enumerate(ring5.home_out) if c and c not in ring5.channels]
    assert chosen[:4] == [(4, "D4>FS0:16"), (12, "D13>FS1:16"), (20, "D20>FS2:16"), (28, "D29>FS3:16")]
