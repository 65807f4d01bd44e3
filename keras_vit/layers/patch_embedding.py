"""Patch embedding: cut images into P×P patches and project each to D."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEmbedding(keras.layers.Layer):
    """Linear projection of non-overlapping `P×P` patches.

    A convolution with kernel = stride = `patch_size`, as in the original code.
    Input `(B, H, W, C)`, output `(B, N, D)` with `N = (H / P) * (W / P)`,
    patches in row-major order.

    Weights: `kernel` `(P, P, C, D)` (HWIO, the original layout) and `bias` `(D,)`.

    Args:
        patch_size: side `P` of a square patch, in pixels.
        hidden_dim: width `D` of the embedding.
    """

    def __init__(self, patch_size, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim

    def build(self, input_shape):
        _, height, width, channels = input_shape
        grid_size((height, width), self.patch_size)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.patch_size, self.patch_size, channels, self.hidden_dim),
            initializer="lecun_normal",
        )
        self.bias = self.add_weight(name="bias", shape=(self.hidden_dim,), initializer="zeros")

    def call(self, images):
        x = ops.conv(images, self.kernel, strides=self.patch_size, padding="valid")
        x = x + self.bias
        _, grid_h, grid_w, _ = x.shape
        if grid_h is None or grid_w is None:  # an image size chosen at call time
            return ops.reshape(x, (ops.shape(x)[0], -1, self.hidden_dim))
        return ops.reshape(x, (-1, grid_h * grid_w, self.hidden_dim))

    def extract_patches(self, images):
        """Raw patches `(B, N, P*P*C)`, each flattened in `(P, P, C)` order.

        The order of the kernel's flattening, so that
        `extract_patches(x) @ kernel.reshape(-1, D) + bias == layer(x)`.
        """
        _, height, width, channels = images.shape
        p = self.patch_size
        x = ops.reshape(images, (-1, height // p, p, width // p, p, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, (height // p) * (width // p), p * p * channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if height is None or width is None:
            return (batch, None, self.hidden_dim)
        num_patches = (height // self.patch_size) * (width // self.patch_size)
        return (batch, num_patches, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(patch_size=self.patch_size, hidden_dim=self.hidden_dim)
        return config


def image_size_pair(image_size):
    """`(height, width)` from an int (a square) or a pair of ints."""
    if isinstance(image_size, int):
        return (image_size, image_size)
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, int) for s in image_size)
    ):
        return tuple(image_size)
    raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")


def grid_size(image_size, patch_size):
    """`(H / P, W / P)`, with a clear error where P does not divide the image."""
    height, width = image_size
    for side, size in (("height", height), ("width", width)):
        if size is not None and size % patch_size:
            raise ValueError(
                f"image_size {size} ({side}) is not divisible by patch_size {patch_size}; "
                f"use a multiple of {patch_size}, e.g. {math.ceil(size / patch_size) * patch_size}."
            )
    return (
        None if height is None else height // patch_size,
        None if width is None else width // patch_size,
    )
