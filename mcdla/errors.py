"""The three kinds of failure a user can meet, kept apart so each gets its exit status.

- :class:`InputError`: the input is wrong (a bad YAML key, unit, shape or reference,
  a bad option). The CLI prints its one-line message and exits 2, writing nothing.
- :class:`InfeasibleError`: the input is valid but the machine cannot run it (a
  tensor that does not fit in any memory). A sweep records it as the point's result.
- anything else, including :class:`InvariantError`, is a bug in mcdla: exit 1.
"""

from __future__ import annotations

from typing import Any

# The longest value an error message echoes, and the longest message: a hostile
# input (a 2 GiB alias expansion, a megabyte key) must not become a 2 GiB message.
EXCERPT_CHARS = 60
MESSAGE_CHARS = 400


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for echoing user input in a message."""
    if isinstance(value, (dict, list, tuple, set)) and len(value) > limit:
        text = f"<{type(value).__name__} of {len(value)} items>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str) -> str:
    text = " ".join(text.splitlines())  # one line, whatever the input held
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


class InputError(Exception):
    """Bad input, reported as ``FILE: KEY: what was expected`` on one short line."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        file = _clip(file) if file else file
        key = _clip(key) if key else key
        self.file, self.key, self.detail = file, key, _clip(message)
        parts = [p for p in (file, key) if p]
        super().__init__(_clip(": ".join(parts + [self.detail])))


class InfeasibleError(Exception):
    """A valid configuration the simulated machine cannot run (e.g. out of memory)."""


class InvariantError(AssertionError):
    """A conservation law of the simulation was broken: an internal bug."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (the CLI exits 128 + the signal's number)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
