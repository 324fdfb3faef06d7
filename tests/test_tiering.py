"""Memory tiers: the analytic memory peak, the capacity-aware offload policy and
activation checkpointing (docs/model.md, "Capacity-aware offload and checkpointing")."""

from __future__ import annotations

import pytest

from mcdla.errors import InfeasibleError, InputError
from mcdla.run import load_inputs
from mcdla.sim.liveness import peak_bytes
from mcdla.sim.offload import block_of, checkpointed
from mcdla.sim.training import Iteration

BATCH = 64
# A small GPT-2 (4 blocks, 256-token sequences) keeps each run well under a second.
GPT2 = [("workload.layers", 4), ("workload.seq_len", 256)]
OFF = [("training.virtualization", False)]


def iterate(workload="resnet34", sets=(), topology="ring", batch=BATCH, parallel="data"):
    it = Iteration(*load_inputs(topology, workload, list(sets), batch=batch, parallel=parallel))
    return it, it.run()


def estimate(it, offloaded=None):
    """The analytic peak of the iteration's plan (or of the plan with ``offloaded``)."""
    plan = it.plan
    return peak_bytes(it.workload.layers, plan.tensor_bytes, plan.offloaded if offloaded is None else offloaded,
                      plan.recomputed, virtualize=it.virtualize,
                      lookahead=it.inputs.execution.training.lookahead, resident_bytes=it.model_state_bytes)


def simulated_peak(record):
    return max(d.memory_peak_bytes for d in record.devices)


def recompute_s(plan):
    """The recompute closure's rebuilt maps and full checkpointing's replayed rest of each block."""
    replayed = [t for ts in plan.replays.values() for t in ts]
    return sum(plan.fwd_s[t] for t in plan.read_in_bwd if plan.recomputed[t]) + sum(plan.fwd_s[t] for t in replayed)


# --- The analytic peak equals the simulated one -------------------------------------

@pytest.mark.parametrize("workload,sets", [
    ("alexnet", OFF), ("vgg_e", OFF), ("resnet34", OFF), ("googlenet", OFF), ("rnn_lstm1", OFF),
    ("gpt2", GPT2 + OFF), ("gpt2", GPT2 + OFF + [("training.checkpoint", "full")]),
    ("gpt2", GPT2 + OFF + [("training.checkpoint", "selective")]),
    ("resnet34", OFF + [("training.inplace", True), ("training.fuse_bn_relu", True)]),
])
def test_peak_estimate_equals_the_simulated_peak_without_offload(workload, sets):
    it, record = iterate(workload, sets)
    assert not any(it.plan.offloaded)
    assert estimate(it) == pytest.approx(simulated_peak(record), rel=1e-12)


# Offload-all runs whose offloads keep up with compute (the estimate frees an offloaded
# map at its last forward use; a slower DMA frees it later, and the driver waits).
@pytest.mark.parametrize("workload,sets", [
    ("resnet34", ()), ("resnet50", ()), ("googlenet", ()), ("resnet34", [("training.lookahead", 3)]),
    ("gpt2", GPT2 + [("training.checkpoint", "full")]),
])
def test_peak_estimate_equals_the_simulated_peak_of_offload_all(workload, sets):
    it, record = iterate(workload, sets)
    assert any(it.plan.offloaded)
    assert estimate(it) == pytest.approx(simulated_peak(record), rel=1e-12)


@pytest.mark.parametrize("workload,sets", [("resnet34", OFF), ("gpt2", GPT2 + OFF + [("training.checkpoint", "full")]),
                                           ("resnet34", [("execution.offload", "capacity_aware")])])
def test_peak_estimate_equals_the_simulated_peak_in_model_parallel_training(workload, sets):
    # Each device holds a 1/D shard of every map but the whole input batch.
    it, record = iterate(workload, sets, parallel="model")
    assert not any(it.plan.offloaded)
    assert estimate(it) == pytest.approx(simulated_peak(record), rel=1e-12)


def test_peak_estimate_equals_the_simulated_peak_of_kept_maps_with_virtualization_on():
    # capacity_aware with room to spare keeps every map on a design that could offload.
    it, record = iterate("googlenet", [("execution.offload", "capacity_aware")])
    assert it.virtualize and not any(it.plan.offloaded)
    assert estimate(it) == pytest.approx(simulated_peak(record), rel=1e-12)


# --- capacity_aware ------------------------------------------------------------------

def capacity_for(workload, fraction, sets=(), topology="ring"):
    """Device memory that holds ``fraction`` of what capacity_aware needs to keep every map."""
    it, _ = iterate(workload, [("execution.offload", "capacity_aware"), *sets], topology=topology)
    assert not any(it.plan.offloaded)
    return fraction * estimate(it)


def test_capacity_aware_that_fits_offloads_nothing_and_runs_as_without_virtualization():
    it, fits = iterate("resnet34", [("execution.offload", "capacity_aware")])
    _, oracle_like = iterate("resnet34", OFF)
    assert it.virtualize
    assert not any(it.plan.offloaded) and not any(it.plan.recomputed)
    assert all(d.offloaded_bytes == 0 for d in fits.devices)
    assert fits.iteration_time_s == oracle_like.iteration_time_s
    assert simulated_peak(fits) <= simulated_peak(oracle_like)


@pytest.mark.parametrize("workload,fraction", [("resnet34", 0.9), ("vgg_e", 0.8), ("googlenet", 0.6)])
def test_capacity_aware_offloads_a_minimal_set_that_fits(workload, fraction):
    capacity = capacity_for(workload, fraction)
    it, record = iterate(workload, [("execution.offload", "capacity_aware"),
                                    ("device.hbm_capacity", f"{capacity:.0f} B")])
    memory = it.topology.device_memory_bytes
    plan = it.plan
    chosen = [t for t, o in enumerate(plan.offloaded) if o]
    assert chosen
    assert estimate(it) <= memory * (1 + 1e-12)
    assert simulated_peak(record) <= memory * (1 + 1e-12)
    for t in chosen:  # minimal: keeping any one of them on the device does not fit
        kept = tuple(o and s != t for s, o in enumerate(plan.offloaded))
        assert estimate(it, kept) > memory
    assert not any(plan.offloaded[t] and plan.recomputed[t] for t in range(len(plan.offloaded)))


@pytest.mark.parametrize("workload", ["resnet34", "resnet50", "vgg_e"])
def test_capacity_aware_offloads_far_less_than_offload_all_when_barely_missing(workload):
    # 3% short: one or two early maps (the most slack, and the largest) leave the device.
    capacity = capacity_for(workload, 0.97)
    memory = [("device.hbm_capacity", f"{capacity:.0f} B")]
    it, aware = iterate(workload, [("execution.offload", "capacity_aware"), *memory])
    _, every = iterate(workload, memory)
    assert 1 <= sum(it.plan.offloaded) <= 2
    aware_bytes = sum(d.offloaded_bytes for d in aware.devices)
    every_bytes = sum(d.offloaded_bytes for d in every.devices)
    assert 0 < aware_bytes < 0.25 * every_bytes
    assert aware.iteration_time_s < every.iteration_time_s


@pytest.mark.parametrize("topology", ["ring", "dc"])
def test_capacity_aware_recomputes_cheap_maps_where_moving_them_costs_more(topology):
    # 10% short: over the ring's 150 GB/s per device a few maps move behind compute;
    # over DC-DLA's 6 GB/s of PCIe recomputing cheap layers' outputs costs less.
    capacity = capacity_for("resnet34", 0.9, topology=topology)
    memory = [("device.hbm_capacity", f"{capacity:.0f} B")]
    it, aware = iterate("resnet34", [("execution.offload", "capacity_aware"), *memory], topology=topology)
    _, every = iterate("resnet34", memory, topology=topology)
    if topology == "ring":
        assert any(it.plan.offloaded) and not any(it.plan.recomputed)
    else:
        assert not any(it.plan.offloaded) and any(it.plan.recomputed)
    assert aware.iteration_time_s < every.iteration_time_s


def test_capacity_aware_prefers_maps_with_the_most_slack():
    # Early maps wait longest for backward: the first chosen map is made before the last one.
    capacity = capacity_for("vgg_e", 0.9)
    it, _ = iterate("vgg_e", [("execution.offload", "capacity_aware"), ("device.hbm_capacity", f"{capacity:.0f} B")])
    chosen = [t for t, o in enumerate(it.plan.offloaded) if o]
    assert chosen and max(chosen) < len(it.plan.offloaded) // 2


def test_capacity_aware_is_deterministic():
    capacity = capacity_for("googlenet", 0.6)
    sets = [("execution.offload", "capacity_aware"), ("device.hbm_capacity", f"{capacity:.0f} B")]
    a, b = iterate("googlenet", sets)[0].plan, iterate("googlenet", sets)[0].plan
    assert a.offloaded == b.offloaded and a.recomputed == b.recomputed


# --- Activation checkpointing ---------------------------------------------------------

def test_full_checkpointing_recomputes_inside_blocks_and_keeps_block_inputs():
    it, _ = iterate("gpt2", GPT2 + OFF + [("training.checkpoint", "full")], batch=8)
    layers, recomputed = it.workload.layers, it.plan.recomputed
    for t, layer in enumerate(layers):
        consumers = [layers[i] for i in range(len(layers)) if t in layers[i].inputs]
        inside = bool(block_of(layer.name)) and consumers and all(
            block_of(c.name) == block_of(layer.name) for c in consumers)
        assert recomputed[t] == bool(inside), layer.name
    # Each block's output (the next block's input) is stored, everything else rebuilt.
    assert not recomputed[it.workload.index["blocks.1/res2"]]
    assert recomputed[it.workload.index["blocks.1/attention5"]]


def test_full_checkpointing_lowers_the_peak_and_charges_the_recomputed_forwards():
    none_it, none = iterate("gpt2", GPT2 + OFF, batch=8)
    full_it, full = iterate("gpt2", GPT2 + OFF + [("training.checkpoint", "full")], batch=8)
    assert simulated_peak(full) < simulated_peak(none)
    plan = full_it.plan
    redo = recompute_s(plan)
    blocks_fwd = sum(s for s, l in zip(plan.fwd_s, full_it.workload.layers) if block_of(l.name))
    # One forward of the blocks: Megatron's checkpoint function reruns each block whole,
    # its last GEMM and residual add too, whose outputs no backward reads.
    assert redo == pytest.approx(blocks_fwd, rel=1e-12)
    for dev_full, dev_none in zip(full.devices, none.devices):
        busy = sum(e - s for s, e, *_ in dev_full.compute) - sum(e - s for s, e, *_ in dev_none.compute)
        assert busy == pytest.approx(redo, rel=1e-9)
        assert sum(c.end_s - c.start_s for c in dev_full.compute if c.kind == "recompute") == pytest.approx(redo, rel=1e-9)


def test_full_checkpointing_reruns_the_last_gemm_no_backward_reads():
    # Without dropout a block's last GEMM feeds only the residual add, whose backward
    # reads nothing: the closure never rebuilds it, the block's replay does, once, with
    # the block's output (the add), before the block's first backward.
    it, record = iterate("gpt2", GPT2 + OFF + [("training.checkpoint", "full")], batch=8)
    layers, index = it.workload.layers, it.workload.index
    last_gemm = max(i for i, l in enumerate(layers) if l.name.startswith("blocks.1/") and l.kind == "linear")
    out = index["blocks.1/res2"]
    assert last_gemm not in it.plan.read_in_bwd and it.plan.replays[out] == (last_gemm, out)
    names = [c.label for c in record.devices[0].compute]
    for name in (layers[last_gemm].name, "blocks.1/res2"):
        assert names.count(f"recompute {name}") == 1
    assert names.index(f"recompute {layers[last_gemm].name}") < names.index("bwd blocks.1/res2")
    none = iterate("gpt2", GPT2 + OFF + [("training.checkpoint", "selective")], batch=8)[0].plan.replays
    assert none == {}


def test_full_checkpointing_reruns_the_blocks_tensor_parallel_all_reduces():
    # Megatron's replay runs each block's forward whole, its row-parallel all-reduces too.
    # TP 2 without sequence parallelism: per block 2 all-reduces forward and 2 backward
    # (dX of the column-parallel GEMMs' inputs), one each for the vocabulary-parallel
    # embedding (forward) and head (backward), all of one size: 4 x 4 + 2 = 18; the
    # replay adds the blocks' forward 2 x 4 = 8. Selective recomputation reruns none.
    from mcdla.run import simulate

    sets = GPT2 + OFF + [("execution.tensor_parallel", 2)]
    tp = {c: simulate("dgx_h100", "bw_aware", "gpt2", "data", 8, sets + [("training.checkpoint", c)])["comm_s"]["tp"]
          for c in ("none", "full", "selective")}
    assert tp["full"] / tp["none"] == pytest.approx(26 / 18, rel=0.01)
    assert tp["selective"] == pytest.approx(tp["none"], rel=1e-12)


def test_selective_checkpointing_recomputes_only_attention_cores():
    it, record = iterate("gpt2", GPT2 + OFF + [("training.checkpoint", "selective")], batch=8)
    _, none = iterate("gpt2", GPT2 + OFF, batch=8)
    layers, plan = it.workload.layers, it.plan
    assert {layers[t].kind for t, r in enumerate(plan.recomputed) if r} == {"attention"}
    assert sum(plan.recomputed) == 4
    assert simulated_peak(record) < simulated_peak(none)
    redo = sum(plan.fwd_s[t] for t, l in enumerate(layers) if l.kind == "attention")
    assert recompute_s(plan) == pytest.approx(redo, rel=1e-12)


def test_recompute_time_is_reported():
    from mcdla.run import simulate

    result = simulate("ring", "bw_aware", "gpt2", "data", 8, GPT2 + OFF + [("training.checkpoint", "full")])
    it, _ = iterate("gpt2", GPT2 + OFF + [("training.checkpoint", "full")], batch=8)
    assert result["recompute_s"] == pytest.approx(recompute_s(it.plan), rel=1e-9)
    assert simulate("ring", "bw_aware", "gpt2", "data", 8, GPT2 + OFF)["recompute_s"] == 0


@pytest.mark.parametrize("policy", ["offload_all", "capacity_aware"])
def test_checkpointed_maps_are_neither_stored_nor_offloaded(policy):
    sets = GPT2 + [("training.checkpoint", "full"), ("execution.offload", policy)]
    it, record = iterate("gpt2", sets, batch=8)
    plan = it.plan
    ckpt = checkpointed(it.workload.layers, "full")
    assert all(plan.recomputed[t] for t, c in enumerate(ckpt) if c)
    assert not any(o and c for o, c in zip(plan.offloaded, ckpt))
    for device in record.devices:
        assert not any(ckpt[t] for t in device.offloads)


@pytest.mark.parametrize("workload,sets", [("gpt2", GPT2), ("resnet34", ())])
def test_full_checkpointing_stores_block_inputs_even_when_cheap(workload, sets):
    # A block's input is often a cheap layer's output (a residual add, a ReLU), which
    # offload-all would recompute; recomputing it would chain every block's recompute
    # back to the first one, so it is stored: offloaded here.
    it, _ = iterate(workload, [*sets, ("training.checkpoint", "full")], batch=8)
    layers, plan = it.workload.layers, it.plan
    inputs = {p for i, l in enumerate(layers) if block_of(l.name) for p in l.inputs
              if block_of(layers[p].name) != block_of(l.name)}
    assert any(layers[p].cheap for p in inputs)
    for p in inputs:
        assert plan.offloaded[p] and not plan.recomputed[p], layers[p].name


def test_default_checkpointing_changes_nothing():
    _, paper = iterate("resnet34")
    _, none = iterate("resnet34", [("training.checkpoint", "none")])
    assert none.iteration_time_s == paper.iteration_time_s
    assert simulated_peak(none) == simulated_peak(paper)


def test_a_bad_checkpoint_mode_names_the_key():
    with pytest.raises(InputError, match="training.checkpoint"):
        iterate("resnet34", [("training.checkpoint", "everything")])


def test_an_unknown_offload_policy_names_the_key():
    with pytest.raises(InputError, match="execution.offload"):
        iterate("resnet34", [("execution.offload", "capacity")])


# --- Random networks (hypothesis) -----------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Every op keeps a 4 x 8 x 8 map, so any op may read the block's input or the map before.
OPS = {
    "conv": "{kind: conv, out_channels: 4, kernel: 3, padding: 1}",
    "relu": "{kind: relu}",
    "batchnorm": "{kind: batchnorm}",
    "maxpool": "{kind: maxpool, kernel: 3, stride: 1, padding: 1}",
}


@st.composite
def networks(draw):
    """A workload YAML: a stem, a block of random ops repeated, a head."""
    lines = ["name: random", "input: {channels: 4, height: 8, width: 8}", "blocks:", "  blk:",
             "    args: []", "    layers:"]
    names = ["in"]
    for k in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from([*OPS, "add"]))
        name = f"op{k}"
        if kind == "add":
            inputs = sorted(set(draw(st.lists(st.sampled_from(names), min_size=2, max_size=3))))
            if len(inputs) < 2:
                inputs = [names[0], names[-1]] if len(names) > 1 else ["in", "in"]
            if len(set(inputs)) < 2:
                continue
            lines.append(f"      - {{name: {name}, kind: add, inputs: [{', '.join(inputs)}]}}")
        else:
            source = draw(st.sampled_from(names))
            lines.append(f"      - {{name: {name}, inputs: [{source}], {OPS[kind][1:]}")
        names.append(name)
    if len(names) == 1:
        lines.append("      - {name: op0, kind: relu}")
    repeat = draw(st.integers(1, 4))
    lines += ["layers:", "  - {name: stem, kind: conv, out_channels: 4, kernel: 3, padding: 1}",
              f"  - {{block: blk, name: b, repeat: {repeat}}}",
              "  - {name: head, kind: fc, out_features: 10}"]
    return "\n".join(lines) + "\n"


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


@SETTINGS
@given(network=networks(), checkpoint=st.sampled_from(["none", "full"]),
       virtualization=st.booleans(), inplace=st.booleans())
def test_random_networks_peak_estimate_without_offload(tmp_path, network, checkpoint, virtualization, inplace):
    path = tmp_path / "random.yaml"
    path.write_text(network)
    policy = "capacity_aware" if virtualization else "offload_all"
    it, record = iterate(str(path), [("training.checkpoint", checkpoint), ("execution.offload", policy),
                                     ("training.virtualization", virtualization),
                                     ("training.inplace", inplace)], topology="dc1", batch=4)
    assert not any(it.plan.offloaded)
    assert estimate(it) == pytest.approx(simulated_peak(record), rel=1e-12)
    assert record.devices[0].memory[-1][1] == pytest.approx(it.model_state_bytes, rel=1e-12)


@SETTINGS
@given(network=networks(), checkpoint=st.sampled_from(["none", "full"]),
       fraction=st.floats(0.5, 1.0), cheap=st.booleans(), lookahead=st.integers(1, 3))
def test_random_networks_capacity_aware_sets_fit_and_are_minimal(tmp_path, network, checkpoint, fraction, cheap,
                                                                lookahead):
    path = tmp_path / "random.yaml"
    path.write_text(network)
    sets = [("training.checkpoint", checkpoint), ("training.recompute_cheap", cheap),
            ("training.lookahead", lookahead)]
    it, _ = iterate(str(path), [*sets, ("execution.offload", "capacity_aware")], topology="dc1", batch=4)
    resident = it.model_state_bytes
    capacity = resident + fraction * (estimate(it) - resident)
    it = Iteration(*load_inputs("dc1", str(path), [*sets, ("execution.offload", "capacity_aware"),
                                                   ("device.hbm_capacity", f"{capacity:.0f} B")], batch=4))
    memory, plan = it.topology.device_memory_bytes, it.plan
    fits = estimate(it) <= memory * (1 + 1e-12)
    assert not any(o and r for o, r in zip(plan.offloaded, plan.recomputed))
    try:
        record = it.run()
    except InfeasibleError:
        assert not fits  # only a plan the estimate says does not fit may fail
        return
    assert simulated_peak(record) <= memory * (1 + 1e-12)
    if fits and not plan.offloaded[0]:  # a set capacity_aware chose (it keeps the input batch)
        for t in plan.first_need:  # minimal: keeping any one of them does not fit
            kept = tuple(o and s != t for s, o in enumerate(plan.offloaded))
            assert estimate(it, kept) > memory
