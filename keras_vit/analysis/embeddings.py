"""What the embeddings learned: position-embedding similarity, patch filters."""

import numpy as np
from keras import ops


def position_embedding_similarity(model):
    """Cosine similarity between the position embeddings of every pair of patches.

    Returns `(grid_h, grid_w, grid_h, grid_w)`: `[i, j]` is the map of the
    similarity of patch (row i, column j) to every patch (the paper's
    Figure 7, centre). The class token's entry is left out.
    """
    if model.position_embedding == "none":
        raise ValueError(
            f"{model.name} has position_embedding='none': there are no position embeddings to compare."
        )
    layer = model.get_layer("position_embedding")
    embeddings = np.asarray(ops.convert_to_numpy(layer.embeddings), dtype="float64")[0]
    grid = embeddings[layer.num_prefix_tokens :]
    grid = grid / np.linalg.norm(grid, axis=-1, keepdims=True)
    grid_h, grid_w = layer.grid_size
    return (grid @ grid.T).reshape(grid_h, grid_w, grid_h, grid_w).astype("float32")


def patch_embedding_filters(model, num_components=28):
    """Top principal components of the patch-embedding filters (Figure 7, left).

    The `D` filters of the `(P, P, C, D)` kernel are the samples; they are
    centred and decomposed by SVD. Returns `(components, explained)`:
    `components` `(k, P, P, C)`, unit norm, in order of variance, and
    `explained` `(k,)` the fraction of the variance each explains. The sign
    of each component is arbitrary (fixed here so its largest entry is positive).
    """
    kernel = np.asarray(ops.convert_to_numpy(model.get_layer("embedding").kernel), dtype="float64")
    filters = kernel.reshape(-1, kernel.shape[-1]).T  # (D, P*P*C)
    filters = filters - filters.mean(axis=0)
    _, singular, components = np.linalg.svd(filters, full_matrices=False)
    k = min(num_components, len(singular))
    components = components[:k]
    signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
    components = components * signs[:, None]
    explained = singular**2 / np.sum(singular**2)
    return components.reshape(k, *kernel.shape[:3]).astype("float32"), explained[:k].astype("float32")
