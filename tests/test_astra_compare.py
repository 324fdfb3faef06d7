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


# -- the training iteration's trace (--train) ------------------------------------------

from astra_compare import iteration_schedule, iteration_trace, train_schedule  # noqa: E402


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, varint or bytes) of one protobuf message."""
    out, at = [], 0
    while at < len(data):
        key, at = _varint(data, at)
        if key & 7 == 0:
            value, at = _varint(data, at)
        else:
            size, at = _varint(data, at)
            value, at = data[at:at + size], at + size
        out.append((key >> 3, value))
    return out


def _nodes(trace: bytes) -> list[dict]:
    """The trace's nodes after its GlobalMetadata: id, name, type, deps, duration, attrs."""
    messages, at = [], 0
    while at < len(trace):
        size, at = _varint(trace, at)
        messages.append(trace[at:at + size])
        at += size
    nodes = []
    for message in messages[1:]:
        node = {"deps": [], "attrs": {}, "duration": 0}
        for number, value in _fields(message):
            if number == 5:
                at = 0
                while at < len(value):
                    dep, at = _varint(value, at)
                    node["deps"].append(dep)
            elif number == 10:
                attr = dict(_fields(value))
                node["attrs"][attr[1].decode()] = attr.get(9, attr.get(27))
            else:
                node[{1: "id", 2: "name", 3: "type", 7: "duration"}[number]] = value
        nodes.append(node)
    return nodes


def _toy_trace() -> dict:
    """Rank 0 (D0) of a two-layer model: forward, backward, step; one bucket per layer
    group, the second flushed after the backward pass; a second rank's events too."""
    kernel = lambda name, ts, dur, pid=1: {"cat": "compute", "name": name, "ph": "X", "pid": pid, "ts": ts, "dur": dur}
    ring = lambda tag, ts, size: {"cat": "collective", "name": "all_reduce", "ph": "X", "pid": 9, "ts": ts, "dur": 5.0,
                                  "args": {"axis": "dp", "tag": tag, "size_bytes": size}}
    return {"traceEvents": [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "D0"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "D1"}},
        kernel("fwd a/fc", 0.0, 10.4), kernel("fwd b/fc", 10.4, 20.3), kernel("bwd b/fc", 30.7, 40.2),
        kernel("bwd b/act", 70.9, 1.2), kernel("bwd a/fc", 72.1, 30.6), kernel("optimizer step", 110.0, 3.0),
        kernel("fwd a/fc", 0.0, 99.0, pid=2),
        ring("bucket/b/fc", 70.9, 4096), ring("bucket/b/fc", 70.9, 4096),  # two rings, one collective
        ring("bucket/a/fc", 102.7, 1024)]}


def test_each_bucket_follows_the_backward_kernel_that_completes_it():
    steps = iteration_schedule(_toy_trace(), {"a/fc": "a/fc", "b/fc": "b/fc", "b/act": None})
    assert [s[:2] for s in steps] == [("compute", "fwd a/fc"), ("compute", "fwd b/fc"), ("compute", "bwd b/fc"),
                                      ("all_reduce", "bucket/b/fc"), ("compute", "bwd b/act"),
                                      ("compute", "bwd a/fc"), ("all_reduce", "bucket/a/fc"),
                                      ("compute", "optimizer step")]


def test_the_iteration_trace_chains_segments_and_waits_for_every_all_reduce():
    steps = iteration_schedule(_toy_trace(), {"a/fc": "a/fc", "b/fc": "b/fc", "b/act": None})
    nodes = _nodes(iteration_trace(steps))
    assert [(n["type"], n["duration"], n["deps"]) for n in nodes] == [
        (4, 71, []),         # fwd a, fwd b, bwd b: 70.9 us, rounded once
        (7, 0, [0]),         # bucket b after them
        (4, 32, [0]),        # bwd b/act and bwd a: 31.8 us, beside the all-reduce
        (7, 0, [2]),
        (4, 3, [2, 1, 3])]   # the step after the compute and both all-reduces
    assert [n["id"] for n in nodes] == [0, 1, 2, 3, 4]
    assert [n["attrs"].get("comm_size") for n in nodes] == [None, 4096, None, 1024, None]
    assert all(n["attrs"]["is_cpu_op"] == 0 for n in nodes)


def test_mcdlas_gpt2_iteration_becomes_seven_bucket_all_reduces():
    """GPT-2's 124M fp16 gradients (237 MiB) in DDP's 25 MiB buckets, from a real traced run."""
    steps = train_schedule("gpt2")
    reduces = [v for kind, _, v in steps if kind == "all_reduce"]
    assert len(reduces) == 7 and 237 * 2**20 < sum(reduces) < 238 * 2**20
    assert steps[-1][1] == "optimizer step" and steps[-2][0] == "all_reduce"
