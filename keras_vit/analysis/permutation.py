"""The effect of position embeddings: shuffle the patches, see what changes.

Without position embeddings a ViT sees its patches as a set: attention and
the MLP treat every token alike, so shuffling the patches only shuffles the
patch tokens, and the class token (or their mean, with gap pooling) does not
change. With position embeddings, the same shuffle changes the output.
"""

import numpy as np

from keras_vit.checkpoints import copy_with


def shuffle_patches(images, patch_size, permutation):
    """Rearranges the `P×P` patches of `(B, H, W, C)` images.

    Patch `n` of the result (row-major) is patch `permutation[n]` of the input.
    """
    images = np.asarray(images)
    batch, height, width, channels = images.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    permutation = np.asarray(permutation)
    if (
        height % patch_size
        or width % patch_size
        or sorted(permutation.tolist()) != list(range(grid_h * grid_w))
    ):
        raise ValueError(
            f"permutation must reorder the {grid_h * grid_w} patches of {patch_size}x{patch_size} "
            f"pixels in {height}x{width} images: a permutation of 0..{grid_h * grid_w - 1}, "
            f"got {permutation.tolist()}."
        )
    patches = images.reshape(batch, grid_h, patch_size, grid_w, patch_size, channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(
        batch, grid_h * grid_w, patch_size, patch_size, channels
    )
    patches = patches[:, permutation].reshape(batch, grid_h, grid_w, patch_size, patch_size, channels)
    return patches.transpose(0, 1, 3, 2, 4, 5).reshape(images.shape)


def without_position_embeddings(model):
    """A copy of `model` with `position_embedding="none"` and all its other weights."""
    return copy_with(model, position_embedding="none", name=f"{model.name}_no_posemb")


def position_embedding_effect(model, images, seed=0):
    """Runs `model` and its copy without position embeddings on `images` and
    on the same images with their patches shuffled (squares of
    `model.token_stride` pixels, one per patch token).

    Returns a dict: `permutation` `(N,)`, `shuffled` images, and for `"with"`
    (the model) and `"without"` (its copy with no position embeddings) a pair
    `(outputs on images, outputs on shuffled)`, the models' outputs (logits,
    or the pooled representation without a head) as arrays.
    """
    grid_h, grid_w = model.grid_size
    permutation = np.random.default_rng(seed).permutation(grid_h * grid_w)
    images = np.asarray(images, dtype="float32")
    shuffled = shuffle_patches(images, model.token_stride, permutation)
    result = dict(permutation=permutation, shuffled=shuffled)
    for key, net in (("with", model), ("without", without_position_embeddings(model))):
        result[key] = tuple(np.asarray(net.predict(x, verbose=0)) for x in (images, shuffled))
    return result
