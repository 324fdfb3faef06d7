"""How the simulator's cost grows with the system: one data-parallel iteration on a big ring.

``python benchmarks/scale.py [N ...]`` (default 8 64 256 1024) builds MC-DLA's ring of
``N`` devices with a memory-node between every two (as ``topologies/ring.yaml``
does for 8: three parallel NVLinks per adjacent pair, three rings used both ways, each
device backed by the memory-nodes on its two sides), writes it as a topology file in a
temporary directory, and times one data-parallel iteration of ResNet-34 at a batch of
``4 N`` (4 samples per device) through :func:`mcdla.run.simulate`, the path ``mcdla sim``
takes. Each size is printed as wall seconds, SimPy events, events per second and that
rate as a fraction of the machine's raw SimPy rate (see ``benchmarks/bench.py``).

``--profile FILE`` writes a cProfile of the largest size; ``--show`` prints its top
functions. The work budget is lifted (``budget=inf``): this script measures, it does
not guard.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

SIZES = (8, 64, 256, 1024)
SAMPLES_PER_DEVICE = 4


def ring_yaml(n: int) -> str:
    """MC-DLA's ring (Fig. 7(c)) of ``n`` devices and ``n`` memory-nodes, as YAML text."""
    lines = [
        *_head(n),
        f"devices: {n}",
        f"memory_nodes: {n}",
        "connections:",
    ]
    for i in range(n):
        lines.append(f"  - [D{i}, M{i}, nvlink, 3]")
        lines.append(f"  - [M{i}, D{(i + 1) % n}, nvlink, 3]")
    cycle = "[" + ", ".join(f"D{i}, M{i}" for i in range(n)) + "]"
    lines.append("rings:")
    lines += [f"  - {cycle}"] * 3
    lines += ["ring_directions: both", "backing: memory_nodes", "serves:"]
    lines += [f"  D{i}: [M{i}, M{(i - 1) % n}]" for i in range(n)]
    return "\n".join(lines) + "\n"


def generated_ring_yaml(n: int) -> str:
    """:func:`ring_yaml`'s ring as the ring generator's YAML text (as ``ring16.yaml``):
    the generator writes the nodes, links and serving memory-nodes the listed file
    spells out (the same results, field for field: tests/test_frontier_scale.py), and a
    listed file of 16,384 devices spent 3-4 s of a run parsing its 65,536 lines. The
    benchmark runs this one; tests edit the listed one."""
    return "\n".join([*_head(n), f"generator: {{name: ring, devices: {n}, links_per_pair: 3}}"]) + "\n"


def _head(n: int) -> list[str]:
    """The lines both forms of the ring share: its name, parts and links."""
    return [f"name: ring{n}",
            f'description: "MC-DLA ring of {n} devices and {n} memory-nodes, 3 links per adjacent pair"',
            "device: table2", "memory_node: table2", "links:", "  nvlink: nvlink2"]


def write_ring(directory: Path, n: int) -> str:
    path = directory / f"ring{n}.yaml"
    path.write_text(generated_ring_yaml(n))
    return str(path)


def run_size(path: str, n: int, workload: str = "resnet34") -> dict:
    """One iteration on the ring at ``path``: the result mapping plus its total wall time."""
    from mcdla.run import simulate

    started = time.perf_counter()
    result = simulate(path, "bw_aware", workload, "data", SAMPLES_PER_DEVICE * n, budget=math.inf)
    result["total_wall_s"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=list(SIZES), help="devices on the ring")
    parser.add_argument("--workload", default="resnet34")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the largest size into FILE")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="print the profile's top N")
    args = parser.parse_args(argv)

    from yardstick import raw_simpy_rate  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

    raw = raw_simpy_rate(200_000)
    print(f"raw_simpy_rate: {raw:,.0f} timeouts/s")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = sorted(args.sizes)
        for n in sizes:
            path = write_ring(Path(tmp), n)
            if args.profile and n == sizes[-1]:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.enable()
                result = run_size(path, n, args.workload)
                profiler.disable()
                profiler.dump_stats(args.profile)
                if args.show:
                    pstats.Stats(args.profile).sort_stats("cumulative").print_stats(args.show)
            else:
                result = run_size(path, n, args.workload)
            total, sim, events = result["total_wall_s"], result["wall_s"], result["events"]
            rate = events / sim
            print(f"ring{n} {args.workload} data batch {SAMPLES_PER_DEVICE * n}: total {total:.2f} s "
                  f"(simulate {sim:.2f} s), {events} events, {rate:,.0f} events/s = {rate / raw:.4f} x raw, "
                  f"cost {total * raw:,.0f} raw timeouts, iteration {result['iteration_time_s']:.9g} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
