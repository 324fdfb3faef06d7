"""What one device-node computes of a training step, by parallelization mode.

Data-parallel training (paper Fig. 3(a)) gives every device the whole model and
``batch / D`` of the samples, so each layer's kernels run on the local batch with no
sharding. Model-parallel training (Fig. 3(b), Krizhevsky-style) gives every device
the whole batch and ``1 / D`` of every layer's output features: the kernels run on
the whole batch with ``shards = D`` (see :meth:`mcdla.hw.layers.Layer.kernels`).

The training driver and ``mcdla layers`` both ask :func:`device_share`, so the
per-layer report always times the same kernels the simulation charges.
"""

from __future__ import annotations

from typing import NamedTuple

from mcdla.errors import InputError

__all__ = ["DeviceShare", "device_share"]


class DeviceShare(NamedTuple):
    """The ``batch`` and ``shards`` arguments of one device's layer kernels."""

    local_batch: int
    shards: int


def device_share(parallel: str, batch: int, devices: int) -> DeviceShare:
    """One device's share of a global ``batch`` over ``devices`` in mode ``parallel``.

    Raises :class:`InputError` (key ``batch``) when data-parallel training cannot
    split the batch evenly: an uneven split would make the devices' iterations
    differ, which the driver does not model.
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    if parallel == "model":
        return DeviceShare(batch, devices)
    if parallel != "data":
        raise ValueError(f"unknown parallel mode {parallel!r}; expected data or model")
    if batch % devices:
        raise InputError(f"{batch} is not divisible by the {devices} devices of data-parallel training",
                         key="batch")
    return DeviceShare(batch // devices, 1)
