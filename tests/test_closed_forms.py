"""Whole iterations against closed forms: the simulator must agree with arithmetic.

Each case is one where the answer can be written down: a single device is the sum
of its roofline kernel times; a virtualization-bound DC-DLA iteration is bounded
below by its PCIe uplink moving every offload and then every prefetch; the oracle
is its compute plus at most its collectives.
"""

from __future__ import annotations

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.hw.workload import load_workload
from mcdla.hw.compute import layer_time
from mcdla.hw.topology import load_topology
from mcdla.sim.training import Iteration


def iterate(topology, workload, batch, parallel="data", **training):
    it = Iteration(load_topology(topology), load_workload(workload), ExecutionSpec(parallel=parallel, batch=batch, training=TrainingSpec(**training)))
    return it, it.run()


@pytest.mark.parametrize("workload", ["alexnet", "resnet34", "rnn_lstm1"])
def test_single_device_is_the_sum_of_its_roofline_kernel_times(workload):
    it, record = iterate("single", workload, 8)
    work = it.workload
    expected = sum(layer_time(it.topology.device, layer, phase, 8, work.precision_bytes)
                   for layer in work.layers[1:] for phase in ("fwd", "bwd"))
    assert record.iteration_time_s == pytest.approx(expected, rel=1e-9)


def test_virtualization_bound_dc_is_bounded_by_its_pcie_uplink():
    it, record = iterate("dc", "vgg_e", 512)
    uplink_Bps = it.topology.links["pcie"].effective_bw_Bps
    per_device = record.devices[0].offloaded_bytes
    # Two devices share an uplink; the first prefetch waits for the last offload (FIFO
    # order, needed first in backward), so offloads then prefetches cross it in turn.
    lower = 2 * (2 * per_device) / uplink_Bps
    compute = max(sum(e - s for s, e, *_ in d.compute) for d in record.devices)
    assert lower <= record.iteration_time_s <= lower + compute + 0.05 * lower


def test_oracle_is_compute_plus_at_most_its_collectives():
    it, record = iterate("oracle", "resnet34", 512)
    compute = max(sum(e - s for s, e, *_ in d.compute) for d in record.devices)
    sync = sum(c.end_s - c.start_s for c in record.collectives)
    assert compute <= record.iteration_time_s <= compute + sync
