"""Hostile output targets (issue 15, items 1, 7, 11, 12, 13): every file mcdla writes goes
through mcdla.io.write, and every refusal is one line with exit status 2.

No test touches a real device file: FIFOs and symlinks are made in a temporary folder,
and an unwritable place is a path under a regular file (ENOTDIR), which holds for root.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import threading

import pytest

from mcdla.cli.main import main

# A cheap command that writes a known JSON document: one topology's summary.
QUICK = ["topologies", "dc", "--format", "json"]
TINY_EXPERIMENT = "name: tiny\nkind: sim\nfigure: fig13\nbase: {topology: single, batch: 8, workload: alexnet}\n"


def one_line_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


def leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# -- where a write goes ----------------------------------------------------------------


def test_fifo_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader():
        with open(fifo, "rb") as stream:  # blocks until a writer opens the FIFO
            received.append(stream.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert main([*QUICK, "--output", str(fifo)]) == 0
        thread.join(timeout=10)
    finally:
        if thread.is_alive():  # the FIFO was never opened for writing: release the reader
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(timeout=5)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert received and json.loads(received[0])[0]["name"] == "dc"


def test_symlink_at_the_old_temporary_name_does_not_redirect_the_write(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "out.json"
    os.symlink(victim, tmp_path / f".{target.name}.tmp")
    assert main([*QUICK, "--output", str(target)]) == 0
    assert victim.read_text() == "precious\n"
    assert not target.is_symlink() and json.loads(target.read_text())[0]["name"] == "dc"


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    os.symlink(real.name, link)
    assert main(["topologies", "dc", "--format", "csv", "--output", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == real.name
    rows = list(csv.DictReader(io.StringIO(real.read_text())))
    assert rows[0]["name"] == "dc"


def test_dash_is_stdout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*QUICK, "--output", "-"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "dc"
    assert not (tmp_path / "-").exists()


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    assert main([*QUICK, "--output", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert json.loads(target.read_text())[0]["name"] == "dc"


# -- refusals: one line, exit 2, nothing left behind -----------------------------------


def test_a_folder_as_output_is_refused(tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    assert main([*QUICK, "--output", str(folder)]) == 2
    one_line_error(capsys, "is a directory")
    assert leftovers(tmp_path) == [] and list(folder.iterdir()) == []


def test_a_missing_parent_folder_is_refused(tmp_path, capsys):
    assert main([*QUICK, "--output", str(tmp_path / "no" / "such" / "x.json")]) == 2
    one_line_error(capsys, "no such directory")


def test_a_path_under_a_regular_file_is_refused(tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert main([*QUICK, "--output", str(plain / "x.json")]) == 2
    one_line_error(capsys, "not a directory")
    assert plain.read_text() == "x"


def test_a_name_longer_than_255_bytes_is_refused_in_a_short_line(tmp_path, capsys):
    assert main([*QUICK, "--output", str(tmp_path / ("a" * 300))]) == 2
    err = one_line_error(capsys, "255")
    assert len(err) < 300 and leftovers(tmp_path) == []


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert main([*QUICK, "--output", str(target)]) == 2
    one_line_error(capsys, "No space left on device", str(target))
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_an_empty_output_name_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*QUICK, "--output", ""]) == 2
    one_line_error(capsys)
    assert os.listdir(tmp_path) == []


# -- conflicting outputs, noticed before anything runs ---------------------------------


def test_trace_and_output_on_one_file_are_refused_before_simulating(tmp_path, capsys):
    same = tmp_path / "run.json"
    argv = ["sim", "--topology", "single", "--batch", "8", "--format", "json"]
    assert main([*argv, "--trace", str(same), "--output", str(same)]) == 2
    one_line_error(capsys, "--trace")
    assert not same.exists()
    os.symlink(same.name, tmp_path / "alias.json")  # the same file by another name
    assert main([*argv, "--trace", str(same), "--output", str(tmp_path / "alias.json")]) == 2
    one_line_error(capsys, "--trace")
    assert not same.exists()


@pytest.mark.parametrize("inside", ["journal.jsonl", "results.csv", "link"])
def test_sweep_output_onto_its_own_files_is_refused(tmp_path, capsys, inside):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(TINY_EXPERIMENT)
    folder = tmp_path / "g"
    output = folder / inside
    if inside == "link":  # a symlink elsewhere that points at the journal
        output = tmp_path / "summary.json"
        os.symlink(folder / "journal.jsonl", output)
    assert main(["sweep", str(exp), "--out", str(folder), "--quiet", "--output", str(output)]) == 2
    one_line_error(capsys, "--output")
    assert not folder.exists()


def test_sweep_out_empty_or_a_file_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_EXPERIMENT)
    assert main(["sweep", "tiny.yaml", "--out", "", "--quiet"]) == 2
    one_line_error(capsys, "--out")
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]
    (tmp_path / "file").write_text("x")
    assert main(["sweep", "tiny.yaml", "--out", "file", "--quiet"]) == 2
    one_line_error(capsys, "not a directory")


# -- item 13: JSON is JSON --------------------------------------------------------------


def test_zero_byte_collective_prints_valid_json(capsys):
    assert main(["collective", "--op", "all_reduce", "--size", "0 B", "--ring", "4", "--format", "json"]) == 0

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert data["size_bytes"] == 0 and data["algbw_Bps"] is None and data["busbw_Bps"] is None


# -- item 7: reproduce and --jobs -------------------------------------------------------


def test_report_only_without_results_keeps_the_existing_report(tmp_path, capsys):
    report = tmp_path / "docs" / "results.md"
    report.parent.mkdir()
    report.write_text("# the committed report\n")
    assert main(["reproduce", "--report-only", "--out", str(tmp_path), "--quiet"]) == 2
    one_line_error(capsys, str(report), "no results")
    assert report.read_text() == "# the committed report\n"


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_below_one_is_refused_everywhere(tmp_path, capsys, jobs):
    with pytest.raises(SystemExit) as exited:
        main(["sweep", "no_such_experiment", "--jobs", jobs])
    assert exited.value.code == 2
    one_line_error(capsys, "--jobs")
    with pytest.raises(SystemExit) as exited:
        main(["reproduce", "--report-only", "--out", str(tmp_path), "--jobs", jobs])
    assert exited.value.code == 2
    one_line_error(capsys, "--jobs")
    assert os.listdir(tmp_path) == []


def test_reproduce_out_onto_a_file_is_refused(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert main(["reproduce", "--report-only", "--out", str(plain), "--quiet"]) == 2
    one_line_error(capsys, "not a directory")


# -- item 11: mcdla plot on damaged tables and bad folders ------------------------------


@pytest.mark.parametrize("damage, expected", [
    (b"topology,status\n\xff\xfe\xfa,ok\n", "UTF-8"),
    (b"", "empty"),
    (b"topology,status\ndc,ok\n", "column"),  # no workload, no iteration time
    (b"just,a,header\n", "status"),
])
def test_plot_on_a_damaged_results_table_is_one_line(tmp_path, capsys, damage, expected):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: hand\nkind: sim\nfigure: fig13\n")
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "results.csv").write_bytes(damage)
    assert main(["plot", str(exp), "--results", str(folder), "--out", str(tmp_path / "figs")]) == 2
    one_line_error(capsys, expected)


def test_plot_out_onto_a_file_is_refused(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: hand\nkind: sim\nfigure: fig13\n")
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "results.csv").write_text(
        "topology,policy,workload,parallel,batch,iteration_time_s,status\ndc,bw_aware,alexnet,data,8,1.0,ok\n")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert main(["plot", str(exp), "--results", str(folder), "--out", str(plain)]) == 2
    one_line_error(capsys, "not a directory")
    assert plain.read_text() == "x"


def test_a_failure_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from mcdla.io.write import open_output

    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with open_output(target) as stream:
            stream.write("half a ta")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["table.csv"]


def test_trace_through_a_symlink_writes_its_target(tmp_path, capsys):
    real = tmp_path / "real.json"
    link = tmp_path / "trace.json"
    os.symlink(real.name, link)  # dangling until the trace is written
    assert main(["sim", "--topology", "single", "--batch", "8", "--format", "json", "--trace", str(link)]) == 0
    capsys.readouterr()
    assert link.is_symlink() and "traceEvents" in json.loads(real.read_text())
    assert leftovers(tmp_path) == []
