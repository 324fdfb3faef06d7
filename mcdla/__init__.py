"""mcdla: a discrete-event simulator of memory-centric deep-learning training systems.

The package follows the data flow of a run, one way:
YAML (topologies/, workloads/, experiments/) -> ``mcdla.config`` (validated, typed)
-> ``mcdla.hw`` (pure models: compute time, graphs, closed forms)
-> ``mcdla.sim`` (SimPy processes: flows, collectives, offload, training)
-> ``mcdla.metrics`` (results) -> ``mcdla.io`` / ``mcdla.plots`` (files and figures).
"""

__version__ = "0.1.0"
