"""Humane output (issue 9): tables print units a person reads; JSON and CSV keep raw SI
numbers; ``mcdla sim`` leads with the answer; ``mcdla compare`` puts designs side by side."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from mcdla import units
from mcdla.cli.main import main
from mcdla.io.humane import bar, format_field, unit_of

SMALL = ["--workload", "alexnet", "--batch", "64"]


@pytest.mark.parametrize("name, value, shown", [
    ("iteration_time_s", 0.036181, "36.18 ms"),
    ("busy_s.compute", 2.5e-6, "2.5 us"),
    ("wall_s", 1.5, "1.5 s"),
    ("link_bytes.D0>M0", 5.7417e8, "574.2 MB"),
    ("device_mem_peak_bytes", 1.536e9, "1.536 GB"),
    ("activation_bytes_per_sample", 2e6, "2 MB"),
    ("bytes", 4096, "4.096 KB"),
    ("collective_bw_Bps", 1.5e11, "150 GB/s"),
    ("cpu_mem_bw_Bps.peak", 0.0, "0 B/s"),
    ("peak_flops", 1.25e14, "125 TFLOP/s"),
    ("attained_MACps", 1.28e14, "128 TMAC/s"),
    ("macs", 3.2e9, "3.2 GMAC"),
    ("utilization", 0.781, "78.1%"),
    ("compute_bound_share", 1.0, "100.0%"),
    ("intensity_MAC_per_B", 142.2, "142.2 MAC/B"),
    ("algbw_Bps", math.inf, "inf"),
    ("events", 16235, "16235"),
    ("ranks", 8, "8"),
    ("topology", "ring", "ring"),
])
def test_formatter_picks_the_unit_from_the_field_name(name, value, shown):
    assert format_field(name, value) == shown


@pytest.mark.parametrize("name, kind, value", [
    ("time_s", "time", 3.7e-4), ("busy_s.sync", "time", 12.5), ("size_bytes", "size", 8e6),
    ("hbm_bw_Bps", "bandwidth", 9e11),
])
def test_printed_quantities_read_back(name, kind, value):
    assert units.parse(format_field(name, value), kind) == pytest.approx(value, rel=5e-4)


def test_fields_without_a_unit_suffix_are_not_guessed():
    for name in ("devices", "rings", "params", "batch", "flows", "ring+bw_aware"):
        assert unit_of(name) is None


def test_bar_fills_its_share_of_cells():
    assert bar(0.5, width=10) == "█████░░░░░"
    assert bar(1.7, width=4) == "████" and bar(-1, width=4) == "░░░░"


def test_sim_table_leads_with_the_answer(capsys):
    assert main(["sim", *SMALL]) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert first.startswith("iteration time") and first.endswith(" ms")
    assert units.parse(first.split(None, 2)[2], "time") > 0
    assert second.startswith("throughput") and second.endswith("samples/s")
    assert "█" in out and "%" in out and "virtualization, exposed" in out
    assert "link_bytes" not in out


def test_sim_links_flag_lists_the_counters_and_json_keeps_them(capsys):
    assert main(["sim", *SMALL, "--links"]) == 0
    assert "link_bytes.D0>M0" in capsys.readouterr().out
    assert main(["sim", *SMALL, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["link_bytes"] and isinstance(result["iteration_time_s"], float)


def test_sim_csv_keeps_raw_si_numbers(capsys):
    assert main(["sim", *SMALL, "--format", "csv"]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert 0 < float(row["iteration_time_s"]) < 1 and float(row["device_mem_peak_bytes"]) > 1e6


def test_sim_table_throughput_is_the_batch_over_the_iteration(capsys):
    assert main(["sim", *SMALL, "--format", "json"]) == 0
    time_s = json.loads(capsys.readouterr().out)["iteration_time_s"]
    assert main(["sim", *SMALL]) == 0
    second = capsys.readouterr().out.splitlines()[1]
    shown = float(second.split()[1].replace(",", ""))
    assert shown == pytest.approx(64 / time_s, rel=1e-3)


PAPER_NAMES = ("DC-DLA", "HC-DLA", "MC-DLA(S)", "MC-DLA(L)", "MC-DLA(B)", "DC-DLA(O)")


def test_compare_prints_every_design_and_draws_a_png(tmp_path, capsys):
    figure = tmp_path / "designs.png"
    assert main(["compare", *SMALL, "--plot", str(figure)]) == 0
    out = capsys.readouterr().out
    for name in PAPER_NAMES:
        assert f"\n{name} " in out
    assert "1.00x" in out and " ms " in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["designs.png"]


def test_compare_json_and_csv_rows(capsys):
    assert main(["compare", *SMALL, "--designs", "dc,ring:bw_aware,oracle", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["design"] for r in rows] == ["DC-DLA", "MC-DLA(B)", "DC-DLA(O)"]
    assert rows[0]["speedup"] == 1.0
    # the oracle (unbounded device memory) is never slower than DC-DLA or MC-DLA(B)
    assert rows[2]["speedup"] >= rows[1]["speedup"] > 1.0
    assert "link_bytes" not in rows[0] and rows[1]["policy"] == "bw_aware"
    assert main(["compare", *SMALL, "--designs", "ring:local,ring", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["policy"] for r in table] == ["local", "bw_aware"]
    assert float(table[0]["iteration_time_s"]) > 0


def test_compare_matches_sim_for_a_design(capsys):
    assert main(["sim", *SMALL, "--topology", "star", "--format", "json"]) == 0
    alone = json.loads(capsys.readouterr().out)["iteration_time_s"]
    assert main(["compare", *SMALL, "--designs", "dc,star", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[1]["iteration_time_s"] == alone


@pytest.mark.parametrize("designs, expected", [
    ("dc,ring:greedy", "greedy"),
    ("dc,,ring", "TOPOLOGY[:POLICY]"),
    ("dc,nosuchdesign", "nosuchdesign"),
    ("dc,dc", "twice"),
])
def test_compare_refuses_bad_designs_before_simulating(tmp_path, capsys, designs, expected):
    figure = tmp_path / "x.png"
    assert main(["compare", *SMALL, "--designs", designs, "--plot", str(figure)]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not figure.exists()


def test_compare_plot_needs_a_figure_name(tmp_path, capsys):
    assert main(["compare", *SMALL, "--plot", str(tmp_path / "x.pdf")]) == 2
    assert "--plot" in capsys.readouterr().err


def test_compare_refuses_more_designs_than_fit_side_by_side(capsys):
    assert main(["compare", *SMALL, "--designs", ",".join(["dc"] * 1000)]) == 2
    err = capsys.readouterr().err
    assert "--designs" in err and len(err) < 200
