"""Where one device's iteration goes, kernel kind by kernel kind, for a `kind: sim`
row of a validation table (docs/validation.md, "LLM training and ZeRO memory").

    python benchmarks/kernel_breakdown.py megatron_a100 0   # table, row index

Runs the row as ``mcdla validate`` does (with a timeline, kept in memory), takes
device 0's compute events (each a layer in a phase: forward, recomputed forward,
backward), splits each into the kernels :meth:`mcdla.hw.layers.Layer.kernels` gives it, timed by
:func:`mcdla.hw.compute.kernel_time`, and sums them by kind: the GEMMs by shape (with
the rate they attain), the attention core's parts, the memory-bound passes by layer
kind, the launches (launch overhead and HBM latency of every kernel), the optimizer
step, the slowdown of compute sharing the SMs and HBM with NCCL and the communication left
exposed. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import NoReturn

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing (as bench.py)
    sys.path.insert(0, str(ROOT))

from mcdla.errors import InfeasibleError, InputError  # noqa: E402
from mcdla.hw.compute import kernel_seconds  # noqa: E402
from mcdla.hw.parallelism import device_share, tensor_split  # noqa: E402
from mcdla.io.trace import build_trace  # noqa: E402
from mcdla.metrics.summary import summarize  # noqa: E402
from mcdla.run import POINT_KEYS, load_inputs  # noqa: E402
from mcdla.sim import tensor  # noqa: E402
from mcdla.sim.training import Iteration  # noqa: E402
from mcdla.sweep.validate import _point  # noqa: E402


def _refuse(message: str) -> NoReturn:
    """One line on stderr and exit 2, as mcdla's own commands (and argparse here) refuse bad input."""
    print(f"kernel_breakdown.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _row_args(table: str, index: int) -> dict:
    path = ROOT / "validation" / f"{table}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        _refuse(f"no validation table {table!r}; one of: {', '.join(names)}")
    rows = yaml.safe_load(path.read_text())["rows"]
    if not 0 <= index < len(rows) or rows[index].get("kind") != "sim":
        sims = [i for i, r in enumerate(rows) if r.get("kind") == "sim"]
        _refuse(f"{table} row {index} is not a `kind: sim` row; "
                + (f"those are rows {sims}" if sims else "the table has none"))
    return rows[index]["args"]


def _kind(layer, kernel) -> str:
    """The bucket of one kernel: a GEMM by its shape, else the layer's kind and role."""
    role = kernel.name.rpartition(":")[2]
    if kernel.gemm is not None:
        g = kernel.gemm
        what = "attention GEMM" if layer.attention is not None else "GEMM"
        return f"{what} {g.m}x{g.n}x{g.k}" + (f" x{g.count}" if g.count > 1 else "")
    if kernel.gemms:
        return "attention (fused kernel)"
    if layer.attention is not None:
        return f"attention {role.split('_')[0]}"
    return f"memory-bound {layer.kind}" + ("+fused" if "+" in kernel.name else "")


def breakdown(args: dict) -> tuple[dict, dict, float]:
    """(seconds by kind, MACs by kind, iteration seconds) of device 0."""
    point = _point(args)
    own = {k: point[k] for k in POINT_KEYS if k in point}
    sets = [(k, v) for k, v in point.items() if k not in POINT_KEYS]
    topo, work, execution = load_inputs(own["topology"], own["workload"], sets,
                                        **{k: v for k, v in own.items() if k in ("parallel", "policy", "batch")})
    iteration = Iteration(topo, work, execution, record_timeline=True)
    work = iteration.inputs.workload  # as the run trains it: its precision, fused layers
    record = iteration.run()
    events = build_trace(record)["traceEvents"]
    iteration_s = summarize(record, 0.0, False)["iteration_time_s"]
    device = topo.device
    degree = execution.tensor_parallel
    replicas = len(topo.devices) // (degree * execution.pipeline_parallel)  # a replica: TP x PP devices
    local_batch, _ = device_share(execution.parallel, execution.batch, replicas)
    micro = execution.training.micro_batches
    local_batch //= micro
    tp = tensor_split(work.layers, degree, execution.sequence_parallel)
    shards = tp.shards
    over = iteration.plan.overlapping  # TP communication overlap: a block GEMM in pieces, as the plan times it
    index = {l.name: i for i, l in enumerate(work.layers)}
    seconds: dict[str, float] = defaultdict(float)
    macs: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("ph") != "X" or e.get("pid") != 1 or e.get("cat") != "compute":
            continue
        phase, _, name = e["name"].partition(" ")
        name = name.split(" mb")[0]  # a micro-batch's event: "<layer> mb<j>" (mcdla.sim.device)
        duration = e["dur"] * 1e-6
        if phase == "optimizer":
            seconds["optimizer step"] += duration
            continue
        i = index[name]  # a fused layer is named by its parts, "a+b"
        layer = work.layers[i]
        pieces = tensor.chunks(i, "bwd" if phase == "bwd" else "fwd", tp, over)
        timed = [(k, kernel_seconds(device, k, pieces))
                 for k in layer.kernels(phase, local_batch, work.precision_bytes, shards[i])]
        modelled = sum(t for _, t in timed)
        for k, t in timed:  # a GEMM in pieces: its pieces' launches in its own time
            fixed = device.launch_overhead + device.hbm_latency
            seconds[_kind(layer, k)] += t - fixed
            macs[_kind(layer, k)] += k.macs
            seconds["launch + latency"] += fixed
        seconds["NCCL holding SMs and HBM (contention)"] += duration - modelled
    busy = sum(seconds.values())
    seconds["communication exposed"] = iteration_s - busy
    return seconds, macs, iteration_s


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="kernel_breakdown.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="a validation table's name (validation/NAME.yaml)")
    parser.add_argument("index", type=int, nargs="?", default=0,
                        help="the row's index in the table (a `kind: sim` row; default 0)")
    args = parser.parse_args(argv)
    table, index = args.table, args.index
    try:
        seconds, macs, total = breakdown(_row_args(table, index))
    except (InputError, InfeasibleError) as error:  # a row that cannot run (a memory row)
        _refuse(f"{table} row {index}: {error}")
    print(f"{table} row {index}: iteration {total * 1e3:.0f} ms (device 0)")
    for kind, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        rate = f"{2 * macs[kind] / s / 1e12:7.1f} TFLOP/s" if macs.get(kind) and s > 0 else ""
        print(f"  {kind:45s} {s * 1e3:9.1f} ms  {100 * s / total:5.1f}%  {rate}")


if __name__ == "__main__":
    main(sys.argv[1:])
