"""Experiment YAMLs: expansion order, validation, and the shipped paper experiments."""

from __future__ import annotations

import pytest

from mcdla.cli.main import main
from mcdla.config.experiment import load_experiment, point_key
from mcdla.errors import InputError

SHIPPED = ("fig09", "fig11_13", "fig14", "pcie4", "scalability", "power")


def write(tmp_path, text: str, name: str = "exp.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
name: t
kind: sim
figure: fig13
base: {batch: 256}
axes:
  parallel: [data, model]
  workload: [alexnet, vgg_e]
points:
  - {topology: dc}
  - {topology: ring, policy: local}
"""


def test_axes_first_slowest_and_points_innermost(tmp_path):
    exp = load_experiment(str(write(tmp_path, GOOD)))
    order = [(p["parallel"], p["workload"], p["topology"]) for p in exp.points]
    assert order[:3] == [("data", "alexnet", "dc"), ("data", "alexnet", "ring"), ("data", "vgg_e", "dc")]
    assert len(order) == 8 and order[-1] == ("model", "vgg_e", "ring")


def test_defaults_base_and_point_precedence(tmp_path):
    exp = load_experiment(str(write(tmp_path, GOOD)))
    assert exp.points[0]["batch"] == 256 and exp.points[0]["policy"] == "bw_aware"
    assert exp.points[1]["policy"] == "local"
    assert exp.columns[:5] == ("topology", "policy", "workload", "parallel", "batch")


def test_point_key_is_stable_and_order_free():
    a = point_key("sim", "m:f", {"batch": 1, "topology": "dc"})
    assert a == point_key("sim", "m:f", {"topology": "dc", "batch": 1})
    assert a != point_key("sim", "other:f", {"topology": "dc", "batch": 1})


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiments_load(name):
    exp = load_experiment(name)
    assert exp.name == name and exp.points


def test_fig11_13_is_six_designs_not_a_product():
    exp = load_experiment("fig11_13")
    designs = {(p["topology"], p["policy"]) for p in exp.points}
    assert len(designs) == 6 and len(exp.points) == 6 * 8 * 2


BAD = [
    ("unknown top-level key", "name: t\nkind: sim\nfigure: fig13\nbogus: 1\n", "bogus"),
    ("unknown point key", "name: t\nkind: sim\nfigure: fig13\nbase: {topolgy: dc}\n", "base.topolgy"),
    ("empty axis", "name: t\nkind: sim\nfigure: fig13\naxes: {batch: []}\n", "axes.batch"),
    ("wrong type", "name: t\nkind: sim\nfigure: fig13\naxes: {batch: [64, many]}\n", "axes.batch"),
    ("bad policy", "name: t\nkind: sim\nfigure: fig13\npoints: [{policy: fastest}]\n", r"points\[0\].policy"),
    ("unknown figure", "name: t\nkind: sim\nfigure: fig99\n", "figure"),
    ("unknown kind", "name: t\nkind: magic\nfigure: fig13\n", "kind"),
    ("missing name", "kind: sim\nfigure: fig13\n", "name"),
    ("mapping value", "name: t\nkind: sim\nfigure: fig13\nbase: {device.hbm_bw: {a: 1}}\n", "device.hbm_bw"),
    ("dotted key in collective", "name: t\nkind: collective\nfigure: fig09\nbase: {a.b: 1}\n", "a.b"),
    ("repeated point", "name: t\nkind: sim\nfigure: fig13\npoints: [{batch: 1}, {batch: 1}]\n", "repeats"),
    ("bad name", "name: ../up\nkind: sim\nfigure: fig13\n", "name"),
    ("bad runner", "name: t\nkind: sim\nfigure: fig13\nrunner: not a name\n", "runner"),
]


@pytest.mark.parametrize("label,text,key", BAD, ids=[b[0] for b in BAD])
def test_bad_experiments_name_the_file_and_key(tmp_path, label, text, key):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=key) as info:
        load_experiment(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("label,text,key", BAD[:4], ids=[b[0] for b in BAD[:4]])
def test_bad_experiment_exits_2_and_writes_nothing(tmp_path, capsys, label, text, key):
    path = write(tmp_path, text)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "error" in err and key.split("\\")[0].split(".")[0] in err


def test_unknown_workload_name_stops_before_writing(tmp_path, capsys):
    path = write(tmp_path, "name: t\nkind: sim\nfigure: fig13\naxes: {workload: [alexnet, nosuchnet]}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    assert not out.exists()
    assert "nosuchnet" in capsys.readouterr().err


def test_a_points_declared_budget_bounds_its_run_and_is_not_a_set_key(tmp_path):
    """``budget`` (channel updates, as ``mcdla sim --budget``) is the experiment author's
    declared work budget: read as a number (YAML's ``1e3`` is a string), handed to the
    run, never a ``--set`` key; a budget that is not a positive number is refused."""
    from mcdla.run import simulate_point

    exp = load_experiment(str(write(tmp_path, "name: t\nkind: sim\nfigure: fig13\n"
                                              "points:\n  - {topology: dc, workload: alexnet, batch: 16, budget: 1e3}\n")))
    point = {k: v for k, v in exp.points[0].items() if k != "label"}
    with pytest.raises(InputError, match="over the work budget of 1e\\+03"):
        simulate_point(point)
    assert simulate_point({**point, "budget": 1e12})["iteration_time_s"] > 0
    with pytest.raises(InputError, match="budget"):
        load_experiment(str(write(tmp_path, "name: t\nkind: sim\nfigure: fig13\n"
                                            "points:\n  - {topology: dc, budget: -1}\n", "bad.yaml")))


def test_the_sweeps_check_loads_each_topology_once_and_holds_one_at_a_time(tmp_path, monkeypatch):
    """Points alternating between two topologies: each is loaded once (the points visited
    by topology), and the check never holds two (its memory is the largest one's)."""
    import mcdla.hw.topology as topology_module
    from mcdla.run import OneTopology
    from mcdla.sweep.engine import _check_points

    loads, held = [], []
    real_load = topology_module.load_topology
    real_set = OneTopology.__setitem__

    def load(name, sets=(), **kwargs):
        loads.append(name)
        return real_load(name, sets, **kwargs)

    def setitem(self, key, value):
        real_set(self, key, value)
        held.append(sum(1 for k in self if k[0] == "topology"))

    monkeypatch.setattr(topology_module, "load_topology", load)
    monkeypatch.setattr(OneTopology, "__setitem__", setitem)
    text = ("name: t\nkind: sim\nfigure: fig13\npoints:\n"
            + "".join(f"  - {{topology: {t}, workload: alexnet, batch: {b}}}\n"
                      for t, b in (("dc", 16), ("ring", 16), ("dc", 32), ("ring", 32))))
    _check_points(load_experiment(str(write(tmp_path, text))))
    assert sorted(loads) == ["dc", "ring"] and max(held) == 1
