"""The NeMo rows on DGX H100 (validation/dgxc_h100.yaml: NVIDIA's DGX Cloud Benchmarking
recipes v24.11.1, BF16 pre-training) and the kernel breakdown of their micro-batched,
pipelined runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mcdla.config.validation import read_validation
from mcdla.sweep.validate import iteration_flops, run_row
from test_kernel_breakdown import tool  # noqa: F401  (the kernel breakdown script, loaded once)


@pytest.fixture(scope="module")
def table():
    return read_validation("dgxc_h100")[1]


def test_the_table_holds_every_expressible_bf16_row_and_the_gpt3_rows_are_slow(table):
    rows = table.rows
    assert len(rows) == 18 and all(r.flops == "dgxc" and r.measure == "flops_per_device" for r in rows)
    gpt3 = [r for r in rows if r.quantity.startswith("GPT-3")]
    assert len(gpt3) == 5 and all(r.slow and r.budget for r in gpt3)
    assert not any(r.slow for r in rows if r not in gpt3)  # the Nemotron-4 rows run by default


@pytest.mark.parametrize("index, batch, per_sequence, rel", [
    (0, 256, 2.20e15, 3e-3),              # GPT-3 175B, nemo_megatron/README_175b.md "Notes" (rounded)
    (5, 64, 434_526_299_070_464, 2e-4),   # Nemotron-4 15B, nemotron/README_15b.md
    (13, 32, 1.01e16, 2e-3),              # Nemotron-4 340B, nemotron/README_340b.md (rounded)
])
def test_the_dgxc_count_is_the_recipes_model_flops(table, index, batch, per_sequence, rel):
    # The READMEs' own per-sequence figures (the 15B's attention term carries an
    # arithmetic slip of 0.03%; GPT-3's count sees the padded vocabulary the run trains).
    row = table.rows[index]
    assert row.args["batch"] == batch
    assert iteration_flops(row) / batch == pytest.approx(per_sequence, rel=rel)


def test_a_nemotron_340b_row_runs_within_its_tolerance(table):
    row = table.rows[13]  # 128 H100, TP 8, PP 8, VP 12: the recipe blocks on its TP communication
    simulated = run_row(row)
    assert abs(simulated / float(row.measured) - 1) <= row.tolerance


def test_the_15b_rows_run_their_recipes_tp_communication_overlap(table):
    """Nemotron-4 15B's recipe sets ub_tp_comm_overlap: its rows run it, faster than
    without (the row misses since: docs/validation.md, "NeMo on DGX H100")."""
    row = table.rows[5]  # 16 H100, TP 4, 4 micro-batches of 4 sequences
    assert row.args["set"]["execution.tp_comm_overlap"] is True
    blocking = replace(row, args={**row.args, "set": {**row.args["set"], "execution.tp_comm_overlap": False}})
    assert run_row(row) > 1.01 * run_row(blocking)


@pytest.mark.parametrize("index", [5, 13])  # micro-batches; and a pipeline of 8 stages, 12 chunks each
def test_the_breakdown_times_each_micro_batch_of_a_replica(tool, index):
    seconds, _, total = tool.breakdown(tool._row_args("dgxc_h100", index))
    # Each compute event is one micro-batch of one replica's share: its kernels, at that
    # batch, take no longer than the event (a larger batch would leave it negative).
    assert seconds["NCCL holding SMs and HBM (contention)"] >= -1e-9 * total
    gemms = sum(s for k, s in seconds.items() if k.startswith("GEMM "))
    assert 0.4 * total < gemms < total
