"""NCCL's cost model of ring collectives: protocols, fixed and per-step latency, caps.

The paper's collectives are ideal alpha-beta rings (:mod:`mcdla.hw.collective_model`).
A real NCCL collective also pays, per its own tuning model (``src/graph/tuning.cc``
of NVIDIA/nccl; values below from the v2.7 file, commit 01afd20a, and NCCL's protocol
documentation; NCCL 2.18.5's by :func:`nccl_tuning`):

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

from dataclasses import dataclass, field, replace
from typing import Mapping

__all__ = ["Protocol", "PROTOCOLS", "ring_cap_Bps", "NVLS_LATENCY_S", "NVLS_EFFICIENCY", "NVLS_CHANNELS", "nvls_fraction",
           "NVLS_MAX_ARITY", "nvls_chunk_bytes", "nvls_tree_chunk_bytes",
           "pipeline_fill",
           "TreeProtocol", "TREE_PROTOCOLS", "ll_max_bus_Bps", "tree_latency_s", "NvlsTreeLatency", "TreeNetWeight",
           "tree_correction",
           "TREE_CORRECTION_2_7", "TREE_CORRECTION_2_18", "NcclTuning", "NCCL_VERSIONS", "DEFAULT_NCCL_VERSION",
           "nccl_tuning", "NCCL_TESTS_ITERS", "loop_time_s"]


@dataclass(frozen=True)
class Protocol:
    """One NCCL protocol, as NCCL's own tuning model describes it (single node, ring)."""

    name: str
    base_latency_s: float  # per collective: launch and synchronization (tuning.cc baseLat, Ring)
    hop_latency_s: float  # per ring step over NVLink (tuning.cc hwLat[NVLINK][Ring])
    net_hop_latency_s: float  # per ring step between machines (tuning.cc hwLat[NET][Ring])
    wire_factor: float  # bytes on the wire per byte of data (flags)
    bus_fraction: Mapping[str, float]  # op -> fraction of the ring's bandwidth reached (data bytes)
    max_channel_Bps: Mapping[str, float] | None = None  # op (or "other") -> data rate cap per channel (ring)
    max_bus_Bps: float | None = None  # data rate cap of all channels together (NCCL 2.18's llMaxBw)

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


def ring_cap_Bps(protocol: Protocol, op: str, ring_Bps: float, rings: int = 1) -> float:
    """The data rate one of ``rings`` rings can reach under ``protocol`` on links of
    ``ring_Bps`` (data and flags together): NCCL's fraction of it, the per-channel cap,
    and its even share of the cap on all channels together."""
    cap = protocol.fraction(op) * ring_Bps
    if protocol.max_channel_Bps is not None:
        cap = min(cap, protocol.max_channel_Bps.get(op, protocol.max_channel_Bps.get("other", cap)))
    if protocol.max_bus_Bps is not None:
        cap = min(cap, protocol.max_bus_Bps / rings)
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


# NVLS's chunk pipeline, which NCCL's tuning model leaves out. NCCL cuts an NVLS
# all-reduce into chunks of NCCL_NVLS_CHUNKSIZE, 128 KiB by default (transport/nvls.cc of
# v2.26.2-1 and v2.30.7-1; 2.18.5's enqueue.cc caps it at 131072), and, with nChannels x
# nHeads chunks in flight at once (one per channel and head), smaller for smaller
# messages: 64 KiB below 64 x that many chunks' bytes, 32 KiB below 8 x, 16 KiB below 2 x
# (enqueue.cc, the same rule in 2.18.5, 2.26.2 and 2.30.7). On one machine every GPU is a
# head (graph/search.cc: "Force intra-node NVLS algorithm to pull evenly from all GPUs"),
# across machines a GPU with a NIC is; at most NCCL_MAX_NVLS_ARITY (device.h: 32 from
# 2.19; 2.18.5: 8, the DGX's GPUs). 32 under every version here: 2.18's 8 would differ only
# on an NVLink domain of more than 8 GPUs, where mcdla runs no NCCL (the NVL72 presets).
NVLS_MAX_CHUNK_BYTES = 128 * 1024
NVLS_MAX_ARITY = 32
# Each channel's CTA runs groups of warps at once, on successive loops of nHeads chunks
# (device/all_reduce.h, RunWorkElement NVLS and NVLS_TREE, in 2.18.5, 2.26.2 and 2.30.7
# for unregistered buffers): scatter (the rank's chunks into each head's buffer), reduce
# and multicast (the head's chunk through the switch: multimem loads and stores; under
# NVLS-tree the reduction goes up the tree and a fourth group multicasts what comes
# down), gather (the reduced chunks into the output). NVLS's three stages: the first
# loop's scatter runs before any reduction, the last loop's gather after the last one.
# NVLS-tree's exchange across machines between its reduce and multicast adds stages up
# and down the tree; they are not counted (docs/model.md, "NVLS's chunk pipeline").
NVLS_STAGES = 3


def _smaller_chunk(size_bytes: float, ops: int, chunk: int, rule) -> int:
    for times, smaller in rule:
        if size_bytes < times * ops * chunk and chunk > smaller:
            chunk = smaller
    return chunk


def nvls_chunk_bytes(size_bytes: float, heads: int) -> int:
    """The chunk NCCL's NVLS all-reduce of ``size_bytes`` runs in on one machine, over
    its 16 channels of ``heads`` heads (enqueue.cc's rule, above)."""
    return _smaller_chunk(size_bytes, NVLS_CHANNELS * heads, NVLS_MAX_CHUNK_BYTES, ((64, 65536), (8, 32768), (2, 16384)))


def nvls_tree_chunk_bytes(size_bytes: float, heads: int, first_bytes: int) -> int:
    """The chunk NCCL's NVLS-tree all-reduce of ``size_bytes`` runs in, from
    ``first_bytes`` (:meth:`NcclTuning.nvls_tree_first_chunk`): 256 KiB below 32 x the
    chunks in flight, 128 KiB below 16 x, 64 KiB below 4 x, 32 KiB below 1 x (enqueue.cc,
    2.18.5, 2.26.2 and 2.30.7)."""
    return _smaller_chunk(size_bytes, NVLS_CHANNELS * heads, first_bytes,
                          ((32, 262144), (16, 131072), (4, 65536), (1, 32768)))


def pipeline_fill(size_bytes: float, loop_bytes: float) -> float:
    """A chunk pipeline's fill and drain as a fraction of its data time: every channel
    runs nLoops = ``size_bytes`` / ``loop_bytes`` loops through NVLS_STAGES stages, so
    it takes nLoops + stages - 1 loop times, (stages - 1) / nLoops more than its data
    alone; a message shorter than one loop (some channels idle) takes stages times its
    data."""
    if size_bytes <= 0:
        return 0.0
    return (NVLS_STAGES - 1) * min(1.0, loop_bytes / size_bytes)


# NCCL's tree across machines: a chain inside each machine, a double binary tree between
# them, reduction up and broadcast down pipelined in chunks, under any of the three
# protocols. Its latency in NCCL's tuning.cc (the same in 2.26.2 and 2.30.7): baseLat[Tree]
# + 2 x ((ppn - 1) x hwLat[NVLINK][Tree] + log2i(nNodes) x hwLat[NET][Tree]), by protocol.
# Its bandwidth there: the tree's busBw (x 0.92 for every protocol) times 1/3.8 under LL
# and 120/128 under LL128 across machines: relative to Simple's, the fraction below.
@dataclass(frozen=True)
class TreeProtocol:
    """One protocol of NCCL's tree all-reduce (tuning.cc), relative to Simple's tree."""

    name: str
    base_latency_s: float  # baseLat[Tree][p]
    nvlink_hop_s: float  # hwLat[NVLINK][Tree][p]
    net_hop_s: float  # hwLat[NET][Tree][p]
    wire_factor: float  # bytes on the wire per data byte (the protocol's flags, as the ring's)
    fraction: float  # its data rate over Simple's on the same links (busBw x 1/3.8, x 120/128)


TREE_PROTOCOLS: dict[str, TreeProtocol] = {
    # LL: baseLat 6.8 us, hwLat NVLink 0.6 us, NET 5.0 us; busBw x 1/3.8
    "LL": TreeProtocol("LL", 6.8e-6, 0.6e-6, 5.0e-6, 2.0, 1 / 3.8),
    # LL128: baseLat 14 us, hwLat NVLink 1.25 us, NET 8.5 us; busBw x 120/128 across machines
    "LL128": TreeProtocol("LL128", 14.0e-6, 1.25e-6, 8.5e-6, 128 / 120, 120 / 128),
    # Simple: baseLat 8.4 us, hwLat NVLink 4.0 us, NET 14 us; the links' rate
    "Simple": TreeProtocol("Simple", 8.4e-6, 4.0e-6, 14e-6, 1.0, 1.0),
}


# LL's bus bandwidth across machines for all channels together (tuning.cc llMaxBws, rows
# by CPU vendor for nNodes > 1: Intel N2 39.0 GB/s, N4 (more than 2 machines) 20.4; the
# same in 2.18.5, 2.26.2 and 2.30.7; mcdla's hosts of multi-node designs are Xeons). A
# tree's algorithm bandwidth is half its busBw in NCCL's model (ratio .5).
_LL_MAX_BUS_MULTINODE = {2: 39.0e9, 4: 20.4e9}


def ll_max_bus_Bps(nodes: int) -> float:
    """LL's bus bandwidth cap over ``nodes`` > 1 machines (NCCL's llMaxBw, Intel rows)."""
    return _LL_MAX_BUS_MULTINODE[2 if nodes <= 2 else 4]


def tree_latency_s(ranks_per_node: int, nodes: int, protocol: str = "Simple",
                   protocols: Mapping[str, TreeProtocol] = TREE_PROTOCOLS) -> float:
    """NCCL's modelled latency of a tree all-reduce under ``protocol`` over ``nodes``
    machines of ``ranks_per_node`` ranks each (``protocols``: a version's constants)."""
    proto = protocols[protocol]
    log2i = max(nodes, 1).bit_length() - 1  # NCCL's log2i: floor(log2)
    return proto.base_latency_s + 2 * ((ranks_per_node - 1) * proto.nvlink_hop_s + log2i * proto.net_hop_s)


# NCCL's tree all-reduce at medium sizes: "Trees are not perfectly sticking to the model
# for medium sizes. Applying a static correction factor is not ideal but works quite well"
# (tuning.cc, treeCorrectionFactor: ncclTopoGetAlgoTime multiplies the tree's bandwidth by
# it, for NCCL_ALGO_TREE only). Rows LL, LL128, Simple; column log2i(nBytes / 64), sizes by
# powers of two from 64 B; 1 past the table. NCCL 2.7 (commit 01afd20a): 22 columns, to
# 128 MiB; 2.18.5-1 and 2.26.2-1 (the same table; 2.30 extends it to Blackwell's
# NVLS-tree, which no mcdla version runs): 23, to 256 MiB.
TREE_CORRECTION_2_7: Mapping[str, tuple[float, ...]] = {
    "LL": (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0),
    "LL128": (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .5, .6, .6, .7, .7, .8, .9, .9, 1.0),
    "Simple": (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .5, .5, .6, .6, .7, .8, .9),
}
TREE_CORRECTION_2_18: Mapping[str, tuple[float, ...]] = {
    "LL": (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0),
    "LL128": (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0),
    "Simple": (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9),
}


def tree_correction(table: Mapping[str, tuple[float, ...]], protocol: str, size_bytes: float) -> float:
    """The fraction of its modelled bandwidth NCCL's tree all-reduce of ``size_bytes``
    reaches under ``protocol`` (``table``: a version's treeCorrectionFactor). Below 64 B
    none, as 2.26's log2i counts (-1)."""
    log_size = (int(size_bytes) >> 6).bit_length() - 1
    factors = table[protocol]
    return factors[log_size] if 0 <= log_size < len(factors) else 1.0


# NVLS-tree: NVLS inside each machine, a tree between them (Simple). NCCL 2.30.7's
# tuning.cc: baseLat 0, latency hwLat[NVLINK][NVLSTree] 25 us + 2 x log2i(nNodes) x
# hwLat[NET][NVLSTree] 20.9 us; NCCL adds its graph's latencyInter, the NIC's latency,
# which its InfiniBand plugin leaves 0 (net_ib.cc: "props->latency = 0; // Not set").
@dataclass(frozen=True)
class NvlsTreeLatency:
    """NCCL's NVLS-tree latency: ``fixed_s`` + 2 x ``net_hop_s`` per level of the tree
    across machines (``log2``: log2i(nNodes) levels; else nNodes - 1, as 2.18.5 counts)."""

    fixed_s: float
    net_hop_s: float
    log2: bool = True

    def latency_s(self, nodes: int) -> float:
        levels = max(nodes, 1).bit_length() - 1 if self.log2 else max(nodes - 1, 0)
        return self.fixed_s + 2 * levels * self.net_hop_s


NVLS_TREE_2_30 = NvlsTreeLatency(25e-6, 20.9e-6)


# What NCCL's tuner credits its trees with on the network. NCCL picks an algorithm by its
# own model (tuning.cc, ncclTopoTuneModel), which sets a bandwidth from its graph's
# channels and their rates, and runs the pick at whatever its links and kernels give.
# Beyond 2 machines that model takes the inter-node graph's rate bwInter per channel,
# and the graph has one channel per NIC on a DGX H100 (search.cc: a channel of the
# inter-node graphs leaves through one NIC; the graph's per-channel rate starts at 48
# GB/s, sm90SpeedArrayInter's first, which a 400 Gb/s NIC's 50 GB/s holds once), so it
# credits a tree with, per NIC of rate c (v2.18.5-1 and v2.26.2-1, Hopper, N4 column):
# - NCCL's tree: min(0.92 c, perChMaxTreeBw 36.0 GB/s) (Ampere 17.8, Volta 10.0), under
#   LL128 also at most perChMaxTreeLL128Bw 29.0 GB/s of data (Volta, Ampere 20.0);
# - NVLS-tree (2.26.2): min(bwIntra, bwInter / 2) x 5/6, the halving being the double
#   binary tree's (an inner node sends to its parent and two children), which mcdla's
#   flows carry as bytes: 5/6 c; 2.18.5: bwInter x .70 nNodes / (2 (nNodes - 1)), so
#   .70 nNodes / (nNodes - 1) c.
# On 2 machines the model takes the graph's intra-node rate, which the search raises
# for trees (search.cc: "increase bwIntra for trees (2 nodes or collnet)"), so it names
# no rate of the network and mcdla weighs the trees there as they run; 2.26.2's
# NVLS-tree keeps min(bwIntra, bwInter) x 5/6 on 2 machines too. NCCL's ring is credited
# with its graph's rate, which mcdla's ring is timed at (its own links), so nothing
# changes for it. The default constants (2.7's ring, 2.30.7's NVLS) weigh the trees as
# they run, as before.
_TREE_PER_CHANNEL_N4 = {70: 10.0, 80: 17.8, 90: 36.0}  # perChMaxTreeBws[arch][N4], GB/s
_TREE_LL128_PER_CHANNEL_N4 = {70: 20.0, 80: 20.0, 90: 29.0}  # perChMaxTreeLL128Bws[arch][N4], GB/s
_TREE_EFFICIENCY = 0.92  # tuning.cc: the tree all-reduce's busBw x .92


@dataclass(frozen=True)
class TreeNetWeight:
    """The rate NCCL's tuner credits a link between machines with, as one channel of its
    graph: for its tree beyond 2 machines, ``efficiency`` of it up to the per-channel
    caps (by protocol); for NVLS-tree, ``nvls_ratio`` of it on any number of machines,
    or (``nvls_by_machines``, 2.18.5) ``nvls_ratio`` x nNodes / (nNodes - 1) of it
    beyond 2 machines only."""

    per_channel_Bps: float
    ll128_per_channel_Bps: float
    nvls_ratio: float
    nvls_by_machines: bool
    efficiency: float = _TREE_EFFICIENCY

    def tree_Bps(self, protocol: str, capacity_Bps: float, nodes: int) -> float | None:
        """What NCCL's tree is credited with on a link of ``capacity_Bps`` (data and
        flags, as mcdla's flows fill it) under ``protocol``; None on 2 machines or fewer."""
        if nodes <= 2:
            return None
        rate = min(self.efficiency * capacity_Bps, self.per_channel_Bps)
        if protocol == "LL128":  # its cap is on data, 120 of every 128 bytes on the wire
            rate = min(rate, self.ll128_per_channel_Bps * 128 / 120)
        return rate

    def nvls_tree_Bps(self, capacity_Bps: float, nodes: int) -> float | None:
        """What NVLS-tree is credited with on a link of ``capacity_Bps``; None where all."""
        if self.nvls_by_machines:
            return self.nvls_ratio * nodes / (nodes - 1) * capacity_Bps if nodes > 2 else None
        return self.nvls_ratio * capacity_Bps


# NCCL's constants by version. The ring protocols above are NCCL 2.7's; NVLS is 2.30.7's
# (2.7 had none); on 2.7 the trees' latencies are 2.26.2's and 2.30.7's, their size
# correction 2.7's own (TREE_CORRECTION_2_7). NCCL 2.18.5 (src/graph/tuning.cc, tag
# v2.18.5-1), which the A100 and H100 nccl-tests curves of validation/ ran, differs:
# - ring baseLat LL 6.6 us (2.7: 3.6), LL128 14 us (10), Simple 8.4 us (the same);
# - ring hwLat over NVLink: LL 0.6 us (0.47), LL128 1.9, Simple 3.4 (the same); over
#   the network LL 2.7, LL128 4.0 (the same), Simple 14 us (9.6);
# - LL128: busBw x 0.92 capped per channel by the GPU's architecture, not by collective
#   (perChMaxRingLL128Bws, single node: Volta and Ampere 20 GB/s, Hopper 36.7);
# - LL: busBw x 1/4 (all-reduce) or 1/3, capped for all channels together at llMaxBw
#   (single node: Volta 39.0 GB/s, Ampere and Hopper 87.7);
# - NVLS baseLat 23 us (2.30.7: 25); NVLS-tree baseLat 23 us + 2 (nNodes - 1) x
#   hwLat[NET][NVLSTree] 19 us; the tree's baseLat under Simple 0 (2.26.2 on: 8.4 us);
# - across machines: LL's llMaxBw by CPU (ll_max_bus_Bps) and the network post's floor
#   on a ring's steps (net_overhead_s), as in every later version.
# mcdla takes 2.18.5's single-node figures (tuning.cc's N1 column) for one machine.
# NCCL 2.26.2 (tag v2.26.2-1), which the multi-node H100 curves ran, keeps 2.18.5's ring
# latencies and LL128, and differs in: LL at busBw x .5 for every collective (not 1/4 or
# 1/3) and llMaxBw on one Hopper machine 141 GB/s (Volta 39.0, Ampere 87.7); NVLS's
# latency hwLat[NVLINK][NVLS] 25 us (baseLat 0); NVLS-tree 25 + 2 log2i(nNodes) x 14 us;
# the tree's constants 2.30.7's. NVLS's efficiency stays 2.30.7's in every version.
_GB_S = 1e9
_LL128_PER_CHANNEL_2_18 = {70: 20.0, 80: 20.0, 90: 36.7}  # perChMaxRingLL128Bws[arch][N1], GB/s
_LL_MAX_BUS_2_18 = {70: 39.0, 80: 87.7, 90: 87.7}  # llMaxBws[arch][N1], GB/s
_LL_MAX_BUS_2_26 = {70: 39.0, 80: 87.7, 90: 141.0}  # llMaxBws[arch][N1] of v2.26.2-1, GB/s


def _arch(compute_capability: float | None) -> int:
    """NCCL's architecture index (tuning.cc): Hopper from compute capability 9.0,
    Ampere from 8.0, Volta below (and where the device names none)."""
    cc = 0 if compute_capability is None else round(compute_capability * 10)
    return 90 if cc >= 90 else 80 if cc >= 80 else 70


# LL's fraction of the ring by collective and its bus cap by architecture (GB/s), by version.
_LL_2_18 = ({"all_reduce": 1 / 4, "other": 1 / 3}, _LL_MAX_BUS_2_18)
_LL_2_26 = ({"other": 1 / 2}, _LL_MAX_BUS_2_26)


def _protocols_2_18(arch: int, ll=_LL_2_18) -> dict[str, Protocol]:
    """2.18.5's ring protocols on ``arch``, with ``ll`` LL's fraction and cap (2.26.2's differ)."""
    fraction, max_bus = ll
    return {
        "LL": Protocol("LL", 6.6e-6, 0.6e-6, 2.7e-6, 2.0, fraction, max_bus_Bps=max_bus[arch] * _GB_S),
        "LL128": Protocol("LL128", 14.0e-6, 1.9e-6, 4.0e-6, 128 / 120, {"other": 0.92},
                          {"other": _LL128_PER_CHANNEL_2_18[arch] * _GB_S}),
        "Simple": Protocol("Simple", 8.4e-6, 3.4e-6, 14.0e-6, 1.0, {"other": 1.0}),
    }


@dataclass(frozen=True)
class NcclTuning:
    """The constants of one NCCL version on one GPU architecture."""

    version: str
    protocols: Mapping[str, Protocol]  # the ring's protocols by name
    nvls_latency_s: float  # NVLS's latency, paid once per collective
    # Several GPUs driven by one process (nccl-tests -g N, N > 1) launch as a group: NCCL
    # up to 2.8 waits until every GPU has enqueued, then one cooperative launch starts
    # them all (NCCL_LAUNCH_MODE GROUP, its default then: src/init.cc, enqueue.cc of
    # v2.4-v2.8); from 2.9 the thread launches each GPU's kernel in turn, with no barrier
    # between them (PARALLEL, src/init.cc of v2.9 on; src/group.cc doLaunches of v2.18.5).
    group_launch: bool
    tree_protocols: Mapping[str, TreeProtocol] = field(default_factory=lambda: TREE_PROTOCOLS)
    nvls_tree: NvlsTreeLatency = NVLS_TREE_2_30
    # A ring across machines posts to the network at every step, so each step inside a
    # machine costs at least the post (tuning.cc: "Inter-node rings still have to launch
    # nsteps * net overhead": intraLat = max(intraLat, netOverhead), netOverhead x 3 under
    # Simple). None where the version's model has no such floor (2.7).
    net_overhead_s: float | None = None
    # The tree's bandwidth correction by size (tree_correction).
    tree_correction: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: TREE_CORRECTION_2_18)
    # NCCL's "plateau effect of ring" (tuning.cc, ncclTopoGetAlgoTime): a Simple ring
    # all-reduce across machines pays its latency this many times once the message holds
    # at least 64 B per channel and rank (2.18.5 on: 1.4 from compute capability 8.0, 1.9
    # below), or at least nRanks/16 x 64 KiB (2.7: 1.9).
    plateau_factor: float = 1.9
    plateau_per_channel: bool = True
    # NVLS-tree's first chunk (nvls_tree_chunk_bytes), by machines: (fewer than 4, 4 or
    # more). 2.26.2 and 2.30.7: NCCL_NVLS_CHUNKSIZE's 128 KiB, from 4 machines
    # NCCL_NVLSTREE_MAX_CHUNKSIZE's default 64 KiB (transport/nvls.cc, enqueue.cc); 2.18.5:
    # a Simple step, its 4 MiB buffer over NCCL_STEPS 8 (enqueue.cc, comm.h). The default
    # constants (2.7, which had no NVLS) take 2.30.7's, as for NVLS's other constants.
    nvls_tree_chunk: tuple[int, int] = (131072, 65536)
    # What the tuner credits the trees with on the network (TreeNetWeight); None: their
    # links' rates, as they run.
    tree_net: TreeNetWeight | None = None

    @property
    def ll_capped(self) -> bool:
        """Whether this version caps LL's bus bandwidth for all channels together
        (tuning.cc's llMaxBw, from 2.18.5; 2.7 has none): across machines by their count
        (:func:`ll_max_bus_Bps`), for the ring and the tree alike."""
        return self.protocols["LL"].max_bus_Bps is not None

    def ring_hop_latency_s(self, protocol: Protocol, across_machines: bool) -> float:
        """A ring step's latency inside a machine under ``protocol``, for a ring that
        crosses machines or not (the network post's floor)."""
        if not across_machines or self.net_overhead_s is None:
            return protocol.hop_latency_s
        return max(protocol.hop_latency_s, self.net_overhead_s * (3 if protocol.name == "Simple" else 1))

    def ring_plateau(self, size_bytes: float, channels: int, ranks: int) -> float:
        """The latency factor of a Simple ring all-reduce of ``size_bytes`` across
        machines over ``channels`` rings of ``ranks`` ranks (plateau_factor)."""
        if self.plateau_per_channel:
            reached = size_bytes / (channels * ranks) >= 64
        else:
            reached = size_bytes >= ranks / 16 * 65536
        return self.plateau_factor if reached else 1.0

    def nvls_tree_first_chunk(self, nodes: int) -> int:
        """NVLS-tree's first chunk over ``nodes`` machines (nvls_tree_chunk)."""
        return self.nvls_tree_chunk[0 if nodes < 4 else 1]


NCCL_VERSIONS = ("2.7", "2.18", "2.26")
DEFAULT_NCCL_VERSION = "2.7"


def _tree_net(arch: int, nvls_ratio: float, by_machines: bool) -> TreeNetWeight:
    """The trees' network weights on ``arch`` (TreeNetWeight), with NVLS-tree's ratio."""
    return TreeNetWeight(_TREE_PER_CHANNEL_N4[arch] * _GB_S, _TREE_LL128_PER_CHANNEL_N4[arch] * _GB_S,
                         nvls_ratio, by_machines)


def nccl_tuning(version: str = DEFAULT_NCCL_VERSION, compute_capability: float | None = None) -> NcclTuning:
    """NCCL ``version``'s constants on a GPU of ``compute_capability`` (None: NCCL's
    Volta figures, its lowest architecture)."""
    if version == "2.7":
        return NcclTuning("2.7", PROTOCOLS, NVLS_LATENCY_S, group_launch=True, tree_correction=TREE_CORRECTION_2_7,
                          plateau_per_channel=False)
    arch = _arch(compute_capability)
    plateau = 1.4 if arch >= 80 else 1.9
    # getNetOverhead (tuning.cc, v2.18.5-1 and on): 1 us on x86 Intel and any CPU but
    # AMD's (2 us); mcdla's hosts of multi-node designs are Xeons.
    if version == "2.18":
        tree = {**TREE_PROTOCOLS, "Simple": replace(TREE_PROTOCOLS["Simple"], base_latency_s=0.0)}
        return NcclTuning("2.18", _protocols_2_18(arch), 23e-6, group_launch=False,
                          tree_protocols=tree, nvls_tree=NvlsTreeLatency(23e-6, 19e-6, log2=False),
                          net_overhead_s=1.0e-6, plateau_factor=plateau, nvls_tree_chunk=(524288, 524288),
                          tree_net=_tree_net(arch, 0.70, by_machines=True))
    if version == "2.26":
        return NcclTuning("2.26", _protocols_2_18(arch, _LL_2_26), 25e-6, group_launch=False,
                          nvls_tree=NvlsTreeLatency(25e-6, 14e-6), net_overhead_s=1.0e-6, plateau_factor=plateau,
                          tree_net=_tree_net(arch, 5 / 6, by_machines=False))
    raise ValueError(f"no NCCL constants for version {version!r}; known: {', '.join(NCCL_VERSIONS)}")


# nccl-tests' timing loop (src/common.cu, BenchTime, as of 2023; the default -n 20, not
# blocking): the host starts ``iters`` collectives back to back, synchronizes once at
# the end, and reports the elapsed time over ``iters``.
NCCL_TESTS_ITERS = 20


def loop_time_s(host_s: float, gpu_s: float, iters: int, overlap: bool = True) -> float:
    """The time per collective of ``iters`` run back to back as nccl-tests times them:
    each costs the host ``host_s`` to launch on all its GPUs and then runs ``gpu_s`` on
    them. Where the host launches the next while the GPUs run the one before
    (``overlap``: CUDA's launches are asynchronous), the k-th ends at max(k host_s,
    end of the (k-1)-th) + gpu_s, so the first takes host_s + gpu_s and every next the
    longer of the two; otherwise each takes host_s + gpu_s (one collective alone)."""
    if not overlap or iters <= 1:
        return host_s + gpu_s
    return ((iters - 1) * max(host_s, gpu_s) + host_s + gpu_s) / iters
