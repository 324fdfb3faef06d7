"""Entry point of the ``mcdla`` console script and of ``python -m mcdla``."""

from __future__ import annotations

import argparse
import importlib
import sys

from mcdla.version import __version__

# Command name -> module in mcdla.cli (a trailing _ where the name is a Python keyword);
# order is the order of ``mcdla --help``.
COMMANDS = ("sim", "serve", "compare", "collective", "workloads", "import_", "topologies", "layers", "sweep",
            "plot", "reproduce", "validate", "plan")


# The options whose files a command names when it has written them (its --output is the answer itself).
ANNOUNCED = ("--trace", "--plot")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI contract's error: one line on stderr, exit 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mcdla",
        description="Simulate multi-accelerator deep-learning training on device-centric, "
        "host-centric and memory-centric (MC-DLA) system designs.",
    )
    parser.add_argument("--version", action="version", version=f"mcdla {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"mcdla.cli.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mcdla.errors import InfeasibleError, InputError

    from mcdla.io.write import take_written

    parser = build_parser()
    args = parser.parse_args(argv)
    from mcdla.io.write import check_output
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
