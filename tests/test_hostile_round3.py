"""Hostile input, round three (issue 22): each class of defect the campaign found, with
inputs other than the campaign's where the class allows (fix the classes, not the cases).
"""

from __future__ import annotations

import os
import shutil

import pytest

from mcdla.cli.main import main
from mcdla.config.loader import DATA_ROOT


def one_line_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


# -- outputs that name inputs -------------------------------------------------------------


@pytest.fixture
def workload_copy(tmp_path):
    path = tmp_path / "w.yaml"
    shutil.copy(DATA_ROOT / "workloads" / "alexnet.yaml", path)
    return path


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink", "dotted"])
def test_an_output_that_is_the_workload_read_is_refused(workload_copy, spelling, capsys):
    before = workload_copy.read_bytes()
    folder = workload_copy.parent
    target = {"same": workload_copy, "symlink": folder / "link.yaml", "hardlink": folder / "hard.yaml",
              "dotted": folder / "." / "w.yaml"}[spelling]
    if spelling == "symlink":
        target.symlink_to(workload_copy.name)
    elif spelling == "hardlink":
        os.link(workload_copy, target)
    code = main(["sim", "--topology", "single", "--workload", str(workload_copy), "--batch", "8",
                 "--format", "json", "--output", str(target)])
    assert code == 2
    one_line_error(capsys, "input of this run", "--output")
    assert workload_copy.read_bytes() == before


def test_a_trace_onto_the_topology_read_is_refused(tmp_path, capsys):
    topology = tmp_path / "t.yaml"
    shutil.copy(DATA_ROOT / "topologies" / "single.yaml", topology)
    before = topology.read_bytes()
    code = main(["sim", "--topology", str(topology), "--workload", "alexnet", "--batch", "8",
                 "--trace", str(topology)])
    assert code == 2
    one_line_error(capsys, "input of this run")
    assert topology.read_bytes() == before


def test_a_listing_written_over_the_file_it_lists_is_refused(workload_copy, capsys):
    before = workload_copy.read_bytes()
    assert main(["workloads", "--workload", str(workload_copy), "--output", str(workload_copy)]) == 2
    one_line_error(capsys, "input of this run")
    assert workload_copy.read_bytes() == before


def test_import_onto_its_own_model_is_refused_before_reading_it(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not even a model")  # refused before it is read: no onnx needed
    assert main(["import", str(model), "-o", str(model)]) == 2
    one_line_error(capsys, "input of this run")
    assert model.read_bytes() == b"not even a model"


def test_an_output_written_then_read_by_the_next_command_is_fine(workload_copy, tmp_path):
    """The inputs of one command are its own: the next command may read what this wrote."""
    out = tmp_path / "out.json"
    assert main(["workloads", "--workload", str(workload_copy), "--format", "json", "--output", str(out)]) == 0
    assert main(["workloads", "--workload", str(workload_copy), "--format", "json", "--output", str(out)]) == 0
