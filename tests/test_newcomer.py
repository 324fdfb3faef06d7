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


@pytest.mark.parametrize("name", ["gpt2", "llama2_7b", "bert_large"])
def test_dropout_on_every_transformer_template(name):
    # One dropout after the embeddings and one in each residual branch (attention, MLP),
    # each feeding its branch's residual add.
    from mcdla.hw.workload import load_workload

    work = load_workload(name, [("dropout", True)])
    kinds = [layer.kind for layer in work.layers]
    blocks = sum(1 for layer in work.layers if layer.name.endswith("/res1"))
    assert blocks > 0 and kinds.count("dropout") == 2 * blocks + 1
    for layer in work.layers:
        if layer.name.endswith(("/res1", "/res2")):
            assert work.layers[layer.inputs[0]].kind == "dropout", layer.name
