"""The parallel axes as strategies (mcdla.config.axes): each declares its own rules."""

from __future__ import annotations

import dataclasses

import pytest

from mcdla.config.axes import AXES, AxisRules
from mcdla.config.execution import ExecutionSpec
from mcdla.config.training import TrainingSpec
from mcdla.errors import InputError
from mcdla.sim.records import AXES as RECORDED_AXES


def _nondefault(value):
    return {False: True, 0: 2, 1: 2}[value]


def test_every_axis_the_results_report_declares_its_rules():
    assert set(RECORDED_AXES) == set(AXES.names())
    assert all(issubclass(AXES.get(n), AxisRules) for n in AXES)


@pytest.mark.parametrize("axis", list(AXES.names()))
def test_the_model_parallel_mode_refuses_each_axis_option_by_its_key(axis):
    for key, default in AXES.get(axis).model_mode:
        head, _, name = key.partition(".")
        value = _nondefault(default)
        if head == "training":
            kwargs = {"training": dataclasses.replace(TrainingSpec(), **{name: value})}
        else:
            kwargs = {name: value}
        with pytest.raises(InputError, match="model-parallel mode runs with") as info:
            ExecutionSpec(parallel="model", **kwargs)
        assert info.value.key == key
        if name == "offload_params":  # ZeRO-Infinity's own condition, in data-parallel training
            kwargs.update(zero=3, offload_optimizer=True)
        ExecutionSpec(parallel="data", **kwargs)  # the same value runs in data-parallel training


def test_a_conflict_is_named_by_the_axis_that_declares_it():
    with pytest.raises(InputError) as info:
        ExecutionSpec(sequence_parallel=True)
    assert info.value.key == "execution.sequence_parallel"
    with pytest.raises(InputError) as info:
        ExecutionSpec(pipeline_parallel=2, zero=2)
    assert info.value.key == "execution.zero" and "micro-batches" in str(info.value)
    with pytest.raises(InputError) as info:  # (ZeRO-3 with experts is built: issue 25)
        ExecutionSpec(expert_parallel=4, zero=1, pipeline_parallel=2)
    assert info.value.key == "execution.zero" and "expert" in str(info.value)
    with pytest.raises(InputError) as info:
        ExecutionSpec(expert_parallel=2, tensor_parallel=4, sequence_parallel=True, expert_tensor_parallel=3)
    assert info.value.key == "execution.expert_tensor_parallel" and "does not divide" in str(info.value)
