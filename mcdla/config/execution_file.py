"""The execution as a file: ``mcdla sim --execution FILE`` beside topology and workload.

An execution file holds what ``--set execution.KEY`` and ``--set training.KEY`` say,
as two mappings (``executions/`` ships examples, found by name as topologies are)::

    description: ZeRO-Infinity with the model state on NVMe
    execution:
      zero: 3
      place: {params: nvme}          # execution.place.params
    training:
      checkpoint: full

:func:`read_execution` turns it into those ``--set`` pairs, in file order, so a
``--set`` on the command line (applied after) overrides it. Keys are checked here,
against the file (an unknown one names the file and the key); values are checked
too, field by field, where the run's inputs are built; combinations of options, which
a ``--set`` may still complete, once all are known.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from mcdla.config import loader
from mcdla.config.execution import EXECUTION_KEYS, ExecutionSpec, PlaceSpec
from mcdla.config.schema import Where, build
from mcdla.config.training import TrainingSpec
from mcdla.errors import InputError, excerpt

__all__ = ["read_execution", "EXECUTIONS_FOLDER"]

EXECUTIONS_FOLDER = "executions"  # shipped execution files, found by name
_TOP = ("description", "execution", "training")


def read_execution(name_or_path: str) -> list[tuple[str, Any]]:
    """The ``--set`` pairs an execution file (a name in ``executions/`` or a path) says."""
    path = loader.find_input(name_or_path, EXECUTIONS_FOLDER, "execution")
    file = loader.display_path(path)
    try:
        doc = loader.read_yaml(path)
    except InputError as exc:
        raise InputError(exc.detail, file=file, key=exc.key) from None
    top = Where(file)
    for key in doc:
        if key not in _TOP:
            raise top.child(str(key)).error(f"unknown key; an execution file has {', '.join(_TOP)}")
    execution, training = (_mapping(doc, key, top) for key in ("execution", "training"))
    _check_keys(execution, EXECUTION_KEYS, top.child("execution"))
    _check_keys(execution.get("place", {}), tuple(f.name for f in fields(PlaceSpec)),
                top.child("execution").child("place"))
    _check_keys(training, tuple(f.name for f in fields(TrainingSpec)), top.child("training"))
    build(TrainingSpec, training, top.child("training"))  # each value, named in the file
    try:
        build(ExecutionSpec, execution, top.child("execution"))
    except InputError as exc:
        if exc.file == file:  # a value of the file's; a combination (no file) waits for the --set keys
            raise
    sets = [(f"execution.place.{k}", v) for k, v in execution.get("place", {}).items()]
    sets += [(f"execution.{k}", v) for k, v in execution.items() if k != "place"]
    sets += [(f"training.{k}", v) for k, v in training.items()]
    return sets


def _mapping(doc: dict, key: str, top: Where) -> dict:
    value = doc.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise top.child(key).error(f"expected a mapping of keys to values, got {excerpt(value)}")
    return value


def _check_keys(doc: Any, known: tuple[str, ...], where: Where) -> None:
    if not isinstance(doc, dict):
        raise where.error(f"expected a mapping of keys to values, got {excerpt(doc)}")
    for key in doc:
        if key not in known:
            raise where.child(str(key)).error(f"unknown key; expected one of {', '.join(known)}")
