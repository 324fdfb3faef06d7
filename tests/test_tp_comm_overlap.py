"""TP communication overlap (execution.tp_comm_overlap, Megatron-Core's --tp-comm-overlap):
a layer's tensor-parallel collectives run beside its own kernel, pipelined in t chunks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import simpy

from mcdla.errors import InputError
from mcdla.run import simulate
from mcdla.sim import device as device_module
from mcdla.sim.device import DeviceCompute

GPT2_TP4 = [("execution.tensor_parallel", 4), ("execution.sequence_parallel", True),
            ("topology.device_memory", "unbounded"), ("training.virtualization", False),
            ("execution.collective", "nccl")]


def test_overlap_needs_sequence_parallelism():
    with pytest.raises(InputError) as refused:
        simulate("dgx_h100", "bw_aware", "gpt2", "data", 16,
                 [("execution.tensor_parallel", 4), ("execution.tp_comm_overlap", True)])
    assert refused.value.key == "execution.tp_comm_overlap" and "sequence_parallel" in str(refused.value)


def test_overlap_hides_tensor_parallel_communication_but_not_more_than_all_of_it():
    plain = simulate("dgx_h100", "bw_aware", "gpt2", "data", 16, GPT2_TP4)
    overlapped = simulate("dgx_h100", "bw_aware", "gpt2", "data", 16, [*GPT2_TP4, ("execution.tp_comm_overlap", True)])
    # the same collectives (their time on the wire), less of it exposed
    assert overlapped["comm_s"]["tp"] == pytest.approx(plain["comm_s"]["tp"], rel=1e-9)
    assert overlapped["iteration_time_s"] < plain["iteration_time_s"]
    assert overlapped["exposed_s"]["sync"] < plain["exposed_s"]["sync"]
    assert overlapped["iteration_time_s"] > plain["iteration_time_s"] - plain["comm_s"]["tp"]


def _pair(monkeypatch, kernel_s, comm_s, t=4, sms=132, nccl_sms=16):
    """When layer 0's kernel of ``kernel_s`` and its collectives of ``comm_s`` end,
    with tensor degree ``t`` and the SMs the communication takes."""
    env = simpy.Environment()
    dev = DeviceCompute.__new__(DeviceCompute)
    dev.env, dev.stream, dev.tensor_stream = env, None, None
    dev.overlapping = frozenset({0})  # layer 0 overlapped, its forward GEMM in t pieces
    dev.plan = SimpleNamespace(tp=SimpleNamespace(degree=t, reduce_out=frozenset()))
    dev.memory = SimpleNamespace(record=SimpleNamespace(compute=[]))
    dev.inputs = SimpleNamespace(execution=SimpleNamespace(tensor_parallel=t),
                                 topology=SimpleNamespace(device=SimpleNamespace(sms=sms, nccl_sms=nccl_sms)))
    monkeypatch.setattr(device_module.tensor, "overlapped", lambda d, i, tag, phase: [env.timeout(comm_s)])
    env.process(dev._kernel(0, "fwd", kernel_s, "fwd", "fwd", ()))
    env.run()
    _pair.spans = [(span.start_s, span.end_s) for span in dev.memory.record.compute]
    return env.now


def test_a_communication_bound_pair_takes_the_communication_and_one_chunk_of_compute(monkeypatch):
    # the kernel, 10 on all SMs, ends at 10 x 132/116 = 11.4 beside the 20 of communication
    assert _pair(monkeypatch, 10.0, 20.0) == pytest.approx(20.0 + 10.0 / 4)


def test_a_compute_bound_pair_takes_the_kernel_slowed_while_both_run_and_one_chunk(monkeypatch):
    # 2 of communication: the kernel loses 2 x 16/132 of SM time, then one chunk of 2/4
    assert _pair(monkeypatch, 10.0, 2.0) == pytest.approx(10.0 + 2.0 * 16 / 132 + 2.0 / 4)
    # one span, the kernel's own: its slowdown in it, the chunk's wait not
    assert _pair.spans == [(0.0, pytest.approx(10.0 + 2.0 * 16 / 132))]
    # without the communication's SMs (a device with none reserved) only the chunk remains
    assert _pair(monkeypatch, 10.0, 2.0, nccl_sms=0) == pytest.approx(10.0 + 0.5)


def test_a_blocks_linear_layers_overlap_the_embedding_and_the_output_layer_do_not():
    from mcdla.hw.parallelism import tensor_split
    from mcdla.hw.workload import load_workload
    from mcdla.sim.tensor import overlapping

    layers = load_workload("gpt2").layers
    tp = tensor_split(layers, 4, True)
    over = overlapping(layers, tp)
    names = {layers[i].name for i in over}
    with_collectives = {layers[i].name for i in (*tp.gathers, *tp.reduce_out, *tp.partial_dx)}
    assert names and names < with_collectives  # some layers' collectives stay around them
    assert all("/" in n and layers[i].kind == "linear" for i, n in ((i, layers[i].name) for i in over))
    assert {n for n in with_collectives - names if "/" not in n}  # the embedding, the output layer


def test_a_gemm_in_pieces_takes_longer_than_whole_and_its_weight_gradient_stays_whole():
    from mcdla.hw.compute import layer_time, layer_timings
    from mcdla.hw.parallelism import tensor_split
    from mcdla.hw.topology import load_topology
    from mcdla.hw.workload import load_workload

    device = load_topology("dgx_h100").device
    layers = load_workload("gpt3_175b").layers
    tp = tensor_split(layers, 8, True)
    qkv = next(i for i, l in enumerate(layers) if i in tp.gathers and l.kind == "linear")
    whole = layer_time(device, layers[qkv], "fwd", 1, 2, 8)
    assert layer_time(device, layers[qkv], "fwd", 1, 2, 8, chunks=8) > 1.05 * whole  # 256-token pieces
    # backward: the dX GEMM in pieces, the weight-gradient GEMM (K the tokens) as before
    dx, dw = layer_timings(device, layers[qkv], "bwd", 1, 2, 8)
    pieces = layer_time(device, layers[qkv], "bwd", 1, 2, 8, chunks=8)
    assert pieces - dw.time_s > dx.time_s


def test_rank_symmetry_gives_the_exact_runs_time_with_overlap():
    """Overlapped collectives join and wait as the blocking ones do: one device per class
    stands for its class (mcdla.hw.symmetry), with and without pipeline stages."""
    # the design's hierarchical collectives (NCCL's tuner may pick a tree, which no class stands for)
    sets = [*(kv for kv in GPT2_TP4 if kv[0] != "execution.collective"), ("execution.tp_comm_overlap", True),
            ("generator.nodes", 2)]
    for extra in ([], [("execution.pipeline_parallel", 2), ("training.micro_batches", 4)]):
        lumped = simulate("dgx_h100_4node", "bw_aware", "gpt2", "data", 16, [*sets, *extra])
        exact = simulate("dgx_h100_4node", "bw_aware", "gpt2", "data", 16, [*sets, *extra, ("execution.exact", True)])
        assert lumped["rank_classes"] < exact["rank_classes"] == 16  # the classes stood for their ranks
        assert lumped["iteration_time_s"] == pytest.approx(exact["iteration_time_s"], rel=1e-12)
