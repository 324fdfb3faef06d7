"""Bugs a newcomer hit in the first hour (issue 22): each test fails without its fix."""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main


def run_json(capsys, *argv):
    """``mcdla ARGV --format json``: (exit status, parsed stdout or None, stderr)."""
    code = main([*argv, "--format", "json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_model_parallel_batch_need_not_divide_over_devices(capsys):
    # Every device holds the whole batch in model-parallel training: 12 over 8 devices runs.
    code, result, err = run_json(capsys, "sim", "--topology", "dc", "--workload", "alexnet",
                                 "--parallel", "model", "--batch", "12")
    assert code == 0, err
    assert result["batch"] == 12 and result["parallel"] == "model"
