"""The topology file: which nodes exist, how they are wired, the rings, the backing store.

A topology YAML names its building blocks by preset (``device: table2``,
``host: xeon``, link types ``nvlink: nvlink2``), optionally as a mapping with
``preset:`` plus field overrides. :func:`resolve_presets` replaces every preset
name by the preset's fields, so that ``--set device.hbm_bw=...`` or
``--set links.pcie.bw=...`` can then override any field; a ``--set`` that assigns a
preset name (``--set links.pcie=pcie4_x16``) is resolved the same way. Then
:func:`mcdla.config.schema.build` checks the shape and units into
:class:`TopologyDoc`. The graph checks (links exist, rings are cycles, link budgets)
need the whole picture and are done by :mod:`mcdla.hw.topology`.

File format (every key but ``memory_node``/``host``/``rings``/``serves`` required)::

    name: ring
    description: one line
    device: table2                    # preset name, or {preset: table2, hbm_bw: ...}
    memory_node: table2               # omitted when there are no memory-nodes
    host: xeon                        # CPU sockets CPU0..; omitted when there is no host
    nvme: d7_p5500_3t84               # NVMe drives' part; omitted when there are none
    nvme_drives: 8                    # NVMe drives NV0.. (the nvme memory tier)
    links: {nvlink: nvlink2}          # link-type alias -> preset (or mapping)
    devices: 8                        # D0..D7 (or an explicit list of names)
    memory_nodes: 8                   # M0..M7
    switches: 0                       # PCIe switches SW0..
    fabric_switch: nvswitch3          # fabric switch part (presets section switches)
    fabric_switches: 1                # fabric switches FS0..
    spine_switch: quantum2            # spine switches' part (default: fabric_switch's)
    spine_switches: 1                 # spine switches SP0.. (a two-level fabric)
    connections:                      # [a, b, link type] or [a, b, link type, parallel links]
      - [D0, M0, nvlink, 3]
    rings:                            # node cycles (first node not repeated); omitted: derived
      - [D0, M0, D1, M1, ...]
    ring_directions: both             # both | as_listed
    backing: memory_nodes             # host | memory_nodes | none
    serves: {D0: [M0, M7], ...}       # device -> its stores, home store first
    device_memory: bounded            # bounded | unbounded (the oracle)
    collective: ring                  # collective algorithm by default: ring (ideal) | nccl
    offload: offload_all              # offload policy by default: offload_all (the paper's) | capacity_aware

or, instead of the nodes, links and stores, a generator and its parameters
(:mod:`mcdla.config.generators`)::

    generator: {name: ring, devices: 64, links_per_pair: 3}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from mcdla.config import loader
from mcdla.config.generators import expand
from mcdla.config.hardware import DeviceSpec, HostSpec, LinkSpec, MemoryNodeSpec, NvmeSpec, SwitchSpec
from mcdla.config.schema import Label, NodeName, Where, build, check_physical
from mcdla.errors import InputError

__all__ = ["TopologyDoc", "PRESETS_FILE", "load_presets", "resolve_presets", "read_topology_doc"]

# Where the named building blocks live, relative to the project root.
PRESETS_FILE = Path("topologies") / "presets" / "hardware.yaml"

# Topology key -> section of the presets file that names its values.
_PRESET_SECTIONS = {"device": "devices", "memory_node": "memory_nodes", "host": "hosts",
                    "fabric_switch": "switches", "spine_switch": "switches", "nvme": "nvme"}


@dataclass(frozen=True)
class TopologyDoc:
    """A topology file after preset resolution, overrides and unit conversion."""

    name: Label
    description: str
    device: DeviceSpec
    links: dict[str, LinkSpec]
    devices: int | tuple[NodeName, ...]
    connections: tuple[tuple[Any, ...], ...] = ()
    memory_node: MemoryNodeSpec | None = None
    host: HostSpec | None = None
    memory_nodes: int | tuple[NodeName, ...] = 0
    switches: int | tuple[NodeName, ...] = 0
    fabric_switch: SwitchSpec | None = None  # the fabric switches' part (NVSwitch), a preset
    fabric_switches: int | tuple[NodeName, ...] = 0  # fabric switches FS0..
    spine_switch: SwitchSpec | None = None  # the spines' part (a scale-out switch); default fabric_switch
    spine_switches: int | tuple[NodeName, ...] = 0  # spine switches SP0.., above the fabric switches
    rings: tuple[tuple[str, ...], ...] | None = None  # None: derived at load (mcdla.hw.rings)
    ring_directions: Literal["both", "as_listed"] = "both"
    backing: Literal["host", "memory_nodes", "none"] = "none"
    serves: dict[str, tuple[str, ...]] = field(default_factory=dict)
    device_memory: Literal["bounded", "unbounded"] = "bounded"
    collective: str = "ring"  # the design's collective algorithm, unless execution.collective says
    # The design's offload policy, unless execution.offload says: the paper's designs
    # offload every feature map (vDNN offload-all, its stress policy); a real machine's
    # file says what frameworks do there, capacity_aware (offload only what does not fit).
    offload: str = "offload_all"
    # Devices that share one NIC: each group's links to its spine pass through the NIC's
    # transmit and receive ports (NIC<g>/tx, NIC<g>/rx), as GPUs under one PCIe switch.
    nics: tuple[tuple[str, ...], ...] = ()
    generator: str = ""  # the generator that wrote the nodes and links ("": hand-written)
    # The generator's own symmetry: node-name prefix -> the index step of the translation
    # that maps its design onto itself (mcdla.hw.translation); written by generators only.
    translation: dict[str, int] = field(default_factory=dict)
    # A cluster's node cell: prefix -> one node's nodes of it (numbered node by node), and
    # the nodes under one leaf's switches; a 3D run shifts nodes within its stages with it
    # (mcdla.hw.translation, NodeCells). Written by the cluster generator only.
    node_cells: dict[str, int] = field(default_factory=dict)
    leaf_nodes: int = 0
    # The ring generator's derived rings, known without a search (generators.ring_cycle):
    # the nodes of these prefixes index by index, ring_copies times. Written by it only.
    ring_prefixes: tuple[str, ...] = ()
    ring_copies: int = 0
    nvme: NvmeSpec | None = None  # the NVMe drives' part (a preset of section nvme)
    nvme_drives: int | tuple[NodeName, ...] = 0  # NVMe drives NV0.., the nvme memory tier


def load_presets() -> dict[str, Any]:
    """The presets file as a mapping of sections (devices, memory_nodes, hosts, links)."""
    return loader.read_yaml(loader.DATA_ROOT / PRESETS_FILE)


def _resolve_one(value: Any, section: str, presets: Mapping[str, Any], where: Where) -> Any:
    """A preset name or ``{preset: name, field: override}`` -> a plain field mapping."""
    known = presets.get(section) or {}
    if isinstance(value, str):
        name, overrides = value, {}
    elif isinstance(value, dict) and "preset" in value:
        name = value["preset"]
        overrides = {k: v for k, v in value.items() if k != "preset"}
        where = where.child("preset")
    else:
        return value  # already a full mapping (or a wrong type the schema will name)
    if not isinstance(name, str) or name not in known:
        choices = ", ".join(sorted(known)) or "none"
        raise where.error(f"unknown {section} preset {name!r}; presets: {choices}")
    resolved = copy.deepcopy(known[name])
    resolved.update(overrides)
    return resolved


def resolve_presets(doc: dict[str, Any], presets: Mapping[str, Any], file: str) -> dict[str, Any]:
    """A copy of ``doc`` with device, memory_node, host and every link type resolved.

    Idempotent: a resolved mapping has no ``preset`` key and is left alone, so it is
    safe to call again after ``--set`` overrides.
    """
    result = copy.deepcopy(doc)
    top = Where(file)
    for key, section in _PRESET_SECTIONS.items():
        if result.get(key) is not None:
            result[key] = _resolve_one(result[key], section, presets, top.child(key))
    links = result.get("links")
    if isinstance(links, dict):
        result["links"] = {
            alias: _resolve_one(value, "links", presets, top.child("links").child(str(alias)))
            for alias, value in links.items()
        }
    return result


def _link_presets(doc: Mapping[str, Any]) -> dict[str, str]:
    """Link preset name -> the alias built from it, for names used by one alias only."""
    links = doc.get("links")
    if not isinstance(links, dict):
        return {}
    named: dict[str, list[str]] = {}
    for alias, value in links.items():
        name = value if isinstance(value, str) else (value or {}).get("preset") if isinstance(value, dict) else None
        if isinstance(name, str):
            named.setdefault(name, []).append(str(alias))
    return {name: aliases[0] for name, aliases in named.items() if len(aliases) == 1}


def _redirect(sets: Sequence[tuple[str, Any]], doc: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``links.<preset>.<field>`` -> ``links.<alias>.<field>`` when the preset is not an alias.

    Lets ``--set links.pcie3_x16.bw=...`` address the link type built from the
    ``pcie3_x16`` preset whatever the file calls it.
    """
    presets = _link_presets(doc)
    aliases = doc.get("links") if isinstance(doc.get("links"), dict) else {}
    result = []
    for key, value in sets:
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] == "links" and parts[1] not in aliases and parts[1] in presets:
            key = ".".join(["links", presets[parts[1]], *parts[2:]])
        result.append((key, value))
    return result


def read_topology_doc(
    path: Path, sets: Sequence[tuple[str, Any]] = (), file: str | None = None
) -> TopologyDoc:
    """Reads, resolves presets, applies ``sets`` and validates one topology file.

    ``file`` is the name errors give the file (default: ``path``).
    """
    file = file or str(path)
    try:
        raw = loader.read_yaml(path)
    except InputError as exc:
        raise InputError(exc.detail, file=file, key=exc.key) from None
    presets = load_presets()
    # KEY.preset=NAME swaps the part for preset NAME: the file's part is resolved to its
    # fields first, which would override the new preset's, so it replaces KEY whole,
    # before the other overrides of KEY's fields.
    swaps, others = [], []
    for key, value in sets:
        part = key[:-len(".preset")] if key.endswith(".preset") else ""
        if part in _PRESET_SECTIONS or (part.startswith("links.") and part.count(".") == 1):  # links.ALIAS
            swaps.append((part, {"preset": value}))
        else:
            others.append((key, value))
    sets = swaps + others
    redirected = _redirect(list(sets), raw)
    doc = resolve_presets(raw, presets, file)
    if redirected:
        try:
            doc = loader.apply_overrides(doc, redirected)
        except InputError as exc:
            raise InputError(exc.detail, file=file, key=exc.key) from None
        doc = resolve_presets(doc, presets, file)
    # After the overrides, so a generator reads the final presets and parameters.
    built = build(TopologyDoc, expand(doc, Where(file)), Where(file))
    _check_effective(built, Where(file))
    return built


def _check_effective(doc: TopologyDoc, where: Where) -> None:
    """The bandwidth floor (:func:`~mcdla.config.schema.check_physical`) holds for what a
    part attains, bandwidth x efficiency, not only for its peak: an efficiency of 1e-300
    must not make a 1 kB/s floor a 1e-289 B/s link."""
    parts = [(f"links.{alias}.efficiency", link.effective_bw_Bps, link.bw) for alias, link in doc.links.items()]
    parts.append(("device.hbm_efficiency", doc.device.effective_hbm_bw_Bps, doc.device.hbm_bw))
    for key, attained, peak in parts:
        check_physical(attained, "bandwidth", Where(where.file, key),
                       f"{peak:.3g} B/s x {attained / peak:.3g} = {attained:.3g} B/s")
