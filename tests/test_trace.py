"""``mcdla sim --trace``: a Chrome/Perfetto trace in microseconds, and ``mcdla plot --trace``."""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main
from mcdla.errors import InputError
from mcdla.plots.links import binned
from mcdla.run import simulate

ARGS = ["sim", "--workload", "alexnet", "--batch", "64", "--format", "json"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "run.json"
    result = simulate("ring", "bw_aware", "alexnet", "data", 64, trace=str(path))
    return path, result, json.loads(path.read_text(encoding="utf-8"))


def names_of(events, kind):
    return {(e["pid"], e.get("tid")): e["args"]["name"] for e in events if e["name"] == kind}


def test_trace_has_device_ring_and_counter_tracks(traced):
    _, result, doc = traced
    events = doc["traceEvents"]
    processes = names_of(events, "process_name")
    assert [processes[(p, None)] for p in range(1, 9)] == [f"D{i}" for i in range(8)]
    assert processes[(9, None)] == "collectives"
    assert processes[(10, None)] == "links"
    assert processes[(11, None)] == "memory ports"
    threads = names_of(events, "thread_name")
    assert [threads[(1, t)] for t in (1, 2, 3)] == ["compute", "offload", "prefetch"]
    assert threads[(9, 1)] == "ring ring0.fwd"
    assert sum(1 for pid, _ in threads if pid == 9) == 6  # six directed rings
    counters = {(e["pid"], e["name"]) for e in events if e["ph"] == "C"}
    assert (10, "D0>M0") in counters and (10, "M7>D7") in counters
    assert (1, "memory in use") in counters
    assert (11, "M0/D0") in counters


def test_spans_carry_labels_and_directions(traced):
    _, _, doc = traced
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    compute = [e for e in spans if e["pid"] == 1 and e["tid"] == 1]
    assert compute[0]["name"] == "fwd conv1"
    assert any(e["name"].startswith("bwd ") for e in compute)
    assert all(e["name"].startswith("offload ") for e in spans if e["cat"] == "offload" and e["tid"] == 2)
    assert all(e["name"].startswith("prefetch ") for e in spans if e["cat"] == "prefetch" and e["tid"] == 3)
    ops = {e["name"] for e in spans if e["cat"] == "collective"}
    assert ops == {"all_reduce"}


def test_timestamps_are_microseconds(traced):
    _, result, doc = traced
    end_us = result["iteration_time_s"] * 1e6
    assert doc["otherData"]["iteration_time_us"] == pytest.approx(end_us, rel=1e-9)
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert max(e["ts"] + e["dur"] for e in spans) == pytest.approx(end_us, rel=1e-6)
    assert min(e["ts"] for e in spans) == 0.0
    assert all(e["dur"] >= 0 for e in spans)
    # The compute of D0 adds up to the reported busy time (averaged over devices, all equal here).
    busy_us = sum(e["dur"] for e in spans if e["pid"] == 1 and e["tid"] == 1)
    assert busy_us == pytest.approx(result["busy_s"]["compute"] * 1e6, rel=1e-6)


def test_link_counters_are_fractions_and_match_link_bytes(traced):
    _, result, doc = traced
    links = {}
    for e in doc["traceEvents"]:
        if e["ph"] == "C" and e["cat"] == "link_utilization":
            links.setdefault(e["name"], []).append((e["ts"], e["args"]["utilization"]))
    assert set(links) == set(result["link_bytes"])
    assert all(0.0 <= u <= 1.0 + 1e-9 for series in links.values() for _, u in series)
    # Integral of utilization x capacity = bytes carried (the ring's D0>M0 has 3 links of 25 GB/s).
    from mcdla.hw.topology import load_topology

    topo = load_topology("ring")
    cap = sum(c.bw_Bps for c in topo.channels.values() if (c.src, c.dst) == ("D0", "M0"))
    end_us = doc["otherData"]["iteration_time_us"]
    series = links["D0>M0"]
    area_us = sum(u * (t1 - t0) for (t0, u), (t1, _) in zip(series, series[1:] + [(end_us, 0.0)]))
    assert area_us * 1e-6 * cap == pytest.approx(result["link_bytes"]["D0>M0"], rel=1e-6)


def test_trace_is_deterministic(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        assert main(ARGS + ["--trace", str(path), "--output", str(tmp_path / "out.json")]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_unwritable_trace_is_refused_before_simulating(tmp_path, capsys):
    assert main(ARGS + ["--trace", str(tmp_path / "no" / "such" / "t.json")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(ARGS + ["--trace", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_plot_trace_renders_png_and_svg(traced, tmp_path, capsys):
    path, _, _ = traced
    assert main(["plot", "--trace", str(path), "--out", str(tmp_path)]) == 0
    for suffix in ("png", "svg"):
        drawn = tmp_path / f"run_links.{suffix}"
        assert drawn.is_file() and drawn.stat().st_size > 1000


def test_plot_needs_experiment_or_trace(capsys):
    assert main(["plot"]) == 2
    assert "either EXPERIMENT or --trace" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("not json", "not a JSON trace"),
    ('{"traceEvents": 3}', "no traceEvents list"),
    ('{"traceEvents": []}', "no link utilization counters"),
    ('{"traceEvents": [{"ph": "C", "cat": "link_utilization", "name": "a", "ts": "x"}]}', "malformed"),
])
def test_plot_refuses_a_bad_trace(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    assert main(["plot", "--trace", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.png"))


def test_binned_average_integrates_the_steps():
    series = [(0.0, 0.0), (1.0, 1.0), (3.0, 0.5)]
    assert binned(series, 4.0, 4) == pytest.approx([0.0, 1.0, 1.0, 0.5])
    assert binned(series, 4.0, 1) == pytest.approx([(2 * 1.0 + 0.5) / 4])


def test_write_trace_errors_are_input_errors(tmp_path):
    from mcdla.io.trace import check_trace_path

    with pytest.raises(InputError, match="is a directory"):
        check_trace_path(tmp_path)
