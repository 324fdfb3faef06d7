"""Expert-parallel serving (mcdla.sim.serving_expert): the weights a device holds, the
all-to-all bytes of a step by hand, the slowest attention group setting the step, and
the inputs refused."""

from __future__ import annotations

import pytest

from mcdla.config.serving import Request, serving_spec
from mcdla.errors import InputError
from mcdla.hw.serving import ServingModel, kv_geometry
from mcdla.hw.topology import load_topology
from mcdla.run import _serving_workload, serve
from mcdla.sim.serving import ServingRun

TWO = [("generator.devices", 2), ("host.sockets", 1)]  # two H100s on one NVSwitch

# Mixtral 8x7B (Mistral AI's config.json): 32 layers of 8 experts, each 3 matrices of
# 4,096 x 14,336 (hidden, intermediate), 2 bytes a weight.
MIXTRAL_EXPERTS = 32 * 8 * 3 * 4096 * 14336


def _model(e: int, tp: int = 1):
    work, latent = _serving_workload("mixtral_8x7b", [])
    topo = load_topology("dgx_h100", TWO)
    return ServingModel(topo.device, work, tp, kv_geometry(work, latent), ep=e), topo


def test_a_devices_weights_fall_with_the_expert_degree():
    # Each device holds the attention, router and embedding weights whole and 1/e of the experts.
    whole = _model(1)[0].weight_bytes
    dense = whole - MIXTRAL_EXPERTS * 2
    assert 1.5e9 * 2 < dense < 1.7e9 * 2  # Mixtral: 46.7B parameters, 45.1B of them experts
    held = {e: _model(e)[0].weight_bytes for e in (2, 4, 8)}
    for e, size in held.items():
        assert size == pytest.approx(dense + MIXTRAL_EXPERTS * 2 / e)
    assert held[8] < held[4] < held[2] < whole
    # And in a run: eight H100s as one instance of eight attention groups.
    r = serve("dgx_h100", "mixtral_8x7b", [("serving.expert_parallel", 8), ("serving.requests", 8),
                                             ("serving.output_tokens", 4), ("serving.prompt_tokens", 64)])
    assert r["instances"] == 1 and r["weight_bytes"] == pytest.approx(held[8])


def test_a_steps_all_to_all_bytes_per_link_by_hand(tmp_path):
    # Two attention groups of one H100, 64 prompt tokens each, one step. Every MoE layer (32)
    # dispatches each token's 2 slots of 4,096 x 2 bytes and combines them back: 64 all-to-alls of
    # a 64 x 2 x 4,096 x 2-byte buffer, half of it for the other device.
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,64,1\n0,64,1\n")
    r = serve("dgx_h100", "mixtral_8x7b", TWO + [("serving.expert_parallel", 2), ("serving.trace", str(trace))])
    assert r["iterations"] == 2  # one step, both groups
    per_link = 64 * (64 * 2 * 4096 * 2) / 2
    for device in ("D0", "D1"):
        sent = sum(v for k, v in r["link_bytes"].items() if k.startswith(f"{device}>"))
        assert sent == pytest.approx(per_link)


def _first_steps(prompts):
    model, topo = _model(2)
    spec = serving_spec({"expert_parallel": 2})
    run = ServingRun(topo, model, spec, [Request(0.0, p, 2) for p in prompts])
    record = run.run()
    return sorted(record.iterations, key=lambda i: (i[1], i[4])), model


def test_the_slowest_attention_group_sets_the_step():
    # Group 0 prefills 2,048 tokens, group 1 16: both step together, for group 0's time.
    steps, model = _first_steps([2048, 16])
    first = [s for s in steps if s[1] == 0]
    assert len(first) == 2 and first[0][2] == first[1][2]
    long = model.step(0, 0, ((2048, 0),), 1).compute_s
    assert first[0][2] >= long + model.experts_s(2048 + 16)
    # Both short: the step is shorter by at least the long prefill's extra compute.
    short_steps, _ = _first_steps([16, 16])
    short = model.step(0, 0, ((16, 0),), 1).compute_s
    assert first[0][2] - short_steps[0][2] >= long - short + model.experts_s(2064) - model.experts_s(32)


@pytest.mark.parametrize("sets,key", [
    ([("serving.expert_parallel", 2)], "serving.expert_parallel"),  # Llama-3 8B has no experts
    ([("serving.expert_parallel", 3)], "serving.expert_parallel"),  # 8 devices
    ([("serving.expert_parallel", 4), ("serving.tensor_parallel", 3)], "serving.expert_parallel"),
    ([("serving.expert_parallel", 4), ("serving.pipeline_parallel", 2)], "serving.expert_parallel"),
])
def test_expert_parallel_inputs_are_refused_naming_the_key(sets, key):
    with pytest.raises(InputError) as info:
        serve("dgx_h100", "llama3_8b", sets + [("serving.requests", 2)])
    assert info.value.key == key


def test_the_expert_degree_must_divide_the_experts():
    with pytest.raises(InputError, match="does not divide the 8 routed experts"):
        serve("dgx_h100", "mixtral_8x7b", [("generator.devices", 6), ("host.sockets", 1),
                                             ("serving.expert_parallel", 6), ("serving.requests", 2)])


def test_a_dense_workload_has_no_experts_to_split():
    with pytest.raises(InputError, match="llama3_8b has no routed experts to split over 2 devices") as info:
        serve(workload="llama3_8b", sets=[("serving.expert_parallel", 2)])
    assert info.value.key == "serving.expert_parallel"


def test_weights_that_leave_no_room_for_the_kv_cache_name_the_expert_degree():
    """With expert parallelism the way out the message names is a higher degree (each
    device then holds fewer experts), not only tensor parallelism."""
    from mcdla.errors import InfeasibleError

    with pytest.raises(InfeasibleError, match="no room for the KV cache; raise serving.expert_parallel"):
        serve(workload="mixtral_8x7b", sets=[("serving.expert_parallel", 2), ("serving.memory_utilization", 0.3)])
