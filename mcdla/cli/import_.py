"""``mcdla import``: turn an ONNX model or a Hugging Face config into a workload file a
person can read and edit."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Read an ONNX model (needs: pip install 'mcdla[onnx]'), map its operators "
                          "to mcdla layers and write a workload YAML; or read a Hugging Face config (a .json file) "
                          "and write the transformer template it describes. Check the result with "
                          "mcdla workloads --workload FILE.")
    parser.add_argument("model", metavar="MODEL", help="the ONNX file, or a Hugging Face config (.json)")
    parser.add_argument("-o", "--output", dest="workload_out", required=True, metavar="FILE",
                        help="the workload YAML to write")
    parser.add_argument("--name", help="the workload's name (default: the graph's, or the config's model)")
    parser.add_argument("--lenient", action="store_true",
                        help="price operators mcdla cannot map as element-wise layers (listed on stderr)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from collections import Counter

    import yaml

    from mcdla.hw.workload import read_workload
    from mcdla.importers.onnx import import_onnx
    from mcdla.io.write import check_output, write_text
    from mcdla.runfiles import note_input

    note_input(args.model)  # the model may not be the output it is imported to
    check_output(args.workload_out, "--output")
    if args.model.lower().endswith(".json"):
        return _config(args)
    result = import_onnx(args.model, read_workload, name=args.name, lenient=args.lenient)
    doc = result.document
    head = {k: doc[k] for k in ("name", "description", "input", "precision_bytes", "master_weights") if k in doc}
    text = yaml.safe_dump(head, sort_keys=False, default_flow_style=None, width=100) + "layers:\n"
    text += "".join("  - " + yaml.safe_dump(entry, sort_keys=False, default_flow_style=True, width=200)
                    for entry in doc["layers"])
    write_text(args.workload_out, text, option="--output")
    if result.approximated:  # what the workload leaves out, so that no size is wrong silently
        approx = result.approximated
        ops = ", ".join(f"{op} x{n}" for op, n in Counter(a.op for a in approx).items())
        params, macs = sum(a.params for a in approx), sum(a.macs for a in approx)
        print(f"mcdla import: {len(approx)} nodes ({ops}) approximated by element-wise stand-ins of their "
              f"outputs' sizes, priced by their bytes; they hold {params:,} parameters and {macs:,} "
              f"multiply-adds per sample the workload does not count: "
              f"{', '.join(a.node for a in approx)}", file=sys.stderr)
    print(f"mcdla import: {len(doc['layers'])} layers written to {args.workload_out}", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace) -> int:
    """A Hugging Face config: the template it describes, built (and counted) before it is written."""
    import sys

    import yaml

    from mcdla.hw.workload import read_workload
    from mcdla.importers.hf import import_hf_config
    from mcdla.io.write import write_text

    if args.lenient:
        print("mcdla import: --lenient has no effect on a config (nothing is approximated)", file=sys.stderr)
    doc = import_hf_config(args.model, name=args.name)
    work = read_workload(doc, args.model)
    write_text(args.workload_out, yaml.safe_dump(doc, sort_keys=False, width=100), option="--output")
    print(f"mcdla import: {doc['name']}, {work.params:,} parameters, written to {args.workload_out}",
          file=sys.stderr)
    return 0
