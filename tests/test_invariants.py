"""The end-of-iteration invariants: each is broken on purpose and must be caught.

A clean run passes every check (it is called inside ``Iteration.run``); each test
then corrupts one recorded quantity, or the flow network itself, and calls
:func:`check_iteration` again.
"""

from __future__ import annotations

import dataclasses

import pytest

from mcdla.config.execution import ExecutionSpec
from mcdla.hw.workload import load_workload
from mcdla.errors import InfeasibleError, InvariantError
from mcdla.hw.topology import load_topology
from mcdla.sim import flownet
from mcdla.sim.invariants import check_iteration
from mcdla.run import simulate
from mcdla.sim.training import Iteration


def iterate(topology="ring", workload="alexnet", parallel="data", batch=64, exact=False):
    it = Iteration(load_topology(topology), load_workload(workload),
                   ExecutionSpec(parallel=parallel, batch=batch, exact=exact))
    return it, it.run()


@pytest.fixture
def ring_run():
    return iterate()


def test_clean_run_passes(ring_run):
    it, record = ring_run
    check_iteration(record)


def test_unfinished_flow_is_caught(ring_run):
    it, record = ring_run
    record.network = dataclasses.replace(record.network, flows_finished=record.network.flows_finished - 1)
    with pytest.raises(InvariantError, match="flows started but .* finished"):
        check_iteration(record)


def test_lost_bytes_are_caught(ring_run):
    it, record = ring_run
    record.network = dataclasses.replace(record.network, bytes_delivered=record.network.bytes_delivered - 1e3)
    with pytest.raises(InvariantError, match="bytes sent but .* delivered"):
        check_iteration(record)


def test_link_above_capacity_is_caught(monkeypatch):
    real = flownet.max_min_rates

    def greedy(paths, capacities, *weights):  # every flow takes 1% more than its fair share
        return {f: r * 1.01 for f, r in real(paths, capacities, *weights).items()}

    monkeypatch.setattr(flownet, "max_min_rates", greedy)
    with pytest.raises(InvariantError, match=r"carried .* B/s at t=.*1\.01\d* x its capacity"):
        iterate()


def test_capacity_check_tolerates_rounding(monkeypatch):
    real = flownet.max_min_rates
    monkeypatch.setattr(flownet, "max_min_rates",
                        lambda p, c, *w: {f: r * (1 + 1e-12) for f, r in real(p, c, *w).items()})
    iterate()  # within the 1e-9 relative slack


def test_channel_bytes_are_checked(ring_run):
    it, record = ring_run
    carried = dict(record.network.bytes_by_resource)
    channel = it.topology.rings[0].channels[0]
    carried[channel] *= 0.5
    record.network = dataclasses.replace(record.network, bytes_by_resource=carried)
    with pytest.raises(InvariantError, match=f"channel {channel}: carried .* bytes, but"):
        check_iteration(record)


# Bugs planted in the simulator itself (not in the record): each changes what some
# channel carries, and the per-channel check must catch it.
def _planted(monkeypatch, change):
    from mcdla.sim import collectives

    real = collectives.FlowNetwork.transfer

    def transfer(self, size_bytes, path, latency_s=0.0, tag="", copies=1, even=True):
        return real(self, change(size_bytes, tag), path, latency_s, tag, copies, even)

    monkeypatch.setattr(collectives.FlowNetwork, "transfer", transfer)


@pytest.mark.parametrize("parallel", ["data", "model"])
def test_a_dropped_collective_step_is_caught(monkeypatch, parallel):
    from mcdla.sim import collectives

    real = collectives._ring

    def one_step_short(net, ring, op, share, *args):
        # A reduce-scatter or all-gather phase of p-1 steps that sends only p-2.
        return real(net, ring, op, share * (ring.size - 2) / (ring.size - 1), *args)

    monkeypatch.setattr(collectives, "_ring", one_step_short)
    with pytest.raises(InvariantError, match="carried .* bytes, but the iteration's collective steps"):
        iterate(parallel=parallel)


def test_a_repeated_collective_step_is_caught(monkeypatch):
    from mcdla.sim import collectives

    real = collectives._ring

    def one_step_more(net, ring, op, share, *args):
        return real(net, ring, op, share * ring.size / (ring.size - 1), *args)

    monkeypatch.setattr(collectives, "_ring", one_step_more)
    with pytest.raises(InvariantError, match="carried .* bytes, but"):
        iterate()


def test_a_shortened_dma_transfer_is_caught(monkeypatch):
    _planted(monkeypatch, lambda size, tag: size * 0.99 if tag.startswith("prefetch") else size)
    with pytest.raises(InvariantError, match="carried .* bytes, but"):
        iterate()


def test_a_shortened_collective_transfer_is_caught(monkeypatch):
    _planted(monkeypatch, lambda size, tag: size * 0.999 if tag.startswith("dW") else size)
    with pytest.raises(InvariantError, match="carried .* bytes, but"):
        iterate()


def test_a_stray_flow_on_an_unused_channel_is_caught(monkeypatch):
    """A flow on a channel the iteration was never meant to use: the oracle's PCIe links
    carry nothing (no memory virtualization), so the per-channel check must look at
    every channel of the topology, not only those expected to carry bytes."""
    from mcdla.sim import collectives

    real = collectives.FlowNetwork.transfer
    unused = "D0>SW0:0"  # device D0's PCIe link to its switch
    strays = []

    def transfer(self, size_bytes, path, latency_s=0.0, tag="", copies=1, even=True):
        done = real(self, size_bytes, path, latency_s, tag, copies, even)
        if strays or not tag.startswith("dW"):
            return done
        # the first gradient's bytes also go out over the unused link; the collective
        # waits for both, so every flow finishes and every byte sent is delivered
        strays.append(real(self, size_bytes, (unused,), latency_s, tag, 1, even))
        return self.env.all_of([done, strays[0]])

    it, record = iterate(topology="oracle")
    assert unused in it.topology.channels and record.network.bytes_by_resource.get(unused, 0.0) == 0.0
    monkeypatch.setattr(collectives.FlowNetwork, "transfer", transfer)
    with pytest.raises(InvariantError, match=f"channel {unused}: carried .* bytes, but .* should move 0"):
        iterate(topology="oracle")
    assert strays


def test_collective_shares_must_add_up(ring_run):
    it, record = ring_run
    c = record.collectives[0]
    record.collectives[0] = dataclasses.replace(c, size_bytes=c.size_bytes * 2)
    with pytest.raises(InvariantError, match="ring shares add up to"):
        check_iteration(record)


def test_unfreed_device_memory_is_caught(ring_run):
    it, record = ring_run
    device = record.devices[0]
    device.allocate(record.iteration_time_s, 1024.0)
    with pytest.raises(InvariantError, match="device D0: ends the iteration with .* bytes in use"):
        check_iteration(record)


def test_negative_device_memory_is_caught():
    it, record = iterate(exact=True)  # D1's own record (with symmetry, it is D0's class's)
    device = record.devices[1]
    device.memory.insert(1, (0.0, -4096.0))
    with pytest.raises(InvariantError, match="device D1: memory in use fell to -4096"):
        check_iteration(record)


def test_device_memory_over_hbm_is_infeasible_not_a_bug():
    with pytest.raises(InfeasibleError, match=r"device D0: .* need .* MB, over its 1 MiB of memory"):
        simulate("ring", "bw_aware", "alexnet", "data", 64, [("device.hbm_capacity", "1 MiB")])


def test_device_peak_above_capacity_is_caught(ring_run):
    it, record = ring_run
    record.devices[0].memory_peak_bytes = it.topology.device_memory_bytes * 1.01
    with pytest.raises(InvariantError, match="device D0: held .* over its memory of"):
        check_iteration(record)


def test_oracle_has_no_hbm_limit():
    result = simulate("oracle", "bw_aware", "alexnet", "data", 64, [("device.hbm_capacity", "1 MiB")])
    assert result["device_mem_peak_bytes"] > 2**20


def test_backing_store_left_holding_bytes_is_caught(ring_run):
    it, record = ring_run
    store = next(iter(record.store_end_bytes))
    record.store_end_bytes[store] = 1e6
    with pytest.raises(InvariantError, match=f"backing store {store}: ends the iteration holding"):
        check_iteration(record)


def test_backing_store_over_capacity_is_caught(ring_run):
    it, record = ring_run
    store = next(iter(record.store_peak_bytes))
    record.store_peak_bytes[store] = it.topology.memory_capacity(store) * 2
    with pytest.raises(InvariantError, match=f"backing store {store}: held .* over its capacity"):
        check_iteration(record)


def test_tensor_offloaded_twice_is_caught(ring_run):
    it, record = ring_run
    tensor = next(iter(record.devices[0].offloads))
    record.devices[0].offloads[tensor] = 2
    with pytest.raises(InvariantError, match=f"tensor {tensor} offloaded 2 times, not once"):
        check_iteration(record)


def test_tensor_never_prefetched_is_caught(ring_run):
    it, record = ring_run
    tensor = next(iter(record.devices[2].prefetches))
    del record.devices[2].prefetches[tensor]
    with pytest.raises(InvariantError, match=rf"tensors prefetched differ from the plan \(never prefetched: \[{tensor}\]"):
        check_iteration(record)


def test_backward_before_its_prefetch_is_caught(ring_run):
    it, record = ring_run
    device = record.devices[0]
    tensor = next(iter(device.prefetch_ready))
    device.prefetch_ready[tensor] = record.iteration_time_s * 2
    with pytest.raises(InvariantError, match=f"before its input tensor {tensor} was prefetched"):
        check_iteration(record)


def test_unequal_offload_and_prefetch_bytes_are_caught(ring_run):
    it, record = ring_run
    record.devices[0].prefetched_bytes += 1e6
    with pytest.raises(InvariantError, match="offloaded .* bytes but prefetched"):
        check_iteration(record)


def test_cli_does_not_mistake_a_bug_for_bad_input(monkeypatch):
    """An InvariantError is not an InputError: it escapes main, and Python exits 1."""
    from mcdla.cli.main import main

    def broken(record):
        raise InvariantError("flow network: 3 flows started but 2 finished")

    monkeypatch.setattr("mcdla.sim.training.check_iteration", broken)
    with pytest.raises(InvariantError, match="3 flows started"):
        main(["sim", "--workload", "alexnet", "--batch", "64"])
