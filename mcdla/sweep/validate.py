"""``mcdla validate``: run every row of the shipped validation tables and compare.

A row's run goes through the same entry points as ``mcdla collective`` and ``mcdla
sim`` (:mod:`mcdla.run`); the comparison is error = simulated / measured - 1 (for an
overhead, the difference of the two fractions), and the verdict is ``pass`` when
|error| <= the row's tolerance, ``miss`` otherwise. A row whose run fails (an input
error, an infeasible configuration) is reported as ``error`` with its message. Every
row's inputs (its topology, workload, options and ``set`` keys, its baseline's too) are
checked before the first row runs: a table that names an unknown topology is a bad
input (exit 2), found at once, not a row error after the others ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mcdla.config.validation import ValidationRow, measured_value, read_validation, shipped_validation
from mcdla.config.schema import Where
from mcdla.errors import InfeasibleError, InputError

__all__ = ["Outcome", "validate", "run_row", "check_row"]



@dataclass(frozen=True)
class Outcome:
    table: str
    quantity: str
    measure: str
    measured: float
    simulated: float | None
    error: float | None  # simulated / measured - 1 (overhead: simulated - measured)
    tolerance: float
    verdict: str  # pass | miss | error
    source_title: str
    source_url: str
    args: dict[str, Any]
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _point(args: dict[str, Any]) -> dict[str, Any]:
    """A row's sim args as a sweep point (``device`` first, then the dotted ``set``
    keys, which may override its fields)."""
    point = {k: v for k, v in args.items() if k != "set"}
    return {**point, **(args.get("set") or {})}


def _baseline(row: ValidationRow) -> dict[str, Any]:
    return {**row.args, **row.baseline, "set": {**(row.args.get("set") or {}), **(row.baseline.get("set") or {})}}


def _sim(args: dict[str, Any], budget: float | None = None) -> dict[str, Any]:
    """``mcdla sim``'s run of a row's args (``budget``: a slow row's work budget)."""
    from mcdla.run import simulate_point

    return simulate_point(_point(args), budget)


def check_row(row: ValidationRow, where: Where, cache: dict) -> None:
    """Raises the InputError (naming the row) that ``row``'s inputs would meet, without
    running it; ``cache`` keeps each topology and workload loaded once."""
    from mcdla.hw.collective_model import OPS
    from mcdla.hw.topology import load_topology
    from mcdla.run import check_point

    try:
        if row.kind == "serve":
            from mcdla.run import route_serving_sets

            route_serving_sets(list((row.args.get("set") or {}).items()), None)  # the keys route
            return
        if row.kind == "sim":
            for args in (row.args, _baseline(row)) if row.baseline else (row.args,):
                check_point(_point(args), cache)
            return
        op = row.args.get("op", "all_reduce")
        if op not in OPS:
            raise InputError(f"expected one of {', '.join(OPS)}, got {op!r}", key="op")
        from mcdla.run import check_collective_options

        check_collective_options(row.args.get("nccl_version"), row.args.get("iters", 1), ("nccl_version", "iters"))
        topology = row.args.get("topology")
        if topology is not None and ("topology", topology) not in cache:
            cache["topology", topology] = load_topology(str(topology))
    except InputError as exc:
        raise InputError(str(exc), file=where.file, key=where.key) from None


def _model_state(args: dict[str, Any]) -> float:
    """The model state one device of the row's run holds (the planner's count)."""
    from mcdla.run import load_inputs
    from mcdla.sweep.plan import state_lower_bound

    sets = list((args.get("set") or {}).items())
    if args.get("device"):
        sets.insert(0, ("device", args["device"]))
    extra = {k: args[k] for k in ("parallel", "batch", "policy") if k in args}
    topology, workload, execution = load_inputs(args["topology"], args["workload"], sets, **extra)
    return state_lower_bound(workload, execution, len(topology.devices))


def iteration_flops(row: ValidationRow) -> float:
    """FLOPs of one iteration of ``row``'s run as its source counts them.

    ``megatron``: Narayanan et al. (SC'21), eq. (3), with activation recomputation:
    96 B s l h^2 (1 + s / (6 h) + V / (16 l h)) for batch B of s tokens, l layers of
    width h and a vocabulary of V (every attention score counted, causal or not).
    ``megatron_core``: Megatron-LM's ``num_floating_point_operations`` (2024), no
    recomputation: 12 B s l h^2 ((1 + g/a + s/h) q/h + f/h x (3/2 with SwiGLU) +
    V / (2 l h)) with a heads, g KV heads, q = a x head_dim and an FFN of f; in a
    mixture of experts every layer's FFN is its top-k routed experts' (f = the expert
    FFN x k, its ``num_experts_routed_to``; the router is not counted).
    ``dgxc``: NVIDIA's DGX Cloud Benchmarking recipes (their READMEs' "Notes", v24.11.1):
    s (24 l h^2 + 12 l h s + 48 l h^2 + 6 V h) a sequence, i.e. 72 B s l h^2 (1 + s / (6 h)
    + V / (12 l h)), no recomputation, every block counted as GPT-3's (full multi-head
    attention, an FFN of 4h without a gate) whatever its KV heads and FFN.
    """
    from mcdla.config import loader

    path = loader.find_input(row.args["workload"], "workloads", "workload")
    sets = [(k.partition(".")[2], v) for k, v in (row.args.get("set") or {}).items() if k.startswith("workload.")]
    doc = loader.apply_overrides(loader.read_yaml(path), sets) if sets else loader.read_yaml(path)
    try:
        b, s, l, h, v = (float(x) for x in (row.args["batch"], doc["seq_len"], doc["layers"], doc["hidden"],
                                            doc["vocab"]))
        a, f = float(doc["heads"]), float(doc["ffn"])
    except KeyError as exc:
        raise InputError(f"flops: {row.flops} needs a transformer template workload (no {exc.args[0]})",
                         key="flops") from None
    if row.flops == "megatron":
        return 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))
    if row.flops == "dgxc":
        return 72 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * l * h))
    if doc.get("experts"):  # Megatron counts top-k experts of the expert FFN in every layer
        if doc.get("dense_layers") or doc.get("shared_experts"):
            raise InputError("flops: megatron_core counts every layer's top-k routed experts only; not for "
                             "dense layers or shared experts", key="flops")
        f = float(doc.get("expert_ffn") or doc["ffn"]) * float(doc.get("top_k", 1))
    g = float(doc.get("kv_heads") or a)
    q = a * (h // a)  # query projection: heads x head_dim
    gated = 1.5 if doc.get("mlp") == "swiglu" else 1.0
    return 12 * b * s * l * h * h * ((1 + g / a + s / h) * q / h + f / h * gated + v / (2 * l * h))


def run_row(row: ValidationRow) -> float:
    """The simulated value of ``row``'s measure, in SI units."""
    if row.kind == "collective":
        from mcdla.run import simulate_collective

        result = simulate_collective(row.args.get("op", "all_reduce"), row.args.get("size"),
                                     topology=row.args.get("topology"), ring=row.args.get("ring"),
                                     algorithm=row.args.get("algorithm"),
                                     launch_serial=row.args.get("launch_serial", 1),
                                     nccl_version=row.args.get("nccl_version"),
                                     iters=row.args.get("iters", 1),
                                     sets=list((row.args.get("set") or {}).items()))
        return result["busbw_Bps"] if row.measure == "busbw" else result["time_s"]
    if row.measure == "model_state":
        return _model_state(row.args)
    if row.kind == "serve":
        from mcdla.run import serve_point

        served = serve_point({k: v for k, v in row.args.items() if k != "set"} | (row.args.get("set") or {}))
        return {"ttft": served["ttft_s"]["p50"], "tpot": served["tpot_s"]["p50"],
                "output_tokens_per_s": served["throughput_tokens_s"]}[row.measure]
    if row.kind == "transfer":
        from mcdla.run import simulate_transfer

        copy = simulate_transfer(row.args.get("src"), row.args.get("dst"), row.args.get("size"),
                                 topology=row.args.get("topology"), sets=list((row.args.get("set") or {}).items()))
        return copy["bandwidth_Bps"] if row.measure == "bandwidth" else copy["time_s"]
    result = _sim(row.args, row.budget)
    if row.measure == "iteration_time":
        return result["iteration_time_s"]
    if row.measure == "throughput":
        return result["batch"] / result["iteration_time_s"]
    if row.measure == "memory_peak":
        return result["device_mem_peak_bytes"]
    if row.measure == "flops_per_device":
        return iteration_flops(row) / result["iteration_time_s"] / result["devices"]
    base = _sim(_baseline(row), row.budget)
    if row.measure == "scaling":
        return (result["batch"] / result["iteration_time_s"]) / (base["batch"] / base["iteration_time_s"])
    return result["iteration_time_s"] / base["iteration_time_s"] - 1.0


def validate(tables: Sequence[str] = (), *, reduced: bool = False, all_rows: bool = False,
             progress: Callable[[int, int, str], None] | None = None) -> list[Outcome]:
    """Runs the rows of ``tables`` (default: every shipped table); ``reduced``: only the
    rows marked for the reduced run; the slow rows only with ``all_rows``."""
    loaded = [read_validation(t) for t in (tables or shipped_validation())]  # every file checked first
    rows = [(shown, spec, i, row) for shown, spec in loaded for i, row in enumerate(spec.rows)
            if (row.reduced or not reduced) and (all_rows or not row.slow)]
    cache: dict = {}
    for shown, _, i, row in rows:  # every row's inputs checked before the first runs
        check_row(row, Where(shown).child("rows").child(i), cache)
    outcomes = []
    for n, (shown, spec, i, row) in enumerate(rows):
        if progress is not None:
            progress(n, len(rows), row.quantity)
        where = Where(shown).child("rows").child(i)
        measured = measured_value(row, where)
        simulated, error, verdict, message = None, None, "error", ""
        try:
            simulated = run_row(row)
        except (InputError, InfeasibleError) as exc:
            message = str(exc)
        if simulated is not None:
            error = simulated - measured if row.measure == "overhead" else simulated / measured - 1.0
            verdict = "pass" if abs(error) <= row.tolerance else "miss"
        outcomes.append(Outcome(spec.name, row.quantity, row.measure, measured, simulated, error,
                                row.tolerance, verdict, row.source.title, row.source.url,
                                dict(row.args), message or row.note))
    return outcomes
