"""The house rules (issue: the house): imports flow one way, one entry point per run
below the CLI, --set keys name their target."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mcdla.cli.main import main

PACKAGE = Path(__file__).resolve().parents[1] / "mcdla"

# Data flows one way: YAML -> config -> hw -> sim -> metrics -> sweep/plots -> cli. A
# module may import its own layer and those below it, never one above. Utilities
# (errors, units, io.write, io.records) sit below everything.
# mcdla.run (one point from user inputs to its result) sits between metrics and the
# sweeps that call it; mcdla.api (the Python API: the commands as functions) between
# the sweeps and the CLI that calls it; mcdla.__main__ is the entry point, above everything.
LAYERS = {"config": 1, "hw": 2, "sim": 3, "metrics": 4, "io": 4, "run": 4.5, "sweep": 5, "plots": 5,
          "api": 5.5, "cli": 6, "__main__": 7}
BASE = {"mcdla", "mcdla.errors", "mcdla.units", "mcdla.io.write", "mcdla.io.records", "mcdla.registry",
        "mcdla.runfiles"}
# The one upward import allowed: the package's __getattr__ loads the API on first use
# (mcdla.simulate), so that ``import mcdla`` stays light (test_api.py checks it is lazy).
LAZY = {("mcdla", "mcdla.api")}


def _layer(module: str) -> float:
    if module in BASE or module.startswith("mcdla.data"):
        return 0
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mcdla"):
            yield node.module, node.lineno
            for alias in node.names:  # from mcdla import api: the module mcdla.api
                name = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / name.replace(".", "/")).with_suffix(".py").is_file():
                    yield name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mcdla"):
                    yield alias.name, node.lineno


def test_imports_flow_one_way():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = _layer(module)
        for target, line in _imports(path):
            if _layer(target) > own and (module.removesuffix(".__init__"), target) not in LAZY:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_core_has_no_import_cycle():
    # Within mcdla/sim and mcdla/hw no module imports, even inside a function, one that
    # imports it back, directly or through others: each has a place in one order.
    graph = {}
    for folder in ("sim", "hw"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            module = f"mcdla.{folder}.{path.stem}"
            graph[module] = {t for t, _ in _imports(path) if t.startswith(("mcdla.sim.", "mcdla.hw."))}
    state: dict[str, int] = {}

    def visit(module, trail):
        if state.get(module) == 1:
            return trail[trail.index(module):] + [module]
        if state.get(module) == 2 or module not in graph:
            return None
        state[module] = 1
        for target in sorted(graph[module]):
            cycle = visit(target, trail + [module])
            if cycle:
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        assert cycle is None, " -> ".join(cycle)


def test_sweeps_and_plots_do_not_import_each_other_both_ways():
    def imports(folder):
        return {t for p in (PACKAGE / folder).rglob("*.py") for t, _ in _imports(p)}
    assert not any(t.startswith("mcdla.plots") for t in imports("sweep"))


@pytest.mark.parametrize("key", ["foo.bar", "device_memory", "workload", "training"])
def test_a_set_key_must_name_its_target(key, capsys):
    assert main(["sim", "--set", f"{key}=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set" in err


def test_the_fig09_runner_is_the_commands_function(tmp_path, capsys):
    import json

    from mcdla.sweep.runners import collective_point

    point = {"op": "all_reduce", "size": "8 MB", "ring": 8}
    via_runner = collective_point(point)
    out = tmp_path / "c.json"
    assert main(["collective", "--op", "all_reduce", "--size", "8 MB", "--ring", "8",
                 "--format", "json", "--output", str(out)]) == 0
    via_cli = json.loads(out.read_text())
    for key in ("time_s", "busbw_Bps", "flows", "events"):
        assert via_cli[key] == via_runner[key]
    with pytest.raises(Exception, match="no option --bogus"):
        collective_point({**point, "bogus": 1})


def test_the_extending_guides_topology_loads_and_counts(tmp_path, monkeypatch):
    import re

    from mcdla.hw.topology import load_topology

    text = (PACKAGE.parent / "docs" / "extending.md").read_text()
    yaml_text = re.search(r"```yaml\n(name: ring4.*?)```", text, re.S).group(1)
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "ring4.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)  # found by name in ./topologies/
    topology = load_topology("ring4")
    assert topology.collective_bw_Bps == pytest.approx(50e9)
    assert topology.virtualization_bw_Bps == pytest.approx(50e9)
