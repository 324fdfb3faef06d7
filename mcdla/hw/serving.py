"""Closed forms of LLM serving: the KV cache's size and one engine iteration's cost.

An engine iteration (vLLM, Sarathi-Serve: continuous batching) computes a batch of
tokens: one per running request in decode, and a prefill chunk of ``c`` tokens for
others, each after a prefix of ``p`` tokens already in the cache. Its cost on one
device of a tensor-parallel instance of ``t`` devices is asked of mcdla's kernel
models (:func:`mcdla.hw.compute.kernel_time`: GEMM tiles in waves on a GPU, the PE
array otherwise, memory-bound kernels at the achievable HBM bandwidth, a launch each):

- every layer but attention and the loss, at the batch's token count: the workload
  expanded with one token per sample, so a linear layer is a GEMM of ``n`` = tokens
  (its weights read once per iteration, whatever the batch: what makes decode
  memory-bound), a norm streams tokens x hidden; split ``t`` ways as Megatron splits
  them (:func:`mcdla.hw.parallelism.tensor_split`). The vocabulary projection runs
  only on the tokens that are sampled (one per decode, one per prefill that ends),
  as vLLM computes logits only there;
- attention, per layer: decode reads each request's cache (its context's K and V on
  this device) in one memory-bound kernel (PagedAttention / FlashDecoding stream the
  cache; the few query rows per KV head leave the tensor cores idle); each prefill
  chunk is a fused FlashAttention kernel of ``c`` queries over ``p + c`` keys, causal
  (:func:`mcdla.hw.gpu.attention_seconds` on a GPU);
- the all-reduces of tensor parallelism: one after every row-parallel layer, of the
  batch's tokens x its output width (their count and bytes here; the driver runs
  them on the flow network).

With pipeline stages (``stages``), a device holds its stage's weights and its stage's
layers' cache; the iteration still computes every layer (the stages run in turn) and
adds, per stage boundary, the tensors the next stage reads (:attr:`ServingModel.boundary_elems`).

FP8 weights (``precision_bytes`` 1) as vLLM and TensorRT-LLM run them: the linear
layers' weights in one byte, their GEMMs on the FP8 lanes, the output dequantized in
the GEMM's epilogue; everything else in BF16 (:data:`ACTIVATION_BYTES`): the
activations between layers, norms and element-wise kernels, attention, the
all-reduces, the pipeline's sends, the KV cache (vLLM's default ``kv_cache_dtype``
"auto" is the model's dtype), and the embedding and vocabulary projection, which the
engines leave unquantized. Before each FP8 GEMM a quantization kernel reads its BF16
input and writes it in FP8 (:meth:`ServingModel.fp8_kernels`; docs/serving.md).

KV bytes per token (all devices, the whole model): ``2 x layers x kv_heads x
head_dim x bytes`` for multi-head and grouped-query attention (K and V; V's head
size where it differs); with DeepSeek's multi-head latent attention the cache holds
the compressed latent and the rotary key, ``layers x (kv_lora_rank + rope_head_dim)
x bytes`` (DeepSeek-V2, arXiv:2405.04434, Table 1), the same on every device of a
tensor-parallel group (vLLM's MLA keeps the latent whole on each rank). K and V
heads split over the group; a group larger than the KV heads replicates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

from mcdla.config.hardware import DeviceSpec
from mcdla.errors import InputError
from mcdla.hw.compute import kernel_time
from mcdla.hw.gpu import gemm_rate
from mcdla.hw.layers import LM_HEAD, Gemm, Kernel, Workload, ceil_div, fp8_cast, on_fp8_lanes
from mcdla.hw.parallelism import tensor_split

__all__ = ["KvGeometry", "StepCost", "ServingModel", "kv_geometry"]

# Layers an inference iteration does not run: the data layer and the training loss.
_NOT_SERVED = ("input", "cross_entropy")
# With FP8 weights the engines keep activations (and, by default, the KV cache) in
# BF16: vLLM's Fp8LinearMethod.apply quantizes a BF16 input (vllm/_custom_ops.py
# scaled_fp8_quant) before each FP8 GEMM, and kv_cache_dtype "auto" is the model dtype.
ACTIVATION_BYTES = 2


@dataclass(frozen=True)
class KvGeometry:
    """What one token leaves in the KV cache (see the module docstring)."""

    layers: int  # attention layers
    heads: int
    kv_heads: int
    head_dim: int  # Q's and K's
    v_head_dim: int
    element_bytes: int
    latent: int = 0  # MLA: the cached latent and rotary key per layer; 0: K and V per head

    def bytes_per_token(self, tp: int = 1) -> float:
        """KV bytes per token on one device of a group of ``tp`` (tp=1: the whole model)."""
        if self.latent:
            return self.layers * self.latent * self.element_bytes
        return self.layers * ceil_div(self.kv_heads, tp) * (self.head_dim + self.v_head_dim) * self.element_bytes


def kv_geometry(workload: Workload, latent: int = 0) -> KvGeometry:
    """The cache geometry of ``workload``'s attention layers (``latent``: MLA's width)."""
    cores = [l.attention for l in workload.layers if l.attention is not None]
    if not cores:
        raise ValueError(f"workload {workload.name!r} has no attention layer to serve")
    a = cores[0]
    return KvGeometry(layers=len(cores), heads=a.heads, kv_heads=a.kv_heads, head_dim=a.head_dim,
                      v_head_dim=a.value_dim, element_bytes=activation_bytes(workload),
                      latent=latent)


@dataclass(frozen=True)
class StepCost:
    """One iteration on one device of an instance."""

    compute_s: float  # every kernel, one after another
    allreduces: int  # tensor parallelism's all-reduces (0 without)
    allreduce_bytes: float  # their messages summed (one rank's buffer each)
    weight_bytes: float  # the weights it holds (a dense model reads them all every iteration)
    kv_read_bytes: float  # the KV cache its attention reads
    sends: tuple[float, ...] = ()  # pipeline parallelism: bytes each rank sends across stage boundary s


def activation_bytes(workload: Workload) -> int:
    """Bytes of an activation (and of a KV-cache element): BF16 when the weights are FP8."""
    return ACTIVATION_BYTES if workload.precision_bytes == 1 else workload.precision_bytes


class ServingModel:
    """The cost model of one instance (``tp`` devices) serving ``workload`` on ``device``.

    ``workload`` is expanded with one token per sample (``seq_len: 1``). Layers alike in
    all but their name (a block repeated) are timed once and counted. ``stages``: with
    pipeline parallelism, each stage's layers (:func:`mcdla.sim.serving_engine.serving_stages`);
    a device then holds its stage's weights and KV cache, and the iteration's time is
    still every layer's (the stages run one after another), plus the sends between them.
    ``ep``: expert parallelism over ``ep`` devices (mcdla.sim.serving_expert): each routed
    expert bank's E/ep experts whole on a device, timed apart (:meth:`experts_s`) at the
    tokens of every attention group; :meth:`step` then times the rest."""

    def __init__(self, device: DeviceSpec, workload: Workload, tp: int, geometry: KvGeometry,
                 stages: tuple[range, ...] = (), ep: int = 1):
        self.device, self.workload, self.tp, self.kv, self.ep = device, workload, tp, geometry, ep
        self.stages = stages or (range(len(workload.layers)),)
        self.prec = workload.precision_bytes  # the weights' bytes
        self.act = activation_bytes(workload)  # the activations' (= prec unless the weights are FP8)
        try:
            split = tensor_split(workload.layers, tp)
        except InputError as exc:  # training's message, under the serving key
            raise InputError(exc.detail, key="serving.tensor_parallel") from None
        # The routed expert banks (k of E experts a token) expert parallelism splits ep ways.
        self.banks = frozenset(i for i, layer in enumerate(workload.layers) if ep > 1 and _routed(layer))
        self.shards = tuple(ep if i in self.banks else n for i, n in enumerate(split.shards))
        groups: dict = {}
        for i, layer in enumerate(workload.layers):
            if layer.kind in _NOT_SERVED or layer.attention is not None:
                continue
            key = (replace(layer, name="", inputs=(), weight_group=None), self.shards[i], layer.name == LM_HEAD,
                   self.stage_of[i], i in self.banks)
            first, count = groups.get(key, (layer, 0))
            groups[key] = (first, count + 1)
        # (a representative layer, its shards, its count, whether it runs on sampled tokens only, its stage)
        self.groups = tuple((first, key[1], count, key[2], key[3]) for key, (first, count) in groups.items()
                            if not key[4])
        self.expert_groups = tuple((first, key[1], count) for key, (first, count) in groups.items() if key[4])
        # An expert's output is whole on its device: no all-reduce follows a bank.
        out = [i for i in split.reduce_out if tp > 1 and i not in self.banks]
        self.reduced = tuple(workload.layers[i] for i in out)
        self.reduced_stage = tuple(self.stage_of[i] for i in out)
        self.attention = next(l.attention for l in workload.layers if l.attention is not None)
        self._dense: dict[tuple, float] = {}

    @cached_property
    def stage_of(self) -> tuple[int, ...]:
        """Layer -> the pipeline stage that runs it."""
        return tuple(s for s, members in enumerate(self.stages) for _ in members)

    @cached_property
    def weight_bytes(self) -> float:
        """Weights one device holds: every split layer's 1/t, the replicated ones whole;
        with pipeline stages, those of the stage holding the most (a weight shared by
        two stages, as tied embeddings, held in the first that uses it)."""
        held, stage = {}, {}
        for layer, shards, s in zip(self.workload.layers, self.shards, self.stage_of):
            if layer.weight_group is not None and layer.params:
                size = layer.params / shards * self._weight_element_bytes(layer)
                held[layer.weight_group] = max(held.get(layer.weight_group, 0.0), size)
                stage.setdefault(layer.weight_group, s)
        per_stage = [0.0] * len(self.stages)
        for group, size in held.items():
            per_stage[stage[group]] += size
        return max(per_stage)

    def _weight_element_bytes(self, layer) -> int:
        """Bytes of one of ``layer``'s weights: FP8 for a quantized linear layer's; the
        embedding and the vocabulary projection stay in BF16 (vLLM's Fp8Config quantizes
        LinearBase layers only, not VocabParallelEmbedding/ParallelLMHead)."""
        return self.prec if layer.lowering is not None and layer.name != LM_HEAD else self.act

    @cached_property
    def attention_layers(self) -> tuple[int, ...]:
        """Pipeline stage -> its attention layers."""
        counts = [0] * len(self.stages)
        for layer, s in zip(self.workload.layers, self.stage_of):
            counts[s] += layer.attention is not None
        return tuple(counts)

    @cached_property
    def kv_device_bytes(self) -> int:
        """KV bytes per token on one device: its tensor share of its stage's attention
        layers (the stage with the most)."""
        return self.kv.bytes_per_token(self.tp) // self.kv.layers * max(self.attention_layers)

    @cached_property
    def boundary_elems(self) -> tuple[int, ...]:
        """Stage boundary s -> the elements per token crossing it from stage s to s + 1:
        every tensor a later stage reads, sent once per boundary it crosses (the
        residual stream between blocks: tokens x hidden)."""
        crossing = [0] * (len(self.stages) - 1)
        counted = set()
        for i, layer in enumerate(self.workload.layers):
            if layer.kind in _NOT_SERVED:
                continue
            for q in layer.inputs:
                for s in range(self.stage_of[q], self.stage_of[i]):
                    if (q, s) not in counted:
                        crossing[s] += self.workload.layers[q].out_elems_per_sample
                        counted.add((q, s))
        return tuple(crossing)

    @cached_property
    def graph_device(self) -> DeviceSpec:
        """The device as a replayed CUDA graph sees it: each kernel costs its node's
        device-side overhead in place of a launch (the graph's one launch is the step's)."""
        if self.device.graph_launch_overhead is None or self.device.graph_node_overhead is None:
            raise InputError("the device has no CUDA graph costs (device.graph_launch_overhead, "
                             "device.graph_node_overhead); set them or serving.cuda_graphs=false",
                             key="serving.cuda_graphs")
        return replace(self.device, launch_overhead=self.device.graph_node_overhead)

    def _dense_s(self, tokens: int, sampled: int, device: DeviceSpec, stage: int | None = None) -> float:
        """Seconds of every layer but attention, at ``tokens`` (the head at ``sampled``):
        the whole model's, or (``stage``) one pipeline stage's."""
        key = (tokens, sampled, device is self.device, stage)
        cached = self._dense.get(key)
        if cached is None:
            cached = 0.0
            for layer, shards, count, head, s in self.groups:
                batch = sampled if head else tokens
                if batch and stage in (None, s):
                    cached += count * self._layer_s(layer, batch, shards, device)
            self._dense[key] = cached
        return cached

    def experts_s(self, tokens: int) -> float:
        """Expert parallelism: seconds of one device's routed experts when the attention
        groups send ``tokens`` in all: under uniform routing it computes 1/ep of their
        slots and reads, of its E/ep experts, those they reach (:meth:`_layer_s` at
        ``tokens`` split ep ways: the same MACs and weight bytes)."""
        key = ("experts", tokens)
        if key not in self._dense:
            self._dense[key] = sum(count * self._layer_s(layer, tokens, shards, self.device) if tokens else 0.0
                                   for layer, shards, count in self.expert_groups)
        return self._dense[key]

    @cached_property
    def exchange_elems(self) -> tuple[int, int]:
        """Expert parallelism's all-to-alls in one iteration and their elements per token
        summed: each MoE layer's dispatch (its slots: top_k x hidden) and combine (the
        experts' outputs back)."""
        layers = self.workload.layers
        sizes = [layer.out_elems_per_sample for layer in layers if layer.kind == "moe_dispatch"]
        sizes += [layers[layer.inputs[0]].out_elems_per_sample for layer in layers if layer.kind == "moe_combine"]
        return len(sizes), sum(sizes)

    def _layer_s(self, layer, tokens: int, shards: int, device: DeviceSpec) -> float:
        """Seconds of one layer at ``tokens``. An expert bank (k of its E experts per token)
        reads only the experts its tokens are routed to: under uniform routing an expert
        is missed by one token with probability 1 - k/E, so ``tokens`` leave a share
        1 - (1 - k/E)^tokens of its weights to read (the training model reads every
        expert: at a training batch that share is 1)."""
        kernels = self.fp8_kernels(layer, tokens, shards)
        if not _routed(layer):
            return sum(kernel_time(device, kernel).time_s for kernel in kernels)
        touched = 1.0 - (1.0 - layer.active_params / layer.params) ** tokens
        seconds = 0.0
        for kernel in kernels:
            if kernel.operand_bytes is not None:  # the forward GEMM: (weights, tokens in, out)
                weights, inputs, out = kernel.operand_bytes
                kept = int(weights * touched)
                kernel = replace(kernel, bytes=kernel.bytes - weights + kept, operand_bytes=(kept, inputs, out))
            seconds += kernel_time(device, kernel).time_s
        return seconds

    def fp8_kernels(self, layer, tokens: int, shards: int) -> tuple[Kernel, ...]:
        """``layer``'s forward kernels at ``tokens``, activations at :attr:`act` bytes. With
        FP8 weights each quantized GEMM reads 1-byte weights and a 1-byte input on the
        FP8 lanes, writes BF16 (dequantized in its epilogue), after a quantization kernel
        that reads the BF16 input and writes it in FP8 (static per-tensor scales, as the
        FP8 checkpoints of TensorRT-LLM/ModelOpt and vLLM carry: one pass, unfused)."""
        kernels = layer.kernels("fwd", tokens, self.act, shards)
        if self._weight_element_bytes(layer) == self.act:
            return kernels
        out: list[Kernel] = []
        for kernel in kernels:
            if kernel.operand_bytes is None:
                out.append(kernel)
                continue
            out.append(fp8_cast(f"{kernel.name}:quant_fp8", kernel.operand_bytes[1], self.act, copies=1))
            out.append(on_fp8_lanes(kernel, self.act))
        return tuple(out)

    def _decode_attention_s(self, context_tokens: int, seqs: int, device: DeviceSpec) -> tuple[float, float]:
        """Seconds and KV bytes of one layer's decode attention over ``seqs`` requests
        holding ``context_tokens`` in all (one memory-bound kernel)."""
        a, e = self.attention, self.act
        heads = ceil_div(a.heads, self.tp)
        kv = context_tokens * self.kv.bytes_per_token(self.tp) / self.kv.layers
        dv = a.value_dim
        io = seqs * heads * (a.head_dim + dv) * e  # the queries in, the outputs out
        macs = context_tokens * heads * (a.head_dim + dv)
        return kernel_time(device, Kernel("attention:decode", macs, int(kv + io), None, element_bytes=e)).time_s, kv

    def _prefill_attention_s(self, chunk: int, prefix: int) -> tuple[float, float]:
        """Seconds and KV bytes of one layer's causal attention of a ``chunk`` of queries
        after ``prefix`` cached tokens (a fused kernel)."""
        a, e = self.attention, self.act
        heads, kv_heads = ceil_div(a.heads, self.tp), ceil_div(a.kv_heads, self.tp)
        d, dv = a.head_dim, a.value_dim
        keys = prefix + chunk
        # Causal: query i of the chunk sees prefix + i + 1 keys.
        macs = heads * (d + dv) * (chunk * prefix + chunk * (chunk + 1) // 2)
        kv = keys * kv_heads * (d + dv) * e
        moved = kv + chunk * heads * (d + dv) * e
        gemms = (Gemm(chunk, keys, d, heads), Gemm(chunk, dv, keys, heads))
        kernel = Kernel("attention:prefill", macs, int(moved), None, None, e, gemms=gemms)
        return kernel_time(self.device, kernel).time_s, kv

    def step(self, decode_seqs: int, decode_context: int, prefills: tuple[tuple[int, int], ...],
             sampled: int, graph_batch: int = 0, stage: int | None = None) -> StepCost:
        """The cost of one iteration: ``decode_seqs`` requests decoding one token over
        ``decode_context`` cached tokens in all, the ``prefills`` as (chunk, prefix),
        ``sampled`` tokens through the vocabulary projection. ``graph_batch``: a decode
        step replayed as the CUDA graph captured for that many tokens (the batch padded
        to it, vLLM's): one graph launch per stage, a node's cost per kernel (0: eager).
        ``stage``: only that pipeline stage's layers, all-reduces and send (to the next
        stage; None: every stage, every send)."""
        tokens = decode_seqs + sum(c for c, _ in prefills)
        if tokens == 0:
            return StepCost(0.0, 0, 0.0, 0.0, 0.0)
        device, launches = self.device, 0.0
        if graph_batch:
            device, tokens = self.graph_device, graph_batch
            launches = (len(self.stages) if stage is None else 1) * self.device.graph_launch_overhead
        seconds = self._dense_s(tokens, sampled, device, stage) + launches
        layers = self.kv.layers if stage is None else self.attention_layers[stage]
        kv_read = 0.0
        if decode_seqs and layers:
            s, b = self._decode_attention_s(decode_context, decode_seqs, device)
            seconds += layers * s
            kv_read += layers * b
        for chunk, prefix in prefills if layers else ():
            s, b = self._prefill_attention_s(chunk, prefix)
            seconds += layers * s
            kv_read += layers * b
        reduced = [l for l, s in zip(self.reduced, self.reduced_stage) if stage in (None, s)]
        reduce_bytes = float(sum(l.out_elems_per_sample for l in reduced) * tokens * self.act)
        sends = tuple(float(elems * tokens * self.act) for s, elems in enumerate(self.boundary_elems)
                      if stage in (None, s))
        return StepCost(seconds, len(reduced), reduce_bytes, self.weight_bytes, kv_read, sends)

    def prefill_flops_floor_s(self, tokens: int) -> float:
        """The least time ``tokens`` of prefill can take: their MACs at the device's peak
        on the lanes their GEMMs run on (FP8's with 1-byte weights; a bound the tests
        hold the model to)."""
        macs = sum(count * layer.macs_fwd_per_sample / shards for layer, shards, count, head, _ in self.groups
                   if not head) * tokens
        lanes, _ = gemm_rate(self.device, self.prec)
        return macs / (self.device.pes * lanes * self.device.clock)


def _routed(layer) -> bool:
    """A routed expert bank: its tokens use only some of its weights."""
    return layer.active_params is not None and layer.active_params < layer.params


def tokens_to_blocks(tokens: int, block_tokens: int) -> int:
    """Blocks a request of ``tokens`` holds in a paged cache (the last one partly used)."""
    return math.ceil(tokens / block_tokens)
