"""The Python API (mcdla/api.py): the commands as functions, typed results whose
to_dict() is the command's JSON, the command's errors, a light ``import mcdla``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mcdla
from mcdla.cli.main import main
from mcdla.errors import InputError, InvariantError

ROOT = Path(__file__).resolve().parents[1]


def _cli_json(capsys, *argv):
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _cli_error(capsys, *argv) -> str:
    """The message of a command refused with exit 2, without its ``mcdla CMD: error:`` prefix."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    return err.split(": error: ", 1)[1].rstrip("\n")


def _without_wall(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "wall_s"}


def test_import_mcdla_loads_no_simulator_pandas_or_matplotlib():
    code = ("import sys, mcdla\n"
            "heavy = ('simpy', 'pandas', 'matplotlib', 'networkx', 'numpy')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "mcdla.SimResult\n"  # the API's types: still no simulator
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_the_api_loads_the_validation_machinery_only_when_asked():
    code = ("import sys, mcdla.api\n"
            "print('mcdla.sweep.validate' in sys.modules)\n"
            "print(mcdla.api.ValidationOutcome.__name__, 'mcdla.sweep.validate' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["False", "ValidationOutcome True"]


def test_simulate_is_mcdla_sims_json_as_typed_fields(capsys):
    cli = _cli_json(capsys, "sim", "--set", "training.lookahead=2", "--batch", "256")
    result = mcdla.simulate(topology="ring", workload="resnet34", batch=256, set={"training.lookahead": 2})
    assert isinstance(result, mcdla.SimResult)
    record = result.to_dict()
    assert list(record) == list(cli)  # the same keys, in the JSON's order
    assert _without_wall(record) == _without_wall(cli)
    assert result.iteration_time_s == cli["iteration_time_s"] and result.busy_s == cli["busy_s"]
    assert main(["sim", "--set", "training.lookahead=2", "--batch", "256"]) == 0
    assert f"throughput      {result.samples_per_s:,.0f} samples/s\n" in capsys.readouterr().out  # the table's
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.batch = 1


def test_set_takes_a_mapping_pairs_or_the_clis_strings():
    by_map = mcdla.simulate(batch=64, set={"device.hbm_bw": "450 GB/s", "training.virtualization": False})
    by_text = mcdla.simulate(batch=64, set=["device.hbm_bw=450 GB/s", "training.virtualization=false"])
    by_pairs = mcdla.simulate(batch=64, set=[("device.hbm_bw", "450 GB/s"), ("training.virtualization", False)])
    default = mcdla.simulate(batch=64)
    assert by_map.iteration_time_s == by_text.iteration_time_s == by_pairs.iteration_time_s
    assert by_map.iteration_time_s > default.iteration_time_s  # half the HBM bandwidth: slower
    assert by_map.remote_mem_bytes == 0  # nothing offloaded: the override was applied


@pytest.mark.parametrize("argv, call", [
    (["sim", "--batch", "0"], lambda: mcdla.simulate(batch=0)),
    (["sim", "--set", "foo.bar=1"], lambda: mcdla.simulate(set={"foo.bar": 1})),
    (["sim", "--set", "training.lookahead"], lambda: mcdla.simulate(set=["training.lookahead"])),
    (["sim", "--workload", "no_such_net"], lambda: mcdla.simulate(workload="no_such_net")),
    (["collective", "--op", "all_reduce", "--size", "-1 MB", "--ring", "4"],
     lambda: mcdla.collective(op="all_reduce", size="-1 MB", ring=4)),
    (["collective", "--op", "all_reduce", "--size", "1 MB", "--topology", "dc", "--link-bw", "1 GB/s"],
     lambda: mcdla.collective(op="all_reduce", size="1 MB", topology="dc", link_bw="1 GB/s")),
    (["plan", "--workload", "gpt2", "--topology", "ring", "--batch", "8", "--time-budget", "3 s"],
     lambda: mcdla.plan(workload="gpt2", topology="ring", batch=8, time_budget="3 s")),
    (["plan", "--workload", "gpt2", "--topology", "ring", "--batch", "8", "--devices", "16"],
     lambda: mcdla.plan(workload="gpt2", topology="ring", batch=8, devices=16)),
    (["sweep", "fig09", "--scheduler", "tcp://x:1"], lambda: mcdla.sweep("fig09", scheduler="tcp://x:1")),
    (["sweep", "no_such_experiment"], lambda: mcdla.sweep("no_such_experiment")),
    (["validate", "--table", "no_such_table"], lambda: mcdla.validate(table="no_such_table")),
])
def test_a_bad_argument_raises_the_input_error_the_cli_prints(argv, call, capsys):
    message = _cli_error(capsys, *argv)
    with pytest.raises(InputError) as raised:
        call()
    assert str(raised.value) == message


def test_api_only_arguments_are_checked_by_the_option_they_mirror():
    with pytest.raises(InputError, match="--workload"):
        mcdla.plan(topology="ring", batch=8)  # neither a workload nor a family
    with pytest.raises(InputError, match="--set"):
        mcdla.simulate(set=[42])
    with pytest.raises(InputError, match="--simulate"):
        mcdla.plan(workload="gpt2", topology="ring", batch=8, simulate=0)


@pytest.mark.parametrize("argv, kwargs, protocol", [
    (["--ring", "8"], {"ring": 8}, False),
    (["--topology", "dgx1v"], {"topology": "dgx1v"}, True),  # NCCL's algorithm names its protocol
])
def test_collective_is_mcdla_collectives_json(argv, kwargs, protocol, capsys):
    cli = _cli_json(capsys, "collective", "--op", "all_reduce", "--size", "8 MB", *argv)
    result = mcdla.collective(op="all_reduce", size="8 MB", **kwargs)
    assert isinstance(result, mcdla.CollectiveResult)
    assert list(result.to_dict()) == list(cli)
    assert _without_wall(result.to_dict()) == _without_wall(cli)
    assert (result.protocol is not None) == protocol == ("protocol" in cli)
    assert result.busbw_Bps == cli["busbw_Bps"]


def test_sweep_returns_the_results_table_as_a_dataframe(tmp_path):
    import pandas as pd

    table = mcdla.sweep("fig09", out=tmp_path / "fig09", jobs=1, quiet=True)
    assert isinstance(table, pd.DataFrame)
    assert len(table) == 16  # 4 collectives x 4 ring sizes
    assert set(table["op"]) == {"all_reduce", "all_gather", "reduce_scatter", "broadcast"}
    assert sorted(set(table["ring"])) == [2, 4, 8, 16]
    assert (table["status"] == "ok").all() and (table["time_s"] > 0).all()
    assert table.attrs["sweep"]["points"] == 16 and table.attrs["sweep"]["ran"] == 16
    # Resumable as the command: run again, nothing runs, the same table.
    again = mcdla.sweep("fig09", out=tmp_path / "fig09", jobs=1, quiet=True)
    assert again.attrs["sweep"]["skipped"] == 16
    assert again["time_s"].tolist() == table["time_s"].tolist()


def test_mcdla_sweep_is_callable_before_and_after_its_package_is_imported():
    code = ("import mcdla\n"
            "first = mcdla.sweep\n"
            "import mcdla.sweep.engine\n"
            "print(callable(first), callable(mcdla.sweep), mcdla.sweep.engine.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "mcdla.sweep.engine"]


# A two-layer GPT-2: a plan of few candidates, quick to simulate.
TINY = {"workload.layers": 2}


def test_plan_returns_ranked_candidates_as_the_command_prints_them(capsys):
    rows = mcdla.plan(workload="gpt2", topology="ring", batch=8, set=TINY, simulate=3)
    assert all(isinstance(r, mcdla.PlanCandidate) for r in rows)
    feasible = [r for r in rows if r.feasible]
    assert len(feasible) == 3 and rows[:3] == feasible  # the simulated feasible ones first
    times = [r.iteration_time_s for r in feasible]
    assert times == sorted(times)  # best first
    assert all(r.iteration_time_s is None and "iteration_time_s" not in r.to_dict() for r in rows[3:])
    assert feasible[0].label.startswith(f"tp{feasible[0].tensor_parallel} ")
    cli = _cli_json(capsys, "plan", "--workload", "gpt2", "--topology", "ring", "--batch", "8", "--quiet",
                    "--set", "workload.layers=2", "--simulate", "3")
    assert [r.to_dict() for r in feasible] == cli


def test_plan_largest_returns_each_member_of_the_family(tmp_path, capsys):
    family = tmp_path / "one.yaml"
    family.write_text("name: one\nworkload: gpt2\nmembers:\n  - {name: tiny, layers: 2}\n")
    members = mcdla.plan(largest=str(family), topology="ring", batch=8, time_budget="1 s", simulate=1)
    assert [type(m).__name__ for m in members] == ["FamilyMember"]
    tiny = members[0]
    assert tiny.member == "tiny" and tiny.trains and tiny.iteration_time_s < 1.0 and tiny.label
    cli = _cli_json(capsys, "plan", "--largest", str(family), "--topology", "ring", "--batch", "8", "--quiet",
                    "--time-budget", "1 s", "--simulate", "1")
    assert [m.to_dict() for m in members] == cli


def test_validate_is_mcdla_validates_json(capsys):
    outcomes = mcdla.validate(table="nccl_dgx1v", reduced=True)
    assert outcomes and all(isinstance(o, mcdla.ValidationOutcome) for o in outcomes)
    assert {o.verdict for o in outcomes} <= {"pass", "miss", "error"}
    cli = _cli_json(capsys, "validate", "--table", "nccl_dgx1v", "--reduced")
    assert [o.to_dict() for o in outcomes] == cli

def test_a_record_key_without_a_field_is_a_bug_not_a_silent_loss():
    record = mcdla.collective(op="broadcast", size="1 MB", ring=2).to_dict()
    assert mcdla.CollectiveResult.from_dict(record).to_dict() == record
    with pytest.raises(InvariantError, match="new_key"):
        mcdla.CollectiveResult.from_dict({**record, "new_key": 1})


def test_the_readmes_python_example_runs(tmp_path):
    import os
    import re

    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Python API\n.*?```python\n(.*?)```", text, re.S).group(1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout; its sweep writes under tmp_path
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "samples/s" in out.stdout and (tmp_path / "results" / "fig09" / "results.csv").is_file()
