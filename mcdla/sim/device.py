"""One device's compute stream: the one runner of an iteration's passes.

:class:`DeviceCompute` runs its schedule's steps (:mod:`mcdla.sim.schedule`: without
micro-batches one forward over every layer and one backward in reverse; with them,
each micro-batch's forward and backward over each chunk of its layers, as
:mod:`mcdla.sim.passes` plans them), then the optimizer step. It asks its memory for
room, hands feature maps to its copy engines, rebuilds recomputed maps, joins its
communicators' collectives (data-parallel gradients, ZeRO's gathers, tensor
parallelism around a layer, the paper's model-parallel gathers and dX) and records
what it did. A pipeline stage (:mod:`mcdla.sim.pipeline`) runs the same passes and
adds only the sends and waits between stages (:meth:`_receive`, :meth:`_send`)."""

from __future__ import annotations

import math
from collections import deque

import simpy

from mcdla.hw.gpu import sm_contended
from mcdla.hw.memory import gradient_bytes, optimizer_state_bytes, step_bytes_per_param
from mcdla.hw.tiers import state_routes, state_tier
from mcdla.sim import expert, tensor
from mcdla.sim.communicator import CollectiveStream
from mcdla.sim.flownet import FlowNetwork
from mcdla.sim.liveness import closure, prefetch_step
from mcdla.sim.memory import BackingStores, DeviceMemory, DmaEngine, stripe
from mcdla.sim.passes import DeviceWork
from mcdla.sim.records import OffloadPlan, RunInputs, Span
from mcdla.sim.schedule import Step

__all__ = ["OPTIMIZER_CHUNK_BYTES", "DeviceCompute", "LAYER_HOOKS"]

# The axes that act around each layer, in order: their before_forward, after_forward,
# before_backward and after_backward hooks (a new axis's module goes here).
LAYER_HOOKS = (tensor, expert)


# Relative slack between a layer's kernels each stretched by the SM share and summed,
# and their sum stretched: rounding of a few ulps, not a difference in the model.
_SUM_SLACK = 1e-12

# ZeRO-Offload's state moves through device buffers of this size: DeepSpeed's
# offload_optimizer.buffer_size default, 1e8 fp32 elements.
OPTIMIZER_CHUNK_BYTES = 4e8


class DeviceCompute:
    """One device's compute stream: forward, then backward, over the plan."""

    def __init__(self, env, net: FlowNetwork, inputs: RunInputs, device: int, plan: OffloadPlan,
                 memory: DeviceMemory, stores: BackingStores, stream: CollectiveStream,
                 model_state_bytes: float, work: DeviceWork, tensor_stream: CollectiveStream | None = None,
                 members: tuple[int, ...] = (), expert_streams: tuple = (None,) * 3):
        self.env, self.net, self.inputs, self.device, self.plan = env, net, inputs, device, plan
        # Rank symmetry: the devices of this one's class (it first), which do what it does.
        self.members = members or (device,)
        self.copies = len(self.members)
        # ``stream``: the data-parallel group's communicator (every device, without
        # tensor parallelism); ``tensor_stream``: the tensor-parallel group's.
        self.memory, self.stores, self.stream, self.tensor_stream = memory, stores, stream, tensor_stream
        # Expert parallelism (mcdla.sim.expert): the ep group's, the expert-data-parallel group's
        # and the expert-tensor group's (None but with 1 < et < t).
        self.expert_streams = expert_streams
        # TP communication overlap: these layers' tensor-parallel collectives run beside their
        # kernel (_kernel), not in the hooks around it.
        self.overlapping = plan.overlapping if tensor_stream is not None else frozenset()
        self.model_state_bytes, self.work = model_state_bytes, work
        # The weight groups whose gradient this device reduces, by their layers here
        # still to run backward: a group is the stage's that holds its first layer (a
        # recurrent layer's timesteps may span stages; its gradient is reduced once).
        own = {i for chunk in work.passes for i in chunk.fwd_order}
        groups: dict[str, int] = {}
        for i in sorted(own):
            group = inputs.workload.layers[i].weight_group
            if group is not None and plan.group_first[group] in own:
                groups[group] = groups.get(group, 0) + 1
        self._groups_left = groups
        self._reductions: list[simpy.Event] = []  # the gradient all-reduces this device joined
        self._bucket: list[str] = []  # weight groups waiting in the open bucket
        self._bucket_bytes = 0.0
        # Under ZeRO each device steps 1/dp of the weights, so it needs only that shard of
        # the reduced gradient: a reduce-scatter leaves each its shard (stages 2 and 3 then
        # keep only it). Stage 1 is Megatron-LM's distributed optimizer
        # (--use-distributed-optimizer, docs/distrib_optimizer.md: the gradient buffer is
        # reduce-scattered, the updated parameters all-gathered), the 2x the gradients of
        # plain data parallelism that the ZeRO paper (Rajbhandari et al. 2020, 7.2.1) counts.
        self._gradient_op = "reduce_scatter" if inputs.execution.zero >= 1 else "all_reduce"
        self.process = env.process(self._run())

    def _gather_weights(self, group: str, phase: str):
        """ZeRO-3: all-gathers a weight group's shards into a buffer (the event, which
        fires when the weights are whole); the buffer is freed by :meth:`_drop_weights`.
        With the weights in the backing store (ZeRO-Infinity), each device first fetches
        its shard from there, while the compute goes on."""
        size = self.plan.group_bytes[group]
        stream = expert.shard_stream(self, group)  # the experts' shards are over their own group
        yield from self.memory.reserve(size, f"the gathered weights of {group}")
        if not self.inputs.execution.offload_params:
            return stream.join(("W", phase, group), "all_gather", size, device=self.device)

        def fetch_then_gather():
            yield from self._to_store(size / stream.devices, "prefetch", f"weights of {group} in", "params")
            yield stream.join(("W", phase, group), "all_gather", size, device=self.device)

        return self.env.process(fetch_then_gather())

    def _weights_ready(self, group: str, phase: str, order: tuple, weights: dict):
        """ZeRO-3: waits for ``group``'s weights, gathering them and, one ahead, the next
        group's in ``order`` (``weights``: the gathers issued in this pass)."""
        order = [g for g in order if self._zero3(g)]  # the groups gathered
        k = order.index(group)
        for g in order[k:k + 2]:
            if g not in weights:
                weights[g] = yield from self._gather_weights(g, phase)
        yield weights[group]

    def _drop_weights(self, group: str) -> None:
        self.memory.free(self.plan.group_bytes[group])

    def _hooks(self, point: str, i: int, tag: tuple = ()):
        """The axes' hooks (LAYER_HOOKS) at ``point`` around layer i: before_forward,
        after_forward, before_backward or after_backward; ``tag`` tells apart the
        micro-batches."""
        for axis in LAYER_HOOKS:
            yield from getattr(axis, point)(self, i, tag)

    def _kernel(self, i: int, phase: str, duration_s: float, label: str, kind: str, tag: tuple):
        """Layer i's kernel of ``phase`` (fwd, bwd); with TP communication overlap, beside
        its tensor-parallel collectives (:func:`mcdla.sim.tensor.overlapped`), as
        Transformer Engine's userbuffers pipeline them: the GEMM in pieces
        (:func:`mcdla.sim.tensor.chunks`; the plan's time is theirs), each piece's
        communication under the next piece's compute, so the pair takes the longer of the
        two and one piece of the shorter (the first piece computed before anything is
        sent, or the last received after the rest is computed). While both run the kernel
        has the SMs and the HBM bandwidth the communication leaves it (:meth:`_beside_nccl`,
        at the rate of the tensor group's latest collective)."""
        pending = tensor.overlapped(self, i, tag, phase)
        if not pending:
            yield from self._compute(duration_s, label, kind, (i, phase))
            return
        start, ended = self.env.now, []
        done = self.env.all_of(pending)
        done.callbacks.append(lambda _event: ended.append(self.env.now))
        if duration_s > 0:
            yield self.env.timeout(duration_s)  # its slowdown, known once the communication ends, added below
        yield done
        comm_s = ended[0] - start
        taken = self.tensor_stream.hbm_Bps if self.tensor_stream is not None else 0.0
        slow = self._beside_nccl(1.0, (i, phase), taken)  # the kernel's time per second alone
        # On fewer SMs while the communication runs (at most its whole slowed length), alone after.
        kernel_s = duration_s + min(comm_s, slow * duration_s) * (1 - 1 / slow)
        if kernel_s > max(duration_s, comm_s):
            yield self.env.timeout(kernel_s - max(duration_s, comm_s))
        if kernel_s > 0:
            self.memory.record.compute.append(Span(start, start + kernel_s, label, kind))
        # Pipelined in pieces: one piece of the shorter side uncovered. TE's bulk overlap (a
        # column-parallel layer's dX reduce-scatter beside its weight-gradient GEMM, the GEMMs
        # whole) waits for the dX GEMM: half of the layer's backward, the dX and dW GEMMs
        # having the same MACs (m n k each).
        pieces = tensor.chunks(i, phase, self.plan.tp, self.overlapping)
        fill_s = min(duration_s, comm_s) / (pieces if pieces > 1 else 2)
        if fill_s > 0:
            yield self.env.timeout(fill_s)

    def _offloaded_step(self):
        """ZeRO-Offload's step where the optimizer state lives (docs/model.md)."""
        workload, execution = self.inputs.workload, self.inputs.execution
        params = self.plan.updated_params
        # With the weights in the optimizer's tier too (ZeRO-Infinity), the gradients
        # are already there and the updated weights stay there; so are offloaded experts'.
        in_store = execution.offload_params
        stored = expert.stored_params(self.plan, workload.precision_bytes)
        if state_tier(self.inputs.topology, execution, "optimizer").kind == "host":
            if not in_store:
                yield from self._to_store((params - stored) * workload.precision_bytes, "offload",
                                          "gradients to the host")
            # The CPU's step is a memory-bound pass over the state in its socket's DRAM:
            # a flow on the DRAM port, which every device that socket serves shares.
            yield from self._to_store(params * step_bytes_per_param(workload), "offload", "optimizer step on the host",
                                      ports_only=True)
            if not in_store:
                yield from self._to_store((params - stored) * workload.precision_bytes, "prefetch",
                                          "weights from the host")
            return
        # Memory-nodes, expanders and drives have no processor: the state (and,
        # ZeRO-Infinity, the gradient in and the updated weights out) comes to the device
        # in chunks, each stepped while the next arrives and the last goes back
        # (double-buffered).
        state = optimizer_state_bytes(workload, params) + ((params if in_store else stored) * workload.precision_bytes)
        chunks = max(1, math.ceil(state / OPTIMIZER_CHUNK_BYTES))
        size, step_s = state / chunks, self.plan.step_s / chunks
        env = self.env

        def fetch(k):
            yield from self.memory.reserve(size, f"optimizer state chunk {k}")
            yield from self._to_store(size, "prefetch", "optimizer state in")

        def write_back():
            yield from self._to_store(size, "offload", "optimizer state out")
            self.memory.free(size)

        arriving = env.process(fetch(0))
        written = []
        for k in range(chunks):
            yield arriving
            if k + 1 < chunks:
                arriving = env.process(fetch(k + 1))
            yield from self._compute(step_s, "optimizer step", "step", (None, "step"))
            written.append(env.process(write_back()))
        yield env.all_of(written)

    def _to_store(self, size_bytes: float, direction: str, label: str, state: str = "optimizer",
                  ports_only: bool = False):
        """Moves ``size_bytes`` of ``state`` (optimizer or params) between this device and
        the stores of its tier, striped as feature maps are (or, ``ports_only``, streams
        them through the stores' memory)."""
        topology, execution = self.inputs.topology, self.inputs.execution
        routes = state_routes(topology, execution, state, topology.devices[self.device], direction)
        start = self.env.now
        moved = self.stores.moved
        for other in self.members[1:]:  # the class's other devices move the same over their routes
            for sub in state_routes(topology, execution, state, topology.devices[other], direction):
                moved.append((sub.path[-1:] if ports_only else sub.path, sub.share * size_bytes))
        yield self.env.all_of(stripe(self.net, routes, size_bytes, f"{label}/{self.device}", ports_only,
                                     moved, self.copies))
        if not ports_only:  # the device's copy engines are busy; the host's step is not the device's
            self.memory.record.virtualization.append(Span(start, self.env.now, label, direction))

    def _gradient_ready(self, group: str, size_bytes: float) -> None:
        """A weight group's gradient is complete: all-reduced at once (the paper's), or
        added to the open bucket, which is all-reduced once it reaches the bucket size."""
        bucket = self.inputs.execution.training.bucket
        apart = expert.reduce_apart(self, group, size_bytes, self._gradient_op)  # an expert bank's: over dp/e
        if apart is not None:
            self._reductions.append(apart)
            return
        if bucket is None:
            self._reductions.append(self._reduce_gradient(("dW", group), size_bytes))
            return
        self._bucket.append(group)
        self._bucket_bytes += size_bytes
        if self._bucket_bytes >= bucket:
            self._flush_bucket()

    def _flush_bucket(self) -> None:
        if self._bucket:
            key = ("bucket", *self._bucket)  # the same groups in the same order on every device
            self._reductions.append(self._reduce_gradient(key, self._bucket_bytes))
            self._bucket, self._bucket_bytes = [], 0.0

    def _reduce_gradient(self, key: tuple, size_bytes: float) -> simpy.Event:
        """Joins a gradient reduction; with the weights in the backing store, the
        device's reduced shard then goes there (the event fires when it has)."""
        reduced = self.stream.join(key, self._gradient_op, size_bytes, device=self.device)
        if not self.inputs.execution.offload_params:
            return reduced

        def then_store():
            yield reduced
            yield from self._to_store(size_bytes / self.stream.devices, "offload", "gradients out", "params")

        return self.env.process(then_store())

    def _compute(self, duration_s: float, label: str, kind: str, at: tuple | None = None):
        """A kernel of ``duration_s`` on all the SMs and HBM; on what NCCL's kernels leave
        while a collective of the device's groups is on the wire (:meth:`_beside_nccl`,
        ``at``: (layer, phase) of the compute, layer None for the optimizer step)."""
        if duration_s > 0:
            running = [s for s in (self.stream, self.tensor_stream) if s is not None and s.running]
            if running:
                duration_s = self._beside_nccl(duration_s, at, sum(s.hbm_Bps for s in running))
            start = self.env.now
            yield self.env.timeout(duration_s)
            self.memory.record.compute.append(Span(start, self.env.now, label, kind))

    def _beside_nccl(self, duration_s: float, at: tuple | None, nccl_hbm_Bps: float) -> float:
        """``duration_s`` of compute ``at`` ((layer, phase); layer None: the optimizer step)
        started beside NCCL's kernels that take ``nccl_hbm_Bps`` of the device's HBM: its
        kernels timed again on the SMs and the bandwidth they leave (the plan's
        ``beside_nccl``, mcdla.hw.gpu.nccl_contended), the ratio applied to ``duration_s``
        (a rank's own scale kept); on the SMs alone where the bandwidth left binds no
        kernel (the SM share's own product, to the last bit)."""
        device = self.inputs.topology.device
        timed = self.plan.beside_nccl if nccl_hbm_Bps and at is not None else None
        alone = timed(*at, None) if timed is not None else 0.0
        beside = timed(*at, nccl_hbm_Bps) if alone > 0 else 0.0
        if beside <= sm_contended(device, alone) * (1 + _SUM_SLACK):
            return sm_contended(device, duration_s)
        return duration_s * beside / alone

    def _run(self):
        """The device's iteration: its schedule's forward and backward passes (one of
        each over every layer without micro-batches), then the optimizer step."""
        # The copy engines' processes (none on a pipeline stage or micro-batched device
        # that offloads nothing: they would only wait, as its records always did).
        if not self.work.stashed or any(any(chunk.offloaded) for chunk in self.work.passes):
            engine_args = (self.env, self.net, self.inputs, self.device, self.memory, self.stores, self.plan,
                           self.copies)
            self._offloader = DmaEngine(*engine_args)
            two = self.inputs.topology.device.dma_engines >= 2  # a copy engine each way, or one for both
            self._prefetcher = DmaEngine(*engine_args) if two else self._offloader
        self._offloaded: dict[tuple[int, int], simpy.Event] = {}  # (micro-batch, tensor) -> its offload
        self.memory.hold(self.model_state_bytes)  # resident for the whole iteration
        for step in self.work.steps:
            yield from (self._forward if step.kind == "F" else self._backward)(step)
        yield from self._finish()

    # A pipeline stage's waits for, and sends of, activations and their gradients
    # (mcdla.sim.pipeline); nothing without one.
    def _receive(self, step: Step):
        yield from ()

    def _send(self, step: Step) -> None:
        pass

    def _tag(self, step: Step) -> tuple:
        """What tells apart the collectives and labels of each micro-batch (and chunk)."""
        if not self.work.stashed:
            return ()
        return (step.micro,) if len(self.work.passes) == 1 else (step.micro, step.chunk)

    def _zero3(self, group: str | None) -> bool:
        """ZeRO-3 gathers ``group``'s weights before use: when they are sharded over
        more than one rank (an expert bank's over its expert-data-parallel group)."""
        return (group is not None and self.inputs.execution.zero == 3
                and expert.shard_stream(self, group).devices > 1)

    def _forward(self, step: Step):
        """The chunk's layers in order: gathers (model-parallel, ZeRO-3, tensor-parallel),
        the kernel, then each map whose last forward use it was leaves or is dropped."""
        plan, memory, layers = self.plan, self.memory, self.inputs.workload.layers
        chunk, j, tag = self.work.passes[step.chunk], step.micro, self._tag(step)
        label = f" mb{j}" if tag else ""
        yield from self._receive(step)
        if self.work.stashed:
            yield from memory.reserve(chunk.stash_bytes, f"micro-batch {j}'s activations")
        if 0 in chunk.last_fwd_use and 0 not in chunk.stashed:  # the first chunk's input, unless stashed
            yield from memory.reserve(plan.tensor_bytes[0], "the input batch")
        gathered: set[int] = {0}  # every device loads the whole input batch
        weights = {}  # ZeRO-3: weight group -> its gather, issued one group ahead
        for i in chunk.fwd_order:
            layer = layers[i]
            for p, size in plan.gathers.get(i, ()):  # model-parallel: what it reads whole
                if p not in gathered:
                    gathered.add(p)
                    yield self.stream.join(("fwd", p), "all_gather", size, device=self.device)
            yield from self._hooks("before_forward", i, tag)
            group = layer.weight_group
            if self._zero3(group) and plan.group_first[group] == i:
                yield from self._weights_ready(group, "fwd", plan.weight_order, weights)
            if i not in chunk.stashed:  # the output buffer exists while the layer computes
                yield from memory.reserve(plan.tensor_bytes[i], f"the output of {layer.name}")
            yield from self._kernel(i, "fwd", plan.fwd_s[i], f"fwd {layer.name}{label}", "fwd", tag)
            if self._zero3(group) and plan.group_last[group] == i:
                self._drop_weights(group)
            yield from self._hooks("after_forward", i, tag)
            for p in (*layer.inputs, i):
                if chunk.last_fwd_use.get(p) != i:
                    continue
                if chunk.offloaded[p]:
                    self._offloaded[(j, p)] = self._offloader.submit(p, "offload")
                elif chunk.dropped[p]:  # recomputed in backward, or never read again
                    memory.free(plan.tensor_bytes[p])
        self._send(step)

    def _backward(self, step: Step):
        """The chunk's layers in reverse: their inputs back in memory (prefetched
        ``lookahead`` steps ahead, or recomputed), the kernel, then its gradients'
        communication; with micro-batches, the stash is freed at the end."""
        plan, memory, layers = self.plan, self.memory, self.inputs.workload.layers
        training = self.inputs.execution.training
        chunk, j, tag = self.work.passes[step.chunk], step.micro, self._tag(step)
        label = f" mb{j}" if tag else ""
        yield from self._receive(step)
        prefetched: dict[int, simpy.Event] = {}
        pending = deque(sorted(chunk.first_need, key=lambda t: (chunk.first_need[t], t)))
        recomputed: set[int] = set()  # recomputed tensors held for backward
        weights = {}
        order = plan.weight_order[::-1]
        for k, i in enumerate(chunk.bwd_order):
            while pending and prefetch_step(chunk.first_need[pending[0]], training.lookahead) <= k:
                t = pending.popleft()
                prefetched[t] = self._prefetcher.submit(t, "prefetch", self._offloaded.pop((j, t)))
            group = layers[i].weight_group
            if self._zero3(group) and plan.group_last[group] == i:
                yield from self._weights_ready(group, "bwd", order, weights)
            for t in reversed(closure(plan.bwd_needs[i], layers, chunk.recomputed)):
                if chunk.offloaded[t]:
                    yield prefetched[t]
                elif chunk.recomputed[t] and t not in recomputed:
                    recomputed.add(t)
                    yield from memory.reserve(plan.tensor_bytes[t], f"the recompute of {layers[t].name}")
                    yield from self._recompute(t, label, tag)
            for t in chunk.replays.get(i, ()):  # full checkpointing reruns the rest of the block, unkept
                yield from self._recompute(t, label, tag)
            if training.regather and layers[i].weight_group is not None:
                for p, size in plan.gathers.get(i, ()):  # model-parallel: dW reads X whole again
                    yield self.stream.join(("regather", i, p), "all_gather", size, device=self.device)
            yield from self._hooks("before_backward", i, tag)
            memory.record.backward_start[i] = self.env.now
            yield from self._kernel(i, "bwd", plan.bwd_s[i], f"bwd {layers[i].name}{label}", "bwd", tag)
            for t in chunk.frees[k]:
                memory.free(plan.tensor_bytes[t])  # in memory now: prefetched, recomputed or kept
            if self._zero3(group) and plan.group_first[group] == i:
                self._drop_weights(group)
            yield from self._hooks("after_backward", i, tag)
            yield from self._gradients_of(i, j)
        if self.work.stashed:
            memory.free(chunk.stash_bytes)
        self._send(step)

    def _recompute(self, t: int, label: str, tag: tuple):
        """Reruns layer t's forward in backward: its kernel and its tensor-parallel
        collectives (a replayed block runs its forward whole, all-reduces included, as
        Megatron's checkpoint function does; expert parallelism's all-to-alls are not
        rerun: docs/model.md)."""
        again = (*tag, "recompute")
        yield from tensor.before_forward(self, t, again)
        yield from self._kernel(t, "fwd", self.plan.fwd_s[t], f"recompute {self.inputs.workload.layers[t].name}{label}",
                                "recompute", again)
        yield from tensor.after_forward(self, t, again)

    def _gradients_of(self, i: int, micro: int):
        """After layer i's backward: model-parallel, the partial dX it completes, each
        reduce-scattered to its shards (or all-reduced: ``training.dx_reduction``) once
        after its last consumer's backward (the consumers' partials summed locally);
        data-parallel, in the last micro-batch's backward (gradients accumulate over
        the others, DDP's ``no_sync``), a weight group whose gradient is now complete
        goes to its reduction."""
        plan = self.plan
        if self.inputs.execution.parallel == "model":
            op = self.inputs.execution.training.dx_reduction
            for p, size in plan.partial_dx.get(i, ()):
                yield self.stream.join(("dX", p), op, size, device=self.device)
            return
        group = self.inputs.workload.layers[i].weight_group
        if group in self._groups_left and micro == self.work.micro_batches - 1:
            self._groups_left[group] -= 1
            if self._groups_left[group] == 0:
                self._gradient_ready(group, gradient_bytes(self.inputs.workload, plan.group_bytes[group]))

    def _finish(self):
        """The optimizer step once the gradients are reduced; ZeRO 1-2's weight gather."""
        execution, memory = self.inputs.execution, self.memory
        if execution.parallel != "model":
            self._flush_bucket()
        if self.work.step_s > 0 or execution.zero in (1, 2):
            # The optimizer step updates every weight once all its gradients are reduced.
            yield self.env.all_of(self._reductions)
            if execution.offload_optimizer:
                yield from self._offloaded_step()
            else:
                yield from self._compute(self.work.step_s, "optimizer step", "step", (None, "step"))
        if execution.zero in (1, 2) and self.stream.devices > 1:
            # Each device updated its 1/dp of the weights: all-gather them for the next iteration.
            gathers = expert.step_gathers(self, ("W", "step"))  # the experts' over their own group
            yield gathers[0] if len(gathers) == 1 else self.env.all_of(gathers)
        for chunk in self.work.passes:
            # Without virtualization, maps that backward never reads are dropped at the end.
            for t in chunk.leftover:
                memory.free(self.plan.tensor_bytes[t])
