"""A serving run as a Perfetto trace (``mcdla serve --trace``): open it at ui.perfetto.dev.

One process per serving instance with two tracks: ``batches`` (a span per iteration,
its tokens, decodes and prefills as arguments) and ``transfers`` (the KV moved from
and to the tier, the tensor-parallel all-reduces); and a ``requests`` process, a span
per request from arrival to its last token with its first-token time. Times are
converted to microseconds by the training trace's helper; the file is written by the
one write helper, whole or not at all.
"""

from __future__ import annotations

import json
import os

from mcdla.io.trace import _meta, _span, _us, check_trace_path
from mcdla.io.write import write_text

__all__ = ["build_serving_trace", "write_serving_trace"]


def build_serving_trace(record, result: dict) -> dict:
    events = []
    instances = result["instances"]
    for i in range(instances):
        events.append(_meta("process_name", i, None, name=f"instance {i}"))
        events.append(_meta("thread_name", i, 0, name="batches"))
        events.append(_meta("thread_name", i, 1, name="transfers"))
    for instance, start, end, tokens, decodes, prefills in record.iterations:
        events.append(_span(f"batch {tokens} tokens", "batch", start, end, instance, 0,
                            {"tokens": tokens, "decodes": decodes, "prefills": prefills}))
    for instance, kind, start, end, size in record.transfers:
        events.append(_span(kind, "transfer", start, end, instance, 1, {"bytes_per_device": size}))
    pid = instances
    events.append(_meta("process_name", pid, None, name="requests"))
    for req in record.requests:
        events.append(_span(f"request {req.id}", "request", req.arrival_s, req.done_s, pid, req.id % 64,
                            {"prompt_tokens": req.prompt, "output_tokens": req.output,
                             "ttft_us": _us(req.first_s - req.arrival_s), "preemptions": req.preemptions}))
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"topology": result["topology"], "workload": result["workload"],
                          "makespan_us": _us(result["makespan_s"])}}


def write_serving_trace(path: str | os.PathLike, record, result: dict) -> None:
    """Writes the trace of a serving run to ``path`` (atomically for a regular file)."""
    check_trace_path(path)
    document = build_serving_trace(record, result)
    write_text(path, json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n", option="--trace")
