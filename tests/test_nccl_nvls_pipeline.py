"""NVLS's chunk pipeline (issue 24, NCCL mid-size bandwidth): an NVLS all-reduce on one
machine runs in loops of nChannels x nHeads chunks through three concurrent stages
(scatter, reduce and multicast, gather: device/all_reduce.h), its chunk by message size
(enqueue.cc: 128 KiB, 64 KiB below 64 x 128 ops x 128 KiB, 32 KiB below 8 x 128 x 64 KiB,
16 KiB below 2 x 128 x 32 KiB on 16 channels of 8 heads). Expected values are worked out
by hand from those constants."""

from __future__ import annotations

import pytest

from mcdla.hw.nccl import nvls_chunk_bytes, nvls_fill
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


def test_nvls_fill_is_two_loops_over_the_loops_and_two_data_times_below_one_loop():
    assert nvls_fill(64 * MiB, 8) == pytest.approx(2 / 8)  # 8 loops of 16 x 8 x 64 KiB = 8 MiB
    assert nvls_fill(8 * MiB, 8) == pytest.approx(2 / 2)  # 2 loops of 4 MiB
    assert nvls_fill(MiB, 8) == pytest.approx(2.0)  # under one 2 MiB loop: 3 stages of its data
    assert nvls_fill(8 * GiB, 8) == pytest.approx(2 / 512)


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
    size = 8 * MiB
    t = nvls.time_s("all_reduce", size, rings, caps)
    fixed = nvls.fixed_s("all_reduce", rings)
    assert nvls.weighed_s(t, "all_reduce", size, rings) == pytest.approx(fixed + (t - fixed) / 2)
    picked, timed = COLLECTIVES.get("nccl")().tune("all_reduce", size, rings, caps)
    assert picked.name == "nvls" and timed == t
