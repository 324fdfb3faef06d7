"""NVLS's chunk pipeline (issue 24, NCCL mid-size bandwidth): an NVLS all-reduce runs in
loops of nChannels x nHeads chunks through three concurrent stages (scatter, reduce and
multicast, gather: device/all_reduce.h), its chunk by message size (enqueue.cc, NVLS on
one machine: 128 KiB, 64 KiB below 64 x 128 ops x 128 KiB, 32 KiB below 8 x 128 x 64 KiB,
16 KiB below 2 x 128 x 32 KiB on 16 channels of 8 heads; NVLS-tree: its first chunk, then
256/128/64/32 KiB below 32/16/4/1 x the chunks in flight). Expected values are worked out
by hand from those constants."""

from __future__ import annotations

import pytest

from mcdla.hw.nccl import nccl_tuning, nvls_chunk_bytes, nvls_tree_chunk_bytes, pipeline_fill
from mcdla.sim import algorithms  # noqa: F401  (registers the NCCL algorithms)
from mcdla.sim.collectives import COLLECTIVES, run_collective

KiB, MiB, GiB = 2**10, 2**20, 2**30


@pytest.mark.parametrize("size, chunk", [
    (GiB, 128 * KiB),  # 1 GiB is not below 64 x 128 x 128 KiB = 1 GiB
    (GiB - 1, 64 * KiB),
    (64 * MiB, 64 * KiB),  # not below 8 x 128 x 64 KiB = 64 MiB
    (64 * MiB - 1, 32 * KiB),
    (8 * MiB, 32 * KiB),  # not below 2 x 128 x 32 KiB = 8 MiB
    (MiB, 16 * KiB),
])
def test_nvls_chunk_by_size_on_eight_gpus(size, chunk):
    assert nvls_chunk_bytes(size, heads=8) == chunk


@pytest.mark.parametrize("size, first, chunk", [
    (64 * MiB, 131072, 128 * KiB),  # 2.26 on 2 machines: not below 4 x 128 x 128 KiB = 64 MiB
    (64 * MiB - 1, 131072, 64 * KiB),
    (MiB, 131072, 32 * KiB),  # below 1 x 128 x 64 KiB = 8 MiB
    (64 * MiB, 65536, 64 * KiB),  # 2.26 from 4 machines: 64 KiB first
    (GiB, 524288, 256 * KiB),  # 2.18: a 512 KiB step first; 1 GiB is below 32 x 128 x 512 KiB
    (4 * GiB, 524288, 512 * KiB),
])
def test_nvls_tree_chunk_by_size(size, first, chunk):
    assert nvls_tree_chunk_bytes(size, heads=8, first_bytes=first) == chunk


def test_nvls_tree_first_chunk_by_version_and_machines():
    assert nccl_tuning("2.26", 9.0).nvls_tree_first_chunk(2) == 131072
    assert nccl_tuning("2.26", 9.0).nvls_tree_first_chunk(4) == 65536
    assert nccl_tuning("2.18", 9.0).nvls_tree_first_chunk(8) == 524288


def test_fill_is_two_loops_over_the_loops_and_two_data_times_below_one_loop():
    assert pipeline_fill(64 * MiB, 8 * MiB) == pytest.approx(2 / 8)  # 8 loops of 16 x 8 x 64 KiB
    assert pipeline_fill(8 * MiB, 4 * MiB) == pytest.approx(2 / 2)  # 2 loops of 16 x 8 x 32 KiB
    assert pipeline_fill(MiB, 2 * MiB) == pytest.approx(2.0)  # under one loop: 3 stages of its data
    assert pipeline_fill(0, 2 * MiB) == 0.0


def _h100():
    from mcdla.hw.topology import load_topology

    topo = load_topology("dgx_h100")
    return topo.rings, topo.capacities()


def test_nvls_busbw_at_64_mib_pays_the_pipeline_fill():
    """64 MiB on DGX H100: 8 loops through 3 stages take 10 loop times: the data time of
    NVLS's rate (0.85 x 15/16 of the in-switch algorithm's) times 10/8."""
    rings, caps = _h100()
    size = 64 * MiB
    ideal = COLLECTIVES.get("in_switch")().time_s("all_reduce", size, rings, caps)
    nvls = COLLECTIVES.get("nvls")().time_s("all_reduce", size, rings, caps)
    assert nvls - 25e-6 == pytest.approx(ideal / (0.85 * 15 / 16) * 10 / 8, rel=2e-3)


def test_nvls_runs_as_its_closed_form_with_the_fill():
    rings, caps = _h100()
    for size in (8 * MiB, 64 * MiB):
        ran = run_collective(rings, caps, "all_reduce", float(size), algorithm="nvls").record
        assert ran.time_s == pytest.approx(COLLECTIVES.get("nvls")().time_s("all_reduce", size, rings, caps),
                                           rel=1e-6)


def test_nvls_reduce_scatter_and_all_gather_have_no_fill():
    rings, caps = _h100()
    nvls = COLLECTIVES.get("nvls")()
    assert nvls.fill("reduce_scatter", 64 * MiB, rings) == 0.0
    assert nvls.fill("all_gather", 64 * MiB, rings) == 0.0


def test_the_tuner_weighs_nvls_without_the_fill():
    """NCCL's tuner has no pipeline fill (tuning.cc): it weighs NVLS's latency and rate
    alone, while the collective runs with the fill."""
    rings, caps = _h100()
    nvls = COLLECTIVES.get("nvls")()
    size = MiB  # where the fill (2.0: one loop) decides: weighed with it, the ring would win
    t = nvls.time_s("all_reduce", size, rings, caps)
    fixed = nvls.fixed_s("all_reduce", rings)
    assert nvls.weighed_s(t, "all_reduce", size, rings) == pytest.approx(fixed + (t - fixed) / 3)
    picked, timed = COLLECTIVES.get("nccl")().tune("all_reduce", size, rings, caps)
    assert picked.name == "nvls" and timed == t


def test_nvls_tree_across_two_dgx_h100_pays_nvls_fill_at_64_mib():
    """64 MiB across two DGX H100 (NCCL 2.26): 16 channels x 8 heads x 128 KiB = 16 MiB a
    loop, 4 loops through NVLS's 3 stages: 6 loop times, the flows' data time x 6/4."""
    from mcdla.hw.topology import load_topology

    topo = load_topology("dgx_h100_4node", sets=(("generator.nodes", 2),))
    rings, caps = topo.rings, topo.capacities()
    tree = COLLECTIVES.get("nvls_tree")()
    tree.nccl = nccl_tuning("2.26", 9.0)
    assert tree.fill("all_reduce", 64 * MiB, rings) == pytest.approx(2 / 4)
    flat = COLLECTIVES.get("nvls_tree")()
    flat.nccl, flat.fill = tree.nccl, lambda *args: 0.0  # its flows alone
    fixed = tree.fixed_s("all_reduce", rings)
    t, t_flat = (a.time_s("all_reduce", 64 * MiB, rings, caps) for a in (tree, flat))
    assert t - fixed == pytest.approx((t_flat - fixed) * 6 / 4, rel=1e-9)
    ran = run_collective(rings, caps, "all_reduce", 64.0 * MiB, algorithm="nvls_tree", nccl=tree.nccl).record
    assert ran.time_s == pytest.approx(t, rel=1e-6)
