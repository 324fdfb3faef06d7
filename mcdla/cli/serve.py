"""``mcdla serve``: simulate LLM serving (continuous batching, a paged KV cache) on a design.

The table gives the latencies a person reads (TTFT and TPOT percentiles), the
throughput and goodput, the KV cache's size per token and its peak in each tier;
``--links`` adds the bytes each directed link carried. JSON and CSV carry every field
in raw SI units (docs/cli.md, docs/serving.md).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping


def register(parser: argparse.ArgumentParser) -> None:
    from mcdla.cli.output import add_format_options

    parser.description = ("Simulate serving a decoder LLM's requests with continuous batching and a paged KV "
                          "cache (docs/serving.md).")
    parser.add_argument("--topology", default="dgx_h100", metavar="NAME|FILE",
                        help="the design (default: %(default)s)")
    parser.add_argument("--workload", default="llama3_8b", metavar="NAME|FILE",
                        help="a decoder transformer (default: %(default)s)")
    parser.add_argument("--device", metavar="PRESET", help="the device preset, as --set device=PRESET")
    parser.add_argument("--slo", metavar="ttft=T,tpot=T",
                        help="the service-level objective goodput counts against, e.g. ttft=2s,tpot=100ms")
    parser.add_argument("--trace", metavar="FILE", help="write a Perfetto trace of batches and transfers")
    parser.add_argument("--links", action="store_true", help="table: also the bytes each directed link carried")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="serving.KEY (rate, requests, seed, prompt_tokens, output_tokens, lengths, trace, "
                        "max_batch_tokens, max_seqs, chunk, block_tokens, memory_utilization, preemption, "
                        "kv_tier, tensor_parallel, pipeline_parallel, pipeline_batches, expert_parallel, "
                        "slo_ttft, slo_tpot, prefix_caching, shared_prefix_tokens, prefixes, cuda_graphs), "
                        "or a topology or workload key as in "
                        "mcdla sim (repeatable)")
    add_format_options(parser)
    parser.set_defaults(run=run)


def table(result: Mapping[str, Any], links: bool = False) -> str:
    """The result for a person: quantities with units, links only when asked."""
    from mcdla.cli.output import render

    shown = {k: v for k, v in result.items() if k != "link_bytes" and v is not None}
    text = render(shown, "table")
    carried = {k: v for k, v in result["link_bytes"].items() if v}
    if links:
        text += render({"link_bytes": carried}, "table") if carried else "link_bytes  (none carried a byte)\n"
    return text


def run(args: argparse.Namespace) -> int:
    from mcdla.api import serve
    from mcdla.cli.output import emit_text, render
    from mcdla.errors import InputError
    from mcdla.io.write import same_target

    if args.trace is not None and same_target(args.trace, args.output):
        raise InputError("--trace and --output name the same file; one would overwrite the other", key="--trace")
    result = serve(topology=args.topology, workload=args.workload, set=args.sets, slo=args.slo,
                   device=args.device, trace=args.trace).to_dict()
    emit_text(table(result, args.links) if args.format == "table" else render(result, args.format), args)
    return 0
