"""``mcdla plan``: search the ways to train a workload on a design, simulate the most
promising, print the best few and why the others were left out (mcdla/sweep/plan.py)."""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    from mcdla.cli.output import add_format_options, positive_int

    parser.description = ("Search tensor-parallel degree, ZeRO stage and activation-memory "
                          "strategy; estimate every candidate, simulate the most promising, print the best.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--workload", metavar="NAME|FILE")
    target.add_argument("--largest", metavar="FAMILY",
                        help="plan every size of a model family (gpt3, llama2) and report the largest that trains")
    parser.add_argument("--time-budget", metavar="TIME",
                        help="with --largest: the longest iteration that counts as training (\"10 s\")")
    parser.add_argument("--topology", required=True, metavar="NAME|FILE")
    parser.add_argument("--devices", type=positive_int, metavar="N", help="the devices the design must have")
    parser.add_argument("--batch", type=positive_int, required=True, metavar="N", help="global batch")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed inputs for every candidate (as mcdla sim --set); a search axis "
                        "(execution.tensor_parallel, execution.zero, training.checkpoint, ...) set here "
                        "is searched at that value alone")
    parser.add_argument("--top", type=positive_int, default=5, metavar="K", help="best candidates shown (default 5)")
    parser.add_argument("--simulate", type=positive_int, default=None, metavar="K",
                        help="candidates simulated, by estimated time (default 16; 4 per model with --largest)")
    parser.add_argument("--all", action="store_true", help="show every candidate, infeasible ones included")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_format_options(parser)
    parser.set_defaults(run=run)


def _human(r) -> dict:
    """A mcdla.api.PlanCandidate as a row of the table."""
    from mcdla.io.humane import format_value, percent

    out = {"tp": r.tensor_parallel, "pp": r.pipeline_parallel, "dp": r.data_parallel,
           "micro": r.micro_batches, "zero": r.zero, "optimizer": "backing" if r.offload_optimizer else "device",
           "weights": "backing" if r.offload_params else "device",
           "memory": r.memory}
    out["checkpoint"] = r.checkpoint
    if r.expert_parallel is not None and r.expert_parallel > 1:
        out["ep"] = r.expert_parallel
    if r.feasible:
        out.update({
            "iteration": format_value(r.iteration_time_s, "time"),
            **({"tokens/s": f"{r.tokens_per_s:,.0f}"} if r.tokens_per_s != r.samples_per_s
               else {"samples/s": f"{r.samples_per_s:,.0f}"}),
            "TFLOP/s/device": f"{r.model_flops_per_device / 1e12:.1f}",
            "of peak": percent(r.peak_fraction),
            "device peak": format_value(r.device_mem_peak_bytes, "size"),
            "backing peak": format_value(r.backing_peak_bytes, "size"),
        })
    else:
        out["why not"] = r.reason if len(r.reason) < 110 else r.reason[:107] + "..."
    return out


def run(args: argparse.Namespace) -> int:
    from mcdla.api import plan
    from mcdla.cli.output import emit

    def progress(n, total, label):
        if not args.quiet and sys.stderr.isatty():
            print(f"\r[{n + 1}/{total}] simulating {label:<40}", end="", file=sys.stderr, flush=True)

    rows = plan(args.workload, topology=args.topology, batch=args.batch, largest=args.largest,
                time_budget=args.time_budget, devices=args.devices, set=args.sets, simulate=args.simulate,
                progress=progress)
    if not args.quiet and sys.stderr.isatty():
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    if args.largest:
        return _largest(args, rows)
    feasible = [r for r in rows if r.feasible]
    if not feasible and not args.all:  # nothing to show: a bad input, saying why (exit 2)
        from mcdla.sweep.plan import no_fit

        raise no_fit(rows, args.workload, args.topology, args.batch)
    shown = rows if args.all else feasible[:args.top]
    if args.format == "table":
        emit([_human(r) for r in shown], args)
        infeasible = [r for r in rows if r.feasible is False]
        print(f"{len(rows)} candidates: {len(feasible)} simulated and feasible, {len(infeasible)} infeasible, "
              f"{len(rows) - len(feasible) - len(infeasible)} ranked out by their estimate", file=sys.stderr)
        for reason in sorted({r.reason for r in infeasible})[:5]:
            print(f"  infeasible: {reason[:160]}", file=sys.stderr)
    else:
        emit([r.to_dict() for r in shown], args)
    if not feasible:  # --all listed why each was refused
        from mcdla.sweep.plan import no_fit

        print(f"mcdla plan: infeasible: {no_fit(rows, args.workload, args.topology, args.batch)}", file=sys.stderr)
        return 2
    return 0


def _largest(args, rows) -> int:
    from mcdla.cli.output import emit
    from mcdla.io.humane import format_value

    if args.format != "table":
        emit([r.to_dict() for r in rows], args)
    else:
        table = []
        for r in rows:  # mcdla.api.FamilyMember
            row = {"model": r.member, "params": f"{r.params / 1e9:.3g} B", "trains": "yes" if r.trains else "no"}
            if r.iteration_time_s is not None:  # its best plan was simulated and fits
                row["best plan"] = r.label
                row["iteration"] = format_value(r.iteration_time_s, "time")
                row["tokens/s"] = f"{r.tokens_per_s:,.0f}"
            if r.reason:
                row["why not"] = r.reason if len(r.reason) < 90 else r.reason[:87] + "..."
            table.append(row)
        emit(table, args)
        trained = [r for r in rows if r.trains]
        print(f"largest that trains: {trained[-1].member if trained else 'none'}", file=sys.stderr)
    return 0
