"""Per-kernel roofline report of a workload on one device-node (``mcdla layers``).

The roofline model (Williams et al. 2009; seed 003) places each kernel by its
arithmetic intensity I (MACs per byte of HBM traffic) and its attained throughput
(MAC/s). The device bounds what any kernel can attain:

    attainable(I) = min(peak MAC/s, I x HBM bandwidth)

The two bounds meet at the ridge point I* = peak / bandwidth: a kernel left of it can
at best be memory-bound, one right of it compute-bound. How far a point sits below
its bound is the loss the compute model charges: quantization of the PE array
(:func:`mcdla.hw.compute.gemm_cycles`), tile re-fetches, and the HBM latency paid
once per kernel.

The kernels are exactly those the training driver times: each layer's
:meth:`~mcdla.hw.layers.Layer.kernels` for one device's share of the batch
(:func:`mcdla.hw.parallelism.device_share`; in model-parallel training each layer's
shards from :func:`mcdla.hw.parallelism.model_split`), timed by
:func:`mcdla.hw.compute.kernel_time`; a phase's total is therefore the sum of the
driver's per-layer times. Phases follow the driver: ``fwd`` in layer order, ``bwd``
in reverse (dX before dW), and ``recompute``, the forward replay of each cheap layer
that memory virtualization recomputes in backward instead of offloading (whether it
runs depends on the topology's backing store and ``training.recompute_cheap``).

Pure Python: no pandas, no plotting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from mcdla.config.hardware import DeviceSpec
from mcdla.hw.compute import kernel_time
from mcdla.hw.layers import PHASES, Workload
from mcdla.hw.parallelism import device_share, model_split

__all__ = ["Roofline", "kernel_rows", "phase_totals", "layer_report", "PHASE_CHOICES"]

PHASE_CHOICES = PHASES + ("all",)


@dataclass(frozen=True)
class Roofline:
    """The two ceilings of one device: the PE array's peak and the HBM slope."""

    peak_MACps: float
    hbm_bw_Bps: float

    @classmethod
    def of(cls, device: DeviceSpec) -> Roofline:
        return cls(device.peak_macs_per_s, device.hbm_bw)

    @property
    def ridge_MAC_per_B(self) -> float:
        """The intensity at which the memory slope meets the compute peak."""
        return self.peak_MACps / self.hbm_bw_Bps

    def as_dict(self) -> dict[str, float]:
        return {"peak_MACps": self.peak_MACps, "hbm_bw_Bps": self.hbm_bw_Bps,
                "ridge_MAC_per_B": self.ridge_MAC_per_B}


def _layer_order(workload: Workload, phase: str) -> list[int]:
    """Layer indices in the order the driver runs ``phase`` (the data layer has no kernels)."""
    layers = workload.layers
    if phase == "fwd":
        return list(range(1, len(layers)))
    backward = range(len(layers) - 1, 0, -1)
    if phase == "bwd":
        return list(backward)
    return [i for i in backward if layers[i].cheap]  # recompute: only cheap layers are replayed


def kernel_rows(workload: Workload, device: DeviceSpec, phases: Sequence[str], local_batch: int,
                shards: Sequence[int]) -> list[dict[str, Any]]:
    """One row per kernel of ``phases``, in execution order within each phase; ``shards``
    per layer."""
    rows: list[dict[str, Any]] = []
    prec = workload.precision_bytes
    for phase in phases:
        for i in _layer_order(workload, phase):
            layer = workload.layers[i]
            for kernel in layer.kernels(phase, local_batch, prec, shards[i]):
                timing = kernel_time(device, kernel)
                rows.append({
                    "layer": layer.name,
                    "kind": layer.kind,
                    "phase": phase,
                    # Kernel names are "LAYER:WHAT"; the layer is already a column.
                    "kernel": kernel.name.rpartition(":")[2],
                    "macs": timing.macs,
                    "bytes": timing.bytes,
                    "intensity_MAC_per_B": timing.intensity,
                    "time_s": timing.time_s,
                    "attained_MACps": timing.attained_macs_per_s,
                    "utilization": timing.utilization,
                    "bound": timing.bound,
                })
    return rows


def phase_totals(rows: Sequence[dict[str, Any]], phases: Sequence[str], peak_MACps: float) -> list[dict[str, Any]]:
    """Per phase: kernel count, summed MACs, bytes and time, and the share of that
    time spent in compute-bound kernels. Intensity and attained MAC/s are the
    phase's aggregate (total MACs over total bytes, over total time)."""
    totals = []
    for phase in phases:
        mine = [r for r in rows if r["phase"] == phase]
        macs = sum(r["macs"] for r in mine)
        moved = sum(r["bytes"] for r in mine)
        time_s = sum(r["time_s"] for r in mine)
        compute_s = sum(r["time_s"] for r in mine if r["bound"] == "compute")
        attained = macs / time_s if time_s else 0.0
        totals.append({
            "phase": phase,
            "kernels": len(mine),
            "macs": macs,
            "bytes": moved,
            "intensity_MAC_per_B": macs / moved if moved else 0.0,
            "time_s": time_s,
            "attained_MACps": attained,
            "utilization": attained / peak_MACps,
            "compute_bound_share": compute_s / time_s if time_s else 0.0,
        })
    return totals


def layer_report(workload: Workload, device: DeviceSpec, *, topology: str, parallel: str, batch: int,
                 devices: int, phase: str = "all") -> dict[str, Any]:
    """The whole report of ``mcdla layers`` as a JSON-ready mapping.

    ``batch`` is the global batch over ``devices`` device-nodes; each device's share
    follows ``parallel`` as in training. ``phase`` is one of :data:`PHASE_CHOICES`.
    """
    if phase not in PHASE_CHOICES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASE_CHOICES)}")
    phases = PHASES if phase == "all" else (phase,)
    share = device_share(parallel, batch, devices)
    roofline = Roofline.of(device)
    shards = (model_split(workload.layers, devices).shards if parallel == "model"
              else (share.shards,) * len(workload.layers))
    rows = kernel_rows(workload, device, phases, share.local_batch, shards)
    return {
        "workload": workload.name,
        "topology": topology,
        "parallel": parallel,
        "batch": batch,
        "devices": devices,
        "local_batch": share.local_batch,
        "shards": share.shards,
        "precision_bytes": workload.precision_bytes,
        "roofline": roofline.as_dict(),
        "totals": phase_totals(rows, phases, roofline.peak_MACps),
        "kernels": rows,
    }
