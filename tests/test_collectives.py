"""Ring collectives on the flow network, their closed forms and ``mcdla collective``."""

from __future__ import annotations

import csv
import io
import json

import pytest
import simpy

from mcdla import units
from mcdla.cli.main import main
from mcdla.hw.collective_model import bus_factor, busbw_Bps, collective_time_s
from mcdla.hw.network import Ring, reduce_unit
from mcdla.sim.collectives import (
    DEFAULT_CHUNK_BYTES,
    RingAlgorithm,
    collective,
    ring_of_devices,
    run_collective,
)
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.nccl_collectives import NcclAlgorithm

LINK_Bps = 25e9
HOP_S = 500e-9
STEP_OPS = ("all_reduce", "all_gather", "reduce_scatter")


def _closed(op, size, n, *, rings=2, chunk=DEFAULT_CHUNK_BYTES, latency=HOP_S, reduce_Bps=None):
    return collective_time_s(
        op, size, n, rings * LINK_Bps, latency, rings=rings, chunk_bytes=chunk, reduce_Bps=reduce_Bps
    )


@pytest.mark.parametrize("op", STEP_OPS + ("broadcast",))
@pytest.mark.parametrize("n", [2, 3, 8, 16])
def test_idle_ring_matches_closed_form(op, n):
    rings, caps = ring_of_devices(n, LINK_Bps, HOP_S)
    run = run_collective(rings, caps, op, 64e6)
    assert run.record.time_s == pytest.approx(_closed(op, 64e6, n), rel=1e-2)
    # the model is the closed form step by step, so it agrees far better than 1%
    assert run.record.time_s == pytest.approx(_closed(op, 64e6, n), rel=1e-9)


def _relay_ring(devices=4):
    """A directed ring D0 -> M0 -> D1 -> M1 -> ... relaying through memory-nodes."""
    ranks = tuple(f"D{i}" for i in range(devices))
    segments, latencies, caps = [], [], {}
    for i in range(devices):
        a, m, b = ranks[i], f"M{i}", ranks[(i + 1) % devices]
        seg = (f"{a}>{m}:0", f"{m}>{b}:0")
        segments.append(seg)
        latencies.append(2 * HOP_S + (1e-7 if i == 1 else 0.0))  # one slower segment
        caps.update({c: LINK_Bps for c in seg})
    return Ring("relay", ranks, tuple(segments), tuple(latencies)), caps


@pytest.mark.parametrize("op", STEP_OPS)
def test_ring_through_memory_nodes_steps_at_its_slowest_segment(op):
    ring, caps = _relay_ring()
    run = run_collective([ring], caps, op, 32e6)
    slowest = max(ring.latency_s)
    expected = collective_time_s(op, 32e6, 4, LINK_Bps, slowest, rings=1)
    assert run.record.time_s == pytest.approx(expected, rel=1e-9)


def test_broadcast_through_memory_nodes_pays_every_segment_latency_once():
    ring, caps = _relay_ring()
    run = run_collective([ring], caps, "broadcast", 32e6, chunk_bytes=8e3, root=1)
    path_latency = sum(ring.latency_s[i % 4] for i in (1, 2, 3))  # segments after D1
    expected = collective_time_s(
        "broadcast", 32e6, 4, LINK_Bps, HOP_S, rings=1, chunk_bytes=8e3, path_latency_s=path_latency
    )
    assert run.record.time_s == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("op", STEP_OPS + ("broadcast",))
def test_the_ring_algorithm_closed_form_is_the_hw_formula(op):
    """RingAlgorithm.time_s and collective_time_s are one formula (ring_time_s): on one
    idle ring they agree to the last bit."""
    ring, caps = _relay_ring()
    path = sum(ring.latency_s[:3])  # broadcast from rank 0: segments 0..2
    for size, chunk, reduce_Bps in ((32e6, 8e3, None), (4e3, 1e6, 5e9), (1e9, DEFAULT_CHUNK_BYTES, 30e9)):
        expected = collective_time_s(op, size, 4, LINK_Bps, max(ring.latency_s), chunk_bytes=chunk,
                                     reduce_Bps=reduce_Bps, path_latency_s=path)
        assert RingAlgorithm().time_s(op, size, [ring], caps, chunk_bytes=chunk, reduce_Bps=reduce_Bps) == expected


def test_a_chunk_larger_than_the_message_is_the_message():
    """Broadcast's pipeline fill is one chunk per forwarding rank, and a chunk is at
    most a ring's share: the closed form clamps it as the simulation does."""
    rings, caps = ring_of_devices(8, LINK_Bps, HOP_S)
    run = run_collective(rings, caps, "broadcast", 1e6, chunk_bytes=64e6)
    assert run.record.time_s == pytest.approx(_closed("broadcast", 1e6, 8, chunk=64e6), rel=1e-9)
    assert run.record.time_s == pytest.approx(_closed("broadcast", 1e6, 8, chunk=1e6 / 2), rel=1e-9)


def test_nccl_solves_each_distinct_collective_once(monkeypatch):
    """A training run launches thousands of collectives of a few sizes on the same rings:
    the NCCL tuner's max-min solves (one per protocol) are kept per distinct collective,
    and give the same answers as solving afresh."""
    solved = []
    costed = NcclAlgorithm.costed_time_s
    monkeypatch.setattr(NcclAlgorithm, "costed_time_s", staticmethod(lambda *a: solved.append(a[1]) or costed(*a)))
    rings, caps = ring_of_devices(4, LINK_Bps, HOP_S)
    nccl = NcclAlgorithm(2e-6)
    env = simpy.Environment()
    net = FlowNetwork(env, caps)
    times = []

    def stream():
        for _ in range(5):
            for size in (1e6, 32e6):
                record = yield nccl.start(env, net, rings, "all_reduce", size, reduce_Bps=40e9)
                times.append(record.time_s)

    env.process(stream())
    env.run()
    assert solved == ["all_reduce"] * 3 * 2  # three protocols, two sizes
    for size in (1e6, 32e6):
        fresh = NcclAlgorithm(2e-6)
        assert nccl.time_s("all_reduce", size, rings, caps, reduce_Bps=40e9) \
            == fresh.time_s("all_reduce", size, rings, caps, reduce_Bps=40e9)
        assert nccl.costs_for("all_reduce", size, rings, caps, reduce_Bps=40e9) \
            == fresh.costs_for("all_reduce", size, rings, caps, reduce_Bps=40e9)
    assert len(solved) == 6 + 2 * 3  # the fresh instances solved; the first did not again
    assert times[0::2] == pytest.approx([times[0]] * 5, rel=1e-12)  # the same protocol each time
    assert times[1::2] == pytest.approx([times[1]] * 5, rel=1e-12)
    # Same rings, other capacities: solved afresh, not taken from the rings' earlier answer.
    slow = {c: LINK_Bps / 10 for c in caps}
    assert nccl.time_s("all_reduce", 32e6, rings, slow) == NcclAlgorithm(2e-6).time_s("all_reduce", 32e6, rings, slow)
    assert nccl.time_s("all_reduce", 32e6, rings, slow) > nccl.time_s("all_reduce", 32e6, rings, caps) * 5


def test_step_collectives_do_not_depend_on_the_chunk():
    rings, caps = ring_of_devices(8, LINK_Bps, HOP_S)
    times = {c: run_collective(rings, caps, "all_reduce", 8e6, chunk_bytes=c).record.time_s for c in (1e3, 4e3, 1e6)}
    assert times[1e3] == times[4e3] == times[1e6]


def test_broadcast_converges_as_the_chunk_shrinks():
    rings, caps = ring_of_devices(8, LINK_Bps, HOP_S)
    chunks = [256e3, 64e3, 16e3, 4e3, 1e3]
    times = [run_collective(rings, caps, "broadcast", 8e6, chunk_bytes=c).record.time_s for c in chunks]
    limit = _closed("broadcast", 8e6, 8, chunk=0.0)
    errors = [t - limit for t in times]
    assert all(e > 0 for e in errors)
    # the error shrinks in proportion to the chunk (the pipeline fill (p-2) c / b) ...
    for bigger, smaller in zip(errors, errors[1:]):
        assert smaller == pytest.approx(bigger / 4, rel=1e-6)
    # ... and at the default chunk the result has converged to within 1% of the limit
    default = run_collective(rings, caps, "broadcast", 8e6).record.time_s
    assert default == pytest.approx(limit, rel=1e-2)


def test_slow_reduction_sets_the_pace_of_reduce_scatter_steps():
    rings, caps = ring_of_devices(4, LINK_Bps, HOP_S)
    reduce_Bps = 10e9  # per device, shared by both rings: 5 GB/s each, below the link
    run = run_collective(rings, caps, "all_reduce", 16e6, reduce_Bps=reduce_Bps)
    assert run.record.time_s == pytest.approx(_closed("all_reduce", 16e6, 4, reduce_Bps=reduce_Bps), rel=1e-9)
    fast = run_collective(rings, caps, "all_reduce", 16e6, reduce_Bps=1e12)
    free = run_collective(rings, caps, "all_reduce", 16e6)
    assert fast.record.time_s == pytest.approx(free.record.time_s, rel=1e-12)
    assert run.record.time_s > free.record.time_s


def test_record_and_link_bytes():
    n, size = 4, 8e6
    env = simpy.Environment()
    rings, caps = ring_of_devices(n, LINK_Bps, HOP_S)
    net = FlowNetwork(env, caps)
    proc = collective(env, net, rings, "all_reduce", size, tag="dW3")
    env.run()
    record = proc.value
    assert record.flows == 2 * 2  # per ring: the reduce-scatter phase, then the all-gather phase
    assert record.bytes_per_ring == (size / 2, size / 2)
    assert record.bytes_sent_per_ring == (2 * (n - 1) * size / 2,) * 2
    assert record.start_s == 0.0 and record.end_s == pytest.approx(env.now)
    stats = net.stats()
    # every channel carries 2(p-1) steps of (n / rings) / p bytes
    for channel in caps:
        assert stats.bytes_by_resource[channel] == pytest.approx(2 * (n - 1) * size / 2 / n)


def test_contending_flow_slows_the_collective():
    rings, caps = ring_of_devices(4, LINK_Bps, HOP_S)
    env = simpy.Environment()
    net = FlowNetwork(env, caps)
    proc = collective(env, net, rings, "all_gather", 8e6)
    net.transfer(50e6, [rings[0].segments[0][0]])  # an offload sharing one ring channel
    env.run()
    assert proc.value.time_s > _closed("all_gather", 8e6, 4) * 1.2


def test_reduce_resources_are_shared_per_device():
    rings, caps = ring_of_devices(3, LINK_Bps, HOP_S)
    env = simpy.Environment()
    net = FlowNetwork(env, caps)
    collective(env, net, rings, "reduce_scatter", 1e6, reduce_Bps=5e9)
    collective(env, net, rings, "reduce_scatter", 1e6, reduce_Bps=5e9)
    assert net.capacities_Bps[reduce_unit("D0")] == 5e9
    with pytest.raises(ValueError, match="already has capacity"):
        collective(env, net, rings, "reduce_scatter", 1e6, reduce_Bps=6e9)


def test_a_devices_reduction_unit_is_one_string_for_all_its_rings():
    # A rank's unit is named by each ring it is on (18 a group at 131,072 GPUs): one
    # string, not one per ring, or the rings' units alone take 140 MB there.
    (cw, ccw), _ = ring_of_devices(4, LINK_Bps, HOP_S)
    assert set(cw.reduce_units) == set(ccw.reduce_units)
    by_id = {unit: unit for unit in cw.reduce_units}
    assert all(unit is by_id[unit] for unit in ccw.reduce_units)


def test_ring_of_devices_is_two_channel_disjoint_directed_rings():
    for n in (2, 3, 8):
        (cw, ccw), caps = ring_of_devices(n, LINK_Bps, HOP_S)
        assert cw.size == ccw.size == n
        assert not set(cw.channels) & set(ccw.channels)
        assert set(cw.channels) | set(ccw.channels) == set(caps)
        assert len(caps) == 2 * n  # n full-duplex links
        assert set(cw.ranks) == set(ccw.ranks)


def test_zero_size_and_single_rank():
    rings, caps = ring_of_devices(4, LINK_Bps, HOP_S)
    assert run_collective(rings, caps, "all_reduce", 0.0).record.time_s == 0.0
    one = Ring("solo", ("D0",), ((),), (0.0,))
    assert run_collective([one], {}, "all_reduce", 1e6).record.time_s == 0.0


def test_bad_collective_arguments():
    rings, caps = ring_of_devices(4, LINK_Bps, HOP_S)
    env = simpy.Environment()
    net = FlowNetwork(env, caps)
    with pytest.raises(ValueError, match="unknown collective"):
        collective(env, net, rings, "alltoall", 1.0)
    with pytest.raises(ValueError, match="chunk_bytes"):
        collective(env, net, rings, "broadcast", 1.0, chunk_bytes=0)
    with pytest.raises(ValueError, match="root"):
        collective(env, net, rings, "broadcast", 1.0, root=4)


def test_bus_factors():
    assert bus_factor("all_reduce", 8) == pytest.approx(14 / 8)
    assert bus_factor("all_gather", 8) == pytest.approx(7 / 8)
    assert bus_factor("reduce_scatter", 8) == pytest.approx(7 / 8)
    assert bus_factor("broadcast", 8) == 1.0
    # busbw of a large all-reduce approaches the rings' total bandwidth
    t = collective_time_s("all_reduce", 1e9, 8, 50e9, 0.0)
    assert busbw_Bps("all_reduce", 1e9, t, 8) == pytest.approx(50e9)


# -- mcdla collective -----------------------------------------------------------------


def _cli(capsys, *argv):
    code = main(["collective", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json(capsys):
    code, out, _ = _cli(capsys, "--op", "all_reduce", "--size", "64 MB", "--ring", "8", "--format", "json")
    assert code == 0
    data = json.loads(out)
    for key in ("op", "size_bytes", "ranks", "rings", "time_s", "algbw_Bps", "busbw_Bps", "events", "wall_s"):
        assert key in data
    assert data["ranks"] == 8 and data["rings"] == 2 and data["size_bytes"] == 64e6
    assert data["time_s"] == pytest.approx(_closed("all_reduce", 64e6, 8))
    assert data["algbw_Bps"] == pytest.approx(64e6 / data["time_s"])
    assert data["busbw_Bps"] == pytest.approx(data["algbw_Bps"] * 14 / 8)


def test_cli_csv_and_table(capsys, tmp_path):
    code, out, _ = _cli(capsys, "--op", "broadcast", "--size", "1 MiB", "--ring", "4", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["op"] == "broadcast" and float(rows[0]["size_bytes"]) == 2**20
    target = tmp_path / "out.txt"
    code, out, _ = _cli(
        capsys, "--op", "all_gather", "--size", "4 MB", "--ring", "3", "--link-bw", "10 GB/s",
        "--link-latency", "1 us", "--chunk", "8 KB", "--output", str(target),
    )
    assert code == 0 and out == ""
    text = target.read_text()
    assert text.splitlines()[0].split() == ["op", "all_gather"]
    expected = collective_time_s("all_gather", 4e6, 3, 20e9, 1e-6, rings=2)
    # Tables print quantities with units for people (issue 9), to 4 significant digits.
    printed = dict(line.split(None, 1) for line in text.splitlines() if line.strip())
    assert units.parse(printed["time_s"].strip(), "time") == pytest.approx(expected, rel=5e-4)


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--size", "8 XB", "--ring", "4"], "--size"),
        (["--size", "-1 MB", "--ring", "4"], "--size"),
        (["--size", "8 MB", "--ring", "4", "--chunk", "0"], "--chunk"),
        (["--size", "8 MB", "--ring", "4", "--link-bw", "fast"], "--link-bw"),
        (["--size", "8 MB", "--ring", "4", "--link-latency", "5 parsecs"], "--link-latency"),
        (["--size", "8 MB", "--ring", "1"], "--ring"),
    ],
)
def test_cli_bad_values_exit_2_naming_the_option(capsys, argv, option):
    code, out, err = _cli(capsys, "--op", "all_reduce", *argv)
    assert code == 2 and out == ""
    assert option in err


def test_cli_topology(capsys):
    pytest.importorskip("mcdla.hw.topology")
    code, out, _ = _cli(capsys, "--op", "all_reduce", "--size", "64 MB", "--topology", "dc", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["ranks"] == 8 and data["rings"] == 6
    # six directed rings of 25 GB/s: the bus bandwidth of a large all-reduce nears 150 GB/s
    assert data["busbw_Bps"] == pytest.approx(150e9, rel=0.02)
    code, _, err = _cli(capsys, "--op", "all_reduce", "--size", "1 MB", "--topology", "dc", "--link-bw", "1 GB/s")
    assert code == 2 and "--link-bw" in err


def test_fig09_experiment_runs_through_the_sweep_and_matches_closed_forms(tmp_path):
    from mcdla import units
    from mcdla.config.experiment import load_experiment
    from mcdla.sweep.engine import run_sweep
    from mcdla.sweep.store import read_table

    run_sweep(load_experiment("fig09"), out=tmp_path, jobs=1, progress=False)
    table = read_table(tmp_path)
    assert len(table) == 16 and (table["status"] == "ok").all()
    for row in table.itertuples():
        size, chunk = units.parse_size(row.size), units.parse_size(row.chunk)
        link_Bps = units.parse_bandwidth(row.link_bw)
        expected = collective_time_s(row.op, size, row.ring, 2 * link_Bps, HOP_S, rings=2, chunk_bytes=chunk)
        assert row.time_s == pytest.approx(expected, rel=1e-9)
