"""Running one simulation from user inputs: the glue between config, sim and metrics.

``simulate`` is the one entry point used by ``mcdla sim`` (through :mod:`mcdla.api`),
by sweeps and by tests:
it loads the topology, workload and training parameters (applying ``--set``
overrides by dotted key), runs one iteration and returns the result as a plain
mapping with the fields README.md lists.

``--set`` keys name their target by their first component: ``workload.*`` the
workload file, ``training.*`` :class:`~mcdla.config.training.TrainingSpec`,
``topology.*`` (prefix stripped) the topology file, and the hardware sections of the
topology file directly (``device.*``, ``memory_node.*``, ``host.*``, ``links.*``).
Any other key is an input error naming the valid prefixes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

from mcdla.config.execution import EXECUTION_KEYS
from mcdla.config.point import DEFAULT_POINT, POINT_KEYS, Batch, Parallel, Policy, check_option
from mcdla.config.schema import BlockSize, Where, build, convert
from mcdla.errors import InputError, excerpt

__all__ = ["simulate", "simulate_collective", "simulate_point", "topology_key", "OneTopology", "route_sets",
           "load_inputs", "max_ring", "check_point", "parse_quantity", "serve", "serve_point", "route_serving_sets"]


# Where each --set key goes, by its first component: the run's three inputs. The
# hardware sections of a topology file and its generator's parameters are named
# directly (device.hbm_bw, generator.devices), anything else of the topology file
# through topology.* (topology.device_memory).
HARDWARE_PREFIXES = ("device", "memory_node", "host", "links", "fabric_switch", "spine_switch", "generator", "nvme")
SET_PREFIXES = ("workload", "training", "execution", "topology", *HARDWARE_PREFIXES)


def route_sets(sets: Sequence[tuple[str, Any]]):
    """Splits ``--set`` pairs into (workload pairs, execution mapping, topology pairs);
    the execution mapping holds the training options under ``training``."""
    workload, training, topology = [], {}, []
    execution: dict[str, Any] = {}
    for key, value in sets:
        head, _, rest = key.partition(".")
        if head == "workload" and rest:
            workload.append((rest, value))
        elif head == "execution" and rest.startswith("place.") and "." not in rest[len("place."):]:
            execution.setdefault("place", {})[rest[len("place."):]] = value  # execution.place.STATE
        elif head in ("training", "execution"):
            if not rest or "." in rest:
                raise InputError(f"expected {head}.KEY, got {excerpt(key)}", key="--set")
            if head == "training":
                training[rest] = value
            elif rest in EXECUTION_KEYS:
                execution[rest] = value
            else:
                raise InputError(f"{excerpt(key)}: expected execution.KEY with KEY one of "
                                 f"{', '.join(EXECUTION_KEYS)}", key="--set")
        elif head == "topology" and rest:  # explicit: topology.device_memory=unbounded
            topology.append((rest, value))
        elif head in HARDWARE_PREFIXES:
            topology.append((key, value))
        else:
            raise InputError(f"{excerpt(key)} names no input; a key starts with one of "
                             f"{', '.join(p + '.' for p in SET_PREFIXES)}", key="--set")
    if training:
        execution["training"] = training
    return workload, execution, topology


def load_inputs(topology: str, workload: str, sets: Sequence[tuple[str, Any]] = (), cache=None, *,
                parallel: Any = DEFAULT_POINT["parallel"], batch: Any = DEFAULT_POINT["batch"],
                policy: Any = DEFAULT_POINT["policy"]):
    """The three validated inputs of a run, not simulated: the topology (hardware), the
    workload and the :class:`~mcdla.config.execution.ExecutionSpec`.

    ``cache`` (a dict) lets a caller checking many points load each distinct topology
    and workload once.
    """
    from mcdla.config.execution import ExecutionSpec
    from mcdla.hw.tiers import check_placement
    from mcdla.hw.topology import load_topology
    from mcdla.hw.workload import load_workload
    from mcdla.sim.algorithms import COLLECTIVES
    from mcdla.sim.offload import OFFLOADS

    cache = {} if cache is None else cache
    workload_sets, execution_doc, topology_sets = route_sets(sets)
    key = _topology_cache_key(topology, topology_sets)
    if key not in cache:
        cache[key] = load_topology(topology, topology_sets)
    wkey = ("workload", workload, repr(workload_sets))
    if wkey not in cache:
        cache[wkey] = load_workload(workload, workload_sets)
    for name, value in (("policy", policy), ("parallel", parallel), ("batch", batch)):
        execution_doc[name] = value
    if "collective" not in execution_doc:  # the design's algorithm, unless --set says
        execution_doc["collective"] = _design_collective(cache[key])
    if "offload" not in execution_doc:  # the design's offload policy, unless --set says
        topo = cache[key]
        OFFLOADS.get(topo.offload, key="offload", file=topo.source or topo.name)
        execution_doc["offload"] = topo.offload
    execution = build(ExecutionSpec, execution_doc, _SetExecution("--set", "execution"))
    COLLECTIVES.get(execution.collective, key="execution.collective")
    OFFLOADS.get(execution.offload, key="execution.offload")
    check_placement(cache[key], execution)
    return cache[key], cache[wkey], execution


@dataclasses.dataclass(frozen=True)
class _SetExecution(Where):
    """Where an execution key given with --set came from: ``execution.KEY``, but the
    training keys as a user writes them, ``training.KEY`` (not execution.training.KEY)."""

    def child(self, name: str | int) -> Where:
        return Where(self.file, "training") if name == "training" else super().child(name)


def _design_collective(topo) -> str:
    """The topology's collective algorithm, checked against the registry (an unknown
    name is an error naming the topology file's key)."""
    from mcdla.sim.algorithms import COLLECTIVES

    COLLECTIVES.get(topo.collective, key="collective", file=topo.source or topo.name)
    return topo.collective


_TOPOLOGY = "topology"  # the first part of a loaded topology's key in load_inputs' cache


def _topology_cache_key(topology: str, topology_sets) -> tuple[str, str, str]:
    """How :func:`load_inputs`' cache (and :class:`OneTopology`) name a loaded topology."""
    return _TOPOLOGY, topology, repr(topology_sets)


def _split_point(point: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any]], Any]:
    """A sweep point's ``mcdla sim`` options, its dotted ``--set`` pairs and the work
    budget it declares (``budget``, mcdla.config.experiment.SimKeys, checked there and by
    mcdla.hw.budget.check_budget, which reads YAML's string ``1e11`` as --budget does;
    None: the default)."""
    from mcdla.config.experiment import POINT_LABEL

    args = {k: point[k] for k in POINT_KEYS if k in point}
    sets = [(k, v) for k, v in point.items() if k not in POINT_KEYS and k not in (POINT_LABEL, "budget")]
    return args, sets, point.get("budget")


def topology_key(point: Mapping[str, Any]) -> tuple[str, str, str]:
    """The topology a sweep point loads, as :func:`load_inputs` caches it (empty for a
    point whose keys do not parse: its check reports them)."""
    args, sets, _budget = _split_point(point)
    try:
        topology_sets = route_sets(sets)[2]
    except InputError:
        return "", "", ""
    return _topology_cache_key(str(args.get("topology", DEFAULT_POINT["topology"])), topology_sets)


class OneTopology(dict):
    """A :func:`load_inputs` cache that holds one topology at a time: a sweep's check,
    visiting its points by :func:`topology_key`, then peaks at its largest topology, not
    at the sum of them (frontier_scale's span from 1,024 to 131,072 GPUs)."""

    def __setitem__(self, key, value) -> None:
        if key[0] == _TOPOLOGY:
            for held in [k for k in self if k[0] == _TOPOLOGY]:
                del self[held]
        super().__setitem__(key, value)


def check_point(point: Mapping[str, Any], cache=None) -> None:
    """Raises the InputError a sweep point would meet, without simulating it."""
    given, sets, _budget = _split_point(point)
    args = {**DEFAULT_POINT, **given}
    for option, tp in (("policy", Policy), ("parallel", Parallel), ("batch", Batch)):
        args[option] = check_option(tp, args[option], option)
    load_inputs(args["topology"], args["workload"], sets, cache, parallel=args["parallel"],
                batch=args["batch"], policy=args["policy"])


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
    links: bool = False,
) -> dict[str, Any]:
    """Simulates one training iteration and returns the result mapping of ``mcdla sim --format json``
    (``links``: every directed link's bytes, however large the run: ``--links``)."""
    from mcdla.hw.budget import check_budget, estimate_work
    from mcdla.metrics.summary import summarize
    from mcdla.collector import collection_paused
    from mcdla.sim.training import Iteration

    if trace is not None:  # refuse an unwritable trace before spending the simulation
        from mcdla.io.trace import check_trace_path

        check_trace_path(trace)
    policy = check_option(Policy, policy, "policy")
    parallel = check_option(Parallel, parallel, "parallel")
    batch = check_option(Batch, batch, "batch")
    # No garbage collection while the inputs are built and simulated: both allocate
    # millions of objects and free almost none through cycles (40 % of the time of a
    # 1,024-device iteration, 40 % of loading a 16,384-device ring).
    with collection_paused():
        topo, work, execution = load_inputs(topology, workload, sets, parallel=parallel, batch=batch,
                                            policy=policy)
        iteration = Iteration(topo, work, execution, record_timeline=trace is not None)
        # Before any simulation work; the devices simulated: one per class of equivalent ones.
        check_budget(estimate_work(topo, work, len(iteration.symmetry.device_classes),
                                   stages=execution.pipeline_parallel,
                                   micro_batches=execution.training.micro_batches), budget)
        started = time.perf_counter()
        record = iteration.run()
        wall_s = time.perf_counter() - started
        # Summarizing allocates per channel too (link classes, link bytes): the collector
        # would walk the run's millions of objects for nothing.
        result = summarize(record, wall_s, links)
    if trace is not None:
        from mcdla.io.trace import write_trace

        write_trace(trace, record)
    return result


def simulate_point(point: Mapping[str, Any], budget: float | None = None) -> dict[str, Any]:
    """Runs a sweep point: the keys of POINT_KEYS plus any dotted ``--set`` key
    (``budget``: the work budget, :func:`simulate`'s; else the point's own ``budget``
    key, an experiment's declared budget, mcdla.config.experiment.SimKeys)."""
    args, sets, declared = _split_point(point)
    return simulate(**args, sets=sets, budget=declared if budget is None else budget)


def route_serving_sets(sets: Sequence[tuple[str, Any]], slo: str | None):
    """Splits ``mcdla serve``'s ``--set`` pairs into the serving spec's mapping and the
    workload and topology pairs; ``--slo ttft=T,tpot=T`` fills ``slo_ttft``/``slo_tpot``."""
    serving: dict[str, Any] = {}
    rest = []
    for key, value in sets:
        head, _, name = key.partition(".")
        if head != "serving":
            rest.append((key, value))
        elif not name or "." in name:
            raise InputError(f"expected serving.KEY, got {excerpt(key)}", key="--set")
        else:
            serving[name] = value
    for item in (slo or "").split(","):
        if not item.strip():
            continue
        name, eq, value = item.partition("=")
        if not eq or name.strip() not in ("ttft", "tpot"):
            raise InputError(f"expected ttft=TIME,tpot=TIME (e.g. ttft=2s,tpot=100ms), got {excerpt(item)}",
                             key="--slo")
        from mcdla.config.schema import Time

        serving[f"slo_{name.strip()}"] = convert(Time, value.strip(), Where("", "--slo"))
    workload_sets, execution_doc, topology_sets = route_sets(rest)
    if execution_doc:
        raise InputError("training.* and execution.* apply to mcdla sim; a serving run takes serving.* "
                         "(docs/serving.md)", key="--set")
    return serving, workload_sets, topology_sets


def _serving_workload(name: str, sets: Sequence[tuple[str, Any]]):
    """The decoder ``name`` expanded with one token per sample (the serving model's unit,
    mcdla.hw.serving), and its multi-head latent attention's cached width (0: none)."""
    from mcdla.config import loader
    from mcdla.hw.workload import read_workload

    path = loader.find_input(name, "workloads", "workload")
    doc = loader.read_yaml(path)
    if sets:
        doc = loader.apply_overrides(doc, list(sets))
    if doc.get("template") != "decoder":
        raise InputError(f"{excerpt(name)} is not a decoder transformer (template: decoder, as llama3_70b); "
                         "serving generates tokens with one", key="--workload")
    if doc.get("position", "learned") == "learned" and "max_positions" not in doc:
        doc["max_positions"] = doc.get("seq_len", 1)  # the table keeps its size when seq_len is 1
    latent = (doc["kv_lora_rank"] + doc.get("rope_head_dim", 64)) if doc.get("kv_lora_rank") else 0
    return read_workload({**doc, "seq_len": 1}, loader.display_path(path)), latent


def serve(topology: str = "dgx_h100", workload: str = "llama3_8b", sets: Sequence[tuple[str, Any]] = (), *,
          slo: str | None = None, trace: str | None = None) -> dict[str, Any]:
    """Simulates serving ``workload``'s requests on ``topology`` (``mcdla serve``); the
    result mapping of its ``--format json`` (docs/serving.md)."""
    from mcdla.collector import collection_paused
    from mcdla.config.serving import make_requests, serving_spec
    from mcdla.hw.serving import ServingModel, kv_geometry
    from mcdla.hw.topology import load_topology
    from mcdla.metrics.serving import summarize_serving
    from mcdla.sim.serving import ServingRun, serving_stages

    if trace is not None:
        from mcdla.io.trace import check_trace_path

        check_trace_path(trace)
    serving, workload_sets, topology_sets = route_serving_sets(sets, slo)
    spec = serving_spec(serving)
    with collection_paused():
        work, latent = _serving_workload(workload, workload_sets)
        topo = load_topology(topology, topology_sets)
        model = ServingModel(topo.device, work, spec.tensor_parallel, kv_geometry(work, latent),
                             serving_stages(work, spec.pipeline_parallel), spec.expert_parallel)
        run = ServingRun(topo, model, spec, make_requests(spec))
        started = time.perf_counter()
        record = run.run()
        wall_s = time.perf_counter() - started
    result = summarize_serving(record, run, work.name, wall_s)
    if trace is not None:
        from mcdla.io.serving_trace import write_serving_trace

        write_serving_trace(trace, record, result)
    return result


def serve_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """Runs a ``kind: serve`` sweep point: ``topology``, ``workload``, ``device``, ``slo``
    and any dotted key (``serving.rate``), as ``mcdla serve``'s options."""
    plain = ("topology", "workload", "device", "slo")
    sets = [(k, v) for k, v in point.items() if k not in plain]
    if point.get("device"):
        sets.insert(0, ("device", point["device"]))
    return serve(point.get("topology", "dgx_h100"), point.get("workload", "llama3_8b"), sets, slo=point.get("slo"))


# mcdla collective --ring's link: the NVLink 2.0 preset, read from the presets file the
# topologies use, so that the number lives in one place.
DEFAULT_RING_LINK = "nvlink2"
# Largest --ring: a topology's node limit (what the work budget's memory holds, a ring
# of devices alone), far above Fig. 9's 16 ranks.
def max_ring() -> int:
    from mcdla.hw.budget import node_cap

    return node_cap()


def parse_quantity(value: Any, kind: str, option: str) -> float:
    """A positive ``kind`` quantity from the command line (a bare number: the SI unit)."""
    return _quantity(value, kind, option, positive=True)


def _quantity(value: Any, kind: str, option: str, *, positive: bool) -> float:
    """``value`` parsed as ``kind``; a malformed or out-of-range value names ``option``."""
    from mcdla import units
    from mcdla.config.schema import check_physical
    from mcdla.errors import excerpt

    try:
        number = units.parse(value, kind)
    except units.UnitError as exc:
        raise InputError(str(exc), key=option) from None
    if number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise InputError(f"must be {bound}, got {excerpt(value)}", key=option)
    return check_physical(number, kind, Where("", option), value)


def _ring_link() -> tuple[float, float]:
    from mcdla.config.hardware import LinkSpec
    from mcdla.config.topology import PRESETS_FILE, load_presets

    link = build(LinkSpec, load_presets()["links"][DEFAULT_RING_LINK],
                 Where(str(PRESETS_FILE), f"links.{DEFAULT_RING_LINK}"))
    return link.effective_bw_Bps, link.latency


def simulate_transfer(src: str, dst: str, size: Any, *, topology: str,
                      sets: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
    """One copy alone on an idle ``topology`` (a validation row's ``kind: transfer``).

    Device to device, ``src`` and ``dst`` device names (``D0``, ``D1``): the flows a
    pipeline send starts (one per ring through both, each on its ring's way). Between a
    device and its backing store, ``dst: host`` (device to host) or ``src: host`` (host
    to device): the offload or prefetch DMA of that device (its routes, ``local``
    placement). Returns the time and size / time."""
    from mcdla.hw.network import p2p_paths
    from mcdla.hw.topology import load_topology
    from mcdla.sim.environment import CountingEnvironment
    from mcdla.sim.flownet import FlowNetwork

    size_bytes = _quantity(size, "size", "size", positive=True)
    topo = load_topology(topology, sets)
    for key, name in (("src", src), ("dst", dst)):
        if name != "host" and name not in topo.devices:
            raise InputError(f"expected a device of {topo.name} ({topo.devices[0]}..{topo.devices[-1]}) or host, "
                             f"got {excerpt(name)}", key=key)
    if src == dst or (src == "host") == (dst == "host") and "host" in (src, dst):
        raise InputError("a copy goes between two devices, or a device and host", key="dst")
    if "host" in (src, dst):
        device, direction = (dst, "prefetch") if src == "host" else (src, "offload")
        flows = [(sub.share, sub.path, sub.latency_s) for sub in topo.backing_routes(device, "local", direction)]
        if not flows:
            raise InputError(f"{topo.name} has no backing store for {device}", key="topology")
    else:
        flows = list(p2p_paths(topo.rings, src, dst, topo.reverse_of, topo.channels))
    env = CountingEnvironment()
    net = FlowNetwork(env, topo.capacities(), also=topo.nic_ports)
    done = env.all_of([net.transfer(share * size_bytes, path, latency) for share, path, latency in flows])
    env.run(done)
    return {"src": src, "dst": dst, "size_bytes": size_bytes, "time_s": env.now,
            "bandwidth_Bps": size_bytes / env.now, "topology": topo.name}


def check_collective_options(nccl_version, iters, keys=("--nccl-version", "--iters")) -> tuple[str, int]:
    """A collective's NCCL version (None: the default) and nccl-tests iterations, checked;
    ``keys``: the names a user wrote them under (options, or a validation row's args)."""
    from mcdla.hw.nccl import DEFAULT_NCCL_VERSION, NCCL_VERSIONS

    if nccl_version is not None and str(nccl_version) not in NCCL_VERSIONS:
        raise InputError(f"expected one of {', '.join(NCCL_VERSIONS)}, got {nccl_version!r}", key=keys[0])
    iters = check_option(int, iters, keys[1])
    if iters < 1:
        raise InputError(f"expected at least 1 collective, got {iters}", key=keys[1])
    return str(nccl_version or DEFAULT_NCCL_VERSION), iters


def _classes(topology, algorithm: str, op: str):
    """The classes of a cluster's ranks for one collective over all of them, from the
    quotient by the shift of every node along its leaf (as a training run's, without
    pipeline stages: mcdla.hw.translation, NodeCells), or None (every rank simulated):
    a design that is no cluster of node cells (the whole refinement would cost more than
    it saves on one machine), an algorithm whose flows single out ranks (NCCL's tuner
    where it may pick a tree), a broadcast (its root is singled out), or rings the shift
    does not carry onto themselves. A skewed all-to-allv's hot rank is singled out by the
    caller."""
    from mcdla.hw.symmetry import by_translation
    from mcdla.sim.algorithms import COLLECTIVES

    cells, n = topology.node_cells, len(topology.devices)
    shift = cells.within_stage_leaves(topology.graph, n, 1) if cells is not None and op != "broadcast" else None
    if shift is None or not COLLECTIVES.get(algorithm).rank_symmetric(topology.rings, topology.read_capacities()):
        return None
    # No stores: a collective moves none (so no offload policy either).
    found = by_translation(topology, "", topology.rings, (), shift)
    return found if found is not None and not found.trivial else None


def simulate_collective(op: str, size: Any, *, ring: int | None = None, topology: str | None = None,
                        link_bw: Any = None, link_latency: Any = None, chunk: Any = None,
                        algorithm: str | None = None, launch_serial: Any = 1,
                        sets: Sequence[tuple[str, Any]] = (), hot_share: Any = None,
                        nccl_version: str | None = None, iters: Any = 1, exact: Any = False) -> dict[str, Any]:
    """One collective alone on idle rings (``mcdla collective``, Fig. 9's points).

    The rings are a topology's, or one bidirectional ring of ``ring`` devices joined by
    the NVLink 2.0 preset (``link_bw``/``link_latency`` override it). Option names in
    errors are the command's (``--size``), which are also the sweep point's keys.
    ``launch_serial`` devices have their kernels launched one after another by one host
    thread (nccl-tests ``-g N``): the launch cost is that many times the topology
    device's ``launch_overhead`` (a --ring has no device: no launch cost). ``hot_share``
    (all-to-allv only): the share of every rank's data bound for the hot rank, the first
    (``1/ranks``, the default, is uniform). ``sets``
    override the topology's parameters as ``mcdla sim --set`` does (``generator.nodes``,
    ``links.nic.bw``); a collective has no workload or training. ``nccl_version``: the
    NCCL constants NCCL's algorithms use (default: mcdla's, ``mcdla.hw.nccl``);
    ``iters``: the time is per collective of that many run back to back, as nccl-tests'
    timing loop runs them (``-n``; 1: one collective alone). ``exact``: simulate every
    rank, where a cluster's ranks are otherwise simulated once per class (:func:`_classes`).
    """
    from mcdla.hw.collective_model import OPS, algbw_Bps, busbw_Bps
    from mcdla.hw.nccl import loop_time_s, nccl_tuning
    from mcdla.sim import algorithms  # noqa: F401  (registers every algorithm --algorithm may name)
    from mcdla.sim.collectives import DEFAULT_CHUNK_BYTES, ring_of_devices, run_collective

    if op not in OPS:
        raise InputError(f"expected one of {', '.join(OPS)}, got {op!r}", key="--op")
    if (ring is None) == (topology is None):
        raise InputError("give exactly one of --ring N and --topology NAME", key="--ring")
    size_bytes = _quantity(size, "size", "--size", positive=False)
    chunk_bytes = DEFAULT_CHUNK_BYTES if chunk is None else convert(BlockSize, chunk, Where("", "--chunk"))
    workload_sets, execution_doc, topology_sets = route_sets(sets)
    if workload_sets or execution_doc:
        head = (workload_sets and "workload") or ("training" if "training" in execution_doc else "execution")
        raise InputError(f"{head}.* applies to a training run (mcdla sim); a collective takes the topology's keys "
                         f"({', '.join(p + '.*' for p in (*HARDWARE_PREFIXES, 'topology'))}) and --chunk, --algorithm",
                         key="--set")
    if ring is not None:
        if topology_sets:
            raise InputError("applies to --topology; --ring N takes --link-bw and --link-latency", key="--set")
        ring = check_option(int, ring, "--ring")
        if ring < 2:
            raise InputError(f"a ring needs at least 2 devices, got {ring}", key="--ring")
        if ring > max_ring():  # refused before building a ring that exhausts memory
            raise InputError(f"{ring} is more than the supported maximum of {max_ring()} devices (the work "
                             "budget's memory: MCDLA_MEMORY_BUDGET)", key="--ring")
        bw_Bps, latency_s = _ring_link()
        if link_bw is not None:
            bw_Bps = _quantity(link_bw, "bandwidth", "--link-bw", positive=True)
        if link_latency is not None:
            latency_s = _quantity(link_latency, "time", "--link-latency", positive=False)
        rings, capacities = ring_of_devices(ring, bw_Bps, latency_s)
        name, launch_s, also, cc = f"ring{ring}", 0.0, {}, None
    else:
        for option, value in (("--link-bw", link_bw), ("--link-latency", link_latency)):
            if value is not None:
                raise InputError("only applies to --ring; a topology sets its own links", key=option)
        from mcdla.hw.topology import load_topology

        topo = load_topology(topology, topology_sets)
        if not topo.rings:
            raise InputError(f"topology {topo.name!r} has no collective rings", key="--topology")
        # read, not copied: the flow network keeps its own
        rings, capacities, name, also = topo.rings, topo.read_capacities(), topo.name, topo.nic_ports
        algorithm = algorithm or _design_collective(topo)
        launch_s, cc = topo.device.launch_overhead, topo.device.compute_capability
    algorithm = algorithm or "ring"
    version, iters = check_collective_options(nccl_version, iters)
    tuning = nccl_tuning(version, cc)
    serial = check_option(int, launch_serial, "--launch-serial")
    if not 1 <= serial <= max_ring():
        raise InputError(f"expected 1 to {max_ring()} devices, got {serial}", key="--launch-serial")
    if hot_share is not None:
        if op != "all_to_allv":
            raise InputError(f"applies to --op all_to_allv, not {op}", key="--hot-share")
        hot_share = check_option(float, hot_share, "--hot-share")
        if not 1 / rings[0].size <= hot_share <= 1:  # the hottest destination: at least the uniform share
            raise InputError(f"expected a share from 1/{rings[0].size} (uniform) to 1, got {hot_share}",
                             key="--hot-share")
    host_s = serial * launch_s
    exact = check_option(bool, exact, "--exact")
    symmetry = None if ring is not None or exact or hot_share is not None else _classes(topo, algorithm, op)
    result = run_collective(rings, capacities, op, size_bytes, chunk_bytes=chunk_bytes, algorithm=algorithm,
                            launch_s=host_s, also=also, hot_share=hot_share,
                            nccl=None if nccl_version is None else tuning,
                            classes=None if symmetry is None else symmetry.with_units(topo.devices),
                            orbits=None if symmetry is None else symmetry.translation)
    record = result.record
    # The launches are the only host part of a collective's time; the rest runs on the GPUs.
    overlap = iters > 1 and not (serial > 1 and tuning.group_launch)
    time_s = loop_time_s(host_s, record.time_s - host_s, iters) if overlap else record.time_s
    return {
        "op": op,
        "size_bytes": size_bytes,
        "ranks": record.ranks,
        "rings": len(rings),
        "time_s": time_s,
        "algbw_Bps": algbw_Bps(size_bytes, time_s),
        "busbw_Bps": busbw_Bps(op, size_bytes, time_s, record.ranks),
        "topology": name,
        "algorithm": algorithm,
        **({"protocol": record.protocol} if record.protocol else {}),
        **({"picked": record.algorithm} if record.algorithm else {}),  # what NCCL's tuner ran, if not its ring
        **({"nccl_version": tuning.version} if nccl_version is not None else {}),
        **({"iters": iters} if iters > 1 else {}),
        "chunk_bytes": chunk_bytes,
        "flows": record.flows,
        "events": result.events,
        "wall_s": result.wall_s,
    }
