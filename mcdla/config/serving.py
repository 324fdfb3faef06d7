"""How a serving run goes: the requests and the engine's scheduler (``mcdla serve``).

One validated :class:`ServingSpec` holds the requests (Poisson arrivals at ``rate``, or
a trace file), the scheduler's limits (vLLM's and Sarathi-Serve's: a token budget per
iteration, a sequence limit, a prefill chunk, a paged KV cache of blocks, preemption
by recompute or swap), where the KV cache lives (``kv_tier``), the parallel degrees of
one serving instance, and the service-level objective. ``--set serving.KEY=VALUE``
fills it; docs/serving.md describes every choice.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Literal

from mcdla.config.schema import NonNegativeInt, PositiveFloat, PositiveInt, Time, Where, build
from mcdla.errors import InputError, excerpt

__all__ = ["ServingSpec", "Request", "SERVING_KEYS", "KV_TIERS", "read_trace", "serving_spec", "make_requests"]

# Where a request's KV cache blocks live: device HBM; a memory tier of the design (its
# memory-nodes, CXL expanders, host DRAM or NVMe drives: mcdla.hw.tiers,
# mcdla.sim.serving_engine.kv_routes); or ``spill``: HBM first, then the design's nearest tier.
KV_TIERS = ("hbm", "memory_node", "cxl", "host", "nvme", "spill")


@dataclass(frozen=True)
class Request:
    """One request: when it arrives, its prompt and the tokens it generates."""

    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    # The prompt's first ``prefix_tokens`` are those of shared prefix ``prefix_id`` (a
    # system prompt, a document, a conversation's history): requests naming the same
    # prefix have the same tokens there (None: no shared prefix).
    prefix_id: str | None = None
    prefix_tokens: int = 0


@dataclass(frozen=True)
class ServingSpec:
    """The serving run (docs/serving.md).

    - ``rate`` requests/s arriving as a Poisson process (exponential gaps, ``seed``),
      ``requests`` of them, each ``prompt_tokens`` in and ``output_tokens`` out:
      ``lengths: fixed``, or ``uniform`` on 1 .. 2 x the number - 1 (the same mean).
      ``trace``: a CSV file of ``arrival_s,prompt_tokens,output_tokens`` instead.
    - ``max_batch_tokens``: the tokens one iteration computes, decodes and prefill
      chunks together (vLLM's max_num_batched_tokens); ``max_seqs`` the sequences in
      it (max_num_seqs; vLLM's default 256); ``chunk``: the largest prefill chunk of
      one request per iteration (Sarathi-Serve; default: the budget).
    - ``block_tokens``: the paged KV cache's block (vLLM's default 16 tokens);
      ``memory_utilization``: the share of device memory the engine takes for weights
      and the cache (vLLM's gpu_memory_utilization, default 0.9).
    - ``preemption``: when a running request finds no free block, the last admitted
      one is preempted: ``recompute`` frees its blocks and prefills it again,
      ``swap`` copies them to the design's backing store and back (vLLM's two modes).
    - ``kv_tier``: where the KV cache lives (:data:`KV_TIERS`).
    - ``tensor_parallel``: devices per serving instance (Megatron-style split, its
      all-reduces on the flow network); the topology's devices over it are the
      instances, requests dealt to them in turn. ``prefill_devices`` and
      ``decode_devices`` (both, multiples of tensor_parallel) split the first devices
      into prefill instances and decode instances (Splitwise, DistServe): a request's
      KV cache moves from one to the other after its prefill. ``pipeline_parallel``: p
      stages of tensor_parallel devices each make an instance (the blocks split evenly
      over them, the activations sent stage to stage; docs/serving.md); ``pipeline_batches``
      the batches in flight through them, each of its own scheduler (vLLM's virtual
      engines; default one a stage, as vLLM runs; 1: one batch passes every stage before
      the next starts). ``expert_parallel`` = e: an instance of e devices, attention
      data-parallel over its e / tensor_parallel tensor groups (each its own scheduler
      and batch), each MoE layer's experts split over the e devices, the groups joined
      every iteration by the dispatch and combine all-to-alls (SGLang's and vLLM's
      "DP attention + EP"; docs/serving.md).
    - ``slo_ttft``/``slo_tpot``: the service-level objective goodput counts against
      (``mcdla serve --slo ttft=...,tpot=...``).
    - ``prefix_caching``: full KV blocks of a shared prefix are kept and reused by later
      requests (vLLM's automatic prefix caching, SGLang's RadixAttention);
      ``shared_prefix_tokens`` of each generated prompt are one of ``prefixes`` shared
      prefixes, drawn uniformly (a trace names them in its ``prefix_id,prefix_tokens``
      columns).
    - ``cuda_graphs``: a decode-only iteration of at most :attr:`capture_sizes`' largest
      requests replays the CUDA graph captured for the next capture size up (vLLM's
      decode graphs): one graph launch instead of one launch per kernel.
    """

    rate: PositiveFloat = 1.0
    requests: PositiveInt = 64
    seed: NonNegativeInt = 0
    prompt_tokens: PositiveInt = 1024
    output_tokens: PositiveInt = 128
    lengths: Literal["fixed", "uniform"] = "fixed"
    trace: str | None = None
    max_batch_tokens: PositiveInt = 8192
    max_seqs: PositiveInt = 256
    chunk: PositiveInt | None = None
    block_tokens: PositiveInt = 16
    memory_utilization: PositiveFloat = 0.9
    preemption: Literal["recompute", "swap"] = "recompute"
    kv_tier: Literal["hbm", "memory_node", "cxl", "host", "nvme", "spill"] = "hbm"
    tensor_parallel: PositiveInt = 1
    pipeline_parallel: PositiveInt = 1
    pipeline_batches: PositiveInt | None = None  # batches in flight through the stages (None: one a stage)
    expert_parallel: PositiveInt = 1  # devices an instance's routed experts are split over
    prefill_devices: NonNegativeInt = 0
    decode_devices: NonNegativeInt = 0
    slo_ttft: Time | None = None
    slo_tpot: Time | None = None
    prefix_caching: bool = False
    shared_prefix_tokens: NonNegativeInt = 0
    prefixes: PositiveInt = 1
    cuda_graphs: bool = False

    def __post_init__(self):
        if self.memory_utilization > 1:
            raise InputError(f"memory_utilization must be at most 1, got {self.memory_utilization}",
                             key="serving.memory_utilization")
        # Swapped requests would keep their tier blocks while waiting, starving the running ones.
        if self.preemption == "swap" and self.kv_tier != "hbm":
            raise InputError("swap preemption copies a request's HBM blocks to the backing store; with the "
                             f"cache on kv_tier={self.kv_tier} use preemption=recompute", key="serving.preemption")
        if (self.prefill_devices == 0) != (self.decode_devices == 0):
            key = "serving.decode_devices" if self.prefill_devices else "serving.prefill_devices"
            raise InputError("disaggregated serving needs both prefill_devices and decode_devices (or neither)",
                             key=key)
        if self.pipeline_batches_in_flight > self.pipeline_parallel:
            raise InputError(f"pipeline_batches={self.pipeline_batches} is more than the pipeline_parallel="
                             f"{self.pipeline_parallel} stages (one batch in flight a stage at most)",
                             key="serving.pipeline_batches")
        self._check_experts()
        size = self.instance_devices
        for key in ("prefill_devices", "decode_devices"):
            if getattr(self, key) % size:
                what = (f"tensor_parallel={self.tensor_parallel}" if self.pipeline_parallel == 1 else
                        f"tensor_parallel x pipeline_parallel = {size}")
                raise InputError(f"{getattr(self, key)} is not a multiple of {what}", key=f"serving.{key}")
        if self.shared_prefix_tokens > self.prompt_tokens:
            raise InputError(f"shared_prefix_tokens={self.shared_prefix_tokens} is more than the prompt's "
                             f"{self.prompt_tokens} tokens (the prefix is the prompt's first tokens)",
                             key="serving.shared_prefix_tokens")
        # Cached blocks are shared by running requests: one copy in HBM. vLLM's V1 engine,
        # whose prefix caching this is, preempts by recompute and keeps blocks in HBM.
        if self.prefix_caching and self.kv_tier != "hbm":
            raise InputError(f"prefix caching keeps shared blocks in HBM; with kv_tier={self.kv_tier} turn it off "
                             "(serving.prefix_caching=false) or use kv_tier=hbm", key="serving.prefix_caching")
        if self.prefix_caching and self.preemption == "swap":
            raise InputError("prefix caching shares blocks between requests, which swap preemption would copy out "
                             "under the others; use preemption=recompute (vLLM V1's)", key="serving.prefix_caching")

    def _check_experts(self) -> None:
        e, key = self.expert_parallel, "serving.expert_parallel"
        if e == 1:
            return
        if e % self.tensor_parallel:
            raise InputError(f"expert_parallel={e} is not a multiple of tensor_parallel={self.tensor_parallel} "
                             "(the instance's attention groups are tensor groups)", key=key)
        if self.pipeline_parallel > 1 or self.prefill_devices:
            raise InputError("expert_parallel with pipeline_parallel or disaggregated serving is not modelled; "
                             "use expert_parallel=1 or drop the other", key=key)

    @property
    def instance_devices(self) -> int:
        """The devices of one serving instance: its stages' tensor groups, or its expert
        devices."""
        return self.expert_parallel if self.expert_parallel > 1 else self.tensor_parallel * self.pipeline_parallel

    @property
    def pipeline_batches_in_flight(self) -> int:
        """The batches in flight through an instance's stages (vLLM: one a stage)."""
        return self.pipeline_parallel if self.pipeline_batches is None else self.pipeline_batches

    @property
    def chunk_tokens(self) -> int:
        return min(self.chunk or self.max_batch_tokens, self.max_batch_tokens)

    @property
    def capture_sizes(self) -> tuple[int, ...]:
        """The decode batch sizes CUDA graphs are captured for, vLLM's default: 1, 2, 4,
        multiples of 8 below 256, then of 16 up to min(2 x max_num_seqs, 512)
        (vllm/config/vllm.py, set_cudagraph_sizes)."""
        largest = min(2 * self.max_seqs, 512)
        sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, largest + 1, 16))
        return tuple(size for size in sizes if size <= largest)


SERVING_KEYS = tuple(f for f in ServingSpec.__dataclass_fields__)


def serving_spec(doc: dict) -> ServingSpec:
    """The spec of ``--set serving.*`` pairs (a mapping of keys to values)."""
    return build(ServingSpec, doc, Where("--set", "serving"))


TRACE_HEADER = ["arrival_s", "prompt_tokens", "output_tokens"]
# Optional columns: the shared prefix a request's prompt begins with (prefix caching).
TRACE_PREFIX = ["prefix_id", "prefix_tokens"]


def read_trace(path: str) -> list[Request]:
    """The requests of a trace CSV (header ``arrival_s,prompt_tokens,output_tokens``,
    optionally ``,prefix_id,prefix_tokens``: an empty id, no shared prefix), sorted by
    arrival."""
    from mcdla.runfiles import note_input

    key = "serving.trace"
    note_input(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise InputError(f"cannot read {excerpt(path)}: {exc.strerror or exc}", key=key) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{excerpt(path)} is not a CSV file ({exc})", key=key) from None
    header = [c.strip() for c in rows[0]] if rows else []
    if header not in (TRACE_HEADER, TRACE_HEADER + TRACE_PREFIX):
        raise InputError(f"{excerpt(path)}: expected the header {','.join(TRACE_HEADER)} "
                         f"(and optionally ,{','.join(TRACE_PREFIX)})", key=key)
    requests = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            arrival, prompt, output = float(row[0]), int(row[1]), int(row[2])
            if len(row) != len(header) or not arrival >= 0 or prompt < 1 or output < 1 or arrival == float("inf"):
                raise ValueError
            prefix_id, prefix = (row[3].strip() or None, int(row[4] or 0)) if len(header) == 5 else (None, 0)
            if not 0 <= prefix <= prompt or (prefix > 0) != (prefix_id is not None):
                raise ValueError
        except (ValueError, IndexError):
            raise InputError(f"{excerpt(path)} line {line}: expected arrival_s >= 0, token counts >= 1"
                             + (" and a prefix_id with 1 to prompt_tokens prefix_tokens (or neither)"
                                if len(header) == 5 else "")
                             + f", got {excerpt(','.join(row))}", key=key) from None
        requests.append(Request(arrival, prompt, output, prefix_id, prefix))
    if not requests:
        raise InputError(f"{excerpt(path)} has no request", key=key)
    return sorted(requests, key=lambda r: r.arrival_s)


def make_requests(spec: ServingSpec) -> list[Request]:
    """The run's requests: the trace's, or ``requests`` Poisson arrivals at ``rate`` (the
    first at 0) with lengths as ``lengths`` says; the same ``seed``, the same requests."""
    if spec.trace is not None:
        return read_trace(spec.trace)
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    gaps = rng.exponential(1.0 / spec.rate, spec.requests)
    arrivals = np.concatenate(([0.0], np.cumsum(gaps[1:])))

    def lengths(mean: int) -> list[int]:
        if spec.lengths == "fixed":
            return [mean] * spec.requests
        return rng.integers(1, 2 * mean, spec.requests).tolist()  # 1 .. 2 mean - 1: mean ``mean``

    prompts, outputs = lengths(spec.prompt_tokens), lengths(spec.output_tokens)
    if not spec.shared_prefix_tokens:
        return [Request(float(a), int(p), int(o)) for a, p, o in zip(arrivals, prompts, outputs)]
    # Drawn after the lengths: the same seed gives the same arrivals and lengths with or without prefixes.
    which = rng.integers(0, spec.prefixes, spec.requests).tolist()
    return [Request(float(a), int(p), int(o), f"prefix{w}", min(spec.shared_prefix_tokens, int(p)))
            for a, p, o, w in zip(arrivals, prompts, outputs, which)]
