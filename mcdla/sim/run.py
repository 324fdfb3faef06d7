"""Running one simulation from user inputs: the glue between config, sim and metrics.

``simulate`` is the one entry point used by ``mcdla sim``, by sweeps and by tests:
it loads the topology, workload and training parameters (applying ``--set``
overrides by dotted key), runs one iteration and returns the result as a plain
mapping with the fields of CLI.md.

``--set`` keys are routed by their first component: ``workload.*`` to the workload
file, ``training.*`` to :class:`~mcdla.config.training.TrainingSpec`, ``topology.*``
(prefix stripped) and anything else (``device.*``, ``memory_node.*``, ``host.*``,
``links.*``, ...) to the topology file.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from mcdla.config.point import DEFAULT_POINT, POINT_KEYS, Batch, Parallel, Policy, check_option
from mcdla.config.schema import Where, build
from mcdla.errors import InputError

__all__ = ["simulate", "simulate_point", "simulate_from_args", "route_sets", "load_inputs", "check_point"]


def route_sets(sets: Sequence[tuple[str, Any]]):
    """Splits ``--set`` pairs into (workload pairs, training mapping, topology pairs)."""
    workload, training, topology = [], {}, []
    for key, value in sets:
        head, _, rest = key.partition(".")
        if head == "workload":
            workload.append((rest, value))
        elif head == "training":
            if not rest or "." in rest:
                raise InputError(f"expected training.KEY, got {key!r}", key="--set")
            training[rest] = value
        elif head == "topology" and rest:  # explicit: topology.device_memory=unbounded
            topology.append((rest, value))
        else:
            topology.append((key, value))
    return workload, training, topology


def load_inputs(topology: str, workload: str, sets: Sequence[tuple[str, Any]] = (), cache=None):
    """The validated topology, workload and training options of a run, not simulated.

    ``cache`` (a dict) lets a caller checking many points load each distinct topology
    and workload once.
    """
    from mcdla.config.training import TrainingSpec
    from mcdla.config.workload import load_workload
    from mcdla.hw.topology import load_topology

    cache = {} if cache is None else cache
    workload_sets, training_doc, topology_sets = route_sets(sets)
    key = ("topology", topology, repr(topology_sets))
    if key not in cache:
        cache[key] = load_topology(topology, topology_sets)
    wkey = ("workload", workload, repr(workload_sets))
    if wkey not in cache:
        cache[wkey] = load_workload(workload, workload_sets)
    training = build(TrainingSpec, training_doc, Where("--set", "training"))
    return cache[key], cache[wkey], training


def check_point(point: Mapping[str, Any], cache=None) -> None:
    """Raises the InputError a sweep point would meet, without simulating it."""
    args = {**DEFAULT_POINT, **{k: point[k] for k in POINT_KEYS if k in point}}
    check_option(Policy, args["policy"], "policy")
    check_option(Parallel, args["parallel"], "parallel")
    check_option(Batch, args["batch"], "batch")
    from mcdla.config.experiment import POINT_LABEL

    sets = [(k, v) for k, v in point.items() if k not in POINT_KEYS and k != POINT_LABEL]
    load_inputs(args["topology"], args["workload"], sets, cache)


def simulate(
    topology: str = DEFAULT_POINT["topology"],
    policy: str = DEFAULT_POINT["policy"],
    workload: str = DEFAULT_POINT["workload"],
    parallel: str = DEFAULT_POINT["parallel"],
    batch: int = DEFAULT_POINT["batch"],
    sets: Sequence[tuple[str, Any]] = (),
    *,
    trace: str | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """Simulates one training iteration and returns the CLI.md result mapping."""
    from mcdla.hw.budget import check_budget, estimate_work
    from mcdla.metrics.summary import summarize
    from mcdla.sim.training import Iteration

    if trace is not None:  # refuse an unwritable trace before spending the simulation
        from mcdla.io.trace import check_trace_path

        check_trace_path(trace)
    policy = check_option(Policy, policy, "policy")
    parallel = check_option(Parallel, parallel, "parallel")
    batch = check_option(Batch, batch, "batch")
    topo, work, training = load_inputs(topology, workload, sets)
    check_budget(estimate_work(topo, work), budget)  # before any simulation work
    started = time.perf_counter()
    iteration = Iteration(topo, work, training, policy=policy, parallel=parallel, batch=batch,
                          record_timeline=trace is not None)
    record = iteration.run()
    wall_s = time.perf_counter() - started
    result = summarize(iteration, record, wall_s)
    if trace is not None:
        from mcdla.io.trace import write_trace

        write_trace(trace, iteration, record)
    return result


def simulate_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """Runs a sweep point: the keys of POINT_KEYS plus any dotted ``--set`` key."""
    args = {k: point[k] for k in POINT_KEYS if k in point}
    sets = [(k, v) for k, v in point.items() if k not in POINT_KEYS]
    return simulate(**args, sets=sets)


def simulate_from_args(args) -> dict[str, Any]:
    """``mcdla sim``'s options -> :func:`simulate`."""
    from mcdla.config.loader import parse_set

    sets = [parse_set(item) for item in args.sets]
    return simulate(args.topology, args.policy, args.workload, args.parallel, args.batch, sets,
                    trace=args.trace, budget=getattr(args, "budget", None))
