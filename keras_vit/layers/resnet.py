"""The ResNet stem of the hybrid ViT: weight-standardised convolutions and GroupNorm (BiT style).

As the original `vit_jax/models_resnet.py`: bottleneck units with the stride
on the 3×3 convolution, GroupNorm (32 groups, epsilon 1e-6) after each
convolution, ReLU after the sum. Layer names follow the original checkpoint
names (`conv_root`, `gn_root`, `block{i}/unit{j}/conv{1,2,3}`, `gn{1,2,3}`,
`conv_proj`, `gn_proj`); GroupNorm's `scale`/`bias` are Keras' `gamma`/`beta`.
"""

import keras
from keras import ops

from keras_vit.layers.patch_embedding import grid_size

GROUPS = 32
GROUP_NORM_EPSILON = 1e-6  # Flax's GroupNorm default, as the original.


@keras.saving.register_keras_serializable(package="keras_vit")
class StdConv2D(keras.layers.Conv2D):
    """Conv2D whose kernel is standardised before use (Qiao et al., 2019).

    Per output channel, `(w - mean(w)) / (std(w) + epsilon)` over the
    `(kh, kw, in)` axes, as the original (`epsilon` 1e-5, added to the
    standard deviation). Defaults: no bias, `"same"` padding (TF/Flax SAME:
    the extra pixel of an odd total pad goes after).

    Weights: `kernel` `(kh, kw, in, out)` (HWIO, the original layout).
    """

    def __init__(
        self, filters, kernel_size, strides=1, epsilon=1e-5, padding="same", use_bias=False, **kwargs
    ):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias, **kwargs)
        self.epsilon = epsilon

    def convolution_op(self, inputs, kernel):
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        centered = kernel - mean
        std = ops.sqrt(ops.mean(ops.square(centered), axis=(0, 1, 2), keepdims=True))
        return super().convolution_op(inputs, centered / (std + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class GroupNorm4D(keras.layers.GroupNormalization):
    """Keras' GroupNormalization of `(B, H, W, C)` inputs through 4-D groups
    `(B, H*W, groups, C/groups)` instead of its 5-D `(B, H, W, groups,
    C/groups)`: the same numbers (bit-identical), and LiteRT's GPU delegate,
    which takes tensors of at most 4 dimensions, runs it (the 5-D form it
    leaves to the CPU, op by op)."""

    def _reshape_into_groups(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, shape[1] * shape[2], self.groups, inputs.shape[-1] // self.groups))

    def _create_broadcast_shape(self, input_shape):
        return [1, 1, self.groups, input_shape[-1] // self.groups]


def _group_norm(name, dtype, zero_scale=False):
    return GroupNorm4D(
        groups=GROUPS,
        epsilon=GROUP_NORM_EPSILON,
        gamma_initializer="zeros" if zero_scale else "ones",
        dtype=dtype,
        name=name,
    )


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetUnit(keras.layers.Layer):
    """Bottleneck unit: `relu(proj(x) + gn3(conv3(relu(gn2(conv2(relu(gn1(conv1(x)))))))))`.

    `conv1` 1×1 to `features`, `conv2` 3×3 with `strides`, `conv3` 1×1 to
    `4 * features` (its GroupNorm `gn3` starts at zero scale). The shortcut is
    `gn_proj(conv_proj(x))` (1×1, `strides`) where the shape changes, else `x`.
    Input `(B, H, W, C)`, output `(B, H / strides, W / strides, 4 * features)`
    (sizes rounded up).
    """

    def __init__(self, features, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.strides = strides

    def build(self, input_shape):
        self.needs_projection = input_shape[-1] != 4 * self.features or self.strides != 1
        dtype = self.dtype_policy
        shape = input_shape
        if self.needs_projection:
            self.conv_proj = StdConv2D(4 * self.features, 1, self.strides, dtype=dtype, name="conv_proj")
            self.conv_proj.build(shape)
            self.gn_proj = _group_norm("gn_proj", dtype)
            self.gn_proj.build(self.conv_proj.compute_output_shape(shape))
        self.conv1 = StdConv2D(self.features, 1, dtype=dtype, name="conv1")
        self.gn1 = _group_norm("gn1", dtype)
        self.conv2 = StdConv2D(self.features, 3, self.strides, dtype=dtype, name="conv2")
        self.gn2 = _group_norm("gn2", dtype)
        self.conv3 = StdConv2D(4 * self.features, 1, dtype=dtype, name="conv3")
        self.gn3 = _group_norm("gn3", dtype, zero_scale=True)
        for conv, norm in ((self.conv1, self.gn1), (self.conv2, self.gn2), (self.conv3, self.gn3)):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)

    def call(self, x):
        residual = self.gn_proj(self.conv_proj(x)) if self.needs_projection else x
        y = ops.relu(self.gn1(self.conv1(x)))
        y = ops.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return ops.relu(residual + y)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, _ceil_div(height, self.strides), _ceil_div(width, self.strides), 4 * self.features)

    def get_config(self):
        config = super().get_config()
        config.update(features=self.features, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetStage(keras.layers.Layer):
    """`num_units` bottleneck units `unit1`, `unit2`, ...; the first has `strides`."""

    def __init__(self, num_units, features, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units
        self.features = features
        self.strides = strides

    def build(self, input_shape):
        self.units = []
        shape = input_shape
        for j in range(self.num_units):
            unit = ResNetUnit(
                self.features, self.strides if j == 0 else 1, dtype=self.dtype_policy, name=f"unit{j + 1}"
            )
            unit.build(shape)
            shape = unit.compute_output_shape(shape)
            self.units.append(unit)

    def call(self, x):
        for unit in self.units:
            x = unit(x)
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, _ceil_div(height, self.strides), _ceil_div(width, self.strides), 4 * self.features)

    def get_config(self):
        config = super().get_config()
        config.update(num_units=self.num_units, features=self.features, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class ResNetStem(keras.layers.Layer):
    """The (partial) ResNet-v2 of the hybrid ViT, as the original's root and stages.

    Root: `conv_root` (7×7, stride 2, `width` = 64 × `width_factor` filters),
    `gn_root`, ReLU, 3×3 max-pool with stride 2 (SAME). Then stage `i`
    (`block{i}`, 1-based) of `num_layers[i - 1]` units with `width * 2**(i - 1)`
    bottleneck features, stride 1 for the first stage and 2 after.

    Input `(B, H, W, 3)`, output `(B, H / s, W / s, C)` with stride
    `s = 4 * 2**(len(num_layers) - 1)` (4 for the root alone; sizes rounded up)
    and `C = 4 * width * 2**(len(num_layers) - 1)` (`width` for the root alone).

    Args:
        num_layers: units per stage, e.g. `(3, 4, 9)` (R50's first three
            stages); `()` for the root alone.
        width_factor: multiplies the widths (64 at the root).
    """

    def __init__(self, num_layers, width_factor=1, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = tuple(num_layers)
        self.width_factor = width_factor

    @property
    def width(self):
        return int(64 * self.width_factor)

    def build(self, input_shape):
        dtype = self.dtype_policy
        self.conv_root = StdConv2D(self.width, 7, 2, dtype=dtype, name="conv_root")
        self.conv_root.build(input_shape)
        shape = self.conv_root.compute_output_shape(input_shape)
        self.gn_root = _group_norm("gn_root", dtype)
        self.gn_root.build(shape)
        self.pool = keras.layers.MaxPooling2D(3, strides=2, padding="same", dtype=dtype, name="pool_root")
        shape = self.pool.compute_output_shape(shape)
        self.stages = []
        for i, num_units in enumerate(self.num_layers):
            stage = ResNetStage(
                num_units, self.width * 2**i, strides=1 if i == 0 else 2, dtype=dtype, name=f"block{i + 1}"
            )
            stage.build(shape)
            shape = stage.compute_output_shape(shape)
            self.stages.append(stage)

    def call(self, images):
        x = self.pool(ops.relu(self.gn_root(self.conv_root(images))))
        for stage in self.stages:
            x = stage(x)
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        channels = 4 * self.width * 2 ** (len(self.num_layers) - 1) if self.num_layers else self.width
        return (batch, *feature_size((height, width), self.num_layers), channels)

    def get_config(self):
        config = super().get_config()
        config.update(num_layers=list(self.num_layers), width_factor=self.width_factor)
        return config


def stem_stride(num_layers):
    """The stem's total stride: 4 (root), doubled by every stage after the
    first; 1 for `num_layers=None` (no stem, the plain ViT)."""
    return 1 if num_layers is None else 4 * 2 ** max(len(num_layers) - 1, 0)


def feature_size(image_size, num_layers):
    """The `(height, width)` after a stem of `num_layers` (None: no stem, the
    image itself); SAME padding rounds up."""
    stride = stem_stride(num_layers)
    return tuple(_ceil_div(size, stride) for size in image_size)


def token_grid(image_size, patch_size, num_layers):
    """`(grid_h, grid_w)` of the patch tokens of `(height, width)` images: the
    stem's feature map (the image itself without a stem) cut into
    `patch_size` patches; a None side stays None."""
    return grid_size(feature_size(image_size, num_layers), patch_size)


def _ceil_div(size, stride):
    return None if size is None else -(-size // stride)
