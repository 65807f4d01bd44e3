"""Seeing inside a ViT: the pictures of the paper's Figure 7 and the attention rollout.

Arrays (NumPy, no plotting library needed): `attention_maps`, `rollout`,
`attention_rollout`, `upsample`, `attention_distance`,
`mean_attention_distance`, `position_embedding_similarity`,
`patch_embedding_filters`, `shuffle_patches`, `without_position_embeddings`,
`position_embedding_effect`. Pictures (matplotlib): the `plot_*` functions in
`keras_vit.analysis.plots`, re-exported here. CLI: `python -m keras_vit.analysis`.
"""

from keras_vit.analysis.attention import (
    attention_distance,
    attention_maps,
    attention_rollout,
    mean_attention_distance,
    rollout,
    upsample,
)
from keras_vit.analysis.embeddings import patch_embedding_filters, position_embedding_similarity
from keras_vit.analysis.permutation import (
    position_embedding_effect,
    shuffle_patches,
    without_position_embeddings,
)
from keras_vit.analysis.plots import (
    plot_attention_rollout,
    plot_mean_attention_distance,
    plot_patch_embedding_filters,
    plot_position_embedding_effect,
    plot_position_embedding_similarity,
)

__all__ = [
    "attention_distance",
    "attention_maps",
    "attention_rollout",
    "mean_attention_distance",
    "patch_embedding_filters",
    "plot_attention_rollout",
    "plot_mean_attention_distance",
    "plot_patch_embedding_filters",
    "plot_position_embedding_effect",
    "plot_position_embedding_similarity",
    "position_embedding_effect",
    "position_embedding_similarity",
    "rollout",
    "shuffle_patches",
    "upsample",
    "without_position_embeddings",
]
