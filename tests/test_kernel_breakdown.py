"""benchmarks/kernel_breakdown.py splits a validation row's iteration into kernel kinds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_breakdown.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("kernel_breakdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_a100_row_splits_into_gemms_materialized_attention_and_passes(tool):
    seconds, macs, total = tool.breakdown(tool._row_args("megatron_a100", 0))
    # 2021 Megatron reduced the gradients after backward: no compute ran beside NCCL,
    # so the layers' events are exactly their kernels (fused ones included), and the
    # all-reduce is what the events leave of the iteration.
    assert seconds["NCCL holding SMs and HBM (contention)"] == pytest.approx(0, abs=1e-9)
    assert seconds["communication exposed"] > 0.01 * total
    gemms = sum(s for k, s in seconds.items() if k.startswith("GEMM "))
    assert 0.4 * total < gemms < 0.7 * total
    # 2021 Megatron materialized attention: its batched GEMMs, softmax and dropout each way
    for kind in ("attention softmax", "attention dropout", "attention GEMM 2048x2048x96 x384"):
        assert seconds[kind] > 0.03 * total
    assert "attention (fused kernel)" not in seconds
    # No GEMM beats its tiles' main loop (the preset's gemm_efficiency of 312 TFLOP/s on
    # the 80 GB A100), and the attention scores' (K = the head dimension, 96) run far below
    # it: each tile's fixed overhead is longer than its main loop there
    from tests.test_gpu_compute import preset

    ceiling = preset("a100_sxm4_80gb").gemm_efficiency * 312e12
    for kind, s in seconds.items():
        if macs.get(kind):
            assert 2 * macs[kind] / s <= ceiling * 1.001
    assert 2 * macs["attention GEMM 2048x2048x96 x384"] / seconds["attention GEMM 2048x2048x96 x384"] < 0.35 * 312e12


def test_the_h100_row_overlaps_its_reductions_with_compute_on_fewer_sms(tool, capsys):
    seconds, _, total = tool.breakdown(tool._row_args("megatron_h100", 0))
    # --overlap-grad-reduce: backward runs beside the reduce-scatters, on the SMs
    # NCCL leaves (nccl_sms), longer than its kernels alone
    assert 0.005 * total < seconds["NCCL holding SMs and HBM (contention)"] < 0.05 * total
    tool.main(["megatron_h100", "0"])
    out = capsys.readouterr().out
    assert out.startswith("megatron_h100 row 0: iteration ")
    assert "attention (fused kernel)" in out and "memory-bound dropout+fused" in out


@pytest.mark.parametrize("argv, says", [
    (["no_such_table"], "no validation table 'no_such_table'; one of: "),
    (["megatron_a100", "99"], "megatron_a100 row 99 is not a `kind: sim` row; those are rows [0, 1, 2, 3]"),
    (["nccl_dgx_a100", "0"], "nccl_dgx_a100 row 0 is not a `kind: sim` row; the table has none"),
    (["zero_memory", "0"], "zero_memory row 0: device D0: the model state"),  # a memory row: cannot run
])
def test_a_bad_table_or_row_is_refused_in_one_line_with_exit_2(tool, capsys, argv, says):
    with pytest.raises(SystemExit) as stop:
        tool.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kernel_breakdown.py: error: ") and says in err
    assert err.count("\n") == 1 and "Traceback" not in err
