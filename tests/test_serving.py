"""Serving (mcdla serve): the KV cache's size, an iteration's physical floors, and the
driver's behaviour (determinism, load, memory tiers, preemption, inputs)."""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main
from mcdla.errors import InfeasibleError, InputError
from mcdla.run import _serving_workload, serve
from mcdla.hw.serving import ServingModel, kv_geometry
from mcdla.hw.topology import load_topology
from mcdla.sim.serving import serving_stages

# A small, fast serving point: Llama-3 8B on one H100 per instance of a DGX H100.
SMALL = [("serving.requests", 24), ("serving.prompt_tokens", 512), ("serving.output_tokens", 24)]


def _model(workload: str, tp: int, topology: str = "dgx_h100"):
    work, latent = _serving_workload(workload, [])
    topo = load_topology(topology)
    return ServingModel(topo.device, work, tp, kv_geometry(work, latent)), topo


def test_kv_bytes_per_token_by_hand():
    # Llama-3 70B: 2 (K, V) x 80 layers x 8 KV heads x 128 x 2 bytes.
    model, _ = _model("llama3_70b", 8)
    assert model.kv.bytes_per_token() == 327_680
    assert model.kv.bytes_per_token(8) == 40_960  # one KV head per device
    # DeepSeek-V3's latent cache: 61 layers x (512 latent + 64 rotary key) x 2 bytes, on every device.
    mla, _ = _model("deepseek_v3", 8)
    assert mla.kv.bytes_per_token() == mla.kv.bytes_per_token(8) == 61 * 576 * 2


@pytest.mark.parametrize("seqs,context", [(1, 128), (16, 2048), (128, 1024)])
def test_decode_never_beats_reading_weights_and_kv(seqs, context):
    model, topo = _model("llama3_70b", 8)
    cost = model.step(seqs, seqs * context, (), seqs)
    hbm_Bps = 3.35e12  # H100 SXM5 datasheet: 3.35 TB/s
    floor = (70_553_706_496 * 2 / 8 * 0.99 + seqs * context * 40_960) / hbm_Bps  # 1/8 of the weights (less the replicated norms)
    assert cost.compute_s >= floor
    assert cost.kv_read_bytes == pytest.approx(seqs * context * 40_960)


def test_prefill_at_least_its_flops_at_peak():
    model, _ = _model("llama3_70b", 8)
    tokens = 2048
    cost = model.step(0, 0, ((tokens, 0),), 1)
    # 2 FLOPs per parameter per token over 8 devices at 989.5 TFLOPS (H100 datasheet), attention aside.
    assert cost.compute_s >= 2 * 70e9 * tokens / 8 / 989.5e12
    assert cost.compute_s >= model.prefill_flops_floor_s(tokens)


def test_fp8_weights_prefill_on_the_fp8_lanes():
    topo = load_topology("dgx_h100")
    costs = {}
    for e in (1, 2):
        work, latent = _serving_workload("llama3_70b", [("precision_bytes", e)])
        model = ServingModel(topo.device, work, 8, kv_geometry(work, latent))
        costs[e] = model.step(0, 0, ((4096, 0),), 1).compute_s
        assert costs[e] >= model.prefill_flops_floor_s(4096)
    # 2 FLOPs per parameter per token over 8 devices at 1,979 TFLOPS FP8 (H100 datasheet), attention aside.
    assert costs[1] >= 2 * 70e9 * 4096 / 8 / 1979e12
    # The GEMMs run twice as fast at a lower measured fraction (main loops 0.705 against 0.772: 0.548 of the time);
    # attention, norms and element-wise kernels stay in BF16 and each GEMM's input is quantized first (0.81 here).
    assert 0.59 * costs[2] < costs[1] < 0.9 * costs[2]


def test_fp8_weights_keep_bf16_all_reduces_and_sends():
    # Llama-3 70B (hidden 8,192, Meta's model card), TP2, two stages: the vocabulary-parallel
    # embedding and each of the 80 blocks' attention and MLP outputs are all-reduced, 8 tokens x
    # 8,192 x 2 bytes (BF16, as engines keep activations); the stage boundary sends the residual
    # stream, 8 tokens x 8,192 x 2.
    topo = load_topology("dgx_h100")
    costs = {}
    for e in (1, 2):
        work, latent = _serving_workload("llama3_70b", [("precision_bytes", e)])
        stages = serving_stages(work, 2)
        model = ServingModel(topo.device, work, 2, kv_geometry(work, latent), stages=stages)
        costs[e] = model.step(3, 300, ((5, 0),), 4)
    assert costs[1].allreduce_bytes == costs[2].allreduce_bytes == 161 * 8 * 8192 * 2
    assert costs[1].sends == costs[2].sends == (8 * 8192 * 2,)


def test_fp8_quantization_kernel_reads_bf16_writes_fp8():
    # Llama-3 70B's fused QKV projection on TP2 at 10 tokens: its input, 10 x 8,192 (hidden), is read
    # in BF16 and written in FP8 by the kernel before the GEMM; the GEMM reads it and half of the
    # 8,192 x (64 + 2 x 8) x 128 weights (64 query, 8 KV heads of 128) in 1 byte, writes BF16.
    work, latent = _serving_workload("llama3_70b", [("precision_bytes", 1)])
    model = ServingModel(load_topology("dgx_h100").device, work, 2, kv_geometry(work, latent))
    qkv = work.layers[work.index["blocks.1/linear3"]]
    quant, gemm = model.fp8_kernels(qkv, 10, 2)
    assert quant.gemm is None and quant.bytes == 10 * 8192 * (2 + 1)
    assert gemm.element_bytes == 1 and gemm.operand_bytes == (8192 * 10_240 // 2, 10 * 8192, 10 * 5120 * 2)


def test_fp8_decode_reads_half_the_weights_and_a_bf16_cache():
    # Decode of one token is weight-bound: FP8 reads each linear layer's weights in one byte (half of
    # BF16's); the embedding and the vocabulary projection stay BF16 (128,256 x 8,192 each, Meta's
    # model card), and the KV cache stays BF16 (vLLM's kv_cache_dtype "auto").
    topo = load_topology("dgx_h100")
    models = {}
    for e in (1, 2):
        work, latent = _serving_workload("llama3_70b", [("precision_bytes", e)])
        models[e] = ServingModel(topo.device, work, 8, kv_geometry(work, latent))
    vocab = 2 * 128_256 * 8192 * 2 / 8
    assert models[1].weight_bytes - vocab == pytest.approx((models[2].weight_bytes - vocab) / 2, rel=1e-3)
    assert models[1].kv_device_bytes == models[2].kv_device_bytes == 80 * 1 * 128 * 2 * 2
    one, two = (models[e].step(1, 1024, (), 1) for e in (1, 2))
    assert one.kv_read_bytes == two.kv_read_bytes and one.compute_s < two.compute_s
    read = {e: sum(count * k.operand_bytes[0] for layer, shards, count, _, _ in m.groups
                   for k in m.fp8_kernels(layer, 1, shards) if k.operand_bytes) for e, m in models.items()}
    head = 128_256 * 8192 * 2 / 8  # the vocabulary projection's BF16 weights, read in both
    assert read[1] - head == pytest.approx((read[2] - head) / 2, rel=1e-6)


def test_same_seed_same_bytes_another_seed_other_requests():
    sets = SMALL + [("serving.kv_tier", "host"), ("serving.lengths", "uniform")]
    a = serve("dgx_h100", "llama3_8b", sets)
    b = serve("dgx_h100", "llama3_8b", sets)
    assert a["link_bytes"] == b["link_bytes"] and a["ttft_s"] == b["ttft_s"]
    assert sum(a["link_bytes"].values()) > 0
    c = serve("dgx_h100", "llama3_8b", sets + [("serving.seed", 1)])
    assert c["link_bytes"] != a["link_bytes"]


def test_ttft_grows_with_rate():
    slow = serve("dgx_h100", "llama3_8b", SMALL + [("serving.rate", 1)])
    fast = serve("dgx_h100", "llama3_8b", SMALL + [("serving.rate", 200)])
    assert fast["ttft_s"]["p90"] > slow["ttft_s"]["p90"]


def test_kv_in_host_memory_decodes_slower_than_in_hbm():
    hbm = serve("dgx_h100", "llama3_8b", SMALL)
    host = serve("dgx_h100", "llama3_8b", SMALL + [("serving.kv_tier", "host")])
    assert host["tpot_s"]["p50"] > hbm["tpot_s"]["p50"]
    assert host["kv_peak_bytes"]["host"] > 0 and host["kv_peak_bytes"]["hbm"] == 0
    assert sum(hbm["link_bytes"].values()) == 0  # one device per instance: nothing leaves it


def test_kv_on_nvme_drives_is_a_tier_like_any_other():
    # The topology's tiers serve the cache: host DRAM and the drives behind the PCIe
    # switches; the drives' write and read ports carry the blocks, slower than DRAM.
    host = serve("dgx_h100_nvme", "llama3_8b", SMALL + [("serving.kv_tier", "host")])
    nvme = serve("dgx_h100_nvme", "llama3_8b", SMALL + [("serving.kv_tier", "nvme")])
    assert nvme["kv_peak_bytes"]["nvme"] > 0 and nvme["kv_peak_bytes"]["hbm"] == 0
    assert nvme["tpot_s"]["p50"] > host["tpot_s"]["p50"]
    drives = {k: v for k, v in nvme["link_bytes"].items() if "NV" in k}
    assert drives and sum(drives.values()) > 0
    assert not any("NV" in k for k, v in host["link_bytes"].items() if v > 0)


def test_a_kv_tier_the_design_lacks_is_refused_naming_its_tiers():
    with pytest.raises(InputError, match=r"serving.kv_tier: dgx_h100 has no cxl tier .*its tiers: host"):
        serve("dgx_h100", "llama3_8b", SMALL + [("serving.kv_tier", "cxl")])


def test_tensor_parallel_all_reduces_on_the_fabric():
    r = serve("dgx_h100", "llama3_70b", [("serving.tensor_parallel", 8), ("serving.requests", 4),
                                         ("serving.output_tokens", 8), ("serving.prompt_tokens", 256)])
    assert r["instances"] == 1
    assert r["link_bytes"]["D0>FS0"] > 0


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preemption_when_the_cache_runs_out(mode):
    # 22% of an 80 GB H100 less 16 GB of weights: 1.5 GB of cache, ~11.7k tokens for 8 requests of 2,000 each.
    sets = [("serving.requests", 64), ("serving.rate", 1000), ("serving.prompt_tokens", 1000),
            ("serving.output_tokens", 1000), ("serving.memory_utilization", 0.22), ("serving.preemption", mode),
            ("serving.max_batch_tokens", 4096)]
    r = serve("dgx_h100", "llama3_8b", sets)
    assert r["requests"] == 64 and r["preemptions"] > 0
    moved = sum(r["link_bytes"].values())
    assert (moved > 0) == (mode == "swap")


def test_spill_fills_hbm_then_the_tier():
    sets = [("serving.requests", 96), ("serving.rate", 1000), ("serving.prompt_tokens", 1000),
            ("serving.output_tokens", 100), ("serving.memory_utilization", 0.22), ("serving.kv_tier", "spill")]
    r = serve("dgx_h100", "llama3_8b", sets)
    assert r["preemptions"] == 0
    assert r["kv_peak_bytes"]["host"] > 0 and r["kv_peak_bytes"]["hbm"] > 0


def test_trace_file_of_requests(tmp_path):
    trace = tmp_path / "requests.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,5\n0.5,200,3\n0.25,50,1\n")
    r = serve("dgx_h100", "llama3_8b", [("serving.trace", str(trace))])
    assert r["requests"] == 3 and r["rate_requests_s"] is None
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,0\n")
    with pytest.raises(InputError, match="line 2"):
        serve("dgx_h100", "llama3_8b", [("serving.trace", str(trace))])


def test_weights_that_do_not_fit_are_refused_with_sizes():
    with pytest.raises(InfeasibleError, match="141 GB"):
        serve("dgx_h100", "llama3_70b", [("serving.requests", 1)])


@pytest.mark.parametrize("args,key", [
    (["--set", "serving.kv_tier=memory_node"], "serving.kv_tier"),
    (["--set", "serving.rate=-1"], "serving.rate"),
    (["--set", "serving.tensor_parallel=3"], "serving.tensor_parallel"),
    (["--slo", "ttft"], "--slo"),
    (["--slo", "ttft=2x"], "--slo"),
    (["--set", "training.chunk=1MiB"], "--set"),
    (["--workload", "resnet34"], "--workload"),
    (["--set", "serving.preemption=swap", "--set", "serving.kv_tier=spill"], "serving.preemption"),
    (["--set", "serving.prefill_devices=4"], "serving.decode_devices"),
    (["--set", "serving.prefill_devices=6", "--set", "serving.decode_devices=4"], "serving.decode_devices"),
    (["--set", "serving.prefill_devices=3", "--set", "serving.decode_devices=4", "--set", "serving.tensor_parallel=2"],
     "serving.prefill_devices"),
    (["--set", "serving.pipeline_parallel=3"], "serving.pipeline_parallel"),
    (["--set", "serving.pipeline_parallel=40"], "serving.pipeline_parallel"),  # Llama-3 8B has 32 blocks
    (["--set", "serving.prefill_devices=2", "--set", "serving.decode_devices=4", "--set", "serving.pipeline_parallel=4"],
     "serving.prefill_devices"),
])
def test_bad_input_exits_2_naming_the_key(args, key, capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["serve", *args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert key in err and err.count("\n") == 1
    assert not out.exists()


def test_json_and_trace(tmp_path, capsys):
    trace = tmp_path / "t.json"
    assert main(["serve", "--format", "json", "--trace", str(trace), "--slo", "ttft=1s,tpot=20ms",
                 *sum((["--set", f"{k}={v}"] for k, v in SMALL), [])]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["ttft_s"]) == {"p50", "p90", "p99"} and result["goodput_requests_s"] > 0
    assert result["slo"]["met"] <= result["requests"]
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("cat") == "batch" for e in events)


def test_api_result_is_typed():
    import mcdla

    r = mcdla.serve(set=dict(SMALL))
    assert isinstance(r, mcdla.ServeResult) and r.kv_bytes_per_token == 131_072  # Llama-3 8B: 2 x 32 x 8 x 128 x 2


def test_best_at_slo_keeps_the_fastest_run_that_meets_the_objective():
    import pandas as pd

    from mcdla.metrics.serving import best_at_slo

    rows = [{"label": "a", "workload": "w", "serving.rate": r, "throughput_tokens_s": t, "ttft_s.p99": 0.1,
             "tpot_s.p99": p, "slo.ttft_s": 0.45, "slo.tpot_s": 0.04, "status": "ok"}
            for r, t, p in ((2, 100.0, 0.02), (8, 400.0, 0.039), (32, 900.0, 0.05))]
    rows.append({**rows[0], "label": "b", "tpot_s.p99": 0.2})
    best = best_at_slo(pd.DataFrame(rows)).set_index("label")
    assert best.loc["a", "serving.rate"] == 8  # 32 requests/s misses the TPOT bound
    assert best.loc["b", "throughput_tokens_s"] != best.loc["b", "throughput_tokens_s"]  # none meets it: NaN


def test_disaggregated_prefill_hands_each_cache_to_a_decode_instance():
    # Four H100s prefill, four decode: each request's whole prompt cache (Llama-3 8B: 131,072 B a
    # token) leaves a prefill GPU for a decode GPU over the NVSwitch, once.
    sets = [("serving.prefill_devices", 4), ("serving.decode_devices", 4), ("serving.requests", 16),
            ("serving.prompt_tokens", 512), ("serving.output_tokens", 8), ("serving.rate", 4)]
    r = serve("dgx_h100", "llama3_8b", sets)
    assert r["requests"] == 16
    sent = sum(r["link_bytes"][f"D{d}>FS0"] for d in range(4))
    received = sum(r["link_bytes"][f"FS0>D{d}"] for d in range(4, 8))
    assert sent == pytest.approx(16 * 512 * 131_072) and received == pytest.approx(sent)
    assert sum(r["link_bytes"][f"D{d}>FS0"] for d in range(4, 8)) == 0  # decode GPUs send nothing


def test_moe_decode_reads_the_routed_experts_only():
    # DeepSeek-V3 in FP8 on 8 H200s (4.8 TB/s, datasheet): one token's step reads its routed experts,
    # not all 256 of every layer, and never less than the parameters one token uses.
    work, latent = _serving_workload("deepseek_v3", [("precision_bytes", 1)])
    topo = load_topology("dgx_h100", [("device", "h200_sxm")])
    model = ServingModel(topo.device, work, 8, kv_geometry(work, latent))
    one = model.step(1, 1024, (), 1).compute_s
    assert one < 671e9 / 8 / 4.8e12  # all the weights of a device would take 17.5 ms
    assert one >= 37e9 / 8 / 4.8e12  # 37B active parameters (DeepSeek-V3 report), 1 byte each
    assert model.step(256, 256 * 1024, (), 256).compute_s > one


def test_events_grow_with_iterations_not_tokens_times_requests():
    # 64 requests decoding together on one H100 (Llama-3 8B): a few events per iteration and per
    # request, however many tokens each iteration computes.
    sets = [("generator.devices", 2), ("host.sockets", 1), ("serving.requests", 64), ("serving.rate", 1e6),
            ("serving.prompt_tokens", 256), ("serving.output_tokens", 64)]
    r = serve("dgx_h100", "llama3_8b", sets)
    assert r["mean_batch_tokens"] > 30
    assert r["events"] < 4 * r["iterations"] + 4 * r["requests"]


def test_pipeline_stages_send_the_batch_activations_by_hand():
    # Llama-3 8B in two stages of one H100 each (four instances): every token an iteration computes
    # leaves stage 0 once, its residual stream of 4,096 (hidden size, Meta's model card) x 2 bytes.
    # Instance 0 gets requests 0 and 4 of 8: 2 x (512 prompt + 23 decoded) tokens.
    sets = [("serving.pipeline_parallel", 2), ("serving.requests", 8), ("serving.prompt_tokens", 512),
            ("serving.output_tokens", 24)]
    r = serve("dgx_h100", "llama3_8b", sets)
    assert r["instances"] == 4 and r["pipeline_parallel"] == 2
    sent = sum(v for k, v in r["link_bytes"].items() if k.startswith("D0>"))
    assert sent == pytest.approx(2 * (512 + 23) * 4096 * 2)
    assert sum(v for k, v in r["link_bytes"].items() if k.startswith("D1>")) == 0  # the last stage sends nothing


def test_pipeline_stages_hold_a_share_of_the_kv_cache_and_weights():
    # Llama-3 70B's 80 blocks over 4 stages of 2 H100s: 20 blocks' cache a device, 1 KV head of 8 each
    # half of the group: 2 (K, V) x 20 x 4 x 128 x 2 bytes.
    work, latent = _serving_workload("llama3_70b", [])
    topo = load_topology("dgx_h100")
    one = ServingModel(topo.device, work, 2, kv_geometry(work, latent))
    four = ServingModel(topo.device, work, 2, kv_geometry(work, latent), serving_stages(work, 4))
    assert [sum(work.layers[i].attention is not None for i in s) for s in four.stages] == [20] * 4
    assert four.kv_device_bytes == 2 * 20 * 4 * 128 * 2 == one.kv_device_bytes // 4
    assert one.weight_bytes / 4 < four.weight_bytes < one.weight_bytes / 3.5  # the embedding's stage holds the most
    # An instance's cache: at least 4 times the tokens (a quarter of the bytes a token, more room left).
    base = [("serving.tensor_parallel", 2), ("serving.requests", 4), ("serving.output_tokens", 4),
            ("serving.prompt_tokens", 256)]
    cap = {p: serve("dgx_h100", "llama3_70b", base + [("serving.pipeline_parallel", p)])["kv_capacity_tokens"]
           for p in (1, 4)}
    assert cap[4] >= 4 * cap[1]


def test_pipelined_decode_never_beats_reading_every_stage_from_hbm():
    # The stages run in turn: a decode step reads all of the weights (over 2 x 4 H100s, 1/2 each
    # stage's) and the cache from HBM at 3.35 TB/s (H100 SXM5 datasheet), then sends.
    from mcdla.config.serving import serving_spec
    from mcdla.config.serving import Request
    from mcdla.sim.serving import ServingRun

    work, latent = _serving_workload("llama3_70b", [])
    topo = load_topology("dgx_h100")
    model = ServingModel(topo.device, work, 2, kv_geometry(work, latent), serving_stages(work, 4))
    spec = serving_spec({"tensor_parallel": 2, "pipeline_parallel": 4})
    run = ServingRun(topo, model, spec, [Request(0.0, 1024, 16) for _ in range(8)])
    record = run.run()
    decodes = [(end - start, n) for _, start, end, _, n, prefills in record.iterations if prefills == 0]
    assert decodes
    for seconds, seqs in decodes:
        floor = (70_553_706_496 * 2 / 2 * 0.99 + seqs * 1024 * 4 * 40_960) / 3.35e12
        assert seconds >= floor


def test_disaggregated_stages_hand_on_their_share_of_the_cache():
    # Prefill and decode instances of two stages (one H100 each, Llama-3 8B): each stage's device
    # hands on its 16 blocks' half of a request's cache (131,072 B a token in all), and stage 0 sends
    # the activations (4,096 x 2 bytes a token) of the 512 prompt tokens, or of the 7 decoded ones.
    sets = [("serving.pipeline_parallel", 2), ("serving.prefill_devices", 4), ("serving.decode_devices", 4),
            ("serving.requests", 16), ("serving.prompt_tokens", 512), ("serving.output_tokens", 8),
            ("serving.rate", 4)]
    r = serve("dgx_h100", "llama3_8b", sets)
    assert r["requests"] == 16 and r["instances"] == 4

    def sent(devices):
        return sum(v for k, v in r["link_bytes"].items() if k.split(">")[0] in {f"D{d}" for d in devices})

    assert sent(range(4)) == pytest.approx(16 * 512 * (131_072 + 4096 * 2))
    assert sent(range(4, 8)) == pytest.approx(16 * 7 * 4096 * 2)


# One H100 serving Llama-3 8B alone (one instance: every request meets the same cache).
ONE_GPU = [("generator.devices", 1), ("host.sockets", 1), ("generator.devices_per_pcie_switch", 1)]


def _prefix_trace(tmp_path, rows) -> list:
    trace = tmp_path / "prefixed.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n"
                     + "".join(f"{a},{p},{o},{pid},{pt}\n" for a, p, o, pid, pt in rows))
    return ONE_GPU + [("serving.trace", str(trace))]


def test_identical_prompts_share_their_blocks_and_skip_their_prefill(tmp_path):
    # One request, then seven identical ones while it decodes: each finds its 1,024-token
    # prompt cached but for the last block's worth (at most prompt - 1 tokens hit: 63 blocks).
    sets = _prefix_trace(tmp_path, [(0, 1024, 64, "doc", 1024)] + [(0.1, 1024, 64, "doc", 1024)] * 7)
    off = serve("dgx_h100", "llama3_8b", sets)
    on = serve("dgx_h100", "llama3_8b", sets + [("serving.prefix_caching", True)])
    assert "prefix_hit_rate" not in off
    assert on["prefix_tokens_saved"] == 7 * 63 * 16
    assert on["prefix_hit_rate"] == pytest.approx(7 * 1008 / (8 * 1024))
    # The saved tokens are not computed: the iterations carry exactly that many fewer.
    computed = {k: r["iterations"] * r["mean_batch_tokens"] for k, r in (("off", off), ("on", on))}
    assert computed["off"] - computed["on"] == pytest.approx(on["prefix_tokens_saved"])
    assert on["ttft_s"]["p50"] < off["ttft_s"]["p50"]
    # One copy of the shared blocks: 8 x 68 blocks without, 64 shared + 8 x at most 5 with.
    block = 16 * 131_072  # 16 tokens x Llama-3 8B's 128 KiB per token
    assert off["kv_peak_bytes"]["hbm"] == 8 * 68 * block
    assert on["kv_peak_bytes"]["hbm"] <= (64 + 8 * 5) * block


def test_a_prefix_is_shared_only_with_requests_naming_it(tmp_path):
    rows = [(0, 512, 32, "a", 512), (0.1, 512, 32, "b", 512), (0.2, 512, 32, "", 0)]
    on = serve("dgx_h100", "llama3_8b", _prefix_trace(tmp_path, rows) + [("serving.prefix_caching", True)])
    assert on["prefix_tokens_saved"] == 0 and on["prefix_hit_rate"] == 0


def test_unreferenced_prefix_blocks_are_evicted_least_recently_released_first(tmp_path):
    # Five 512-token prompts of five prefixes one after another, then the first again.
    # Each leaves its 32 prefix blocks cached; a cache of 131 blocks keeps four.
    rows = [(t, 512, 2, pid, 512) for t, pid in enumerate("ABCDE")] + [(5, 512, 2, "A", 512)]
    sets = _prefix_trace(tmp_path, rows) + [("serving.prefix_caching", True)]
    roomy = serve("dgx_h100", "llama3_8b", sets)
    assert roomy["prefix_evicted_blocks"] == 0 and roomy["prefix_tokens_saved"] == 31 * 16
    # 0.2042 of 80 GB less 16.06 GB of weights: 131 blocks of 2 MiB.
    tight = serve("dgx_h100", "llama3_8b", sets + [("serving.memory_utilization", 0.2042)])
    assert tight["kv_capacity_tokens"] == 131 * 16
    assert tight["prefix_evicted_blocks"] > 0
    # E took A's blocks, last first (vLLM frees a request's blocks tail first): of A's
    # 32, E's 32 prefill blocks and its decode block evicted 30, so A's first 2 remain.
    assert tight["prefix_tokens_saved"] == 2 * 16


def test_prefix_caching_inputs_are_checked(tmp_path):
    with pytest.raises(InputError, match="kv_tier"):
        serve("dgx_h100", "llama3_8b", SMALL + [("serving.prefix_caching", True), ("serving.kv_tier", "host")])
    with pytest.raises(InputError, match="recompute"):
        serve("dgx_h100", "llama3_8b", SMALL + [("serving.prefix_caching", True), ("serving.preemption", "swap")])
    with pytest.raises(InputError, match="shared_prefix_tokens"):
        serve("dgx_h100", "llama3_8b", SMALL + [("serving.shared_prefix_tokens", 513)])
    trace = tmp_path / "bad.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n0,100,5,a,101\n")
    with pytest.raises(InputError, match="line 2"):
        serve("dgx_h100", "llama3_8b", [("serving.trace", str(trace))])


def test_generated_requests_draw_shared_prefixes():
    sets = SMALL + [("serving.rate", 50), ("serving.shared_prefix_tokens", 256), ("serving.prefixes", 2)]
    on = serve("dgx_h100", "llama3_8b", sets + [("serving.prefix_caching", True)])
    off = serve("dgx_h100", "llama3_8b", sets)
    assert 0 < on["prefix_hit_rate"] < 256 / 512
    assert on["ttft_s"]["p50"] <= off["ttft_s"]["p50"]


def test_a_decode_step_replayed_as_a_cuda_graph_pays_one_launch():
    model, topo = _model("llama3_8b", 1)
    eager = model.step(1, 1024, (), 1).compute_s
    graph = model.step(1, 1024, (), 1, graph_batch=1).compute_s
    # Some hundred kernels at 5 us each become one 15 us launch and 0.58 us a kernel.
    assert 0.5e-3 < eager - graph < 2e-3
    # Still no faster than streaming the weights (16 GB) from HBM at the datasheet's 3.35 TB/s.
    assert graph >= 16.06e9 / 3.35e12
    # A batch padded to a capture size computes the padded batch's tokens.
    assert model.step(9, 9 * 1024, (), 9, graph_batch=16).compute_s >= model.step(9, 9 * 1024, (), 9, 9).compute_s


def test_cuda_graphs_replay_small_decode_batches_only():
    sets = SMALL + [("serving.rate", 4), ("serving.cuda_graphs", True)]
    on = serve("dgx_h100", "llama3_8b", sets)
    off = serve("dgx_h100", "llama3_8b", SMALL + [("serving.rate", 4)])
    assert "graph_iterations" not in off
    assert 0 < on["graph_iterations"] < on["iterations"]  # prefill iterations run eagerly
    assert on["tpot_s"]["p50"] < off["tpot_s"]["p50"]
    assert on["ttft_s"]["p50"] == pytest.approx(off["ttft_s"]["p50"], rel=0.2)
    # vLLM's capture sizes stop at 512: 600 requests decoding together run eagerly.
    crowd = [("serving.requests", 600), ("serving.prompt_tokens", 8), ("serving.output_tokens", 3),
             ("serving.rate", 1e6), ("serving.max_seqs", 1024), ("serving.cuda_graphs", True)]
    run = serve("dgx_h100", "llama3_8b", ONE_GPU + crowd)
    assert run["mean_batch_tokens"] > 512 and run["graph_iterations"] == 0


def test_capture_sizes_are_vllms():
    from mcdla.config.serving import serving_spec

    sizes = serving_spec({}).capture_sizes
    assert sizes[:5] == (1, 2, 4, 8, 16) and sizes[-1] == 512 and 248 in sizes and 272 in sizes and 264 not in sizes
    assert serving_spec({"max_seqs": 3}).capture_sizes == (1, 2, 4)
    assert serving_spec({"max_seqs": 1}).capture_sizes == (1, 2)


def test_cuda_graphs_need_the_devices_graph_costs():
    with pytest.raises(InputError, match="graph"):
        serve("dgx_h100", "llama3_8b", SMALL + [("serving.cuda_graphs", True), ("device.graph_launch_overhead", None)])


def test_the_end_check_counts_evictable_cached_blocks_unheld_and_catches_a_leak():
    # Two requests sharing a 512-token prefix on one H100: the run ends with the prefix's 32
    # blocks cached but referenced by none (evictable), not in the free count; the end
    # check counts them unheld. A block missing from the free ones is caught.
    from mcdla.config.serving import Request, serving_spec
    from mcdla.errors import InvariantError
    from mcdla.sim.serving import ServingRun

    model, _ = _model("llama3_8b", 1)
    topo = load_topology("dgx_h100", ONE_GPU)
    spec = serving_spec({"prefix_caching": True})
    run = ServingRun(topo, model, spec, [Request(t, 520, 4, "doc", 512) for t in (0.0, 1.0)])
    run.run()
    engine = run.engines[0]
    assert len(engine.cache.evictable) == 32 and engine.cache.referenced() == 0
    assert engine.free["hbm"] == engine.pool["hbm"] - 32 and engine.unheld("hbm") == engine.pool["hbm"]
    engine.free["hbm"] -= 1
    with pytest.raises(InvariantError, match="ends holding cache blocks"):
        run._check()
