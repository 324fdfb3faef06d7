"""``mcdla sim`` end to end: formats, defaults, overrides and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from mcdla.cli.main import main

# The JSON fields of mcdla sim (docs/cli.md).
FIELDS = ["topology", "policy", "workload", "parallel", "batch", "devices", "iteration_time_s",
          "busy_s", "exposed_s", "cpu_mem_bw_Bps", "device_mem_peak_bytes", "remote_mem_bytes",
          "link_bytes", "events", "wall_s"]
SMALL = ["sim", "--topology", "dc", "--workload", "alexnet", "--batch", "64"]


def sim_json(capsys, *extra):
    assert main([*SMALL, *extra, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_every_cli_field(capsys):
    result = sim_json(capsys)
    assert [f for f in FIELDS if f not in result] == []
    assert set(result["busy_s"]) == {"compute", "sync", "virtualization"}
    assert set(result["exposed_s"]) == {"sync", "virtualization"}
    assert set(result["cpu_mem_bw_Bps"]) == {"avg", "peak"}
    assert result["topology"] == "dc" and result["devices"] == 8 and result["batch"] == 64
    assert result["iteration_time_s"] > 0 and result["events"] > 0


def test_csv_is_one_flat_row(capsys):
    assert main([*SMALL, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1
    assert float(rows[0]["busy_s.compute"]) > 0 and rows[0]["workload"] == "alexnet"


def test_table_lists_fields_by_dotted_name(capsys):
    # Link counters are listed with --links only (issue 9: the default table stays short).
    assert main([*SMALL, "--links"]) == 0
    out = capsys.readouterr().out
    assert "iteration_time_s" in out and "busy_s.sync" in out and "link_bytes.D0>D1" in out


def test_output_file_holds_the_same_json(tmp_path, capsys):
    target = tmp_path / "run.json"
    assert main([*SMALL, "--format", "json", "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(target.read_text())["workload"] == "alexnet"


def test_set_overrides_a_topology_parameter(capsys):
    base = sim_json(capsys)
    fast = sim_json(capsys, "--set", "links.pcie.bw=32 GB/s")
    assert fast["iteration_time_s"] < base["iteration_time_s"]


def test_set_overrides_a_training_parameter(capsys):
    off = sim_json(capsys, "--set", "training.virtualization=false")
    assert off["busy_s"]["virtualization"] == 0


def test_set_topology_prefix_reaches_the_topology_file(capsys):
    assert main([*SMALL, "--set", "topology.device_memory=unbounded"]) == 0
    capsys.readouterr()
    assert main([*SMALL, "--set", "topology.device_memory=sometimes"]) == 2
    err = capsys.readouterr().err
    assert "device_memory" in err and "topologies/dc.yaml" in err


def test_single_device_simulation(capsys):
    assert main(["sim", "--topology", "single", "--workload", "resnet34", "--batch", "16",
                 "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["devices"] == 1 and result["busy_s"]["sync"] == 0


@pytest.mark.parametrize("argv, named", [
    (["--workload", "nosuchnet"], "workload"),
    (["--topology", "nosuchdesign"], "topology"),
    (["--set", "device.hbm_bw=fast"], "device.hbm_bw"),
    (["--set", "device.hbm_bw=-1 GB/s"], "device.hbm_bw"),
    (["--set", "device.no_such_key=1"], "device.no_such_key"),
    (["--set", "training.lookahead=0"], "training.lookahead"),
    (["--set", "training.nope=1"], "training.nope"),
    (["--set", "workload.precision_bytes=x"], "precision_bytes"),
    (["--set", "novalue"], "--set"),
    (["--batch", "0"], "batch"),
    (["--batch", "1000000000000"], "batch"),
])
def test_bad_input_exits_2_naming_the_key(argv, named, capsys, tmp_path):
    target = tmp_path / "out.json"
    code = main([*SMALL, *argv, "--format", "json", "--output", str(target)])
    err = capsys.readouterr().err
    assert code == 2
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not target.exists()


def test_bad_choice_exits_2_from_argparse():
    proc = subprocess.run([sys.executable, "-m", "mcdla", "sim", "--policy", "random"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--policy" in proc.stderr


def test_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "mcdla", "sim", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--topology", "--policy", "--workload", "--parallel", "--batch", "--set",
                   "--trace", "--format", "--output"):
        assert option in proc.stdout


def test_csv_joins_the_notes_into_one_cell(capsys):
    assert main(["sim", "--topology", "single", "--batch", "8", "--format", "csv"]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["notes"].startswith("policy bw_aware ignored") and "; memory virtualization off" in row["notes"]
