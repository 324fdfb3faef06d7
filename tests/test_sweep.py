"""Sweeps: resume after kill -9, failed points, determinism, the Dask executor, metrics.

Every sweep here runs a fake runner (tests/sweep_fakes.py), named in the experiment
YAML, so these tests depend neither on the simulator's speed nor on its numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mcdla.cli.main import main
from mcdla.config.experiment import load_experiment
from mcdla.metrics import compare
from mcdla.metrics.power import memory_node_power, perf_per_watt
from mcdla.sweep import store
from mcdla.sweep.engine import run_sweep

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

EXPERIMENT = """
name: fake
kind: sim
figure: [fig11, fig13]
runner: sweep_fakes:{runner}
base: {{batch: 512}}
axes:
  parallel: [data, model]
  workload: [{workloads}]
points:
  - {{topology: dc}}
  - {{topology: ring, policy: local}}
  - {{topology: ring, policy: bw_aware}}
"""


def experiment(tmp_path, runner="run", workloads="alexnet, vgg_e, resnet34"):
    path = tmp_path / f"fake_{runner}.yaml"
    path.write_text(EXPERIMENT.format(runner=runner, workloads=workloads), encoding="utf-8")
    return load_experiment(str(path))


def journal_keys(folder: Path) -> list[str]:
    return [json.loads(line)["key"] for line in (folder / store.JOURNAL).read_text().splitlines()]


def test_sweep_writes_one_row_per_point_in_order(tmp_path):
    exp = experiment(tmp_path)
    result = run_sweep(exp, out=tmp_path / "a", jobs=2, progress=False)
    table = pd.read_csv(result.table)
    assert result.complete and result.ran == len(exp.points) == len(table) == 18
    assert list(table.columns[:5]) == ["topology", "policy", "workload", "parallel", "batch"]
    assert "busy_s.compute" in table.columns and "iteration_time_s" in table.columns
    assert list(table["topology"][:3]) == ["dc", "ring", "ring"]
    assert list(table["parallel"][:9]) == ["data"] * 9


def test_rerun_skips_finished_points_and_writes_nothing_twice(tmp_path):
    exp = experiment(tmp_path)
    run_sweep(exp, out=tmp_path / "a", jobs=2, progress=False)
    first = (tmp_path / "a" / store.TABLE).read_bytes()
    again = run_sweep(exp, out=tmp_path / "a", jobs=2, progress=False)
    assert again.ran == 0 and again.skipped == 18
    keys = journal_keys(tmp_path / "a")
    assert len(keys) == len(set(keys)) == 18
    assert (tmp_path / "a" / store.TABLE).read_bytes() == first


def test_table_is_byte_deterministic(tmp_path):
    exp = experiment(tmp_path)
    run_sweep(exp, out=tmp_path / "a", jobs=2, progress=False)
    run_sweep(exp, out=tmp_path / "b", jobs=1, progress=False)
    assert (tmp_path / "a" / store.TABLE).read_bytes() == (tmp_path / "b" / store.TABLE).read_bytes()


def test_failing_points_are_recorded_and_the_rest_complete(tmp_path):
    exp = experiment(tmp_path, workloads="alexnet, bad, huge, bug")
    result = run_sweep(exp, out=tmp_path / "a", jobs=2, progress=False)
    table = pd.read_csv(result.table)
    assert len(table) == 24 and result.failed == 18
    kinds = table.groupby("workload")["error_kind"].first().to_dict()
    assert kinds["bad"] == "input" and kinds["huge"] == "infeasible" and kinds["bug"] == "internal"
    assert (table[table["workload"] == "alexnet"]["status"] == "ok").all()
    assert table[table["workload"] == "bug"]["error"].str.contains("ZeroDivisionError").all()


def test_retry_failed_reruns_only_the_failed_points(tmp_path):
    exp = experiment(tmp_path, workloads="alexnet, bug")
    run_sweep(exp, out=tmp_path / "a", jobs=1, progress=False)
    again = run_sweep(exp, out=tmp_path / "a", jobs=1, retry_failed=True, progress=False)
    assert again.ran == 6 and again.skipped == 6


def test_torn_journal_line_is_cut_and_the_point_rerun(tmp_path):
    exp = experiment(tmp_path)
    run_sweep(exp, out=tmp_path / "a", jobs=1, progress=False)
    path = tmp_path / "a" / store.JOURNAL
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:25])  # a kill in the middle of a write
    again = run_sweep(exp, out=tmp_path / "a", jobs=1, progress=False)
    assert again.ran == 1 and again.complete
    assert len(journal_keys(tmp_path / "a")) == 18


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    exp_path = tmp_path / "slow.yaml"
    exp_path.write_text(EXPERIMENT.format(runner="slow", workloads="alexnet, vgg_e, resnet34, googlenet"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]), MCDLA_FAKE_DELAY_S="0.2")
    out = tmp_path / "killed"

    def sweep(folder):
        return [sys.executable, "-m", "mcdla", "sweep", str(exp_path), "--out", str(folder), "--jobs", "2", "--quiet"]

    command = sweep(out)
    process = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / store.JOURNAL
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_bytes().splitlines()) >= 4:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its workers, as kill -9 would
    process.wait()
    done = len(journal_keys(out))
    assert 4 <= done < 24, "the kill must land mid-sweep"
    env["MCDLA_FAKE_DELAY_S"] = "0"
    subprocess.run(command, env=env, cwd=tmp_path, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(sweep(tmp_path / "whole"), env=env, cwd=tmp_path,
                   check=True, stdout=subprocess.DEVNULL)
    keys = journal_keys(out)
    assert len(keys) == len(set(keys)) == 24
    assert (out / store.TABLE).read_bytes() == (tmp_path / "whole" / store.TABLE).read_bytes()


def test_dask_executor_gives_the_local_table(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    exp = experiment(tmp_path)
    run_sweep(exp, out=tmp_path / "local", jobs=2, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        result = run_sweep(exp, out=tmp_path / "dask", executor="dask",
                           scheduler=cluster.scheduler_address, progress=False)
    assert result.complete and result.ran == 18
    assert (tmp_path / "dask" / store.TABLE).read_bytes() == (tmp_path / "local" / store.TABLE).read_bytes()


def test_cli_sweep_reports_counts_as_json(tmp_path, capsys, monkeypatch):
    exp = experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", exp.source, "--jobs", "1", "--quiet", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == 18 and summary["folder"] == os.path.join("results", "fake")
    assert (tmp_path / "results" / "fake" / store.TABLE).is_file()


def test_scheduler_needs_the_dask_executor(tmp_path):
    exp = experiment(tmp_path)
    assert main(["sweep", exp.source, "--scheduler", "tcp://x:1", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


# -- metrics/compare.py ---------------------------------------------------------------

def table(rows):
    frame = pd.DataFrame(rows, columns=["topology", "policy", "workload", "parallel", "batch", "iteration_time_s"])
    frame["status"] = "ok"
    return frame


def test_harmonic_mean():
    assert compare.harmonic_mean([1.0, 4.0, 4.0]) == pytest.approx(2.0)
    assert compare.harmonic_mean([2.0, float("nan")]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        compare.harmonic_mean([1.0, 0.0])


def test_speedup_is_baseline_time_over_design_time_per_workload():
    data = table([
        ("dc", "bw_aware", "a", "data", 512, 4.0), ("ring", "bw_aware", "a", "data", 512, 1.0),
        ("dc", "bw_aware", "b", "data", 512, 2.0), ("ring", "bw_aware", "b", "data", 512, 2.0),
        ("ring", "local", "a", "data", 512, 2.0), ("dc", "bw_aware", "a", "data", 256, 9.0),
    ])
    sp = compare.speedups(data)
    ring = sp[sp["design"] == "ring+bw_aware"].set_index("workload")["speedup"]
    assert ring["a"] == pytest.approx(4.0) and ring["b"] == pytest.approx(1.0)
    means = compare.mean_speedups(sp).set_index(["design", "parallel"])["speedup"]
    assert means[("ring+bw_aware", "data")] == pytest.approx(1.6)  # HM of 4 and 1
    assert means[("ring+local", "all")] == pytest.approx(2.0)


def test_speedup_pivot_has_a_row_per_workload_and_harmonic_means():
    data = table([
        ("dc", "bw_aware", "a", "data", 512, 4.0), ("ring", "bw_aware", "a", "data", 512, 1.0),
        ("dc", "bw_aware", "b", "data", 512, 2.0), ("ring", "bw_aware", "b", "data", 512, 2.0),
        ("dc", "bw_aware", "a", "model", 512, 3.0), ("ring", "bw_aware", "a", "model", 512, 1.0),
    ])
    rows = compare.speedup_pivot(data)
    assert [(r["parallel"], r["workload"]) for r in rows] == [
        ("data", "a"), ("data", "b"), ("model", "a"),
        ("data", "harmonic mean"), ("model", "harmonic mean"), ("all", "harmonic mean")]
    assert rows[0]["ring+bw_aware"] == pytest.approx(4.0)
    assert rows[3]["ring+bw_aware"] == pytest.approx(1.6)
    assert rows[5]["ring+bw_aware"] == pytest.approx(3 / (1 / 4 + 1 / 1 + 1 / 3))
    assert compare.speedup_pivot(data[data["topology"] == "ring"]) == []


def test_label_names_the_design():
    data = table([("dc", "bw_aware", "a", "data", 512, 4.0), ("dc", "bw_aware", "a", "data", 512, 2.0)])
    data["label"] = ["dc", "dc+pcie4"]
    assert compare.pcie_summary(data)["dc_gain"] == pytest.approx(2.0)


def test_scaling_over_one_device():
    data = table([("dc1", "bw_aware", "a", "data", 512, 8.0), ("dc4", "bw_aware", "a", "data", 512, 2.0),
                  ("dc", "bw_aware", "a", "data", 512, 1.0)])
    data["training.virtualization"] = True
    data["devices"] = [1, 4, 8]
    scaled = compare.scaling(data).set_index("devices")["speedup"]
    assert scaled[4] == pytest.approx(4.0) and scaled[8] == pytest.approx(8.0)


def test_memory_node_power_reproduces_table_iv():
    node = memory_node_power({"memory_node.dimm_capacity": "8 GB", "memory_node.dimm_power_W": 2.9})
    assert node["node_power_W"] == pytest.approx(29.0) and node["GB_per_W"] == pytest.approx(80 / 29)
    assert node["added_power_W"] == pytest.approx(232.0)
    assert perf_per_watt(2.8, memory_node_power({})["power_increase"]) == pytest.approx(2.8 / 1.3175)


def test_every_report_metric_has_an_explanation():
    from mcdla.sweep.report import EXPLANATIONS, METRICS

    assert [m.id for m in METRICS if not EXPLANATIONS.get(m.id)] == []


def test_the_report_says_which_points_ran_which_were_reused_and_which_were_not_swept(tmp_path):
    """`reproduce --only` sweeps only the named experiments: the others' tables are
    reported as found, not claimed as points reused by this run (issue 22)."""
    from mcdla.cli.main import main

    out = tmp_path / "repro"

    def report(*args):
        assert main(["reproduce", *args, "--jobs", "1", "--quiet", "--out", str(out)]) == 0
        return (out / "docs" / "results.md").read_text()

    first = report("--only", "fig09")
    assert "Swept in this run: 1 experiment, 16 of their 16 points run now." in first
    assert "reused" not in first and "Not swept" not in first  # no other experiment has results yet
    second = report("--only", "fig09", "--only", "cdma")
    assert ("Swept in this run: 2 experiments, 16 of their 32 points run now, the other 16 reused from "
            "their journals (same inputs).") in second
    third = report("--report-only", "--only", "fig09", "--only", "cdma")
    assert ("No experiment was swept in this run. Not swept in this run (left out by `--only` or "
            "`--report-only`, or refused), reported from the results found: fig09, cdma (32 points).") in third


def test_points_that_do_not_fit_are_a_finding_not_a_failure(tmp_path):
    """A memory study's "does not fit" point (error_kind infeasible) is counted apart in
    the report, and `reproduce` still exits 0; any other error fails it."""
    import pandas as pd

    from mcdla.cli.main import main

    out = tmp_path / "repro"
    assert main(["reproduce", "--only", "fig09", "--jobs", "1", "--quiet", "--out", str(out)]) == 0
    table_path = out / "results" / "fig09" / "results.csv"
    table = pd.read_csv(table_path, dtype={"status": object, "error_kind": object, "error": object})
    table.loc[0, ["status", "error_kind", "error"]] = ["error", "infeasible", "device D0: does not fit"]
    table.to_csv(table_path, index=False)
    args = ["reproduce", "--report-only", "--only", "fig09", "--quiet", "--out", str(out)]
    assert main(args) == 0
    report = (out / "docs" / "results.md").read_text()
    assert "| fig09 | 16 | 0 | 0 |" in report and "1 do not fit their design" in report
    table.loc[0, "error_kind"] = "exception"
    table.to_csv(table_path, index=False)
    assert main(args) == 1
    assert "| fig09 | 16 | 0 | 1 |" in (out / "docs" / "results.md").read_text()
