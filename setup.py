"""Packaging glue pyproject.toml cannot say: the shipped inputs live at the top of the
checkout (topologies/, workloads/, experiments/, families/, validation/, executions/), where users look,
and a wheel carries them inside the package as ``mcdla/data/<folder>/``, where an install
finds them from any folder (mcdla.config.loader.DATA_ROOT)."""

from setuptools import find_packages, setup

DATA = ("topologies", "workloads", "experiments", "families", "validation", "executions")

setup(
    packages=find_packages(include=["mcdla*"]) + [f"mcdla.data.{folder}" for folder in DATA],
    package_dir={f"mcdla.data.{folder}": folder for folder in DATA},
    package_data={f"mcdla.data.{folder}": ["*.yaml", "**/*.yaml"] for folder in DATA},
)
