"""The kinds of node a topology's graph holds, each one record of its rules.

Every node of a built topology carries its kind's :attr:`NodeKind.name` (``kind`` on
the graph node); whatever asks what a node may do (hold a backing store, relay a DMA,
carry a ring, pair ranks through itself, count against a link budget) asks its record
here, never its name's prefix. Adding a kind is one :func:`NODE_KINDS.register
<mcdla.registry.Registry.register>` entry (docs/extending.md); a kind a topology file
places also names its file key (:attr:`NodeKind.key`, a field of
:class:`~mcdla.config.topology.TopologyDoc`).

The names are those the graph has carried since the paper's designs (``memory`` for a
memory-node, ``switch`` for a PCIe switch, ``fabric`` for an NVSwitch or any fabric
switch); :attr:`NodeKind.label` says what each is in messages. A fabric switch's place
in a multi-tier network (a domain's switch, a leaf, a pod spine, a core, the switch of
a rail) is not a kind but its role in the fabric, found from the links by
:class:`mcdla.hw.fabric.Fabric` (home, exit, tier, rail); ``spine`` marks the fabric
switches listed under ``spine_switches`` (ways out of the domains).
"""

from __future__ import annotations

from dataclasses import dataclass

from mcdla.registry import Registry

__all__ = ["NodeKind", "NODE_KINDS", "kind_of", "PLACED_KINDS"]


@dataclass(frozen=True)
class NodeKind:
    """What a node of this kind is and may do.

    ``key``: the topology-file key listing such nodes ("" for a kind no file places
    yet); ``prefix``: the names an integer count there generates (``D0``, ``D1``, ...).
    ``holds_memory``: a backing store may be a node of this kind; ``relays_dma``: a DMA
    between a device and its store may pass through it (devices and memory-nodes forward
    ring traffic only); ``on_rings``: a collective ring may run through it; ``pairs``:
    any two ranks on it reach each other through it (a fabric switch: the switch
    algorithms pair them); ``host_side``: a link to it is a host interface, not one of
    the other end's high-bandwidth links (a PCIe switch: a device's PCIe lanes).
    ``budget``: the key whose ``links`` (or a part's ports) bounds its links ("" none).
    """

    name: str
    label: str
    key: str = ""
    prefix: str = ""
    holds_memory: bool = False
    relays_dma: bool = False
    on_rings: bool = False
    pairs: bool = False
    host_side: bool = False
    budget: str = ""


NODE_KINDS: Registry[NodeKind] = Registry("node kind")


def _add(kind: NodeKind) -> None:
    NODE_KINDS.register(kind.name)(kind)


_add(NodeKind("device", "device", key="devices", prefix="D", on_rings=True, budget="device.links"))
_add(NodeKind("memory", "memory-node", key="memory_nodes", prefix="M", holds_memory=True, on_rings=True,
              budget="memory_node.links"))
_add(NodeKind("switch", "PCIe switch", key="switches", prefix="SW", relays_dma=True, host_side=True))
# Fabric switches (NVSwitch, a leaf) and the spines above them (spine_switches, SP..): one
# kind, ports from the part (fabric_switch, spine_switch); the spine flag is their role.
_add(NodeKind("fabric", "fabric switch", key="fabric_switches", prefix="FS", relays_dma=True, on_rings=True,
              pairs=True, budget="ports"))
_add(NodeKind("cpu", "CPU socket", key="host.sockets", prefix="CPU", holds_memory=True))
# NVMe drives behind PCIe switches: the nvme memory tier's stores (hw/tiers.py).
_add(NodeKind("nvme", "NVMe drive", key="nvme_drives", prefix="NV", holds_memory=True))
# Kinds the model knows but no topology file places yet (their traffic is modelled
# elsewhere: a NIC as the ports its devices share, ``nics``; a CXL expander as a
# memory-node behind a PCIe switch, dgx_h100_cxl): the rules a node of them would follow.
_add(NodeKind("nic", "NIC", relays_dma=True))
_add(NodeKind("cxl_expander", "CXL memory expander", holds_memory=True))

# The spine switches' file key and prefix: fabric switches above the domains'.
SPINE_KEY, SPINE_PREFIX = "spine_switches", "SP"

# Kinds a topology file places, in the order build_topology adds their nodes.
PLACED_KINDS = tuple(name for name in NODE_KINDS if NODE_KINDS.get(name).key)


def kind_of(kinds, node: str) -> NodeKind:
    """The record of ``node``'s kind, ``kinds`` mapping node -> kind name."""
    return NODE_KINDS.get(kinds[node])
