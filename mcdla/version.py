"""mcdla's version, in one place below everything that prints it (the package root
re-exports it; pyproject.toml's ``version`` must match, tests/test_install.py)."""

__version__ = "0.1.0"
