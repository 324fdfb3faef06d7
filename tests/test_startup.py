"""The command line's start-up: a command imports its own module only, ``mcdla --help``
none of them (docs/performance.md, start-up)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from mcdla.cli.main import COMMANDS, command_of, main

# Runs ARGV through main() in a fresh interpreter and prints the mcdla and third-party
# modules it imported, as JSON on the last line of stderr (stdout is the command's).
PROBE = """
import json, sys
from mcdla.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('mcdla', 'simpy', 'networkx', 'yaml'))),
      file=sys.stderr)
"""


def imported(*argv: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], check=True, capture_output=True, text=True)
    return set(json.loads(done.stderr.splitlines()[-1]))


def test_help_imports_no_command_and_nothing_to_simulate_or_read():
    assert imported("--help") == {"mcdla", "mcdla.cli", "mcdla.cli.main", "mcdla.version"}


def test_a_command_imports_its_own_module_only():
    modules = imported("workloads", "--workload", "alexnet", "--format", "json")
    assert {m for m in modules if m.startswith("mcdla.cli.")} == {"mcdla.cli.main", "mcdla.cli.output",
                                                                  "mcdla.cli.workloads"}
    assert not {m for m in modules if m.split(".")[0] in ("simpy", "networkx") or m.startswith("mcdla.sim")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_registers_its_options(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mcdla {command} ") and "--" in out.partition("options:")[2]


def test_help_lists_every_command_in_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    commands = out.partition("COMMAND\n")[2].partition("options:")[0]
    listed = re.findall(r"^    (\S+)", commands, flags=re.MULTILINE)  # a wrapped line is indented further
    assert listed == ["sim", "serve", "compare", "collective", "workloads", "import", "topologies", "layers",
                      "sweep", "plot", "reproduce", "validate", "plan"]


@pytest.mark.parametrize("argv, command", [
    ([], None), (["--help"], None), (["--version"], None), (["sim"], "sim"),
    (["workloads", "--format", "json"], "workloads"), (["-h", "sim"], "sim"), (["bogus"], "bogus"),
])
def test_the_command_is_the_first_word_not_an_option(argv, command):
    assert command_of(argv) == command


def test_an_unknown_command_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bogus"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'bogus'" in err
