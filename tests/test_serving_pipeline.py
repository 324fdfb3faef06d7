"""Serving with several batches in flight through a pipeline (vLLM's virtual engines,
mcdla.sim.serving_pipeline): the throughput they add, the per-token time they keep, a
fixed batch's steady state in closed form, the cache's split and the inputs."""

from __future__ import annotations

import pytest

from mcdla.config.serving import Request, serving_spec
from mcdla.errors import InputError
from mcdla.hw.serving import ServingModel, kv_geometry
from mcdla.hw.topology import load_topology
from mcdla.run import _serving_workload, serve
from mcdla.sim.serving import ServingRun, serving_stages

# Llama-3 8B in four stages of one H100 (one instance of four devices), eight requests a batch.
FOUR = [("generator.devices", 4), ("host.sockets", 1), ("serving.pipeline_parallel", 4), ("serving.max_seqs", 8),
        ("serving.requests", 32), ("serving.rate", 1e6), ("serving.prompt_tokens", 64),
        ("serving.output_tokens", 32)]


def test_batches_in_flight_multiply_a_capped_batchs_throughput_and_keep_its_token_time():
    # Batches of at most 8 and 32 requests waiting: four virtual engines keep the four stages busy
    # with four batches, one batch leaves three idle. The stage holding the vocabulary projection
    # (1 GB of Llama-3 8B's 16 GB) is the slowest, so the gain stays under four.
    one = serve("dgx_h100", "llama3_8b", FOUR + [("serving.pipeline_batches", 1)])
    four = serve("dgx_h100", "llama3_8b", FOUR)  # the default: a batch a stage
    assert four["instances"] == one["instances"] == 1
    assert 3.0 < four["throughput_tokens_s"] / one["throughput_tokens_s"] <= 4.0
    # A token still passes every stage: its time is never below one batch's pass.
    assert four["tpot_s"]["p50"] >= one["tpot_s"]["p50"]


def _steady(batches: int, seqs: int = 8, prompt: int = 64, output: int = 65):
    """Two stages of one H100 serving Llama-3 8B, 2 x ``seqs`` requests all at 0 (a fixed batch
    per virtual engine): the run's record and its model."""
    work, latent = _serving_workload("llama3_8b", [])
    topo = load_topology("dgx_h100", [("generator.devices", 2), ("host.sockets", 1)])
    model = ServingModel(topo.device, work, 1, kv_geometry(work, latent), serving_stages(work, 2))
    spec = serving_spec({"pipeline_parallel": 2, "pipeline_batches": batches, "max_seqs": seqs})
    run = ServingRun(topo, model, spec, [Request(0.0, prompt, output) for _ in range(2 * seqs)])
    return run.run(), model


def _decode_starts(record):
    return sorted(start for _, start, _, _, decodes, prefills in record.iterations if prefills == 0)


def test_a_fixed_batchs_steady_state_against_its_closed_form():
    # Two batches of 8 circulate through two stages; each stage takes one at a time. A virtual
    # engine's step is the longer of its pass (stage 0, its send, stage 1) and twice the slower
    # stage (the other batch holds it in between): here stage 1 (it holds the vocabulary
    # projection), so a batch every 2 x t1. The decode contexts grow from 65 to 128 tokens: each
    # steady step lies between the closed form at the first and at the last.
    record, model = _steady(2)

    def t(stage, context):
        return model.step(8, 8 * context, (), 8, stage=stage).compute_s

    assert t(1, 65) > t(0, 128)
    starts = _decode_starts(record)  # the two virtual engines' decode steps, interleaved
    steps = [b - a for a, b in zip(starts[2:], starts[4:])]  # one engine's step (after the first)
    assert len(steps) == 2 * 64 - 4
    for step in steps:
        assert 2 * t(1, 65) * (1 - 1e-9) <= step <= 2 * t(1, 128) * (1 + 1e-9)
    assert steps[0] == pytest.approx(2 * t(1, 66), rel=1e-4)
    # One batch at a time: the first eight alone, a step every pass t0 + send + t1 (the send of
    # 8 x 4,096 x 2 bytes over NVLink: microseconds).
    alone, _ = _steady(1)
    starts = _decode_starts(alone)[:64]
    for a, b in zip(starts, starts[1:]):
        assert t(0, 65) + t(1, 65) < b - a < (t(0, 128) + t(1, 128)) * (1 + 1e-3)
    # The pipeline's token time never falls below the pass.
    tpot = min((r.done_s - r.first_s) / (r.output - 1) for r in record.requests)
    assert tpot > t(0, 65) + t(1, 65)


def test_virtual_engines_split_the_cache_and_share_the_requests():
    record, model = _steady(2)
    assert sorted(r.id for r in record.requests) == list(range(16))
    # vLLM gives each virtual engine an equal share of the blocks: a request longer than a share
    # is refused, naming the key.
    from mcdla.errors import InfeasibleError

    work, latent = _serving_workload("llama3_8b", [])
    topo = load_topology("dgx_h100", [("generator.devices", 2), ("host.sockets", 1)])
    model = ServingModel(topo.device, work, 1, kv_geometry(work, latent), serving_stages(work, 2))
    spec = serving_spec({"pipeline_parallel": 2, "memory_utilization": 0.15})
    probe = ServingRun(topo, model, serving_spec({"pipeline_parallel": 2, "memory_utilization": 0.15,
                                                  "pipeline_batches": 1}), [Request(0.0, 16, 16)])
    share = probe.hbm_blocks // 2 * spec.block_tokens
    with pytest.raises(InfeasibleError, match="pipeline_batches"):
        ServingRun(topo, model, spec, [Request(0.0, share + 16, 16)])


def test_more_batches_than_stages_is_refused():
    with pytest.raises(InputError) as info:
        serving_spec({"pipeline_parallel": 2, "pipeline_batches": 3})
    assert info.value.key == "serving.pipeline_batches"


def test_a_request_longer_than_one_batchs_share_of_the_cache_is_refused():
    """Each batch in flight holds an equal share of the blocks (vLLM's virtual engines):
    a request that fits the instance's cache but not a half of it is refused with two
    batches in flight, naming that share and the way out, and runs with one."""
    from mcdla.errors import InfeasibleError

    sets = [("serving.pipeline_parallel", 2), ("serving.tensor_parallel", 4), ("serving.requests", 1),
            ("serving.prompt_tokens", 100_000), ("serving.output_tokens", 2), ("serving.memory_utilization", 0.05)]
    serve("dgx_h100", "llama3_8b", sets + [("serving.pipeline_batches", 1)])
    with pytest.raises(InfeasibleError, match="over the 996 MB one of the 2 batches in flight has .*; lower "
                                              "serving.pipeline_batches"):
        serve("dgx_h100", "llama3_8b", sets + [("serving.pipeline_batches", 2)])
