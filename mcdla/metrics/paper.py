"""The numbers the paper gives (Section V, Table IV), to draw and report beside mcdla's.

Keys are metric names shared by :mod:`mcdla.plots` (markers on the figures) and
:mod:`mcdla.sweep.report` (the comparison table). Values are as printed in the paper;
fractions are written as fractions (95% -> 0.95).
"""

from __future__ import annotations

__all__ = ["PAPER", "TABLE_IV"]

PAPER: dict[str, float] = {
    # Section V-A, Fig. 11
    "fig11.dc.virtualization_bound": 14,  # of the 16 training examples
    "fig11.hc.virtualization_reduction": 0.88,
    "fig11.hc.sync_increase": 0.90,
    # Section II/V-A, Fig. 12
    "fig12.hc.host_bw_fraction": 0.92,
    # Section V-B, Fig. 13
    "fig13.hc.data": 1.32,
    "fig13.hc.model": 1.38,
    "fig13.ring+bw_aware.data": 3.5,
    "fig13.ring+bw_aware.model": 2.1,
    "fig13.ring+bw_aware.all": 2.8,
    "fig13.oracle_fraction.avg": 0.95,
    "fig13.oracle_fraction.min": 0.84,
    "fig13.oracle_fraction.max": 0.99,
    "fig13.star_loss.avg": 0.14,
    "fig13.star_loss.max": 0.24,
    "fig13.local_fraction": 0.96,
    # Section V-B, sensitivity
    "fig14.ring+bw_aware.all": 2.17,
    "pcie4.dc_gain": 1.38,
    "pcie4.gap": 2.1,
    "dgx2.ring+bw_aware.all": 2.9,  # a DGX-2-class node (16 devices, 2 PFLOPS, 2.4 TB/s)
    "tpuv2.ring+bw_aware.all": 3.2,  # a faster, TPUv2-class device-node in both designs
    "cdma.ring+bw_aware.all": 2.3,  # DC-DLA with cDMA's 2.6x compression, the 4 CNNs
    # Section V-D
    "scalability.novirt.4": 4.0,
    "scalability.novirt.8": 8.0,
    "scalability.virt.4": 1.3,
    "scalability.virt.8": 2.7,
    # Section V-C
    "power.perf_per_W.8 GB RDIMM": 2.6,
    "power.perf_per_W.128 GB LRDIMM": 2.1,
    "power.increase.8 GB RDIMM": 0.07,
    "power.increase.128 GB LRDIMM": 0.31,
}

# Table IV: memory-node (10 DIMMs) TDP in W and capacity per watt in GB/W.
TABLE_IV: dict[str, tuple[float, float]] = {
    "8 GB RDIMM": (29.0, 2.8),
    "16 GB RDIMM": (66.0, 2.4),
    "32 GB LRDIMM": (87.0, 3.7),
    "64 GB LRDIMM": (102.0, 6.3),
    "128 GB LRDIMM": (127.0, 10.1),
}

# Table IV under the metric keys of the report.
PAPER.update({f"table4.node_W.{dimm}": watts for dimm, (watts, _) in TABLE_IV.items()})
PAPER.update({f"table4.GB_per_W.{dimm}": gb_per_w for dimm, (_, gb_per_w) in TABLE_IV.items()})
