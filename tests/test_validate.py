"""Calibration and validation (issue 10): the NCCL cost model's protocol behaviour, the
calibrated device fields, the DGX-1V design and ``mcdla validate``."""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main
from mcdla.hw.layers import Kernel
from mcdla.hw.compute import kernel_time
from mcdla.hw.topology import load_topology
from mcdla.run import simulate, simulate_collective
from mcdla.sim.algorithms import COLLECTIVES
from mcdla.sim.collectives import run_collective


def _nccl(topo, size, op="all_reduce"):
    return run_collective(topo.rings, topo.capacities(), op, size, algorithm="nccl").record


def test_nccl_picks_low_latency_for_small_and_simple_for_large_messages():
    topo = load_topology("dgx1v")
    assert _nccl(topo, 4096).protocol == "LL"
    assert _nccl(topo, 1 << 30).protocol == "Simple"


def test_ll_puts_a_flag_beside_every_data_word_on_the_wire():
    topo = load_topology("dgx1v")
    env_bytes = {}
    from mcdla.sim.environment import CountingEnvironment
    from mcdla.sim.flownet import FlowNetwork

    for name in ("ring", "nccl"):
        env = CountingEnvironment()
        net = FlowNetwork(env, topo.capacities())
        proc = COLLECTIVES.get(name)().start(env, net, topo.rings, "all_reduce", 8192.0)
        env.run()
        env_bytes[name] = sum(b for r, b in net.stats().bytes_by_resource.items() if r in topo.channels)
        assert proc.value.size_bytes == 8192.0
    # 6 rings of 8 ranks, 14 steps of 1/8 of each ring's share: 8192 * 14 / 8 * 8 ranks
    assert env_bytes["ring"] == pytest.approx(8192 * 14)
    assert env_bytes["nccl"] == pytest.approx(2 * 8192 * 14)  # LL: 4 data bytes per 8-byte store


def test_nccl_small_message_time_is_its_fixed_and_step_latencies():
    """1 byte on 8 ranks: LL's 3.6 us base latency plus 14 steps of 0.47 us (NCCL's
    tuning model), the wire time of 1 byte being negligible."""
    r = simulate_collective("all_reduce", 1, topology="dgx1v")
    assert r["protocol"] == "LL"
    assert r["time_s"] == pytest.approx(3.6e-6 + 5e-6 + 14 * 0.47e-6, rel=1e-3)  # + one 5 us launch


def test_launch_serial_adds_one_launch_per_device_a_thread_serves():
    one = simulate_collective("all_reduce", 1, topology="dgx1v")["time_s"]
    eight = simulate_collective("all_reduce", 1, topology="dgx1v", launch_serial=8)["time_s"]
    assert eight - one == pytest.approx(7 * 5e-6, rel=1e-6)


def test_the_paper_ring_has_no_library_costs():
    r = simulate_collective("all_reduce", 1, topology="dc")
    assert r["algorithm"] == "ring" and "protocol" not in r
    assert r["time_s"] < 1e-5


def test_calibrated_memory_efficiency_stretches_a_memory_bound_kernel():
    ideal = load_topology("dgx1v", [("device.hbm_efficiency", 1.0), ("device.launch_overhead", 0)]).device
    real = load_topology("dgx1v", [("device.launch_overhead", 0)]).device
    kernel = Kernel("relu", 0, 900_000_000, None)  # 0.9 GB through HBM
    assert kernel_time(ideal, kernel).time_s == pytest.approx(1e-3 + ideal.hbm_latency)
    assert kernel_time(real, kernel).time_s == pytest.approx(1e-3 / 0.872 + real.hbm_latency)


def test_launch_overhead_is_paid_per_kernel():
    device = load_topology("dgx1v").device
    zero = load_topology("dgx1v", [("device.launch_overhead", 0)]).device
    kernel = Kernel("relu", 0, 1000, None)
    assert kernel_time(device, kernel).time_s - kernel_time(zero, kernel).time_s == pytest.approx(5e-6)


def test_dgx1v_trains_with_nccl_collectives_and_the_paper_dc_with_the_ring():
    kept = [("training.virtualization", False)]  # the same memory plan on both (their defaults differ)
    real = simulate("dgx1v", "bw_aware", "alexnet", "data", 64, kept)
    ideal = simulate("dc", "bw_aware", "alexnet", "data", 64, kept)
    assert real["iteration_time_s"] > ideal["iteration_time_s"]  # efficiencies, launches, NCCL costs
    # With NCCL off (the paper's ring on the same machine) the iteration is shorter by at
    # least the last gradient all-reduce's fixed cost, which nothing after it can hide
    # (Simple's 8.4 us base latency in NCCL's tuning model; a 5 us launch on top).
    ring = simulate("dgx1v", "bw_aware", "alexnet", "data", 64, [("execution.collective", "ring")])
    assert real["iteration_time_s"] - ring["iteration_time_s"] >= 8.4e-6


def test_validate_reduced_runs_every_marked_row(capsys):
    assert main(["validate", "--reduced", "--format", "json", "--quiet"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["table"] for r in rows} == {"nccl_dgx1v", "cnn_titanx", "vdnn_titanx", "resnet50_dgx1v", "zero_memory",
                                          "nccl_dgx_a100", "nccl_dgx_h100", "nccl_h100_multinode", "copies"}
    assert all(r["verdict"] in ("pass", "miss") for r in rows)
    by = {(r["table"], r["quantity"]): r for r in rows}
    # The targets of issues 10 and 24 the NCCL model meets (docs/validation.md lists the rest).
    for key in [("nccl_dgx1v", q) for q in ("all-reduce time, 1 KiB", "all-reduce bus bandwidth, 1 MiB",
                                            "all-reduce bus bandwidth, 64 MiB", "all-reduce bus bandwidth, 1 GiB")] \
            + [("resnet50_dgx1v", "ResNet-50 8-over-1 GPU scaling, FP32"),
               ("nccl_dgx_h100", "NVLS all-reduce bus bandwidth, 1 GiB"),
               ("nccl_dgx_h100", "all-reduce bus bandwidth, 8 GiB, NCCL's choice, -g 1"),
               ("nccl_dgx_h100", "ring all-reduce bus bandwidth (NVLS off), 8 GiB"),
               ("nccl_h100_multinode", "all-reduce bus bandwidth, 2 nodes, 16 GiB"),
               ("copies", "GPU-to-GPU copy bandwidth, H100 over NVSwitch gen3")]:
        assert by[key]["verdict"] == "pass", by[key]


def test_validate_draws_its_figure(tmp_path):
    out = tmp_path / "v.png"
    assert main(["validate", "--table", "nccl_dgx1v", "--reduced", "--quiet", "--plot", str(out)]) == 0
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("edit, key", [
    ("measure: busbw", "measure"),
    ("measured: 20.56 GB/s", "measured"),
    ("op: all_reduce", "args"),
])
def test_a_bad_validation_table_names_the_key(tmp_path, capsys, edit, key):
    good = """
name: t
description: d
rows:
  - quantity: q
    kind: collective
    args: {topology: dgx1v, op: all_reduce, size: 1 MiB}
    measure: busbw
    measured: 20.56 GB/s
    tolerance: 0.1
    source: {title: s, url: u}
"""
    bad = {"measure": "measure: iteration_time", "measured": "measured: 20 furlongs",
           "args": "op: all_reduce, colour: red"}[key]
    path = tmp_path / "t.yaml"
    path.write_text(good.replace(edit, bad))
    assert main(["validate", "--table", str(path), "--quiet"]) in (1, 2)
    err = capsys.readouterr().err
    assert key in err and len(err.splitlines()) <= 2


@pytest.mark.parametrize("command", [["sim"], ["collective", "--op", "all_reduce", "--size", "1 MiB"]])
def test_an_unknown_collective_in_a_topology_names_the_file_and_key(tmp_path, capsys, command):
    from mcdla.config.loader import DATA_ROOT

    text = (DATA_ROOT / "topologies" / "dgx1v.yaml").read_text().replace("collective: nccl", "collective: bogus")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main([*command, "--topology", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: collective: unknown collective algorithm 'bogus'" in err


def test_a_copy_between_gpus_uses_every_nvlink_and_a_host_copy_its_pcie_link():
    """H100: a GPU-to-GPU copy spreads over the 18 NVLinks to the switch (18 x 25 GB/s x
    0.822); a host copy goes over the GPU's PCIe gen5 x16 (63 GB/s x 0.81), not over the
    NVLinks; a copy's time includes its links' latency (0.3 us + 0.1 us + 0.3 us)."""
    from mcdla.run import simulate_transfer

    p2p = simulate_transfer("D0", "D1", "1 GiB", topology="dgx_h100")
    assert p2p["bandwidth_Bps"] == pytest.approx(18 * 25e9 * 0.822, rel=1e-3)
    h2d = simulate_transfer("host", "D3", "1 GiB", topology="dgx_h100")
    assert h2d["bandwidth_Bps"] == pytest.approx(63e9 * 0.81, rel=1e-3)
    tiny = simulate_transfer("D0", "D7", 1, topology="dgx_h100")
    assert tiny["time_s"] == pytest.approx(0.7e-6, rel=1e-3)


def _one_row_table(tmp_path, kind: str, args: str, measure: str, measured: str):
    """A validation file of one row (``args``: its args mapping as YAML flow text)."""
    path = tmp_path / "t.yaml"
    path.write_text(f"""
name: t
description: d
rows:
  - quantity: q
    kind: {kind}
    args: {args}
    measure: {measure}
    measured: {measured}
    tolerance: 0.1
    source: {{title: s, url: u}}
""")
    return path


@pytest.mark.parametrize("args, key", [
    ("{topology: dgx_h100, src: D0, dst: D99, size: 1 MiB}", "dst"),
    ("{topology: dgx_h100, src: host, dst: host, size: 1 MiB}", "dst"),
    ("{topology: dgx_h100, src: D0, dst: D1, size: 1 MiB, op: all_reduce}", "op"),
])
def test_a_bad_transfer_row_names_its_key(tmp_path, capsys, args, key):
    path = _one_row_table(tmp_path, "transfer", args, "bandwidth", "300 GB/s")
    code = main(["validate", "--table", str(path), "--quiet", "--format", "json"])
    out, err = capsys.readouterr()
    if code == 1:  # a run's input error is the row's verdict (exit 1), with its message
        row = json.loads(out)[0]
        assert row["verdict"] == "error" and key in row["message"]
    else:
        assert code == 2 and key in err and len(err.splitlines()) <= 2


def test_a_flops_row_reads_as_a_rate_in_the_table():
    # The file holds a plain number (FLOP/s); the table shows it with its unit, as people read it.
    from mcdla.cli.validate import _human
    from mcdla.sweep.validate import Outcome

    row = _human(Outcome("t", "q", "flops_per_device", 408.8e12, 515.8e12, 0.26, 0.1, "miss", "", "", {}))
    assert row["measured"] == "408.8 TFLOP/s" and row["mcdla"] == "515.8 TFLOP/s"


SLOW_TABLE = """
name: t
description: d
rows:
  - quantity: fast
    kind: sim
    args: {topology: ring, workload: resnet34, batch: 64}
    measure: iteration_time
    measured: 10 ms
    tolerance: 0.1
    source: {title: s, url: u}
  - quantity: slow
    kind: sim
    args: {topology: ring, workload: resnet34, batch: 32}
    measure: iteration_time
    measured: 10 ms
    tolerance: 0.1
    slow: true
    budget: 1e3
    source: {title: s, url: u}
"""


def test_slow_rows_run_only_with_all_and_with_their_budget(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(SLOW_TABLE)
    assert main(["validate", "--table", str(path), "--format", "json", "--quiet"]) == 0
    assert [r["quantity"] for r in json.loads(capsys.readouterr().out)] == ["fast"]
    # With --all the slow row runs, under its own work budget: 1e3 channel updates is
    # too little for any iteration, so its run is refused (an error row, exit 1).
    assert main(["validate", "--table", str(path), "--all", "--format", "json", "--quiet"]) == 1
    rows = {r["quantity"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fast"]["verdict"] != "error" and rows["slow"]["verdict"] == "error"
    assert "budget" in rows["slow"]["message"]


def test_only_a_slow_row_takes_a_budget(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(SLOW_TABLE.replace("    slow: true\n", ""))
    assert main(["validate", "--table", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "budget" in err and len(err.splitlines()) <= 2


def test_the_llama3_rows_are_slow_and_skipped_by_default():
    from mcdla.config.validation import read_validation
    from mcdla.sweep.validate import validate

    _, table = read_validation("llama3_h100")
    assert len(table.rows) == 2 and all(r.slow and r.budget for r in table.rows)
    assert validate(["llama3_h100"]) == []



@pytest.mark.parametrize("arg, message", [
    ("nccl_version: '9.9'", "nccl_version: expected one of 2.7, 2.18, 2.26, got '9.9'"),
    ("iters: 0", "iters: expected at least 1 collective, got 0"),
])
def test_a_rows_bad_collective_option_stops_before_any_run(tmp_path, capsys, arg, message):
    path = _one_row_table(tmp_path, "collective", f"{{topology: dgx_h100, op: all_reduce, algorithm: nccl, "
                          f"size: 1 MiB, {arg}}}", "busbw", "20 GB/s")
    assert main(["validate", "--table", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"rows[0]: {message}" in err and len(err.splitlines()) == 1


def test_a_slow_scaling_rows_baseline_runs_under_the_rows_own_budget(monkeypatch):
    """A scaling row compares two runs; the baseline gets the row's work budget too (a
    slow row's baseline would otherwise be refused by the default budget)."""
    from dataclasses import replace

    from mcdla.config.validation import read_validation
    from mcdla.sweep import validate

    budgets = []
    monkeypatch.setattr(validate, "_sim", lambda args, budget=None: budgets.append(budget)
                        or {"batch": 1, "iteration_time_s": 1.0})
    row = next(r for r in read_validation("resnet50_dgx1v")[1].rows if r.measure == "scaling")
    validate.run_row(replace(row, slow=True, budget=1e9))
    assert budgets == [1e9, 1e9]
