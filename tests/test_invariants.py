"""The end-of-iteration invariants: each is broken on purpose and must be caught.

A clean run passes every check (it is called inside ``Iteration.run``); each test
then corrupts one recorded quantity, or the flow network itself, and calls
:func:`check_iteration` again.
"""

from __future__ import annotations

import dataclasses

import pytest

from mcdla.config.training import TrainingSpec
from mcdla.hw.workload import load_workload
from mcdla.errors import InfeasibleError, InvariantError
from mcdla.hw.topology import load_topology
from mcdla.sim import flownet
from mcdla.sim.invariants import check_iteration
from mcdla.run import simulate
from mcdla.sim.training import Iteration


def iterate(topology="ring", workload="alexnet", parallel="data", batch=64):
    it = Iteration(load_topology(topology), load_workload(workload), TrainingSpec(),
                   policy="bw_aware", parallel=parallel, batch=batch)
    return it, it.run()


@pytest.fixture
def ring_run():
    return iterate()


def test_clean_run_passes(ring_run):
    it, record = ring_run
    check_iteration(it, record)


def test_unfinished_flow_is_caught(ring_run):
    it, record = ring_run
    it.net._flows_finished -= 1
    with pytest.raises(InvariantError, match="flows started but .* finished"):
        check_iteration(it, record)


def test_lost_bytes_are_caught(ring_run):
    it, record = ring_run
    it.net._bytes_delivered -= 1e3
    with pytest.raises(InvariantError, match="bytes sent but .* delivered"):
        check_iteration(it, record)


def test_link_above_capacity_is_caught(monkeypatch):
    real = flownet.max_min_rates

    def greedy(paths, capacities):  # every flow takes 1% more than its fair share
        return {f: r * 1.01 for f, r in real(paths, capacities).items()}

    monkeypatch.setattr(flownet, "max_min_rates", greedy)
    with pytest.raises(InvariantError, match=r"carried .* B/s at t=.*1\.01\d* x its capacity"):
        iterate()


def test_capacity_check_tolerates_rounding(monkeypatch):
    real = flownet.max_min_rates
    monkeypatch.setattr(flownet, "max_min_rates",
                        lambda p, c: {f: r * (1 + 1e-12) for f, r in real(p, c).items()})
    iterate()  # within the 1e-9 relative slack


def test_collective_ring_bytes_are_checked(ring_run):
    it, record = ring_run
    c = record.collectives[0]
    short = tuple(b * 0.5 for b in c.bytes_sent_per_ring)
    record.collectives[0] = dataclasses.replace(c, bytes_sent_per_ring=short)
    with pytest.raises(InvariantError, match=r"ring .* sent .* bytes, not \d+ steps x"):
        check_iteration(it, record)


def test_collective_shares_must_add_up(ring_run):
    it, record = ring_run
    c = record.collectives[0]
    record.collectives[0] = dataclasses.replace(c, size_bytes=c.size_bytes * 2)
    with pytest.raises(InvariantError, match="ring shares add up to"):
        check_iteration(it, record)


def test_unfreed_device_memory_is_caught(ring_run):
    it, record = ring_run
    device = record.devices[0]
    device.allocate(record.iteration_time_s, 1024.0)
    with pytest.raises(InvariantError, match="device D0: ends the iteration with .* bytes in use"):
        check_iteration(it, record)


def test_negative_device_memory_is_caught(ring_run):
    it, record = ring_run
    device = record.devices[1]
    device.memory.insert(1, (0.0, -4096.0))
    with pytest.raises(InvariantError, match="device D1: memory in use fell to -4096"):
        check_iteration(it, record)


def test_device_memory_over_hbm_is_infeasible_not_a_bug():
    with pytest.raises(InfeasibleError, match=r"device D0: .* need .* bytes, over its memory of 1\.04858e\+06"):
        simulate("ring", "bw_aware", "alexnet", "data", 64, [("device.hbm_capacity", "1 MiB")])


def test_device_peak_above_capacity_is_caught(ring_run):
    it, record = ring_run
    record.devices[0].memory_peak_bytes = it.topology.device_memory_bytes * 1.01
    with pytest.raises(InvariantError, match="device D0: held .* over its memory of"):
        check_iteration(it, record)


def test_oracle_has_no_hbm_limit():
    result = simulate("oracle", "bw_aware", "alexnet", "data", 64, [("device.hbm_capacity", "1 MiB")])
    assert result["device_mem_peak_bytes"] > 2**20


def test_backing_store_left_holding_bytes_is_caught(ring_run):
    it, record = ring_run
    store = next(iter(it.store_bytes))
    it.store_bytes[store] = 1e6
    with pytest.raises(InvariantError, match=f"backing store {store}: ends the iteration holding"):
        check_iteration(it, record)


def test_backing_store_over_capacity_is_caught(ring_run):
    it, record = ring_run
    store = next(iter(it.store_peak))
    it.store_peak[store] = it.topology.memory_capacity(store) * 2
    with pytest.raises(InvariantError, match=f"backing store {store}: held .* over its capacity"):
        check_iteration(it, record)


def test_tensor_offloaded_twice_is_caught(ring_run):
    it, record = ring_run
    tensor = next(iter(record.devices[0].offloads))
    record.devices[0].offloads[tensor] = 2
    with pytest.raises(InvariantError, match=f"tensor {tensor} offloaded 2 times, not once"):
        check_iteration(it, record)


def test_tensor_never_prefetched_is_caught(ring_run):
    it, record = ring_run
    tensor = next(iter(record.devices[2].prefetches))
    del record.devices[2].prefetches[tensor]
    with pytest.raises(InvariantError, match=rf"tensors prefetched differ from the plan \(never prefetched: \[{tensor}\]"):
        check_iteration(it, record)


def test_backward_before_its_prefetch_is_caught(ring_run):
    it, record = ring_run
    device = record.devices[0]
    tensor = next(iter(device.prefetch_ready))
    device.prefetch_ready[tensor] = record.iteration_time_s * 2
    with pytest.raises(InvariantError, match=f"before its input tensor {tensor} was prefetched"):
        check_iteration(it, record)


def test_unequal_offload_and_prefetch_bytes_are_caught(ring_run):
    it, record = ring_run
    record.devices[0].prefetched_bytes += 1e6
    with pytest.raises(InvariantError, match="offloaded .* bytes but prefetched"):
        check_iteration(it, record)


def test_cli_does_not_mistake_a_bug_for_bad_input(monkeypatch):
    """An InvariantError is not an InputError: it escapes main, and Python exits 1."""
    from mcdla.cli.main import main

    def broken(iteration, record):
        raise InvariantError("flow network: 3 flows started but 2 finished")

    monkeypatch.setattr("mcdla.sim.training.check_iteration", broken)
    with pytest.raises(InvariantError, match="3 flows started"):
        main(["sim", "--workload", "alexnet", "--batch", "64"])
