"""A serving run's record -> the result mapping of ``mcdla serve --format json``.

TTFT is a request's first token time less its arrival; TPOT its later tokens' mean
gap, (last token - first token) / (output tokens - 1) (vLLM's benchmark_serving
definitions; requests of one output token have none). Throughput is the output tokens
over the makespan, from the first arrival to the last token; goodput the requests that
meet both objectives per second of it (DistServe, Zhong et al., OSDI 2024).
"""

from __future__ import annotations

import numpy as np

from mcdla.metrics.summary import link_bytes

__all__ = ["summarize_serving", "PERCENTILES"]

PERCENTILES = (50, 90, 99)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"p{p}": None for p in PERCENTILES}
    return {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}


def summarize_serving(record, run, workload: str, wall_s: float) -> dict:
    """The result mapping (fields: docs/cli.md) of a finished :class:`ServingRun`."""
    spec, topology = run.spec, run.topology
    reqs = record.requests
    ttft = [r.first_s - r.arrival_s for r in reqs]
    tpot = [(r.done_s - r.first_s) / (r.output - 1) for r in reqs if r.output > 1]
    start = min(r.arrival_s for r in reqs)
    makespan = max(r.done_s for r in reqs) - start
    tokens = sum(r.output for r in reqs)
    tp = spec.tensor_parallel
    block_bytes = spec.block_tokens * run.model.kv.bytes_per_token(tp) * tp  # a block over the devices of an instance
    peak = {"hbm": record.peak_blocks.get("hbm", 0) * block_bytes}
    if run.tier is not None:
        peak[run.tier] = record.peak_blocks.get("tier", 0) * block_bytes
    result = {
        "topology": topology.name,
        "workload": workload,
        "tensor_parallel": tp,
        "pipeline_parallel": spec.pipeline_parallel,
        "instances": len(run.engines),
        "kv_tier": spec.kv_tier,
        "requests": len(reqs),
        "rate_requests_s": spec.rate if spec.trace is None else None,
        "makespan_s": makespan,
        "ttft_s": _percentiles(ttft),
        "tpot_s": _percentiles(tpot),
        "throughput_tokens_s": tokens / makespan if makespan > 0 else None,
        "requests_s": len(reqs) / makespan if makespan > 0 else None,
        "goodput_requests_s": None,
        "slo": None,
        "weight_bytes": run.model.weight_bytes,
        "kv_bytes_per_token": run.model.kv.bytes_per_token(),
        # an instance's blocks: its virtual engines' or its attention groups' together
        "kv_capacity_tokens": sum(run.engines[0].pool.values()) * spec.block_tokens,
        "kv_peak_bytes": peak,
        "iterations": len(record.iterations),
        "mean_batch_tokens": (sum(i[3] for i in record.iterations) / len(record.iterations)
                              if record.iterations else 0.0),
        "preemptions": record.preemptions,
        "link_bytes": link_bytes(topology, record.stats.bytes_by_resource),
        "events": record.events,
        "wall_s": wall_s,
    }
    if record.prefix is not None:  # prefix caching: the prompt tokens found cached, their prefill skipped
        hit, queried = record.prefix["hit_tokens"], record.prefix["queried_tokens"]
        result["prefix_hit_rate"] = hit / queried if queried else 0.0
        result["prefix_tokens_saved"] = hit
        result["prefix_evicted_blocks"] = record.prefix["evictions"]
    if spec.cuda_graphs:
        result["graph_iterations"] = record.graph_iterations
    if spec.slo_ttft is not None or spec.slo_tpot is not None:
        met = sum(1 for r in reqs
                  if (spec.slo_ttft is None or r.first_s - r.arrival_s <= spec.slo_ttft)
                  and (spec.slo_tpot is None or r.output == 1
                       or (r.done_s - r.first_s) / (r.output - 1) <= spec.slo_tpot))
        result["goodput_requests_s"] = met / makespan if makespan > 0 else None
        result["slo"] = {"ttft_s": spec.slo_ttft, "tpot_s": spec.slo_tpot, "met": met}
    return result


# The percentile a serving objective is held at: MLPerf Inference's server scenarios
# bound the 99th percentile of TTFT and TPOT.
SLO_PERCENTILE = "p99"


def meets_slo(row) -> bool:
    """Whether a result row (flattened: ``ttft_s.p99``) meets its ``slo.*`` at the 99th percentile."""
    for metric in ("ttft_s", "tpot_s"):
        bound, value = row.get(f"slo.{metric}"), row.get(f"{metric}.{SLO_PERCENTILE}")
        if bound is not None and bound == bound and not (value is not None and value <= bound):
            return False
    return True


def best_at_slo(table):
    """Per design (``label``): the run with the highest output tokens/s among those that
    meet the objective (none: the label with NaN), in the table's order."""
    import pandas as pd

    rows = []
    for label, runs in table.groupby("label", sort=False):
        good = [meets_slo(r) and r.get("status", "ok") == "ok" for _, r in runs.iterrows()]
        ok = runs[good]
        if ok.empty:
            rows.append({"label": label, "workload": runs["workload"].iloc[0], "throughput_tokens_s": float("nan")})
        else:
            rows.append(ok.loc[ok["throughput_tokens_s"].astype(float).idxmax()].to_dict())
    return pd.DataFrame(rows)
