"""How fast mcdla simulates, measured against how fast this machine runs SimPy.

Run ``python benchmarks/bench.py`` (the paper grid, about a minute) or
``python benchmarks/bench.py --quick`` (a reduced subset, a few seconds).

Wall times depend on the machine, so every figure is also printed as a ratio to the
**raw SimPy rate**: the timeouts per second of a bare ``yield env.timeout(1)`` loop,
measured in the same run. "This iteration cost N raw timeouts" means its wall time
would have run N bare SimPy timeouts here; that number is comparable across machines.

Measured:

- the raw SimPy rate;
- the paper grid (8 workloads x 6 design points x 2 parallel modes, batch 512):
  mcdla's events per second and wall time per simulation (``simulate()``: loading
  the inputs, simulating, summarizing, invariant checks);
- the single-device iteration of every network (unbounded device memory), and an 8-device vgg_e batch-512
  iteration (ring, bw_aware, data-parallel);
- scale: one data-parallel ResNet-34 iteration (batch 4 per device) on MC-DLA rings
  of N devices and N memory-nodes (``benchmarks/scale.py``): 64, 256 and 1,024 devices,
  64 with ``--quick``, any sizes with ``--scale N ...`` (16,384: about 15 s here);
  its events per second as a fraction of the raw rate shows whether the cost of an
  event grows with the system;
- 3D parallelism (not with ``--quick``): one GPT-3 175B iteration on 1,024 H100s,
  tensor 8 x pipeline 16 x data 8 (128 DGX H100 nodes on rail-optimized InfiniBand),
  and with ``--frontier`` on 16,384 (data 128) and the rings of 16,384 and 131,072 devices;
- CLI start-up: ``mcdla --help``, ``mcdla workloads`` and ``mcdla sim`` (the default
  8-device point) as subprocesses, best of N;
- the peak resident memory of each scale and 3D case, each run in its own process
  (issue 27's 4 GB is per run): the child's own ``ru_maxrss`` as ``os.wait4`` returns it
  for that child alone; and of this process (the grid, the single devices, the CLI's
  parent), ``resource.getrusage(RUSAGE_SELF)``.

Targets (PASS/MISS): a simulated iteration of the grid costs at most ~500k raw
timeouts of wall time on average; a CLI start-up at most ~150k; issue 14's scale
targets, a 1,024-device iteration in under 2 s and a 16,384-device one in under 20 s
of this 2-core machine, whose raw rate is about 2.1M timeouts/s: 4.2M and 42M raw
timeouts, and the 3D-parallel GPT-3 iteration in under 10 s: 21M (docs/performance.md);
issue 27's (``--frontier``): 16,384 devices in 3 s (6.3M), 131,072 in 10 s (21M),
GPT-3 on 16,384 H100s in 10 s (21M), and a peak resident memory under 4 GB a run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):  # run from a checkout without installing; its sibling modules
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from mcdla.run import simulate  # noqa: E402
from yardstick import raw_simpy_rate  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SCALE_SIZES, SCALE_QUICK = (64, 256, 1024), (64,)
# The wall-time targets on the machine they were set on, whose raw SimPy rate was
# about 2.1M timeouts/s (docs/performance.md), in raw timeouts: issue 14's 1,024
# devices in 2 s; issue 27's 16,384 in 3 s (it was 20 s) and 131,072 in 10 s.
SCALE_TARGETS = {1024: 2.0 * 2.1e6, 16384: 3.0 * 2.1e6, 131072: 10.0 * 2.1e6}
# The 3D-parallel targets, GPT-3 175B in under 10 s, in raw timeouts: issue 14's on
# 1,024 H100s, issue 27's on 16,384 (--frontier); the point is experiment
# cluster_fabric's first (one switch per rail), resized.
THREE_D_TARGET = 10.0 * 2.1e6
THREE_D_FRONTIER = 16384
# Issue 27: the peak resident memory of a run (each case's own process), in bytes.
PEAK_MEMORY_TARGET = 4e9

WORKLOADS = ("alexnet", "googlenet", "vgg_e", "resnet34", "rnn_gemv", "rnn_lstm1", "rnn_lstm2", "rnn_gru")
DESIGNS = (("dc", "bw_aware"), ("hc", "bw_aware"), ("star", "bw_aware"), ("ring", "local"),
           ("ring", "bw_aware"), ("oracle", "bw_aware"))
MODES = ("data", "model")
BATCH = 512
ITERATION_TARGET = 500e3  # raw SimPy timeouts per simulated iteration, on average
STARTUP_TARGET = 150e3  # raw SimPy timeouts per CLI start-up
UNBOUNDED = (("topology.device_memory", "unbounded"),)


def run_point(topology: str, policy: str, workload: str, parallel: str, batch: int,
              sets: tuple = ()) -> tuple[float, int]:
    """Wall time of one ``simulate()`` call and the SimPy events it processed."""
    started = time.perf_counter()
    result = simulate(topology, policy, workload, parallel, batch, list(sets))
    return time.perf_counter() - started, int(result["events"])


def cli_startup_s(args: list[str], repeat: int) -> float:
    """Best wall time of ``python -m mcdla ARGS`` as a subprocess."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mcdla", *args], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def verdict(cost: float, target: float) -> str:
    return "PASS" if cost <= target else "MISS"


def three_d(point: dict, gpus: int) -> tuple[float, int, int]:
    """GPT-3 175B, tensor 8 x pipeline 16, on ``point``'s cluster resized to ``gpus``
    H100s (8 a node, 2 sockets a node, a rail switch of 64-port chips for every 64
    nodes), 16 micro-batches of one sequence per replica: (wall s, events, replicas)."""
    nodes, base = gpus // 8, 8 * point["generator.nodes"]
    dp = gpus // (8 * 16)
    sized = dict(point, **{"generator.nodes": nodes, "host.sockets": 2 * nodes,
                           "spine_switch.chips": max(point["spine_switch.chips"], -(-nodes // 64)),
                           "batch": point["batch"] * gpus // base})
    started = time.perf_counter()
    count = int(_unbudgeted(sized)["events"])
    return time.perf_counter() - started, count, dp


def _three_d_point() -> dict:
    from mcdla.config.experiment import load_experiment

    return {k: v for k, v in load_experiment("cluster_fabric").points[0].items() if k != "label"}


def _case(case: str) -> dict:
    """Run one case ``KIND:N`` in this process (the child side of :func:`in_own_process`):
    ``ring:N``, the scale ring of N devices; ``3d:N``, GPT-3 on N H100s."""
    kind, n = case.split(":")
    if kind == "ring":
        import tempfile

        import scale

        with tempfile.TemporaryDirectory() as tmp:
            result = scale.run_size(scale.write_ring(Path(tmp), int(n)), int(n))
        return {"wall": result["total_wall_s"], "sim_wall": result["wall_s"], "events": int(result["events"])}
    wall, count, dp = three_d(_three_d_point(), int(n))
    return {"wall": wall, "events": count, "dp": dp}


def in_own_process(case: str) -> tuple[dict, int]:
    """:func:`_case` in a child process: (its result, its peak resident memory in bytes).
    ``os.wait4`` returns the rusage of that child alone (``RUSAGE_CHILDREN`` would be
    the largest of all children so far); Linux counts ``ru_maxrss`` in KiB."""
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--case", case],
                             cwd=ROOT, stdout=subprocess.PIPE)
    out = child.stdout.read()
    child.stdout.close()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"bench case {case} failed (exit {child.returncode})")
    return json.loads(out.decode().splitlines()[-1]), usage.ru_maxrss * 1024


def memory_line(label: str, peak_bytes: int) -> str:
    return (f"peak_memory {label}: {peak_bytes / 2**20:,.0f} MiB (target {PEAK_MEMORY_TARGET / 1e9:.0f} GB) "
            f"{verdict(peak_bytes, PEAK_MEMORY_TARGET)}")


def _unbudgeted(point: dict) -> dict:
    """simulate_point without the work budget: this script measures, it does not guard."""
    import math

    from mcdla.config.point import POINT_KEYS

    args = {k: point[k] for k in POINT_KEYS if k in point}
    return simulate(**args, sets=[(k, v) for k, v in point.items() if k not in POINT_KEYS], budget=math.inf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced subset (CI)")
    parser.add_argument("--startup-repeat", type=int, default=None, help="best of N start-ups")
    parser.add_argument("--batch", type=int, default=BATCH, help="global batch (default: the paper's 512)")
    parser.add_argument("--scale", type=int, nargs="+", metavar="N", default=None,
                        help="ring sizes of the scale case (default: 64 256 1024; 64 with --quick)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in a child process
    parser.add_argument("--frontier", action="store_true",
                        help="issue 27's cases too: the rings of 16,384 and 131,072 devices and GPT-3 on "
                        "16,384 H100s (several minutes; the 131,072-device ring needs MCDLA_MEMORY_BUDGET)")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(_case(args.case)))
        return 0
    batch = args.batch

    if args.quick:
        workloads, designs, modes = ("alexnet", "rnn_gru"), (("dc", "bw_aware"), ("ring", "bw_aware")), MODES
        singles, repeat, timeouts = ("alexnet",), args.startup_repeat or 2, 100_000
    else:
        workloads, designs, modes = WORKLOADS, DESIGNS, MODES
        singles, repeat, timeouts = WORKLOADS, args.startup_repeat or 7, 500_000

    raw = raw_simpy_rate(timeouts)
    print(f"raw_simpy_rate: {raw:,.0f} timeouts/s")

    def cost(wall_s: float) -> str:
        return f"{wall_s * raw:,.0f} raw timeouts"

    walls, events = [], []
    for parallel in modes:
        for workload in workloads:
            for topology, policy in designs:
                wall, count = run_point(topology, policy, workload, parallel, batch)
                walls.append(wall)
                events.append(count)
    mean_wall = statistics.fmean(walls)
    rate = sum(events) / sum(walls)
    print(f"grid_points: {len(walls)} (batch {batch})")
    print(f"grid_events_per_s: {rate:,.0f} ({rate / raw:.3f} x raw)")
    print(f"grid_wall_per_sim_s: mean {mean_wall * 1e3:.1f} ms, max {max(walls) * 1e3:.1f} ms, "
          f"total {sum(walls):.2f} s")
    print(f"grid_cost_per_sim: {cost(mean_wall)} (target {ITERATION_TARGET:,.0f}) "
          f"{verdict(mean_wall * raw, ITERATION_TARGET)}")

    for workload in singles:
        # One device has no backing store; most networks need more than its HBM at
        # batch 512, so it runs with unbounded memory, as the oracle does.
        wall, count = run_point("single", "bw_aware", workload, "data", batch, UNBOUNDED)
        print(f"single_device {workload}: {wall * 1e3:.1f} ms, {count} events, {cost(wall)}")
    wall, count = run_point("ring", "bw_aware", "vgg_e", "data", batch)
    print(f"ring8 vgg_e batch {batch}: {wall * 1e3:.1f} ms, {count} events, {cost(wall)}")

    import scale

    sizes = list(args.scale or (SCALE_QUICK if args.quick else SCALE_SIZES))
    sizes += [n for n in (16384, 131072) if args.frontier and n not in sizes]
    for n in sizes:
        result, peak = in_own_process(f"ring:{n}")
        wall, count = result["wall"], result["events"]
        rate = count / result["sim_wall"]
        print(f"scale ring{n} resnet34 batch {scale.SAMPLES_PER_DEVICE * n}: {wall:.2f} s "
              f"(simulating {result['sim_wall']:.2f} s), {count} events, {rate:,.0f} events/s "
              f"({rate / raw:.4f} x raw), {cost(wall)}"
              + (f" (target {SCALE_TARGETS[n]:,.0f}) {verdict(wall * raw, SCALE_TARGETS[n])}"
                 if n in SCALE_TARGETS else ""))
        print(memory_line(f"scale ring{n}", peak))

    if not args.quick:
        for gpus in (8 * _three_d_point()["generator.nodes"],) + ((THREE_D_FRONTIER,) if args.frontier else ()):
            result, peak = in_own_process(f"3d:{gpus}")
            wall, count, dp = result["wall"], result["events"], result["dp"]
            print(f"3d gpt3_175b t8 p16 d{dp} on {gpus} H100s: {wall:.2f} s, {count} events, {cost(wall)} "
                  f"(target {THREE_D_TARGET:,.0f}) {verdict(wall * raw, THREE_D_TARGET)}")
            print(memory_line(f"3d on {gpus} H100s", peak))

    for label, cli_args in (("--help", ["--help"]), ("workloads", ["workloads"])):
        wall = cli_startup_s(cli_args, repeat)
        print(f"cli_startup mcdla {label}: {wall * 1e3:.1f} ms, {cost(wall)} "
              f"(target {STARTUP_TARGET:,.0f}) {verdict(wall * raw, STARTUP_TARGET)}")
    wall = cli_startup_s(["sim"], repeat)  # start-up, loading and one 8-device iteration: no target
    print(f"cli_startup mcdla sim: {wall * 1e3:.1f} ms, {cost(wall)}")

    # This process: the grid, the single devices and the 8-device ring (the cases ran in their own).
    print(memory_line("this process", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))  # KiB on Linux
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
