"""NCCL's cost model of ring collectives: protocols, fixed and per-step latency, caps.

The paper's collectives are ideal alpha-beta rings (:mod:`mcdla.hw.collective_model`).
A real NCCL collective also pays, per its own tuning model (``src/graph/tuning.cc``
of NVIDIA/nccl; values below from the v2.7 file, commit 01afd20a, and NCCL's protocol
documentation):

- a fixed cost per collective, ``base_latency_s`` (kernel launch and the
  synchronization of the ranks), by protocol;
- a latency per ring step, by protocol and by the hop's hardware: ``hop_latency_s``
  over NVLink inside a machine, ``net_hop_latency_s`` over the network between
  machines (NCCL's ``hwLat[NVLINK]`` and ``hwLat[NET]``). The low-latency protocols
  hand a piece to the next rank with a flag in the same store, so an NVLink step costs
  well under a microsecond; Simple waits for a memory fence and a flag per chunk; a
  network step adds the NIC's post and completion. NCCL charges a ring of ``nNodes``
  machines ``(nsteps - nInterSteps)`` NVLink steps and ``nInterSteps`` network steps
  (``nInterSteps = 2 (nNodes - 1)`` for all-reduce), not the slowest hop every step;
  mcdla sums each segment's own latency along the ring the same way
  (:class:`mcdla.sim.collectives.RingCosts`);
- a payload efficiency: LL stores 4 bytes of data with 4 bytes of flag (8-byte
  stores), LL128 120 of every 128 bytes; both use fewer threads per byte, which
  NCCL's model expresses as the fraction of the bus bandwidth each reaches (LL: 1/4
  for all-reduce, 1/3 otherwise on one node; LL128: 0.92, and at most
  ``ll128MaxBwPerCh`` GB/s per channel; Simple: all of it);
- the protocol NCCL's tuner picks: the one its model says is fastest for the size.

mcdla keeps the bandwidth from the flow network (the links' capacities, contended by
everything else) and takes from NCCL only these protocol facts. Each directed ring is
one NCCL channel. The flags are real bytes on the wire (``wire_factor``); the rest of a
protocol's shortfall is a per-ring rate cap (:func:`ring_cap_Bps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = ["Protocol", "PROTOCOLS", "ring_cap_Bps", "NVLS_LATENCY_S", "NVLS_EFFICIENCY", "NVLS_CHANNELS", "nvls_fraction",
           "tree_latency_s", "nvls_tree_latency_s"]


@dataclass(frozen=True)
class Protocol:
    """One NCCL protocol, as NCCL's own tuning model describes it (single node, ring)."""

    name: str
    base_latency_s: float  # per collective: launch and synchronization (tuning.cc baseLat, Ring)
    hop_latency_s: float  # per ring step over NVLink (tuning.cc hwLat[NVLINK][Ring])
    net_hop_latency_s: float  # per ring step between machines (tuning.cc hwLat[NET][Ring])
    wire_factor: float  # bytes on the wire per byte of data (flags)
    bus_fraction: Mapping[str, float]  # op -> fraction of the ring's bandwidth reached (data bytes)
    max_channel_Bps: Mapping[str, float] | None = None  # op -> data rate cap per channel (ring)

    def fraction(self, op: str) -> float:
        return self.bus_fraction.get(op, self.bus_fraction["other"])


_GB = 1e9
PROTOCOLS: dict[str, Protocol] = {
    # LL: 8-byte stores of 4 data bytes and a 4-byte flag (NCCL docs, "LL protocol");
    # tuning.cc: baseLat 3.6 us, hwLat NVLink 0.47 us, NET 2.7 us, busBw x 1/4
    # (all-reduce) or 1/3.
    "LL": Protocol("LL", 3.6e-6, 0.47e-6, 2.7e-6, 2.0, {"all_reduce": 1 / 4, "other": 1 / 3}),
    # LL128: 128-byte lines of 120 data bytes and an 8-byte flag; tuning.cc: baseLat
    # 10 us, hwLat NVLink 1.9 us, NET 4.0 us, busBw x 0.92, ll128MaxBwPerCh (GB/s per
    # channel): broadcast 18.8, all-gather 18.3, reduce-scatter 15.2, all-reduce 16.7.
    "LL128": Protocol("LL128", 10.0e-6, 1.9e-6, 4.0e-6, 128 / 120, {"other": 0.92},
                      {"broadcast": 18.8 * _GB, "all_gather": 18.3 * _GB,
                       "reduce_scatter": 15.2 * _GB, "all_reduce": 16.7 * _GB}),
    # Simple: plain stores, a fence and a flag per chunk; tuning.cc: baseLat 8.4 us,
    # hwLat NVLink 3.4 us, NET 9.6 us, the whole bus bandwidth.
    "Simple": Protocol("Simple", 8.4e-6, 3.4e-6, 9.6e-6, 1.0, {"other": 1.0}),
}


def ring_cap_Bps(protocol: Protocol, op: str, ring_Bps: float) -> float:
    """The data rate one ring can reach under ``protocol`` on links of ``ring_Bps``
    (data and flags together): NCCL's fraction of it, and the per-channel cap."""
    cap = protocol.fraction(op) * ring_Bps
    if protocol.max_channel_Bps is not None:
        cap = min(cap, protocol.max_channel_Bps.get(op, cap))
    return cap



# NVLS (NVLink SHARP): the NVSwitch reduces and multicasts (mcdla's ``in_switch``), one
# protocol (Simple). From NCCL 2.30.7's src/graph/tuning.cc and src/transport/nvls.cc:
# - latency: baseLat 0 and hwLat[NVLINK][NVLS][Simple] 25 us, paid once per collective
#   (NCCL's latency for NVLS is intraLat alone, not per step);
NVLS_LATENCY_S = 25e-6
# - nvlsEfficiency[Hopper] 0.85 (Blackwell 0.74: no mcdla design runs nccl on NVLink 5);
NVLS_EFFICIENCY = 0.85
# - NVLS_NCHANNELS_SM90 16 channels, of which NCCL's model counts (nCh-1)/nCh as moving
#   data (busBw = nCh x bwIntra x nvlsEfficiency x (nCh-1)/nCh).
NVLS_CHANNELS = 16


def nvls_fraction() -> float:
    """The fraction of the in-switch algorithm's link-limited rate NVLS reaches (NCCL's
    model: the efficiency and the one channel of ``NVLS_CHANNELS`` that moves no data)."""
    return NVLS_EFFICIENCY * (NVLS_CHANNELS - 1) / NVLS_CHANNELS


# NCCL's tree across machines (Simple): a chain inside each machine, a double binary tree
# between them, reduction up and broadcast down pipelined in chunks. Its latency in NCCL
# 2.30.7's tuning.cc: baseLat[Tree][Simple] 8.4 us + 2 x ((ppn - 1) x
# hwLat[NVLINK][Tree][Simple] 4.0 us + log2i(nNodes) x hwLat[NET][Tree][Simple] 14 us).
TREE_BASE_LATENCY_S = 8.4e-6
TREE_NVLINK_HOP_S = 4.0e-6
TREE_NET_HOP_S = 14e-6


def tree_latency_s(ranks_per_node: int, nodes: int) -> float:
    """NCCL's modelled latency of a tree all-reduce (Simple) over ``nodes`` machines of
    ``ranks_per_node`` ranks each."""
    log2i = max(nodes, 1).bit_length() - 1  # NCCL's log2i: floor(log2)
    return TREE_BASE_LATENCY_S + 2 * ((ranks_per_node - 1) * TREE_NVLINK_HOP_S + log2i * TREE_NET_HOP_S)


# NVLS-tree: NVLS inside each machine, a tree between them (Simple). NCCL 2.30.7's
# tuning.cc: baseLat 0, latency hwLat[NVLINK][NVLSTree] 25 us + 2 x log2i(nNodes) x
# hwLat[NET][NVLSTree] 20.9 us (NCCL adds its graph's latencyInter, unknown here).
NVLS_TREE_NVLINK_S = 25e-6
NVLS_TREE_NET_HOP_S = 20.9e-6


def nvls_tree_latency_s(nodes: int) -> float:
    """NCCL's modelled latency of an NVLS-tree all-reduce over ``nodes`` machines."""
    log2i = max(nodes, 1).bit_length() - 1
    return NVLS_TREE_NVLINK_S + 2 * log2i * NVLS_TREE_NET_HOP_S
