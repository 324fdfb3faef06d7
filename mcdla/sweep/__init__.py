"""Sweeps: run the points of an experiment in parallel, resumably, into a results table.

- :mod:`mcdla.sweep.engine`: what to run, in which order, and the bookkeeping;
- :mod:`mcdla.sweep.runners`: running one point and classifying its failure;
- :mod:`mcdla.sweep.executors`: local process pool or Dask;
- :mod:`mcdla.sweep.store`: the journal and the results table of a sweep folder;
- :mod:`mcdla.sweep.progress`: the progress line;
- :mod:`mcdla.sweep.report`: the paper-vs-mcdla report of ``mcdla reproduce``.
"""
