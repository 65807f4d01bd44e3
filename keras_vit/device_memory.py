"""The bytes of weights and optimizer state that each device holds when a
ViT is laid out by a `keras.distribution.LayoutMap` (`ViT.get_layout_map`),
computed from the model's config on a one-block model."""

import inspect
import math

import keras
import numpy as np

from keras_vit import config_checks
from keras_vit.distribution import axis_size
from keras_vit.model import ViT


def bytes_per_device(config, layouts, optimizer):
    """`{"parameters": bytes, "optimizer_state": bytes}` that one device holds
    for a `ViT(**config)` laid out by `layouts` (a LayoutMap) and trained with
    `optimizer` (a Keras optimizer whose slots have the shapes of the weights:
    SGD, Adam, AdamW, ...): the most that any device holds. The shards are
    of equal size; the optimizer's scalars (iteration, learning rate) are
    counted once, as on the devices that hold them (on JAX, some only).

    Counted on a ViT of `config` with one block, built outside any
    distribution (the other blocks' weights have the same shapes and
    layouts), so that ViT-H/14 costs a second. A `num_heads` or `mlp_dim`
    that the model axis does not divide is a ValueError in one line.
    """
    num_layers = config.get("num_layers", inspect.signature(ViT).parameters["num_layers"].default)
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        one_block = ViT(**dict(config, num_layers=1))
        slots, scalar_bytes = _optimizer_slots(optimizer)
    finally:
        keras.distribution.set_distribution(current)
    sizes = {key: getattr(one_block, key) for key in ("hidden_dim", "num_heads", "mlp_dim")}
    config_checks.check_divisible(sizes, layouts.__getitem__, layouts.device_mesh)
    parameters = trainable = 0
    for weight in one_block.weights:
        copies = num_layers if weight.path.startswith("encoderblock_") else 1
        size = copies * _shard_size(weight.shape, layouts[weight.path], layouts.device_mesh)
        size *= np.dtype(weight.dtype).itemsize
        parameters += size
        trainable += size if weight.trainable else 0
    return {"parameters": parameters, "optimizer_state": slots * trainable + scalar_bytes}


def _shard_size(shape, layout, mesh):
    """Elements of one device's shard of a weight of `shape` laid out by `layout` (None: replicated)."""
    splits = 1
    for axis in layout.axes if layout is not None else ():
        splits *= axis_size(mesh, axis)
    return math.prod(shape) // splits


def _optimizer_slots(optimizer):
    """`(slots, scalar_bytes)`: the weight-shaped variables `optimizer` keeps
    per weight, and the bytes of its own scalars (iteration, learning rate)."""
    probe = optimizer.__class__.from_config(optimizer.get_config())
    probe.build([keras.Variable(np.zeros((2, 3), "float32"))])
    slots = sum(tuple(v.shape) == (2, 3) for v in probe.variables)
    scalar_bytes = sum(
        np.dtype(v.dtype).itemsize * math.prod(v.shape) for v in probe.variables if tuple(v.shape) != (2, 3)
    )
    return slots, scalar_bytes
