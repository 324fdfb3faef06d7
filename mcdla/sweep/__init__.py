"""Sweeps: run the points of an experiment in parallel, resumably, into a results table.

- :mod:`mcdla.sweep.engine`: what to run, in which order, and the bookkeeping;
- :mod:`mcdla.sweep.runners`: running one point and classifying its failure;
- :mod:`mcdla.sweep.executors`: local process pool or Dask;
- :mod:`mcdla.sweep.store`: the journal and the results table of a sweep folder;
- :mod:`mcdla.sweep.progress`: the progress line;
- :mod:`mcdla.sweep.report`: the paper-vs-mcdla report of ``mcdla reproduce``.
"""

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """``mcdla.sweep("fig09")`` is the Python API's sweep (:func:`mcdla.sweep.engine.sweep`).

    Python makes a subpackage an attribute of its parent once it is imported, so the
    name ``mcdla.sweep`` is always this package; calling the package runs a sweep.
    """

    def __call__(self, experiment, **options):
        from mcdla.sweep.engine import sweep

        return sweep(experiment, **options)


_sys.modules[__name__].__class__ = _CallableModule
