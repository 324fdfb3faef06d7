"""The ``mcdla`` command line: thin modules that parse, call and print.

Each command lives in its own module with ``register(subparsers)`` and ``run(args)``;
modules import only the standard library at import time so that ``mcdla --help``
starts fast, and load the simulator inside ``run``.
"""
