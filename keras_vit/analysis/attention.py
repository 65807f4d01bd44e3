"""Attention maps, attention rollout and mean attention distance."""

import numpy as np
from keras import ops

from keras_vit.layers.resnet import token_grid


def attention_maps(model, images):
    """Attention probabilities of every block, on the model's own weights.

    Returns a float32 array `(num_layers, B, heads, T, T)`: row `q` of
    `[l, b, h]` is where token `q` attends in block `l`. `T` is the number of
    patches plus `model.num_prefix_tokens` (class, distillation, registers; first).
    """
    attention = model.feature_extractor(["attention"])(images)["attention"]
    return np.stack([ops.convert_to_numpy(a) for a in attention]).astype("float32")


def rollout(attention):
    """Attention rollout (Abnar & Zuidema, 2020) of `(L, B, heads, T, T)` maps.

    Per block: heads averaged, the identity added for the residual
    connection, rows renormalised to sum to 1; then the blocks multiplied,
    last block on the left. Returns `(B, T, T)`: row `q` is how much output
    token `q` draws on each input token.
    """
    attention = np.asarray(attention, dtype="float64")
    if attention.ndim != 5 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(
            f"rollout expects attention maps (layers, batch, heads, T, T), got shape {attention.shape}."
        )
    mixed = attention.mean(axis=2) + np.eye(attention.shape[-1])
    mixed /= mixed.sum(axis=-1, keepdims=True)
    joint = mixed[0]
    for layer in mixed[1:]:
        joint = layer @ joint
    return joint


def attention_rollout(model, images):
    """Rollout from the model's output to the input patches: `(B, grid_h, grid_w)`.

    With token pooling, the class token's row of the rollout (for a distilled
    model the mean of the class and distillation tokens' rows, as its logits
    are the mean of their heads'); with gap pooling, the mean of the patch
    tokens' rows (the pooled output is their mean). Each map sums to 1 over
    the patches (the prefix tokens' shares are left out and the rest
    renormalised). `upsample` brings it to image size.
    """
    joint = rollout(attention_maps(model, images))
    prefix = model.num_prefix_tokens
    if model.pooling == "token":
        rows = joint[:, : 1 + int(model.distilled)]
    else:
        rows = joint[:, prefix:]
    weights = rows.mean(axis=1)[:, prefix:]
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights.reshape(-1, *_grid(model, images)).astype("float32")


def _grid(model, images):
    """`model`'s patch-token grid for `images` `(B, H, W, 3)` (any size the model takes)."""
    return token_grid(np.shape(images)[1:3], model.patch_size, model.resnet_layers)


def upsample(maps, image_size):
    """Bilinear resize of `(B, grid_h, grid_w)` maps to `(B, H, W)`."""
    maps = np.asarray(maps, dtype="float32")[..., None]
    resized = ops.image.resize(maps, tuple(image_size), interpolation="bilinear")
    return ops.convert_to_numpy(resized)[..., 0]


def attention_distance(attention, grid_size, patch_size, num_prefix_tokens=0):
    """Mean attention distance in pixels, per block and head: `(L, heads)`.

    For each query patch, the distance between its centre and each key
    patch's centre, weighted by the attention between them (renormalised over
    the patches, leaving out prefix tokens), averaged over queries and images.

    Args:
        attention: `(L, B, heads, T, T)` probabilities.
        grid_size: `(grid_h, grid_w)`; `T = num_prefix_tokens + grid_h * grid_w`.
        patch_size: pixels from one patch's centre to the next (`model.token_stride`).
        num_prefix_tokens: tokens before the patches (`model.num_prefix_tokens`).
    """
    attention = np.asarray(attention, dtype="float64")
    grid_h, grid_w = grid_size
    expected = num_prefix_tokens + grid_h * grid_w
    if attention.ndim != 5 or attention.shape[-2:] != (expected, expected):
        raise ValueError(
            f"attention_distance expects maps (layers, batch, heads, {expected}, {expected}) for a "
            f"{grid_h}x{grid_w} grid with {num_prefix_tokens} prefix token(s), got shape {attention.shape}."
        )
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    centres = np.stack([rows.ravel(), cols.ravel()], axis=-1) * patch_size
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)  # (N, N)
    patches = attention[..., num_prefix_tokens:, num_prefix_tokens:]
    patches = patches / patches.sum(axis=-1, keepdims=True)
    per_query = (patches * distance).sum(axis=-1)  # (L, B, heads, N)
    return per_query.mean(axis=(1, 3)).astype("float32")


def mean_attention_distance(model, images):
    """Mean attention distance of `model` on `images`, in pixels: `(num_layers, heads)`.

    The paper's Figure 7 (right): how far, on average, each head looks.
    """
    return attention_distance(
        attention_maps(model, images), _grid(model, images), model.token_stride, model.num_prefix_tokens
    )
