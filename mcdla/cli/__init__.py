"""The ``mcdla`` command line: thin modules that parse, call and print.

Each command lives in its own module with ``register(parser)`` (its description and
options) and ``run(args)``; :data:`mcdla.cli.main.COMMANDS` names the module and the
command's line in ``mcdla --help``. Only the module of the command being run is imported,
and each loads the simulator inside ``run``, so that ``mcdla --help`` and every command
start fast.
"""
