"""``mcdla import``: turn an ONNX model into a workload file a person can read and edit."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import",
        help="write a workload file from an ONNX model",
        description="Read an ONNX model (needs: pip install 'mcdla[onnx]'), map its operators "
        "to mcdla layers and write a workload YAML; check it with mcdla workloads --workload FILE.",
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="the ONNX file")
    parser.add_argument("-o", "--output", dest="workload_out", required=True, metavar="FILE",
                        help="the workload YAML to write")
    parser.add_argument("--name", help="the workload's name (default: the graph's)")
    parser.add_argument("--lenient", action="store_true",
                        help="price operators mcdla cannot map as element-wise layers (listed on stderr)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import yaml

    from mcdla.hw.workload import read_workload
    from mcdla.importers.onnx import import_onnx
    from mcdla.io.write import check_output, note_input, write_text

    note_input(args.model)  # the model may not be the output it is imported to
    check_output(args.workload_out, "--output")
    result = import_onnx(args.model, name=args.name, lenient=args.lenient)
    read_workload(result.document, args.workload_out)  # it must build before it is written
    doc = result.document
    head = {k: doc[k] for k in ("name", "description", "input")}
    text = yaml.safe_dump(head, sort_keys=False, default_flow_style=None, width=100) + "layers:\n"
    text += "".join("  - " + yaml.safe_dump(entry, sort_keys=False, default_flow_style=True, width=200)
                    for entry in doc["layers"])
    write_text(args.workload_out, text, option="--output")
    if result.approximated:
        print(f"mcdla import: priced as element-wise by their bytes: {', '.join(result.approximated)}",
              file=sys.stderr)
    print(f"mcdla import: {len(doc['layers'])} layers written to {args.workload_out}", file=sys.stderr)
    return 0
