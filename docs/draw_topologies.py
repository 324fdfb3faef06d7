"""Regenerates docs/img/topology_<name>.png for every shipped topology.

Run from the project root: ``python docs/draw_topologies.py``.
"""

from pathlib import Path

from mcdla.config.loader import shipped
from mcdla.hw.topology import load_topology
from mcdla.plots.topology import draw_topology

OUT = Path(__file__).resolve().parent / "img"

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name in shipped("topologies"):
        draw_topology(load_topology(name), OUT / f"topology_{name}.png")
        print(f"wrote docs/img/topology_{name}.png")
