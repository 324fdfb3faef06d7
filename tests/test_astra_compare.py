"""benchmarks/astra_compare.py's Chakra trace (no ASTRA-sim needed): the bytes of
ASTRA-sim's own microbenchmark traces (astra-sim/astra-sim,
examples/workload/microbenchmarks/{all_reduce,all_to_all}/16npus_1MB/*.0.et)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from astra_compare import chakra_trace  # noqa: E402

# xxd -p of the two example traces: GlobalMetadata {version "0.0.4"}, then one
# COMM_COLL_NODE with is_cpu_op false, comm_type, comm_size 1 MiB.
ALL_REDUCE_16NPUS_1MB = ("070a05302e302e34491215616c6c5f7265647563655f31366e7075735f314d421807520e0a0969735f6370"
                         "755f6f70d80100520d0a09636f6d6d5f747970654800520f0a09636f6d6d5f73697a6548808040")
ALL_TO_ALL_16NPUS_1MB = ("070a05302e302e34491215616c6c5f746f5f616c6c5f31366e7075735f314d421807520e0a0969735f6370"
                         "755f6f70d80100520d0a09636f6d6d5f747970654806520f0a09636f6d6d5f73697a6548808040")


def test_the_trace_is_byte_for_byte_astra_sims_example():
    assert chakra_trace("all_reduce", 2**20, "all_reduce_16npus_1MB") == bytes.fromhex(ALL_REDUCE_16NPUS_1MB)
    assert chakra_trace("all_to_all", 2**20, "all_to_all_16npus_1MB") == bytes.fromhex(ALL_TO_ALL_16NPUS_1MB)


def test_a_gibibyte_takes_a_five_byte_varint():
    trace = chakra_trace("all_reduce", 2**30, "x")
    assert trace.endswith(bytes.fromhex("48") + bytes([0x80, 0x80, 0x80, 0x80, 0x04]))
