"""mcdla side by side with ASTRA-sim's analytical network backend (issue 27 item 6).

Run ``python benchmarks/astra_compare.py`` (mcdla's side only), or with ``ASTRA_SIM`` set
to a built ``AstraSim_Analytical_Congestion_Unaware`` binary to run ASTRA-sim's side too
(build: docs/performance.md, "Side by side with ASTRA-sim"). Options: ``--nodes 128 512``
(DGX H100 nodes, 8 GPUs each), ``--sizes "64 MiB"``, ``--ops all_reduce all_to_all``,
``--repeats 3`` (wall time: the median of the repeats).

The network: ``h100_100k``'s rail-optimized three-tier InfiniBand NDR fat tree made
non-blocking at every tier (pod_oversubscription 1; a larger switch aggregate so one core
per rail takes every pod), since ASTRA-sim's ``Switch`` dimension is non-blocking. ASTRA-
sim gets the same network as mcdla's fabric describes it (``Fabric.dimensions``: the
node's NVSwitch, then the rail), two dimensions: its multi-dimensional collectives run
dimension by dimension, as mcdla's ``hierarchical``; a flat ring over every rank (mcdla's
``ring``) compares with ASTRA-sim's one-dimensional Switch of all ranks at the rail's
bandwidth (the flat ring's bottleneck link: one NIC per GPU). The workload is one
collective per rank, a Chakra execution trace of a single COMM_COLL node, written here
with a few lines of protobuf wire format (no Chakra or protobuf package needed).

``--train`` compares one data-parallel training iteration instead (issue 27, item 2):
GPT-2 (``--model``) with one sequence per GPU, mixed precision, gradients all-reduced in
PyTorch DDP's 25 MiB buckets by mcdla's ``hierarchical`` all-reduce. ASTRA-sim gets a
Chakra trace of the same iteration with mcdla's own compute times: mcdla runs the model
once on 2 nodes with ``--trace``; rank 0's kernels, in order, become compute nodes (the
kernels between two gradient buckets merged into one, so that ASTRA-sim's whole
microseconds round once per segment), and each bucket's all-reduce (its bytes and the
backward kernel that completes it, from the trace's collective tags) a collective node,
then the optimizer step after every all-reduce. Only the network model differs.

Nothing here runs in the test suite; ASTRA-sim is never vendored or required.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcdla import api
from mcdla.hw.topology import load_topology
from mcdla.units import parse_size

TOPOLOGY = "h100_100k"
# Non-blocking at every tier, as ASTRA-sim's Switch dimensions are: pods of 4 leaf groups
# (a divisor of the leaf groups at 128 nodes and up), 1:1 above the pods, and a switch
# aggregate of 64 Quantum-2 chips (4,096 ports) so one core per rail takes every pod.
SETS = (("generator.pod_oversubscription", 1), ("generator.leaves_per_pod", 4), ("spine_switch.chips", 64))
ALGORITHMS = ("ring", "hierarchical", "nccl")
# ASTRA-sim's collective implementations (astra-sim/system/astraccl/CollectiveImplLookup.cc).
ASTRA_IMPLS = ("ring", "halvingDoubling", "direct")
# Chakra's CollectiveCommType (chakra/schema/protobuf/et_def.proto).
COMM_TYPE = {"all_reduce": 0, "all_gather": 2, "all_to_all": 6, "reduce_scatter": 7}
COMP_NODE, COMM_COLL_NODE = 4, 7  # Chakra NodeType


# -- the Chakra trace: protobuf wire format, varint-length-delimited messages ----------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _text(number: int, value: str) -> bytes:
    data = value.encode()
    return _field(number, 2, _varint(len(data)) + data)


def _attr(name: str, number: int, value: int) -> bytes:
    """An AttributeProto: name (1) and one value (int64_val 9, bool_val 27)."""
    body = _text(1, name) + _field(number, 0, _varint(value))
    return _field(10, 2, _varint(len(body)) + body)


def chakra_trace(op: str, size_bytes: int, name: str | None = None) -> bytes:
    """GlobalMetadata {version} then one Node {name, type COMM_COLL_NODE, attrs}, each
    length-prefixed, as chakra's encode_message writes them."""
    meta = _text(1, "0.0.4")
    node = (_text(2, name or f"{op}_{size_bytes}") + _field(3, 0, _varint(COMM_COLL_NODE))
            + _attr("is_cpu_op", 27, 0) + _attr("comm_type", 9, COMM_TYPE[op]) + _attr("comm_size", 9, size_bytes))
    return _varint(len(meta)) + meta + _varint(len(node)) + node


def _packed(number: int, values) -> bytes:
    data = b"".join(_varint(v) for v in values)
    return _field(number, 2, _varint(len(data)) + data)


def chakra_node(node_id: int, name: str, deps=(), duration_us: int = 0, comm: tuple[str, int] | None = None) -> bytes:
    """One Node, length-prefixed: id (1), name (2), type (3: COMP_NODE 4 or COMM_COLL_NODE
    7), data_deps (5, packed), duration_micros (7: ASTRA-sim's replayed compute time,
    whole microseconds), attrs (10): is_cpu_op false, and for a collective its comm_type
    and comm_size (chakra/schema/protobuf/et_def.proto)."""
    body = (_field(1, 0, _varint(node_id)) + _text(2, name)
            + _field(3, 0, _varint(COMM_COLL_NODE if comm else COMP_NODE)))
    if deps:
        body += _packed(5, deps)
    if duration_us:
        body += _field(7, 0, _varint(duration_us))
    body += _attr("is_cpu_op", 27, 0)
    if comm:
        body += _attr("comm_type", 9, COMM_TYPE[comm[0]]) + _attr("comm_size", 9, comm[1])
    return _varint(len(body)) + body


# -- one training iteration: mcdla's schedule as a Chakra trace ------------------------

# The iteration both run: GPT-2 data-parallel, one 1,024-token sequence per GPU, mixed
# precision, gradients in PyTorch DDP's default 25 MiB buckets (bucket_cap_mb=25), all-
# reduced by the node-then-rail algorithm (ASTRA-sim's two dimensions).
TRAIN_SETS = (("execution.collective", "hierarchical"), ("training.precision", "mixed"),
              ("training.bucket", "25 MiB"))
# The topology mcdla traces the schedule on: 2 nodes (compute times are per GPU, and the
# buckets and their order do not depend on the data-parallel degree).
TRACE_SETS = (("generator.nodes", 2), ("generator.nodes_per_leaf", 2), ("generator.leaves_per_pod", 1),
              ("generator.pod_oversubscription", 1))


def _tag_groups(tag: str, known: set) -> set[str]:
    """The weight groups of a gradient reduction's tag: "dW/GROUP", or "bucket/" and its
    groups joined by "/" (group names hold "/" too: the shortest known name wins)."""
    kind, _, rest = tag.partition("/")
    if kind == "dW":
        return {rest}
    groups, name = set(), ""
    for part in rest.split("/"):
        name = f"{name}/{part}" if name else part
        if name in known:
            groups.add(name)
            name = ""
    if name:
        raise ValueError(f"bucket tag {tag!r}: {name!r} is no weight group")
    return groups


def iteration_schedule(trace: dict, layer_groups: dict[str, str | None]) -> list[tuple]:
    """Rank 0's iteration from an mcdla trace: ("compute", name, seconds) per kernel in
    order, and ("all_reduce", tag, bytes) right after the backward kernel that completes
    its bucket (the last of its weight groups' layers' backward kernels; the last bucket
    is flushed after the whole backward pass, which ends with such a kernel too)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    rank0 = next(e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                 and e["args"].get("name") == "D0")
    kernels = sorted((e for e in events if e.get("pid") == rank0 and e.get("cat") == "compute"),
                     key=lambda e: e["ts"])
    where = {e["name"]: k for k, e in enumerate(kernels)}
    after: dict[int, list[tuple]] = {}
    seen = set()
    for e in sorted((e for e in events if e.get("cat") == "collective"), key=lambda e: e["ts"]):
        tag = e["args"]["tag"]
        if e["args"].get("axis") != "dp" or tag in seen:  # one event per ring: the first
            continue
        seen.add(tag)
        groups = _tag_groups(tag, set(layer_groups.values()))
        last = max(where[f"bwd {layer}"] for layer, g in layer_groups.items()
                   if g in groups and f"bwd {layer}" in where)
        after.setdefault(last, []).append(("all_reduce", tag, int(e["args"]["size_bytes"])))
    steps = []
    for k, e in enumerate(kernels):
        steps.append(("compute", e["name"], e["dur"] * 1e-6))
        steps += after.get(k, [])
    return steps


def iteration_trace(steps: list[tuple]) -> bytes:
    """The Chakra trace of one rank: the kernels as a chain of compute nodes, merged
    between collectives (ASTRA-sim runs one compute node at a time, as mcdla's one
    compute stream, so merging changes no time but the rounding); each collective
    after the segment that ends with its trigger kernel; the optimizer step (the last
    kernel) after every collective."""
    out, ids, prev, segment, colls = bytearray(_varint(len(meta := _text(1, "0.0.4"))) + meta), 0, None, [], []

    def close():
        nonlocal ids, prev, segment
        if segment:
            us = max(1, round(sum(s for _, s in segment) * 1e6))
            out.extend(chakra_node(ids, f"compute {segment[0][0]} .. {segment[-1][0]}",
                                   [] if prev is None else [prev], us))
            prev, ids, segment = ids, ids + 1, []

    *body, (kind, name, seconds) = steps
    assert kind == "compute" and name == "optimizer step", "the iteration ends with the optimizer step"
    for kind, name, value in body:
        if kind == "compute":
            segment.append((name, value))
            continue
        close()
        out.extend(chakra_node(ids, name[:200], [prev], comm=(kind, value)))
        colls.append(ids)
        ids += 1
    close()
    out.extend(chakra_node(ids, "optimizer step", [prev] + colls, max(1, round(seconds * 1e6))))
    return bytes(out)


def train_schedule(workload: str) -> list[tuple]:
    """mcdla's iteration, traced on 2 nodes (TRACE_SETS)."""
    from mcdla.hw.workload import load_workload

    with tempfile.TemporaryDirectory(prefix="astra_train_") as tmp:
        path = Path(tmp) / "trace.json"
        api.simulate(topology=TOPOLOGY, workload=workload, batch=16, set=TRACE_SETS + TRAIN_SETS, trace=str(path))
        trace = json.loads(path.read_text())
    layers = {layer.name: layer.weight_group for layer in load_workload(workload).layers}
    return iteration_schedule(trace, layers)


def run_mcdla_train(workload: str, nodes: int) -> tuple[float, float]:
    """(simulated iteration seconds, wall seconds in-process)."""
    start = time.perf_counter()
    result = api.simulate(topology=TOPOLOGY, workload=workload, batch=nodes * 8, set=_sets(nodes) + TRAIN_SETS)
    return result.iteration_time_s, time.perf_counter() - start


# -- the two sides --------------------------------------------------------------------

def _sets(nodes: int) -> tuple[tuple[str, object], ...]:
    return (("generator.nodes", nodes), *SETS)


def dimensions(nodes: int) -> tuple[tuple[str, int, float, float], ...]:
    return load_topology(TOPOLOGY, _sets(nodes)).fabric.dimensions("D0")


def run_mcdla(op: str, size: str, nodes: int, algorithm: str, repeats: int) -> tuple[float, float]:
    """(simulated seconds, median wall seconds in-process, topology build included)."""
    walls, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = api.collective(op=op, size=size, topology=TOPOLOGY, set=_sets(nodes), algorithm=algorithm)
        walls.append(time.perf_counter() - start)
    return result.time_s, statistics.median(walls)


def _network_yaml(dims) -> str:
    """ASTRA-sim's network file. Its bandwidth unit is GB/s of 2^30 B (NetworkFunction.cpp:
    bw_GBps_to_Bpns), and a Switch charges its latency per hop, two hops a send (Switch.cpp:
    compute_hops_count), so a Switch gets half the route latency mcdla's dimension sums."""
    hops = {"Switch": 2, "FullyConnected": 1, "Ring": 1}
    return (f"topology: [ {', '.join(d[0] for d in dims)} ]\n"
            f"npus_count: [ {', '.join(str(d[1]) for d in dims)} ]\n"
            f"bandwidth: [ {', '.join(f'{d[2] / 2**30:.4f}' for d in dims)} ]  # GB/s (2^30 B)\n"
            f"latency: [ {', '.join(f'{d[3] * 1e9 / hops[d[0]]:.1f}' for d in dims)} ]  # ns per hop\n")


def _system_json(impl: str, ndims: int) -> str:
    impls = [impl] * ndims
    return json.dumps({
        "scheduling-policy": "LIFO", "endpoint-delay": 10, "active-chunks-per-dimension": 1,
        "preferred-dataset-splits": 4, "all-reduce-implementation": impls, "all-gather-implementation": impls,
        "reduce-scatter-implementation": impls, "all-to-all-implementation": impls,
        "collective-optimization": "localBWAware", "local-mem-bw": 3350, "boost-mode": 0}, indent=1)


def run_astra(binary: str, op: str, size_bytes: int, dims, impl: str, repeats: int,
              trace_bytes: bytes | None = None) -> tuple[float, float]:
    """(simulated seconds: the slowest rank's finish, median wall seconds); the workload
    one collective, or ``trace_bytes`` (every rank the same trace)."""
    ranks = 1
    for d in dims:
        ranks *= d[1]
    with tempfile.TemporaryDirectory(prefix="astra_compare_") as tmp:
        base = Path(tmp)
        (base / "network.yml").write_text(_network_yaml(dims))
        (base / "system.json").write_text(_system_json(impl, len(dims)))
        (base / "memory.json").write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}))
        trace = base / "trace.et"
        trace.write_bytes(trace_bytes if trace_bytes is not None else chakra_trace(op, size_bytes))
        (base / "w").mkdir()
        for r in range(ranks):  # every rank runs the same trace
            os.symlink(trace, base / "w" / f"coll.{r}.et")
        cmd = [binary, f"--workload-configuration={base / 'w' / 'coll'}", f"--system-configuration={base / 'system.json'}",
               f"--remote-memory-configuration={base / 'memory.json'}", f"--network-configuration={base / 'network.yml'}"]
        walls, out = [], ""
        for _ in range(repeats):
            start = time.perf_counter()
            # cwd: ASTRA-sim writes its log/ folder into the working directory
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp).stdout
            walls.append(time.perf_counter() - start)
    cycles = [int(c) for c in re.findall(r"finished, (\d+) cycles", out)]
    if len(cycles) != ranks:
        raise RuntimeError(f"ASTRA-sim reported {len(cycles)} of {ranks} ranks finished:\n{out[-2000:]}")
    return max(cycles) * 1e-9, statistics.median(walls)  # a cycle is 1 ns in the analytical backend


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[128, 512, 2048])
    ap.add_argument("--sizes", nargs="+", default=["64 MiB", "1 GiB"])
    ap.add_argument("--ops", nargs="+", default=["all_reduce"], choices=sorted(COMM_TYPE))
    ap.add_argument("--algorithms", nargs="*", default=list(ALGORITHMS))  # none: ASTRA-sim only
    ap.add_argument("--impls", nargs="*", default=list(ASTRA_IMPLS), help="ASTRA-sim's implementations")
    ap.add_argument("--shapes", nargs="*", default=["2-dim", "1-dim"], help="ASTRA-sim's networks (1-dim: one Switch)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--train", action="store_true", help="one data-parallel training iteration instead")
    ap.add_argument("--model", default="gpt2", help="--train's workload")
    args = ap.parse_args(argv)
    binary = os.environ.get("ASTRA_SIM")
    if args.train:
        return main_train(args, binary)
    print("| op | size | NPUs | tool | algorithm | time (ms) | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for nodes in args.nodes:
        dims = dimensions(nodes)
        print(f"<!-- {nodes * 8} NPUs, dimensions: {dims} -->", file=sys.stderr)
        for op in args.ops:
            for size in args.sizes:
                size_bytes = int(parse_size(size))
                for alg in args.algorithms:
                    t, wall = run_mcdla(op, size, nodes, alg, args.repeats)
                    print(f"| {op} | {size} | {nodes * 8} | mcdla | {alg} | {t * 1e3:.3f} | {wall:.2f} |", flush=True)
                if not binary:
                    continue
                flat = (("Switch", nodes * 8, dims[-1][2], dims[-1][3]),)
                for label, shape in (("2-dim", dims), ("1-dim", flat)):
                    if label not in args.shapes:
                        continue
                    for impl in args.impls:
                        t, wall = run_astra(binary, op, size_bytes, shape, impl, args.repeats)
                        print(f"| {op} | {size} | {nodes * 8} | ASTRA-sim {label} | {impl} | {t * 1e3:.3f} | {wall:.2f} |",
                              flush=True)
    return 0


def main_train(args, binary: str | None) -> int:
    steps = train_schedule(args.model)
    trace = iteration_trace(steps)
    compute = sum(v for kind, _, v in steps if kind == "compute")
    reduces = [v for kind, _, v in steps if kind != "compute"]
    print(f"<!-- {args.model}: {compute * 1e3:.3f} ms of compute, {len(reduces)} all-reduces of "
          f"{sum(reduces) / 2**20:.1f} MiB, a trace of {len(trace)} bytes -->", file=sys.stderr)
    print("| model | NPUs | tool | algorithm | iteration (ms) | wall (s) |")
    print("|---|---|---|---|---|---|")
    for nodes in args.nodes:
        if args.algorithms:
            t, wall = run_mcdla_train(args.model, nodes)
            print(f"| {args.model} | {nodes * 8} | mcdla | hierarchical | {t * 1e3:.3f} | {wall:.2f} |", flush=True)
        if not binary:
            continue
        for impl in args.impls:
            t, wall = run_astra(binary, "all_reduce", 0, dimensions(nodes), impl, args.repeats, trace)
            print(f"| {args.model} | {nodes * 8} | ASTRA-sim 2-dim | {impl} | {t * 1e3:.3f} | {wall:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
