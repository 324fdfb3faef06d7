"""A workload file built into a :class:`~mcdla.hw.layers.Workload`: blocks expanded,
names resolved, every layer's shapes inferred by :mod:`mcdla.hw.layers`.

The file's schema (keys, layer kinds and their shape parameters, limits) is
:mod:`mcdla.config.workload`; this module is the build step, as
:mod:`mcdla.hw.topology` is for topology files.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from mcdla.config import loader
from mcdla.config.schema import Where, build
from mcdla.config.workload import (MAX_LAYERS, SPECS, RecurrentSpec, RepeatDoc, VariablesDoc,
                                   WorkloadDoc, substitute)
from mcdla.errors import InputError
from mcdla.hw import layers as hw
from mcdla.hw import shapes
from mcdla.hw.layers import Layer, Workload

__all__ = ["read_workload", "load_workload"]


_COMMON = ("kind", "name", "inputs")
_BLOCK_KEYS = ("block", "name", "args", "repeat", "inputs")


def _matrix(shaped) -> tuple[int, ...]:
    """A layer's weight matrix (of a Shaped or a Layer) as sorted (rows, columns): a
    linear's (out, in), an embedding's (vocabulary, width); one row of its parameters
    for any other layer."""
    if shaped.lowering is not None:
        return tuple(sorted((shaped.lowering.out_features, shaped.lowering.reduce)))
    width = shaped.out_shape[-1] if shaped.out_shape else 1
    return tuple(sorted((shaped.params // width, width))) if shaped.params % width == 0 else (shaped.params,)


def _check_tied(source, shaped, name: str, where: Where) -> None:
    """A tied layer reuses its source's weights: it must use them whole, as they are
    (a vocabulary projection tied to the token embedding: vocabulary x width both)."""
    mine, theirs = _matrix(shaped), _matrix(source)
    if mine != theirs:
        raise where.error(f"layer {name!r} has a {' x '.join(map(str, mine))} weight matrix; the "
                          f"{' x '.join(map(str, theirs))} weights of {source.name!r} cannot be tied to it")


def _layer_of(name: str, kind: str, inputs: tuple[int, ...], shaped: hw.Shaped, in_elems: int,
              weight_group: str | None = None, params: int = 0, in_depth: bool = True) -> Layer:
    """The layer ``shaped`` describes, ``params`` of its weight group's parameters its own."""
    return Layer(
        name=name,
        kind=kind,
        inputs=inputs,
        cheap=kind in hw.CHEAP_KINDS,
        weight_group=weight_group,
        params=params,
        out_elems_per_sample=_elems(shaped.out_shape) if shaped.kept_elems is None else shaped.kept_elems,
        in_elems_per_sample=in_elems,
        out_shape=shaped.out_shape,
        lowering=shaped.lowering,
        ew_fwd_elems=shaped.ew_fwd_elems,
        ew_bwd_elems=shaped.ew_bwd_elems,
        in_depth=in_depth,
        attention=shaped.attention,
        active_params=shaped.active_params,
    )


class _Builder:
    """Expands entries and blocks into layers, inferring shapes as it goes."""

    def __init__(self, doc: WorkloadDoc, file: str):
        self.doc, self.file = doc, file
        self.layers: list[Layer] = []
        self.names: dict[str, int] = {}
        self.groups: dict[str, int] = {}  # weight group -> its parameters
        self.active: list[str] = []  # blocks being expanded, to refuse a block that uses itself
        self._specs: dict[tuple, tuple] = {}  # validated layer specs by their entry (_prepare)
        # Inferred shapes by spec and input shapes: a repeated block's layers, once (immutable).
        self._shaped: dict[tuple, hw.Shaped] = {}
        shape = doc.input.shape
        self._add(_layer_of("input", "input", (), hw.Shaped(shape, 0), 0))

    def _add(self, layer: Layer) -> int:
        if len(self.layers) >= MAX_LAYERS:
            raise Where(self.file, "layers").error(
                f"expands to more than {MAX_LAYERS} layers (repeats and timesteps multiply); "
                "not a workload mcdla can simulate in reasonable time")
        if layer.weight_group is not None:
            self.groups[layer.weight_group] = self.groups.get(layer.weight_group, 0) + layer.params
        self.names[layer.name] = len(self.layers)
        self.layers.append(layer)
        return len(self.layers) - 1

    def expand(self, entries: Sequence[Any], where: Where, env: dict[str, Any], prefix: str,
               scope: dict[str, int], prev: int, seen: list | None = None) -> int:
        """Adds ``entries`` to the DAG; returns the index of the last layer added.

        ``seen``, one slot per entry, keeps each entry's place, substituted copy and
        reading (:meth:`_read`) for the next instance of a repeated block (the same
        entries, the same variables)."""
        for i, entry in enumerate(entries):
            if seen is not None and seen[i] is not None:
                w, entry, read = seen[i]
            else:
                w = where.child(i)
                if not isinstance(entry, dict):
                    raise w.error(f"expected a mapping (a layer or a block), got {entry!r}")
                entry = {k: substitute(v, env, w, str(k)) for k, v in entry.items()}
                read = None if "block" in entry else self._read(entry, w)
                if seen is not None:
                    seen[i] = w, entry, read
            if read is None:
                prev = self._block(entry, w, env, prefix, scope, prev)
            else:
                prev = self._layer(read, w, prefix, scope, prev)
        return prev

    def _resolve(self, entry: dict, w: Where, scope: dict[str, int], prev: int) -> tuple[int, ...]:
        if "inputs" not in entry:
            return (prev,)
        refs = entry["inputs"]
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise w.child("inputs").error(f"expected a list of layer names, got {refs!r}")
        indices = []
        for ref in refs:
            if ref not in scope:
                raise w.child("inputs").error(f"no earlier layer named {ref!r} here")
            if scope[ref] in indices:  # an add of x and x is 2x: a scale, not a layer kind
                raise w.child("inputs").error(f"names {ref!r} twice; a layer reads each input once")
            indices.append(scope[ref])
        return tuple(indices)

    def _block(self, entry: dict, w: Where, env: dict, prefix: str, scope: dict[str, int], prev: int) -> int:
        unknown = [k for k in entry if k not in _BLOCK_KEYS]
        if unknown:
            raise w.child(str(unknown[0])).error(f"unknown key; expected one of {', '.join(sorted(_BLOCK_KEYS))}")
        block_name = entry["block"]
        if block_name not in self.doc.blocks:
            known = ", ".join(sorted(self.doc.blocks)) or "none"
            raise w.child("block").error(f"unknown block {block_name!r}; defined: {known}")
        if block_name in self.active:
            raise w.child("block").error(f"block {block_name!r} instantiates itself")
        block = self.doc.blocks[block_name]
        args = entry.get("args", {})
        if not isinstance(args, dict):
            raise w.child("args").error(f"expected a mapping, got {args!r}")
        for key in args:
            if key not in block.args:
                raise w.child("args").child(str(key)).error(
                    f"block {block_name!r} takes no such argument; it takes {', '.join(block.args) or 'none'}")
        for key in block.args:
            if key not in args:
                raise w.child("args").child(key).error(f"missing; block {block_name!r} needs it")
        repeat = build(RepeatDoc, {"repeat": entry.get("repeat", 1)}, w).repeat
        base = entry.get("name", f"{block_name}{len(self.layers)}")
        if not isinstance(base, str) or not base:
            raise w.child("name").error(f"expected a name, got {base!r}")
        inputs = self._resolve(entry, w, scope, prev)
        if len(inputs) != 1:
            raise w.child("inputs").error("a block takes exactly one input")
        last = inputs[0]
        inner_env = {**env, **args}
        where = Where(self.file, f"blocks.{block_name}.layers")
        seen: list = [None] * len(block.layers)  # the entries as substituted, for the next instance
        for r in range(1, repeat + 1):
            instance = base if repeat == 1 else f"{base}.{r}"
            full = prefix + instance
            if full in self.names or instance in scope:
                raise w.child("name").error(f"a layer named {full!r} exists already")
            self.active.append(block_name)
            try:
                last = self.expand(block.layers, where, inner_env, full + "/", {"in": last}, last, seen)
            except InputError as exc:
                raise InputError(f"{exc.detail} (in block instance {full!r} at {w.key})",
                                 file=exc.file, key=exc.key) from None
            finally:
                self.active.pop()
            scope[instance] = last
        return last

    def _read(self, entry: dict, w: Where) -> tuple[str, dict, dict, tuple]:
        """A layer entry's kind, its keys over the kind's defaults, its shape keys and
        the key its validated spec is kept under (equal reprs, equal entries; an order
        that differs only misses)."""
        if "kind" not in entry:
            raise w.child("kind").error(f"missing; expected one of {', '.join(SPECS)}")
        kind = entry["kind"]
        if not isinstance(kind, str) or kind not in SPECS:  # a list or mapping is unhashable
            raise w.child("kind").error(f"unknown layer kind {kind!r}; expected one of {', '.join(SPECS)}")
        defaults = self.doc.defaults.get(kind, {})
        if not isinstance(defaults, dict):
            raise Where(self.file, f"defaults.{kind}").error(f"expected a mapping, got {defaults!r}")
        merged = {**defaults, **entry}
        fields = {k: v for k, v in merged.items() if k not in _COMMON}
        return kind, merged, fields, (kind, repr(fields))

    def _layer(self, read: tuple[str, dict, dict, tuple], w: Where, prefix: str, scope: dict[str, int],
               prev: int) -> int:
        kind, merged, fields, key = read
        name = merged.get("name", f"{kind}{len(self.layers)}")
        if not isinstance(name, str) or not name:
            raise w.child("name").error(f"expected a name, got {name!r}")
        full = prefix + name
        if full in self.names or name in scope:
            raise w.child("name").error(f"a layer named {full!r} exists already")
        inputs = self._resolve(merged, w, scope, prev)
        # A repeated block validates the same entry again and again: once is enough.
        prepared = self._specs.get(key)
        if prepared is None:
            prepared = self._specs[key] = _prepare(build(SPECS[kind], fields, w))
        spec, params, tied_to, in_depth = prepared
        tied_group = None
        if tied_to is not None:
            if tied_to not in self.names or self.layers[self.names[tied_to]].weight_group is None:
                raise w.child("tied_to").error(f"no earlier layer with weights named {tied_to!r}")
            tied_group = self.layers[self.names[tied_to]].weight_group
            params = {**params, "tied": True}
        in_shapes = [self.layers[j].out_shape for j in inputs]
        if kind in hw.RECURRENT_KINDS:
            last = self._unroll(kind, spec, full, inputs, in_shapes, w)
        else:
            dx = any(j != 0 for j in inputs)  # no gradient flows into the data
            inferred = (key, tied_group is not None, dx, *in_shapes)  # all that infer reads
            shaped = self._shaped.get(inferred)
            if shaped is None:
                try:
                    shaped = self._shaped[inferred] = shapes.infer(kind, in_shapes, dx=dx, **params)
                except ValueError as exc:
                    raise w.error(f"layer {full!r}: {exc}") from None
            if tied_group is not None:
                _check_tied(self.layers[self.names[tied_to]], shaped, full, w.child("tied_to"))
            group = tied_group or (full if shaped.params else None)
            in_elems = sum(_elems(shape) for shape in in_shapes)
            last = self._add(_layer_of(full, kind, inputs, shaped, in_elems, group, shaped.params, in_depth))
        scope[name] = last
        return last

    def _unroll(self, kind: str, spec: RecurrentSpec, full: str, inputs: tuple[int, ...],
                in_shapes: list[tuple[int, ...]], w: Where) -> int:
        if len(inputs) != 1 or len(in_shapes[0]) != 2:
            raise w.error(f"layer {full!r}: a recurrent layer reads one sequence (timesteps, features), "
                          f"got shapes {in_shapes}")
        steps, features = in_shapes[0]
        carried = hw.STATE_CARRIED[kind] * spec.hidden
        prev = -1
        for t in range(steps):
            shaped = shapes.recurrent_step(kind, features, spec.hidden, first=t == 0, bias=spec.bias)
            step_inputs = inputs if t == 0 else inputs + (prev,)
            in_elems = features + (carried if t else 0)  # x_t and the carried state only
            prev = self._add(_layer_of(f"{full}/t{t}", kind, step_inputs, shaped, in_elems, full,
                                       shaped.params if t == 0 else 0))
        return prev

    def workload(self) -> Workload:
        return Workload(
            name=self.doc.name,
            layers=tuple(self.layers),
            weight_groups=self.groups,
            precision_bytes=self.doc.precision_bytes,
            optimizer=self.doc.optimizer,
            master_weights=self.doc.master_weights,
            description=self.doc.description,
            source=self.file,
            index=dict(self.names),
        )


def _prepare(spec) -> tuple[Any, dict[str, Any], str | None, bool]:
    """A validated layer spec as the builder uses it: (the spec, its shape keys for
    :func:`mcdla.hw.shapes.infer`, the layer it is tied to, whether it counts in the
    depth), made once per distinct entry rather than once per layer."""
    params = dataclasses.asdict(spec)
    tied_to = params.pop("tied_to", None)
    in_depth = not params.pop("shortcut", False)
    return spec, params, tied_to, in_depth


def _elems(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def read_workload(doc: dict[str, Any], file: str) -> Workload:
    """Builds a Workload from the mapping ``doc`` read from ``file``."""
    if "template" in doc:  # a transformer family's parameters: expanded into layers first
        from mcdla.config.templates import expand

        doc = expand(doc, file)
    where = Where(file)
    raw_vars = {k: doc[k] for k in ("hidden", "timesteps") if k in doc}
    # Variables are substituted before validation, so "$hidden" in input is allowed.
    typed = build(VariablesDoc, raw_vars, where)
    env = {k: v for k, v in dataclasses.asdict(typed).items() if v is not None}
    substituted = dict(doc)
    if isinstance(doc.get("input"), dict):
        substituted["input"] = {k: substitute(v, env, where.child("input"), str(k))
                                for k, v in doc["input"].items()}
    parsed = build(WorkloadDoc, substituted, where)
    if not parsed.layers:
        raise where.child("layers").error("a workload needs at least one layer")
    for kind in parsed.defaults:
        if kind not in SPECS:
            raise where.child("defaults").child(kind).error(
                f"unknown layer kind {kind!r}; expected one of {', '.join(SPECS)}")
    builder = _Builder(parsed, file)
    builder.expand(parsed.layers, where.child("layers"), env, "", dict(builder.names), 0)
    return builder.workload()


def load_workload(name_or_path: str, sets: Sequence[tuple[str, Any]] = ()) -> Workload:
    """Loads a shipped workload by name, or a workload file by path.

    ``sets`` are (dotted key within the workload document, value) pairs applied
    before validation, e.g. ``[("hidden", 2048), ("precision_bytes", 2)]``.
    """
    path = loader.find_input(name_or_path, "workloads", "workload")
    doc = loader.read_yaml(path)
    if sets:
        doc = loader.apply_overrides(doc, list(sets))
    return read_workload(doc, loader.display_path(path))

