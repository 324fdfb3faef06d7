"""NCCL's constants by version and nccl-tests' timing loop (issue 24). Expected values
are NCCL 2.18.5's tuning formulas (src/graph/tuning.cc, tag v2.18.5-1) evaluated by
hand, and the loop's closed form is checked against an explicit event simulation of
nccl-tests' loop, not against mcdla's own formula."""

from __future__ import annotations

import heapq

import pytest

from mcdla.hw.nccl import loop_time_s, nccl_tuning
from mcdla.hw.network import Ring, channel_id
from mcdla.run import simulate_collective
from mcdla.sim import algorithms  # noqa: F401  (registers the NCCL algorithms)
from mcdla.sim.collectives import run_collective


def _ring(n=4, bw_Bps=50e9):
    """One directed ring of ``n`` ranks on one machine, links of ``bw_Bps``, no latency."""
    names = tuple(f"D{i}" for i in range(n))
    channels = tuple(channel_id(names[i], names[(i + 1) % n], 0) for i in range(n))
    ring = Ring(name="r", ranks=names, segments=tuple((c,) for c in channels), latency_s=(0.0,) * n)
    return ring, {c: bw_Bps for c in channels}


def test_2_18_ll_latency_is_its_base_and_hop_latency():
    """1 byte, LL, 4 ranks on NVLink: 2.18.5's baseLat 6.6 us + 2(p-1) x hwLat 0.6 us =
    10.2 us (2.7: 3.6 + 6 x 0.47 = 6.42 us)."""
    ring, caps = _ring()
    new = run_collective((ring,), caps, "all_reduce", 1.0, algorithm="nccl_ring", nccl=nccl_tuning("2.18", 8.0))
    old = run_collective((ring,), caps, "all_reduce", 1.0, algorithm="nccl_ring")
    assert new.record.protocol == old.record.protocol == "LL"
    assert new.record.time_s == pytest.approx(10.2e-6, rel=1e-3)
    assert old.record.time_s == pytest.approx(6.42e-6, rel=1e-3)


def test_2_18_simple_pays_its_network_hop_between_machines():
    """1 byte, Simple forced, 4 ranks on 2 machines: baseLat 8.4 us + (nsteps -
    nInterSteps) x 3.4 us + nInterSteps x hwLat[NET] (2.18.5: 14 us; 2.7: 9.6 us), nsteps 6,
    nInterSteps 2: 50.0 us against 41.2 us."""
    from mcdla.sim.collectives import COLLECTIVES

    names = ("D0", "D1", "D2", "D3")
    channels = tuple(channel_id(names[i], names[(i + 1) % 4], 0) for i in range(4))
    ring = Ring(name="r", ranks=names, segments=tuple((c,) for c in channels), latency_s=(0.0,) * 4,
                node=("A", "A", "B", "B"))
    caps = {c: 50e9 for c in channels}
    times = {}
    for version in ("2.7", "2.18"):
        nccl = COLLECTIVES.get("nccl_ring")()
        nccl.nccl = nccl_tuning(version, 9.0)
        simple = nccl.protocol_costs("Simple", "all_reduce", (ring,), caps)
        times[version] = nccl.costed_time_s(simple, "all_reduce", 1.0, (ring,), caps, 4e3, None)
    assert times["2.18"] == pytest.approx(50.0e-6, rel=1e-3)
    assert times["2.7"] == pytest.approx(41.2e-6, rel=1e-3)


@pytest.mark.parametrize("cc, per_channel_GBps", [(7.0, 20.0), (8.0, 20.0), (9.0, 36.7), (None, 20.0)])
def test_2_18_ll128_is_capped_per_channel_by_architecture(cc, per_channel_GBps):
    """On 50 GB/s links LL128 would reach 0.92 x 50 = 46 GB/s per ring; 2.18.5 caps a
    channel at perChMaxRingLL128Bws: 20 GB/s on Volta and Ampere, 36.7 on Hopper (a
    device without a compute capability takes NCCL's lowest, Volta). A 1 GiB
    all-gather's algbw is the ring rate x p/(p-1), less its latency."""
    from mcdla.sim.collectives import COLLECTIVES

    ring, caps = _ring()
    nccl = COLLECTIVES.get("nccl_ring")()
    nccl.nccl = nccl_tuning("2.18", cc)
    ll128 = nccl.protocol_costs("LL128", "all_gather", (ring,), caps)
    t = nccl.costed_time_s(ll128, "all_gather", 2**30, (ring,), caps, 4e3, None)
    ring_rate = 2**30 * 3 / 4 / t  # bytes each rank receives over the time
    assert ring_rate == pytest.approx(per_channel_GBps * 1e9, rel=0.01)


def test_2_18_ll_is_capped_for_all_channels_together():
    """LL all-reduce moves 1/4 of the ring's rate: on 400 GB/s links 100 GB/s, above
    2.18.5's llMaxBw for one Ampere node (87.7 GB/s of bus bandwidth, all channels
    together); two rings share it (43.85 GB/s each)."""
    from mcdla.sim.collectives import COLLECTIVES

    ring, caps = _ring(bw_Bps=400e9)
    names = ring.ranks
    back_channels = tuple(channel_id(names[(i + 1) % 4], names[i], 0) for i in range(4))
    back = Ring(name="b", ranks=tuple(reversed(names)), segments=tuple((c,) for c in reversed(back_channels)),
                latency_s=(0.0,) * 4)
    caps.update({c: 400e9 for c in back_channels})
    nccl = COLLECTIVES.get("nccl_ring")()
    nccl.nccl = nccl_tuning("2.18", 8.0)
    one = nccl.protocol_costs("LL", "all_reduce", (ring,), caps)
    two = nccl.protocol_costs("LL", "all_reduce", (ring, back), caps)
    assert one.cap_Bps["r"] == pytest.approx(87.7e9 * 2.0)  # data rate x the flag bytes on the wire
    assert two.cap_Bps["r"] == two.cap_Bps["b"] == pytest.approx(87.7e9 / 2 * 2.0)


def test_2_18_nvls_latency_is_23_us():
    t = {v: simulate_collective("all_reduce", 8, topology="dgx_h100", algorithm="nvls", nccl_version=v)["time_s"]
         for v in ("2.7", "2.18")}
    assert t["2.7"] - t["2.18"] == pytest.approx(2e-6, rel=1e-6)  # 25 us (2.30.7) against 23 us


def _event_loop_s(host_s, gpu_s, iters):
    """nccl-tests' timing loop as events: one host thread enqueues collective k at
    k x host_s, done at (k+1) host_s; the GPUs run one collective at a time, in order,
    each gpu_s from when it is both launched and the one before has finished. The
    elapsed time to the last completion over iters."""
    events, gpu_free, end = [], 0.0, 0.0
    for k in range(iters):
        heapq.heappush(events, ((k + 1) * host_s, k))
    while events:
        launched, _k = heapq.heappop(events)
        start = max(launched, gpu_free)
        gpu_free = end = start + gpu_s
    return end / iters


@pytest.mark.parametrize("host_s, gpu_s, iters", [(40e-6, 10e-6, 20), (40e-6, 400e-6, 20), (5e-6, 5e-6, 7),
                                                  (40e-6, 39e-6, 2), (1e-6, 3e-3, 20)])
def test_the_loops_closed_form_matches_its_event_simulation(host_s, gpu_s, iters):
    assert loop_time_s(host_s, gpu_s, iters) == pytest.approx(_event_loop_s(host_s, gpu_s, iters), rel=1e-9)


def test_a_small_collective_launched_for_8_gpus_by_one_thread_is_host_bound():
    """nccl-tests -g 8 under NCCL 2.18 (parallel launches): a small all-reduce's GPU time
    hides behind the 8 launches of the next (8 x 5 us), so the loop reports about 40 us,
    not the 40 us plus the collective's own time that one collective alone takes; with
    -g 1 each process launches once, and the loop reports the GPU time (+ 5 us / 20)."""
    args = dict(topology="dgx_a100", nccl_version="2.18")
    alone = simulate_collective("all_reduce", 8192, launch_serial=8, **args)["time_s"]
    g8 = simulate_collective("all_reduce", 8192, launch_serial=8, iters=20, **args)["time_s"]
    g1 = simulate_collective("all_reduce", 8192, iters=20, **args)["time_s"]
    gpu_s = alone - 8 * 5e-6
    assert 5e-6 < gpu_s < 40e-6
    assert g8 == pytest.approx(40e-6 + gpu_s / 20, rel=1e-9)
    assert g1 == pytest.approx(gpu_s + 5e-6 / 20, rel=1e-9)


def test_a_large_collective_hides_the_launches():
    args = dict(topology="dgx_a100", nccl_version="2.18", launch_serial=8)
    alone = simulate_collective("all_reduce", 2**30, **args)["time_s"]
    loop = simulate_collective("all_reduce", 2**30, iters=20, **args)["time_s"]
    assert alone - loop == pytest.approx(40e-6 * 19 / 20, rel=1e-6)


def test_group_launch_does_not_overlap():
    """NCCL up to 2.8 launches several GPUs of one process as a group (the default 2.7
    constants): the loop charges every collective its launches and its GPU time."""
    alone = simulate_collective("all_reduce", 8192, topology="dgx1v", launch_serial=8)
    loop = simulate_collective("all_reduce", 8192, topology="dgx1v", launch_serial=8, iters=20)
    assert loop["time_s"] == alone["time_s"]
    assert loop["iters"] == 20 and "iters" not in alone


def test_a100s_ring_runs_at_the_sms_nvlink_rate():
    """NCCL's kernels move data with SM stores of 128 B payloads: about 20 GB/s per NVLink 3
    link (NCCL maintainer, nccl-tests issue 149), so a DGX A100 all-reduce's bus bandwidth
    stays under 12 x 20 = 240 GB/s (a copy engine's 256 B payloads would allow 275)."""
    busbw = simulate_collective("all_reduce", 2**33, topology="dgx_a100", algorithm="nccl_ring")["busbw_Bps"]
    assert 230e9 < busbw <= 240e9


@pytest.mark.parametrize("argv, key", [(["--nccl-version", "2.99"], "--nccl-version"), (["--iters", "0"], "--iters")])
def test_bad_nccl_options_are_refused(capsys, argv, key):
    from mcdla.cli.main import main

    assert main(["collective", "--op", "all_reduce", "--size", "8 KiB", "--topology", "dgx_a100", *argv]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
