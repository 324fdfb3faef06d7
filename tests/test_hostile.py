"""Hostile input (issue: hardened against hostile files): every case refused as a
one-line input error, quickly, naming the file and key, echoing no huge value.

Cases of the sweep and of output writing live in test_hostile_sweep.py and
test_hostile_output.py; this file holds the input side: YAML limits, runner names,
topology and workload checks, and the work budget.
"""

from __future__ import annotations


import pytest
import yaml

from mcdla.cli.main import main
from mcdla.config.experiment import load_experiment
from mcdla.config.loader import DATA_ROOT, MAX_YAML_DEPTH, parse_set, read_yaml
from mcdla.hw.workload import load_workload
from mcdla.errors import InputError
from mcdla.hw.topology import load_topology


def _laughs(levels: int = 9, width: int = 9) -> list[str]:
    """Billion-laughs lines: level i lists the previous level ``width`` times."""
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return lines


def _refused(call, match: str | None) -> str:
    with pytest.raises(InputError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 500
    return message


def _doc(folder: str, name: str) -> dict:
    return yaml.safe_load((DATA_ROOT / folder / f"{name}.yaml").read_text())


def _write(tmp_path, name: str, doc) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


# -- YAML limits --------------------------------------------------------------------

def test_alias_bomb_in_a_topology_is_refused_at_once(tmp_path):
    text = (DATA_ROOT / "topologies" / "ring.yaml").read_text() + "\n".join(_laughs()) + "\n"
    path = _write(tmp_path, "bomb.yaml", text)
    _refused(lambda: load_topology(path), "expands to more than")


def test_alias_bomb_through_an_experiment_base(tmp_path):
    text = "name: bomb\nkind: sim\nfigure: fig13\n" + "\n".join(_laughs()) + "\nbase: {workload: *l9}\n"
    path = _write(tmp_path, "bomb.yaml", text)
    _refused(lambda: load_experiment(path), "expands to more than")


def test_alias_bomb_in_a_layers_inputs(tmp_path):
    text = ("name: w\ninput: {channels: 3, height: 8, width: 8}\n" + "\n".join(_laughs()) +
            "\nlayers:\n  - {name: a, kind: relu, inputs: *l9}\n")
    path = _write(tmp_path, "bomb.yaml", text)
    _refused(lambda: load_workload(path), "expands to more than")


def test_alias_bomb_in_a_set_value():
    value = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else '"x"'] * 8) + "]"
                            for i in range(8)) + "]"
    assert len(value) < 400
    _refused(lambda: parse_set(f"device.hbm_bw={value}"), "expands to more than")


def test_nesting_past_mcdlas_limit_is_refused_by_it(tmp_path):
    # Past MAX_YAML_DEPTH and far below any YAML library's own cap: mcdla's refusal.
    path = _write(tmp_path, "deep.yaml", "a: " + "[" * 500 + "]" * 500 + "\n")
    _refused(lambda: read_yaml(path), f"nested deeper than {MAX_YAML_DEPTH} levels")


@pytest.mark.parametrize("depth", [500, 10_000, 30_000])
def test_deep_nesting_is_refused_without_recursion(tmp_path, depth):
    # Deeper documents may be refused by the YAML library first (PyYAML 6.0.4 has a cap
    # of its own): whoever refuses, mcdla's behaviour is one short InputError naming the
    # file, quickly, with no RecursionError. Its wording is not asserted.
    path = _write(tmp_path, "deep.yaml", "a: " + "[" * depth + "]" * depth + "\n")
    assert str(path) in _refused(lambda: read_yaml(path), None)


def test_deep_nesting_through_the_cli_exits_2(tmp_path, capsys):
    path = _write(tmp_path, "deep.yaml", "name: x\nlinks: " + "{a: " * 30_000 + "1" + "}" * 30_000 + "\n")
    assert main(["sim", "--topology", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deep.yaml" in err


def test_duplicate_keys_are_refused(tmp_path):
    path = _write(tmp_path, "dup.yaml", "name: a\ndevices: 8\nname: b\n")
    message = _refused(lambda: read_yaml(path), "duplicate key")
    assert "line 3" in message and "'name'" in message


def test_merge_keys_are_not_duplicates(tmp_path):
    path = _write(tmp_path, "merge.yaml", "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert read_yaml(path)["other"] == {"x": 1, "y": 2}


def test_a_huge_value_is_not_echoed(tmp_path, capsys):
    assert main(["sim", "--set", "device.hbm_bw=" + "9" * 100_000 + " zettabytes"]) == 2
    err = capsys.readouterr().err
    assert len(err) < 600 and err.count("\n") == 1


def test_a_huge_key_is_not_echoed(capsys):
    assert main(["sim", "--set", "device." + "k" * 100_000 + "=1"]) == 2
    err = capsys.readouterr().err
    assert len(err) < 600 and err.count("\n") == 1


# -- runners are registered names -----------------------------------------------------

@pytest.mark.parametrize("runner", ["this:x", "os:system", "mcdla.cli.main:main"])
def test_an_experiment_cannot_import_a_module(tmp_path, runner):
    path = _write(tmp_path, "evil.yaml", f"name: evil\nkind: sim\nfigure: fig13\nrunner: '{runner}'\n"
                  "base: {workload: alexnet}\n")
    message = _refused(lambda: load_experiment(path), "unknown runner")
    assert "registered: " in message and "sim" in message


def test_a_task_naming_an_unregistered_runner_is_refused():
    from mcdla.sweep.runners import execute

    record = execute("this:x", "k", {})
    assert record["status"] == "error" and record["error_kind"] == "input"
    assert "not registered" in record["error"]


# -- topology checks -----------------------------------------------------------------

def test_rings_covering_some_devices_are_refused(tmp_path):
    doc = _doc("topologies", "dc")
    doc["rings"] = [["D0", "D1", "D2", "D3"]]
    path = _write(tmp_path, "part.yaml", doc)
    _refused(lambda: load_topology(path), r"rings\[0\]: a collective ring must visit every device")


def test_no_rings_on_eight_devices_is_an_input_error(tmp_path):
    doc = _doc("topologies", "dc")
    doc["rings"] = []
    path = _write(tmp_path, "none.yaml", doc)
    _refused(lambda: load_topology(path), "8 devices need at least one collective ring")


def test_a_ring_returning_to_a_relay_is_refused(tmp_path):
    # M0 -> M7 -> M0 visits no device between: the ring's data crosses the pair for nothing.
    doc = _doc("topologies", "star")
    doc["rings"] = [["D0", "M0", "M7", "M0", "M1", "D1", "D2", "D3", "D4", "D5", "D6", "D7"]]
    path = _write(tmp_path, "twice.yaml", doc)
    _refused(lambda: load_topology(path), r"rings\[0\]\[3\]: 'M0' appears twice in the ring with no device")


def test_a_tiny_bandwidth_is_refused_at_load():
    _refused(lambda: load_topology("ring", [("links.nvlink.bw", 1e-300)]), "below any physical link")


def test_absurdly_many_parallel_links_are_refused(tmp_path):
    doc = _doc("topologies", "ring")
    doc["connections"][0][3] = 10**9
    path = _write(tmp_path, "links.yaml", doc)
    _refused(lambda: load_topology(path), "parallel links is more than the supported maximum")


def test_more_nodes_than_the_supported_maximum_are_refused_before_building(tmp_path):
    from mcdla.hw.budget import node_cap

    # The cap is what the work budget's memory holds (issue 27): the 100,000-GPU presets
    # fit in full (h100_100k: 121,048 graph nodes; gb200_nvl72_100k: 165,776 with its sockets).
    assert node_cap() >= 165_776
    doc = _doc("topologies", "ring")
    doc["devices"] = node_cap() + 1
    path = _write(tmp_path, "huge.yaml", doc)
    _refused(lambda: load_topology(path), rf"huge\.yaml: devices: {node_cap() + 9:,} nodes is more than the work "
             rf"budget's memory holds: {node_cap():,} nodes \(16 GiB at 96 kB a node\); raise it with "
             rf"MCDLA_MEMORY_BUDGET")


def test_a_collective_ring_past_the_maximum_is_refused():
    from mcdla.run import max_ring, simulate_collective

    _refused(lambda: simulate_collective("all_reduce", "1 MB", ring=max_ring() + 1),
             f"is more than the supported maximum of {max_ring()} devices")


# -- workload checks -----------------------------------------------------------------

def test_a_workload_without_layers_is_an_input_error(tmp_path):
    path = _write(tmp_path, "empty.yaml", "name: e\ninput: {channels: 3, height: 8, width: 8}\nlayers: []\n")
    _refused(lambda: load_workload(path), "layers: a workload needs at least one layer")


def test_an_add_of_one_input_twice_is_an_input_error(tmp_path):
    path = _write(tmp_path, "add.yaml", "name: e\ninput: {channels: 3, height: 8, width: 8}\nlayers:\n"
                  "  - {name: r, kind: relu}\n  - {kind: add, inputs: [r, r]}\n")
    _refused(lambda: load_workload(path), "names 'r' twice")


def test_a_billion_repeats_are_refused(tmp_path):
    doc = _doc("workloads", "resnet34")
    text = (DATA_ROOT / "workloads" / "resnet34.yaml").read_text()
    assert "repeat:" in text
    path = _write(tmp_path, "rep.yaml", text.replace("repeat: 3", "repeat: 1000000000", 1))
    assert doc  # the shipped file parses
    _refused(lambda: load_workload(path), "repeat")


def test_ten_million_timesteps_are_refused():
    _refused(lambda: load_workload("rnn_gru", [("timesteps", 10_000_000)]), "timesteps")


def test_a_hundred_thousand_layers_are_refused(tmp_path, monkeypatch):
    text = "name: e\ninput: {channels: 3, height: 8, width: 8}\nlayers:\n" + "  - {kind: relu}\n" * 100_000
    path = _write(tmp_path, "many.yaml", text)
    # Refused at the limit, not after building all of them: the builder adds at most one
    # layer past the limit (the one it refuses).
    from mcdla.config.workload import MAX_LAYERS
    from mcdla.hw import workload as hw_workload

    added = []
    real_add = hw_workload._Builder._add
    monkeypatch.setattr(hw_workload._Builder, "_add", lambda self, draft: added.append(1) or real_add(self, draft))
    _refused(lambda: load_workload(path), f"more than {MAX_LAYERS} layers")
    assert len(added) == MAX_LAYERS + 1


# -- work budget ---------------------------------------------------------------------

def _big_ring(tmp_path, n: int) -> str:
    lines = ["name: big", "description: ring", "device: table2", "links: {nvlink: nvlink2}",
             f"devices: {n}", "connections:"]
    lines += [f"  - [D{i}, D{(i + 1) % n}, nvlink]" for i in range(n)]
    lines += ["rings:", "  - [" + ", ".join(f"D{i}" for i in range(n)) + "]"]
    return _write(tmp_path, "big.yaml", "\n".join(lines) + "\n")


def test_a_4096_device_model_parallel_gru_is_refused_before_it_runs(tmp_path, capsys, monkeypatch):
    # Rank by rank (--exact) it would run for many minutes; with rank symmetry, one
    # class of devices, it is cheap and runs (tests/test_symmetry.py). The budget
    # refuses it before the iteration runs.
    from mcdla.sim import training

    def never(*args, **kwargs):
        raise AssertionError("an iteration ran past the work budget")

    monkeypatch.setattr(training.Iteration, "run", never)
    path = _big_ring(tmp_path, 4096)
    assert main(["sim", "--topology", path, "--workload", "rnn_gru", "--parallel", "model",
                 "--batch", "4096", "--exact"]) == 2
    err = capsys.readouterr().err
    assert "work budget" in err and "--budget" in err


def test_the_budget_can_be_raised(tmp_path, monkeypatch):
    from mcdla.hw.budget import check_budget, estimate_work

    topo = load_topology(_big_ring(tmp_path, 64))
    work = load_workload("alexnet")
    estimate = estimate_work(topo, work)
    with pytest.raises(InputError, match="work budget"):
        check_budget(estimate, budget=estimate.work / 2)
    check_budget(estimate, budget=estimate.work * 2)
    monkeypatch.setenv("MCDLA_WORK_BUDGET", str(estimate.work / 2))
    with pytest.raises(InputError, match="work budget"):
        check_budget(estimate)
