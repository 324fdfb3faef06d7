"""The parallel axes of an execution as strategies: each declares its own options'
rules, so no rule between two options is written anywhere else.

An axis (registered in :data:`AXES` under its name in the rank layout, mcdla.hw.layout)
owns some execution and training keys. It says what the paper's model-parallel mode
runs with (``model_mode``: the mode splits every layer over all the devices, so no
other axis applies there) and checks its conflicts with the rest of the spec
(``check``), each refusal naming the key to change and the way out. The execution spec
asks every axis in registration order; a new axis (context parallelism, say) is one
class here beside its sim/ hooks (docs/extending.md, "A parallel axis").
"""

from __future__ import annotations

from typing import Any

from mcdla.errors import InputError
from mcdla.registry import Registry

__all__ = ["AxisRules", "AXES", "check_axes"]


class AxisRules:
    """One axis's options: its model-mode values and its conflicts."""

    # (dotted key, the value the paper's model-parallel mode runs with)
    model_mode: tuple[tuple[str, Any], ...] = ()

    def check(self, spec) -> None:
        """Raises an InputError (:func:`refuse`) if ``spec`` combines this axis's options
        with others in a way that cannot run."""


AXES: Registry[type[AxisRules]] = Registry("parallel axis")


def refuse(key: str, message: str) -> InputError:
    """A combination of options that cannot run, named by its dotted key (the spec is
    built from a point's keys, not read from one file)."""
    return InputError(message, key=key)


def _value(spec, key: str) -> Any:
    head, _, name = key.partition(".")
    return getattr(spec.training if head == "training" else spec, name)


def check_axes(spec) -> None:
    """Every axis's rules over ``spec`` (an ExecutionSpec)."""
    for name in AXES:
        axis = AXES.get(name)()
        if spec.parallel != "data":
            for key, default in axis.model_mode:
                if _value(spec, key) != default:
                    raise refuse(key, "applies to data-parallel training; the paper's model-parallel mode "
                                 f"runs with {default}")
        axis.check(spec)


@AXES.register("tp")
class TensorAxis(AxisRules):
    """Megatron's tensor parallelism and its sequence parallelism."""

    model_mode = (("execution.tensor_parallel", 1),)

    def check(self, spec) -> None:
        if spec.sequence_parallel and spec.tensor_parallel == 1:
            raise refuse("execution.sequence_parallel",
                         "splits the tokens over a tensor group: set execution.tensor_parallel above 1")
        if spec.tp_comm_overlap and not spec.sequence_parallel:
            # Megatron-LM's arguments.py: "Tensor parallel communication/GEMM overlap can
            # happen only when sequence parallelism is enabled".
            raise refuse("execution.tp_comm_overlap", "overlaps the sequence-parallel all-gathers and "
                         "reduce-scatters with their GEMMs: set execution.sequence_parallel=true")


@AXES.register("dp")
class DataAxis(AxisRules):
    """Data parallelism's ZeRO stages and ZeRO-Offload/Infinity (state on a tier)."""

    model_mode = (("execution.zero", 0), ("execution.offload_optimizer", False),
                  ("execution.offload_params", False))

    def check(self, spec) -> None:
        if spec.offload_params and not (spec.zero == 3 and spec.offload_optimizer):
            raise refuse("execution.offload_params", "the weights leave the device only with their optimizer "
                         "state, under ZeRO stage 3: set execution.zero=3 and execution.offload_optimizer=true")


@AXES.register("pp")
class PipelineAxis(AxisRules):
    """Pipeline stages and micro-batches (with one stage, gradient accumulation) and
    their schedule (mcdla.sim.schedule)."""

    model_mode = (("execution.pipeline_parallel", 1), ("training.micro_batches", 1))

    def check(self, spec) -> None:
        micro, schedule, p = spec.training.micro_batches, spec.training.schedule, spec.pipeline_parallel
        batched = p > 1 or micro > 1
        if batched and spec.zero > 1:
            raise refuse("execution.zero", "stages 2 and 3 shard what micro-batches accumulate; with pipeline "
                         "parallelism or micro-batches use 0 or 1 (as DeepSpeed with pipelines)")
        if batched and spec.offload_optimizer:
            raise refuse("execution.offload_optimizer", "ZeRO-Offload with pipeline parallelism or micro-batches "
                         "is not built")
        if not batched and schedule != "1f1b":
            raise refuse("training.schedule", "orders a pipeline's micro-batches: set execution.pipeline_parallel "
                         "or training.micro_batches above 1")
        if (schedule == "interleaved") != (spec.training.virtual_stages > 1):
            raise refuse("training.virtual_stages" if schedule == "interleaved" else "training.schedule",
                         "the interleaved schedule runs 2 or more virtual stages (chunks) per pipeline stage: set "
                         "training.schedule=interleaved with training.virtual_stages above 1")
        if schedule == "interleaved" and (p == 1 or micro % p):
            raise refuse("training.micro_batches", "the interleaved schedule runs micro-batches in groups of "
                         "the pipeline's stages (as Megatron): set execution.pipeline_parallel above 1 and "
                         "training.micro_batches to a multiple of it")


@AXES.register("ep")
class ExpertAxis(AxisRules):
    """Expert parallelism (mcdla.sim.expert); its conflicts with the workload and the
    group sizes are checked when the run is laid out (mcdla.sim.expert.expert_split)."""

    model_mode = (("execution.expert_parallel", 1),)  # (et != t needs e > 1: _check_tensor)

    def check(self, spec) -> None:
        e = spec.expert_parallel
        self._check_tensor(spec)
        if spec.expert_skew is not None and not 1.0 / e <= spec.expert_skew <= 1.0:
            raise refuse("execution.expert_skew", f"is the hottest of {e} expert ranks' share of the routed tokens: "
                         f"between 1/{e} (uniform) and 1" + ("; set execution.expert_parallel above 1" if e == 1 else ""))
        if spec.expert_offload and not spec.offload_optimizer:
            raise refuse("execution.expert_offload", "keeps the experts' weights where their optimizer state and "
                         "step are: set execution.offload_optimizer=true")
        if spec.expert_offload and (spec.zero or spec.pipeline_parallel > 1):
            raise refuse("execution.expert_offload", "with ZeRO (the experts' shards in the backing store) or "
                         "pipeline stages is not built; use execution.zero=0 without pipelines")
        if e > 1 and spec.zero and spec.pipeline_parallel > 1:
            raise refuse("execution.zero", "with pipeline and expert parallelism together, sharding the experts' "
                         "state over their own group is not built; use 0")

    @staticmethod
    def _check_tensor(spec) -> None:
        """Expert-tensor parallelism: Megatron-Core forms the expert grid (etp, ep, edp,
        pp) over the same ranks as (tp, dp, pp) (``parallel_state.py``:
        ``expert_tensor_parallel_size`` defaults to the tensor degree and etp x ep x pp
        must divide the world). Built: et dividing t, with experts spread (e > 1), so an
        expert-tensor group is a block of a tensor group; with sequence parallelism,
        which Megatron-Core requires with expert and tensor parallelism
        (``ModelParallelConfig``: "When using expert parallelism and tensor parallelism,
        sequence parallelism must be used"): a block's tokens are its own shards, which
        stay split after the combine."""
        et, t = spec.expert_tensor_parallel, spec.tensor_parallel
        if et is None or et == t:
            return
        if spec.expert_parallel == 1:
            raise refuse("execution.expert_tensor_parallel", f"{et} differs from the tensor degree {t}, which "
                         "is built with the experts spread: set execution.expert_parallel above 1, or use " f"{t}")
        if not spec.sequence_parallel:
            raise refuse("execution.expert_tensor_parallel", f"{et} below the tensor degree {t} splits the "
                         "tokens over the tensor group's blocks, as sequence parallelism does (Megatron-Core "
                         "requires it with expert and tensor parallelism): set execution.sequence_parallel=true")
        if t % et:
            raise refuse("execution.expert_tensor_parallel", f"{et} does not divide the tensor degree {t} "
                         "(the expert-tensor groups are cut from the tensor groups); use a divisor of "
                         "execution.tensor_parallel")
