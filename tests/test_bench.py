"""benchmarks/bench.py runs in its reduced mode and prints every field (no timing asserted)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
FIELDS = ("raw_simpy_rate", "grid_points", "grid_events_per_s", "grid_wall_per_sim_s",
          "grid_cost_per_sim", "single_device alexnet", "ring8 vgg_e", "cli_startup mcdla --help",
          "cli_startup mcdla workloads", "cli_startup mcdla sim", "scale ring64 resnet34", "peak_memory")


def test_bench_quick_prints_every_field(capsys):
    spec = importlib.util.spec_from_file_location("mcdla_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--startup-repeat", "1", "--batch", "64"]) == 0
    out = capsys.readouterr().out
    for field in FIELDS:
        assert re.search(rf"^{re.escape(field)}[ :]", out, re.M), f"{field} missing from:\n{out}"
    assert re.search(r"grid_cost_per_sim: [\d,]+ raw timeouts .* (PASS|MISS)$", out, re.M)
    assert len(re.findall(r"\((?:target [\d,]+)\) (?:PASS|MISS)$", out, re.M)) == 3
    # Each case's memory comes from its own process (issue 27's 4 GB is per run), and this
    # process's separately: a case's line and this process's line, each with a verdict.
    for label in ("scale ring64", "this process"):
        found = re.search(rf"^peak_memory {label}: ([\d,]+) MiB \(target 4 GB\) (PASS|MISS)$", out, re.M)
        assert found and int(found.group(1).replace(",", "")) > 0, f"{label}'s memory missing from:\n{out}"
