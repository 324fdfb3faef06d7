"""``mcdla layers``: the per-kernel roofline report, its totals, its plot and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from mcdla.cli import layers as layers_cli
from mcdla.cli.main import main
from mcdla.config.execution import ExecutionSpec
from mcdla.hw.workload import load_workload
from mcdla.hw.compute import layer_time
from mcdla.hw.parallelism import device_share
from mcdla.hw.topology import load_topology
from mcdla.metrics.roofline import PHASE_CHOICES
from mcdla.sim.training import Iteration

# CLI columns of one kernel row, in order.
COLUMNS = ["layer", "kind", "phase", "kernel", "macs", "bytes", "intensity_MAC_per_B", "time_s",
           "attained_MACps", "utilization", "bound"]
SMALL = ["layers", "--workload", "alexnet", "--topology", "dc", "--batch", "64"]


def report(capsys, *extra):
    assert main([*SMALL, *extra, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def totals(result):
    return {t["phase"]: t for t in result["totals"]}


def test_json_rows_have_every_column_and_the_device_roofline(capsys):
    result = report(capsys)
    assert all(list(row) == COLUMNS for row in result["kernels"])
    assert {row["phase"] for row in result["kernels"]} == {"fwd", "bwd", "recompute"}
    roof = result["roofline"]
    assert roof["ridge_MAC_per_B"] == pytest.approx(roof["peak_MACps"] / roof["hbm_bw_Bps"])
    assert (result["devices"], result["local_batch"], result["shards"]) == (8, 8, 1)
    for row in result["kernels"]:
        assert row["bound"] in ("compute", "memory")
        assert row["attained_MACps"] <= roof["peak_MACps"]
        if row["macs"]:
            assert row["intensity_MAC_per_B"] == pytest.approx(row["macs"] / row["bytes"])


def test_csv_is_one_row_per_kernel(capsys):
    result = report(capsys)
    assert main([*SMALL, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == len(result["kernels"])
    assert rows[0]["layer"] == "conv1" and rows[0]["kernel"] == "fwd"


def test_table_has_a_header_the_kernels_and_per_phase_totals(capsys):
    assert main([*SMALL]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alexnet on dc (8 devices, data-parallel, batch 64: 8 samples per device)")
    assert "ridge 142.2 MAC/B" in out
    assert "intensity_MAC_per_B" in out and "compute_bound_share" in out
    assert "conv2" in out and "recompute" in out


def test_output_file_holds_the_report(tmp_path, capsys):
    target = tmp_path / "layers.json"
    assert main([*SMALL, "--format", "json", "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(target.read_text())["workload"] == "alexnet"


@pytest.mark.parametrize("parallel", ["data", "model"])
def test_phase_totals_are_the_sum_of_layer_times(capsys, parallel):
    result = report(capsys, "--parallel", parallel)
    work, device = load_workload("alexnet"), load_topology("dc").device
    local, shards = device_share(parallel, 64, 8)
    prec = work.precision_bytes
    expected = {
        "fwd": sum(layer_time(device, l, "fwd", local, prec, shards) for l in work.layers[1:]),
        "bwd": sum(layer_time(device, l, "bwd", local, prec, shards) for l in work.layers[1:]),
        "recompute": sum(layer_time(device, l, "recompute", local, prec, shards)
                         for l in work.layers[1:] if l.cheap),
    }
    got = totals(result)
    for phase, time_s in expected.items():
        assert got[phase]["time_s"] == pytest.approx(time_s, rel=1e-12)
        rows = [r for r in result["kernels"] if r["phase"] == phase]
        assert got[phase]["kernels"] == len(rows)
        assert got[phase]["macs"] == sum(r["macs"] for r in rows)
        compute_s = sum(r["time_s"] for r in rows if r["bound"] == "compute")
        assert got[phase]["compute_bound_share"] == pytest.approx(compute_s / time_s)


@pytest.mark.parametrize("parallel, local_batch, shards", [("data", 8, 1), ("model", 64, 8)])
def test_per_device_share_matches_the_training_driver(capsys, parallel, local_batch, shards):
    result = report(capsys, "--parallel", parallel)
    assert (result["local_batch"], result["shards"]) == (local_batch, shards)
    it = Iteration(load_topology("dc"), load_workload("alexnet"), ExecutionSpec(parallel=parallel, batch=64))
    assert tuple(it.share) == (local_batch, shards)
    got = totals(result)
    assert got["fwd"]["time_s"] == pytest.approx(sum(it.plan.fwd_s), rel=1e-12)
    assert got["bwd"]["time_s"] == pytest.approx(sum(it.plan.bwd_s), rel=1e-12)


def test_model_parallel_runs_googlenets_pool_branch_whole_as_the_driver_does(capsys):
    args = ["layers", "--workload", "googlenet", "--topology", "dc", "--batch", "64", "--parallel", "model"]
    assert main([*args, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    it = Iteration(load_topology("dc"), load_workload("googlenet"), ExecutionSpec(parallel="model", batch=64))
    got = totals(result)
    assert got["fwd"]["time_s"] == pytest.approx(sum(it.plan.fwd_s), rel=1e-12)
    assert got["bwd"]["time_s"] == pytest.approx(sum(it.plan.bwd_s), rel=1e-12)
    # Inception 3a's pool branch reads the module's gathered input whole: forward reads
    # and writes 192 x 28 x 28 x 64 samples x 4 B = 38,535,168 B each, not an 8th of it.
    pool = [r for r in result["kernels"] if r["layer"] == "3a/b4pool" and r["phase"] == "fwd"]
    assert [r["bytes"] for r in pool] == [2 * 38_535_168]


def test_model_parallel_splits_the_gemms(capsys):
    data = {r["layer"] + r["kernel"]: r for r in report(capsys)["kernels"] if r["phase"] == "fwd"}
    model = {r["layer"] + r["kernel"]: r for r in report(capsys, "--parallel", "model")["kernels"]
             if r["phase"] == "fwd"}
    # Model-parallel: 8x the samples on 1/8 of the output features, the same MACs.
    assert model["fc6fwd"]["macs"] == data["fc6fwd"]["macs"]
    assert model["fc6fwd"]["intensity_MAC_per_B"] > data["fc6fwd"]["intensity_MAC_per_B"]


def test_one_phase_lists_only_its_kernels(capsys):
    result = report(capsys, "--phase", "bwd")
    assert {r["phase"] for r in result["kernels"]} == {"bwd"}
    assert [t["phase"] for t in result["totals"]] == ["bwd"]
    # Backward runs from the last layer to the first, dX before dW.
    conv1 = [r["kernel"] for r in result["kernels"] if r["layer"] == "conv1"]
    assert conv1 == ["dw"]  # conv1 reads the data: no dX
    assert result["kernels"][0]["layer"] == "loss"


def test_set_routes_device_and_workload_keys(capsys):
    base = report(capsys)
    fast = report(capsys, "--set", "device.hbm_bw=1800 GB/s", "--set", "workload.precision_bytes=2")
    assert fast["roofline"]["ridge_MAC_per_B"] == pytest.approx(base["roofline"]["ridge_MAC_per_B"] / 2)
    assert fast["precision_bytes"] == 2
    assert totals(fast)["fwd"]["time_s"] < totals(base)["fwd"]["time_s"]


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_writes_a_figure_by_suffix(tmp_path, capsys, suffix, magic):
    target = tmp_path / f"roofline{suffix}"
    assert main([*SMALL, "--plot", str(target)]) == 0
    data = target.read_bytes()
    assert data.startswith(magic) and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left behind


@pytest.mark.parametrize("extra, key", [
    (["--batch", "0"], "batch"),
    (["--batch", "12"], "not divisible"),
    (["--workload", "no_such_net"], "workload"),
    (["--set", "training.lookahead=2"], "training.lookahead"),
    (["--set", "device.hbm_bw=fast"], "device.hbm_bw"),
    (["--set", "nodots"], "--set"),
    (["--plot", "roofline.pdf"], "--plot"),
])
def test_bad_input_exits_2_naming_the_key(tmp_path, capsys, extra, key):
    target = tmp_path / "out.json"
    assert main([*SMALL, *extra, "--format", "json", "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert key in err and err.count("\n") == 1
    assert not target.exists()


def test_unknown_phase_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as done:
        main([*SMALL, "--phase", "sideways"])
    assert done.value.code == 2
    assert "--phase" in capsys.readouterr().err


def test_parser_phases_match_the_report():
    assert layers_cli.PHASE_CHOICES == PHASE_CHOICES


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        main(["layers", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for option in ("--workload", "--topology", "--batch", "--parallel", "--phase", "--set", "--plot",
                   "--format", "--output"):
        assert option in out


def test_starts_without_pandas_or_matplotlib():
    code = (
        "import sys; from mcdla.cli.main import main; "
        "main(['layers', '--workload', 'alexnet', '--batch', '64', '--format', 'json']); "
        "bad = [m for m in ('pandas', 'matplotlib') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workload"] == "alexnet"
