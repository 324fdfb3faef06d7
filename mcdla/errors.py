"""The three kinds of failure a user can meet, kept apart so each gets its exit status.

- :class:`InputError`: the input is wrong (a bad YAML key, unit, shape or reference,
  a bad option). The CLI prints its one-line message and exits 2, writing nothing.
- :class:`InfeasibleError`: the input is valid but the machine cannot run it (a
  tensor that does not fit in any memory). A sweep records it as the point's result.
- anything else, including :class:`InvariantError`, is a bug in mcdla: exit 1.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input, reported as ``FILE: KEY: what was expected``."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file, self.key, self.detail = file, key, message
        parts = [p for p in (file, key) if p]
        super().__init__(": ".join(parts + [message]))


class InfeasibleError(Exception):
    """A valid configuration the simulated machine cannot run (e.g. out of memory)."""


class InvariantError(AssertionError):
    """A conservation law of the simulation was broken: an internal bug."""
