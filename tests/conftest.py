"""Test-wide settings.

Hypothesis runs derandomized by default, so the test suite is deterministic: the same
checkout passes or fails the same way on every machine and every run. To explore
new random examples (and find new bugs), run with ``--hypothesis-profile=explore``.
"""

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")

# Experiments name registered runners only; the sweep tests' fakes are registered the
# way a user registers their own, through the environment (inherited by subprocesses).
import os  # noqa: E402

os.environ["MCDLA_RUNNERS"] = ",".join(f"sweep_fakes:{name}" for name in ("run", "slow", "flaky", "exits", "odd", "dies"))
