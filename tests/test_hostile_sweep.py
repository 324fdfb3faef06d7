"""Sweeps under hostile conditions (issue: hardened): kills, signals, damaged journals,
changed inputs, failed points; every finished point kept, no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcdla.cli.main import main
from mcdla.config.experiment import load_experiment
from mcdla.config.loader import DATA_ROOT
from mcdla.sweep import store
from mcdla.sweep.engine import run_sweep

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

EXPERIMENT = """
name: fake
kind: sim
figure: fig13
runner: sweep_fakes:{runner}
base: {{batch: 512, topology: {topology}}}
axes:
  workload: [alexnet, vgg_e, resnet34, googlenet]
  parallel: [data, model]
"""


def _experiment(tmp_path, runner="run", topology="dc"):
    path = tmp_path / f"fake_{runner}.yaml"
    path.write_text(EXPERIMENT.format(runner=runner, topology=topology), encoding="utf-8")
    return path


def _env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]), **extra)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(p) for p in text.split()]
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _start(tmp_path, out, runner="slow", delay="1.0", jobs="2"):
    path = _experiment(tmp_path, runner)
    command = [sys.executable, "-m", "mcdla", "sweep", str(path), "--out", str(out), "--jobs", jobs, "--quiet"]
    # SIGINT as a terminal gives it: a suite started in the background (`pytest &` in a script)
    # has SIGINT ignored, which the sweep rightly inherits and keeps, as background jobs do.
    process = subprocess.Popen(command, env=_env(MCDLA_FAKE_DELAY_S=delay), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = [p for p in _children(process.pid) if _alive(p)]
        time.sleep(0.05)
    assert len(workers) >= 2, "the sweep must have started its workers"
    return process, workers


linux_only = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")


@linux_only
def test_workers_die_with_a_killed_sweep(tmp_path):
    process, workers = _start(tmp_path, tmp_path / "out")
    process.kill()  # kill -9 of the sweep alone, not its process group
    process.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers), "a worker outlived its sweep"


@linux_only
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_the_table_and_answers_quickly(tmp_path, signum, status):
    out = tmp_path / "out"
    process, workers = _start(tmp_path, out, delay="0.3")
    journal = out / store.JOURNAL
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (journal.exists() and journal.read_text().count("\n") >= 2):
        time.sleep(0.02)
    time.sleep(0.1)  # workers busy with their next points
    os.kill(process.pid, signum)
    sent = time.monotonic()
    _, err = process.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0, "the sweep must answer a signal within two seconds"
    assert process.returncode == status
    assert "interrupted" in err and "run the same command again to resume" in err
    assert (out / store.TABLE).is_file()
    rows = (out / store.TABLE).read_text().count("\n") - 1
    assert rows == journal.read_text().count("\n") >= 2
    assert not any(_alive(p) for p in workers)


def test_journal_line_is_on_disk_when_append_returns(tmp_path):
    with store.Journal(tmp_path) as journal:
        journal.append({"key": "k1", "point": {}, "status": "ok", "result": {}})
        on_disk = (tmp_path / store.JOURNAL).read_bytes()  # another reader, before close
        assert on_disk.endswith(b"\n") and b'"k1"' in on_disk


def test_the_last_record_of_a_retried_point_wins(tmp_path, monkeypatch, capsys):
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MCDLA_FAKE_MARKS", str(marks))
    path = _experiment(tmp_path, "flaky")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--quiet"]) == 1
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--quiet", "--retry-failed"]) == 0
    table = (out / store.TABLE).read_text().splitlines()
    assert len(table) == 9 and all(",ok," in row for row in table[1:])
    assert len((out / store.JOURNAL).read_text().splitlines()) == 16  # both records kept


def test_damaged_journal_lines_are_skipped_and_rerun(tmp_path, capsys):
    exp = load_experiment(str(_experiment(tmp_path)))
    out = tmp_path / "out"
    run_sweep(exp, out=out, jobs=1, progress=False)
    path = out / store.JOURNAL
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[2])
    del record["status"]
    lines[1] = b"\xff\xfe not utf-8\n"
    lines[2] = (json.dumps(record) + "\n").encode()
    lines[3] = b"[1, 2, 3]\n"
    path.write_bytes(b"".join(lines))
    capsys.readouterr()
    again = run_sweep(exp, out=out, jobs=1, progress=False)
    err = capsys.readouterr().err
    assert "3 damaged journal line(s) skipped (first: line 2)" in err
    assert again.ran == 3 and again.complete


def test_a_journal_that_is_a_folder_is_an_input_error(tmp_path, capsys):
    path = _experiment(tmp_path)
    (tmp_path / "out" / store.JOURNAL).mkdir(parents=True)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "journal" in err


def test_a_changed_input_file_reruns_its_points(tmp_path, capsys):
    topology = tmp_path / "mine.yaml"
    topology.write_text((DATA_ROOT / "topologies" / "dc.yaml").read_text())
    exp_path = _experiment(tmp_path, topology=str(topology))
    out = tmp_path / "out"
    first = run_sweep(load_experiment(str(exp_path)), out=out, jobs=1, progress=False)
    assert first.ran == 8
    same = run_sweep(load_experiment(str(exp_path)), out=out, jobs=1, progress=False)
    assert same.ran == 0
    topology.write_text(topology.read_text().replace("description:", "description: edited", 1))
    capsys.readouterr()
    changed = run_sweep(load_experiment(str(exp_path)), out=out, jobs=1, progress=False)
    assert changed.ran == 8, "results of the old file must not stand for the new one"
    assert "8 point(s)" in capsys.readouterr().err


def test_failed_points_make_the_sweep_exit_1(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(EXPERIMENT.format(runner="run", topology="dc").replace(
        "workload: [alexnet, vgg_e, resnet34, googlenet]", "workload: [alexnet, bad]"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet"]) == 1
    assert "2 of 4 points failed" in capsys.readouterr().err


@pytest.mark.parametrize("axis, value, says", [
    ("device.hbm_bw", "nope", "hbm_bw"),
    ("links.nvlink", "no_such_link", "no_such_link"),
    ("workload", "no_such_net", "no_such_net"),
])
def test_bad_input_stops_the_sweep_before_any_point(tmp_path, capsys, axis, value, says):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nkind: sim\nfigure: fig13\nbase: {{workload: alexnet, batch: 64}}\n"
                    f"axes:\n  {axis}: [{value}]\n  topology: [dc, ring]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "point 0" in err and says in err
    assert not (out / store.JOURNAL).exists() or not (out / store.JOURNAL).read_text()
