"""Entry point of the ``mcdla`` console script and of ``python -m mcdla``."""

from __future__ import annotations

import argparse
import importlib
import sys

from mcdla.version import __version__

# Command name -> (its module in mcdla.cli, a trailing _ where the name is a Python keyword;
# its line in ``mcdla --help``); order is the order of ``mcdla --help``. Only the module of the
# command being run is imported and given its options: ``mcdla --help`` and each command start
# without the other commands' imports (docs/performance.md, start-up).
COMMANDS = {
    "sim": ("sim", "simulate one training iteration"),
    "serve": ("serve", "simulate LLM serving: TTFT, TPOT, throughput, the KV cache on memory tiers"),
    "compare": ("compare", "run one workload on several design points, side by side"),
    "collective": ("collective", "run one ring collective and report time, algbw and busbw"),
    "workloads": ("workloads", "list the shipped workloads, or summarize workload files"),
    "import": ("import_", "write a workload file from an ONNX model or a Hugging Face config.json"),
    "topologies": ("topologies", "list the shipped topologies"),
    "layers": ("layers", "per-layer roofline report of a workload on one device"),
    "sweep": ("sweep", "run an experiment's points in parallel, resumably"),
    "plot": ("plot", "draw an experiment's figure from its results"),
    "reproduce": ("reproduce", "run every paper experiment and write figures and a report"),
    "validate": ("validate", "compare mcdla with public measurements"),
    "plan": ("plan", "find the best parallelism and memory strategy for a workload"),
}


# The options whose files a command names when it has written them (its --output is the answer itself).
ANNOUNCED = ("--trace", "--plot")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI contract's error: one line on stderr, exit 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mcdla`` parser; only ``command`` (a name of COMMANDS, if it is one) gets its
    module's options, the others their name and line for ``mcdla --help``."""
    parser = _Parser(
        prog="mcdla",
        description="Simulate multi-accelerator deep-learning training on device-centric, "
        "host-centric and memory-centric (MC-DLA) system designs.",
    )
    parser.add_argument("--version", action="version", version=f"mcdla {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, line) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=line)
        if name == command:
            importlib.import_module(f"mcdla.cli.{module}").register(command_parser)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (``mcdla`` itself
    takes no option with a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)  # --help, --version and usage errors end here, before these imports
    from mcdla.errors import InfeasibleError, InputError
    from mcdla.io.write import check_output, take_written
    from mcdla.runfiles import run_files

    take_written()
    try:
        with run_files():  # no output of a command may replace one of its inputs
            if getattr(args, "output", None) is not None:  # refused before any work, not after
                check_output(args.output, "--output")
            status = int(args.run(args) or 0)
        for path, option in take_written():  # say where the side files went (stdout has the answer)
            if option in ANNOUNCED:
                print(f"mcdla {args.command}: wrote {path} ({option})", file=sys.stderr)
        return status
    except InputError as exc:
        print(f"mcdla {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except InfeasibleError as exc:
        print(f"mcdla {args.command}: infeasible: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt as exc:
        print(f"mcdla {args.command}: interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM


if __name__ == "__main__":
    raise SystemExit(main())
