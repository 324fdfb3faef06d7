"""Reading YAML input files safely, finding inputs by name, and ``--set``.

Files are parsed with ``yaml.safe_load`` only: a tag that would build a Python object
is an input error. Shipped inputs live at the top of the
checkout (``topologies/``, ``workloads/``, ``experiments/``, ``families/``, ``validation/``,
``executions/``)
and travel as package data in a wheel, so an install finds them from any folder.

A bare name (``ring``, ``resnet34``) is looked up along a search path, first match
wins: each folder of ``MCDLA_PATH`` (``os.pathsep``-separated), then the current
folder, then the shipped data; in each, ``<folder>/<kind>/<name>.yaml``. Anything with
a path separator or a ``.yaml`` suffix is read as a path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import os

import yaml

from mcdla.errors import InputError, excerpt
from mcdla.runfiles import note_input

__all__ = ["DATA_ROOT", "search_path", "find_input", "display_path", "read_yaml", "shipped",
           "apply_overrides", "parse_set"]

# The shipped inputs. They live at the top of the checkout (``topologies/``, ``workloads/``,
# ...), where users look; a wheel carries them inside the package as ``mcdla/data/``
# (setup.py). Run from a checkout or an editable install, the package sits in the checkout.
_PACKAGED = Path(__file__).resolve().parents[1] / "data"
DATA_ROOT = _PACKAGED if (_PACKAGED / "topologies").is_dir() else _PACKAGED.parent.parent

# Input files larger than this are refused before parsing (no input is near it).
_MAX_FILE_BYTES = 8 * 2**20
# Limits on what a document may ask of the loader (hostile input is expected): nodes
# after alias expansion (the largest shipped file has a few thousand), nesting depth
# (shipped files nest under 10 levels; the constructor recurses once per level).
MAX_YAML_NODES = 1_000_000
MAX_YAML_DEPTH = 64

# libyaml's safe loader when PyYAML was built with it: the same safe subset of YAML
# (no Python object tags), about ten times faster than the pure-Python one, which
# matters for commands that read every shipped file (``mcdla workloads``).
_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_STR_TAG = "tag:yaml.org,2002:str"


class _LimitError(Exception):
    """A document over a loader limit; the message says which."""


class _StrictLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """The safe loader, refusing duplicate mapping keys (YAML says they are an error)."""

    def construct_object(self, node, deep=False):
        # A plain string is its node's value, which is all the string constructor
        # returns (each time the same object, so an alias gets what it got): a big
        # topology has hundreds of thousands, each a long way through the generic path.
        if node.tag == _STR_TAG and node.__class__ is yaml.ScalarNode:
            return node.value
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise _LimitError(f"line {line}: duplicate key {excerpt(key)}")
                seen[key] = None
            except TypeError:  # an unhashable key: the constructor below says so
                pass
        return super().construct_mapping(node, deep=deep)


def _check_shape(text: str) -> None:
    """Refuses alias bombs and deep nesting from the event stream, before composing.

    The events are read iteratively (no recursion), and each anchored node's expanded
    size is remembered, so an alias adds its whole expansion to the count without
    being expanded: a billion-laughs document is refused after reading its few lines.
    """
    sizes: dict[str, int] = {}  # anchor -> nodes its expansion holds
    stack: list[list] = []  # open collections: [anchor, nodes inside so far]
    expanded = 0  # nodes of the whole document with every alias expanded
    # Dispatch on the event's exact class (the parsers make no subclasses), scalars
    # first: a big topology is hundreds of thousands of events.
    scalar, alias = yaml.ScalarEvent, yaml.AliasEvent
    opening = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    closing = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    for event in yaml.parse(text, Loader=_SafeBase):
        kind = type(event)
        if kind is scalar:
            anchor, size = event.anchor, 1
            added = 1
        elif kind in opening:
            stack.append([event.anchor, 1])
            if len(stack) > MAX_YAML_DEPTH:
                raise _LimitError(f"line {event.start_mark.line + 1}: nested deeper than "
                                  f"{MAX_YAML_DEPTH} levels")
            expanded += 1
            if expanded > MAX_YAML_NODES:
                raise _LimitError(f"expands to more than {MAX_YAML_NODES} values "
                                  f"(aliases repeat what they name); not an mcdla input")
            continue
        elif kind in closing:
            anchor, size = stack.pop()
            added = 0  # counted as its contents arrived
        elif kind is alias:
            anchor, size = None, sizes.get(event.anchor, 1)
            added = size
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1][1] += size
        expanded += added
        if expanded > MAX_YAML_NODES:
            raise _LimitError(f"expands to more than {MAX_YAML_NODES} values "
                              f"(aliases repeat what they name); not an mcdla input")


def _safe_load(text: str) -> Any:
    """Parses ``text`` within the loader limits; raises yaml.YAMLError or _LimitError."""
    _check_shape(text)
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader


# NAME_MAX of Linux, macOS and the common file systems: a longer component cannot name
# a file, and looking it up is an OSError (ENAMETOOLONG) rather than "no such file".
_NAME_MAX = 255


def _too_long(path: str) -> bool:
    return any(len(os.fsencode(part)) > _NAME_MAX for part in path.split(os.sep))


def search_path() -> list[Path]:
    """The folders bare names are looked up in, first match wins; an ``MCDLA_PATH``
    entry that cannot name a folder is an InputError naming it."""
    extra = [p for p in os.environ.get("MCDLA_PATH", "").split(os.pathsep) if p]
    for entry in extra:
        if _too_long(entry) or "\0" in entry:
            raise InputError(f"{excerpt(entry)} cannot name a folder (a name longer than {_NAME_MAX} bytes, "
                             f"or a NUL); set it to folders separated by {os.pathsep!r}", key="MCDLA_PATH")
    return [*map(Path, extra), Path.cwd(), DATA_ROOT]


def _is_file(path: Path, key: str | None = None) -> bool:
    """``path.is_file()``, with a path the system cannot look up as an InputError."""
    try:
        return path.is_file()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot look up {excerpt(str(path))}: {reason}", key=key) from None


def shipped(folder: str) -> list[str]:
    """Names of the YAML files shipped in ``folder``, sorted."""
    return sorted(p.stem for p in (DATA_ROOT / folder).glob("*.yaml"))


def find_input(name_or_path: str, folder: str, what: str) -> Path:
    """The file a user means by ``name_or_path``: a name on the search path, or a path."""
    if "/" in name_or_path or os.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        if _too_long(name_or_path + ".yaml") or "\0" in name_or_path:
            raise InputError(f"{excerpt(name_or_path)} cannot name a {what} (longer than {_NAME_MAX} bytes, "
                             f"or a NUL)", key=what)
        for root in search_path():
            path = root / folder / f"{name_or_path}.yaml"
            if _is_file(path, "MCDLA_PATH"):
                return path
        known = ", ".join(shipped(folder)) or "none"
        raise InputError(f"unknown {what} {excerpt(name_or_path)}; shipped: {known} "
                         f"(also searched MCDLA_PATH and ./{folder}/)", key=what)
    if not _is_file(path, what):
        raise InputError(f"no such {what} file", file=str(path))
    return path


def display_path(path: Path) -> str:
    """A file's name as messages show it: relative to the shipped data when shipped."""
    try:
        return str(path.resolve().relative_to(DATA_ROOT))
    except ValueError:
        return str(path)


def read_yaml(path: Path | str) -> dict[str, Any]:
    """The mapping at the top of a YAML file; any problem is an InputError naming it."""
    path = Path(path)
    note_input(path)  # an output of this run may not be read as its input (mcdla.runfiles)
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise InputError(f"larger than {_MAX_FILE_BYTES} bytes; not an mcdla input", file=str(path))
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path)) from None
    try:
        data = _safe_load(text)
    except _LimitError as exc:
        raise InputError(str(exc), file=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{where}invalid YAML: {problem}", file=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top of the file", file=str(path))
    return data


def parse_set(item: str) -> tuple[str, Any]:
    """Splits one ``KEY=VALUE`` of ``--set``; VALUE is read as a YAML scalar."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise InputError(f"expected KEY=VALUE with a dotted KEY, got {excerpt(item)}", key="--set")
    try:
        value = _safe_load(raw) if raw.strip() else ""
    except _LimitError as exc:
        raise InputError(f"{key}: {exc}", key="--set") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(doc: dict[str, Any], sets: list[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of ``doc`` with each dotted key set to its value.

    Missing intermediate mappings are created, so a key the file leaves at its default
    can be set; a key the schema does not know is caught when the result is validated.
    """
    import copy

    result = copy.deepcopy(doc)
    for key, value in sets:
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise InputError(f"{prefix!r} is a value, not a mapping: cannot set {key!r}", key="--set")
            node = child
        node[parts[-1]] = value
    return result
