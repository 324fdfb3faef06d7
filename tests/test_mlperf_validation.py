"""The MLPerf Training rows (validation/mlperf_training.yaml: NVIDIA's GPT-3 175B
submissions on DGX H100, v3.0-v4.1, FP8): the table, its count and its runs' settings
beside the NeMo FP8 GPT-3 rows of validation/dgxc_h100_fp8.yaml."""

from __future__ import annotations

import pytest

from mcdla.config.schema import Where
from mcdla.config.validation import read_validation
from mcdla.sweep.validate import check_row, iteration_flops

# What an MLPerf row may set otherwise than the dgxc FP8 GPT-3 rows (each from its
# submission's config, the YAML's header): the machine's size, its memory (the v4.1
# 32-node row), no dropout (and so nothing to fuse), the optimizer's buckets and the
# interleaved pipeline's micro-batches and chunks.
MLPERF_KEYS = {"generator.nodes", "host.sockets", "generator.nodes_per_leaf", "topology.device_memory",
               "workload.dropout", "training.fuse_dropout_add", "training.bucket", "training.micro_batches",
               "training.virtual_stages"}


@pytest.fixture(scope="module")
def table():
    return read_validation("mlperf_training")[1]


def test_the_table_holds_the_gpt3_submissions_as_slow_fp8_rows(table):
    rows = table.rows
    assert len(rows) == 5
    assert all(r.flops == "dgxc" and r.measure == "flops_per_device" and r.tolerance == 0.10 for r in rows)
    assert all(r.slow and r.budget for r in rows)  # minutes each: mcdla validate --all
    assert all(r.args["set"]["training.precision"] == "fp8" for r in rows)
    assert all("github.com/mlcommons/training_results_v" in r.source.url for r in rows)


def test_every_row_is_an_input_mcdla_accepts(table):
    cache: dict = {}
    for i, row in enumerate(table.rows):
        check_row(row, Where("mlperf_training").child("rows").child(i), cache)


@pytest.mark.parametrize("index", range(5))
def test_the_count_is_the_nemo_recipes_gpt3_count(table, index):
    # NVIDIA's DGX Cloud recipe README for GPT-3 175B gives 2.20e15 model FLOPs a
    # sequence (rounded); the rows count the padded vocabulary the runs train.
    row = table.rows[index]
    assert iteration_flops(row) / row.args["batch"] == pytest.approx(2.20e15, rel=3e-3)


def test_each_row_is_the_nemo_fp8_gpt3_run_but_for_its_submissions_settings(table):
    """The MLPerf runs are NeMo's GPT-3 175B with Transformer Engine FP8, TP 4, PP 8,
    sequence parallelism and TP overlap, as the dgxc FP8 rows; only the keys the
    submissions' configs set otherwise differ."""
    twin = read_validation("dgxc_h100_fp8")[1].rows[15]  # GPT-3 175B FP8, 512 H100
    assert twin.quantity.startswith("GPT-3 175B FP8, 512 H100")
    for row in table.rows:
        assert {k: v for k, v in row.args.items() if k not in ("set", "batch")} == \
               {k: v for k, v in twin.args.items() if k not in ("set", "batch")}
        ours, theirs = row.args["set"], twin.args["set"]
        differ = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
        assert differ <= MLPERF_KEYS, differ - MLPERF_KEYS
        assert ours["workload.dropout"] is False and "training.fuse_dropout_add" not in ours
