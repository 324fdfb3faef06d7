"""A wheel install works from any folder: inputs ship as package data (issue: the house).

Builds a wheel of this checkout, installs it without dependencies into a virtual
environment that sees this interpreter's packages, and runs the commands a new user
types from an empty folder. The inner environment reads the running interpreter's own
site-packages (a user's venv, the system Python or CI's), not its base interpreter's:
``system_site_packages`` would see only the latter, where a venv's simpy is not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env=None, timeout=300):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}: {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    wheels = base / "dist"
    # No build isolation: setuptools of this interpreter builds it, no download.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
          "--wheel-dir", str(wheels), str(ROOT)], cwd=base)
    (wheel,) = wheels.glob("mcdla-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    # This interpreter's packages (dependencies) after the venv's own (the wheel): paths
    # in a .pth file, whose own .pth files (an editable mcdla's finder) are not run.
    inner = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base)
    outer = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(inner.stdout.strip()) / "outer_env.pth").write_text("\n".join(outer) + "\n")
    # pip of this interpreter installs into the venv: --prefix would miss the scripts dir.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
          "--force-reinstall", str(wheel)], cwd=base)
    work = base / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MCDLA_PATH")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return python, work, env


def test_wheel_carries_the_inputs(installed):
    python, work, env = installed
    out = _run([str(python), "-c", "import mcdla.config.loader as l; print(l.DATA_ROOT)"], work, env)
    data = Path(out.stdout.strip())
    assert ROOT not in data.parents, "the installed copy must not read the checkout"
    for rel in ("topologies/ring.yaml", "topologies/presets/hardware.yaml", "workloads/resnet34.yaml",
                "experiments/fig09.yaml"):
        assert (data / rel).is_file(), rel


def test_sim_sweep_and_reproduce_from_another_folder(installed):
    python, work, env = installed
    mcdla = str(python.parent / "mcdla")
    sim = _run([mcdla, "sim", "--format", "json"], work, env)
    assert '"iteration_time_s"' in sim.stdout
    _run([mcdla, "sweep", "fig09", "--jobs", "1", "--quiet", "--out", "sweep09"], work, env)
    assert (work / "sweep09" / "results.csv").is_file()
    _run([mcdla, "reproduce", "--only", "fig09", "--jobs", "1", "--quiet", "--out", "repro"], work, env)
    assert (work / "repro" / "docs" / "results.md").is_file()
    assert (work / "repro" / "plots").is_dir()


def test_search_path_finds_a_users_topology(installed, tmp_path):
    python, work, env = installed
    own = tmp_path / "mine" / "topologies"
    own.mkdir(parents=True)
    text = (ROOT / "topologies" / "single.yaml").read_text()
    (own / "solo.yaml").write_text(text)
    result = _run([str(python.parent / "mcdla"), "sim", "--topology", "solo", "--batch", "16", "--format", "json"],
                  work, {**env, "MCDLA_PATH": str(tmp_path / "mine")})
    assert '"iteration_time_s"' in result.stdout


def test_the_package_says_the_version_pyproject_installs():
    import tomllib
    from pathlib import Path

    import mcdla

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == mcdla.__version__
