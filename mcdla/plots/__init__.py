"""Figures of the paper drawn from sweep results; see :mod:`mcdla.plots.figures`.

Nothing here imports matplotlib at import time.
"""
