"""mcdla: a discrete-event simulator of memory-centric deep-learning training systems.

The package follows the data flow of a run, one way:
YAML (topologies/, workloads/, experiments/) -> ``mcdla.config`` (validated, typed)
-> ``mcdla.hw`` (pure models: compute time, graphs, closed forms)
-> ``mcdla.sim`` (SimPy processes: flows, collectives, offload, training)
-> ``mcdla.metrics`` (results) -> ``mcdla.io`` / ``mcdla.plots`` (files and figures).

The Python API (:mod:`mcdla.api`): ``mcdla.simulate``, ``mcdla.collective``,
``mcdla.serve``, ``mcdla.sweep``, ``mcdla.plan`` and ``mcdla.validate``, and their result types. They are loaded on first
use, so ``import mcdla`` stays light (no SimPy, pandas or matplotlib).
"""

from mcdla.version import __version__  # noqa: F401  (mcdla.__version__)

# The API's names, resolved by __getattr__ from mcdla.api when first used.
_API = ("simulate", "collective", "serve", "sweep", "plan", "validate", "SimResult", "CollectiveResult",
        "ServeResult", "PlanCandidate", "FamilyMember", "ValidationOutcome")


def __getattr__(name: str):
    if name in _API:
        from mcdla import api  # the one upward import: lazy, so no import cycle and a light package

        return getattr(api, name)
    raise AttributeError(f"module 'mcdla' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_API})
